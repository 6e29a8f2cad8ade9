//! The chunked selection against the reference top-k mask.

use super::*;
use crate::semantics::topk_mask;

fn mask(x: &[f32], c: TopkCut) -> Vec<bool> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let k = magnitude_key(v);
            k > c.t || (k == c.t && (i as u64) < c.cut)
        })
        .collect()
}

#[test]
fn chunked_select_matches_topk_mask() {
    let mut seed = 1u64;
    let mut next = || {
        seed = crate::semantics::mix64(seed);
        seed
    };
    for &n in &[1usize, 2, 3, 50, 783, 4097, 70_001] {
        let pool = [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            0.5,
            2.0,
            f32::NAN,
            1e-30,
            3.5,
            -3.5,
        ];
        let x: Vec<f32> = (0..n)
            .map(|_| {
                let r = next();
                if r % 3 == 0 {
                    pool[(r >> 8) as usize % pool.len()]
                } else {
                    f32::from_bits((r >> 20) as u32) * if r & 1 == 0 { 1.0 } else { -1.0 }
                }
            })
            .collect();
        for chunk in [1usize, 7, 1000, n] {
            let chunks = n.div_ceil(chunk);
            let ks: Vec<usize> = [0, 1, 2, n / 3, n / 2, n.saturating_sub(1), n]
                .into_iter()
                .collect();
            let reqs: Vec<Request> = ks.iter().map(|&k| Request { key: 0, count: k }).collect();
            let fill = |c: usize, bufs: &mut [Vec<f32>]| -> Result<usize, ()> {
                let lo = c * chunk;
                bufs[0].clear();
                bufs[0].extend_from_slice(&x[lo..(lo + chunk).min(n)]);
                Ok(lo)
            };
            // Gathering at once, after one or two digits, and never; sampling first
            // or not.
            let limits = [u64::MAX, n as u64 / 50, 3, 0].into_iter().flat_map(|g| {
                [u64::MAX, 0].map(|band_min| Limits {
                    gather_max: g,
                    band_min,
                })
            });
            for limits in limits {
                for parallel in [false, true] {
                    let keys = ChunkedKeys {
                        n_keys: 1,
                        n,
                        chunks,
                        parallel,
                        fill: &fill,
                    };
                    let cuts = select_with(&keys, &reqs, limits).expect("the fill never fails");
                    for (&k, c) in ks.iter().zip(cuts) {
                        assert_eq!(
                            mask(&x, c),
                            topk_mask(&x, k, 0),
                            "n {n} k {k} chunk {chunk} {limits:?}"
                        );
                    }
                }
            }
        }
    }
}

/// Runs one request for the top `k` of `x` in chunks of `chunk`, sampling first;
/// returns whether the cut is right and how many chunks were computed.
fn sampled_run(x: &[f32], k: usize, chunk: usize) -> (bool, usize) {
    let n = x.len();
    let fills = std::sync::atomic::AtomicUsize::new(0);
    let fill = |c: usize, bufs: &mut [Vec<f32>]| -> Result<usize, ()> {
        fills.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let lo = c * chunk;
        bufs[0].clear();
        bufs[0].extend_from_slice(&x[lo..(lo + chunk).min(n)]);
        Ok(lo)
    };
    let keys = ChunkedKeys {
        n_keys: 1,
        n,
        chunks: n.div_ceil(chunk),
        parallel: true,
        fill: &fill,
    };
    let limits = Limits {
        gather_max: GATHER_MAX,
        band_min: 0,
    };
    let req = [Request { key: 0, count: k }];
    let cut = select_with(&keys, &req, limits).expect("the fill never fails")[0];
    let right = mask(x, cut) == topk_mask(x, k, 0);
    (right, fills.into_inner())
}

/// A sample like the rest finds the cut in one pass after it; a sample unlike the
/// rest (its chunks hold only small values) falls back to the radix select, and the
/// cut is exact either way.
#[test]
fn a_sample_narrows_the_pass_and_a_bad_one_costs_only_time() {
    let (n, chunk) = (1 << 16, 256);
    let chunks = n / chunk;
    let mut seed = 7u64;
    let x: Vec<f32> = (0..n)
        .map(|_| {
            seed = crate::semantics::mix64(seed);
            // Values with many equal keys (8 bits of mantissa, as bf16 has).
            f32::from_bits(((seed >> 40) as u32 & 0x3fff_ff00) | 0x3000_0000)
                * if seed & 1 == 0 { 1.0 } else { -1.0 }
        })
        .collect();
    for k in [n / 2, n / 10, 3, n - 5] {
        let (right, fills) = sampled_run(&x, k, chunk);
        assert!(right, "k {k}");
        // The sample, the band pass and at most one chunk for ties.
        assert!(
            fills <= sample_chunks(chunks).len() + chunks + 1,
            "k {k}: {fills}"
        );
    }
    // The sampled chunks hold tiny values; the rest are as before.
    let sampled = sample_chunks(chunks);
    let mut y = x.clone();
    for &c in &sampled {
        for v in &mut y[c * chunk..(c + 1) * chunk] {
            *v *= 1e-6;
        }
    }
    let (right, fills) = sampled_run(&y, n / 2, chunk);
    assert!(right);
    assert!(fills > sampled.len() + chunks + 1, "no fallback: {fills}");
}
