//! LoRA extraction (`mergec extract-lora`, what `mergekit-extract-lora` does): for each
//! attention and MLP projection of the decoder layers, the task vector `D = model - base`
//! (f32) and its rank-`r` truncated SVD `D ~ U S V^T`, written as a PEFT adapter:
//! `lora_A = sqrt(S) V^T` (`r x in`) and `lora_B = U sqrt(S)` (`out x r`), the singular
//! values split evenly between the two as mergekit does, with `lora_alpha = r` so PEFT's
//! scale `alpha / r` is 1 and `W + B A` is the model's best rank-`r` approximation.
//!
//! Tensors that are not projections but differ (embeddings, lm_head, norms, biases) are
//! left out and reported: mergec's adapter loader refuses `modules_to_save`. Tensors in
//! only one checkpoint, or of different shapes, are errors. A projection kind unchanged
//! in every layer is left out of `target_modules`; one unchanged in some layers only gets
//! zero factors there (PEFT and mergec need every layer of a target module).
//!
//! The output directory is written atomically ([`OutputDir`]); nothing is left on an
//! error or a signal.

mod select;
pub mod svd;

use super::error::MergeError;
use super::output::{OutputDir, input_json, write_json};
use super::safetensors::{Checkpoint, Dtype, TensorMap};
use crate::cancel::Cancel;
use faer::MatRef;
use rayon::prelude::*;
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};

pub use select::{Skipped, TARGETS};
pub use svd::{OVERSAMPLE, POWER_ITERS, SvdMethod};

/// The adapter's settings file in a PEFT adapter directory.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The adapter's tensors in a PEFT adapter directory.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// Keys the randomized SVD's test matrices (with each tensor's name).
const SEED: u64 = 0x6c6f_7261;

/// What `mergec extract-lora` needs.
#[derive(Clone, Debug)]
pub struct ExtractJob {
    pub base: PathBuf,
    pub model: PathBuf,
    pub out: PathBuf,
    pub rank: usize,
    /// The adapter's dtype (default: the base projections').
    pub dtype: Option<Dtype>,
    pub svd: SvdMethod,
    /// Replace a non-empty `out`.
    pub force: bool,
}

/// One projection's outcome.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TensorEnergy {
    pub tensor: String,
    pub module: &'static str,
    pub layer: usize,
    /// `[out, in]`.
    pub shape: [usize; 2],
    /// Sum of the top-`r` squared singular values over `||D||_F^2` (1 when `D` is 0):
    /// the share of the task vector the adapter keeps; `1 - energy` is the squared
    /// relative error of `B A`.
    pub energy: f64,
    /// `||D||_F`.
    pub norm: f64,
    /// The largest and the last kept singular value.
    pub sigma_first: f32,
    pub sigma_last: f32,
    /// `D` is exactly 0 (no SVD; zero factors).
    pub unchanged: bool,
    /// `exact`, `randomized`, or `none` (unchanged).
    pub svd: &'static str,
}

/// What a finished extraction reports.
#[derive(Clone, Debug)]
pub struct ExtractSummary {
    /// Every projection, in layer order.
    pub tensors: Vec<TensorEnergy>,
    /// `target_modules`: the projection kinds written.
    pub targets: Vec<&'static str>,
    /// Projection kinds unchanged in every layer, left out.
    pub unchanged_modules: Vec<&'static str>,
    /// Other tensors that differ, left out of the adapter.
    pub skipped: Vec<Skipped>,
    pub dtype: Dtype,
    pub bytes_written: u64,
    pub seconds: f64,
}

/// `A` (`r x in`) and `B` (`out x r`), row-major.
struct Factors {
    a: Vec<f32>,
    b: Vec<f32>,
}

