//! Differential tests: the compiled path (lower, passes, fused kernels) against the
//! reference interpreter, for every stdlib method and for random well-typed programs
//! from the type-directed generator, on odd sizes (1, 3, 50, 783, 4096) and 1-D/2-D
//! shapes. Engines: the kernel-form reference evaluator and the Cranelift JIT.
//!
//! Agreement is bitwise: same bits for every element (any NaN matches any NaN), or
//! both runs fail. Programs the compiler declines (`Unsupported`) are counted and
//! must be rare.
//!
//! Run: `cargo test --release --test backends -- --nocapture` (prints the counts).
//! MERGEC_DIFF_PROGRAMS sets the number of random programs (default 10000).

#[path = "common/programs.rs"]
mod programs;

use mergec::codegen::{Engine, RefEngine, Resident};
use mergec::interp::{Context, Tensor, TensorFacts, run_merge};
use mergec::ir::lower::LowerError;
use mergec::pipeline::run_compiled;
use mergec::semantics::rng::SplitMix64;
use mergec::types::{CheckedMerge, Const, instantiate_merge};
use programs::{random_cases, random_tensor, stdlib_settings};

const NAMES: [&str; 3] = [
    "model.layers.2.mlp.up_proj.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.norm.weight",
];

/// The CPU engines, on host memory and on device memory in host RAM (`Resident`: the
/// executor's GPU path, tensors resident, selections by histogram passes).
fn engines() -> Vec<Box<dyn Engine>> {
    let jit = || mergec::codegen::cpu::JitEngine::new().expect("the JIT starts");
    vec![
        Box::new(RefEngine),
        Box::new(jit()),
        Box::new(Resident::new(RefEngine)),
        Box::new(Resident::new(jit())),
    ]
}

/// Outcome of one run, for comparison.
#[derive(Debug)]
enum Out {
    Ok,
    Err,
    Unsupported(String),
}

fn same(a: &[u32], b: &[u32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x == y || (f32::from_bits(*x).is_nan() && f32::from_bits(*y).is_nan()))
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.data.iter().map(|x| x.to_bits()).collect()
}

#[allow(clippy::too_many_arguments)]
fn compare(
    m: &CheckedMerge,
    base: &Tensor,
    models: &[Tensor],
    overrides: &[(String, Const)],
    name: &str,
    engine: &dyn Engine,
    allow_nonfinite: bool,
) -> Result<Out, String> {
    let facts = TensorFacts::from_name(name, 4);
    let ctx = Context::new(7, facts.clone());
    let want = run_merge(m, base, models, overrides, &ctx, allow_nonfinite);
    let got = run_compiled(
        m,
        base,
        models,
        overrides,
        7,
        &facts,
        engine,
        allow_nonfinite,
    );
    let out = match (&want, got) {
        (_, Err(LowerError::Unsupported(why))) => Out::Unsupported(why),
        (Ok(w), Ok(g)) => {
            if w.shape != g.shape || !same(&bits(w), &bits(&g)) {
                let first = (0..w.data.len().min(g.data.len()))
                    .find(|&i| !same(&[w.data[i].to_bits()], &[g.data[i].to_bits()]));
                return Err(format!(
                    "{}: results differ on shape {:?} (got shape {:?}); first at {first:?}: interp {:?} vs {} {:?}",
                    engine.name(),
                    w.shape,
                    g.shape,
                    first.map(|i| w.data[i]),
                    engine.name(),
                    first.map(|i| g.data[i]),
                ));
            }
            Out::Ok
        }
        (Err(_), Err(LowerError::Runtime(_))) => Out::Err,
        (Ok(_), Err(LowerError::Runtime(e))) => {
            return Err(format!(
                "{}: compiled failed ({e}) where the interpreter ran",
                engine.name()
            ));
        }
        (Err(e), Ok(_)) => {
            return Err(format!(
                "{}: compiled ran where the interpreter failed ({e})",
                engine.name()
            ));
        }
    };
    Ok(out)
}

const SHAPES: [&[usize]; 8] = [
    &[1],
    &[3],
    &[50],
    &[783],
    &[4096],
    &[3, 50],
    &[50, 3],
    &[7, 783],
];

