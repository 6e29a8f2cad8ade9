//! `mergec merge`: streams checkpoints tensor by tensor through a checked
//! program into a new Hugging Face directory, atomically.

use super::error::MergeError;
use super::output::{OutputDir, check_out_format, copy_side_files, write_index, write_out_format};
use super::plan::{
    Action, MergePlan, PlanOptions, PlannedTensor, plan, refuse_overlap, shard_file_names,
};
use super::safetensors::{Checkpoint, Dtype};
use super::stack::Route;
use crate::cancel::Cancel;
use crate::interp::{Context, TensorFacts, param_value, run_merge_owned};
use crate::types::{CheckedMerge, Const};
use indicatif::{ProgressBar, ProgressStyle};
use regex::Regex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Set by the signal handlers (Ctrl-C, SIGTERM, SIGHUP); polled inside every tensor.
pub use crate::cancel::INTERRUPTED as CANCELLED;

/// Parameter values for one tensor: fixed (`--set`) or per tensor (mergekit gradients, filters).
pub trait ParamSource: Sync {
    fn params_for(
        &self,
        tensor: &str,
        layer: i64,
        n_layers: i64,
    ) -> Result<Vec<(String, Const)>, String>;
    /// As `params_for`, where each model's tensor has its own name (`models[i]`; layer
    /// stacking reads other layers than the output's): a per-model setting is matched
    /// against its model's tensor name, as mergekit does.
    fn params_for_models(
        &self,
        tensor: &str,
        models: &[&str],
        layer: i64,
        n_layers: i64,
    ) -> Result<Vec<(String, Const)>, String> {
        let _ = models;
        self.params_for(tensor, layer, n_layers)
    }
    /// What to record in mergec.json.
    fn describe(&self) -> serde_json::Value;
    /// Whether values differ between tensors (then errors name the tensor).
    fn varies_by_tensor(&self) -> bool {
        true
    }
}

/// The same overrides for every tensor.
pub struct FixedParams(pub Vec<(String, Const)>);

impl ParamSource for FixedParams {
    fn varies_by_tensor(&self) -> bool {
        false
    }
    fn params_for(&self, _: &str, _: i64, _: i64) -> Result<Vec<(String, Const)>, String> {
        Ok(self.0.clone())
    }
    fn describe(&self) -> serde_json::Value {
        let m: serde_json::Map<String, serde_json::Value> = self
            .0
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.to_string())))
            .collect();
        serde_json::Value::Object(m)
    }
}

/// Everything `mergec merge` needs.
pub struct MergeJob {
    /// The checked program, with where it came from (for messages and provenance).
    pub program: crate::pipeline::Source,
    pub merge_name: String,
    pub base: PathBuf,
    pub models: Vec<PathBuf>,
    pub out: PathBuf,
    pub params: Box<dyn ParamSource>,
    pub dtype: Option<Dtype>,
    pub only: Option<Regex>,
    pub seed: u64,
    pub shard_size: u64,
    pub max_memory: u64,
    pub force: bool,
    pub on_mismatch_base: bool,
    /// Merge models whose tensor names differ from the base's (the shared ones; the base's
    /// others are copied): `--allow-arch-mismatch`, mergekit's `--allow-crimes`.
    pub allow_arch_mismatch: bool,
    /// Accept more models than the program reads (`slerp` reads `models[0]` only). The
    /// command line refuses them; the self-develop loop gives every program its models.
    pub allow_unread_models: bool,
    pub allow_nonfinite: bool,
    pub tokenizer_from: Option<PathBuf>,
    pub quiet: bool,
    /// Which engine runs the merged tensors.
    pub backend: super::compiled::Backend,
    /// Extra provenance (e.g. the mergekit config text, the command line).
    pub extra: serde_json::Value,
    /// Write a model card (README.md) and, for a config, `mergekit_config.yml`.
    pub model_card: bool,
    /// Layer stacking (mergekit's `slices:`): the output's layers are ranges of the
    /// inputs' layers. None: every tensor of the base is merged with the models' tensors
    /// of the same name (or copied from the base).
    pub layers: Option<super::stack::LayerStack>,
    /// The merge fails ("over the time limit"), writing nothing, if it is still
    /// running at this instant.
    pub deadline: Option<std::time::Instant>,
    /// Safetensors shards, or one GGUF file made from them.
    pub out_format: super::OutputFormat,
    /// How the shards are written (direct I/O or through the page cache).
    pub write_mode: super::WriteMode,
}

