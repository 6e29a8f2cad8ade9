//! The CUDA backend without a GPU: rendered kernels compiled by the host C++ compiler
//! under kernels/shim.h (threads as coroutines, real barriers and shared memory) and
//! compared with `ir::reference`, bit for bit (all NaNs alike: the GPU canonicalises NaN
//! payloads, so they are not part of the contract). On the host the transcendentals are
//! the same libm calls the reference makes, so they are exact here too.
//!
//! Skips (with a message) when no `cc` is installed. Run in release mode.

#[path = "common/cuda_harness.rs"]
mod cuda_harness;
#[path = "common/cuda_kernels.rs"]
mod cuda_kernels;
#[path = "common/rng.rs"]
mod rng;

use cuda_harness::*;
use cuda_kernels::*;
use mergec::codegen::cuda::{self, select};
use mergec::ir::kernel::{
    Args, BinOp, Dtype, Inst, KInput, Kernel, KernelKind, Mode, RedOp, Sink, UnOp,
};

fn no_cc() -> bool {
    if have_cc() {
        return false;
    }
    eprintln!(
        "SKIPPED: no host C compiler `cc`; the CUDA emulation tests need one (gcc or clang with C++)"
    );
    true
}

/// Which of the required features a set of kernels exercises, by name.
fn coverage(kernels: &[Kernel]) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    for k in kernels {
        seen.insert(format!("{:?}", k.kind));
        for i in &k.inputs {
            seen.insert(format!("input {:?} {:?}", i.dtype, i.mode));
        }
        for inst in &k.body {
            seen.insert(match inst {
                Inst::Un(op, _) => format!("{op:?}"),
                Inst::Bin(op, _, _) => format!("{op:?}"),
                Inst::B64(op, _, _) => format!("B64 {op:?}"),
                Inst::Uniform { mode, .. } => format!("Uniform {mode:?}"),
                other => format!("{other:?}")
                    .split(['(', ' '])
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            });
        }
        let mut stores = [0usize; 3];
        let mut reds = [0usize; 3];
        for s in &k.sinks {
            match *s {
                Sink::Store { dtype, .. } => stores[dtype as usize] += 1,
                Sink::Reduce { op, .. } => reds[op as usize] += 1,
            }
        }
        for (i, n) in stores.iter().enumerate() {
            if *n >= 2 {
                seen.insert(format!("2 stores {:?}", DTYPES[i]));
            }
        }
        for (i, n) in reds.iter().enumerate() {
            if *n >= 2 {
                seen.insert(format!("2 reductions {:?}", RED_OPS[i]));
            }
        }
    }
    seen
}

fn required() -> Vec<String> {
    let mut r: Vec<String> = UN_OPS.iter().map(|o| format!("{o:?}")).collect();
    r.extend(BIN_OPS.iter().map(|o| format!("{o:?}")));
    r.extend(BIN64.iter().map(|o| format!("B64 {o:?}")));
    r.extend(MODES.iter().map(|m| format!("Uniform {m:?}")));
    for d in DTYPES {
        r.extend(MODES.iter().map(|m| format!("input {d:?} {m:?}")));
        r.push(format!("2 stores {d:?}"));
    }
    r.extend(RED_OPS.iter().map(|o| format!("2 reductions {o:?}")));
    for s in [
        "Flat", "Rows", "Select", "TopSel", "Widen", "Arg64", "Arg", "Const",
    ] {
        r.push(s.to_string());
    }
    r
}

/// Output values compared, and how many of them were NaN.
#[derive(Default)]
struct Stats {
    values: usize,
    nans: usize,
    reductions: usize,
    finite_reductions: usize,
}

fn tally(case: &Case, out: &Outputs, st: &mut Stats) {
    for (s, d) in store_dtypes(&case.kernel).into_iter().enumerate() {
        for i in 0..case.kernel.numel() {
            st.values += 1;
            st.nans += d.load(&out.stores[s], i).is_nan() as usize;
        }
    }
    for r in &out.reductions {
        st.values += r.len();
        st.nans += r.iter().filter(|v| v.is_nan()).count();
        st.reductions += r.len();
        st.finite_reductions += r.iter().filter(|v| v.is_finite()).count();
    }
}

fn check_batch(cases: &[Case]) -> (Vec<String>, Stats) {
    let mut st = Stats::default();
    let dir = tempfile::tempdir().expect("temporary directory");
    let got = match emulate_cases(dir.path(), cases) {
        Ok(g) => g,
        Err(e) => return (vec![e], st),
    };
    let mut failures = Vec::new();
    for (case, got) in cases.iter().zip(&got) {
        let want = run_reference(case);
        tally(case, &want, &mut st);
        if let Err(e) = compare(case, &want, got, Tolerance::Exact) {
            failures.push(format!("{}: {e}\n{:?}", case.kernel.name, case.kernel));
        }
    }
    (failures, st)
}

