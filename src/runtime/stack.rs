//! Layer stacking (mergekit's `slices:`, "frankenmerges"): the output's layers are
//! ranges of layers of the inputs, one slice after another, each slice copied from
//! its one source or merged over its sources layer by layer. The plan maps every
//! output tensor to the input tensors it is made from (a [`Route`]), so the runtime
//! streams them as it does a whole-model merge.
//!
//! Inputs are numbered as the job's checkpoints: 0 is the job's base (the model whose
//! config.json and tokenizer the output gets), `i` is `models[i - 1]`. Layer tensors
//! are those with a layer number in their name (`model.layers.3.mlp.up_proj.weight`);
//! the output's are renumbered in output order. The tensors outside the layers are, as
//! mergekit's: the embeddings (a name with `embed`, `wte` or `wpe`) from the first
//! slice's sources, the others (final norm, lm_head) from the last slice's. Merged
//! tensors of a stack run on the interpreter whatever the backend.

use super::ParamSource;
use super::plan::{Action, MergePlan, PlanOptions, PlannedTensor, config_layers, shard};
use super::safetensors::{Checkpoint, Dtype, TensorInfo};
use std::collections::BTreeMap;

/// One source of a slice: a range of layers of one input.
#[derive(Clone, Debug)]
pub struct SliceSource {
    /// The input checkpoint (0: the job's base, i: `models[i - 1]`).
    pub input: usize,
    /// The first layer and one past the last.
    pub start: i64,
    pub end: i64,
    /// The model as the config names it, for messages.
    pub label: String,
}

/// One slice of the output's layers.
pub struct StackSlice {
    /// For messages: "slice 2 (line 7)".
    pub label: String,
    pub sources: Vec<SliceSource>,
    /// The program's base and models as indices into `sources`; None: the slice is
    /// copied from its one source.
    pub merge: Option<(usize, Vec<usize>)>,
    /// The program's parameters for this slice's tensors, asked with the layer's position
    /// in the slice (mergekit's `t` of a gradient runs over the slice).
    pub params: Box<dyn ParamSource>,
}

/// The output's layers, slice after slice.
pub struct LayerStack {
    pub slices: Vec<StackSlice>,
}

/// One input tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSource {
    pub input: usize,
    pub name: String,
}

/// Where an output tensor comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Copied (converted to the output dtype) from one input tensor.
    Copy(TensorSource),
    /// Merged by the program over the slice's sources: `layer` of `n_layers` is the
    /// position in the slice the parameters are asked with (-1 outside the layers).
    Merge {
        slice: usize,
        base: TensorSource,
        models: Vec<TensorSource>,
        layer: i64,
        n_layers: i64,
    },
}

impl Route {
    /// Every input tensor the route reads.
    pub fn sources(&self) -> Vec<&TensorSource> {
        match self {
            Route::Copy(s) => vec![s],
            Route::Merge { base, models, .. } => std::iter::once(base).chain(models).collect(),
        }
    }
}

impl LayerStack {
    /// The output's layers: for each, the input and layer its first source reads.
    pub fn layer_origins(&self) -> Vec<(usize, i64)> {
        self.slices
            .iter()
            .flat_map(|s| {
                let first = &s.sources[0];
                (first.start..first.end).map(move |l| (first.input, l))
            })
            .collect()
    }
}

/// A tensor name split around its layer number: `model.layers.` 3 `.mlp.up_proj.weight`.
fn split_layer(name: &str) -> Option<(&str, i64, &str)> {
    let mut offset = 0;
    let parts: Vec<&str> = name.split('.').collect();
    for w in parts.windows(2) {
        offset += w[0].len() + 1;
        if matches!(w[0], "layers" | "h" | "blocks" | "layer" | "block")
            && let Ok(n) = w[1].parse::<i64>()
        {
            return Some((&name[..offset], n, &name[offset + w[1].len()..]));
        }
    }
    None
}

/// An input's layers: their tensors by layer, as (the name's part after the number, info).
struct Layers<'a> {
    prefix: String,
    count: i64,
    by_layer: BTreeMap<i64, BTreeMap<&'a str, &'a TensorInfo>>,
    outside: Vec<&'a TensorInfo>,
}

