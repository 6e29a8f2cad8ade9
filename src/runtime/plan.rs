//! What a merge will do, decided before any tensor is computed: which tensors
//! are merged or copied, their output dtype, and how they fall into shards.

use super::safetensors::{Checkpoint, Dtype};
use regex::Regex;
use std::path::Path;

/// What happens to one tensor of the base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Computed by the program from the base and every model.
    Merge,
    /// Copied from the base (not selected by --only, missing from a model, or a shape mismatch with --on-mismatch base).
    Copy,
}

#[derive(Clone, Debug)]
pub struct PlannedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub action: Action,
    /// The stored dtype written (a copied tensor of another dtype keeps its own).
    pub out_dtype: String,
    pub out_bytes: usize,
    /// Where it is read from when not the base's and every model's tensor of the same
    /// name (layer stacking: see `stack`).
    pub source: Option<super::stack::Route>,
}

/// Why tensors were copied rather than merged, for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyReasons {
    pub not_selected: usize,
    pub missing_in_model: usize,
    pub shape_mismatch: usize,
}

#[derive(Clone, Debug)]
pub struct MergePlan {
    pub tensors: Vec<PlannedTensor>,
    /// Indices into `tensors`, one list per output shard.
    pub shards: Vec<Vec<usize>>,
    pub n_layers: i64,
    pub copied: CopyReasons,
    /// Tensors found in a model but not in the base (ignored).
    pub extra_in_models: usize,
}

pub struct PlanOptions<'a> {
    pub only: Option<&'a Regex>,
    pub dtype: Option<Dtype>,
    pub shard_size: u64,
    pub on_mismatch_base: bool,
}

fn is_float(dtype: &str) -> bool {
    Dtype::from_header(dtype).is_some()
}

/// Decides every tensor's fate. Errors name the tensor and say what to do.
pub fn plan(
    base: &Checkpoint,
    models: &[Checkpoint],
    o: &PlanOptions,
) -> Result<MergePlan, String> {
    let mut tensors = Vec::new();
    let mut copied = CopyReasons::default();
    for info in base.tensors() {
        let name = &info.name;
        let selected = o.only.is_none_or(|r| r.is_match(name));
        let in_all = models.iter().all(|m| m.info(name).is_ok());
        let mut action = Action::Merge;
        if !selected {
            copied.not_selected += 1;
            action = Action::Copy;
        } else if !in_all {
            copied.missing_in_model += 1;
            action = Action::Copy;
        } else if !is_float(&info.dtype) {
            return Err(format!(
                "tensor `{name}` of the base has dtype {}; only F32, F16 and BF16 tensors can be merged \
                 (leave it out with --only)",
                info.dtype
            ));
        } else {
            for (i, m) in models.iter().enumerate() {
                let mi = m.info(name).map_err(|e| e.to_string())?;
                if !is_float(&mi.dtype) {
                    return Err(format!(
                        "tensor `{name}` of model {} (`{}`) has dtype {}; only F32, F16 and BF16 tensors can be merged",
                        i + 1,
                        m.path().display(),
                        mi.dtype
                    ));
                }
                if mi.shape != info.shape && action == Action::Merge {
                    if !o.on_mismatch_base {
                        return Err(format!(
                            "tensor `{name}` has shape {:?} in the base but {:?} in model {} (`{}`); \
                             a resized vocabulary? use --on-mismatch base to keep the base's tensor",
                            info.shape,
                            mi.shape,
                            i + 1,
                            m.path().display()
                        ));
                    }
                    copied.shape_mismatch += 1;
                    action = Action::Copy;
                }
            }
        }
        let out_dtype = match (o.dtype, is_float(&info.dtype)) {
            (Some(d), true) => d.name().to_string(),
            _ => info.dtype.clone(),
        };
        // Copied as stored when not one of ours (sub-byte F4 tensors included).
        let out_bytes =
            Dtype::from_header(&out_dtype).map_or(info.nbytes(), |d| info.numel() * d.size());
        tensors.push(PlannedTensor {
            name: name.clone(),
            shape: info.shape.clone(),
            action,
            out_bytes,
            out_dtype,
            source: None,
        });
    }
    if tensors.is_empty() {
        return Err(format!(
            "the base `{}` holds no tensors",
            base.path().display()
        ));
    }
    let extra_in_models = models
        .iter()
        .flat_map(|m| m.names())
        .filter(|n| base.info(n).is_err())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let shards = shard(&tensors, o.shard_size);
    Ok(MergePlan {
        n_layers: n_layers(base, &tensors)?,
        tensors,
        shards,
        copied,
        extra_in_models,
    })
}

