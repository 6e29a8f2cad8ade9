//! The compiled runtime's host selections and axis ops against the interpreter's semantics:
//! heavy ties, NaN, ±0, ±inf, every k for small inputs, and the same results for 1 and 2 threads.

use mergec::cancel::Cancel;
use mergec::exec::select::{TopkCut, quantile, ranks, reduce_axis, topk_counts, topk_cut};
use mergec::interp::Tensor;
use mergec::interp::tensor_ops;
use mergec::semantics as sem;
use mergec::types::ops::AxisOp;

const NEVER: Cancel = Cancel::NEVER;

/// The sizes asked for, then one past 2^20 (where the first radix digit widens to 16 bits).
const SIZES: [usize; 10] = [0, 1, 2, 3, 50, 783, 4096, 4097, 100_003, 1_100_003];

/// A deterministic stream of draws.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        sem::mix64(self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn bf16(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

/// Kinds of data: heavy ties, ties with specials, any bf16 bit pattern, and no NaN.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Ties,
    TiesSpecial,
    AnyBf16,
    Finite,
}

const KINDS: [Kind; 4] = [Kind::Ties, Kind::TiesSpecial, Kind::AnyBf16, Kind::Finite];

fn data(kind: Kind, n: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng(seed ^ ((n as u64) << 20));
    let ties: Vec<f32> = [0.5, -0.5, 0.1, -0.1, 1.0 / 3.0, -2.0, 0.0, 7.25e-3]
        .into_iter()
        .map(bf16)
        .collect();
    let special = [
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7fc0_1234),
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::from_bits(1),
        -f32::from_bits(1),
    ];
    (0..n)
        .map(|_| match kind {
            Kind::Ties => ties[r.below(ties.len())],
            Kind::TiesSpecial => {
                if r.below(8) == 0 {
                    special[r.below(special.len())]
                } else {
                    ties[r.below(ties.len())]
                }
            }
            Kind::AnyBf16 => f32::from_bits(((r.next() >> 40) as u32 & 0xffff) << 16),
            Kind::Finite => {
                let v = match r.below(4) {
                    0 => ties[r.below(ties.len())],
                    1 => special[3 + r.below(special.len() - 3)],
                    _ => f32::from_bits(((r.next() >> 40) as u32 & 0xffff) << 16),
                };
                if v.is_nan() { 1.5 } else { v }
            }
        })
        .collect()
}

fn mask_of(x: &[f32], c: TopkCut) -> Vec<bool> {
    x.iter().enumerate().map(|(i, &v)| c.takes(i, v)).collect()
}

/// The mask of `topk_mask(x, k, skip)` rebuilt from two cuts, as a backend does.
fn mask_via_cuts(x: &[f32], k: usize, skip: usize) -> Vec<bool> {
    let (k, skip) = topk_counts(x.len(), k, skip);
    let hi = topk_cut(x, k + skip, &NEVER).unwrap();
    let lo = topk_cut(x, skip, &NEVER).unwrap();
    x.iter()
        .enumerate()
        .map(|(i, &v)| hi.takes(i, v) && !lo.takes(i, v))
        .collect()
}

/// The cut's definition, checked directly: exactly `count` taken, and they are the first.
fn check_cut_definition(x: &[f32], count: usize, c: TopkCut) {
    let n = x.len();
    if count == 0 {
        assert_eq!(
            c,
            TopkCut {
                t: u32::MAX,
                cut: 0
            }
        );
    } else if count >= n {
        assert_eq!(
            c,
            TopkCut {
                t: 0,
                cut: n as u64
            }
        );
    }
    let taken = mask_of(x, c).iter().filter(|&&b| b).count();
    assert_eq!(taken, count.min(n), "n {n} count {count} cut {c:?}");
}

fn sample_ks(n: usize, r: &mut Rng) -> Vec<usize> {
    if n <= 4097 {
        return (0..=n).collect();
    }
    let mut ks = vec![0, 1, 2, n / 2, n - 1, n, n + 5];
    ks.extend((0..12).map(|_| r.below(n + 1)));
    ks
}

#[test]
fn topk_cut_matches_topk_mask() {
    for kind in KINDS {
        for &n in &SIZES {
            let x = data(kind, n, 1);
            let mut r = Rng(n as u64);
            for k in sample_ks(n, &mut r) {
                let c = topk_cut(&x, k, &NEVER).unwrap();
                check_cut_definition(&x, k, c);
                assert_eq!(
                    mask_of(&x, c),
                    sem::topk_mask(&x, k, 0),
                    "{kind:?} n {n} k {k} cut {c:?}"
                );
            }
        }
    }
}

