//! The compiled path of `mergec merge`: each merged tensor runs as fused kernels on
//! its storage bytes (bf16/f16/f32 converted inside the kernels), with plans cached
//! by shape, dtype, parameters and (when the program reads them) the tensor's facts.
//! Anything the compiler declines, and every failure, goes through the interpreter,
//! which produces the result or the exact error message.

use super::merge::MergeJob;
use super::plan::PlannedTensor;
use super::safetensors::Checkpoint;
use crate::codegen::Engine;
use crate::exec::run::{RunInputs, execute};
use crate::interp::TensorFacts;
use crate::ir::kernel::Dtype;
use crate::pipeline::{PlanCache, PlanKey, Target};
use crate::types::CheckedMerge;
use crate::types::tast::{TExpr, TKind};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Which engine runs merged tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The reference interpreter.
    Interp,
    /// Cranelift-compiled kernels on the CPU.
    Jit,
    /// The kernel-form reference evaluator (slow; for checking).
    Ref,
    /// CUDA kernels on the GPU (feature `cuda`).
    Cuda,
}

impl Backend {
    pub fn parse(s: &str) -> Result<Backend, String> {
        Ok(match s {
            "interp" => Backend::Interp,
            "jit" => Backend::Jit,
            "ref" => Backend::Ref,
            "cuda" => Backend::Cuda,
            other => {
                return Err(format!(
                    "unknown backend `{other}`: use interp, jit, ref or cuda"
                ));
            }
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Backend::Interp => "interp",
            Backend::Jit => "jit",
            Backend::Ref => "ref",
            Backend::Cuda => "cuda",
        }
    }
}

/// The engine for a backend (None for the interpreter).
pub fn engine(b: Backend) -> Result<Option<Box<dyn Engine>>, crate::codegen::BackendError> {
    Ok(match b {
        Backend::Interp => None,
        Backend::Ref => Some(Box::new(crate::codegen::RefEngine)),
        Backend::Jit => Some(Box::new(crate::codegen::cpu::JitEngine::new()?)),
        Backend::Cuda => Some(crate::codegen::cuda::engine()?),
    })
}

/// Whether the merge reads the tensor's facts (its name, kind or layer).
fn uses_facts(e: &TExpr) -> bool {
    e.any(&|n| matches!(n.kind, TKind::Fact(_)))
}

/// Compiled-path state for one merge job.
pub struct CompiledJob {
    engine: Box<dyn Engine>,
    caches: HashMap<usize, (Arc<CheckedMerge>, PlanCache)>,
    /// Tensors that went through the interpreter instead (declined or failed).
    pub fallbacks: AtomicUsize,
    pool: Mutex<Vec<Vec<u8>>>,
}

impl CompiledJob {
    pub fn new(
        engine: Box<dyn Engine>,
        checked: &HashMap<usize, Arc<CheckedMerge>>,
    ) -> CompiledJob {
        let caches = checked
            .iter()
            .map(|(&rank, m)| (rank, (m.clone(), PlanCache::new(uses_facts(&m.body)))))
            .collect();
        CompiledJob {
            engine,
            caches,
            fallbacks: AtomicUsize::new(0),
            pool: Mutex::new(Vec::new()),
        }
    }

    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }

    /// Plans compiled so far.
    pub fn plans(&self) -> usize {
        self.caches.values().map(|(_, c)| c.len()).sum()
    }

