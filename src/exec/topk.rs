//! Top-k cut points over keys that are recomputed chunk by chunk (no buffer of the
//! tensor's size): an O(n) radix select in at most three passes. Pass 1 histograms
//! the top 16 bits of every magnitude key; pass 2 the low 16 bits inside the bucket
//! where each requested rank falls, which fixes the threshold key `t`; pass 3 (only
//! when `t` is tied beyond the rank) finds the index of the last tied element taken.
//! Histograms are integer counts merged in a fixed order: the same result for any
//! number of threads.

use super::select::TopkCut;
use crate::ir::reference::magnitude_key;
use rayon::prelude::*;

const BINS: usize = 1 << 16;
/// Elements per parallel histogram task.
const TASK: usize = 1 << 20;

fn histogram(keys: &[f32], bucket: Option<u32>) -> Vec<u64> {
    let parts: Vec<Vec<u32>> = keys
        .par_chunks(TASK)
        .map(|part| {
            let mut h = vec![0u32; BINS];
            match bucket {
                None => {
                    for &x in part {
                        h[(magnitude_key(x) >> 16) as usize] += 1;
                    }
                }
                Some(b) => {
                    for &x in part {
                        let k = magnitude_key(x);
                        if k >> 16 == b {
                            h[(k & 0xffff) as usize] += 1;
                        }
                    }
                }
            }
            h
        })
        .collect();
    let mut out = vec![0u64; BINS];
    for p in parts {
        for (o, x) in out.iter_mut().zip(&p) {
            *o += *x as u64;
        }
    }
    out
}

/// The bin holding rank `r` (1-based, counting from the largest bin down) and the
/// rank within it.
fn locate(h: &[u64], r: u64) -> (u32, u64) {
    let mut above = 0u64;
    for b in (0..BINS).rev() {
        if above + h[b] >= r {
            return (b as u32, r - above);
        }
        above += h[b];
    }
    (0, r)
}

/// One request: the first `count` elements of key `key` in the order (magnitude
/// descending, index ascending).
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub key: usize,
    pub count: usize,
}

enum State {
    Done(TopkCut),
    /// Bucket (top 16 bits) and the rank within it.
    Bucket(u32, u64),
    /// Threshold key, how many elements equal to it are taken, how many seen so far.
    Tie(u32, u64, u64),
}

/// Cut points for every request. `n` elements per key, in `chunks` chunks;
/// `fill(c, bufs)` writes chunk `c`'s keys into `bufs` (one per key, resized by the
/// callee) and returns the index of its first element.
pub fn select_chunked(
    n_keys: usize,
    n: usize,
    chunks: usize,
    requests: &[Request],
    fill: &mut dyn FnMut(usize, &mut [Vec<f32>]) -> usize,
) -> Vec<TopkCut> {
    let mut st: Vec<State> = requests
        .iter()
        .map(|r| match r.count {
            0 => State::Done(TopkCut {
                t: u32::MAX,
                cut: 0,
            }),
            c if c >= n => State::Done(TopkCut {
                t: 0,
                cut: n as u64,
            }),
            c => State::Bucket(0, c as u64),
        })
        .collect();
    let mut bufs = vec![Vec::new(); n_keys];
    let pending = |st: &[State]| st.iter().any(|s| !matches!(s, State::Done(_)));
    if !pending(&st) {
        return done(st);
    }
    // Pass 1: top 16 bits.
    let mut hi = vec![vec![0u64; BINS]; n_keys];
    let wanted: Vec<bool> = (0..n_keys)
        .map(|k| {
            requests
                .iter()
                .zip(&st)
                .any(|(r, s)| r.key == k && !matches!(s, State::Done(_)))
        })
        .collect();
    for c in 0..chunks {
        fill(c, &mut bufs);
        for k in (0..n_keys).filter(|&k| wanted[k]) {
            add(&mut hi[k], &histogram(&bufs[k], None));
        }
    }
    for (r, s) in requests.iter().zip(st.iter_mut()) {
        if let State::Bucket(_, rank) = *s {
            let (b, within) = locate(&hi[r.key], rank);
            *s = State::Bucket(b, within);
        }
    }
    // Pass 2: low 16 bits inside each request's bucket.
    let mut lo: Vec<Vec<u64>> = vec![vec![0u64; BINS]; requests.len()];
    for c in 0..chunks {
        fill(c, &mut bufs);
        for (i, (r, s)) in requests.iter().zip(&st).enumerate() {
            if let State::Bucket(b, _) = *s {
                add(&mut lo[i], &histogram(&bufs[r.key], Some(b)));
            }
        }
    }
    for (i, s) in st.iter_mut().enumerate() {
        if let State::Bucket(b, rank) = *s {
            let (l, m) = locate(&lo[i], rank);
            let t = (b << 16) | l;
            *s = if m == lo[i][l as usize] {
                State::Done(TopkCut { t, cut: n as u64 })
            } else {
                State::Tie(t, m, 0)
            };
        }
    }
    // Pass 3: the index of the m-th element equal to t, in index order.
    if pending(&st) {
        for c in 0..chunks {
            if !pending(&st) {
                break;
            }
            let start = fill(c, &mut bufs);
            for (r, s) in requests.iter().zip(st.iter_mut()) {
                if let State::Tie(t, m, seen) = *s {
                    *s = scan_ties(&bufs[r.key], start, t, m, seen);
                }
            }
        }
    }
    done(st)
}

fn add(acc: &mut [u64], h: &[u64]) {
    for (a, x) in acc.iter_mut().zip(h) {
        *a += x;
    }
}

/// Counts elements equal to `t` in one chunk (in parallel); if the m-th falls in it,
/// finds its index.
fn scan_ties(keys: &[f32], start: usize, t: u32, m: u64, seen: u64) -> State {
    let count = keys
        .par_chunks(TASK)
        .map(|p| p.iter().filter(|&&x| magnitude_key(x) == t).count() as u64)
        .sum::<u64>();
    if seen + count < m {
        return State::Tie(t, m, seen + count);
    }
    let mut s = seen;
    for (i, &x) in keys.iter().enumerate() {
        if magnitude_key(x) == t {
            s += 1;
            if s == m {
                return State::Done(TopkCut {
                    t,
                    cut: (start + i) as u64 + 1,
                });
            }
        }
    }
    unreachable!("topk: the tied element was counted but not found")
}

fn done(st: Vec<State>) -> Vec<TopkCut> {
    st.into_iter()
        .map(|s| match s {
            State::Done(c) => c,
            _ => unreachable!("topk: unresolved request"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
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
                let mut fill = |c: usize, bufs: &mut [Vec<f32>]| {
                    let lo = c * chunk;
                    bufs[0].clear();
                    bufs[0].extend_from_slice(&x[lo..(lo + chunk).min(n)]);
                    lo
                };
                let cuts = select_chunked(1, n, chunks, &reqs, &mut fill);
                for (&k, c) in ks.iter().zip(cuts) {
                    assert_eq!(
                        mask(&x, c),
                        topk_mask(&x, k, 0),
                        "n {n} k {k} chunk {chunk}"
                    );
                }
            }
        }
    }
}
