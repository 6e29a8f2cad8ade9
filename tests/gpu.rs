//! The CUDA engine on a real GPU, against `ir::reference`. The device tests are ignored
//! (no GPU in CI); run them with
//! `cargo test --release --features cuda --test gpu -- --ignored --test-threads 1`,
//! or with scripts/gpu-check.sh on a GPU machine from prebuilt binaries.
//!
//! Exact: every kernel without transcendentals, bit for bit (all NaNs alike: the GPU
//! canonicalises NaN payloads). Transcendentals (exp, log, tanh, sigmoid, sin, cos, acos,
//! pow) use CUDA's libdevice, which differs from the host libm by a few ulps: f32
//! results within `TRANSCENDENTAL_ULPS`, 16-bit stores within one ulp of their dtype.

#[path = "common/cuda_kernels.rs"]
mod cuda_kernels;
#[cfg(feature = "cuda")]
#[path = "common/programs.rs"]
mod programs;
#[path = "common/rng.rs"]
mod rng;

/// Without a driver, `probe` says why instead of panicking (with one, it names the GPU).
#[test]
fn probe_reports_instead_of_panicking() {
    let r = mergec::codegen::cuda::probe();
    eprintln!("probe: {r:?}");
    if !std::path::Path::new("/dev/nvidiactl").exists() {
        assert!(r.is_err(), "no GPU here, yet probe found one: {r:?}");
    }
    let bw = mergec::codegen::cuda::copy_bandwidth_gbs();
    if r.is_err() {
        assert!(bw.is_err());
    }
}

#[cfg(feature = "cuda")]
mod device {
    use super::cuda_kernels::*;
    use mergec::codegen::Engine;
    use mergec::codegen::cuda::CudaEngine;
    use mergec::ir::kernel::{
        Args, BinOp, Dtype, Inst, KInput, Kernel, KernelKind, Mode, Sink, UnOp,
    };
    use mergec::semantics;

    /// Tolerance of CUDA's transcendental functions against the host's libm, in f32 ulps
    /// (CUDA documents at most 1-4 ulps for these; glibc's are within 1).
    const TRANSCENDENTAL_ULPS: u32 = 8;

    fn engine() -> CudaEngine {
        let e = CudaEngine::new().unwrap_or_else(|e| panic!("no CUDA device: {e}"));
        eprintln!("device: {}", e.device());
        e
    }

    #[test]
    fn without_a_gpu_the_engine_is_an_error() {
        if std::path::Path::new("/dev/nvidiactl").exists() {
            return;
        }
        assert!(CudaEngine::new().is_err());
    }

    #[test]
    #[ignore = "needs a CUDA GPU"]
    fn random_exact_kernels_match_the_reference() {
        let e = engine();
        let start = std::time::Instant::now();
        let domains: Vec<(usize, usize)> = DOMAINS.iter().copied().chain([(3, 8193)]).collect();
        let mut failures = Vec::new();
        let mut total = 0;
        for (d, &(rows, cols)) in domains.iter().enumerate() {
            let mut rng = Rng::new(5000 + d as u64);
            let style = Style {
                transcendentals: false,
            };
            let cases: Vec<Case> = (0..24)
                .map(|i| {
                    let kind = if i % 3 == 2 {
                        KernelKind::Rows
                    } else {
                        KernelKind::Flat
                    };
                    let name = format!("gpu {rows}x{cols} #{i}");
                    let k = random_kernel(&mut rng, &name, kind, rows, cols, style);
                    random_case(&mut rng, k)
                })
                .collect();
            let kernels: Vec<Kernel> = cases.iter().map(|c| c.kernel.clone()).collect();
            // One NVRTC call per domain; a few through `compile` too.
            let launches = e.compile_all(&kernels).expect("compile");
            for (i, (case, launch)) in cases.iter().zip(&launches).enumerate() {
                total += 1;
                let got = if i < 2 {
                    run_engine(&e, case).expect("compile one")
                } else {
                    run_launch(launch.as_ref(), case)
                };
                e.end_tensor();
                let want = run_reference(case);
                if let Err(msg) = compare(case, &want, &got, Tolerance::Exact) {
                    let first = first_difference(&e, case);
                    failures.push(format!(
                        "{}: {msg}\n{first}\n{:?}\nargs {:?}",
                        case.kernel.name, case.kernel, case.args
                    ));
                }
            }
        }
        eprintln!("{total} random kernels in {:.1?}", start.elapsed());
        assert!(
            failures.is_empty(),
            "{} of {total} differ:\n{}",
            failures.len(),
            failures[..failures.len().min(5)].join("\n\n")
        );
    }