    /// An output buffer of `len` bytes, reusing a recycled one (no fresh pages to fault in).
    fn buffer(&self, len: usize) -> Vec<u8> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        match pool.pop() {
            Some(mut b) if b.capacity() >= len => {
                b.resize(len, 0);
                b
            }
            // A new buffer comes zeroed from the allocator (calloc: fresh pages, no
            // fill); its pages are touched by the kernels' threads, not all here.
            _ => vec![0u8; len],
        }
    }

    /// Returns an output buffer once written, for the next tensor.
    pub fn recycle(&self, b: Vec<u8>) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 2 {
            pool.push(b);
        }
    }

    /// The merged tensor's output bytes, or None to use the interpreter.
    pub fn produce(
        &self,
        job: &MergeJob,
        base: &Checkpoint,
        models: &[Checkpoint],
        n_layers: i64,
        t: &PlannedTensor,
        cancel: &crate::cancel::Cancel,
    ) -> Option<Vec<u8>> {
        let r = self.try_produce(job, base, models, n_layers, t, cancel);
        self.engine.end_tensor();
        if r.is_none() {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn try_produce(
        &self,
        job: &MergeJob,
        base: &Checkpoint,
        models: &[Checkpoint],
        n_layers: i64,
        t: &PlannedTensor,
        cancel: &crate::cancel::Cancel,
    ) -> Option<Vec<u8>> {
        let out_dtype = Dtype::from_header(&t.out_dtype)?;
        let (m, cache) = self.caches.get(&t.shape.len())?;
        let numel: usize = t.shape.iter().product();
        if numel == 0 {
            return None;
        }
        let mut tensors = Vec::with_capacity(models.len() + 1);
        let all: Vec<&Checkpoint> = std::iter::once(base).chain(models).collect();
        all.par_iter().for_each(|ck| ck.prefetch(&t.name));
        for ck in all {
            let info = ck.info(&t.name).ok()?;
            if info.shape != t.shape {
                return None;
            }
            tensors.push((
                ck.raw_bytes(&t.name).ok()?,
                Dtype::from_header(&info.dtype)?,
            ));
        }
        let facts = TensorFacts::from_name(&t.name, n_layers);
        let overrides = job.params.params_for(&t.name, facts.layer, n_layers).ok()?;
        let key = PlanKey {
            params: format!("{overrides:?}"),
            facts: if cache.uses_facts {
                (
                    facts.name.clone(),
                    facts.kind.clone(),
                    facts.layer,
                    facts.n_layers,
                )
            } else {
                Default::default()
            },
            shapes: vec![t.shape.clone(); tensors.len()],
            in_dtypes: tensors.iter().map(|x| x.1).collect(),
            out_dtype,
        };
        let plan = cache.get_or_compile(key.clone(), || {
            let params = crate::pipeline::params(m, &overrides, models.len())?;
            let target = Target {
                facts: &facts,
                shapes: key.shapes.clone(),
                in_dtypes: key.in_dtypes.clone(),
                out_dtype,
            };
            crate::pipeline::compile(m, params, &target, self.engine.as_ref())
        });
        let plan = plan.as_ref().as_ref().ok()?;
        let mut out = self.buffer(numel * out_dtype.size());
        let inp = RunInputs {
            tensors,
            seed: job.seed,
            name: &t.name,
            cancel: *cancel,
        };
        if let Err(e) = execute(plan, &inp, &mut out) {
            if e.message.starts_with(crate::exec::run::BACKEND_ERROR) && !job.quiet {
                eprintln!(
                    "note: tensor `{}`: {}; the interpreter merges it instead",
                    t.name, e.message
                );
            }
            return None;
        }
        if !job.allow_nonfinite && !all_finite(&out, out_dtype) {
            return None;
        }
        Some(out)
    }
}

/// Whether every stored value is finite.
fn all_finite(bytes: &[u8], d: Dtype) -> bool {
    let step = d.size() << 20;
    bytes.par_chunks(step).all(|c| all_finite_seq(c, d))
}

fn all_finite_seq(bytes: &[u8], d: Dtype) -> bool {
    // The exponent field of each value, all ones for NaN and Inf. A block at a time
    // with no early exit inside it, so that the loop vectorizes.
    let (size, exp) = match d {
        Dtype::F32 => (4, 0x7f80_0000u32),
        Dtype::BF16 => (2, 0x7f80),
        Dtype::F16 => (2, 0x7c00),
    };
    bytes.chunks(4096).all(|block| {
        let bad = if size == 4 {
            block
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .fold(0u32, |acc, v| acc | ((v & exp == exp) as u32))
        } else {
            block
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as u32)
                .fold(0u32, |acc, v| acc | ((v & exp == exp) as u32))
        };
        bad == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One NaN or Inf anywhere (first, inside a later block, last) is found, in every
    /// stored dtype; finite values, the largest included, are not.
    #[test]
    fn all_finite_finds_one_bad_value_anywhere() {
        let n = 10_001;
        for d in [Dtype::F32, Dtype::BF16, Dtype::F16] {
            let store = |v: &[f32]| -> Vec<u8> {
                v.iter()
                    .flat_map(|&x| match d {
                        Dtype::F32 => x.to_le_bytes().to_vec(),
                        Dtype::BF16 => half::bf16::from_f32(x).to_le_bytes().to_vec(),
                        Dtype::F16 => half::f16::from_f32(x).to_le_bytes().to_vec(),
                    })
                    .collect()
            };
            let big = match d {
                Dtype::F32 => f32::MAX,
                Dtype::BF16 => half::bf16::MAX.to_f32(),
                Dtype::F16 => half::f16::MAX.to_f32(),
            };
            let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - 5000.0) * 0.37).collect();
            v[17] = big;
            v[18] = -big;
            assert!(all_finite(&store(&v), d), "{d:?}");
            for at in [0, 2047, 2048, 6000, n - 1] {
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    let mut w = v.clone();
                    w[at] = bad;
                    assert!(!all_finite(&store(&w), d), "{d:?} {bad} at {at}");
                }
            }
        }
    }
}
