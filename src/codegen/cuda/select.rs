//! Radix selection over f32 buffers, for top-k cut points (`Inst::TopSel`'s `t` and
//! `cut`) and quantiles: the host-side driver of `kernels/select.cu`.
//!
//! Each pass asks for one 256-bin histogram of 8 key bits among the elements whose
//! higher bits match the digits chosen so far; 4 passes pin a 32-bit key. The driver is
//! generic over who counts (`Histogram`): the GPU (`CudaEngine`), the emulated kernel in
//! the tests, or `host_histogram`, which defines what every pass must return.

use crate::ir::reference::magnitude_key;
use crate::semantics;

const SELECT: &str = include_str!("../../../kernels/select.cu");

/// Entry point of the histogram kernel in `source()`.
pub const ENTRY: &str = "mergec_radix_hist";
/// Threads per block the histogram kernel is written for.
pub const THREADS: u32 = 256;

/// The CUDA translation unit holding the histogram kernel (prelude included).
pub fn source() -> String {
    let prelude = include_str!("../../../kernels/prelude.cuh");
    format!("// mergec radix select.\n\n{prelude}\n{SELECT}")
}

/// Which 32-bit key a pass reads for element `i` of `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// `magnitude_key(x[i])`: top-k by |x|, NaN largest.
    Magnitude = 0,
    /// `total_key(x[i])`: the order of `f32::total_cmp`.
    Total = 1,
    /// `i`, counting only elements with `magnitude_key(x[i]) == tie`.
    TieIndex = 2,
}

/// One histogram pass: count `(key >> shift) & 255` over keys with `key & mask == prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pass {
    pub kind: KeyKind,
    pub tie: u32,
    pub prefix: u32,
    pub mask: u32,
    pub shift: u32,
}

/// Something that counts one pass over a fixed buffer.
pub type Histogram<'a> = dyn FnMut(&Pass) -> Result<[u32; 256], String> + 'a;

/// `f32::total_cmp`'s order as an unsigned key (the kernel's `mg_total_key`).
pub fn total_key(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 { !b } else { b | 0x8000_0000 }
}

/// The f32 whose `total_key` is `key`.
pub fn from_total_key(key: u32) -> f32 {
    f32::from_bits(if key >> 31 == 1 {
        key & 0x7fff_ffff
    } else {
        !key
    })
}

/// The key of element `i` under a pass's kind, or None if the pass skips it.
fn key_of(x: &[f32], i: usize, p: &Pass) -> Option<u32> {
    match p.kind {
        KeyKind::Magnitude => Some(magnitude_key(x[i])),
        KeyKind::Total => Some(total_key(x[i])),
        KeyKind::TieIndex => (magnitude_key(x[i]) == p.tie).then_some(i as u32),
    }
}

/// What a pass over `x` must count (the kernel's specification).
pub fn host_histogram(x: &[f32], p: &Pass) -> [u32; 256] {
    let mut h = [0u32; 256];
    for i in 0..x.len() {
        if let Some(key) = key_of(x, i, p)
            && key & p.mask == p.prefix
        {
            h[((key >> p.shift) & 255) as usize] += 1;
        }
    }
    h
}

/// The key at 0-based `rank` among the keys a kind counts, in descending or ascending
/// order, with `before` (keys strictly ahead of it) and `equal` (keys equal to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selected {
    pub key: u32,
    pub before: u64,
    pub equal: u64,
}

/// Four 8-bit passes from the top digit down.
pub fn radix_select(
    kind: KeyKind,
    tie: u32,
    rank: u64,
    descending: bool,
    hist: &mut Histogram,
) -> Result<Selected, String> {
    let (mut prefix, mut mask, mut before, mut remaining, mut equal) = (0u32, 0u32, 0u64, rank, 0);
    for shift in [24u32, 16, 8, 0] {
        let h = hist(&Pass {
            kind,
            tie,
            prefix,
            mask,
            shift,
        })?;
        let order: Box<dyn Iterator<Item = usize>> = if descending {
            Box::new((0..256).rev())
        } else {
            Box::new(0..256)
        };
        let mut digit = None;
        for b in order {
            let count = h[b] as u64;
            if remaining < count {
                digit = Some(b as u32);
                equal = count;
                break;
            }
            remaining -= count;
            before += count;
        }
        let digit = digit.ok_or_else(|| format!("radix select: rank {rank} is out of range"))?;
        prefix |= digit << shift;
        mask |= 0xff << shift;
    }
    Ok(Selected {
        key: prefix,
        before,
        equal,
    })
}

