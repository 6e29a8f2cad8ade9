//! Selections and axis operations on materialised f32 buffers, for the compiled runtime:
//! top-k cut points, quantiles, ranks and reductions along an axis.
//!
//! Each reproduces [`crate::semantics`] and the interpreter bit for bit, and gives
//! the same result for any number of threads: selections count with integer histograms
//! (merged exactly, whatever the split), and every float is computed by one thread in the
//! canonical order. Top-k and quantiles select in O(n) with a radix select over the bits of
//! an order key, never a sort: one histogram pass over the input picks the first digit, the
//! keys sharing it are gathered, and the later digits are picked among them.
//!
//! Selections poll a [`Cancel`] token per chunk of each pass: once it fires the remaining
//! chunks are skipped and the selection returns the reason (its partial result unused).

use crate::cancel::{Cancel, Stop};
use crate::ir::reference::magnitude_key;
use crate::semantics::{self as sem, RED_BLOCK, RED_LANES};
use crate::types::ops::AxisOp;
use rayon::prelude::*;

/// Elements per parallel work item; inputs under two chunks are done on the calling thread.
const CHUNK: usize = 1 << 16;

/// Radix digits of a 32-bit key, most significant first: (shift, width). Large inputs take
/// a 16-bit first digit (a 64 Ki-bucket histogram, which small inputs would not repay).
const DIGITS_SMALL: &[(u32, u32)] = &[(21, 11), (10, 11), (0, 10)];
const DIGITS_LARGE: &[(u32, u32)] = &[(16, 16), (0, 16)];
const LARGE: usize = 1 << 20;

// `combine` below spells out the canonical combination of exactly eight lanes.
const _: () = assert!(RED_LANES == 8);

// ---- top-k ----

/// A cut point of the top-k order (magnitude key descending, index ascending): element `i`
/// is among the first `count` iff `mk(x_i) > t || (mk(x_i) == t && i < cut)`, where `mk` is
/// [`magnitude_key`] (|x| as bits, NaN above everything).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TopkCut {
    pub t: u32,
    pub cut: u64,
}

impl TopkCut {
    /// Whether element `i`, of value `x`, comes before the cut.
    #[inline]
    pub fn takes(&self, i: usize, x: f32) -> bool {
        let k = magnitude_key(x);
        k > self.t || (k == self.t && (i as u64) < self.cut)
    }
}

/// The cut taking the first `count` elements of the top-k order. `count == 0` gives
/// `(u32::MAX, 0)` and `count >= n` gives `(0, n)`; both take what they should.
pub fn topk_cut(x: &[f32], count: usize, cancel: &Cancel) -> Result<TopkCut, Stop> {
    let n = x.len();
    if count == 0 {
        return Ok(TopkCut {
            t: u32::MAX,
            cut: 0,
        });
    }
    if count >= n {
        return Ok(TopkCut {
            t: 0,
            cut: n as u64,
        });
    }
    // Magnitude descending is the complement's ascending order: the count-th largest
    // magnitude is the (count - 1)-th smallest complement, and `less` elements lie above it.
    let sel = radix_select(x, &|v| !magnitude_key(v), count - 1, cancel)?;
    let t = !sel.key;
    // The elements of key t, counted chunk by chunk: from the gathered keys when there are.
    let counts: Vec<usize> = match &sel.gathered {
        Some(parts) => {
            let count = |p: &Vec<u32>| p.iter().filter(|&&k| k == sel.key).count();
            if sel.equal < 2 * CHUNK {
                parts.iter().map(count).collect()
            } else {
                parts.par_iter().map(count).collect()
            }
        }
        None => map_chunks(x, cancel, |c| {
            c.iter().filter(|&&v| magnitude_key(v) == t).count()
        }),
    };
    cancel.check()?;
    // The (count - less)-th of them is the last one taken.
    let mut left = count - sel.less;
    for (ci, &c) in counts.iter().enumerate() {
        if left <= c {
            let base = ci * CHUNK;
            let end = (base + CHUNK).min(n);
            let j = x[base..end]
                .iter()
                .enumerate()
                .filter(|&(_, &v)| magnitude_key(v) == t)
                .nth(left - 1)
                .map(|(j, _)| j)
                .expect("topk_cut: the chunk's count");
            return Ok(TopkCut {
                t,
                cut: (base + j + 1) as u64,
            });
        }
        left -= c;
    }
    unreachable!("topk_cut: fewer elements of key {t:#x} than counted")
}