fn layers(ck: &Checkpoint) -> Result<Layers<'_>, String> {
    let mut prefix: Option<&str> = None;
    let mut by_layer: BTreeMap<i64, BTreeMap<&str, &TensorInfo>> = BTreeMap::new();
    let mut outside = Vec::new();
    for info in ck.tensors() {
        let Some((p, n, rest)) = split_layer(&info.name) else {
            outside.push(info);
            continue;
        };
        match prefix {
            Some(q) if q != p => {
                return Err(format!(
                    "`{}` has layers under two names (`{q}N` and `{p}N`): slices stack the \
                     layers of single-stack models (a model with several modules, as a vision \
                     tower, is not supported, nor by mergekit's `slices`)",
                    ck.path().display()
                ));
            }
            _ => prefix = Some(p),
        }
        by_layer.entry(n).or_default().insert(rest, info);
    }
    let found = by_layer.keys().next_back().map_or(0, |m| m + 1);
    Ok(Layers {
        prefix: prefix.unwrap_or("model.layers.").to_string(),
        count: config_layers(ck, "a model's config.json")?.unwrap_or(found),
        by_layer,
        outside,
    })
}

/// The output's tensors taken from the inputs as the stack says.
struct Planner<'a> {
    inputs: Vec<&'a Checkpoint>,
    layers: Vec<Layers<'a>>,
    stack: &'a LayerStack,
    o: &'a PlanOptions<'a>,
    out: Vec<PlannedTensor>,
}

fn tensor_info<'a>(
    inputs: &[&'a Checkpoint],
    label: &str,
    t: &TensorSource,
) -> Result<&'a TensorInfo, String> {
    inputs[t.input]
        .info(&t.name)
        .map_err(|e| format!("{label}: {e}"))
}

fn input_name(inputs: &[&Checkpoint], i: usize) -> String {
    format!("`{}`", inputs[i].path().display())
}

