//! mergekit YAML configurations: `mergec merge CONFIG.yml --out DIR [flags]`.
//!
//! # Schema
//!
//! ```yaml
//! merge_method: ties            # a stdlib method, or a path to a .merge program
//!                               # (relative to this file's directory)
//! base_model: path/to/base      # a local model directory or .safetensors file
//! models:
//!   - model: path/to/a
//!     parameters: {weight: 0.5, density: [0.2, 0.8]}  # per model; gradients over the layers
//!   - model: path/to/b
//!     parameters:
//!       weight:                 # filters: the first entry whose filter is a substring of
//!         - filter: self_attn   # the tensor name (or `*`, or no filter) wins
//!           value: 0.3
//!         - value: 0.7
//! parameters: {lambda: 1.0, normalize: true, density: 0.5}  # global; per-model ones for all models
//! dtype: bfloat16               # bfloat16 | float16 | float32 (torch. prefix allowed)
//! out_dtype: bfloat16           # the stored dtype; wins over dtype
//! tokenizer_source: base        # base | a model path; `union` is not supported
//! ```
//!
//! Unknown keys at any level, unknown methods and parameters, and values of the wrong type
//! are errors naming the line and column, with a did-you-mean. `modules`, `tokenizer` and
//! `chat_template` are mergekit keys mergec does not support: an error says so. `slices:`
//! (layer stacking, instead of `models:`) is read by `slices.rs`.
//! Model references are local paths (relative to the working directory, else to the config's
//! directory); Hugging Face Hub ids, `@revision` and `+lora` are not supported.
//!
//! Parameters resolve per tensor as mergekit's `ConfigReader.parameter`: a model's own
//! setting, else the top-level one, else the method's default (a filter that matches nothing
//! falls through to the next level). A gradient of L values is interpolated at
//! `t = layer / (n_layers - 1)` (1 for a single layer; 0 for tensors outside the layers:
//! embeddings, final norm, lm_head). Booleans accept true/false (and yes/no/on/off) and 1/0.
//! Per-model parameters become the program's list parameters, one value per candidate model
//! in the order of `models`; global ones become its scalar parameters.
//!
//! Flags: `--out` is required; `--seed`, `--only`, `--shard-size`, `--max-memory`, `--force`,
//! `--quiet`, `--allow-nonfinite`, `--on-mismatch`, `--threads` apply as for programs;
//! `--dtype` wins over `out_dtype`/`dtype`; `--tokenizer-from` wins over `tokenizer_source`;
//! `--set NAME=VALUE` overrides the config's value of the program parameter NAME for every
//! tensor; `--base`/`--model` are refused (the config names the models); `--merge` picks a
//! merge of a custom .merge program. The config text is recorded in mergec.json (`extra`).
//!
//! # Methods
//!
//! "Candidates" are the program's `models`; the program's `base` is `base_model`.
//!
//! | merge_method | base_model | candidates | parameters (mergekit → program) |
//! |---|---|---|---|
//! | linear | optional; averaged in as an ordinary model (appended last when not listed, and it then needs a top-level `weight`) | every listed model (+ the base) | weight (per model, required), normalize |
//! | task_arithmetic | required | listed models except the base | weight (required), lambda, normalize; density, rescale, int8_mask ignored |
//! | ties, dare_linear, dare_ties | required | listed models except the base | weight (required), density, lambda, normalize, rescale (+ paper_rescale for dare_*); int8_mask ignored |
//! | breadcrumbs, breadcrumbs_ties | required | listed models except the base | weight (required), density, gamma, lambda, normalize, rescale; int8_mask ignored |
//! | della, della_linear | required | listed models except the base | weight (required), density, epsilon, lambda, normalize, rescale, paper_rescale; int8_mask ignored |
//! | sce | required | listed models except the base | select_topk; int8_mask ignored |
//! | model_stock | required | at least two, except the base | filter_wise |
//! | nearswap | required | exactly one, except the base | t (required) |
//! | slerp | required | exactly one, except the base | t (required) |
//! | nuslerp | optional: with it `use_base = true` (task vectors), without it `use_base = false` | exactly two, except the base | weight (required), nuslerp_flatten, nuslerp_row_wise |
//! | multislerp | optional, as nuslerp | listed models except the base | weight (required), normalize_weights, eps |
//! | karcher | optional; a point like the others (appended last when not listed) | every listed model (+ the base) | max_iter, tol |
//! | a stdlib method mergekit lacks (algorithm_a), or `path.merge` | required | listed models except the base | the program's own parameters by name: lists per model, scalars global; required when they have no default |
//!
//! Without a base_model (linear, karcher, nuslerp, multislerp) the first listed model stands in
//! as the base for what is copied (tensors not merged, config.json, tokenizer files). Parameter
//! names of other mergekit methods (e.g. `weight` for `sce`) are ignored with a note, as mergekit
//! ignores them; any other name is an error. A per-model parameter at the top level applies to
//! every model; a global one under a model is an error. `passthrough` (one model, `scale`)
//! is a built-in program, not a stdlib method. mergekit's `arcee_fusion`, `ram` and
//! `ramplus_tl` are not in the stdlib: an error says so.

mod build;
pub mod error;
mod inputs;
mod methods;
mod params;
mod resolve;
mod schema;
mod setting;
mod slices;
mod yaml;

pub use error::ConfigError;
pub use methods::{BaseRole, METHODS, MethodSpec};
pub use params::layer_t;

use crate::runtime::ParamSource;
use crate::runtime::safetensors::Dtype;
use crate::types::Const;
use schema::Text;
use serde_json::{Value as Json, json};

