//! The exact meaning of every scalar operation, reduction order, selection and
//! random draw. Backends must reproduce these bit for bit (transcendentals
//! within a stated tolerance on the GPU). Nothing here depends on threads.
//!
//! The layer under the interpreter and the compiler: both import it, and it imports
//! nothing of mergec's.

pub mod dtype;
pub mod rng;

/// Reductions to a scalar accumulate in f64 over blocks of this many elements...
pub const RED_BLOCK: usize = 4096;
/// ...each block in this many interleaved lanes (element j of a block goes to lane j % LANES).
pub const RED_LANES: usize = 8;

/// Sum of `n` values in the canonical order: per block, lane partials combined
/// as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)); block sums added in order. All f64.
pub fn canonical_sum(n: usize, get: impl Fn(usize) -> f64) -> f64 {
    let mut total = 0.0f64;
    let mut start = 0;
    while start < n {
        let end = (start + RED_BLOCK).min(n);
        let mut lanes = [0.0f64; RED_LANES];
        for j in start..end {
            lanes[(j - start) % RED_LANES] += get(j);
        }
        total += ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
            + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
        start = end;
    }
    total
}

/// IEEE 754-2019 `maximum`: NaN if either is NaN; +0 beats -0.
pub fn max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if a > b || (a == b && b.is_sign_negative()) {
        a
    } else {
        b
    }
}

/// IEEE 754-2019 `minimum`: NaN if either is NaN; -0 beats +0.
pub fn min(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if a < b || (a == b && a.is_sign_negative()) {
        a
    } else {
        b
    }
}

/// -1, 1, or the input itself for ±0 and NaN.
pub fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

pub fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    min(max(x, lo), hi)
}

pub fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + t * (b - a)
}

/// A mask value as a number.
pub fn from_bool(b: bool) -> f32 {
    if b { 1.0 } else { 0.0 }
}

/// The decimal a person most likely wrote for an f32 (its shortest round-trip
/// form), as f64. Counts such as floor(density * n) use it, so density 0.7 keeps
/// floor(0.7 * n) elements exactly as mergekit's Python floats do.
pub fn decimal_f64(x: f32) -> f64 {
    format!("{x}").parse::<f64>().unwrap_or(x as f64)
}

/// floor(fraction * n), with the fraction clamped to [0, 1].
pub fn fraction_count(fraction: f32, n: usize) -> usize {
    if fraction.is_nan() || fraction <= 0.0 {
        return 0;
    }
    if fraction >= 1.0 {
        return n;
    }
    ((decimal_f64(fraction) * n as f64).floor() as usize).min(n)
}

/// Orders by magnitude descending, NaN largest, ties by lower index first.
fn magnitude_key(x: f32) -> u32 {
    // |x| as an unsigned bit pattern orders like the magnitude; NaN sorts above inf.
    let bits = x.to_bits() & 0x7fff_ffff;
    if x.is_nan() { u32::MAX } else { bits }
}

/// Mask of the `k` largest |x| after skipping the `skip` largest (ties: lower index first).
/// When skip + k exceeds n, fewer are skipped (as mergekit's breadcrumbs does).
pub fn topk_mask(x: &[f32], k: usize, skip: usize) -> Vec<bool> {
    let n = x.len();
    let k = k.min(n);
    let skip = skip.min(n - k);
    let mut order: Vec<u32> = (0..n as u32).collect();
    // Selection, not a full sort, for the two cut points.
    let key = |i: &u32| (std::cmp::Reverse(magnitude_key(x[*i as usize])), *i);
    let mut mask = vec![false; n];
    if k == 0 {
        return mask;
    }
    if skip > 0 {
        order.select_nth_unstable_by_key(skip - 1, key);
        order.drain(..skip);
    }
    if k < order.len() {
        order.select_nth_unstable_by_key(k - 1, key);
        order.truncate(k);
    }
    for i in order {
        mask[i as usize] = true;
    }
    mask
}

/// Ranks (0-based, ascending, ties by lower index) of a sequence; NaN ranks highest.
pub fn ranks(x: &[f32]) -> Vec<f32> {
    let mut order: Vec<u32> = (0..x.len() as u32).collect();
    order.sort_by_key(|&i| (total_key(x[i as usize]), i));
    let mut out = vec![0.0; x.len()];
    for (r, i) in order.into_iter().enumerate() {
        out[i as usize] = r as f32;
    }
    out
}