impl Planner<'_> {
    fn check_ranges(&self) -> Result<(), String> {
        for s in &self.stack.slices {
            let len = s.sources[0].end - s.sources[0].start;
            for src in &s.sources {
                let count = self.layers[src.input].count;
                if src.start < 0 || src.end > count || src.start >= src.end {
                    return Err(format!(
                        "{}: layer_range [{}, {}] of `{}` is not within its {count} layers \
                         (a range [start, end] takes layers start to end - 1, 0 <= start < end \
                         <= {count})",
                        s.label, src.start, src.end, src.label
                    ));
                }
                if src.end - src.start != len {
                    return Err(format!(
                        "{}: every source of a slice gives as many layers; `{}` gives {} but \
                         `{}` gives {len}",
                        s.label,
                        src.label,
                        src.end - src.start,
                        s.sources[0].label
                    ));
                }
            }
        }
        Ok(())
    }

    /// Plans one output tensor read from `names[i]` of the slice's source `i`.
    fn add(
        &mut self,
        si: usize,
        out_name: String,
        names: Vec<String>,
        pos: (i64, i64),
    ) -> Result<(), String> {
        let (stack, inputs) = (self.stack, self.inputs.clone());
        let s = &stack.slices[si];
        let srcs: Vec<TensorSource> = s
            .sources
            .iter()
            .zip(names)
            .map(|(src, name)| TensorSource {
                input: src.input,
                name,
            })
            .collect();
        let info = |t: &TensorSource| tensor_info(&inputs, &s.label, t);
        let first = info(&srcs[0])?;
        let mut route = Route::Copy(srcs[0].clone());
        if let Some((b, ms)) = &s.merge {
            route = Route::Merge {
                slice: si,
                base: srcs[*b].clone(),
                models: ms.iter().map(|&m| srcs[m].clone()).collect(),
                layer: pos.0,
                n_layers: pos.1,
            };
            let selected = self.o.only.is_none_or(|r| r.is_match(&out_name));
            for t in &srcs {
                let i = info(t)?;
                if Dtype::from_header(&i.dtype).is_none() && selected {
                    return Err(format!(
                        "{}: tensor `{}` of {} has dtype {}; only F32, F16 and BF16 tensors \
                         can be merged",
                        s.label,
                        t.name,
                        input_name(&inputs, t.input),
                        i.dtype
                    ));
                }
                if i.shape != first.shape && selected && !self.o.on_mismatch_base {
                    return Err(format!(
                        "{}: tensor `{}` has shape {:?} in {} but `{}` has shape {:?} in {}",
                        s.label,
                        srcs[0].name,
                        first.shape,
                        input_name(&inputs, srcs[0].input),
                        t.name,
                        i.shape,
                        input_name(&inputs, t.input)
                    ));
                }
            }
            let same = srcs
                .iter()
                .all(|t| info(t).is_ok_and(|i| i.shape == first.shape));
            if !selected || !same {
                route = Route::Copy(srcs[*b].clone());
            }
        }
        let from = match &route {
            Route::Copy(t) => info(t)?,
            Route::Merge { base, .. } => info(base)?,
        };
        let action = match route {
            Route::Copy(_) => Action::Copy,
            Route::Merge { .. } => Action::Merge,
        };
        let float = Dtype::from_header(&from.dtype).is_some();
        let out_dtype = match (self.o.dtype, float) {
            (Some(d), true) => d.name().to_string(),
            _ => from.dtype.clone(),
        };
        let out_bytes =
            Dtype::from_header(&out_dtype).map_or(from.nbytes(), |d| from.numel() * d.size());
        self.out.push(PlannedTensor {
            name: out_name,
            shape: from.shape.clone(),
            action,
            out_dtype,
            out_bytes,
            source: Some(route),
        });
        Ok(())
    }

    /// The tensors outside the layers taken from slice `si`: those for which `keep` holds.
    fn outside(&mut self, si: usize, keep: impl Fn(&str) -> bool) -> Result<(), String> {
        let first = self.stack.slices[si].sources[0].input;
        let names: Vec<String> = self.layers[first]
            .outside
            .iter()
            .map(|i| i.name.clone())
            .filter(|n| keep(n))
            .collect();
        let k = self.stack.slices[si].sources.len();
        for n in names {
            self.add(si, n.clone(), vec![n; k], (-1, 1))?;
        }
        Ok(())
    }

    fn layer(&mut self, si: usize, j: i64, out_index: i64) -> Result<(), String> {
        let stack = self.stack;
        let s = &stack.slices[si];
        let first = &s.sources[0];
        let l0 = first.start + j;
        let Some(tensors) = self.layers[first.input].by_layer.get(&l0) else {
            return Err(format!(
                "{}: `{}` has no tensors for layer {l0}",
                s.label, first.label
            ));
        };
        let rests: Vec<&str> = tensors.keys().copied().collect();
        let len = first.end - first.start;
        let out_prefix = self.layers[0].prefix.clone();
        for rest in rests {
            let names: Vec<String> = s
                .sources
                .iter()
                .map(|src| format!("{}{}{rest}", self.layers[src.input].prefix, src.start + j))
                .collect();
            self.add(
                si,
                format!("{out_prefix}{out_index}{rest}"),
                names,
                (j, len),
            )?;
        }
        Ok(())
    }
}

/// Whether a tensor outside the layers belongs before them (the embeddings).
fn is_embedding(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["embed", "wte", "wpe"].iter().any(|k| n.contains(k))
}

