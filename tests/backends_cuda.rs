//! The CUDA backend on whole programs, without a GPU ("process replay"): each program
//! runs compiled on the kernel reference engine while every kernel launch is recorded
//! (kernel, input bytes, arguments, outputs); the interpreter's result must match that
//! run bit for bit, and then all recorded launches are rendered as CUDA C, compiled by
//! the host compiler under kernels/shim.h and replayed: every store and reduction must
//! equal the recorded one (any NaN matches any NaN). Since each launch reads only the
//! earlier launches' outputs, equal launches mean an equal program.
//!
//! Programs: every stdlib method (several settings, shapes 1, 3, 50, 783, 4096, 3x50,
//! 50x3, 7x783; 1-3 models) and MERGEC_CUDA_PROGRAMS random generated programs
//! (default 1000; the closing figure was measured with 10000). Skips without `cc`.
//!
//! Run: `cargo test --release --test backends_cuda -- --nocapture`.

#[path = "common/cuda_harness.rs"]
mod cuda_harness;
#[path = "common/cuda_kernels.rs"]
mod cuda_kernels;
#[path = "common/programs.rs"]
mod programs;
#[path = "common/rng.rs"]
mod rng;

use cuda_harness::{emulate_cases, have_cc};
use cuda_kernels::{Case, Outputs};
use mergec::codegen::{Engine, Launch, Resident};
use mergec::interp::{Context, Tensor, TensorFacts, run_merge};
use mergec::ir::kernel::{Kernel, KernelIo};
use mergec::ir::reference;
use mergec::pipeline::run_compiled;
use mergec::semantics::rng::SplitMix64;
use mergec::types::{CheckedMerge, Const, instantiate_merge};
use programs::{random_cases, random_tensor, stdlib_settings};
use std::sync::{Arc, Mutex};

/// Runs kernels on the reference evaluator and records every launch.
#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<(Case, Outputs)>>>);

struct RecLaunch(Kernel, Recorder);

impl Launch for RecLaunch {
    fn launch(&self, io: &mut KernelIo) {
        let case = Case {
            kernel: self.0.clone(),
            inputs: io.inputs.iter().map(|b| b.to_vec()).collect(),
            args: io.args.clone(),
        };
        reference::run(&self.0, io);
        let out = Outputs {
            stores: io.stores.iter().map(|b| b.to_vec()).collect(),
            reductions: io.reductions.iter().map(|r| r.to_vec()).collect(),
        };
        self.1.0.lock().expect("recorder").push((case, out));
    }
}

impl Engine for Recorder {
    fn name(&self) -> &'static str {
        "recorded-ref"
    }
    fn compile(&self, k: &Kernel) -> Result<Box<dyn Launch>, mergec::codegen::BackendError> {
        Ok(Box::new(RecLaunch(k.clone(), self.clone())))
    }
}

fn same_f32(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.chunks(4).zip(b.chunks(4)).all(|(x, y)| {
            x == y || {
                let f = |c: &[u8]| f32::from_le_bytes(c.try_into().unwrap_or([0; 4]));
                c_nan(f(x)) && c_nan(f(y))
            }
        })
}

fn c_nan(x: f32) -> bool {
    x.is_nan()
}

/// Runs one program through the recorder; checks it against the interpreter.
fn record(
    m: &CheckedMerge,
    base: &Tensor,
    models: &[Tensor],
    overrides: &[(String, Const)],
    rec: &dyn Engine,
) -> Result<(), String> {
    let facts = TensorFacts::from_name("model.layers.1.mlp.up_proj.weight", 4);
    let ctx = Context::new(9, facts.clone());
    let want = run_merge(m, base, models, overrides, &ctx, true);
    let got = run_compiled(m, base, models, overrides, 9, &facts, rec, true);
    match (want, got) {
        (Ok(w), Ok(g)) => {
            let wb: Vec<u8> = w.data.iter().flat_map(|x| x.to_le_bytes()).collect();
            let gb: Vec<u8> = g.data.iter().flat_map(|x| x.to_le_bytes()).collect();
            if !same_f32(&wb, &gb) {
                return Err("compiled (reference kernels) differs from the interpreter".into());
            }
            Ok(())
        }
        (Err(_), Err(_)) => Ok(()),
        (w, g) => Err(format!(
            "interp {:?} vs compiled {:?}",
            w.is_ok(),
            g.is_ok()
        )),
    }
}

