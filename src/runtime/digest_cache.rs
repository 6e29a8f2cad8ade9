//! Tensor digests remembered across merges, so that merging the same inputs again (a
//! parameter sweep, the self-develop loop's candidates) does not hash them again: BLAKE3
//! of 5.6 GB took 0.6 s of a 2-second merge on two cores.
//!
//! One JSON file per input file, under `$XDG_CACHE_HOME/mergec/digests/` (else
//! `~/.cache/mergec/digests/`), named by a hash of the file's canonical path. It holds
//! the file's identity (device, inode, size, mtime, ctime) and, per tensor, the byte
//! range and its digest. A digest is used only when the file's identity and the range
//! are the same as when it was recorded. Rewriting a file changes its ctime, which no
//! program can set back; a file changed within the last [`SETTLE`] is not recorded, as
//! two writes within one tick of the file system's clock could share a ctime (git's
//! "racy clean" problem). `MERGEC_DIGEST_CACHE=off` turns the cache off. Failing to read
//! or write it only costs the hashing.

use super::safetensors::{FileId, StoredAt};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How long a file must be unchanged before its digests are recorded.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Largest cache file read (a checkpoint has at most some thousands of tensors).
const MAX_FILE: u64 = 16 << 20;

/// One input file's cached digests.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Entry {
    file: Option<FileId>,
    /// Tensor name -> (start, end, BLAKE3 hex).
    tensors: BTreeMap<String, (u64, u64, String)>,
    #[serde(skip)]
    changed: bool,
}

/// The digests of the files a merge reads, loaded as they are first asked for.
pub struct DigestCache {
    dir: PathBuf,
    files: Mutex<HashMap<PathBuf, Entry>>,
}

impl DigestCache {
    /// The cache at its usual place, or None when it is turned off or there is no home.
    pub fn from_env() -> Option<DigestCache> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if var("MERGEC_DIGEST_CACHE").is_some_and(|v| v == "off" || v == "0") {
            return None;
        }
        let base = var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(DigestCache::at(base.join("mergec").join("digests")))
    }

    /// A cache in `dir` (made when first written).
    pub fn at(dir: PathBuf) -> DigestCache {
        DigestCache {
            dir,
            files: Mutex::new(HashMap::new()),
        }
    }

    /// The recorded digest of the bytes `at` holds for tensor `name`, if still valid.
    pub fn get(&self, at: &StoredAt, name: &str) -> Option<blake3::Hash> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let entry = self.entry(&mut files, at.file);
        let (start, end, hex) = entry.tensors.get(name)?;
        if (*start, *end) != (at.start, at.end) {
            return None;
        }
        blake3::Hash::from_hex(hex).ok()
    }

    /// Records the digest of tensor `name`'s bytes at `at`, unless its file changed
    /// too recently to be told apart from a later change.
    pub fn put(&self, at: &StoredAt, name: &str, digest: blake3::Hash) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let changed = at.file.ctime_ns.max(at.file.mtime_ns);
        if now - changed < SETTLE.as_nanos() as i128 {
            return;
        }
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let entry = self.entry(&mut files, at.file);
        let value = (at.start, at.end, digest.to_hex().to_string());
        if entry.tensors.get(name) != Some(&value) {
            entry.tensors.insert(name.to_string(), value);
            entry.changed = true;
        }
    }

    /// Writes the files whose digests changed (each replaced whole, atomically).
    pub fn save(&self) {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        for (path, entry) in files.iter().filter(|(_, e)| e.changed) {
            let _ = self.write(path, entry);
        }
    }

    /// The entry of `file`: loaded from disk the first time, emptied if the file is
    /// not the version it describes.
    fn entry<'m>(&self, files: &'m mut HashMap<PathBuf, Entry>, file: &FileId) -> &'m mut Entry {
        let e = files
            .entry(file.path.clone())
            .or_insert_with(|| self.read(&file.path).unwrap_or_default());
        if e.file.as_ref() != Some(file) {
            *e = Entry {
                file: Some(file.clone()),
                ..Entry::default()
            };
        }
        e
    }

    /// Where the digests of the file at (canonical) `path` are kept.
    fn cache_file(&self, path: &Path) -> PathBuf {
        let h = blake3::hash(path.as_os_str().as_encoded_bytes());
        self.dir.join(format!("{}.json", &h.to_hex()[..32]))
    }

    fn read(&self, path: &Path) -> Option<Entry> {
        let text = crate::files::read_text(&self.cache_file(path), "a digest cache file", MAX_FILE)
            .ok()?;
        let e: Entry = serde_json::from_str(&text).ok()?;
        // A file named by another path's hash (a collision, a copied cache) is not used.
        (e.file.as_ref().map(|f| f.path.as_path()) == Some(path)).then_some(e)
    }

    fn write(&self, path: &Path, entry: &Entry) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let target = self.cache_file(path);
        let tmp = target.with_extension(format!("tmp-{}", std::process::id()));
        let text = serde_json::to_string(entry).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &target).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(path: &Path, ctime_ns: i128) -> FileId {
        FileId {
            path: path.to_path_buf(),
            dev: 1,
            ino: 2,
            size: 100,
            mtime_ns: ctime_ns,
            ctime_ns,
        }
    }

    /// A digest comes back for the same file version and range, from a new cache on
    /// the same directory too; not for another range, version or a recent file.
    #[test]
    fn a_digest_is_used_only_for_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model.safetensors");
        let old = id(&file, 1_000_000_000);
        let d = blake3::hash(b"weights");
        let cache = DigestCache::at(dir.path().join("cache"));
        cache.put(&at(&old, 8, 40), "w", d);
        assert_eq!(cache.get(&at(&old, 8, 40), "w"), Some(d));
        cache.save();
        let again = DigestCache::at(dir.path().join("cache"));
        assert_eq!(again.get(&at(&old, 8, 40), "w"), Some(d));
        assert_eq!(again.get(&at(&old, 8, 41), "w"), None, "another range");
        assert_eq!(again.get(&at(&old, 8, 40), "v"), None, "another tensor");
        let rewritten = id(&file, 2_000_000_000);
        assert_eq!(
            again.get(&at(&rewritten, 8, 40), "w"),
            None,
            "a new version"
        );
        // Changed a moment ago: not recorded.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128;
        let fresh = id(&dir.path().join("fresh.safetensors"), now);
        again.put(&at(&fresh, 8, 40), "w", d);
        assert_eq!(again.get(&at(&fresh, 8, 40), "w"), None);
    }

    fn at(file: &FileId, start: u64, end: u64) -> StoredAt<'_> {
        StoredAt { file, start, end }
    }
}
