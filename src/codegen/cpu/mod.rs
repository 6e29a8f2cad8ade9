//! The CPU backend: each kernel becomes one native function, compiled with
//! Cranelift, that runs a range of units (blocks or rows) with 128-bit SIMD, 8
//! elements per step; launches split the units across rayon's threads. Results
//! match `ir::reference` bit for bit (NaN payloads aside), for any thread count.
//!
//! - `plan`: validation, value types (f32/f64 as the reference has them), liveness.
//! - `translate`: the function and its unit / canonical-block loops, reductions.
//! - `steps`: the group loops (fast whole groups, masked partial or row-crossing ones).
//! - `group`: a group's loads (vector loads, or lane-by-lane through stack buffers)
//!   and sinks; `body`: the instructions; `emit`: vector conversions (bf16, f16,
//!   promote/demote) and the random draw; `fns`: per-lane Rust helpers (exp, powf..).
//! - `jit`: Cranelift setup, linking, the native entry point; `launch`: buffer checks,
//!   raw pointers, rayon. The only `unsafe` code is in these two files.
//!
//! `MERGEC_JIT_DUMP=1` prints each compiled kernel's CLIF (as built and as optimized) and machine
//! code to stderr; with `--threads 1` the kernels compile one at a time and do not interleave.

mod body;
mod emit;
mod fns;
mod group;
mod jit;
mod launch;
mod plan;
mod steps;
mod translate;

use crate::codegen::{BackendError, Engine, Launch};
use crate::ir::kernel::{Kernel, KernelIo};

/// Elements per chunk of a chunked selection's keys on the CPU: a chunk's keys (one f32
/// buffer per request, 128 KB each) and inputs stay in a core's L2 cache from the key
/// kernel to the band scan that reads them back. TIES (density 0.5, mistral-2, 2 threads,
/// a 2 MB-L2 Xeon): CPU time 5.74 -> 5.36 s and 5.92 -> 5.72 s from 2^17 (medians of 6
/// and 8 alternated runs); 2^14 was slower than 2^15 (per-chunk costs).
pub const SELECT_CHUNK: usize = 1 << 15;

/// The Cranelift JIT engine (`--backend jit`).
pub struct JitEngine {
    jit: jit::Jit,
    /// Compiled code by kernel structure (names aside): the same kernel in another
    /// stage, tensor or iteration is compiled once.
    cache: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<jit::JitKernel>>>,
}

impl JitEngine {
    /// Sets up code generation for the host CPU.
    pub fn new() -> Result<JitEngine, BackendError> {
        Ok(JitEngine {
            jit: jit::Jit::new().map_err(BackendError::Unavailable)?,
            cache: Default::default(),
        })
    }
}

struct JitLaunch {
    kernel: Kernel,
    code: std::sync::Arc<jit::JitKernel>,
}

impl Launch for JitLaunch {
    fn launch(&self, io: &mut KernelIo) {
        // A token that never fires cannot stop the launch.
        let _ = launch::run(&self.kernel, &self.code, io, &crate::cancel::Cancel::NEVER);
    }
    fn launch_until(
        &self,
        io: &mut KernelIo,
        cancel: &crate::cancel::Cancel,
    ) -> Result<(), BackendError> {
        Ok(launch::run(&self.kernel, &self.code, io, cancel)?)
    }
}

impl Engine for JitEngine {
    fn name(&self) -> &'static str {
        "jit"
    }
    fn concurrent_launches(&self) -> bool {
        true
    }
    fn select_chunk(&self) -> usize {
        SELECT_CHUNK
    }

    /// Kernels compile independently (one module each), so in parallel.
    fn compile_many(&self, ks: &[Kernel]) -> Result<Vec<Box<dyn Launch>>, BackendError> {
        use rayon::prelude::*;
        ks.par_iter().map(|k| self.compile(k)).collect()
    }

    fn compile(&self, k: &Kernel) -> Result<Box<dyn Launch>, BackendError> {
        let key = format!(
            "{:?}",
            Kernel {
                name: String::new(),
                ..k.clone()
            }
        );
        let cached = self.cache.lock().ok().and_then(|c| c.get(&key).cloned());
        let code = match cached {
            Some(c) => c,
            None => {
                let p = plan::plan(k).map_err(BackendError::Compile)?;
                let c = self.jit.compile(k, &p).map_err(BackendError::Compile)?;
                let c = std::sync::Arc::new(c);
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(key, c.clone());
                }
                c
            }
        };
        Ok(Box::new(JitLaunch {
            kernel: k.clone(),
            code,
        }))
    }
}

/// The Cranelift IR of a kernel's function, as text.
pub fn clif_text(k: &Kernel) -> Result<String, String> {
    let p = plan::plan(k)?;
    let jit = jit::Jit::new()?;
    Ok(format!("; kernel {}\n{}", k.name, jit.clif(k, &p)?))
}