/// Runs the extraction. On any error or interruption nothing is left at `job.out`.
pub fn extract(job: &ExtractJob) -> Result<ExtractSummary, MergeError> {
    let start = std::time::Instant::now();
    if job.rank == 0 {
        return Err(MergeError::Job("--rank must be at least 1".into()));
    }
    let inputs = [job.base.as_path(), job.model.as_path()];
    super::plan::refuse_overlap("--out", &job.out, &inputs, "the adapter")
        .map_err(MergeError::Job)?;
    let base = Checkpoint::open(&job.base)?;
    let model = Checkpoint::open(&job.model)?;
    let pairing = select::pair(&base, &model).map_err(MergeError::Job)?;
    select::check_rank(&pairing.targets, job.rank).map_err(MergeError::Job)?;
    let dtype = match job.dtype {
        Some(d) => d,
        None => base_dtype(&base, &pairing.targets),
    };
    let out = OutputDir::create(&job.out, job.force).map_err(MergeError::Output)?;
    let cancel = Cancel::on_signal();
    let skipped = select::differing(&base, &model, &pairing.others).map_err(MergeError::Job)?;
    let results: Vec<(TensorEnergy, Factors)> = pairing
        .targets
        .par_iter()
        .map(|t| extract_one(&base, &model, t, job, &cancel))
        .collect::<Result<_, _>>()?;
    let (targets, unchanged_modules) = module_kinds(&results);
    if targets.is_empty() {
        return Err(MergeError::Job(format!(
            "`{}` equals `{}` in every projection: there is no task vector to extract",
            job.model.display(),
            job.base.display()
        )));
    }
    let mut tensors = TensorMap::new();
    let mut report = Vec::with_capacity(results.len());
    for (t, (e, f)) in pairing.targets.iter().zip(results) {
        if targets.contains(&t.module) {
            let key = format!("base_model.model.{}", t.path());
            tensors.insert(
                format!("{key}.lora_A.weight"),
                (vec![job.rank, t.cols], f.a),
            );
            tensors.insert(
                format!("{key}.lora_B.weight"),
                (vec![t.rows, job.rank], f.b),
            );
        }
        report.push(e);
    }
    cancel.check().map_err(MergeError::Stopped)?;
    let weights = out.path().join(WEIGHTS_FILE);
    super::safetensors::write(&weights, &tensors, dtype)
        .map_err(|e| MergeError::Output(e.to_string()))?;
    let bytes_written = std::fs::metadata(&weights).map(|m| m.len()).unwrap_or(0);
    let config = adapter_config(&job.base, job.rank, &targets);
    write_json(&out.path().join(CONFIG_FILE), &config).map_err(MergeError::Output)?;
    let summary = ExtractSummary {
        tensors: report,
        targets,
        unchanged_modules,
        skipped,
        dtype,
        bytes_written,
        seconds: 0.0,
    };
    let prov = provenance(job, &base, &model, &summary);
    write_json(&out.path().join("mergec.json"), &prov).map_err(MergeError::Output)?;
    out.commit()?;
    Ok(ExtractSummary {
        seconds: start.elapsed().as_secs_f64(),
        ..summary
    })
}

/// The stored dtype of the base's projections when they agree, else F32.
fn base_dtype(base: &Checkpoint, targets: &[select::Target]) -> Dtype {
    let mut kinds = targets
        .iter()
        .filter_map(|t| base.info(&t.name).ok())
        .filter_map(|i| Dtype::from_header(&i.dtype));
    match kinds.next() {
        Some(first) if kinds.all(|d| d == first) => first,
        _ => Dtype::F32,
    }
}

/// The kinds with a changed tensor somewhere (targets), and those unchanged everywhere.
fn module_kinds(results: &[(TensorEnergy, Factors)]) -> (Vec<&'static str>, Vec<&'static str>) {
    let present = |m: &str| results.iter().any(|(e, _)| e.module == m);
    let changed = |m: &str| results.iter().any(|(e, _)| e.module == m && !e.unchanged);
    let targets = TARGETS.iter().copied().filter(|m| changed(m)).collect();
    let unchanged = TARGETS
        .iter()
        .copied()
        .filter(|m| present(m) && !changed(m))
        .collect();
    (targets, unchanged)
}

