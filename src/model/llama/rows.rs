//! The linear maps of a decoding step: a few rows (one token per sequence) times a
//! large weight matrix.
//!
//! candle's matmul (the `gemm` crate) packs the whole weight matrix into its own layout
//! on every call. For the 1-16 rows of a decoding step that copy costs more than the
//! products: for SmolLM2-135M on 2 cores, 0.09 s of a 0.15 s step at 16 rows, and a
//! step at 2 rows cost twice one at 1 row. Here each output is one dot product of an
//! input row and a weight row read in place, so the weights stream through once per
//! step and the cost grows with the rows only through the products.
//!
//! Every dot product runs in one fixed order (one 8-lane fused multiply-add
//! accumulator over the depth, then a fixed tree over its lanes), so an output's
//! bits depend only on its input row and weight row: not on the other rows, the batch
//! size, the thread count, the machine's caches or its instruction set (the same
//! fused operations run as AVX2 or as scalar `mul_add`).

use rayon::prelude::*;

/// Outputs per parallel task.
const BLOCK: usize = 48;

/// A tile: rows by weight rows, one accumulator each (12 of AVX2's 16 registers).
const ROWS: usize = 4;
const COLS: usize = 3;

/// `x` `(rows, inp)` times the transpose of `w` `(out, inp)`, both row-major: the
/// `(rows, out)` products, each `dot(x[r], w[o])` in the fixed order of [`dot`].
pub fn rows_times(x: &[f32], rows: usize, w: &[f32], inp: usize) -> Vec<f32> {
    assert!(inp > 0 && x.len() == rows * inp && w.len().is_multiple_of(inp));
    let out = w.len() / inp;
    // Transposed `(out, rows)`: each task writes one contiguous block of outputs.
    let mut yt = vec![0f32; out * rows];
    if rows == 0 {
        return yt;
    }
    yt.par_chunks_mut(BLOCK * rows)
        .enumerate()
        .for_each(|(b, ys)| {
            let o0 = b * BLOCK;
            let ws = &w[o0 * inp..(o0 + ys.len() / rows) * inp];
            with_lanes(Block {
                x,
                rows,
                ws,
                inp,
                ys,
            });
        });
    let mut y = vec![0f32; rows * out];
    for (o, col) in yt.chunks_exact(rows).enumerate() {
        for (r, v) in col.iter().enumerate() {
            y[r * out + o] = *v;
        }
    }
    y
}

/// Runs `op` with AVX2's 8-lane vectors where the CPU has them, else scalar: the
/// instruction sets whose vectors have [`LANES`] lanes, so [`tile`] runs vectorised.
/// Not `pulp::Arch::new()`: with pulp's `x86-v4` feature (enabled for a while, and by
/// any crate in the build that asks for it) it picks 16-lane vectors on a CPU with
/// AVX-512, and [`tile`] then falls back to a scalar [`dot`] per output (the same bits,
/// a third of the speed: the in-process evaluator's steps were 3x slower with it).
#[inline(always)]
pub(super) fn with_lanes<W: pulp::WithSimd>(op: W) -> W::Output {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return pulp::Simd::vectorize(simd, op);
    }
    pulp::Simd::vectorize(pulp::Scalar::new(), op)
}

/// One task of [`rows_times`], compiled for AVX2 where the CPU has it ([`with_lanes`]).
struct Block<'a> {
    x: &'a [f32],
    rows: usize,
    ws: &'a [f32],
    inp: usize,
    ys: &'a mut [f32],
}

impl pulp::WithSimd for Block<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Block {
            x,
            rows,
            ws,
            inp,
            ys,
        } = self;
        let out = ys.len() / rows;
        let row = |r: usize| &x[r * inp..][..inp];
        let col = |o: usize| &ws[o * inp..][..inp];
        let mut o = 0;
        while o < out {
            let cols = if o + COLS <= out { COLS } else { 1 };
            let mut r = 0;
            while r < rows {
                let n = if r + ROWS <= rows { ROWS } else { 1 };
                let mut put = |i: usize, j: usize, v: f32| ys[(o + j) * rows + r + i] = v;
                match (n, cols) {
                    (ROWS, COLS) => each(
                        tile(
                            simd,
                            [0, 1, 2, 3].map(|i| row(r + i)),
                            [0, 1, 2].map(|j| col(o + j)),
                        ),
                        &mut put,
                    ),
                    (ROWS, _) => each(
                        tile(simd, [0, 1, 2, 3].map(|i| row(r + i)), [col(o)]),
                        &mut put,
                    ),
                    (_, COLS) => each(
                        tile(simd, [row(r)], [0, 1, 2].map(|j| col(o + j))),
                        &mut put,
                    ),
                    _ => each(tile(simd, [row(r)], [col(o)]), &mut put),
                }
                r += n;
            }
            o += cols;
        }
    }
}