impl MergeJob {
    /// Merge `merge_name` of `program` of `base` and `models` into `out`, with a library
    /// caller's defaults: no parameters set, seed 0, the JIT, 5 GB shards, 1 GiB of
    /// working memory, direct writes, quiet, no model card; callers change the fields
    /// they need.
    pub fn new(
        program: crate::pipeline::Source,
        merge_name: &str,
        base: PathBuf,
        models: Vec<PathBuf>,
        out: PathBuf,
    ) -> MergeJob {
        MergeJob {
            program,
            merge_name: merge_name.into(),
            base,
            models,
            out,
            params: Box::new(FixedParams(vec![])),
            dtype: None,
            only: None,
            seed: 0,
            shard_size: 5_000_000_000,
            max_memory: 1 << 30,
            force: false,
            on_mismatch_base: false,
            allow_arch_mismatch: false,
            allow_unread_models: false,
            allow_nonfinite: false,
            tokenizer_from: None,
            quiet: true,
            backend: super::compiled::Backend::Jit,
            extra: serde_json::Value::Null,
            model_card: false,
            layers: None,
            deadline: None,
            out_format: super::OutputFormat::Safetensors,
            write_mode: super::WriteMode::Direct,
        }
    }
}

/// What a finished merge reports.
#[derive(Debug, Clone)]
pub struct MergeSummary {
    pub merged: usize,
    pub copied: usize,
    pub shards: usize,
    pub bytes_written: u64,
    /// Bytes of input tensors read.
    pub bytes_read: u64,
    pub seconds: f64,
    /// The engine that ran the merge (`jit`, `interp`, `cuda`, `ref`) and on how many threads.
    pub backend: &'static str,
    pub threads: usize,
    /// What the user should know about a merge that went through (e.g. models whose
    /// tensors differ from the base's, with --allow-arch-mismatch).
    pub notes: Vec<String>,
    /// The GGUF file written, for --out-format gguf.
    pub gguf: Option<super::GgufSummary>,
    /// Bytes copied to and from a device engine's memory, and how fast (None on the CPU).
    pub transfers: Option<crate::codegen::Transfers>,
}

pub(super) struct Inputs {
    pub base: Checkpoint,
    pub models: Vec<Checkpoint>,
    /// Stops every tensor's work on a signal or at the job's deadline.
    pub cancel: Cancel,
    /// Digests of the tensors read, for the provenance.
    pub hashes: super::content::ContentHashes,
}

impl Inputs {
    /// The checkpoints by input number: the base, then the models.
    pub fn all(&self) -> Vec<&Checkpoint> {
        std::iter::once(&self.base).chain(&self.models).collect()
    }

    /// Where a tensor is read from: its route's sources, else the base's and every
    /// model's tensor of its name.
    pub fn sources<'a>(&'a self, t: &'a PlannedTensor) -> Vec<(&'a Checkpoint, &'a str)> {
        match &t.source {
            Some(r) => {
                let all = self.all();
                r.sources()
                    .into_iter()
                    .map(|s| (all[s.input], s.name.as_str()))
                    .collect()
            }
            None => self
                .all()
                .into_iter()
                .map(|c| (c, t.name.as_str()))
                .collect(),
        }
    }
}