/// One projection: the task vector, its truncated SVD, the factors and the energy kept.
fn extract_one(
    base: &Checkpoint,
    model: &Checkpoint,
    t: &select::Target,
    job: &ExtractJob,
    cancel: &Cancel,
) -> Result<(TensorEnergy, Factors), MergeError> {
    cancel.check().map_err(MergeError::Stopped)?;
    let (rows, cols, r) = (t.rows, t.cols, job.rank);
    let b = base.read_f32(&t.name)?;
    let mut d = model.read_f32(&t.name)?.data;
    base.release(&t.name);
    model.release(&t.name);
    let mut total = 0f64;
    for (x, y) in d.iter_mut().zip(&b.data) {
        *x -= y;
        total += (*x as f64) * (*x as f64);
    }
    drop(b);
    if !total.is_finite() {
        return Err(MergeError::Tensor(format!(
            "`{}`: the difference of the two checkpoints has non-finite values (NaN or Inf, \
             or too large for f32)",
            t.name
        )));
    }
    let mut energy = TensorEnergy {
        tensor: t.name.clone(),
        module: t.module,
        layer: t.layer,
        shape: [rows, cols],
        energy: 1.0,
        norm: total.sqrt(),
        sigma_first: 0.0,
        sigma_last: 0.0,
        unchanged: total == 0.0,
        svd: "none",
    };
    if total == 0.0 {
        let zeros = Factors {
            a: vec![0.0; r * cols],
            b: vec![0.0; rows * r],
        };
        return Ok((energy, zeros));
    }
    let seed = crate::semantics::mix64(SEED ^ crate::semantics::name_hash(&t.name));
    let view = MatRef::from_row_major_slice(&d, rows, cols);
    let svd = svd::truncated_svd(view, r, job.svd, seed, cancel).map_err(|e| match e {
        svd::SvdFailure::Stopped(s) => MergeError::Stopped(s),
        svd::SvdFailure::NoConvergence => {
            MergeError::Tensor(format!("`{}`: the SVD did not converge", t.name))
        }
    })?;
    drop(d);
    let captured: f64 = svd.s.iter().map(|s| (*s as f64) * (*s as f64)).sum();
    energy.energy = (captured / total).min(1.0);
    energy.sigma_first = svd.s[0];
    energy.sigma_last = svd.s[r - 1];
    energy.svd = if svd.exact { "exact" } else { "randomized" };
    let sq: Vec<f32> = svd.s.iter().map(|s| s.max(0.0).sqrt()).collect();
    let mut a = Vec::with_capacity(r * cols);
    for (i, s) in sq.iter().enumerate() {
        a.extend((0..cols).map(|j| s * svd.v[(j, i)]));
    }
    let mut bf = Vec::with_capacity(rows * r);
    for i in 0..rows {
        bf.extend(sq.iter().enumerate().map(|(j, s)| svd.u[(i, j)] * s));
    }
    Ok((energy, Factors { a, b: bf }))
}

/// `adapter_config.json` with the keys PEFT's `save_pretrained` writes for a LoRA
/// (rank `r`, alpha `r`: scale 1).
fn adapter_config(base: &Path, rank: usize, targets: &[&str]) -> Json {
    json!({
        "alpha_pattern": {},
        "auto_mapping": null,
        "base_model_name_or_path": base.display().to_string(),
        "bias": "none",
        "exclude_modules": null,
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layers_pattern": null,
        "layers_to_transform": null,
        "loftq_config": {},
        "lora_alpha": rank,
        "lora_bias": false,
        "lora_dropout": 0.0,
        "megatron_config": null,
        "megatron_core": "megatron.core",
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": rank,
        "rank_pattern": {},
        "revision": null,
        "target_modules": targets,
        "task_type": "CAUSAL_LM",
        "use_dora": false,
        "use_rslora": false,
    })
}

/// `mergec.json`: how the adapter was made and what each tensor kept.
fn provenance(job: &ExtractJob, base: &Checkpoint, model: &Checkpoint, s: &ExtractSummary) -> Json {
    json!({
        "mergec_version": env!("CARGO_PKG_VERSION"),
        "command": "extract-lora",
        "rank": job.rank,
        "lora_alpha": job.rank,
        "factors": "lora_A = sqrt(S) V^T, lora_B = U sqrt(S)",
        "svd": {
            "method": format!("{:?}", job.svd).to_lowercase(),
            "oversample": OVERSAMPLE,
            "power_iterations": POWER_ITERS,
        },
        "dtype": s.dtype.torch_name(),
        "inputs": {
            "base": input_json(&job.base, base, None),
            "model": input_json(&job.model, model, None),
        },
        "target_modules": s.targets,
        "unchanged_modules": s.unchanged_modules,
        "skipped": s.skipped,
        "tensors": s.tensors,
    })
}

/// The energy of the middle tensor (the mean of the two middle ones for an even count).
pub fn median_energy(tensors: &[TensorEnergy]) -> f64 {
    let mut e: Vec<f64> = tensors.iter().map(|t| t.energy).collect();
    e.sort_by(f64::total_cmp);
    let n = e.len();
    if n == 0 {
        1.0
    } else if n.is_multiple_of(2) {
        (e[n / 2 - 1] + e[n / 2]) / 2.0
    } else {
        e[n / 2]
    }
}