/// Consecutive tensors into shards of at most `limit` bytes (a larger tensor gets its own).
pub(super) fn shard(tensors: &[PlannedTensor], limit: u64) -> Vec<Vec<usize>> {
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut size = 0u64;
    for (i, t) in tensors.iter().enumerate() {
        let b = t.out_bytes as u64;
        let current = shards.last_mut().expect("at least one shard");
        if !current.is_empty() && size + b > limit {
            shards.push(vec![i]);
            size = b;
        } else {
            current.push(i);
            size += b;
        }
    }
    // Wider elements first within a shard (as the reference writer orders them), so every
    // tensor's offset is a multiple of its element size whatever the dtypes mixed.
    for s in &mut shards {
        s.sort_by_key(|&i| std::cmp::Reverse(elem_size(&tensors[i])));
    }
    shards
}

fn elem_size(t: &PlannedTensor) -> usize {
    t.out_bytes / t.shape.iter().product::<usize>().max(1)
}

/// `num_hidden_layers` from the base's config.json, else one past the largest layer index.
fn n_layers(base: &Checkpoint, tensors: &[PlannedTensor]) -> Result<i64, String> {
    Ok(
        config_layers(base, "the base's config.json")?.unwrap_or_else(|| {
            tensors
                .iter()
                .filter_map(|t| crate::interp::layer_index(&t.name))
                .max()
                .map_or(0, |m| m + 1)
        }),
    )
}

/// `num_hidden_layers` from a checkpoint's config.json, if it has one that says.
/// A config.json that is there but not a readable regular file (a FIFO, /dev/zero, 2 GB)
/// is an error: it would be copied into the output.
pub(super) fn config_layers(ck: &Checkpoint, what: &str) -> Result<Option<i64>, String> {
    let config = ck.path().join("config.json");
    let text = match std::fs::symlink_metadata(&config) {
        Ok(_) => Some(crate::files::read_text(
            &config,
            what,
            crate::files::limit::JSON,
        )?),
        Err(_) => None,
    };
    Ok(text
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|j| j.get("num_hidden_layers").and_then(|v| v.as_i64())))
}

/// Shard file names as transformers writes them.
pub fn shard_file_names(n: usize) -> Vec<String> {
    if n == 1 {
        return vec![super::safetensors::MODEL_FILE.to_string()];
    }
    (1..=n)
        .map(|i| format!("model-{i:05}-of-{n:05}.safetensors"))
        .collect()
}

/// Parses sizes like 5GB, 500MB, 4GiB, 1000000.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size such as 5GB or 500MB"))?;
    let mult: f64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KIB" => 1024.0,
        "MIB" => 1024.0 * 1024.0,
        "GIB" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "`{s}`: unknown unit `{other}` (use B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    let v = n * mult;
    if !(v >= 1.0 && v.is_finite()) {
        return Err(format!("`{s}` must be at least one byte"));
    }
    Ok(v as u64)
}

/// True when `inner` is `outer` or lies inside it (both canonicalised where they exist).
pub fn path_within(inner: &Path, outer: &Path) -> bool {
    let canon = |p: &Path| {
        p.canonicalize().unwrap_or_else(|_| {
            // Not created yet: canonicalise the parent.
            match (p.parent(), p.file_name()) {
                (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => parent
                    .canonicalize()
                    .map(|c| c.join(name))
                    .unwrap_or_else(|_| p.to_path_buf()),
                _ => std::env::current_dir()
                    .map(|d| d.join(p))
                    .unwrap_or_else(|_| p.to_path_buf()),
            }
        })
    };
    canon(inner).starts_with(canon(outer))
}

/// Refuses an output (`flag`, e.g. `--out`) that is, lies inside or holds one of
/// `inputs`; `what` is what is written ("the merge").
pub fn refuse_overlap(flag: &str, out: &Path, inputs: &[&Path], what: &str) -> Result<(), String> {
    for input in inputs {
        if path_within(out, input) || path_within(input, out) {
            return Err(format!(
                "{flag} `{}` overlaps the input `{}`; write {what} somewhere else",
                out.display(),
                input.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_size("1.5 MiB"), Ok(1_572_864));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn shard_names() {
        assert_eq!(shard_file_names(1), vec!["model.safetensors"]);
        assert_eq!(shard_file_names(2)[1], "model-00002-of-00002.safetensors");
    }
}
