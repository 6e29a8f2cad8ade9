//! mergec's documented counter-based generator, re-derived from its description
//! (SplitMix64 finaliser, FNV-1a of the tensor name, a key per (seed, name, model
//! position, stream), 24-bit uniforms), so random masks can be reproduced exactly.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn splitmix_finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv1a(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The uniforms in [0, 1) of one stream: model position `model`, stream number `stream`.
pub struct Stream {
    key: u64,
}

impl Stream {
    pub fn new(seed: u64, tensor: &str, model: usize, stream: u32) -> Stream {
        let k = splitmix_finalize(seed.wrapping_add(GOLDEN));
        let k = splitmix_finalize(k ^ fnv1a(tensor));
        let key = splitmix_finalize(k ^ (((model as u64) << 32) | stream as u64));
        Stream { key }
    }

    /// The uniform of flat element `i`.
    pub fn uniform(&self, i: usize) -> f32 {
        let ctr = (i as u64).wrapping_add(1).wrapping_mul(GOLDEN);
        let bits = splitmix_finalize(self.key.wrapping_add(ctr));
        (bits >> 40) as f32 / 16_777_216.0
    }

    /// torch.bernoulli-like keep mask: element i is kept when its uniform is below p_i.
    pub fn keep(&self, p: &[f32]) -> Vec<bool> {
        p.iter()
            .enumerate()
            .map(|(i, &p)| self.uniform(i) < p)
            .collect()
    }
}