#[test]
fn topk_with_skip_matches_topk_mask() {
    for kind in KINDS {
        for &n in &SIZES {
            let x = data(kind, n, 2);
            let mut r = Rng(n as u64 + 7);
            let pairs: Vec<(usize, usize)> = if n <= 50 {
                (0..=n + 1)
                    .flat_map(|k| (0..=n + 1).map(move |s| (k, s)))
                    .collect()
            } else {
                let mut p = vec![(0, 0), (n, n), (n / 2, n), (1, n - 1), (n - 1, 1)];
                p.extend((0..20).map(|_| (r.below(n + 1), r.below(n + 1))));
                p
            };
            for (k, skip) in pairs {
                assert_eq!(
                    mask_via_cuts(&x, k, skip),
                    sem::topk_mask(&x, k, skip),
                    "{kind:?} n {n} k {k} skip {skip}"
                );
            }
        }
    }
}

#[test]
fn topk_counts_clamp_like_topk_mask() {
    assert_eq!(topk_counts(10, 3, 2), (3, 2));
    assert_eq!(topk_counts(10, 12, 2), (10, 0));
    assert_eq!(topk_counts(10, 8, 5), (8, 2));
    assert_eq!(topk_counts(0, 3, 3), (0, 0));
}

#[test]
fn topk_cut_on_all_equal_and_all_nan() {
    for v in [0.0, -0.0, 1.0, f32::NAN, f32::INFINITY] {
        for n in [300_001, 1_100_000] {
            let x = vec![v; n];
            for k in [1, 2, n / 2, n - 1] {
                let c = topk_cut(&x, k, &NEVER).unwrap();
                assert_eq!(c.cut, k as u64, "{v} {k}");
                assert_eq!(mask_of(&x, c), sem::topk_mask(&x, k, 0));
            }
        }
    }
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
fn quantile_matches_semantics() {
    let mut qs = vec![
        0.0,
        -0.0,
        0.1,
        0.25,
        0.5,
        0.7,
        0.9,
        0.99,
        1.0,
        -1.0,
        2.0,
        f32::NAN,
        1.0 / 3.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    let mut r = Rng(99);
    qs.extend((0..10).map(|_| (r.next() >> 40) as f32 / 16_777_216.0));
    for kind in KINDS {
        for &n in &SIZES {
            let x = data(kind, n, 3);
            for &q in &qs {
                let (a, b) = (quantile(&x, q, &NEVER).unwrap(), sem::quantile(&x, q));
                assert!(same(a, b), "{kind:?} n {n} q {q}: {a} vs {b}");
            }
            if n > 0 && n <= 783 {
                // Every order statistic and every midpoint.
                for i in 0..n {
                    for q in [
                        i as f32 / (n - 1).max(1) as f32,
                        (i as f32 + 0.5) / n as f32,
                    ] {
                        let (a, b) = (quantile(&x, q, &NEVER).unwrap(), sem::quantile(&x, q));
                        assert!(same(a, b), "{kind:?} n {n} q {q}: {a} vs {b}");
                    }
                }
            }
        }
    }
}

#[test]
fn quantile_with_signed_zeros_and_infinities() {
    let x = [0.0, -0.0, 0.0, -0.0];
    for q in [0.0, 0.25, 0.4, 0.5, 0.75, 1.0] {
        let (a, b) = (quantile(&x, q, &NEVER).unwrap(), sem::quantile(&x, q));
        assert_eq!(a.to_bits(), b.to_bits(), "q {q}");
    }
    let inf = [f32::NEG_INFINITY, f32::INFINITY];
    assert!(same(
        quantile(&inf, 0.5, &NEVER).unwrap(),
        sem::quantile(&inf, 0.5)
    ));
}

/// The interpreter's `Op::Ranks` arm.
fn interp_ranks(x: &[f32], shape: &[usize], axis: usize) -> Vec<f32> {
    if shape.is_empty() {
        return vec![0.0];
    }
    let t = Tensor::new(shape.to_vec(), x.to_vec());
    tensor_ops::map_axis(&t, axis, sem::ranks).data
}

fn fold_minmax(get: &dyn Fn(usize) -> f32, n: usize, f: fn(f32, f32) -> f32) -> f32 {
    if n == 0 {
        return f32::NAN;
    }
    (1..n).fold(get(0), |acc, j| f(acc, get(j)))
}

/// The interpreter's `Op::Axis` arm.
fn interp_axis(
    x: &[f32],
    shape: &[usize],
    axis: usize,
    keepdim: bool,
    op: AxisOp,
) -> (Vec<usize>, Vec<f32>) {
    use tensor_ops::{fibre_sum, fibre_sum_sq, reduce_axis};
    let x = Tensor::new(shape.to_vec(), x.to_vec());
    let t = match op {
        AxisOp::Sum => reduce_axis(&x, axis, keepdim, |g, n| fibre_sum(g, n) as f32),
        AxisOp::Mean => reduce_axis(&x, axis, keepdim, |g, n| {
            (fibre_sum(g, n) / n as f64) as f32
        }),
        AxisOp::Norm => reduce_axis(&x, axis, keepdim, |g, n| fibre_sum_sq(g, n).sqrt() as f32),
        AxisOp::Max => reduce_axis(&x, axis, keepdim, |g, n| fold_minmax(g, n, sem::max)),
        AxisOp::Min => reduce_axis(&x, axis, keepdim, |g, n| fold_minmax(g, n, sem::min)),
    };
    (t.shape, t.data)
}

const SHAPES: &[&[usize]] = &[
    &[0],
    &[1],
    &[3],
    &[4097],
    &[100_003],
    &[3, 0],
    &[0, 4],
    &[2, 3, 4],
    &[7, 783],
    &[4097, 3],
    &[50, 41, 3],
    &[9000, 2],
    &[2, 9000, 3],
    &[300, 1000],
    &[3, 5, 0, 2],
];

const OPS: [AxisOp; 5] = [
    AxisOp::Sum,
    AxisOp::Mean,
    AxisOp::Norm,
    AxisOp::Max,
    AxisOp::Min,
];

fn same_all(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(&p, &q)| same(p, q))
}

#[test]
fn ranks_match_the_interpreter() {
    assert_eq!(
        ranks(&[5.0], &[], 0, &NEVER).unwrap(),
        interp_ranks(&[5.0], &[], 0)
    );
    for kind in KINDS {
        for (s, shape) in SHAPES.iter().enumerate() {
            let x = data(kind, shape.iter().product(), s as u64);
            for axis in 0..shape.len() {
                assert_eq!(
                    ranks(&x, shape, axis, &NEVER).unwrap(),
                    interp_ranks(&x, shape, axis),
                    "{kind:?} {shape:?} axis {axis}"
                );
            }
        }
    }
}

#[test]
fn reduce_axis_matches_the_interpreter() {
    for kind in KINDS {
        for (s, shape) in SHAPES.iter().enumerate() {
            let x = data(kind, shape.iter().product(), 100 + s as u64);
            for axis in 0..shape.len() {
                for keepdim in [false, true] {
                    for op in OPS {
                        let (gs, gd) = reduce_axis(&x, shape, axis, keepdim, op);
                        let (ws, wd) = interp_axis(&x, shape, axis, keepdim, op);
                        assert_eq!(gs, ws, "{shape:?} axis {axis} keepdim {keepdim} {op:?}");
                        assert!(same_all(&gd, &wd), "{kind:?} {shape:?} axis {axis} {op:?}");
                    }
                }
            }
        }
    }
}

/// Sums whose f32 result depends on the order: small values, and in every block of a fibre
/// one +2^60 and one -2^60 at random places. A small value survives only when it meets no
/// unmatched 2^60 on its way into the total, so the result depends on the lanes and how
/// they are combined.
#[test]
fn reduce_axis_sums_in_the_canonical_order() {
    let mut r = Rng(5);
    let big = (1u64 << 60) as f32;
    for shape in [
        &[10_000usize, 3][..],
        &[3, 10_000],
        &[2, 9001, 5],
        &[20, 300],
    ] {
        let n: usize = shape.iter().product();
        for axis in 0..shape.len() {
            let len = shape[axis];
            let inner: usize = shape[axis + 1..].iter().product();
            let mut x = vec![0.0f32; n];
            for f in 0..n / len {
                let mut v: Vec<f32> = (0..len)
                    .map(|_| (r.below(1000) as f32 - 500.0) / 64.0)
                    .collect();
                for block in v.chunks_mut(sem::RED_BLOCK) {
                    if block.len() >= 2 {
                        let p = r.below(block.len());
                        let q = (p + 1 + r.below(block.len() - 1)) % block.len();
                        (block[p], block[q]) = (big, -big);
                    }
                }
                let base = (f / inner) * len * inner + f % inner;
                for (j, val) in v.into_iter().enumerate() {
                    x[base + j * inner] = val;
                }
            }
            for op in [AxisOp::Sum, AxisOp::Mean] {
                let (_, gd) = reduce_axis(&x, shape, axis, false, op);
                let (_, wd) = interp_axis(&x, shape, axis, false, op);
                assert!(same_all(&gd, &wd), "{shape:?} axis {axis} {op:?}");
                // The order matters here: a plain sequential f64 sum differs somewhere.
                if op == AxisOp::Sum && len > 100 {
                    let t = Tensor::new(shape.to_vec(), x.clone());
                    let naive = tensor_ops::reduce_axis(&t, axis, false, |g, n| {
                        (0..n).map(|j| g(j) as f64).sum::<f64>() as f32
                    });
                    assert!(
                        !same_all(&naive.data, &wd),
                        "{shape:?} axis {axis}: weak test"
                    );
                }
            }
        }
    }
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

#[test]
fn same_results_for_one_and_two_threads() {
    let (p1, p2) = (pool(1), pool(2));
    for kind in KINDS {
        let x = data(kind, 1_100_003, 11);
        let shape = [1009, 991];
        let y = &x[..1009 * 991];
        let run = || {
            let cuts: Vec<TopkCut> = [0, 1, 1000, 500_001, 1_099_999, 1_100_003]
                .iter()
                .map(|&k| topk_cut(&x, k, &NEVER).unwrap())
                .collect();
            let qs: Vec<u32> = [0.0, 0.3, 0.5, 1.0]
                .iter()
                .map(|&q| quantile(&x, q, &NEVER).unwrap().to_bits())
                .collect();
            let r: Vec<Vec<f32>> = (0..2)
                .map(|a| ranks(y, &shape, a, &NEVER).unwrap())
                .collect();
            let red: Vec<Vec<u32>> = (0..2)
                .flat_map(|a| OPS.map(|op| reduce_axis(y, &shape, a, false, op).1))
                .map(|v| v.iter().map(|f| f.to_bits()).collect())
                .collect();
            (cuts, qs, r, red)
        };
        let one = p1.install(run);
        let two = p2.install(run);
        assert!(one == two, "{kind:?}: 1 and 2 threads differ");
        assert!(one == run(), "{kind:?}: the global pool differs");
        for (c, k) in one
            .0
            .iter()
            .zip([0, 1, 1000, 500_001, 1_099_999, 1_100_003])
        {
            assert_eq!(mask_of(&x, *c), sem::topk_mask(&x, k, 0), "{kind:?} k {k}");
        }
    }
}

/// `cargo test --release --test select -- --ignored --nocapture timing`
#[test]
#[ignore]
fn timing_topk_on_a_mlp_weight() {
    use std::time::Instant;
    let n = 14336 * 4096;
    let mut r = Rng(42);
    // bf16 values of roughly normal weights (sum of uniforms), with the ties bf16 brings.
    let x: Vec<f32> = (0..n)
        .map(|_| {
            let u = (0..4).map(|_| (r.next() >> 40) as f32).sum::<f32>() / 16_777_216.0 - 2.0;
            bf16(u * 0.02)
        })
        .collect();
    let k = sem::fraction_count(0.2, n);
    println!(
        "n = {n} ({} threads), k = {k} (density 0.2)",
        rayon::current_num_threads()
    );
    for _ in 0..2 {
        let t = Instant::now();
        let c = topk_cut(&x, k, &NEVER).unwrap();
        let cut_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let m = mask_of(&x, c);
        let mask_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let want = sem::topk_mask(&x, k, 0);
        let sem_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut keys: Vec<(std::cmp::Reverse<u32>, u32)> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| (std::cmp::Reverse(v.to_bits() & 0x7fff_ffff), i as u32))
            .collect();
        keys.select_nth_unstable(k - 1);
        let nth_s = t.elapsed().as_secs_f64();
        assert_eq!(m, want);
        println!(
            "topk_cut {:.1} ms (+ mask {:.1} ms, sequential); semantics::topk_mask {:.1} ms; \
             bare select_nth_unstable on (key, index) pairs {:.1} ms",
            cut_s * 1e3,
            mask_s * 1e3,
            sem_s * 1e3,
            nth_s * 1e3
        );
        println!(
            "  with 1 thread: topk_cut {:.1} ms",
            pool(1).install(|| {
                let t = Instant::now();
                std::hint::black_box(topk_cut(&x, k, &NEVER).unwrap());
                t.elapsed().as_secs_f64() * 1e3
            })
        );
    }
}

#[test]
fn a_fired_token_stops_every_selection_with_its_reason() {
    use mergec::cancel::Stop;
    let x: Vec<f32> = (0..3_000_000)
        .map(|i| ((i * 7919) % 10007) as f32)
        .collect();
    let late = Cancel::NEVER.until(std::time::Instant::now(), 1.5);
    let over = Stop::OverTime { limit_s: 1.5 };
    assert_eq!(topk_cut(&x, 1000, &late), Err(over));
    assert_eq!(quantile(&x, 0.5, &late), Err(over));
    assert_eq!(ranks(&x, &[3000, 1000], 1, &late).map(|_| ()), Err(over));
    // Counts that need no pass finish whatever the token.
    assert!(topk_cut(&x, 0, &late).is_ok());
}