/// `(k, skip)` clamped as [`sem::topk_mask`] clamps them: the mask of `topk_mask(x, k, skip)`
/// is `before(k + skip) && !before(skip)`, with `before(c)` from `topk_cut(x, c)`.
pub fn topk_counts(n: usize, k: usize, skip: usize) -> (usize, usize) {
    let k = k.min(n);
    (k, skip.min(n - k))
}

// ---- radix select ----

/// `f` of every chunk of `x`, in order; in parallel for large `x`. Once `cancel` fires
/// the chunks left give `T::default()` (the caller checks `cancel` before using them).
fn map_chunks<T: Send + Default>(
    x: &[f32],
    cancel: &Cancel,
    f: impl Fn(&[f32]) -> T + Sync + Send,
) -> Vec<T> {
    let f = |c: &[f32]| if cancel.fired() { T::default() } else { f(c) };
    if x.len() < 2 * CHUNK {
        x.chunks(CHUNK).map(f).collect()
    } else {
        x.par_chunks(CHUNK).map(f).collect()
    }
}

/// A histogram of `buckets` counts over `items`, filled by `count`; in parallel, and
/// merged exactly, when `parallel`. Fails once `cancel` fires (chunks left are skipped).
fn histogram<T: Sync>(
    items: &[T],
    grain: usize,
    parallel: bool,
    buckets: usize,
    cancel: &Cancel,
    count: impl Fn(&mut [usize], &[T]) + Sync + Send,
) -> Result<Vec<usize>, Stop> {
    if !parallel {
        let mut h = vec![0; buckets];
        for c in items.chunks(grain.max(1)) {
            cancel.check()?;
            count(&mut h, c);
        }
        return Ok(h);
    }
    let h = items
        .par_chunks(grain)
        .fold(
            || vec![0usize; buckets],
            |mut h, c| {
                if !cancel.fired() {
                    count(&mut h, c);
                }
                h
            },
        )
        .reduce(
            || vec![0usize; buckets],
            |mut a, b| {
                for (p, q) in a.iter_mut().zip(&b) {
                    *p += q;
                }
                a
            },
        );
    cancel.check()?;
    Ok(h)
}

/// The bucket holding the `rank`-th counted item, the rank within it, and the count below.
fn walk(hist: &[usize], mut rank: usize, mut less: usize) -> (usize, usize, usize) {
    let mut b = 0;
    while rank >= hist[b] {
        rank -= hist[b];
        less += hist[b];
        b += 1;
    }
    (b, rank, less)
}

/// A selected key.
struct Selection {
    key: u32,
    /// How many keys are smaller, and how many equal it.
    less: usize,
    equal: usize,
    /// The keys sharing its first digit, chunk by chunk of the input in index order; `None`
    /// when they were too many to be worth gathering (later passes then reread the input).
    gathered: Option<Vec<Vec<u32>>>,
}