/// Runs the merge. On any error or interruption nothing is left at `out`.
pub fn run(job: &MergeJob) -> Result<MergeSummary, MergeError> {
    let start = std::time::Instant::now();
    if job.models.is_empty() && job.layers.is_none() {
        return Err(MergeError::Job(
            "give at least one --model to merge with the base".into(),
        ));
    }
    let inputs: Vec<&std::path::Path> = std::iter::once(&job.base)
        .chain(&job.models)
        .map(|p| p.as_path())
        .collect();
    refuse_overlap("--out", &job.out, &inputs, "the merge").map_err(MergeError::Job)?;
    if let Some(t) = &job.tokenizer_from
        && !t.is_dir()
    {
        return Err(MergeError::Job(format!(
            "--tokenizer-from `{}` is not a directory",
            t.display()
        )));
    }
    let mut cancel = Cancel::on_signal();
    if let Some(d) = job.deadline {
        cancel = cancel.until(d, d.saturating_duration_since(start).as_secs_f64());
    }
    let inputs = Inputs {
        cancel,
        hashes: super::content::ContentHashes::new(
            1 + job.models.len(),
            super::digest_cache::DigestCache::from_env(),
        ),
        base: Checkpoint::open(&job.base)?,
        models: job
            .models
            .iter()
            .map(Checkpoint::open)
            .collect::<Result<_, _>>()?,
    };
    let mut notes: Vec<String> = match job.layers {
        // A stack takes layers from models of other depths by design.
        Some(_) => Vec::new(),
        None => {
            super::arch::check_same_tensors(&inputs.base, &inputs.models, job.allow_arch_mismatch)
                .map_err(MergeError::Job)?
                .into_iter()
                .collect()
        }
    };
    let options = PlanOptions {
        only: job.only.as_ref(),
        dtype: job.dtype,
        shard_size: job.shard_size,
        on_mismatch_base: job.on_mismatch_base,
    };
    let plan = match &job.layers {
        Some(stack) => super::stack::plan(&inputs.base, &inputs.models, stack, &options),
        None => plan(&inputs.base, &inputs.models, &options),
    }
    .map_err(MergeError::Job)?;
    let checked = check_ranks(job, &plan).map_err(MergeError::Job)?;
    if !job.allow_unread_models && job.layers.is_none() {
        refuse_unread_models(job, &checked).map_err(MergeError::Job)?;
    }
    validate_params(job, &plan, &checked).map_err(MergeError::Job)?;
    check_out_format(job, &plan)?;
    let out = OutputDir::create(&job.out, job.force).map_err(MergeError::Output)?;
    let compiled = compiled_path(job, &inputs, &plan, &checked)?;
    let names = shard_file_names(plan.shards.len());
    let bar = progress(
        job.quiet,
        plan.tensors.iter().map(|t| t.out_bytes as u64).sum(),
    );
    let shards = super::shard::Shards {
        job,
        inputs: &inputs,
        plan: &plan,
        checked: &checked,
        compiled: compiled.as_ref(),
    };
    let mut written = 0u64;
    for (shard, file) in plan.shards.iter().zip(&names) {
        written += shards.write(shard, &out.path().join(file), &bar)?;
    }
    write_side_files(job, out.path(), &inputs, &plan, &names).map_err(MergeError::Output)?;
    let gguf = write_out_format(job, out.path(), &names, inputs.cancel)?;
    out.commit()?;
    inputs.hashes.save();
    bar.finish_and_clear();
    let merged = plan
        .tensors
        .iter()
        .filter(|t| t.action == Action::Merge)
        .count();
    notes.extend(compiled.as_ref().and_then(|c| c.race_report()));
    Ok(MergeSummary {
        merged,
        copied: plan.tensors.len() - merged,
        shards: names.len(),
        bytes_written: written,
        bytes_read: inputs.hashes.bytes(),
        seconds: start.elapsed().as_secs_f64(),
        backend: compiled
            .as_ref()
            .map_or(job.backend.name(), |c| c.engine_name()),
        threads: rayon::current_num_threads(),
        notes,
        gguf,
        transfers: compiled.as_ref().and_then(|c| c.transfers()),
    })
}

/// The compiled path of a merge (None: the interpreter merges every tensor), its
/// engines raced on one tensor when there are several.
fn compiled_path(
    job: &MergeJob,
    inputs: &Inputs,
    plan: &MergePlan,
    checked: &HashMap<usize, Arc<CheckedMerge>>,
) -> Result<Option<super::compiled::CompiledJob>, MergeError> {
    let engines = super::compiled::engines(job.backend)?;
    if engines.is_empty() {
        return Ok(None);
    }
    let c = super::compiled::CompiledJob::new(engines, checked);
    let (base, models, cancel) = (&inputs.base, &inputs.models, &inputs.cancel);
    c.race(job, base, models, plan.n_layers, &plan.tensors, cancel);
    Ok(Some(c))
}