#[test]
fn every_stdlib_method_matches_the_interpreter() {
    let engines = engines();
    let mut rng = SplitMix64::new(11);
    let (mut runs, mut failures) = (0, Vec::new());
    for method in mergec::stdlib::methods() {
        for settings in stdlib_settings(&method.sig.name) {
            let overrides: Vec<(String, Const)> = settings
                .iter()
                .map(|s| Const::parse_assignment(s).expect("setting"))
                .collect();
            for shape in SHAPES {
                let Ok(m) = instantiate_merge(&method.program, &method.sig.name, shape.len())
                else {
                    continue;
                };
                for k in 1..=3 {
                    let base = random_tensor(&mut rng, shape, 1.0);
                    let models: Vec<Tensor> = (0..k)
                        .map(|_| {
                            let d = random_tensor(&mut rng, shape, 0.1);
                            Tensor::new(
                                shape.to_vec(),
                                base.data.iter().zip(&d.data).map(|(b, x)| b + x).collect(),
                            )
                        })
                        .collect();
                    for e in &engines {
                        runs += 1;
                        match compare(
                            &m,
                            &base,
                            &models,
                            &overrides,
                            NAMES[k - 1],
                            e.as_ref(),
                            false,
                        ) {
                            Ok(Out::Unsupported(why)) => failures.push(format!(
                                "{} {settings:?} {shape:?} k={k}: unsupported: {why}",
                                method.sig.name
                            )),
                            Ok(_) => {}
                            Err(msg) => failures.push(format!(
                                "{} {settings:?} {shape:?} k={k}: {msg}",
                                method.sig.name
                            )),
                        }
                    }
                }
            }
        }
    }
    println!(
        "stdlib: {runs} compiled runs compared, {} failures",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn random_programs_match_the_interpreter() {
    let n: u64 = std::env::var("MERGEC_DIFF_PROGRAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let engines = engines();
    let mut rng = SplitMix64::new(5);
    let (mut programs, mut runs, mut ok, mut errs, mut unsupported) = (0, 0, 0, 0, 0);
    let mut failures = Vec::new();
    for seed in 0..n {
        programs += 1;
        for c in random_cases(seed, &mut rng) {
            for e in &engines {
                runs += 1;
                let strict = seed % 2 == 0;
                let name = NAMES[seed as usize % 3];
                match compare(&c.merge, &c.base, &c.models, &[], name, e.as_ref(), strict) {
                    Ok(Out::Ok) => ok += 1,
                    Ok(Out::Err) => errs += 1,
                    Ok(Out::Unsupported(_)) => unsupported += 1,
                    Err(msg) => failures.push(format!(
                        "seed {seed} {:?} k={}: {msg}\n{}",
                        c.base.shape,
                        c.models.len(),
                        c.source
                    )),
                }
            }
        }
    }
    println!(
        "random: {programs} programs, {runs} compiled runs: {ok} equal results, {errs} equal failures, {unsupported} unsupported, {} mismatches",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} mismatches; the first:\n{}",
        failures.len(),
        failures[..failures.len().min(3)].join("\n----\n")
    );
    assert!(
        unsupported * 100 <= runs,
        "too many unsupported: {unsupported} of {runs}"
    );
}

/// Top-k selections on tensors larger than one selection chunk (2^21 elements), so
/// keys are recomputed over several chunks of rows, the last one shorter.
#[test]
fn chunked_selections_match_the_interpreter() {
    let jit = mergec::codegen::cpu::JitEngine::new().expect("the JIT starts");
    let mut rng = SplitMix64::new(3);
    let shape: &[usize] = &[1100, 2000];
    for (method, sets) in [
        ("ties", vec!["density=0.3"]),
        ("breadcrumbs", vec!["density=0.5", "gamma=0.01"]),
        ("sce", vec!["select_topk=0.5"]),
    ] {
        let m = mergec::stdlib::method(method).expect("method");
        let cm = instantiate_merge(&m.program, method, 2).expect("instantiate");
        let overrides: Vec<(String, Const)> = sets
            .iter()
            .map(|s| Const::parse_assignment(s).expect("set"))
            .collect();
        let base = random_tensor(&mut rng, shape, 1.0);
        let models: Vec<Tensor> = (0..3)
            .map(|_| random_tensor(&mut rng, shape, 1.0))
            .collect();
        match compare(&cm, &base, &models, &overrides, NAMES[0], &jit, false) {
            Ok(Out::Ok) => {}
            other => panic!("{method}: {other:?}"),
        }
        // The device path: keys stored chunk by chunk into device buffers, cuts found by
        // histogram passes; every input goes up once and only the result comes down
        // (with 1 KiB of counts per pass and the reductions' partials).
        let resident = Resident::new(mergec::codegen::cpu::JitEngine::new().expect("JIT"));
        match compare(&cm, &base, &models, &overrides, NAMES[0], &resident, false) {
            Ok(Out::Ok) => {}
            other => panic!("{method} (resident): {other:?}"),
        }
        let t = resident.memory().expect("device memory").transfers();
        let tensor_bytes = (shape.iter().product::<usize>() * 4) as u64;
        assert_eq!(
            t.up_bytes,
            4 * tensor_bytes,
            "{method}: each input goes up once"
        );
        assert!(
            t.down_bytes >= tensor_bytes && t.down_bytes < tensor_bytes + (1 << 20),
            "{method}: {} bytes came down for a result of {tensor_bytes}",
            t.down_bytes
        );
        assert_eq!(
            resident.live_buffers(),
            0,
            "{method}: device buffers leaked"
        );
    }
}

/// Failures inside data-dependent branches: lowered speculatively as poison, they must
/// fail the compiled run exactly when the interpreter fails (the branch is taken), and
/// never otherwise.
#[test]
fn speculated_failures_match_the_interpreter() {
    let programs = [
        // An out-of-range index in a branch taken only when `big` is small.
        "merge a(base: Tensor, models: [Tensor], big: f32 = 1e30) -> Tensor {
            let i = int(sum_all(abs(base)) * 0.0 + 5.0)
            return if sum_all(abs(base)) > big { models[i] } else { base + models[0] }
        }",
        // A data-dependent index (-1 is the last model) and an int() that overflows for
        // large inputs.
        "merge a(base: Tensor, models: [Tensor], big: f32 = 1e20) -> Tensor {
            let j = if sum_all(base) > 0.0 { 0 } else { -1 }
            return base + models[j] * float(int(max_all(abs(base)) * big))
        }",
        // Non-finite results unless d != 0.
        "merge a(base: Tensor, models: [Tensor], d: f32 = 0.0) -> Tensor {
            return base / d + models[0]
        }",
    ];
    let engines = engines();
    let mut rng = SplitMix64::new(8);
    let (mut ok, mut failed) = (0, 0);
    for src in programs {
        let (p, _) = mergec::check_source(src).expect("checks");
        for shape in [&[3usize][..], &[50], &[3, 50]] {
            let m = instantiate_merge(&p, "a", shape.len()).expect("instantiate");
            for set in [None, Some("big=0.0"), Some("big=1.0"), Some("d=2.0")] {
                let overrides: Vec<(String, Const)> = set
                    .filter(|s| {
                        m.params
                            .iter()
                            .any(|(q, _)| s.starts_with(&format!("{}=", q.name)))
                    })
                    .map(|s| Const::parse_assignment(s).expect("set"))
                    .into_iter()
                    .collect();
                let base = random_tensor(&mut rng, shape, 1.0);
                let models: Vec<Tensor> = (0..2)
                    .map(|_| random_tensor(&mut rng, shape, 1.0))
                    .collect();
                for e in &engines {
                    match compare(&m, &base, &models, &overrides, NAMES[0], e.as_ref(), false) {
                        Ok(Out::Ok) => ok += 1,
                        Ok(Out::Err) => failed += 1,
                        other => panic!("{src} {shape:?} {set:?}: {other:?}"),
                    }
                }
            }
        }
    }
    println!("speculated failures: {ok} equal results, {failed} equal failures");
    assert!(
        ok > 0 && failed > 0,
        "both outcomes must occur: {ok} ok, {failed} failed"
    );
}

