//! Golden snapshots of the compiler's output for every stdlib method: the fused
//! kernel plan (`mergec compile --emit kernels`) and the rendered CUDA C (kernels
//! only; the shared prelude from kernels/*.cuh is left out), for 3 models, a 50x3
//! bf16 tensor and the settings below. A change to lowering, the passes or the
//! renderer shows here as a reviewed diff (`cargo insta review`, or
//! INSTA_UPDATE=always to bless). An ignored benchmark prints compile latency: parse,
//! check, lower, passes and JIT of each method (target: under 20 ms).
//!
//! Run: `cargo test --release --test compile_golden -- --nocapture`.

use mergec::cli::compile::{CompileArgs, Emit, emit};
use mergec::pipeline;
use std::time::Instant;

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("golden/snapshots");
    s.set_prepend_module_to_snapshot(false);
    s
}

fn sets(method: &str) -> Vec<String> {
    match method {
        "ties" | "dare_ties" | "della" | "breadcrumbs" | "breadcrumbs_ties" | "della_linear"
        | "dare_linear" => vec!["density=0.5".to_string()],
        "sce" => vec!["select_topk=0.5".to_string()],
        _ => vec![],
    }
}

fn args<'a>(method: &'a str, sets: &'a [String], emit: Emit) -> CompileArgs<'a> {
    CompileArgs {
        program: method,
        merge: None,
        models: 3,
        shape: vec![50, 3],
        sets,
        emit,
        dtype: "bf16",
        tensor: "model.layers.1.mlp.up_proj.weight",
    }
}

#[test]
fn kernel_plans_and_cuda_of_every_stdlib_method() {
    for m in mergec::stdlib::methods() {
        let name = m.sig.name.clone();
        let s = sets(&name);
        let plan = emit(&args(&name, &s, Emit::Kernels)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let cuda = emit(&args(&name, &s, Emit::Cuda)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let start = cuda.find("extern \"C\" __global__").unwrap_or(0);
        settings().bind(|| {
            insta::assert_snapshot!(format!("kernels@{name}"), plan);
            insta::assert_snapshot!(format!("cuda@{name}"), &cuda[start..]);
        });
    }
}

/// A benchmark, not a test (timings on shared machines are noisy): run with
/// `cargo test --release --test compile_golden -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: prints compile latency per stdlib method"]
fn compile_latency_of_every_stdlib_method_is_under_20_ms() {
    let mut worst = (0.0f64, String::new());
    for m in mergec::stdlib::methods() {
        let name = m.sig.name.clone();
        let overrides: Vec<(String, mergec::types::Const)> = sets(&name)
            .iter()
            .map(|s| mergec::types::Const::parse_assignment(s).expect("set"))
            .collect();
        // Best of 3: parse, check, instantiate, lower, passes, JIT (a fresh engine each
        // time, so no kernel comes from its cache).
        let mut best = f64::MAX;
        for _ in 0..3 {
            let engine = mergec::codegen::cpu::JitEngine::new().expect("jit");
            let t = Instant::now();
            let src = pipeline::Source::check(m.file, m.source).expect("checks");
            let cm = src.instantiate(&name, 2).expect("rank 2");
            let params = pipeline::params(&cm, &overrides, 3).expect("params");
            let facts =
                mergec::interp::TensorFacts::from_name("model.layers.1.mlp.up_proj.weight", 32);
            let dt = mergec::ir::kernel::Dtype::BF16;
            let target = pipeline::Target::uniform(&facts, &[14336, 4096], 3, dt);
            pipeline::compile(&cm, params, &target, &engine)
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
        }
        println!("compile latency {name}: {best:.2} ms");
        if best > worst.0 {
            worst = (best, name);
        }
    }
    println!("worst: {} {:.2} ms", worst.1, worst.0);
    if !cfg!(debug_assertions) {
        assert!(
            worst.0 <= 20.0,
            "{} takes {:.2} ms to compile",
            worst.1,
            worst.0
        );
    }
}