    /// For a failing case, the first f32 body value that differs: a Flat twin of the
    /// kernel stores every f32 value, and the reference and the GPU are compared per value.
    fn first_difference(e: &CudaEngine, case: &Case) -> String {
        let k = &case.kernel;
        let wide = |i: &Inst| matches!(i, Inst::Widen(_) | Inst::Arg64(_) | Inst::B64(..));
        let values: Vec<u32> = (0..k.body.len() as u32)
            .filter(|&v| !wide(&k.body[v as usize]))
            .collect();
        let mut twin = k.clone();
        twin.kind = KernelKind::Flat;
        twin.name = format!("{} values", k.name);
        twin.sinks = (0..values.len())
            .map(|i| Sink::Store {
                value: values[i],
                buf: i as u32,
                dtype: Dtype::F32,
            })
            .collect();
        let twin = Case {
            kernel: twin,
            inputs: case.inputs.clone(),
            args: case.args.clone(),
        };
        let (want, got) = match run_engine(e, &twin) {
            Ok(got) => (run_reference(&twin), got),
            Err(m) => return format!("(the twin does not compile: {m})"),
        };
        let at = |o: &Outputs, s: usize, i: usize| Dtype::F32.load(&o.stores[s], i);
        for (s, &v) in values.iter().enumerate() {
            for i in 0..k.numel() {
                let (w, g) = (at(&want, s, i), at(&got, s, i));
                if (w.is_nan() && g.is_nan()) || w.to_bits() == g.to_bits() {
                    continue;
                }
                let earlier: Vec<String> = values
                    .iter()
                    .enumerate()
                    .filter(|(_, u)| **u < v)
                    .map(|(t, u)| format!("v{u}={:e}", at(&want, t, i)))
                    .collect();
                return format!(
                    "first difference: v{v} = {:?} at element {i}: want {w:e} ({:#010x}), \
                     got {g:e} ({:#010x}); earlier f32 values there (reference): {}",
                    k.body[v as usize],
                    w.to_bits(),
                    g.to_bits(),
                    earlier.join(" ")
                );
            }
        }
        "every f32 value agrees: the difference is in f64 values or the reduction".to_string()
    }

    /// -0 from negating a mask survives min/max reductions and stores (the CUDA compiler
    /// once turned `-(c ? 1 : 0)` into +0 inside a reduction).
    #[test]
    #[ignore = "needs a CUDA GPU"]
    fn negative_zero_survives_reductions() {
        let e = engine();
        let k = Kernel {
            name: "negzero".to_string(),
            kind: KernelKind::Rows,
            rows: 2,
            cols: 5,
            inputs: vec![KInput {
                dtype: Dtype::F32,
                mode: Mode::Full,
            }],
            body: vec![
                Inst::Load(0),
                Inst::Bin(BinOp::Ne, 0, 0),
                Inst::Un(UnOp::Neg, 1),
                Inst::Un(UnOp::Abs, 2),
            ],
            sinks: vec![
                Sink::Reduce {
                    op: mergec::ir::kernel::RedOp::Min,
                    value: 2,
                },
                Sink::Reduce {
                    op: mergec::ir::kernel::RedOp::Max,
                    value: 2,
                },
                Sink::Reduce {
                    op: mergec::ir::kernel::RedOp::Max,
                    value: 3,
                },
            ],
            n_f32: 0,
            n_f64: 0,
            n_u64: 0,
        };
        let case = Case {
            inputs: vec![(0..10).flat_map(|i| (i as f32).to_le_bytes()).collect()],
            kernel: k,
            args: Args::default(),
        };
        let got = run_engine(&e, &case).expect("compile");
        let want = run_reference(&case);
        assert_eq!(want.reductions[0][0].to_bits(), (-0.0f64).to_bits());
        compare(&case, &want, &got, Tolerance::Exact).expect("negative zero");
    }

