//! The compiled path of `mergec merge`: each merged tensor runs as fused kernels on
//! its storage bytes (bf16/f16/f32 converted inside the kernels), with plans cached
//! by shape, dtype, parameters and (when the program reads them) the tensor's facts.
//! Anything the compiler declines, and every failure, goes through the interpreter,
//! which produces the result or the exact error message.

use super::merge::{Inputs, MergeJob};
use super::plan::PlannedTensor;
use super::safetensors::Checkpoint;
use crate::codegen::{BackendError, Engine};
use crate::exec::run::{Compiled, RunInputs, execute};
use crate::interp::TensorFacts;
use crate::ir::kernel::Dtype;
use crate::ir::lower::LowerError;
use crate::pipeline::{PlanCache, PlanKey, Target};
use crate::types::CheckedMerge;
use crate::types::tast::{TExpr, TKind};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

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
    /// The GPU path without a GPU: JIT kernels on device memory held in host RAM
    /// (`codegen::Resident`), tensors resident, selections by histogram passes, two
    /// tensors at once. Slower than `Jit`; for checking that path on any machine.
    Emulated,
    /// The fastest of these engines on this machine and merge (`--device auto` with a
    /// GPU: the JIT and CUDA): each runs one tensor, timed, and the fastest runs the
    /// rest (see [`race_tensor`]). Their outputs are the same bytes.
    Fastest(&'static [Backend]),
}

