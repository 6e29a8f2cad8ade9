//! `mergec run` (one program on example tensors) and `mergec demo` (every stdlib
//! method on example tensors): the language's main job until checkpoints land.

use crate::interp::{Context, Tensor, TensorFacts, run_merge};
use crate::pipeline::Source;
use crate::semantics::{name_hash, normal_at, stream_key};
use crate::show::{describe, stats};
use crate::types::{Const, instantiate_merge};
use std::time::Instant;

/// A base tensor and `k` fine-tuned variants: base + a shared skill direction + noise.
pub fn example_tensors(shape: &[usize], k: usize, seed: u64) -> (Tensor, Vec<Tensor>) {
    let n: usize = shape.iter().product();
    let draw = |stream: u32, scale: f32| -> Vec<f32> {
        let key = stream_key(seed, name_hash("<example>"), 0, stream);
        (0..n as u64).map(|i| scale * normal_at(key, i)).collect()
    };
    let base = draw(0, 1.0);
    let shared = draw(1, 0.02);
    let models = (0..k)
        .map(|m| {
            let own = draw(2 + m as u32, 0.05);
            let data = (0..n).map(|i| base[i] + shared[i] + own[i]).collect();
            Tensor::new(shape.to_vec(), data)
        })
        .collect();
    (Tensor::new(shape.to_vec(), base), models)
}

pub struct RunArgs {
    pub program: String,
    pub merge: Option<String>,
    pub models: usize,
    pub shape: Vec<usize>,
    pub seed: u64,
    pub sets: Vec<String>,
    pub tensor: String,
}

pub fn run(a: &RunArgs) -> i32 {
    match run_inner(a) {
        Ok(()) => 0,
        Err(msg) => {
            eprintln!("{msg}");
            1
        }
    }
}

/// Example tensors held at once by `run`, in elements (1 GiB of f32).
const MAX_RUN_ELEMENTS: usize = 1 << 28;

