//! The output directory: built in a temporary sibling, renamed into place on
//! success, removed on any failure; side files and provenance. Temporaries being
//! written are registered, so a second signal can remove them before exiting
//! (`remove_temporaries`); those left by a killed process are removed by the next
//! run that writes to the same parent (`stale`).

use super::merge::MergeJob;
use super::plan::MergePlan;
use super::safetensors::{Checkpoint, INDEX_FILE};
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The temporary directories this process is writing.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes every temporary directory being written (on a second signal, just before
/// the process exits); returns those removed. Holds the registry, so no commit runs
/// meanwhile.
pub fn remove_temporaries() -> Vec<PathBuf> {
    let mut dirs = live();
    for d in dirs.iter() {
        // A writer may still add a file while the tree is removed: try again.
        for _ in 0..3 {
            if std::fs::remove_dir_all(d).is_ok() || !d.exists() {
                break;
            }
        }
    }
    std::mem::take(&mut *dirs)
}

/// A directory being written. Dropped without `commit`, it is removed.
pub struct OutputDir {
    tmp: PathBuf,
    /// `--out` as given (for messages) and resolved (a link's target).
    given: PathBuf,
    dest: PathBuf,
    force: bool,
    committed: bool,
}

impl OutputDir {
    /// Checks what `dest` names (see [`super::out_target`]: an empty directory, or a
    /// model directory under `force`, may be replaced, nothing else); creates the
    /// temporary sibling.
    pub fn create(dest: &Path, force: bool) -> Result<OutputDir, String> {
        let target = super::out_target::resolve(dest, force)?;
        super::stale::remove_stale(&target.parent);
        let tmp = target.parent.join(format!(
            ".{}.mergec-tmp-{}",
            target.name,
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp).map_err(|e| format!("cannot create `{}`: {e}", tmp.display()))?;
        live().push(tmp.clone());
        Ok(OutputDir {
            tmp,
            given: dest.to_path_buf(),
            dest: target.dest,
            force,
            committed: false,
        })
    }

    /// Where files are written until `commit`.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Moves the finished directory into place (replacing the old one under --force).
    pub fn commit(mut self) -> Result<(), super::MergeError> {
        // Held until the move is done: a second signal removes the temporary either
        // before (then this fails) or after, when it holds what was replaced.
        let live = live();
        if super::merge::CANCELLED.load(std::sync::atomic::Ordering::Relaxed) || !self.tmp.is_dir()
        {
            return Err(super::MergeError::Stopped(crate::cancel::Stop::Interrupted));
        }
        let err = |e: std::io::Error| {
            let why = format!("cannot move the merge into `{}`: {e}", self.given.display());
            super::MergeError::Output(why)
        };
        // Checked again: the directory may have changed during the merge.
        let parent = self.tmp.parent().unwrap_or(Path::new("."));
        let replace =
            super::out_target::check_existing(&self.given, &self.dest, parent, self.force)
                .map_err(super::MergeError::Output)?;
        let old = self
            .tmp
            .with_file_name(format!(".mergec-old-{}", std::process::id()));
        let replaced = super::out_target::move_into_place(&self.tmp, &self.dest, &old, replace)
            .map_err(err)?;
        self.committed = true;
        drop(live);
        // The output is in place. What it replaced (an empty or a model directory, checked
        // above) is deleted outside the lock, so a second signal need not wait for it; after
        // an exchange it sits at the temporary's name, which that signal removes too.
        if let Some(old) = replaced {
            let _ = std::fs::remove_dir_all(old);
        }
        Ok(())
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
        live().retain(|d| d != &self.tmp);
    }
}

/// `model.safetensors.index.json` for a sharded output.
pub fn write_index(dir: &Path, plan: &MergePlan, names: &[String]) -> Result<(), String> {
    let mut map = serde_json::Map::new();
    let mut total = 0u64;
    for (shard, file) in plan.shards.iter().zip(names) {
        for &i in shard {
            map.insert(plan.tensors[i].name.clone(), Json::String(file.clone()));
            total += plan.tensors[i].out_bytes as u64;
        }
    }
    let index = json!({ "metadata": { "total_size": total }, "weight_map": map });
    write_json(&dir.join(INDEX_FILE), &index)
}

pub(super) fn write_json(path: &Path, v: &Json) -> Result<(), String> {
    let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())? + "\n";
    std::fs::write(path, text).map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

/// Files transformers, vLLM and candle need besides the weights.
pub(super) const CONFIG_FILES: &[&str] = &["config.json", "generation_config.json"];
pub(super) const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
];

/// Copies config files from the base and tokenizer files from --tokenizer-from (or the base);
/// config.json's dtype follows --dtype (see [`set_config_dtype`]).
pub fn copy_side_files(job: &MergeJob, out: &Path) -> Result<(), String> {
    let base_dir = job.base.is_dir().then_some(job.base.as_path());
    let tok_dir = job.tokenizer_from.as_deref().or(base_dir);
    if let Some(t) = &job.tokenizer_from
        && !t.is_dir()
    {
        return Err(format!(
            "--tokenizer-from `{}` is not a directory",
            t.display()
        ));
    }
    let copy = |from: &Path, name: &str| -> Result<(), String> {
        let src = from.join(name);
        if src.is_file() {
            std::fs::copy(&src, out.join(name))
                .map_err(|e| format!("cannot copy `{}`: {e}", src.display()))?;
        }
        Ok(())
    };
    if let Some(b) = base_dir {
        for f in CONFIG_FILES {
            copy(b, f)?;
        }
    }
    if let Some(t) = tok_dir {
        for f in TOKENIZER_FILES {
            copy(t, f)?;
        }
    }
    let config = out.join("config.json");
    if let (Some(d), true) = (job.dtype, config.is_file()) {
        let text = std::fs::read_to_string(&config).map_err(|e| e.to_string())?;
        if let Ok(mut v) = serde_json::from_str::<Json>(&text) {
            set_config_dtype(&mut v, d.torch_name());
            write_json(&config, &v)?;
        }
    }
    Ok(())
}

/// Sets a config.json's dtype to `name`: `torch_dtype`, and `dtype` where the config has
/// it (transformers 4.56 and later write and read `dtype` first, so leaving a base's
/// `"dtype": "bfloat16"` would load an f32 merge as bf16), in every sub-config that
/// names one (`text_config` of multimodal models).
pub fn set_config_dtype(v: &mut Json, name: &str) {
    let Some(o) = v.as_object_mut() else {
        return;
    };
    o.insert("torch_dtype".into(), Json::String(name.into()));
    if o.contains_key("dtype") {
        o.insert("dtype".into(), Json::String(name.into()));
    }
    for sub in o.values_mut() {
        if sub
            .as_object()
            .is_some_and(|s| s.contains_key("dtype") || s.contains_key("torch_dtype"))
        {
            set_config_dtype(sub, name);
        }
    }
}

/// An input for mergec.json: its path, its files and, when the tensors were hashed as
/// they were read, their content digest.
pub(super) fn input_json(
    path: &Path,
    ck: &Checkpoint,
    d: Option<super::content::InputDigest>,
) -> Json {
    let files: Vec<String> = ck.files().iter().map(|p| p.display().to_string()).collect();
    let mut v = json!({ "path": path.display().to_string(), "files": files });
    if let Some(d) = d {
        v["content_blake3"] = json!(d.blake3);
        v["tensors_hashed"] = json!(d.tensors);
    }
    v
}

/// Where the output's config.json and tokenizer come from: the base directory and
/// --tokenizer-from (or the base).
fn side_file_dirs(job: &MergeJob) -> Result<(&Path, &Path), super::gguf::GgufError> {
    if !job.base.is_dir() {
        return Err(super::gguf::GgufError::Missing(format!(
            "the base `{}` is a file: a GGUF file needs the model's config.json and tokenizer, \
             so the base must be a Hugging Face directory",
            job.base.display()
        )));
    }
    let tok = job.tokenizer_from.as_deref().unwrap_or(&job.base);
    Ok((&job.base, tok))
}

/// Before any work: whether the merge can be written as the job's --out-format.
pub fn check_out_format(job: &MergeJob, plan: &MergePlan) -> Result<(), super::MergeError> {
    if job.out_format == super::OutputFormat::Safetensors {
        return Ok(());
    }
    let (config_dir, tok_dir) = side_file_dirs(job)?;
    let names = plan.tensors.iter().map(|t| t.name.as_str());
    Ok(super::gguf::check_convertible(config_dir, tok_dir, names)?)
}

/// The GGUF file of a finished merge in `out` (`model.gguf`), for --out-format gguf;
/// the safetensors shards and their index are removed unless kept.
pub fn write_out_format(
    job: &MergeJob,
    out: &Path,
    shards: &[String],
    cancel: crate::cancel::Cancel,
) -> Result<Option<super::GgufSummary>, super::MergeError> {
    let super::OutputFormat::Gguf {
        ty,
        keep_safetensors,
    } = job.out_format
    else {
        return Ok(None);
    };
    let name = job
        .out
        .file_name()
        .map_or_else(|| "merged".into(), |n| n.to_string_lossy().into_owned());
    let opts = super::gguf::GgufOptions { ty, name, cancel };
    let summary = super::gguf::safetensors_dir_to_gguf(out, &out.join(GGUF_FILE), &opts)?;
    if !keep_safetensors {
        for f in shards.iter().map(String::as_str).chain([INDEX_FILE]) {
            let p = out.join(f);
            if p.is_file() {
                std::fs::remove_file(&p).map_err(|e| {
                    super::MergeError::Output(format!("cannot remove `{}`: {e}", p.display()))
                })?;
            }
        }
    }
    Ok(Some(summary))
}

/// The file --out-format gguf writes in the output directory.
pub const GGUF_FILE: &str = "model.gguf";

/// `mergec.json`: how this checkpoint was made, enough to make it again.
pub fn write_provenance(
    job: &MergeJob,
    out: &Path,
    base: &Checkpoint,
    models: &[Checkpoint],
    plan: &MergePlan,
    hashes: &super::content::ContentHashes,
) -> Result<(), String> {
    let merged = plan
        .tensors
        .iter()
        .filter(|t| t.action == super::plan::Action::Merge)
        .count();
    let v = json!({
        "mergec_version": env!("CARGO_PKG_VERSION"),
        "merge": job.merge_name,
        "program": {
            "source": job.program.label,
            "sha256": crate::files::sha256_hex(job.program.text.as_bytes()),
            "text": job.program.text,
        },
        "parameters": job.params.describe(),
        "seed": job.seed,
        "backend": job.backend.name(),
        "dtype": job.dtype.map(|d| d.torch_name()),
        "only": job.only.as_ref().map(|r| r.as_str()),
        "out_format": job.out_format.describe(),
        "inputs": {
            "base": input_json(&job.base, base, Some(hashes.digest(0))),
            "models": job.models.iter().zip(models).enumerate()
                .map(|(i, (p, c))| input_json(p, c, Some(hashes.digest(i + 1))))
                .collect::<Vec<_>>(),
        },
        "tensors": {
            "merged": merged,
            "copied": plan.tensors.len() - merged,
            "copied_not_selected": plan.copied.not_selected,
            "copied_missing_in_a_model": plan.copied.missing_in_model,
            "copied_shape_mismatch": plan.copied.shape_mismatch,
        },
        "extra": job.extra,
    });
    write_json(&out.join("mergec.json"), &v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_dtype_follows_the_output_in_both_keys_and_sub_configs() {
        // A transformers >= 4.56 config: `dtype`, and a text_config with its own.
        let mut v = json!({"dtype": "bfloat16", "hidden_size": 8,
                           "text_config": {"dtype": "bfloat16", "vocab_size": 3}});
        set_config_dtype(&mut v, "float32");
        assert_eq!(v["dtype"], "float32");
        assert_eq!(v["torch_dtype"], "float32");
        assert_eq!(v["text_config"]["dtype"], "float32");
        assert_eq!(v["hidden_size"], 8);
        // An older one: only `torch_dtype`, and no `dtype` is added.
        let mut w = json!({"torch_dtype": "float16"});
        set_config_dtype(&mut w, "bfloat16");
        assert_eq!(w, json!({"torch_dtype": "bfloat16"}));
    }
}