/// Beside the shards: the index, side files, a stack's config, provenance, model card.
fn write_side_files(
    job: &MergeJob,
    dir: &std::path::Path,
    inputs: &Inputs,
    plan: &MergePlan,
    names: &[String],
) -> Result<(), String> {
    if names.len() > 1 {
        write_index(dir, plan, names)?;
    }
    copy_side_files(job, dir)?;
    if let Some(stack) = &job.layers {
        let paths: Vec<&std::path::Path> = inputs.all().iter().map(|c| c.path()).collect();
        super::stack::rewrite_config(dir, stack, &paths)?;
    }
    let Inputs { base, models, .. } = inputs;
    super::output::write_provenance(job, dir, base, models, plan, &inputs.hashes)?;
    if job.model_card {
        super::model_card::write(job, dir, &inputs.hashes)?;
    }
    Ok(())
}

/// More models than the program reads is an error: `slerp` reads `models[0]` only, and a
/// second model would be dropped without a word.
fn refuse_unread_models(
    job: &MergeJob,
    checked: &HashMap<usize, Arc<CheckedMerge>>,
) -> Result<(), String> {
    let given = job.models.len();
    let read = checked
        .values()
        .map(|m| crate::types::models_read(&m.body, m.models))
        .try_fold(0usize, |most, r| r.map(|r| most.max(r)));
    let Some(read) = read else { return Ok(()) };
    if read >= given {
        return Ok(());
    }
    let unread: Vec<String> = job.models[read..]
        .iter()
        .map(|p| format!("`{}`", p.display()))
        .collect();
    let reads = match read {
        0 => "reads none of the models".to_string(),
        1 => "reads only models[0]: it merges the base with one model".to_string(),
        n => format!(
            "reads only models[0] to models[{}]: it merges the base with {n} models",
            n - 1
        ),
    };
    Err(format!(
        "`{}` {reads}, but {given} were given; {} would be ignored\n\
         hint: drop {}, or use a method that merges every model (e.g. linear, ties, multislerp)",
        job.merge_name,
        unread.join(", "),
        if unread.len() == 1 { "it" } else { "them" }
    ))
}

/// Checks the program for every rank among the merged tensors, before any work.
fn check_ranks(
    job: &MergeJob,
    plan: &MergePlan,
) -> Result<HashMap<usize, Arc<CheckedMerge>>, String> {
    let mut out = HashMap::new();
    for t in plan.tensors.iter().filter(|t| t.action == Action::Merge) {
        let rank = t.shape.len();
        if out.contains_key(&rank) {
            continue;
        }
        let m = job
            .program
            .instantiate(&job.merge_name, rank)
            .map_err(|e| {
                format!(
                    "`{}` cannot merge the {rank}-D tensor `{}`:\n{}\n\
                 hint: select the tensors it can merge with --only (e.g. --only mlp), \
                 or write it for every rank (axis=-1)",
                    job.merge_name,
                    t.name,
                    e.render_diagnostics(crate::diag::use_color())
                )
            })?;
        out.insert(rank, Arc::new(m));
    }
    Ok(out)
}