    fn probe_kernel(name: &str, n: usize, body: Vec<Inst>, two_inputs: bool) -> Kernel {
        let input = KInput {
            dtype: Dtype::F32,
            mode: Mode::Full,
        };
        let last = body.len() as u32 - 1;
        Kernel {
            name: name.to_string(),
            kind: KernelKind::Flat,
            rows: 1,
            cols: n,
            inputs: if two_inputs {
                vec![input, input]
            } else {
                vec![input]
            },
            body,
            sinks: [Dtype::F32, Dtype::BF16, Dtype::F16]
                .iter()
                .enumerate()
                .map(|(i, &dtype)| Sink::Store {
                    value: last,
                    buf: i as u32,
                    dtype,
                })
                .collect(),
            n_f32: 0,
            n_f64: 0,
            n_u64: 0,
        }
    }

    #[test]
    #[ignore = "needs a CUDA GPU"]
    fn transcendentals_within_tolerance() {
        let e = engine();
        let n = 100_003;
        let mut rng = Rng::new(77);
        let ops = [
            UnOp::Exp,
            UnOp::Log,
            UnOp::Tanh,
            UnOp::Sigmoid,
            UnOp::Sin,
            UnOp::Cos,
            UnOp::Acos,
        ];
        let mut cases: Vec<Case> = ops
            .iter()
            .map(|&op| {
                let k = probe_kernel(
                    &format!("{op:?}"),
                    n,
                    vec![Inst::Load(0), Inst::Un(op, 0)],
                    false,
                );
                let x = random_storage(&mut rng, Dtype::F32, n, 0.02);
                Case {
                    kernel: k,
                    inputs: vec![x],
                    args: Args::default(),
                }
            })
            .collect();
        let pow = vec![Inst::Load(0), Inst::Load(1), Inst::Bin(BinOp::Pow, 0, 1)];
        cases.push(Case {
            kernel: probe_kernel("Pow", n, pow, true),
            inputs: vec![
                random_storage(&mut rng, Dtype::F32, n, 0.02),
                random_storage(&mut rng, Dtype::F32, n, 0.02),
            ],
            args: Args::default(),
        });
        let mut report = Vec::new();
        for case in &cases {
            let got = run_engine(&e, case).expect("compile");
            let want = run_reference(case);
            let exact = compare(case, &want, &got, Tolerance::Exact).is_ok();
            let worst = (0..n)
                .map(|i| {
                    let (w, g) = (
                        Dtype::F32.load(&want.stores[0], i),
                        Dtype::F32.load(&got.stores[0], i),
                    );
                    if w.is_nan() || g.is_nan() {
                        if w.is_nan() == g.is_nan() {
                            0
                        } else {
                            u64::MAX
                        }
                    } else {
                        ulps(w, g)
                    }
                })
                .max()
                .unwrap_or(0);
            report.push(format!(
                "{}: worst {worst} ulps{}",
                case.kernel.name,
                if exact { " (exact)" } else { "" }
            ));
            compare(case, &want, &got, Tolerance::Ulps(TRANSCENDENTAL_ULPS))
                .unwrap_or_else(|m| panic!("{}: {m}", case.kernel.name));
        }
        eprintln!("{}", report.join("\n"));
    }

