//! The models a config names: local paths, the base, and the candidates in the
//! program's order per the method's base role.

use super::error::ConfigError;
use super::methods::BaseRole;
use super::resolve::Resolved;
use super::schema::{RawConfig, Text};
use super::yaml::{Pos, Source};
use std::path::{Path, PathBuf};

/// A model reference as a local path: as given (relative to the working directory), else
/// relative to the config's directory, else a Hub id (`org/name`, `org/name@rev`) from
/// the local Hugging Face cache (`hub`: `--transformers-cache`, else the usual variables).
pub fn local_path(
    src: &Source,
    t: &Text,
    dir: &Path,
    hub: Option<&Path>,
) -> Result<PathBuf, ConfigError> {
    let given = PathBuf::from(&t.value);
    if given.exists() {
        return Ok(given);
    }
    if given.is_relative() && dir.join(&given).exists() {
        return Ok(dir.join(&given));
    }
    if crate::runtime::hub::parse_id(&t.value).is_some() {
        return crate::runtime::hub::resolve(&t.value, hub).map_err(|e| src.error(t.pos, e));
    }
    let why = if t.value.contains('+') {
        "; LoRA adapters (`model+lora`) are not supported"
    } else if t.value.contains('@') {
        "; revisions (`model@rev`) name Hugging Face Hub versions"
    } else {
        ""
    };
    Err(src.error(
        t.pos,
        format!(
            "`{}` is not a local model (a Hugging Face directory or a .safetensors file; looked \
             in the working directory and in `{}`){why}; mergec does not download from the Hub",
            t.value,
            dir.display()
        ),
    ))
}

/// One candidate model: its path and its own parameters.
pub struct Candidate {
    pub path: PathBuf,
    pub label: String,
    pub pos: Pos,
    /// Index into the config's `models`, or None for an appended base.
    pub entry: Option<usize>,
}

pub struct Inputs {
    pub base: PathBuf,
    pub candidates: Vec<Candidate>,
}

fn same(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

pub fn inputs(
    src: &Source,
    raw: &RawConfig,
    m: &Resolved,
    dir: &Path,
    hub: Option<&Path>,
) -> Result<Inputs, ConfigError> {
    let base = raw
        .base_model
        .as_ref()
        .map(|b| local_path(src, b, dir, hub))
        .transpose()?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for e in &raw.models {
        let p = local_path(src, &e.model, dir, hub)?;
        if let Some(j) = paths.iter().position(|q| same(q, &p)) {
            return Err(src.error(
                e.model.pos,
                format!(
                    "`{}` is listed twice (also at line {})",
                    e.model.value, raw.models[j].model.pos.line
                ),
            ));
        }
        paths.push(p);
    }
    let is_base = |p: &Path| base.as_deref().is_some_and(|b| same(b, p));
    let mut candidates = Vec::new();
    for (i, (e, p)) in raw.models.iter().zip(&paths).enumerate() {
        // A listed base is no candidate where the method treats it as the base (its
        // parameters are still checked, then unused, as mergekit ignores them).
        if m.base != BaseRole::Input && is_base(p) {
            continue;
        }
        candidates.push(Candidate {
            path: p.clone(),
            label: e.model.value.clone(),
            pos: e.pos,
            entry: Some(i),
        });
    }
    let job_base = match (&base, m.base) {
        (Some(b), _) => b.clone(),
        (None, BaseRole::Required) => {
            return Err(src.error(
                raw.merge_method.pos,
                format!(
                    "`{}` needs a `base_model` (it merges task vectors, model - base); \
                     add `base_model: PATH`",
                    raw.merge_method.value
                ),
            ));
        }
        (None, _) => paths[0].clone(),
    };
    if m.base == BaseRole::Input
        && let (Some(b), Some(t)) = (&base, &raw.base_model)
        && !paths.iter().any(|p| same(p, b))
    {
        // mergekit appends a base_model that is not listed, as one more input.
        candidates.push(Candidate {
            path: b.clone(),
            label: t.value.clone(),
            pos: t.pos,
            entry: None,
        });
    }
    let n = candidates.len();
    let besides = if m.base == BaseRole::Input {
        ""
    } else {
        " besides the base"
    };
    let count = match (m.min_models, m.max_models) {
        (lo, Some(hi)) if lo == hi => format!("exactly {lo}"),
        (lo, _) => format!("at least {lo}"),
    };
    if n < m.min_models || m.max_models.is_some_and(|hi| n > hi) {
        return Err(src.error(
            raw.models_pos,
            format!(
                "`{}` takes {count} model{}{besides}, as mergekit; this config gives {n}",
                raw.merge_method.value,
                if count.ends_with(" 1") { "" } else { "s" }
            ),
        ));
    }
    Ok(Inputs {
        base: job_base,
        candidates,
    })
}
