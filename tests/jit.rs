//! The Cranelift JIT (`codegen::cpu::JitEngine`) against the reference evaluator:
//! random well-formed kernels on odd domains must give the same bytes (NaN
//! payloads aside), for any thread count. Run in release:
//! `cargo test --release --test jit -- --nocapture` (prints counts and timings);
//! `MERGEC_JIT_CASES` sets the number of random kernels per test, `MERGEC_JIT_SEED`
//! shifts their seeds.
//! Benchmarks: `cargo run --release --example jit_bench`.

#[path = "common/kernels.rs"]
mod kernels;
#[path = "common/rng.rs"]
mod rng;

use kernels::{Rng, compare, outputs, random_args, random_inputs, random_kernel};
use mergec::codegen::Engine;
use mergec::codegen::cpu::JitEngine;
use mergec::ir::kernel::{
    Args, Dtype, Inst, KInput, Kernel, KernelIo, KernelKind, Mode, RedOp, Sink, UnOp,
};
use mergec::ir::reference;
use std::time::Instant;

/// The brief's odd domains, and two whose rows are whole groups (a row segment
/// ends exactly at a group boundary).
const DOMAINS: [(usize, usize); 12] = [
    (1, 1),
    (1, 3),
    (1, 50),
    (1, 783),
    (1, 4096),
    (1, 4097),
    (3, 50),
    (50, 3),
    (7, 783),
    (2, 9000),
    (9, 16),
    (300, 8),
];

