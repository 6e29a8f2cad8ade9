//! Content hashes of a merge's inputs for `mergec.json`: BLAKE3 of every tensor the merge
//! reads, taken from the mapped bytes right after the tensor is used (its pages are still
//! in memory: no second read of the files), then one digest per input over the sorted
//! `(name, tensor digest)` pairs. Two checkpoints with the same tensors have the same
//! digest whatever their sharding or header order; any changed value changes it.

use super::digest_cache::DigestCache;
use super::safetensors::StoredAt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tensors at least this large are hashed on every core.
const PARALLEL_BYTES: usize = 1 << 20;

/// The tensor digests of each input (the base first, then the models), as they come.
pub struct ContentHashes {
    inputs: Vec<Mutex<Vec<(String, blake3::Hash)>>>,
    /// Bytes recorded: every byte of the inputs the merge read.
    bytes: AtomicU64,
    /// Digests of earlier merges (None: hash everything).
    cache: Option<DigestCache>,
}

/// One input's digest and how many tensors it covers.
pub struct InputDigest {
    pub blake3: String,
    pub tensors: usize,
}

impl ContentHashes {
    pub fn new(inputs: usize, cache: Option<DigestCache>) -> ContentHashes {
        ContentHashes {
            inputs: (0..inputs).map(|_| Mutex::new(Vec::new())).collect(),
            bytes: AtomicU64::new(0),
            cache,
        }
    }

    /// Records tensor `name` of input `input` (0: the base), whose stored `bytes` are
    /// at `at` in their file (if known: then a cached digest of them is used).
    pub fn add(&self, input: usize, name: &str, bytes: &[u8], at: Option<StoredAt>) {
        let cached = self.cache.as_ref().zip(at.as_ref());
        let digest = match cached.and_then(|(c, at)| c.get(at, name)) {
            Some(d) => d,
            None => {
                let mut h = blake3::Hasher::new();
                if bytes.len() >= PARALLEL_BYTES {
                    h.update_rayon(bytes);
                } else {
                    h.update(bytes);
                }
                let d = h.finalize();
                if let Some((c, at)) = cached {
                    c.put(at, name, d);
                }
                d
            }
        };
        self.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if let Some(slot) = self.inputs.get(input) {
            slot.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((name.to_string(), digest));
        }
    }

    /// Keeps the digests computed for later merges (after this one succeeded).
    pub fn save(&self) {
        if let Some(c) = &self.cache {
            c.save();
        }
    }

    /// How many bytes of input tensors were recorded.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The digest of input `input` over the tensors recorded so far.
    pub fn digest(&self, input: usize) -> InputDigest {
        let mut pairs = self
            .inputs
            .get(input)
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        InputDigest {
            blake3: combine(&pairs).to_hex().to_string(),
            tensors: pairs.len(),
        }
    }
}

/// The digest of sorted `(name, digest)` pairs: each name's bytes, a zero byte, its digest.
pub fn combine(pairs: &[(String, blake3::Hash)]) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    for (name, d) in pairs {
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(d.as_bytes());
    }
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_ignores_order_and_sees_every_value() {
        let a = ContentHashes::new(1, None);
        a.add(0, "x", &[1, 2, 3], None);
        a.add(0, "y", &vec![7u8; PARALLEL_BYTES + 5], None);
        let b = ContentHashes::new(1, None);
        b.add(0, "y", &vec![7u8; PARALLEL_BYTES + 5], None);
        b.add(0, "x", &[1, 2, 3], None);
        assert_eq!(a.digest(0).blake3, b.digest(0).blake3);
        assert_eq!(a.digest(0).tensors, 2);
        let c = ContentHashes::new(1, None);
        c.add(0, "x", &[1, 2, 4], None);
        c.add(0, "y", &vec![7u8; PARALLEL_BYTES + 5], None);
        assert_ne!(a.digest(0).blake3, c.digest(0).blake3);
    }
}