/// What a config decides about the inputs: the base, the models, the parameters, the
/// layer stack (`slices:`) and the slices for mergec.json.
type Parts = (
    PathBuf,
    Vec<PathBuf>,
    Box<dyn ParamSource>,
    Option<crate::runtime::stack::LayerStack>,
    Json,
);
use std::path::{Path, PathBuf};
use yaml::Source;

/// What the caller (the command line) adds to a config, already parsed: the merge to
/// run (`None`: the method's), parameter settings that override the config's, a dtype
/// and a tokenizer source that override its own, and whether to print its notes.
#[derive(Default)]
pub struct Options {
    pub merge: Option<String>,
    pub sets: Vec<(String, Const)>,
    pub dtype: Option<Dtype>,
    pub tokenizer_from: Option<PathBuf>,
    pub quiet: bool,
    /// The Hugging Face cache in which Hub ids are looked up (default: the usual variables).
    pub hub_cache: Option<PathBuf>,
}

/// What a mergekit-style config decides for a merge job: the program and its
/// parameters, the models, the output dtype and the tokenizer source, and provenance
/// for `mergec.json` (`extra`). The caller adds where and how to write.
pub struct ConfigJob {
    pub program: crate::pipeline::Source,
    pub merge_name: String,
    pub base: PathBuf,
    pub models: Vec<PathBuf>,
    pub params: Box<dyn ParamSource>,
    pub dtype: Option<Dtype>,
    pub tokenizer_from: Option<PathBuf>,
    pub extra: serde_json::Value,
    /// Layer stacking (`slices:`); None for a `models:` config.
    pub layers: Option<crate::runtime::stack::LayerStack>,
}

/// Reads the mergekit-style YAML file at `path` into a job's program, models and
/// parameters, with `o` applied.
pub fn read_config(path: &str, o: Options) -> Result<ConfigJob, ConfigError> {
    let text = crate::files::read_text(
        Path::new(path),
        "a merge config",
        crate::files::limit::CONFIG,
    )?;
    let src = Source {
        label: path.to_string(),
        text,
    };
    let raw = schema::read(&src, &src.parse()?)?;
    let dir = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let method = resolve::method(&src, &raw.merge_method, &dir, o.merge.as_deref())?;
    let mut notes = Vec::new();
    let (base, models, params, layers, slices_json): Parts = match &raw.slices {
        Some((list, _)) => {
            let s = slices::stack(
                &src,
                &raw,
                list,
                &method,
                (&dir, o.hub_cache.as_deref()),
                &o.sets,
                &mut notes,
            )?;
            let described: Box<dyn ParamSource> = Box::new(slices::Described(s.describe.clone()));
            (s.base, s.models, described, Some(s.stack), s.describe)
        }
        None => {
            let inputs = inputs::inputs(&src, &raw, &method, &dir, o.hub_cache.as_deref())?;
            let mut params = build::params(&src, &raw, &[], &method, &inputs, &mut notes)?;
            if let Some(u) = method.use_base {
                params
                    .fixed
                    .push((u.to_string(), Const::Bool(raw.base_model.is_some())));
            }
            params.fixed.extend(o.sets);
            let models: Vec<PathBuf> = inputs.candidates.into_iter().map(|c| c.path).collect();
            (
                inputs.base,
                models,
                Box::new(params) as Box<dyn ParamSource>,
                None,
                Json::Null,
            )
        }
    };
    let mut seen = std::collections::HashSet::new();
    notes.retain(|n| seen.insert(n.clone()));
    let dtype = match o.dtype {
        Some(d) => Some(d),
        None => config_dtype(&src, raw.out_dtype.as_ref().or(raw.dtype.as_ref()))?,
    };
    let tokenizer_from = match o.tokenizer_from {
        Some(t) => Some(t),
        None => tokenizer(
            &src,
            raw.tokenizer_source.as_ref(),
            &dir,
            o.hub_cache.as_deref(),
        )?,
    };
    if !o.quiet {
        for n in &notes {
            eprintln!("note: {n}");
        }
    }
    let mut extra = json!({
        "mergekit_config": src.text,
        "config_path": path,
        "merge_method": raw.merge_method.value,
        "notes": notes,
    });
    if let (Some(o), false) = (extra.as_object_mut(), slices_json.is_null()) {
        o.insert("slices".into(), slices_json);
    }
    Ok(ConfigJob {
        program: method.program,
        merge_name: method.merge_name,
        base,
        models,
        params,
        dtype,
        tokenizer_from,
        extra,
        layers,
    })
}

fn config_dtype(src: &Source, t: Option<&Text>) -> Result<Option<Dtype>, ConfigError> {
    let Some(t) = t else { return Ok(None) };
    Dtype::parse(&t.value).map(Some).ok_or_else(|| {
        src.error(
            t.pos,
            format!("dtype `{}`: use bfloat16, float16 or float32", t.value),
        )
    })
}

fn tokenizer(
    src: &Source,
    t: Option<&Text>,
    dir: &Path,
    hub: Option<&Path>,
) -> Result<Option<PathBuf>, ConfigError> {
    let Some(t) = t else { return Ok(None) };
    match t.value.as_str() {
        "base" => Ok(None),
        "union" => Err(src.error(
            t.pos,
            "tokenizer_source `union` (a vocabulary merged from every model, with the embeddings \
             remapped) is not supported; use `base` or the path of the model whose tokenizer \
             files to copy",
        )),
        _ => {
            let p = inputs::local_path(src, t, dir, hub)?;
            if !p.is_dir() {
                return Err(src.error(
                    t.pos,
                    format!("tokenizer_source `{}` is not a directory", t.value),
                ));
            }
            Ok(Some(p))
        }
    }
}