/// The `rank`-th smallest key (0-based). One histogram pass over the input picks the first
/// digit; the keys sharing it are gathered (unless they are a large part of the input) and
/// the later digits are picked from them.
fn radix_select<K: Fn(f32) -> u32 + Sync>(
    x: &[f32],
    key: &K,
    rank: usize,
    cancel: &Cancel,
) -> Result<Selection, Stop> {
    debug_assert!(rank < x.len());
    let n = x.len();
    let digits = if n >= LARGE {
        DIGITS_LARGE
    } else {
        DIGITS_SMALL
    };
    let (shift, width) = digits[0];
    let hist = histogram(x, CHUNK, n >= 2 * CHUNK, 1 << width, cancel, |h, c| {
        for &v in c {
            h[(key(v) >> shift) as usize] += 1;
        }
    })?;
    let (b, mut rank, mut less) = walk(&hist, rank, 0);
    let mut equal = hist[b];
    let mut prefix = (b as u32) << shift;
    let mut mask = !0u32 << shift;
    let gathered = (equal <= n / 4).then(|| {
        let top = b as u32;
        map_chunks(x, cancel, |c| {
            c.iter()
                .map(|&v| key(v))
                .filter(|&k| k >> shift == top)
                .collect::<Vec<u32>>()
        })
    });
    cancel.check()?;
    for &(shift, width) in &digits[1..] {
        let digit = (1u32 << width) - 1;
        let (pre, msk) = (prefix, mask);
        let bucket = |k: u32| (k & msk == pre).then_some(((k >> shift) & digit) as usize);
        let hist = match &gathered {
            Some(parts) => histogram(parts, 1, equal >= 2 * CHUNK, 1 << width, cancel, |h, ps| {
                for p in ps {
                    for &k in p {
                        if let Some(i) = bucket(k) {
                            h[i] += 1;
                        }
                    }
                }
            }),
            None => histogram(x, CHUNK, n >= 2 * CHUNK, 1 << width, cancel, |h, c| {
                for &v in c {
                    if let Some(i) = bucket(key(v)) {
                        h[i] += 1;
                    }
                }
            }),
        }?;
        let (b, r, l) = walk(&hist, rank, less);
        (rank, less, equal) = (r, l, hist[b]);
        prefix |= (b as u32) << shift;
        mask |= digit << shift;
    }
    Ok(Selection {
        key: prefix,
        less,
        equal,
        gathered,
    })
}

// ---- quantile ----

/// A key whose unsigned order is `f32::total_cmp`'s (so -0 < +0).
#[inline]
fn total_key(x: f32) -> u32 {
    let b = x.to_bits();
    b ^ ((((b as i32) >> 31) as u32) | 0x8000_0000)
}

fn from_total_key(k: u32) -> f32 {
    f32::from_bits(if k & 0x8000_0000 != 0 {
        k ^ 0x8000_0000
    } else {
        !k
    })
}

/// [`sem::quantile`], bit for bit: the order statistics by radix select.
pub fn quantile(x: &[f32], q: f32, cancel: &Cancel) -> Result<f32, Stop> {
    let n = x.len();
    if n == 0 || q.is_nan() {
        return Ok(f32::NAN);
    }
    let has_nan = map_chunks(x, cancel, |c| c.iter().any(|v| v.is_nan())).contains(&true);
    cancel.check()?;
    if has_nan {
        return Ok(f32::NAN);
    }
    let q = sem::decimal_f64(q.clamp(0.0, 1.0));
    let pos = q * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = pos - lo as f64;
    let sel = radix_select(x, &total_key, lo, cancel)?;
    let a = from_total_key(sel.key);
    let b = if hi == lo || lo + 1 < sel.less + sel.equal {
        a
    } else {
        // The next order statistic is the smallest key above a's.
        let above = map_chunks(x, cancel, |c| {
            c.iter()
                .map(|&v| total_key(v))
                .filter(|&k| k > sel.key)
                .min()
        });
        cancel.check()?;
        above.into_iter().flatten().min().map_or(a, from_total_key)
    };
    let (a, b) = (a as f64, b as f64);
    Ok((a + (b - a) * frac) as f32)
}

// ---- ranks ----

