//! The Cranelift JIT (`codegen::cpu::JitEngine`) against the reference evaluator:
//! random well-formed kernels on odd domains must give the same bytes (NaN
//! payloads aside), for any thread count. Run in release:
//! `cargo test --release --test jit -- --nocapture` (prints counts and timings);
//! `MERGEC_JIT_CASES` sets the number of random kernels per test.
//! Benchmarks: `cargo test --release --test jit -- --ignored --nocapture bench`.

#[path = "common/kernels.rs"]
mod kernels;

use kernels::{Rng, compare, outputs, random_args, random_inputs, random_kernel};
use mergec::codegen::cpu::JitEngine;
use mergec::codegen::{Engine, Launch};
use mergec::ir::kernel::{Args, Kernel, KernelIo, KernelKind};
use mergec::ir::reference;
use std::time::Instant;

const DOMAINS: [(usize, usize); 10] = [
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
    let engine = JitEngine::new().expect("jit");
    let t0 = Instant::now();
    let mut compile = 0.0;
    for case in 0..n {
        let mut rng = Rng::new(seed ^ (case as u64) << 20);
        // Small domains most often: they hold every edge case and run fast.
        let (rows, cols) = DOMAINS[if rng.chance(70) {
            rng.below(4) + (rng.below(2) * 6)
        } else {
            rng.below(10)
        }];
        let k = random_kernel(&mut rng, kind, rows, cols);
        let args = random_args(&mut rng, &k);
        let inputs = random_inputs(&mut rng, &k);
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
