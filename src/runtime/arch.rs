//! Whether a merge's inputs share one architecture: the same tensor names in the base and
//! every model. A model with fewer or more layers than the base, or with tensors the base
//! lacks, is refused before any work, naming the first differences, unless the user opts
//! in (`--allow-arch-mismatch`, mergekit's `--allow-crimes`): then the shared tensors are
//! merged, the base's others copied, the models' extra ones ignored, and the summary says so.
//! Buffers are not architecture: integer tensors and rotary `inv_freq` tables, which some
//! checkpoints save and others do not, are copied from the base as before.

use super::safetensors::Checkpoint;
use std::collections::BTreeSet;

/// How many names a message lists before "and N more".
const SHOWN: usize = 3;

/// One model's differences from the base.
struct Difference {
    model: usize,
    missing: Vec<String>,
    extra: Vec<String>,
    layers: (Option<i64>, Option<i64>),
}

/// Whether tensor `name` of `c` is a weight (a float tensor of any width, F8 to F64, that
/// is not a rotary table).
fn is_weight(c: &Checkpoint, name: &str) -> bool {
    !name.ends_with("inv_freq")
        && c.info(name)
            .is_ok_and(|i| i.dtype.starts_with('F') || i.dtype.starts_with("BF"))
}

/// The weights' names of `c`, in its order.
fn weights(c: &Checkpoint) -> Vec<&str> {
    c.names().filter(|n| is_weight(c, n)).collect()
}

/// Layers of a checkpoint: one past its largest layer index in a tensor name.
fn layer_count(c: &Checkpoint) -> Option<i64> {
    c.names()
        .filter_map(crate::interp::layer_index)
        .max()
        .map(|m| m + 1)
}

fn first(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

impl Difference {
    fn describe(&self, models: &[Checkpoint]) -> String {
        let mut parts = Vec::new();
        if let (Some(b), Some(m)) = self.layers
            && b != m
        {
            parts.push(format!("{m} layers where the base has {b}"));
        }
        if !self.missing.is_empty() {
            parts.push(format!(
                "lacks {} of the base's tensors ({})",
                self.missing.len(),
                first(&self.missing)
            ));
        }
        if !self.extra.is_empty() {
            parts.push(format!(
                "has {} tensors the base lacks ({})",
                self.extra.len(),
                first(&self.extra)
            ));
        }
        format!(
            "model {} `{}`: {}",
            self.model + 1,
            models[self.model].path().display(),
            parts.join("; ")
        )
    }
}

/// Checks that every model has exactly the base's tensor names. Returns the note to print
/// when they differ and `allow` is set, an error naming the first differences when they
/// differ and it is not, and `None` when they match.
pub fn check_same_tensors(
    base: &Checkpoint,
    models: &[Checkpoint],
    allow: bool,
) -> Result<Option<String>, String> {
    let base_names: BTreeSet<&str> = weights(base).into_iter().collect();
    let base_layers = layer_count(base);
    let diffs: Vec<Difference> = models
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let names: BTreeSet<&str> = weights(m).into_iter().collect();
            let missing: Vec<String> = weights(base)
                .into_iter()
                .filter(|n| !names.contains(n))
                .map(String::from)
                .collect();
            let extra: Vec<String> = weights(m)
                .into_iter()
                .filter(|n| !base_names.contains(n))
                .map(String::from)
                .collect();
            (!missing.is_empty() || !extra.is_empty()).then(|| Difference {
                model: i,
                missing,
                extra,
                layers: (base_layers, layer_count(m)),
            })
        })
        .collect();
    if diffs.is_empty() {
        return Ok(None);
    }
    let lines: Vec<String> = diffs.iter().map(|d| d.describe(models)).collect();
    if allow {
        let missing: usize = diffs.iter().map(|d| d.missing.len()).sum();
        let extra: usize = diffs.iter().map(|d| d.extra.len()).sum();
        return Ok(Some(format!(
            "note: the models differ from the base (--allow-arch-mismatch): {missing} of the \
             base's tensors missing in a model are copied from the base, {extra} tensors only in \
             a model are left out\n  {}",
            lines.join("\n  ")
        )));
    }
    Err(format!(
        "the models do not have the base's architecture (`{}`):\n  {}\n\
         hint: merge what they share and copy the rest from the base with \
         --allow-arch-mismatch (mergekit's --allow-crimes)",
        base.path().display(),
        lines.join("\n  ")
    ))
}