/// Resolves and type-checks the parameters of every merged tensor before any work.
fn validate_params(
    job: &MergeJob,
    plan: &MergePlan,
    checked: &HashMap<usize, Arc<CheckedMerge>>,
) -> Result<(), String> {
    if job.layers.is_none() && !plan.tensors.iter().any(|t| t.action == Action::Merge) {
        let why = match &job.only {
            Some(r) => format!(
                "--only `{}` matches no tensor that every model has",
                r.as_str()
            ),
            None => "no tensor is present in the base and every model".to_string(),
        };
        let some: Vec<&str> = plan
            .tensors
            .iter()
            .take(3)
            .map(|t| t.name.as_str())
            .collect();
        return Err(format!(
            "nothing to merge: {why} (the base has e.g. {})",
            some.join(", ")
        ));
    }
    for t in plan.tensors.iter().filter(|t| t.action == Action::Merge) {
        let (overrides, k) = tensor_params(job, plan, t)?;
        let m = &checked[&t.shape.len()];
        for (name, value) in &overrides {
            let Some((p, _)) = m.params.iter().find(|(p, _)| &p.name == name) else {
                let names: Vec<&str> = m.params.iter().map(|(p, _)| p.name.as_str()).collect();
                let hint = crate::types::did_you_mean(name, names.iter().copied())
                    .unwrap_or_else(|| format!("its parameters: {}", names.join(", ")));
                return Err(format!(
                    "`{}` has no parameter `{name}` ({hint})",
                    job.merge_name
                ));
            };
            param_value(p, value, k).map_err(|e| {
                if t.source.is_some() || job.params.varies_by_tensor() {
                    format!("tensor `{}`: {e}", t.name)
                } else {
                    e.to_string()
                }
            })?;
        }
        for (p, _) in &m.params {
            if p.default.is_none() && !overrides.iter().any(|(n, _)| n == &p.name) {
                return Err(format!(
                    "parameter `{}` of `{}` has no default; set it (--set {}=...)",
                    p.name, job.merge_name, p.name
                ));
            }
        }
    }
    Ok(())
}

/// A merged tensor's parameter values, and how many models it merges: its slice's
/// (asked with the layer's position in the slice) under layer stacking, else the job's.
fn tensor_params(
    job: &MergeJob,
    plan: &MergePlan,
    t: &PlannedTensor,
) -> Result<(Vec<(String, Const)>, usize), String> {
    if let (
        Some(Route::Merge {
            slice,
            models,
            layer,
            n_layers,
            ..
        }),
        Some(stack),
    ) = (&t.source, &job.layers)
    {
        let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        let params = &stack.slices[*slice].params;
        let values = params.params_for_models(&t.name, &names, *layer, *n_layers)?;
        return Ok((values, models.len()));
    }
    let layer = crate::interp::layer_index(&t.name).unwrap_or(-1);
    let values = job.params.params_for(&t.name, layer, plan.n_layers)?;
    Ok((values, job.models.len()))
}

fn progress(quiet: bool, total: u64) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// The output bytes of one tensor: merged by the program, or copied from the base.
/// `gate` is called before the memory-hungry part (the output and temporaries; on the
/// compiled path after the selections): the caller may wait there for room.
pub(super) fn produce(
    job: &MergeJob,
    inputs: &Inputs,
    plan: &MergePlan,
    checked: &HashMap<usize, Arc<CheckedMerge>>,
    compiled: Option<&super::compiled::CompiledJob>,
    t: &PlannedTensor,
    gate: &(dyn Fn() + Sync),
) -> Result<Vec<u8>, MergeError> {
    let stopped = MergeError::Stopped;
    inputs.cancel.check().map_err(stopped)?;
    if let Some(c) = compiled
        && t.action == Action::Merge
        && t.source.is_none()
    {
        if let Some(bytes) = c.produce(job, inputs, plan.n_layers, t, Some(gate)) {
            return Ok(bytes);
        }
        // A compiled run cut short is not retried by the interpreter.
        inputs.cancel.check().map_err(stopped)?;
    }
    // The interpreter holds its temporaries from the start.
    gate();
    inputs.cancel.check().map_err(stopped)?;
    match &t.source {
        Some(Route::Copy(from)) => copy_tensor(job, inputs.all()[from.input], &from.name, t),
        Some(Route::Merge { base, models, .. }) => {
            let all = inputs.all();
            let base = all[base.input].read_f32(&base.name)?;
            let models = models
                .iter()
                .map(|m| all[m.input].read_f32(&m.name))
                .collect::<Result<Vec<_>, _>>()?;
            merge_tensor(job, inputs, plan, checked, t, base, models)
        }
        None if t.action == Action::Copy => copy_tensor(job, &inputs.base, &t.name, t),
        None => {
            let base = inputs.base.read_f32(&t.name)?;
            let models = inputs
                .models
                .iter()
                .map(|m| m.read_f32(&t.name))
                .collect::<Result<Vec<_>, _>>()?;
            merge_tensor(job, inputs, plan, checked, t, base, models)
        }
    }
}