/// Shape of `x` split around `axis`: (outer, len, inner).
fn split(x: &[f32], shape: &[usize], axis: usize) -> (usize, usize, usize) {
    assert!(
        axis < shape.len(),
        "axis {axis} of a {}-D tensor",
        shape.len()
    );
    assert_eq!(
        x.len(),
        shape.iter().product::<usize>(),
        "data of shape {shape:?}"
    );
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// The interpreter's `Op::Ranks`: [`sem::ranks`] of every fibre along `axis` (a scalar, of
/// empty `shape`, ranks 0). Fibres left once `cancel` fires are skipped.
pub fn ranks(x: &[f32], shape: &[usize], axis: usize, cancel: &Cancel) -> Result<Vec<f32>, Stop> {
    if shape.is_empty() {
        return Ok(vec![0.0]);
    }
    let (_, len, inner) = split(x, shape, axis);
    let n = x.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let min_fibres = (CHUNK / len).max(1);
    let mut out = vec![0.0f32; n];
    if inner == 1 {
        out.par_chunks_mut(len)
            .zip(x.par_chunks(len))
            .with_min_len(min_fibres)
            .for_each(|(dst, fibre)| {
                if !cancel.fired() {
                    dst.copy_from_slice(&sem::ranks(fibre))
                }
            });
        cancel.check()?;
        return Ok(out);
    }
    // Ranks fibre by fibre (fibre o * inner + i at [f * len, (f + 1) * len)), then put back.
    let mut fib = vec![0.0f32; n];
    fib.par_chunks_mut(len)
        .enumerate()
        .with_min_len(min_fibres)
        .for_each(|(f, dst)| {
            if cancel.fired() {
                return;
            }
            let base = (f / inner) * len * inner + f % inner;
            let fibre: Vec<f32> = (0..len).map(|j| x[base + j * inner]).collect();
            dst.copy_from_slice(&sem::ranks(&fibre));
        });
    out.par_chunks_mut(inner)
        .enumerate()
        .with_min_len((CHUNK / inner).max(1))
        .for_each(|(r, row)| {
            let (o, j) = (r / len, r % len);
            for (i, v) in row.iter_mut().enumerate() {
                *v = fib[(o * inner + i) * len + j];
            }
        });
    cancel.check()?;
    Ok(out)
}

// ---- reductions along an axis ----

/// Fibres reduced together when the axis is not the last (lanes of 8 x TILE f64).
const TILE: usize = 256;

/// The canonical combination of one block's lane partials.
#[inline]
fn combine(l: &[f64]) -> f64 {
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

/// [`sem::canonical_sum`] of `f` over a contiguous slice.
fn canonical_sum(s: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut total = 0.0f64;
    for block in s.chunks(RED_BLOCK) {
        let mut lanes = [0.0f64; RED_LANES];
        let mut it = block.chunks_exact(RED_LANES);
        for c in &mut it {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l += f(v);
            }
        }
        for (l, &v) in lanes.iter_mut().zip(it.remainder()) {
            *l += f(v);
        }
        total += combine(&lanes);
    }
    total
}

fn square(v: f32) -> f64 {
    let v = v as f64;
    v * v
}

/// The interpreter's `fold_minmax`: NaN for an empty fibre.
fn fold(s: impl Iterator<Item = f32>, f: impl Fn(f32, f32) -> f32) -> f32 {
    s.reduce(f).unwrap_or(f32::NAN)
}

/// One contiguous fibre.
fn reduce_fibre(s: &[f32], op: AxisOp) -> f32 {
    match op {
        AxisOp::Sum => canonical_sum(s, |v| v as f64) as f32,
        AxisOp::Mean => (canonical_sum(s, |v| v as f64) / s.len() as f64) as f32,
        AxisOp::Norm => canonical_sum(s, square).sqrt() as f32,
        AxisOp::Max => fold(s.iter().copied(), sem::max),
        AxisOp::Min => fold(s.iter().copied(), sem::min),
    }
}

/// `dst.len()` neighbouring fibres: element j of fibre i is `x[base + j * inner + i]`.
/// Each fibre accumulates in exactly the order of [`reduce_fibre`].
fn reduce_tile(x: &[f32], base: usize, len: usize, inner: usize, op: AxisOp, dst: &mut [f32]) {
    let w = dst.len();
    let rows = (0..len).map(|j| &x[base + j * inner..base + j * inner + w]);
    match op {
        AxisOp::Sum => {
            let t = tile_sums(rows, w, |v| v as f64);
            for (d, t) in dst.iter_mut().zip(t) {
                *d = t as f32;
            }
        }
        AxisOp::Mean => {
            let t = tile_sums(rows, w, |v| v as f64);
            for (d, t) in dst.iter_mut().zip(t) {
                *d = (t / len as f64) as f32;
            }
        }
        AxisOp::Norm => {
            let t = tile_sums(rows, w, square);
            for (d, t) in dst.iter_mut().zip(t) {
                *d = t.sqrt() as f32;
            }
        }
        AxisOp::Max => tile_fold(rows, dst, sem::max),
        AxisOp::Min => tile_fold(rows, dst, sem::min),
    }
}

/// Canonical sums of `f` down `w` columns, given row by row.
fn tile_sums<'a>(
    rows: impl Iterator<Item = &'a [f32]>,
    w: usize,
    f: impl Fn(f32) -> f64,
) -> Vec<f64> {
    let mut total = vec![0.0f64; w];
    // lanes[l * w + i]: lane l of column i, for the current block.
    let mut lanes = vec![0.0f64; RED_LANES * w];
    let mut flush = |lanes: &mut [f64]| {
        for (i, t) in total.iter_mut().enumerate() {
            let l: [f64; RED_LANES] = std::array::from_fn(|lane| lanes[lane * w + i]);
            *t += combine(&l);
        }
        lanes.fill(0.0);
    };
    let mut j = 0;
    for row in rows {
        let l = j % RED_LANES;
        for (a, &v) in lanes[l * w..(l + 1) * w].iter_mut().zip(row) {
            *a += f(v);
        }
        j += 1;
        if j == RED_BLOCK {
            flush(&mut lanes);
            j = 0;
        }
    }
    if j > 0 {
        flush(&mut lanes);
    }
    total
}