const PER_DOMAIN: usize = 36;

#[test]
fn random_kernels_match_the_reference() {
    if no_cc() {
        return;
    }
    let start = std::time::Instant::now();
    let domains: Vec<(usize, usize)> = DOMAINS.iter().copied().chain([(3, 8193)]).collect();
    let batches: Vec<Vec<Case>> = domains
        .iter()
        .enumerate()
        .map(|(d, &(rows, cols))| {
            let mut rng = Rng::new(1000 + d as u64);
            (0..PER_DOMAIN)
                .map(|i| {
                    let kind = if i % 3 == 2 {
                        KernelKind::Rows
                    } else {
                        KernelKind::Flat
                    };
                    let style = Style {
                        transcendentals: true,
                    };
                    let name = format!("rand {rows}x{cols} #{i}");
                    let k = random_kernel(&mut rng, &name, kind, rows, cols, style);
                    random_case(&mut rng, k)
                })
                .collect()
        })
        .collect();
    let kernels: Vec<Kernel> = batches.iter().flatten().map(|c| c.kernel.clone()).collect();
    let seen = coverage(&kernels);
    let missing: Vec<String> = required()
        .into_iter()
        .filter(|r| !seen.contains(r))
        .collect();
    assert!(
        missing.is_empty(),
        "the generator never produced: {missing:?}"
    );
    // Two workers: the batches compile and run independently.
    let results: Vec<(Vec<String>, Stats)> = std::thread::scope(|s| {
        let (even, odd): (Vec<_>, Vec<_>) =
            batches.iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let work = [even, odd].map(|part| {
            s.spawn(move || {
                part.into_iter()
                    .map(|(_, b)| check_batch(b))
                    .collect::<Vec<_>>()
            })
        });
        work.into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });
    let mut st = Stats::default();
    for (_, s) in &results {
        st.values += s.values;
        st.nans += s.nans;
        st.reductions += s.reductions;
        st.finite_reductions += s.finite_reductions;
    }
    let (values, nans) = (st.values, st.nans);
    let failures: Vec<String> = results.into_iter().flat_map(|(f, _)| f).collect();
    eprintln!(
        "{} random kernels on {} domains in {:.1?}: {values} output values, {:.1}% NaN; \
         {} reduction values, {:.1}% finite",
        kernels.len(),
        domains.len(),
        start.elapsed(),
        100.0 * nans as f64 / values.max(1) as f64,
        st.reductions,
        100.0 * st.finite_reductions as f64 / st.reductions.max(1) as f64
    );
    // Mostly numbers, or the comparison (all NaNs alike) would prove little.
    assert!(
        nans * 2 < values,
        "too many NaN outputs: {nans} of {values}"
    );
    assert!(
        st.finite_reductions * 2 > st.reductions,
        "too few finite reductions"
    );
    assert!(
        failures.is_empty(),
        "{} of {} kernels differ from the reference; first:\n{}",
        failures.len(),
        kernels.len(),
        failures[0]
    );
}

fn convert_kernel(name: &str, n: usize, from: Dtype, to: &[Dtype]) -> Kernel {
    Kernel {
        name: name.to_string(),
        kind: KernelKind::Flat,
        rows: 1,
        cols: n,
        inputs: vec![KInput {
            dtype: from,
            mode: Mode::Full,
        }],
        body: vec![Inst::Load(0)],
        sinks: to
            .iter()
            .enumerate()
            .map(|(i, &dtype)| Sink::Store {
                value: 0,
                buf: i as u32,
                dtype,
            })
            .collect(),
        n_f32: 0,
        n_f64: 0,
        n_u64: 0,
    }
}