/// A key ordering floats ascending, -0 == +0, NaN above everything.
fn total_key(x: f32) -> i64 {
    if x.is_nan() {
        return i64::MAX;
    }
    let x = if x == 0.0 { 0.0 } else { x };
    let b = x.to_bits() as i32;
    (if b < 0 { !(b & 0x7fff_ffff) } else { b }) as i64
}

/// q-th quantile with linear interpolation between order statistics (q clamped
/// to [0, 1]; NaN if x holds NaN or is empty).
pub fn quantile(x: &[f32], q: f32) -> f32 {
    let n = x.len();
    if n == 0 || q.is_nan() || x.iter().any(|v| v.is_nan()) {
        return f32::NAN;
    }
    let q = decimal_f64(q.clamp(0.0, 1.0));
    let pos = q * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = pos - lo as f64;
    let mut v: Vec<f32> = x.to_vec();
    let cmp = |a: &f32, b: &f32| a.total_cmp(b);
    let (_, &mut a, rest) = v.select_nth_unstable_by(lo, cmp);
    let b = if hi == lo {
        a
    } else {
        rest.iter()
            .copied()
            .min_by(|p, q| p.total_cmp(q))
            .unwrap_or(a)
    };
    let (a, b) = (a as f64, b as f64);
    (a + (b - a) * frac) as f32
}

// ---- counter-based randomness ----

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 finaliser.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a tensor name.
pub fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The key of one random stream: (run seed, tensor name, model index, stream).
pub fn stream_key(seed: u64, name_hash: u64, model: u32, stream: u32) -> u64 {
    let k = mix64(seed.wrapping_add(GOLDEN));
    let k = mix64(k ^ name_hash);
    mix64(k ^ (((model as u64) << 32) | stream as u64))
}

/// Uniform in [0, 1) with 24 random bits, for element `i` of a stream.
pub fn uniform_at(key: u64, i: u64) -> f32 {
    let bits = mix64(key.wrapping_add(i.wrapping_add(1).wrapping_mul(GOLDEN)));
    (bits >> 40) as f32 * (1.0 / 16_777_216.0)
}

/// A standard normal draw (Box-Muller on two stream positions), for the REPL's randn.
pub fn normal_at(key: u64, i: u64) -> f32 {
    let u1 = (uniform_at(key, 2 * i) as f64).max(1e-12);
    let u2 = uniform_at(key, 2 * i + 1) as f64;
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_min_propagate_nan_and_order_zeros() {
        assert!(max(f32::NAN, 1.0).is_nan());
        assert!(min(1.0, f32::NAN).is_nan());
        assert!(max(-0.0, 0.0).is_sign_positive());
        assert!(min(0.0, -0.0).is_sign_negative());
    }

    #[test]
    fn fraction_count_uses_the_written_decimal() {
        assert_eq!(fraction_count(0.7, 10), 7);
        assert_eq!(fraction_count(0.2, 783), 156);
        assert_eq!(fraction_count(1.5, 10), 10);
        assert_eq!(fraction_count(0.0, 10), 0);
    }

    #[test]
    fn topk_ties_prefer_lower_index() {
        let m = topk_mask(&[1.0, -1.0, 1.0, 0.5], 2, 0);
        assert_eq!(m, vec![true, true, false, false]);
        let m = topk_mask(&[3.0, 2.0, 1.0, 0.0], 2, 1);
        assert_eq!(m, vec![false, true, true, false]);
    }

    #[test]
    fn quantile_interpolates() {
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.5), 2.5);
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 1.0), 4.0);
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.0), 1.0);
    }

    #[test]
    fn ranks_are_stable() {
        assert_eq!(
            ranks(&[2.0, 1.0, 2.0, -0.0, 0.0]),
            vec![3.0, 2.0, 4.0, 0.0, 1.0]
        );
    }

    #[test]
    fn uniform_is_in_range_and_keyed() {
        let k1 = stream_key(0, name_hash("a"), 0, 0);
        let k2 = stream_key(0, name_hash("a"), 1, 0);
        assert_ne!(uniform_at(k1, 0), uniform_at(k2, 0));
        for i in 0..1000 {
            let u = uniform_at(k1, i);
            assert!((0.0..1.0).contains(&u));
        }
    }
}