fn run_inner(a: &RunArgs) -> Result<(), String> {
    let max_models = crate::syntax::limits::Limits::DEFAULT.max_models;
    if a.models > max_models {
        return Err(format!(
            "error: --models {}: at most {max_models} models (the language's limit)",
            a.models
        ));
    }
    let n: usize = a.shape.iter().product();
    if n.saturating_mul(a.models + 1) > MAX_RUN_ELEMENTS {
        return Err(format!(
            "error: --models {} with --shape {:?}: {} example tensors of {n} elements exceed \
             the limit of {MAX_RUN_ELEMENTS} elements held at once",
            a.models,
            a.shape,
            a.models + 1
        ));
    }
    let color = crate::diag::use_color();
    let source = Source::load(&a.program).map_err(|e| format!("error: {}", e.render(color)))?;
    let name = source
        .merge_name(a.merge.as_deref())
        .map_err(|e| format!("error: {}", e.render(color)))?;
    let overrides = a
        .sets
        .iter()
        .map(|s| Const::parse_assignment(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("error: --set {e}"))?;
    let checked = source
        .instantiate(&name, a.shape.len())
        .map_err(|e| format!("error: {}", e.render(color)))?;
    let (base, models) = example_tensors(&a.shape, a.models, a.seed);
    let ctx = Context::new(a.seed, TensorFacts::from_name(&a.tensor, 4));
    let start = Instant::now();
    let out = run_merge(&checked, &base, &models, &overrides, &ctx, true)
        .map_err(|e| format!("error: {e}"))?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    println!(
        "{name} on {} example models of shape {:?} (tensor `{}`, seed {}):",
        a.models, a.shape, a.tensor, a.seed
    );
    println!("{}", describe(&crate::interp::Value::tensor(out.clone())));
    println!(
        "  change from base: {:.4} (relative L2)   time {ms:.2} ms",
        rel_change(&base, &out)
    );
    crate::interp::check_finite(&out, &a.tensor).map_err(|e| format!("error: {e}"))
}

fn rel_change(base: &Tensor, out: &Tensor) -> f32 {
    let d = Tensor::new(
        base.shape.clone(),
        base.data
            .iter()
            .zip(&out.data)
            .map(|(a, b)| b - a)
            .collect(),
    );
    stats(&d).norm / stats(base).norm.max(1e-12)
}

/// Every stdlib method on example tensors (2-D and 1-D), as a table.
pub fn demo(seed: u64) -> i32 {
    let shapes: [&[usize]; 2] = [&[64, 96], &[783]];
    println!("mergec demo: every stdlib method, checked and run by the reference interpreter");
    println!("on 3 example models (base + shared direction + noise), seed {seed}.\n");
    println!(
        "{:<17} {:>10} {:>12} {:>12} {:>10}  status",
        "method", "shape", "rel.change", "norm", "ms"
    );
    let mut failures = 0;
    for m in crate::stdlib::methods() {
        for shape in shapes {
            let (base, models) = example_tensors(shape, 3, seed);
            let tensor = if shape.len() == 2 {
                "model.layers.1.mlp.up_proj.weight"
            } else {
                "model.layers.1.post_attention_layernorm.weight"
            };
            let ctx = Context::new(seed, TensorFacts::from_name(tensor, 4));
            let label = format!("{shape:?}");
            if !m.sig.ranks.contains(&shape.len()) {
                println!(
                    "{:<17} {label:>10} {:>12} {:>12} {:>10}  skipped ({}-D tensors only)",
                    m.sig.name, "-", "-", "-", m.sig.ranks[0]
                );
                continue;
            }
            let start = Instant::now();
            let result = instantiate_merge(&m.program, &m.sig.name, shape.len())
                .map_err(|d| format!("{d:?}"))
                .and_then(|c| {
                    run_merge(&c, &base, &models, &[], &ctx, false).map_err(|e| e.to_string())
                });
            let ms = start.elapsed().as_secs_f64() * 1e3;
            match result {
                Ok(out) => println!(
                    "{:<17} {label:>10} {:>12.5} {:>12.3} {ms:>10.2}  ok",
                    m.sig.name,
                    rel_change(&base, &out),
                    stats(&out).norm
                ),
                Err(e) => {
                    failures += 1;
                    println!(
                        "{:<17} {label:>10} {:>12} {:>12} {ms:>10.2}  FAILED: {e}",
                        m.sig.name, "-", "-"
                    );
                }
            }
        }
    }
    println!(
        "\n{} methods; {failures} failures. `mergec methods` lists their parameters.",
        crate::stdlib::methods().len()
    );
    if let Err(e) = demo_checkpoint_merge(seed) {
        failures += 1;
        println!("checkpoint merge FAILED: {e}");
    }
    if failures == 0 { 0 } else { 1 }
}

/// The whole pipeline on a tiny synthetic model family: write checkpoints, merge with
/// stdlib `ties`, read the result back. Everything lives in a temporary directory.
fn demo_checkpoint_merge(seed: u64) -> Result<(), String> {
    use crate::runtime::safetensors::{Checkpoint, Dtype};
    use crate::runtime::synth::{Arch, write_model};
    let dir = std::env::temp_dir().join(format!("mergec-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cleanup = |r: Result<(), String>| {
        let _ = std::fs::remove_dir_all(&dir);
        r
    };
    let arch = Arch::tiny(4);
    let result = (|| -> Result<(), String> {
        for m in 0..3u32 {
            write_model(
                &dir.join(format!("m{m}")),
                &arch,
                Dtype::BF16,
                seed,
                m,
                0.1,
                16 << 10,
            )?;
        }
        let program = crate::pipeline::Source::load("ties").map_err(|e| e.to_string())?;
        let models = vec![dir.join("m1"), dir.join("m2")];
        let mut job = crate::runtime::MergeJob::new(
            program,
            "ties",
            dir.join("m0"),
            models,
            dir.join("merged"),
        );
        let density = ("density".into(), crate::types::Const::F32(0.5));
        job.params = Box::new(crate::runtime::FixedParams(vec![density]));
        job.seed = seed;
        job.shard_size = 16 << 10;
        let s = crate::runtime::run(&job)?;
        let out = Checkpoint::open(&job.out).map_err(|e| e.to_string())?;
        println!(
            "\ncheckpoint merge: `mergec merge ties --set density=0.5` on a synthetic 4-layer bf16 family \
             (base + 2 fine-tunes, sharded):\n  merged {} tensors, copied {}, {} output shards, {} tensors read back, {:.2} s",
            s.merged,
            s.copied,
            s.shards,
            out.len(),
            s.seconds
        );
        Ok(())
    })();
    cleanup(result)
}