impl Backend {
    pub fn parse(s: &str) -> Result<Backend, String> {
        Ok(match s {
            "interp" => Backend::Interp,
            "jit" => Backend::Jit,
            "ref" => Backend::Ref,
            "cuda" => Backend::Cuda,
            "emulated" => Backend::Emulated,
            other => {
                return Err(format!(
                    "unknown backend `{other}`: use interp, jit, ref, cuda or emulated"
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
            Backend::Emulated => "emulated",
            Backend::Fastest(_) => "auto",
        }
    }
}

/// The engines of a backend: none for the interpreter, several for [`Backend::Fastest`].
pub fn engines(b: Backend) -> Result<Vec<Box<dyn Engine>>, BackendError> {
    Ok(match b {
        Backend::Interp => vec![],
        Backend::Ref => vec![Box::new(crate::codegen::RefEngine)],
        Backend::Jit => vec![Box::new(crate::codegen::cpu::JitEngine::new()?)],
        Backend::Cuda => vec![crate::codegen::cuda::engine()?],
        Backend::Emulated => vec![Box::new(crate::codegen::Resident::new(
            crate::codegen::cpu::JitEngine::new()?,
        ))],
        Backend::Fastest(list) => {
            let mut all = Vec::new();
            for &x in list {
                if matches!(x, Backend::Fastest(_)) {
                    return Err(BackendError::Unavailable(
                        "a race of engines cannot hold another race".into(),
                    ));
                }
                all.extend(engines(x)?);
            }
            all
        }
    })
}

/// Elements of the tensors a race of engines is timed on, at most (when a merge has
/// such tensors): large enough to show a device's throughput, not its launch latency,
/// small enough that running it twice per engine costs little.
const RACE_MAX_ELEMENTS: usize = 1 << 26;

/// The tensor a race of engines ([`Backend::Fastest`]) is timed on: the first of the
/// merged tensors with the most elements up to [`RACE_MAX_ELEMENTS`] (else the first
/// of the smallest merged ones). None if nothing is merged.
pub fn race_tensor(tensors: &[PlannedTensor]) -> Option<&PlannedTensor> {
    let merged = || {
        tensors
            .iter()
            .filter(|t| t.action == super::plan::Action::Merge && t.source.is_none())
            .map(|t| (t.shape.iter().product::<usize>(), t))
    };
    let size = merged()
        .map(|(n, _)| n)
        .filter(|&n| n <= RACE_MAX_ELEMENTS)
        .max()
        .or_else(|| merged().map(|(n, _)| n).min())?;
    merged().find(|&(n, _)| n == size).map(|(_, t)| t)
}

/// Whether the merge reads the tensor's facts (its name, kind or layer).
fn uses_facts(e: &TExpr) -> bool {
    e.any(&|n| matches!(n.kind, TKind::Fact(_)))
}

/// What a tensor's run calls before its first launch, where its memory-hungry part
/// begins (see [`execute`]): the caller waits there for room beside the outputs the
/// writer has not stored yet.
pub type Gate<'a> = Option<&'a (dyn Fn() + Sync)>;

/// Compiled-path state for one merge job.
pub struct CompiledJob {
    /// The engines, each with its plans by rank; the first runs unless another won
    /// the race ([`Self::race`]).
    lanes: Vec<Lane>,
    /// The race's winning lane, and what the race measured.
    won: OnceLock<usize>,
    report: OnceLock<String>,
    /// Tensors that went through the interpreter instead (declined or failed).
    pub fallbacks: AtomicUsize,
    pool: Mutex<Vec<Vec<u8>>>,
}

/// One engine of a job and its plans, by the rank of the tensors they merge.
struct Lane {
    engine: Box<dyn Engine>,
    caches: HashMap<usize, (Arc<CheckedMerge>, PlanCache)>,
}

/// One tensor's inputs and the key of its plan.
struct Prepared<'a> {
    tensors: Vec<(&'a [u8], Dtype)>,
    facts: TensorFacts,
    overrides: Vec<(String, crate::types::Const)>,
    key: PlanKey,
    rank: usize,
    numel: usize,
    models: usize,
}

impl CompiledJob {
    /// The compiled path with `engines` (at least one; several race, see [`Self::race`]).
    pub fn new(
        engines: Vec<Box<dyn Engine>>,
        checked: &HashMap<usize, Arc<CheckedMerge>>,
    ) -> CompiledJob {
        let lanes: Vec<Lane> = engines
            .into_iter()
            .map(|engine| Lane {
                engine,
                caches: checked
                    .iter()
                    .map(|(&rank, m)| (rank, (m.clone(), PlanCache::new(uses_facts(&m.body)))))
                    .collect(),
            })
            .collect();
        CompiledJob {
            lanes,
            won: OnceLock::new(),
            report: OnceLock::new(),
            fallbacks: AtomicUsize::new(0),
            pool: Mutex::new(Vec::new()),
        }
    }

    /// The engine that runs the tensors (a race's winner once it is run).
    pub fn engine_name(&self) -> &'static str {
        self.lanes[self.lane()].engine.name()
    }

    /// What the engine that ran the tensors copied to and from its device memory (if it
    /// has any and used it).
    pub fn transfers(&self) -> Option<crate::codegen::Transfers> {
        let t = self.lanes[self.lane()].engine.memory()?.transfers();
        (t.up_bytes > 0).then_some(t)
    }

    /// How many tensors the engine that runs them takes at once.
    pub fn tensors_in_flight(&self) -> usize {
        self.lanes[self.lane()].engine.tensors_in_flight()
    }

    /// What a race of engines measured, if one was run.
    pub fn race_report(&self) -> Option<String> {
        self.report.get().cloned()
    }

    fn lane(&self) -> usize {
        self.won.get().copied().unwrap_or(0)
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
            _ => {
                let b = vec![0u8; len];
                huge_pages(&b);
                b
            }
        }
    }

    /// Returns an output buffer once written, for the next tensor.
    pub fn recycle(&self, b: Vec<u8>) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 2 {
            pool.push(b);
        }
    }

    /// The merged tensor's output bytes, or None to use the interpreter. `gate` is
    /// called before the run's first launch (see [`execute`]).
    pub(super) fn produce(
        &self,
        job: &MergeJob,
        inputs: &Inputs,
        n_layers: i64,
        t: &PlannedTensor,
        gate: Gate,
    ) -> Option<Vec<u8>> {
        let r = self.try_produce(job, inputs, n_layers, t, gate);
        self.lanes[self.lane()].engine.end_tensor();
        if r.is_none() {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn try_produce(
        &self,
        job: &MergeJob,
        inputs: &Inputs,
        n_layers: i64,
        t: &PlannedTensor,
        gate: Gate,
    ) -> Option<Vec<u8>> {
        let (base, models) = (&inputs.base, &inputs.models);
        let p = prepare(job, base, models, n_layers, t, &self.lanes[0].caches)?;
        let lane = self.lane();
        let plan = self.plan(lane, &p)?;
        self.run(
            plan.as_ref().as_ref().ok()?,
            job,
            &p,
            t,
            &inputs.cancel,
            gate,
        )
    }

    /// Tensor `t`'s plan for lane `lane`, compiled by its engine on first use.
    fn plan(&self, lane: usize, p: &Prepared) -> Option<Arc<Result<Compiled, LowerError>>> {
        let engine = self.lanes[lane].engine.as_ref();
        let (m, cache) = self.lanes[lane].caches.get(&p.rank)?;
        Some(cache.get_or_compile(p.key.clone(), || {
            let params = crate::pipeline::params(m, &p.overrides, p.models)?;
            let target = Target {
                facts: &p.facts,
                shapes: p.key.shapes.clone(),
                in_dtypes: p.key.in_dtypes.clone(),
                out_dtype: p.key.out_dtype,
            };
            crate::pipeline::compile(m, params, &target, engine)
        }))
    }

    /// Runs a compiled plan on tensor `t`: its output bytes, or None (the interpreter
    /// merges it: the engine failed, or a value is not finite where that is refused).
    fn run(
        &self,
        plan: &Compiled,
        job: &MergeJob,
        p: &Prepared,
        t: &PlannedTensor,
        cancel: &crate::cancel::Cancel,
        gate: Gate,
    ) -> Option<Vec<u8>> {
        let out_dtype = p.key.out_dtype;
        let len = p.numel * out_dtype.size();
        let inp = RunInputs {
            tensors: p.tensors.clone(),
            seed: job.seed,
            name: &t.name,
            cancel: *cancel,
        };
        // The output buffer is taken once the gate opens: by then the writer may have
        // handed the previous output's buffer back.
        let mut out = None;
        let slot = &mut out;
        let give = move || {
            gate.inspect(|g| g());
            let slot = slot; // moved: the closure is FnOnce, the buffer outlives it
            slot.insert(self.buffer(len)).as_mut_slice()
        };
        if let Err(e) = execute(plan, &inp, give) {
            if e.message.starts_with(crate::exec::run::BACKEND_ERROR) && !job.quiet {
                eprintln!(
                    "note: tensor `{}`: {}; the interpreter merges it instead",
                    t.name, e.message
                );
            }
            return None;
        }
        // A plan with no launch never asked for its buffer: it waits at the gate too.
        let out = out.unwrap_or_else(|| {
            gate.inspect(|g| g());
            self.buffer(len)
        });
        if !job.allow_nonfinite && !all_finite(&out, out_dtype) {
            return None;
        }
        Some(out)
    }

    /// With several engines, before the merge: runs one of `tensors` (see
    /// [`race_tensor`]) on each, alone and timed, twice (their plans compiled first, so
    /// that only the runs count), and keeps the fastest for the merge. If their outputs
    /// differ (a backend bug: every engine gives the interpreter's bytes), or none could
    /// run it, the first engine runs the merge. The outputs are dropped, and the inputs'
    /// pages released. [`Self::race_report`] says what was measured.
    pub fn race(
        &self,
        job: &MergeJob,
        base: &Checkpoint,
        models: &[Checkpoint],
        n_layers: i64,
        tensors: &[PlannedTensor],
        cancel: &crate::cancel::Cancel,
    ) {
        if self.lanes.len() < 2 || self.won.get().is_some() {
            return;
        }
        let Some(t) = race_tensor(tensors) else {
            return;
        };
        let caches = &self.lanes[0].caches;
        let raced =
            prepare(job, base, models, n_layers, t, caches).map(|p| self.time(job, &p, t, cancel));
        std::iter::once(base)
            .chain(models)
            .for_each(|c| c.release(&t.name));
        // A tensor with no compiled path: the first engine runs the merge, unreported.
        let (won, report) = raced.unzip();
        let _ = self.won.set(won.unwrap_or(0));
        if let Some(r) = report {
            let _ = self.report.set(r);
        }
    }

    /// [`Self::race`] on one prepared tensor: the winning lane and the report.
    fn time(
        &self,
        job: &MergeJob,
        p: &Prepared,
        t: &PlannedTensor,
        cancel: &crate::cancel::Cancel,
    ) -> (usize, String) {
        let plans: Vec<_> = (0..self.lanes.len()).map(|i| self.plan(i, p)).collect();
        let mut outs = Vec::new();
        let mut seconds = Vec::new();
        for plan in &plans {
            let plan = plan.as_ref().and_then(|x| x.as_ref().as_ref().ok());
            // The better of two runs: a first launch may load code or fault pages in.
            let (mut out, mut best) = (None, None::<f64>);
            for _ in 0..2 {
                let start = std::time::Instant::now();
                let Some(o) = plan.and_then(|plan| self.run(plan, job, p, t, cancel, None)) else {
                    break;
                };
                let s = start.elapsed().as_secs_f64();
                best = Some(best.map_or(s, |b| b.min(s)));
                if let Some(old) = out.replace(o) {
                    self.recycle(old);
                }
            }
            seconds.push(best);
            outs.push(out);
        }
        let names: Vec<&str> = self.lanes.iter().map(|l| l.engine.name()).collect();
        let mut ran = outs.iter().flatten();
        let first = ran.next();
        let agree = ran.all(|o| Some(o) == first);
        let won = if agree { fastest(&seconds) } else { None };
        let mut report = race_report(&names, &seconds, &t.name, p.numel, won);
        if !agree {
            report.push_str(" (their outputs differ: a backend bug)");
        }
        for lane in &self.lanes {
            lane.engine.end_tensor();
        }
        outs.into_iter().flatten().for_each(|o| self.recycle(o));
        (won.unwrap_or(0), report)
    }
}

/// Asks for transparent huge pages under a fresh buffer (Linux, where they are enabled
/// for regions that ask): its first touch then maps 2 MB at a time instead of 4 KB, which
/// took a seventh of a task-arithmetic merge's CPU in page faults (`perf`:
/// `do_anonymous_page`). Advisory: the bytes are the same either way. Small buffers,
/// with no 2 MB-aligned extent, are left alone.
fn huge_pages(b: &[u8]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = b.as_ptr() as usize;
        let first = start.next_multiple_of(HUGE);
        let end = (start + b.len()) / HUGE * HUGE;
        if end > first {
            // SAFETY: the range lies within `b`'s allocation, and MADV_HUGEPAGE only
            // changes how its pages are backed, never their contents.
            unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = b;
}

/// The lane with the shortest time (the first of equal ones); None if none ran.
fn fastest(seconds: &[Option<f64>]) -> Option<usize> {
    seconds
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// What a race measured, in words: "note: engines raced on `NAME` (58.7 M elements):
/// jit 412.051 ms, cuda 120.313 ms; cuda runs the merge".
fn race_report(
    names: &[&str],
    seconds: &[Option<f64>],
    tensor: &str,
    numel: usize,
    won: Option<usize>,
) -> String {
    let times: Vec<String> = names
        .iter()
        .zip(seconds)
        .map(|(n, s)| match s {
            Some(s) => format!("{n} {:.3} ms", s * 1e3),
            None => format!("{n} declined it"),
        })
        .collect();
    let size = match numel {
        n if n >= 1_000_000 => format!("{:.1} M elements", n as f64 / 1e6),
        n => format!("{n} elements"),
    };
    let winner = names[won.unwrap_or(0)];
    format!(
        "note: engines raced on `{tensor}` ({size}): {}; {winner} runs the merge",
        times.join(", ")
    )
}

/// Tensor `t`'s inputs (None if a checkpoint lacks it, its shape differs, or a dtype
/// or rank has no compiled path) and its plan's key.
fn prepare<'a>(
    job: &MergeJob,
    base: &'a Checkpoint,
    models: &'a [Checkpoint],
    n_layers: i64,
    t: &PlannedTensor,
    caches: &HashMap<usize, (Arc<CheckedMerge>, PlanCache)>,
) -> Option<Prepared<'a>> {
    let out_dtype = Dtype::from_header(&t.out_dtype)?;
    let (_, cache) = caches.get(&t.shape.len())?;
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
    Some(Prepared {
        tensors,
        facts,
        overrides,
        key,
        rank: t.shape.len(),
        numel,
        models: models.len(),
    })
}

/// Whether every stored value is finite.
fn all_finite(bytes: &[u8], d: Dtype) -> bool {
    let step = d.size() << 20;
    let arch = pulp::Arch::new();
    bytes
        .par_chunks(step)
        .all(|bytes| arch.dispatch(Finite { bytes, d }))
}

/// [`all_finite_seq`] compiled for the best instruction set the CPU has (the loop
/// vectorizes to its widest registers).
struct Finite<'a> {
    bytes: &'a [u8],
    d: Dtype,
}

impl pulp::WithSimd for Finite<'_> {
    type Output = bool;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> bool {
        all_finite_seq(self.bytes, self.d)
    }
}

#[inline(always)]
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
            // In 16-bit lanes: twice as many per vector as widened to 32 bits.
            let exp = exp as u16;
            let bad = block
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .fold(0u16, |acc, v| acc | ((v & exp == exp) as u16));
            bad as u32
        };
        bad == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fastest_lane_is_the_first_of_the_shortest_that_ran() {
        assert_eq!(fastest(&[Some(0.3), Some(0.1), Some(0.2)]), Some(1));
        assert_eq!(fastest(&[Some(0.2), None, Some(0.2)]), Some(0));
        assert_eq!(fastest(&[None, Some(5.0)]), Some(1));
        assert_eq!(fastest(&[None, None]), None);
        assert_eq!(fastest(&[]), None);
    }

    #[test]
    fn a_race_runs_on_the_first_of_the_largest_merged_tensors_up_to_its_cap() {
        let t = |name: &str, shape: &[usize], action: super::super::plan::Action| PlannedTensor {
            name: name.into(),
            shape: shape.to_vec(),
            action,
            out_dtype: "BF16".into(),
            out_bytes: 2 * shape.iter().product::<usize>(),
            source: None,
        };
        use super::super::plan::Action::{Copy, Merge};
        let cap = RACE_MAX_ELEMENTS;
        let name = |ts: &[PlannedTensor]| race_tensor(ts).map(|t| t.name.clone());
        // The largest within the cap, the first of equal ones; copies do not count.
        let ts = [
            t("embed", &[cap, 2], Merge),
            t("norm", &[64], Merge),
            t("copied", &[cap], Copy),
            t("up", &[1024, 4096], Merge),
            t("down", &[4096, 1024], Merge),
        ];
        assert_eq!(name(&ts).as_deref(), Some("up"));
        // None within the cap: the first of the smallest.
        let ts = [
            t("a", &[cap, 3], Merge),
            t("b", &[cap, 2], Merge),
            t("c", &[2, cap], Merge),
        ];
        assert_eq!(name(&ts).as_deref(), Some("b"));
        assert_eq!(name(&[t("copied", &[8], Copy)]), None);
    }

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