/// `TopSel` arguments `(t, cut)` selecting the `k` largest magnitudes of `n` elements
/// (ties: lower index first), as `semantics::topk_mask(x, k, 0)` does.
pub fn topk_cut(n: usize, k: usize, hist: &mut Histogram) -> Result<(u64, u64), String> {
    let k = k.min(n) as u64;
    if k == 0 {
        // Above every magnitude key: selects nothing.
        return Ok((1 << 32, 0));
    }
    let t = radix_select(KeyKind::Magnitude, 0, k - 1, true, hist)?;
    let ties = k - t.before;
    if ties == t.equal {
        return Ok((t.key as u64, n as u64));
    }
    let last = radix_select(KeyKind::TieIndex, t.key, ties - 1, false, hist)?;
    Ok((t.key as u64, last.key as u64 + 1))
}

/// The element of 0-based `rank` in `f32::total_cmp` order.
pub fn kth_smallest(rank: usize, hist: &mut Histogram) -> Result<f32, String> {
    let s = radix_select(KeyKind::Total, 0, rank as u64, false, hist)?;
    Ok(from_total_key(s.key))
}

/// `semantics::quantile` of the `n` counted elements.
pub fn quantile(n: usize, q: f32, hist: &mut Histogram) -> Result<f32, String> {
    if n == 0 || q.is_nan() {
        return Ok(f32::NAN);
    }
    // NaNs are the only magnitude keys with a top digit of 255.
    let top = hist(&Pass {
        kind: KeyKind::Magnitude,
        tie: 0,
        prefix: 0,
        mask: 0,
        shift: 24,
    })?;
    if top[255] > 0 {
        return Ok(f32::NAN);
    }
    let q = semantics::decimal_f64(q.clamp(0.0, 1.0));
    let pos = q * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = pos - lo as f64;
    let a = kth_smallest(lo, hist)? as f64;
    let b = if hi == lo {
        a
    } else {
        kth_smallest(hi, hist)? as f64
    };
    Ok((a + (b - a) * frac) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Vec<f32> {
        let mut x: Vec<f32> = (0..300)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        x.extend([0.0, -0.0, 1.0, -1.0, 1.0, f32::INFINITY, -1e-40, 1e-40]);
        x
    }

    #[test]
    fn topk_cut_matches_topk_mask() {
        let x = data();
        for k in [0, 1, 2, 5, 17, 150, 307, 308, 400] {
            let (t, cut) = topk_cut(x.len(), k, &mut |p| Ok(host_histogram(&x, p))).unwrap();
            let mask = semantics::topk_mask(&x, k, 0);
            for (i, &m) in mask.iter().enumerate() {
                let key = magnitude_key(x[i]) as u64;
                let sel = key > t || (key == t && (i as u64) < cut);
                assert_eq!(sel, m, "k={k} i={i}");
            }
        }
    }

    #[test]
    fn quantiles_and_order_statistics_match_semantics() {
        let x = data();
        for q in [0.0, 0.1, 0.25, 0.5, 0.7, 0.99, 1.0] {
            let got = quantile(x.len(), q, &mut |p| Ok(host_histogram(&x, p))).unwrap();
            assert_eq!(got.to_bits(), semantics::quantile(&x, q).to_bits(), "q={q}");
        }
        let mut sorted = x.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        for r in [0, 1, 150, 307] {
            let got = kth_smallest(r, &mut |p| Ok(host_histogram(&x, p))).unwrap();
            assert_eq!(got.to_bits(), sorted[r].to_bits());
        }
        let with_nan = [1.0, f32::NAN, 2.0];
        let q = quantile(3, 0.5, &mut |p| Ok(host_histogram(&with_nan, p))).unwrap();
        assert!(q.is_nan());
    }

    #[test]
    fn total_key_round_trips_and_orders() {
        let xs = [
            f32::NEG_INFINITY,
            -1.0,
            -0.0,
            0.0,
            1e-45,
            1.0,
            f32::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(total_key(w[0]) < total_key(w[1]));
        }
        for x in xs {
            assert_eq!(from_total_key(total_key(x)).to_bits(), x.to_bits());
        }
    }
}