/// Replays every recorded launch under the emulator; returns (launches, mismatches).
fn replay(rec: &Recorder) -> (usize, Vec<String>) {
    let recorded: Vec<(Case, Outputs)> = std::mem::take(&mut *rec.0.lock().expect("recorder"));
    if recorded.is_empty() {
        return (0, vec![]);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let n = recorded.len();
    let (cases, wants): (Vec<Case>, Vec<Outputs>) = recorded.into_iter().unzip();
    let outs = emulate_cases(dir.path(), &cases).unwrap_or_else(|e| panic!("{e}"));
    let mut bad = Vec::new();
    for (i, ((case, want), got)) in cases.iter().zip(&wants).zip(&outs).enumerate() {
        let stores_ok = want.stores.iter().zip(&got.stores).all(|(a, b)| {
            // Stores are f32 buffers or the output dtype; compare f32 with NaN tolerance,
            // else bytes.
            a == b || same_f32(a, b)
        });
        let reds_ok = want.reductions.iter().zip(&got.reductions).all(|(a, b)| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
        });
        if !(stores_ok && reds_ok) {
            bad.push(format!("launch {i} ({}) differs", case.kernel.name));
        }
    }
    (n, bad)
}

/// Records every stdlib method (its settings, 8 shapes, 1-3 models) on `engine`, whose
/// launches go to `rec`; returns (programs, failures).
fn record_stdlib(engine: &dyn Engine, rng: &mut SplitMix64) -> (usize, Vec<String>) {
    let shapes: [&[usize]; 8] = [
        &[1],
        &[3],
        &[50],
        &[783],
        &[4096],
        &[3, 50],
        &[50, 3],
        &[7, 783],
    ];
    let (mut programs, mut failures) = (0usize, Vec::new());
    for method in mergec::stdlib::methods() {
        for settings in stdlib_settings(&method.sig.name) {
            let ov: Vec<(String, Const)> = settings
                .iter()
                .map(|s| Const::parse_assignment(s).expect("set"))
                .collect();
            for (si, shape) in shapes.iter().enumerate() {
                let Ok(m) = instantiate_merge(&method.program, &method.sig.name, shape.len())
                else {
                    continue;
                };
                let k = 1 + si % 3;
                let base = random_tensor(rng, shape, 1.0);
                let models: Vec<Tensor> = (0..k).map(|_| random_tensor(rng, shape, 1.0)).collect();
                programs += 1;
                if let Err(e) = record(&m, &base, &models, &ov, engine) {
                    failures.push(format!("{} {settings:?} {shape:?}: {e}", method.sig.name));
                }
            }
        }
    }
    (programs, failures)
}

/// The executor's device path (`Resident`: inputs, intermediates and selection keys in
/// device memory, cuts by histogram passes) on the stdlib, its launches replayed as CUDA.
#[test]
fn stdlib_replays_under_emulated_cuda_on_the_resident_path() {
    if !have_cc() {
        eprintln!("SKIPPED: no C compiler (`cc`) to emulate CUDA with");
        return;
    }
    let rec = Recorder::default();
    let resident = Resident::new(rec.clone());
    let (programs, mut failures) = record_stdlib(&resident, &mut SplitMix64::new(22));
    let (n, bad) = replay(&rec);
    failures.extend(bad);
    eprintln!("resident path: {programs} programs, {n} launches replayed");
    assert_eq!(resident.live_buffers(), 0, "device buffers leaked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn stdlib_and_random_programs_replay_under_emulated_cuda() {
    if !have_cc() {
        eprintln!("SKIPPED: no C compiler (`cc`) to emulate CUDA with");
        return;
    }
    let mut rng = SplitMix64::new(21);
    let rec = Recorder::default();
    let (programs, mut failures) = record_stdlib(&rec, &mut rng);
    let mut launches = 0usize;
    let (n, bad) = replay(&rec);
    launches += n;
    failures.extend(bad.into_iter().map(|b| format!("stdlib: {b}")));
    let total: u64 = std::env::var("MERGEC_CUDA_PROGRAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut random = 0;
    for seed in 0..total {
        random += 1;
        for c in random_cases(seed, &mut rng) {
            if let Err(e) = record(&c.merge, &c.base, &c.models, &[], &rec) {
                failures.push(format!("seed {seed}: {e}\n{}", c.source));
            }
        }
        // Replay in batches (one host compile per batch).
        if (seed + 1) % 250 == 0 || seed + 1 == total {
            let (n, bad) = replay(&rec);
            launches += n;
            failures.extend(
                bad.into_iter()
                    .map(|b| format!("random batch ending at seed {seed}: {b}")),
            );
        }
    }
    println!(
        "emulated CUDA: {programs} stdlib runs + {random} random programs, {launches} kernel launches replayed, {} failures",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{}",
        failures[..failures.len().min(5)].join("\n")
    );
}
