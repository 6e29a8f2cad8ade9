//! Which tensors an extraction decomposes (the attention and MLP projections of the
//! decoder layers), which it leaves out, and the checks on the pair of checkpoints:
//! the same tensor names and shapes in both, or an error naming the first that are not.

use super::super::safetensors::{Checkpoint, Dtype};
use crate::interp::classify;

/// The projections a LoRA adapter goes on, in PEFT's and mergec's loader's order.
pub const TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// One projection weight to decompose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The checkpoint's name, `model.layers.N.self_attn.q_proj.weight`.
    pub name: String,
    /// The short module name, `q_proj`.
    pub module: &'static str,
    pub layer: usize,
    /// `[out, in]`.
    pub rows: usize,
    pub cols: usize,
}

impl Target {
    /// The module's path in PEFT's names: `model.layers.N.self_attn.q_proj`.
    pub fn path(&self) -> &str {
        self.name.strip_suffix(".weight").unwrap_or(&self.name)
    }
}

/// The projection `name` is, if any: `model.layers.N.{self_attn|mlp}.PROJ.weight`.
fn as_target(name: &str) -> Option<(&'static str, usize)> {
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (group, rest) = rest.split_once('.')?;
    let proj = rest.strip_suffix(".weight")?;
    let module = TARGETS.iter().find(|t| **t == proj)?;
    let group_ok = match *module {
        "gate_proj" | "up_proj" | "down_proj" => group == "mlp",
        _ => group == "self_attn",
    };
    group_ok.then_some((module, layer))
}

/// The tensors of a pair of checkpoints, sorted out.
#[derive(Debug, Default)]
pub struct Pairing {
    /// The projections, in layer order, then [`TARGETS`] order.
    pub targets: Vec<Target>,
    /// Every other tensor (in both, same shape).
    pub others: Vec<String>,
}

/// At most this many names in one message.
const NAMED: usize = 3;

fn first_names(names: &[&str]) -> String {
    let mut s = names
        .iter()
        .take(NAMED)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMED {
        s.push_str(&format!(" and {} more", names.len() - NAMED));
    }
    s
}

/// The names of `a` that `b` lacks.
fn only_in<'a>(a: &'a Checkpoint, b: &Checkpoint) -> Vec<&'a str> {
    a.names().filter(|n| b.info(n).is_err()).collect()
}

/// Pairs the tensors of `base` and `model`: every name must be in both with one shape,
/// and every projection must be 2-D.
pub fn pair(base: &Checkpoint, model: &Checkpoint) -> Result<Pairing, String> {
    for (a, b, which) in [(base, model, "--base"), (model, base, "--model")] {
        let missing = only_in(a, b);
        if !missing.is_empty() {
            let other = if which == "--base" {
                "--model"
            } else {
                "--base"
            };
            return Err(format!(
                "{} tensor{} of {which} `{}` {} not in {other} `{}`: {} (the two must be the \
                 same architecture)",
                missing.len(),
                if missing.len() == 1 { "" } else { "s" },
                a.path().display(),
                if missing.len() == 1 { "is" } else { "are" },
                b.path().display(),
                first_names(&missing)
            ));
        }
    }
    let mut shapes = vec![];
    let mut out = Pairing::default();
    for t in base.tensors() {
        let m = model.info(&t.name).map_err(|e| e.to_string())?;
        if m.shape != t.shape {
            shapes.push(format!(
                "`{}` is {:?} in --base, {:?} in --model",
                t.name, t.shape, m.shape
            ));
            continue;
        }
        match as_target(&t.name) {
            Some((module, layer)) => {
                let [rows, cols] = t.shape[..] else {
                    return Err(format!(
                        "`{}` is {:?}: a projection weight must be 2-D",
                        t.name, t.shape
                    ));
                };
                for (who, dtype) in [("--base", &t.dtype), ("--model", &m.dtype)] {
                    if Dtype::from_header(dtype).is_none() {
                        return Err(format!(
                            "`{}` is {dtype} in {who}: only F32, F16 and BF16 weights can be decomposed",
                            t.name
                        ));
                    }
                }
                out.targets.push(Target {
                    name: t.name.clone(),
                    module,
                    layer,
                    rows,
                    cols,
                });
            }
            None => out.others.push(t.name.clone()),
        }
    }
    if !shapes.is_empty() {
        let n = shapes.len();
        let mut msg = shapes
            .into_iter()
            .take(NAMED)
            .collect::<Vec<_>>()
            .join("; ");
        if n > NAMED {
            msg.push_str(&format!("; and {} more", n - NAMED));
        }
        let (s, has) = if n == 1 { ("", "has") } else { ("s", "have") };
        return Err(format!(
            "{n} tensor{s} {has} another shape in --model: {msg}"
        ));
    }
    if out.targets.is_empty() {
        return Err(format!(
            "`{}` has no attention or MLP projections to decompose (tensors named \
             `model.layers.N.self_attn.{{q,k,v,o}}_proj.weight` or \
             `model.layers.N.mlp.{{gate,up,down}}_proj.weight`)",
            base.path().display()
        ));
    }
    let order = |t: &Target| (t.layer, TARGETS.iter().position(|x| *x == t.module));
    out.targets.sort_by_key(order);
    Ok(out)
}

/// The first projection whose smaller side is under `rank`, as an error.
pub fn check_rank(targets: &[Target], rank: usize) -> Result<(), String> {
    if rank == 0 {
        return Err("--rank must be at least 1".into());
    }
    match targets.iter().find(|t| t.rows.min(t.cols) < rank) {
        Some(t) => Err(format!(
            "--rank {rank} is larger than `{}` ({} x {}) allows: a rank is at most the \
             smaller side; use --rank {} or less",
            t.name,
            t.rows,
            t.cols,
            targets
                .iter()
                .map(|t| t.rows.min(t.cols))
                .min()
                .unwrap_or(1)
        )),
        None => Ok(()),
    }
}

/// A non-projection tensor that differs between the checkpoints (left out of the adapter).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub name: String,
    /// `embedding` (embeddings and lm_head), `norm`, `attention` or `mlp` (biases and
    /// other parameters of those blocks), or `other`.
    pub kind: &'static str,
}

/// The tensors of `names` whose values differ between `base` and `model` (bitwise when
/// both store the same dtype, else as f32 values).
pub fn differing(
    base: &Checkpoint,
    model: &Checkpoint,
    names: &[String],
) -> Result<Vec<Skipped>, String> {
    let mut out = vec![];
    for name in names {
        let (a, b) = (
            base.info(name).map_err(|e| e.to_string())?,
            model.info(name).map_err(|e| e.to_string())?,
        );
        let same = if a.dtype == b.dtype {
            base.raw_bytes(name).map_err(|e| e.to_string())?
                == model.raw_bytes(name).map_err(|e| e.to_string())?
        } else if Dtype::from_header(&a.dtype).is_some() && Dtype::from_header(&b.dtype).is_some() {
            let x = base.read_f32(name).map_err(|e| e.to_string())?;
            let y = model.read_f32(name).map_err(|e| e.to_string())?;
            x.data
                .iter()
                .zip(&y.data)
                .all(|(p, q)| p.to_bits() == q.to_bits())
        } else {
            false
        };
        base.release(name);
        model.release(name);
        if !same {
            out.push(Skipped {
                name: name.clone(),
                kind: classify(name),
            });
        }
    }
    Ok(out)
}