/// The output bytes of `t` copied from the tensor `name` of `from` (converted to the
/// output dtype).
fn copy_tensor(
    job: &MergeJob,
    from: &Checkpoint,
    name: &str,
    t: &PlannedTensor,
) -> Result<Vec<u8>, MergeError> {
    let out_dtype = Dtype::from_header(&t.out_dtype);
    if from.info(name)?.dtype == t.out_dtype {
        return from
            .raw_bytes(name)
            .map(<[u8]>::to_vec)
            .map_err(MergeError::Input);
    }
    let v = from.read_f32(name)?;
    if let Some(d) = out_dtype {
        check_overflow(job, t, d, &v.data)?;
    }
    Ok(out_dtype.map_or_else(Vec::new, |d| d.encode_vec(&v.data)))
}

/// The output bytes of `t` merged by the program from the values read.
fn merge_tensor(
    job: &MergeJob,
    inputs: &Inputs,
    plan: &MergePlan,
    checked: &HashMap<usize, Arc<CheckedMerge>>,
    t: &PlannedTensor,
    base: crate::interp::Tensor,
    models: Vec<crate::interp::Tensor>,
) -> Result<Vec<u8>, MergeError> {
    let stopped = MergeError::Stopped;
    let facts = TensorFacts::from_name(&t.name, plan.n_layers);
    let (overrides, _) = tensor_params(job, plan, t).map_err(MergeError::Job)?;
    let ctx = Context::new(job.seed, facts).with_cancel(inputs.cancel);
    let m = &checked[&t.shape.len()];
    let out =
        run_merge_owned(m, base, models, &overrides, &ctx, job.allow_nonfinite).map_err(|e| {
            if let Err(s) = inputs.cancel.check() {
                return stopped(s);
            }
            let mut msg = if e.message.contains(&format!("`{}`", t.name)) {
                e.message.clone()
            } else {
                format!("tensor `{}`: {}", t.name, e.message)
            };
            if let Some(h) = &e.hint {
                msg.push_str(&format!("\nhint: {h}"));
            }
            if e.message.contains("non-finite") {
                msg.push_str("\n(--allow-nonfinite writes such results anyway)");
            }
            MergeError::Tensor(msg)
        })?;
    let d = Dtype::from_header(&t.out_dtype).ok_or_else(|| {
        MergeError::Tensor(format!(
            "tensor `{}`: cannot store as {}",
            t.name, t.out_dtype
        ))
    })?;
    check_overflow(job, t, d, &out.data)?;
    Ok(d.encode_vec(&out.data))
}

/// Finite values that the output dtype cannot hold (F16 past 65504) would be stored as Inf:
/// an error, as a non-finite merge result is, unless --allow-nonfinite.
fn check_overflow(
    job: &MergeJob,
    t: &PlannedTensor,
    d: Dtype,
    data: &[f32],
) -> Result<(), MergeError> {
    if job.allow_nonfinite || d == Dtype::F32 {
        return Ok(());
    }
    let overflows = |x: f32| {
        x.is_finite()
            && match d {
                Dtype::F16 => half::f16::from_f32(x).is_infinite(),
                _ => half::bf16::from_f32(x).is_infinite(),
            }
    };
    let bad = data.iter().filter(|&&x| overflows(x)).count();
    if bad == 0 {
        return Ok(());
    }
    let first = data.iter().position(|&x| overflows(x)).unwrap_or(0);
    Err(MergeError::Tensor(format!(
        "tensor `{}`: {bad} value{} too large for {} would be stored as Inf (first at flat index \
         {first}: {})\nhint: store it as bf16 or f32 (--dtype)\n\
         (--allow-nonfinite writes such results anyway)",
        t.name,
        if bad == 1 { "" } else { "s" },
        d.name(),
        data[first]
    )))
}