/// Every bf16 and f16 bit pattern decodes like `half`; f32 patterns (all exponents,
/// rounding ties, subnormals, NaN payloads) encode like `half`.
#[test]
fn dtype_conversions_match_half_bit_for_bit() {
    if no_cc() {
        return;
    }
    let all16: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
    let mut rng = Rng::new(7);
    let mut f32s: Vec<u32> = SPECIALS.to_vec();
    for e in 0..256u32 {
        for m in [
            0, 1, 0x1000, 0x1001, 0x3000, 0x8000, 0x8001, 0x18000, 0x7f_ffff,
        ] {
            f32s.push((e << 23) | m);
            f32s.push(0x8000_0000 | (e << 23) | m);
        }
    }
    f32s.extend((0..60_000).map(|_| rng.next_u64() as u32));
    let bytes32: Vec<u8> = f32s.iter().flat_map(|b| b.to_le_bytes()).collect();
    let all = [Dtype::F32, Dtype::F16, Dtype::BF16];
    let cases = vec![
        Case {
            kernel: convert_kernel("bf16 in", 65536, Dtype::BF16, &all),
            inputs: vec![all16.clone()],
            args: Args::default(),
        },
        Case {
            kernel: convert_kernel("f16 in", 65536, Dtype::F16, &all),
            inputs: vec![all16],
            args: Args::default(),
        },
        Case {
            kernel: convert_kernel("f32 in", f32s.len(), Dtype::F32, &all),
            inputs: vec![bytes32],
            args: Args::default(),
        },
    ];
    let dir = tempfile::tempdir().expect("temporary directory");
    let got = emulate_cases(dir.path(), &cases).expect("emulator");
    for (case, got) in cases.iter().zip(&got) {
        // 16-bit stores as raw bytes, NaN payloads included: the conversions are pure bit
        // manipulation. f32 stores: the reference quiets signalling NaNs (its values pass
        // through f64), the CUDA code moves them untouched; all NaNs alike there.
        let want = run_reference(case);
        compare(case, &want, got, Tolerance::Exact).expect("f32 stores");
        for (s, (w, g)) in want.stores.iter().zip(&got.stores).enumerate().skip(1) {
            let first = w.iter().zip(g).position(|(a, b)| a != b);
            assert!(
                first.is_none(),
                "{}: store {s} differs at byte {first:?}",
                case.kernel.name
            );
        }
    }
}

fn small(kind: KernelKind, rows: usize, cols: usize) -> Kernel {
    // x * a + widen(y) summed, max |x|, and a bf16 store of sigmoid(x) where u < 0.5.
    Kernel {
        name: "golden/demo".to_string(),
        kind,
        rows,
        cols,
        inputs: vec![
            KInput {
                dtype: Dtype::BF16,
                mode: Mode::Full,
            },
            KInput {
                dtype: Dtype::F32,
                mode: Mode::Row,
            },
        ],
        body: vec![
            Inst::Load(0),
            Inst::Load(1),
            Inst::Arg(0),
            Inst::Bin(BinOp::Mul, 0, 2),
            Inst::Widen(3),
            Inst::Widen(1),
            Inst::Arg64(0),
            Inst::B64(mergec::ir::kernel::Bin64::Mul, 5, 6),
            Inst::B64(mergec::ir::kernel::Bin64::Add, 4, 7),
            Inst::Un(UnOp::Abs, 0),
            Inst::Uniform {
                key: 0,
                mode: Mode::Full,
            },
            Inst::Const(0.5),
            Inst::Bin(BinOp::Lt, 10, 11),
            Inst::Un(UnOp::Sigmoid, 0),
            Inst::Select(12, 13, 0),
            Inst::TopSel { x: 0, t: 1, cut: 2 },
        ],
        sinks: if kind == KernelKind::Flat {
            vec![
                Sink::Store {
                    value: 14,
                    buf: 0,
                    dtype: Dtype::BF16,
                },
                Sink::Store {
                    value: 15,
                    buf: 1,
                    dtype: Dtype::F32,
                },
            ]
        } else {
            vec![
                Sink::Reduce {
                    op: RedOp::Sum,
                    value: 8,
                },
                Sink::Reduce {
                    op: RedOp::Max,
                    value: 9,
                },
            ]
        },
        n_f32: 1,
        n_f64: 1,
        n_u64: 3,
    }
}

/// The rendered text of a pointwise and a lanes kernel (bless with INSTA_UPDATE=always).
#[test]
fn rendered_cuda_golden() {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("golden/snapshots");
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    let kernels = [
        small(KernelKind::Flat, 4, 1000),
        small(KernelKind::Rows, 3, 5000),
    ];
    // The prelude is hand-written; the snapshot holds what the renderer writes.
    let src = cuda::render(&kernels);
    let generated = &src[src.find("// golden/demo").expect("first kernel")..];
    s.bind(|| insta::assert_snapshot!("cuda@demo_kernels", generated));
}