/// The interpreter's fold down columns (from row 0); NaN when there are no rows.
fn tile_fold<'a>(
    mut rows: impl Iterator<Item = &'a [f32]>,
    dst: &mut [f32],
    f: impl Fn(f32, f32) -> f32,
) {
    let Some(first) = rows.next() else {
        dst.fill(f32::NAN);
        return;
    };
    dst.copy_from_slice(first);
    for row in rows {
        for (a, &v) in dst.iter_mut().zip(row) {
            *a = f(*a, v);
        }
    }
}

/// The interpreter's `Op::Axis(op, axis, keepdim)`: the output shape (the axis kept as 1
/// when `keepdim`, else removed) and data. Sums in f64 in the canonical order per fibre,
/// Mean = sum / n in f64, Norm = sqrt of the f64 sum of squares, Max / Min fold
/// ([`sem::max`] / [`sem::min`]); an empty fibre gives NaN for Mean, Max and Min.
pub fn reduce_axis(
    x: &[f32],
    shape: &[usize],
    axis: usize,
    keepdim: bool,
    op: AxisOp,
) -> (Vec<usize>, Vec<f32>) {
    let (outer, len, inner) = split(x, shape, axis);
    let mut out_shape = shape.to_vec();
    if keepdim {
        out_shape[axis] = 1;
    } else {
        out_shape.remove(axis);
    }
    let mut out = vec![0.0f32; outer * inner];
    if out.is_empty() {
        return (out_shape, out);
    }
    if inner == 1 {
        out.par_iter_mut()
            .enumerate()
            .with_min_len((CHUNK / len.max(1)).max(1))
            .for_each(|(f, d)| *d = reduce_fibre(&x[f * len..(f + 1) * len], op));
    } else {
        let min_tiles = (CHUNK / (TILE * len.max(1))).max(1);
        out.par_chunks_mut(inner).enumerate().for_each(|(o, row)| {
            row.par_chunks_mut(TILE)
                .enumerate()
                .with_min_len(min_tiles)
                .for_each(|(t, dst)| {
                    reduce_tile(x, o * len * inner + t * TILE, len, inner, op, dst)
                });
        });
    }
    (out_shape, out)
}