fn cases(default: usize) -> usize {
    std::env::var("MERGEC_JIT_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

type Out = (Vec<Vec<u8>>, Vec<Vec<f64>>);

fn run(
    k: &Kernel,
    inputs: &[Vec<u8>],
    args: &Args,
    go: impl FnOnce(&mut KernelIo),
    fill: u8,
) -> Out {
    let (mut stores, mut reds) = outputs(k, fill);
    let mut io = KernelIo {
        inputs: inputs.iter().map(|v| v.as_slice()).collect(),
        args,
        stores: stores.iter_mut().map(|v| v.as_mut_slice()).collect(),
        reductions: reds.iter_mut().map(|v| v.as_mut_slice()).collect(),
    };
    go(&mut io);
    (stores, reds)
}

/// Compiles and runs `n` random kernels of `kind`; panics on the first mismatch.
fn check_random(kind: KernelKind, seed: u64, n: usize) {
    let shift = std::env::var("MERGEC_JIT_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    let seed = seed ^ shift.unwrap_or(0) << 40;
    let engine = JitEngine::new().expect("jit");
    let t0 = Instant::now();
    let mut compile = 0.0;
    for case in 0..n {
        let mut rng = Rng::new(seed ^ (case as u64) << 20);
        let (rows, cols) = DOMAINS[rng.below(DOMAINS.len())];
        let wild = rng.percent(50);
        let k = random_kernel(&mut rng, kind, rows, cols, wild);
        let args = random_args(&mut rng, &k, wild);
        let inputs = random_inputs(&mut rng, &k, wild);
        let tc = Instant::now();
        let code = engine
            .compile(&k)
            .unwrap_or_else(|e| panic!("case {case}: {e}\n{k:#?}"));
        compile += tc.elapsed().as_secs_f64();
        let want = run(&k, &inputs, &args, |io| reference::run(&k, io), 0);
        let got = run(&k, &inputs, &args, |io| code.launch(io), 0xA5);
        if let Some(d) = compare(&k, (&want.0, &want.1), (&got.0, &got.1)) {
            panic!("case {case} (seed {seed}): {d}\nargs {args:?}\n{k:#?}");
        }
    }
    let total = t0.elapsed().as_secs_f64();
    println!(
        "{kind:?}: {n} kernels in {total:.2} s, compile {:.2} ms/kernel",
        1e3 * compile / n as f64
    );
}

#[test]
fn random_flat_kernels_match_reference() {
    check_random(KernelKind::Flat, 1, cases(1500));
}

#[test]
fn random_rows_kernels_match_reference() {
    check_random(KernelKind::Rows, 2, cases(1500));
}

/// Runs `k` on both engines with the given buffers and asserts equal results.
fn assert_same(engine: &JitEngine, k: &Kernel, inputs: &[Vec<u8>], args: &Args) {
    let code = engine.compile(k).unwrap_or_else(|e| panic!("{e}"));
    let want = run(k, inputs, args, |io| reference::run(k, io), 0);
    let got = run(k, inputs, args, |io| code.launch(io), 0xA5);
    if let Some(d) = compare(k, (&want.0, &want.1), (&got.0, &got.1)) {
        panic!("kernel {}: {d}", k.name);
    }
}

fn flat(name: &str, n: usize, inputs: Vec<KInput>, body: Vec<Inst>, sinks: Vec<Sink>) -> Kernel {
    Kernel {
        name: name.into(),
        kind: KernelKind::Flat,
        rows: 1,
        cols: n,
        inputs,
        body,
        sinks,
        n_f32: 0,
        n_f64: 0,
        n_u64: 0,
    }
}

fn stores_of(v: u32) -> Vec<Sink> {
    [Dtype::F32, Dtype::BF16, Dtype::F16]
        .into_iter()
        .enumerate()
        .map(|(i, dtype)| Sink::Store {
            value: v,
            buf: i as u32,
            dtype,
        })
        .collect()
}

/// Every f16 and bf16 bit pattern loads exactly and stores back through every dtype.
#[test]
fn half_conversions_are_exhaustively_exact() {
    let engine = JitEngine::new().expect("jit");
    let all: Vec<u8> = (0..=u16::MAX).flat_map(|b| b.to_le_bytes()).collect();
    for dtype in [Dtype::F16, Dtype::BF16] {
        let input = KInput {
            dtype,
            mode: Mode::Full,
        };
        let k = flat(
            "halves",
            1 << 16,
            vec![input],
            vec![Inst::Load(0)],
            stores_of(0),
        );
        assert_same(&engine, &k, std::slice::from_ref(&all), &Args::default());
    }
}

/// f32 values around every bf16 / f16 rounding boundary, and random bit patterns,
/// round like the `half` crate.
#[test]
fn f32_stores_round_like_half() {
    let engine = JitEngine::new().expect("jit");
    let mut xs: Vec<f32> = vec![];
    for h in 0..=u16::MAX {
        // Midpoints and their neighbours, for both formats.
        let b = (h as u32) << 16;
        xs.extend([b | 0x8000, b | 0x7fff, b | 0x8001].map(f32::from_bits));
        let f = half::f16::from_bits(h).to_f32();
        let next = half::f16::from_bits(h.wrapping_add(1)).to_f32();
        let mid = ((f as f64 + next as f64) / 2.0) as f32;
        xs.extend([
            mid,
            f32::from_bits(mid.to_bits() + 1),
            f32::from_bits(mid.to_bits().wrapping_sub(1)),
        ]);
    }
    let mut rng = Rng::new(9);
    xs.extend((0..1 << 18).map(|_| f32::from_bits(rng.next_u64() as u32)));
    let bytes: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
    let input = KInput {
        dtype: Dtype::F32,
        mode: Mode::Full,
    };
    let k = flat(
        "rounding",
        xs.len(),
        vec![input],
        vec![Inst::Load(0)],
        stores_of(0),
    );
    assert_same(&engine, &k, &[bytes], &Args::default());
}

/// Top-k ties: equal magnitudes (and NaN of several payloads, infinities, ±0) on both
/// sides of the cut index, with thresholds at every kind of key and between them.
#[test]
fn topsel_ties_follow_the_cut() {
    let engine = JitEngine::new().expect("jit");
    let vals = [
        1.0f32,
        -1.0,
        2.0,
        0.0,
        -0.0,
        f32::NAN,
        1.0,
        -2.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::from_bits(0x7fc0_1234),
        f32::from_bits(0xff80_0001),
    ];
    let data: Vec<u8> = (0..783)
        .flat_map(|i| vals[i * 5 % vals.len()].to_le_bytes())
        .collect();
    let input = KInput {
        dtype: Dtype::F32,
        mode: Mode::Full,
    };
    let body = vec![
        Inst::Load(0),
        Inst::TopSel { x: 0, t: 0, cut: 1 },
        Inst::Widen(1),
    ];
    let sinks = vec![
        Sink::Store {
            value: 1,
            buf: 0,
            dtype: Dtype::F32,
        },
        Sink::Reduce {
            op: RedOp::Sum,
            value: 2,
        },
    ];
    for rows in [1, 3, 27] {
        let mut k = flat(
            "ties",
            783 / rows * rows,
            vec![input],
            body.clone(),
            sinks.clone(),
        );
        (k.rows, k.cols, k.n_u64) = (rows, 783 / rows, 2);
        for t in [
            0u64,
            1.0f32.to_bits() as u64,
            2.0f32.to_bits() as u64,
            0x7f80_0000,
            0x7f80_0001,
            0x7fc0_0000,
            u32::MAX as u64 - 1,
            u32::MAX as u64,
            1 << 32,
            u64::MAX,
        ] {
            for cut in [0u64, 1, 7, 8, 9, 100, 4095, 782, 783, u64::MAX] {
                let args = Args {
                    u64: vec![t, cut],
                    ..Args::default()
                };
                assert_same(&engine, &k, std::slice::from_ref(&data), &args);
            }
        }
    }
}

/// Degenerate but well-formed kernels: empty domains, no sinks, no body.
#[test]
fn degenerate_kernels() {
    let engine = JitEngine::new().expect("jit");
    let input = KInput {
        dtype: Dtype::BF16,
        mode: Mode::Row,
    };
    let sinks = vec![
        Sink::Reduce {
            op: RedOp::Sum,
            value: 1,
        },
        Sink::Reduce {
            op: RedOp::Max,
            value: 0,
        },
    ];
    for kind in [KernelKind::Flat, KernelKind::Rows] {
        for (rows, cols) in [(0, 0), (0, 5), (5, 0), (1, 1), (9, 1)] {
            let mut k = flat(
                "empty",
                0,
                vec![input],
                vec![Inst::Load(0), Inst::Widen(0)],
                sinks.clone(),
            );
            (k.kind, k.rows, k.cols) = (kind, rows, cols);
            let data = vec![0x3fu8; 2 * rows];
            assert_same(&engine, &k, std::slice::from_ref(&data), &Args::default());
            k.sinks.clear();
            assert_same(&engine, &k, &[data], &Args::default());
        }
    }
    let k = flat("nothing", 10, vec![], vec![], vec![]);
    assert_same(&engine, &k, &[], &Args::default());
    let bad = flat("bad", 10, vec![], vec![Inst::Un(UnOp::Neg, 3)], vec![]);
    assert!(engine.compile(&bad).is_err());
}

/// Launches under rayon pools of 1 and 2 threads give the same bytes.
#[test]
fn results_do_not_depend_on_thread_count() {
    let engine = JitEngine::new().expect("jit");
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .expect("pool")
    };
    let (p1, p2) = (pool(1), pool(2));
    for case in 0..24u64 {
        let mut rng = Rng::new(1000 + case);
        let kind = if case % 2 == 0 {
            KernelKind::Flat
        } else {
            KernelKind::Rows
        };
        let (rows, cols) = [(300, 783), (1, 300_000), (2000, 50), (41, 4097)][case as usize % 4];
        let wild = case % 3 == 0;
        let k = random_kernel(&mut rng, kind, rows, cols, wild);
        let args = random_args(&mut rng, &k, wild);
        let inputs = random_inputs(&mut rng, &k, wild);
        let code = engine.compile(&k).expect("compile");
        let one = p1.install(|| run(&k, &inputs, &args, |io| code.launch(io), 0));
        let two = p2.install(|| run(&k, &inputs, &args, |io| code.launch(io), 0xA5));
        assert_eq!(one.0, two.0, "case {case}: stores differ");
        let bits = |r: &Out| -> Vec<Vec<u64>> {
            r.1.iter()
                .map(|v| v.iter().map(|x| x.to_bits()).collect())
                .collect()
        };
        assert_eq!(bits(&one), bits(&two), "case {case}: reductions differ");
        if case < 4 {
            let want = run(&k, &inputs, &args, |io| reference::run(&k, io), 0);
            assert!(
                compare(&k, (&want.0, &want.1), (&two.0, &two.1)).is_none(),
                "case {case}"
            );
        }
    }
}