/// Calls `put(i, j, v)` for each value of a tile.
#[inline(always)]
fn each<const R: usize, const C: usize>(t: [[f32; C]; R], put: &mut impl FnMut(usize, usize, f32)) {
    for (i, tr) in t.iter().enumerate() {
        for (j, v) in tr.iter().enumerate() {
            put(i, j, *v);
        }
    }
}

/// Lanes of one accumulator.
const LANES: usize = 8;

/// `dot(xs[i], ws[j])` for each `i`, `j`, every one in the order of [`dot`], with `S`'s
/// vectors when they have [`LANES`] lanes (AVX2): each vector of `xs` and `ws` is
/// loaded once for the whole tile.
#[inline(always)]
pub(super) fn tile<S: pulp::Simd, const R: usize, const C: usize>(
    simd: S,
    xs: [&[f32]; R],
    ws: [&[f32]; C],
) -> [[f32; C]; R] {
    if S::F32_LANES != LANES {
        return std::array::from_fn(|i| std::array::from_fn(|j| dot(xs[i], ws[j])));
    }
    let xv: [&[S::f32s]; R] = xs.map(|x| S::as_simd_f32s(x).0);
    let wv: [&[S::f32s]; C] = ws.map(|w| S::as_simd_f32s(w).0);
    let steps = xv[0].len();
    let mut acc = [[simd.splat_f32s(0.0); C]; R];
    for p in 0..steps {
        let w: [S::f32s; C] = std::array::from_fn(|j| wv[j][p]);
        for i in 0..R {
            let xi = xv[i][p];
            for j in 0..C {
                acc[i][j] = simd.mul_add_f32s(xi, w[j], acc[i][j]);
            }
        }
    }
    std::array::from_fn(|i| {
        std::array::from_fn(|j| {
            let lanes: &[f32] = pulp::bytemuck::cast_slice(std::slice::from_ref(&acc[i][j]));
            finish(lanes, xs[i], ws[j], steps * LANES)
        })
    })
}

/// One dot product in the order every output of [`rows_times`] uses: lane `j` of one
/// accumulator sums the fused products at `8 p + j` in order of `p`; then [`finish`]
/// sums the lanes and the tail.
#[inline(always)]
fn dot(x: &[f32], w: &[f32]) -> f32 {
    let full = w.len() / LANES * LANES;
    let mut a = [0f32; LANES];
    for k in (0..full).step_by(LANES) {
        for j in 0..LANES {
            a[j] = x[k + j].mul_add(w[k + j], a[j]);
        }
    }
    finish(&a, x, w, full)
}

/// A fixed tree over the lanes `s`, plus the fused products from `full` on, in order.
#[inline(always)]
fn finish(s: &[f32], x: &[f32], w: &[f32], full: usize) -> f32 {
    let mut tail = 0f32;
    for k in full..w.len() {
        tail = x[k].mul_add(w[k], tail);
    }
    ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7])) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32 ^ seed).wrapping_mul(2_654_435_761);
                (h >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn every_output_is_its_row_and_weight_dot_whatever_the_rows() {
        for inp in [1, 7, 16, 17, 576, 1539] {
            let out = 130;
            let w = data(out * inp, 1);
            let x = data(9 * inp, 2);
            for rows in [1, 2, 3, 4, 5, 9] {
                let y = rows_times(&x[..rows * inp], rows, &w, inp);
                for r in 0..rows {
                    for o in 0..out {
                        let xr = &x[r * inp..][..inp];
                        let wo = &w[o * inp..][..inp];
                        let exact: f64 =
                            xr.iter().zip(wo).map(|(a, b)| *a as f64 * *b as f64).sum();
                        let got = y[r * out + o];
                        assert_eq!(got.to_bits(), dot(xr, wo).to_bits(), "{inp} {rows} {r} {o}");
                        assert!(
                            (got as f64 - exact).abs() < 1e-5 * (inp as f64).sqrt(),
                            "{got} {exact}"
                        );
                    }
                }
            }
        }
    }

    /// The lanes [`with_lanes`] runs with: [`LANES`] wherever the CPU has AVX2 and FMA
    /// (an AVX-512 CPU too), so that [`tile`] takes its vector path.
    #[test]
    fn tiles_run_vectorised_where_the_cpu_has_avx2() {
        struct Lanes;
        impl pulp::WithSimd for Lanes {
            type Output = usize;
            fn with_simd<S: pulp::Simd>(self, _: S) -> usize {
                S::F32_LANES
            }
        }
        let lanes = with_lanes(Lanes);
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            assert_eq!(lanes, LANES);
            return;
        }
        assert_eq!(lanes, 1);
    }
}
