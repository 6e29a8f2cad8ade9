//! What the differential tests (tests/backends.rs, tests/backends_cuda.rs) merge:
//! bf16-quantized random tensors, stdlib settings worth covering, and random programs
//! from the type-directed generator with inputs for one of their merges.

#![allow(dead_code)]

use mergec::r#gen::generate_source;
use mergec::interp::Tensor;
use mergec::semantics::rng::SplitMix64;
use mergec::types::{CheckedMerge, instantiate_merge};

/// Normal values rounded to bf16 (so top-k and sign ties are common, as in bf16
/// checkpoints), 5% exact zeros.
pub fn random_tensor(rng: &mut SplitMix64, shape: &[usize], scale: f32) -> Tensor {
    let n = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            if rng.chance(0.05) {
                0.0
            } else {
                half::bf16::from_f32(scale * rng.normal()).to_f32()
            }
        })
        .collect();
    Tensor::new(shape.to_vec(), data)
}

/// Parameter settings per stdlib method besides its defaults.
pub fn stdlib_settings(name: &str) -> Vec<Vec<&'static str>> {
    let mut v = vec![vec![]];
    match name {
        "ties" | "dare_ties" | "della" | "breadcrumbs" | "breadcrumbs_ties" | "della_linear"
        | "dare_linear" => {
            v.push(vec!["density=0.5"]);
            v.push(vec!["density=0.3", "rescale=true"]);
            v.push(vec!["density=0.7", "normalize=false", "lambda=0.8"]);
        }
        "task_arithmetic" => v.push(vec!["normalize=true", "lambda=0.5"]),
        "sce" => v.push(vec!["select_topk=0.5"]),
        "model_stock" => v.push(vec!["filter_wise=true"]),
        "slerp" | "nuslerp" => v.push(vec!["t=0.3"]),
        _ => {}
    }
    v
}

/// One generated program's merge, instantiated, with a base and 1-3 models.
pub struct RandomCase {
    pub source: String,
    pub merge: CheckedMerge,
    pub base: Tensor,
    pub models: Vec<Tensor>,
}

/// The cases of generated program `seed` (sizes 8-127; shapes 1, 3, 50, 783, 3x50, 50x3).
pub fn random_cases(seed: u64, rng: &mut SplitMix64) -> Vec<RandomCase> {
    let shapes: [&[usize]; 6] = [&[1], &[3], &[50], &[783], &[3, 50], &[50, 3]];
    let src = generate_source(seed, 8 + (seed as usize * 7) % 120);
    let (p, sigs) = mergec::check_source(&src).expect("generated programs check");
    let mut out = Vec::new();
    for sig in &sigs {
        let shape = shapes[(seed as usize + sig.name.len()) % shapes.len()];
        let Ok(merge) = instantiate_merge(&p, &sig.name, shape.len()) else {
            continue;
        };
        let k = 1 + (seed % 3) as usize;
        let base = random_tensor(rng, shape, 1.0);
        let models = (0..k).map(|_| random_tensor(rng, shape, 1.0)).collect();
        out.push(RandomCase {
            source: src.clone(),
            merge,
            base,
            models,
        });
    }
    out
}