/// Plans a layer-stacking merge: every output tensor with its route.
pub fn plan(
    base: &Checkpoint,
    models: &[Checkpoint],
    stack: &LayerStack,
    o: &PlanOptions,
) -> Result<MergePlan, String> {
    let inputs: Vec<&Checkpoint> = std::iter::once(base).chain(models).collect();
    let layers = inputs
        .iter()
        .map(|c| layers(c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut p = Planner {
        inputs,
        layers,
        stack,
        o,
        out: Vec::new(),
    };
    p.check_ranges()?;
    p.outside(0, is_embedding)?;
    let mut out_index = 0;
    for (si, s) in stack.slices.iter().enumerate() {
        for j in 0..s.sources[0].end - s.sources[0].start {
            p.layer(si, j, out_index)?;
            out_index += 1;
        }
    }
    p.outside(stack.slices.len() - 1, |n| !is_embedding(n))?;
    let tensors = p.out;
    check_shapes(base, &tensors)?;
    let shards = shard(&tensors, o.shard_size);
    let not_selected = tensors
        .iter()
        .filter(|t| matches!(t.source, Some(Route::Copy(_))) && t.action == Action::Copy)
        .filter(|t| o.only.is_some_and(|r| !r.is_match(&t.name)))
        .count();
    Ok(MergePlan {
        n_layers: out_index,
        shards,
        copied: super::plan::CopyReasons {
            not_selected,
            ..Default::default()
        },
        extra_in_models: 0,
        tensors,
    })
}

/// Every output tensor has the shape of the base's tensor of its kind (the output gets
/// the base's config.json): layer tensors that of the base's first layer.
fn check_shapes(base: &Checkpoint, tensors: &[PlannedTensor]) -> Result<(), String> {
    let first_layer = |name: &str| match split_layer(name) {
        Some((p, _, rest)) => format!("{p}0{rest}"),
        None => name.to_string(),
    };
    for t in tensors {
        let Ok(b) = base.info(&first_layer(&t.name)) else {
            continue;
        };
        if b.shape != t.shape {
            let from = t.source.as_ref().map(|r| r.sources()[0].name.clone());
            return Err(format!(
                "output tensor `{}` (from `{}`) has shape {:?}, but `{}` of the base `{}` has \
                 {:?}: the output would not load with the base's config.json (stack layers of \
                 models of one architecture and size)",
                t.name,
                from.unwrap_or_default(),
                t.shape,
                b.name,
                base.path().display(),
                b.shape
            ));
        }
    }
    Ok(())
}

/// config.json's per-layer lists that follow the layers (each output layer takes its
/// source layer's entry).
const PER_LAYER_KEYS: &[&str] = &["layer_types", "no_rope_layers"];

/// Rewrites the output's config.json (the base's): `num_hidden_layers` is the number of
/// output layers, and per-layer lists take each output layer's entry from the config of
/// the input it comes from.
pub fn rewrite_config(
    out: &std::path::Path,
    stack: &LayerStack,
    inputs: &[&std::path::Path],
) -> Result<(), String> {
    let path = out.join("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Ok(());
    };
    let origins = stack.layer_origins();
    let configs: Vec<Option<serde_json::Value>> = inputs
        .iter()
        .map(|p| {
            std::fs::read_to_string(p.join("config.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
        })
        .collect();
    let Some(o) = v.as_object_mut() else {
        return Ok(());
    };
    o.insert("num_hidden_layers".into(), serde_json::json!(origins.len()));
    for key in PER_LAYER_KEYS {
        if !o.get(*key).is_some_and(|x| x.is_array()) {
            continue;
        }
        let entries: Option<Vec<serde_json::Value>> = origins
            .iter()
            .map(|&(i, l)| configs[i].as_ref()?.get(*key)?.get(l as usize).cloned())
            .collect();
        match entries {
            Some(e) => o.insert((*key).into(), serde_json::Value::Array(e)),
            None => {
                return Err(format!(
                    "config.json's `{key}` cannot follow the layers: an input's config.json has \
                     no `{key}` entry for a layer the output takes"
                ));
            }
        };
    }
    let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())? + "\n";
    std::fs::write(&path, text).map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_around_the_layer_number() {
        assert_eq!(
            split_layer("model.layers.12.mlp.up_proj.weight"),
            Some(("model.layers.", 12, ".mlp.up_proj.weight"))
        );
        assert_eq!(
            split_layer("transformer.h.0"),
            Some(("transformer.h.", 0, ""))
        );
        assert_eq!(split_layer("model.norm.weight"), None);
        assert!(is_embedding("model.embed_tokens.weight"));
        assert!(!is_embedding("lm_head.weight"));
    }
}