/// Shared memory and __syncthreads really work in the shim: a block reversal is right
/// with the barrier, wrong without it, and a barrier skipped by part of a block aborts.
#[test]
fn shim_barriers_are_real() {
    if no_cc() {
        return;
    }
    let src = r#"
extern "C" __global__ void reverse(const float* x, float* y, int sync) {
    __shared__ float s[64];
    s[threadIdx.x] = x[blockIdx.x * 64 + threadIdx.x];
    if (sync) __syncthreads();
    y[blockIdx.x * 64 + threadIdx.x] = s[63 - threadIdx.x];
}
extern "C" __global__ void diverge(const float* x, float* y, int sync) {
    if (threadIdx.x < 5) return;
    __syncthreads();
    y[threadIdx.x] = x[threadIdx.x] + (float)sync;
}
"#;
    let thunk = |entry: &str| Thunk {
        entry: entry.to_string(),
        ctypes: vec!["const float*".into(), "float*".into(), "int".into()],
    };
    let x: Vec<u8> = (0..128).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let launch = |thunk, sync: i32| EmuLaunch {
        thunk,
        grid: 2,
        block: 64,
        params: vec![
            EmuParam::In(x.clone()),
            EmuParam::Out(512),
            EmuParam::Scalar(sync.to_le_bytes().to_vec()),
        ],
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let thunks = [thunk("reverse"), thunk("diverge")];
    let out = emulate(dir.path(), src, &thunks, &[launch(0, 1), launch(0, 0)]).expect("emulator");
    let floats = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let want: Vec<f32> = (0..128)
        .map(|i| ((i / 64) * 64 + 63 - i % 64) as f32)
        .collect();
    assert_eq!(floats(&out[0][0]), want, "with __syncthreads");
    assert_ne!(floats(&out[1][0]), want, "a missing barrier must show");
    let err = emulate(dir.path(), src, &thunks, &[launch(1, 1)]).expect_err("divergent barrier");
    assert!(err.contains("only part of the block"), "{err}");
}

/// kernels/select.cu counts every histogram pass the top-k and quantile drivers ask
/// for (and some random ones) exactly as `select::host_histogram` does.
#[test]
fn radix_histogram_kernel_counts_like_the_host() {
    if no_cc() {
        return;
    }
    let mut rng = Rng::new(99);
    let mut x: Vec<f32> = (0..5000).map(|_| random_f32(&mut rng)).collect();
    for i in (0..5000).step_by(7) {
        x[i] = 0.25; // ties
    }
    x[4000] = f32::NAN;
    let clean: Vec<f32> = x
        .iter()
        .map(|v| if v.is_nan() { 1.0 } else { *v })
        .collect();
    let mut passes = Vec::new();
    let mut record = |data: &[f32], p: &select::Pass| {
        passes.push((data.len() == x.len() && data[4000].is_nan(), *p));
        Ok(select::host_histogram(data, p))
    };
    for k in [1, 10, 700, 714, 2500, 4999] {
        select::topk_cut(x.len(), k, &mut |p| record(&x, p)).expect("top-k");
    }
    for q in [0.0, 0.3, 0.5, 1.0] {
        select::quantile(clean.len(), q, &mut |p| record(&clean, p)).expect("quantile");
    }
    for _ in 0..20 {
        let key = select::total_key(x[rng.below(x.len())]);
        let shift = rng.pick(&[0u32, 8, 16, 24]);
        let mask = if shift == 24 {
            0
        } else {
            u32::MAX << (shift + 8)
        };
        let kind = rng.pick(&[select::KeyKind::Total, select::KeyKind::Magnitude]);
        passes.push((
            true,
            select::Pass {
                kind,
                tie: 0,
                prefix: key & mask,
                mask,
                shift,
            },
        ));
    }
    let bytes = |d: &[f32]| d.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    let launches: Vec<EmuLaunch> = passes
        .iter()
        .map(|(raw, p)| EmuLaunch {
            thunk: 0,
            grid: 3,
            block: select::THREADS,
            params: vec![
                EmuParam::In(bytes(if *raw { &x } else { &clean })),
                EmuParam::Scalar((x.len() as u64).to_le_bytes().to_vec()),
                EmuParam::Scalar((p.kind as u32).to_le_bytes().to_vec()),
                EmuParam::Scalar(p.tie.to_le_bytes().to_vec()),
                EmuParam::Scalar(p.prefix.to_le_bytes().to_vec()),
                EmuParam::Scalar(p.mask.to_le_bytes().to_vec()),
                EmuParam::Scalar(p.shift.to_le_bytes().to_vec()),
                EmuParam::InOut(vec![0; 1024]),
            ],
        })
        .collect();
    let thunk = Thunk {
        entry: select::ENTRY.to_string(),
        ctypes: [
            "const float*",
            "mg_u64",
            "mg_u32",
            "mg_u32",
            "mg_u32",
            "mg_u32",
            "mg_u32",
            "mg_u32*",
        ]
        .map(String::from)
        .to_vec(),
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = emulate(dir.path(), &select::source(), &[thunk], &launches).expect("emulator");
    assert!(
        passes
            .iter()
            .any(|(_, p)| p.kind == select::KeyKind::TieIndex)
    );
    for ((raw, p), got) in passes.iter().zip(&out) {
        let want = select::host_histogram(if *raw { &x } else { &clean }, p);
        let got: Vec<u32> = got[0]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(got, want.to_vec(), "pass {p:?}");
    }
}