    #[test]
    #[ignore = "needs a CUDA GPU"]
    fn topk_and_quantiles_match_semantics() {
        let e = engine();
        let mut rng = Rng::new(3);
        for n in [1, 50, 783, 4097, 1_000_003] {
            let mut x: Vec<f32> = (0..n).map(|_| random_f32_with(&mut rng, 0.01)).collect();
            for i in (0..n).step_by(5) {
                x[i] = 0.5; // ties
            }
            for k in [0, 1, n / 3, n / 5 + 1, n] {
                let (t, cut) = e.topk_cut(&x, k).expect("top-k");
                let mask = semantics::topk_mask(&x, k, 0);
                for (i, &m) in mask.iter().enumerate() {
                    let key = mergec::ir::reference::magnitude_key(x[i]) as u64;
                    assert_eq!(
                        key > t || (key == t && (i as u64) < cut),
                        m,
                        "n={n} k={k} i={i}"
                    );
                }
            }
            let clean: Vec<f32> = x
                .iter()
                .map(|v| if v.is_nan() { 0.0 } else { *v })
                .collect();
            for q in [0.0, 0.2, 0.5, 0.9, 1.0] {
                let got = e.quantile(&clean, q).expect("quantile");
                assert_eq!(
                    got.to_bits(),
                    semantics::quantile(&clean, q).to_bits(),
                    "n={n} q={q}"
                );
            }
        }
    }