/// Unions of top-k masks of one key, which the compiler turns into the larger mask when
/// nothing is skipped (`passes/nested.rs`), and leaves alone otherwise: every form agrees
/// with the interpreter, for fractions, counts, counts past numel and skips.
#[test]
fn unions_of_top_k_masks_match_the_interpreter() {
    let mut rng = SplitMix64::new(11);
    let unions = [
        "topk_mask(x, 0.3) or topk_mask(x, 1)",
        "topk_mask(x, 1) or topk_mask(x, 0.3)",
        "topk_mask(x, 0.0) or topk_mask(x, 2)",
        "topk_mask(x, 7) or topk_mask(x, 100000000)",
        "topk_mask(x, 0.5, 3) or topk_mask(x, 1, 3)",
        "topk_mask(x, 0.5) or topk_mask(x, 1, 2)",
        "topk_mask(x, 2) or topk_mask(x, 1, 5)",
        "topk_mask(x, 0.2) or topk_mask(abs(models[0]), 0.4)",
    ];
    for u in unions {
        let src = format!(
            "merge a(base: Tensor, models: [Tensor]) -> Tensor {{
                let x = abs(models[0] - base)
                return base + (models[0] - base) * ({u})
            }}"
        );
        let (p, _) = mergec::check_source(&src).expect("checks");
        for shape in [&[50usize][..], &[1100, 2000]] {
            let m = instantiate_merge(&p, "a", shape.len()).expect("instantiate");
            let base = random_tensor(&mut rng, shape, 1.0);
            let models: Vec<Tensor> = (0..2)
                .map(|_| random_tensor(&mut rng, shape, 1.0))
                .collect();
            for engine in engines() {
                match compare(&m, &base, &models, &[], NAMES[0], engine.as_ref(), false) {
                    Ok(Out::Ok) => {}
                    other => panic!("{u} at {shape:?}: {other:?}"),
                }
            }
        }
    }
}