    /// A merge-shaped kernel (base + sum of weighted deltas of 3 bf16 models, bf16 out)
    /// at a full Mistral MLP size; prints device time and effective bandwidth.
    #[test]
    #[ignore = "needs a CUDA GPU"]
    fn merge_kernel_throughput() {
        let e = engine();
        let (rows, cols) = (14336, 4096);
        let bf16 = KInput {
            dtype: Dtype::BF16,
            mode: Mode::Full,
        };
        let mut body = vec![Inst::Load(0)];
        let mut acc = 0u32;
        for m in 1..4u32 {
            let base = body.len() as u32;
            body.push(Inst::Load(m));
            body.push(Inst::Bin(BinOp::Sub, base, 0));
            body.push(Inst::Arg(m - 1));
            body.push(Inst::Bin(BinOp::Mul, base + 1, base + 2));
            body.push(Inst::Bin(BinOp::Add, acc, base + 3));
            acc = base + 4;
        }
        let k = Kernel {
            name: "task_arithmetic".to_string(),
            kind: KernelKind::Flat,
            rows,
            cols,
            inputs: vec![bf16; 4],
            body,
            sinks: vec![Sink::Store {
                value: acc,
                buf: 0,
                dtype: Dtype::BF16,
            }],
            n_f32: 3,
            n_f64: 0,
            n_u64: 0,
        };
        // Finite bf16 values of both signs in [2^-7, 2^-2), cheap to make.
        let inputs: Vec<Vec<u8>> = (0..4u64)
            .map(|m| {
                (0..(rows * cols) as u64)
                    .flat_map(|i| {
                        let h = (i ^ (m << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                        let sign = ((h & 1) as u16) << 15;
                        (sign | 0x3c00 | ((h >> 1) as u16 & 0x3ff)).to_le_bytes()
                    })
                    .collect()
            })
            .collect();
        let case = Case {
            kernel: k,
            inputs,
            args: Args {
                f32: vec![0.3, 0.5, 0.2],
                ..Args::default()
            },
        };
        let launch = e.compile(&case.kernel).expect("compile");
        let t0 = std::time::Instant::now();
        let first = run_launch(launch.as_ref(), &case);
        let with_upload = t0.elapsed();
        let t1 = std::time::Instant::now();
        let again = run_launch(launch.as_ref(), &case);
        let again_t = t1.elapsed();
        e.end_tensor();
        assert_eq!(first, again);
        let ms = e.last_kernel_ms().expect("kernel time") as f64;
        let bytes = (5 * rows * cols * 2) as f64;
        eprintln!(
            "merge kernel {rows}x{cols} (4 bf16 in, 1 bf16 out): kernel {ms:.3} ms = {:.0} GB/s; \
             first launch with copies {with_upload:.1?}, second {again_t:.1?}",
            bytes / (ms / 1e3) / 1e9
        );
        // Spot-check rows against the reference (the whole tensor is slow on the host).
        let mut small = case.kernel.clone();
        small.rows = 2;
        let part = Case {
            kernel: small,
            inputs: case
                .inputs
                .iter()
                .map(|b| b[..2 * cols * 2].to_vec())
                .collect(),
            args: case.args.clone(),
        };
        let want = run_reference(&part);
        assert_eq!(want.stores[0][..], first.stores[0][..2 * cols * 2]);
    }

    #[test]
    #[ignore = "needs a CUDA GPU"]
    fn copy_bandwidth_is_measured() {
        let gbs = mergec::codegen::cuda::copy_bandwidth_gbs().expect("bandwidth");
        eprintln!("device-to-device copy: {gbs:.0} GB/s (read + write)");
        assert!(gbs > 10.0);
    }

    /// The merge executor on the GPU's memory (tensors resident, cuts by histogram
    /// passes, two streams), against the interpreter, bit for bit: the stdlib methods
    /// without transcendentals, and TIES over several selection chunks. Each input goes
    /// up once and only the result (with counts and partials) comes down.
    #[test]
    #[ignore = "needs a CUDA GPU"]
    fn the_resident_path_matches_the_interpreter() {
        use mergec::interp::{Context, TensorFacts, run_merge};
        use mergec::pipeline::run_compiled;
        use mergec::types::{Const, instantiate_merge};
        let e = engine();
        let mut rng = mergec::semantics::rng::SplitMix64::new(5);
        let exact = [
            "linear",
            "task_arithmetic",
            "ties",
            "dare_linear",
            "dare_ties",
            "breadcrumbs",
            "breadcrumbs_ties",
            "della",
            "della_linear",
            "sce",
            "model_stock",
        ];
        let shapes: [&[usize]; 4] = [&[4096], &[7, 783], &[64, 4096], &[1100, 2000]];
        let mut runs = 0;
        for name in exact {
            let m = mergec::stdlib::method(name).expect("method");
            for settings in super::programs::stdlib_settings(name) {
                let ov: Vec<(String, Const)> = settings
                    .iter()
                    .map(|s| Const::parse_assignment(s).expect("set"))
                    .collect();
                for shape in shapes {
                    let Ok(cm) = instantiate_merge(&m.program, name, shape.len()) else {
                        continue;
                    };
                    let base = super::programs::random_tensor(&mut rng, shape, 1.0);
                    let models: Vec<_> = (0..3)
                        .map(|_| super::programs::random_tensor(&mut rng, shape, 1.0))
                        .collect();
                    let facts = TensorFacts::from_name("model.layers.1.mlp.up_proj.weight", 4);
                    let want = run_merge(
                        &cm,
                        &base,
                        &models,
                        &ov,
                        &Context::new(3, facts.clone()),
                        true,
                    );
                    let before = e.transfers();
                    let got = run_compiled(&cm, &base, &models, &ov, 3, &facts, &e, true);
                    e.end_tensor();
                    let (Ok(w), Ok(g)) = (want, got) else {
                        continue;
                    };
                    let bits = |t: &mergec::interp::Tensor| -> Vec<u32> {
                        t.data
                            .iter()
                            .map(|x| if x.is_nan() { u32::MAX } else { x.to_bits() })
                            .collect()
                    };
                    assert_eq!(bits(&w), bits(&g), "{name} {settings:?} {shape:?}");
                    let t = e.transfers();
                    let n = (shape.iter().product::<usize>() * 4) as u64;
                    assert_eq!(
                        t.up_bytes - before.up_bytes,
                        4 * n,
                        "{name}: inputs up once"
                    );
                    let down = t.down_bytes - before.down_bytes;
                    assert!(
                        down >= n && down < n + (1 << 20),
                        "{name}: {down} bytes down for {n}"
                    );
                    runs += 1;
                }
            }
        }
        let t = e.transfers();
        eprintln!(
            "resident path: {runs} runs equal the interpreter; copies up {:.2} GB at {:?} GB/s, down {:.2} GB at {:?} GB/s",
            t.up_bytes as f64 / 1e9,
            t.up_gbs(),
            t.down_bytes as f64 / 1e9,
            t.down_gbs()
        );
        assert!(runs > 30, "only {runs} runs");
    }
}
