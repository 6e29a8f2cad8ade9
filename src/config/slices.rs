//! `slices:` (mergekit's layer stacking, "frankenmerges"): each slice takes a range of
//! layers from one model (copied, `merge_method: passthrough`) or from several models
//! (merged layer by layer with `merge_method`), and the slices are stacked in order.
//!
//! ```yaml
//! slices:
//!   - sources:
//!       - model: path/to/a
//!         layer_range: [0, 2]         # layers 0 and 1
//!   - sources:
//!       - model: path/to/b
//!         layer_range: [1, 2]
//!         parameters: {scale: 0.5}    # passthrough's only parameter (per model)
//! merge_method: passthrough
//! base_model: path/to/a                # optional: whose config.json and tokenizer the output gets
//! ```
//!
//! Parameters resolve as mergekit's: a source's own setting, then its slice's
//! `parameters`, then the top-level ones; a gradient runs over the slice's layers.

use super::error::ConfigError;
use super::inputs::{Candidate, Inputs, local_path};
use super::methods::BaseRole;
use super::resolve::Resolved;
use super::schema::{self, ModelEntry, RawConfig, RawParam, Text};
use super::yaml::{Kind, Node, Pos, Source};
use crate::runtime::stack::{LayerStack, SliceSource, StackSlice};
use crate::types::Const;
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};

/// One entry of a slice's `sources`.
#[derive(Clone, Debug)]
pub struct SourceEntry {
    pub model: Text,
    pub start: i64,
    pub end: i64,
    pub params: Vec<RawParam>,
    pub pos: Pos,
}

/// One entry of `slices`.
#[derive(Clone, Debug)]
pub struct SliceEntry {
    pub sources: Vec<SourceEntry>,
    pub base_model: Option<Text>,
    pub params: Vec<RawParam>,
    pub pos: Pos,
}

fn range(src: &Source, node: &Node) -> Result<(i64, i64), ConfigError> {
    let bad = || {
        src.error(
            node.pos,
            format!(
                "`layer_range` is two layer numbers [start, end] (layers start to end - 1), \
                 not {}",
                node.describe()
            ),
        )
    };
    let Kind::Seq(items) = &node.kind else {
        return Err(bad());
    };
    let ints: Vec<i64> = items
        .iter()
        .filter_map(|n| match n.kind {
            Kind::Int(i) => Some(i),
            _ => None,
        })
        .collect();
    match ints[..] {
        [a, b] if items.len() == 2 && 0 <= a && a < b => Ok((a, b)),
        [a, b] if items.len() == 2 => Err(src.error(
            node.pos,
            format!("`layer_range: [{a}, {b}]` is empty: give [start, end] with 0 <= start < end"),
        )),
        _ => Err(bad()),
    }
}

fn source_entry(src: &Source, node: &Node) -> Result<SourceEntry, ConfigError> {
    let Kind::Map(m) = &node.kind else {
        return Err(src.error(
            node.pos,
            format!(
                "each entry of `sources` is a mapping (`- model: PATH` and `layer_range: \
                 [start, end]`), not {}",
                node.describe()
            ),
        ));
    };
    let (mut model, mut layers, mut params) = (None, None, Vec::new());
    for (k, v) in m {
        match k.as_str() {
            Some("model") => model = schema::text(src, "model", v)?,
            Some("layer_range") => layers = Some(range(src, v)?),
            Some("parameters") => params = schema::params(src, v, "of a source")?,
            _ => {
                let known = ["model", "layer_range", "parameters"];
                return Err(schema::unknown_key(
                    src,
                    k,
                    "in an entry of `sources`",
                    &known,
                ));
            }
        }
    }
    let model =
        model.ok_or_else(|| src.error(node.pos, "this entry of `sources` has no `model: PATH`"))?;
    let (start, end) = layers.ok_or_else(|| {
        src.error(
            node.pos,
            format!("`{}` has no `layer_range: [start, end]`", model.value),
        )
    })?;
    Ok(SourceEntry {
        model,
        start,
        end,
        params,
        pos: node.pos,
    })
}

fn slice_entry(src: &Source, node: &Node) -> Result<SliceEntry, ConfigError> {
    let Kind::Map(m) = &node.kind else {
        return Err(src.error(
            node.pos,
            format!(
                "each entry of `slices` is a mapping with `sources:`, not {}",
                node.describe()
            ),
        ));
    };
    let mut sources = None;
    let (mut base_model, mut params) = (None, Vec::new());
    for (k, v) in m {
        match k.as_str() {
            Some("sources") => {
                let Kind::Seq(items) = &v.kind else {
                    return Err(src.error(
                        v.pos,
                        format!(
                            "`sources` is a list of `- model: PATH` entries, not {}",
                            v.describe()
                        ),
                    ));
                };
                let list = items
                    .iter()
                    .map(|n| source_entry(src, n))
                    .collect::<Result<Vec<_>, _>>()?;
                if list.is_empty() {
                    return Err(src.error(v.pos, "`sources` is empty: a slice needs a model"));
                }
                sources = Some(list);
            }
            Some("base_model") => base_model = schema::text(src, "base_model", v)?,
            Some("parameters") => params = schema::params(src, v, "of a slice")?,
            Some("residual_weight") => {
                return Err(src.error(
                    k.pos,
                    "`residual_weight` is not supported (mergekit 0.1.5 reads it but does not \
                     use it either); remove it",
                ));
            }
            _ => {
                let known = ["sources", "base_model", "parameters", "residual_weight"];
                return Err(schema::unknown_key(
                    src,
                    k,
                    "in an entry of `slices`",
                    &known,
                ));
            }
        }
    }
    let sources =
        sources.ok_or_else(|| src.error(node.pos, "this entry of `slices` has no `sources:`"))?;
    Ok(SliceEntry {
        sources,
        base_model,
        params,
        pos: node.pos,
    })
}

/// Reads `slices:`.
pub fn read(src: &Source, node: &Node) -> Result<Vec<SliceEntry>, ConfigError> {
    let Kind::Seq(items) = &node.kind else {
        return Err(src.error(
            node.pos,
            format!(
                "`slices` is a list of `- sources:` entries, not {}",
                node.describe()
            ),
        ));
    };
    if items.is_empty() {
        return Err(src.error(
            node.pos,
            "`slices` is empty: list the layer ranges to stack",
        ));
    }
    items.iter().map(|n| slice_entry(src, n)).collect()
}

fn same(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The job's checkpoints: the base (base_model, else the first slice's first model),
/// then every other model in order of first mention.
struct Models {
    paths: Vec<PathBuf>,
}

impl Models {
    fn index(&mut self, p: &Path) -> usize {
        match self.paths.iter().position(|q| same(q, p)) {
            Some(i) => i,
            None => {
                self.paths.push(p.to_path_buf());
                self.paths.len() - 1
            }
        }
    }
}

/// What a slice merges: the program's base and models as indices into the sources,
/// and whether the base is a source (`use_base` of nuslerp and multislerp).
fn roles(
    src: &Source,
    slice: &SliceEntry,
    label: &str,
    paths: &[PathBuf],
    base: Option<(&Text, PathBuf)>,
    m: &Resolved,
) -> Result<(usize, Vec<usize>, bool), ConfigError> {
    let at = base
        .as_ref()
        .and_then(|(_, b)| paths.iter().position(|p| same(p, b)));
    let all: Vec<usize> = (0..paths.len()).collect();
    let others = |b: usize| all.iter().copied().filter(|&i| i != b).collect::<Vec<_>>();
    let (b, models) = match (m.base, at) {
        (BaseRole::Required, Some(b)) => (b, others(b)),
        (BaseRole::Required, None) => {
            let why = match base {
                Some((t, _)) => format!("the base_model `{}` is not one of its sources", t.value),
                None => "the config has no `base_model`".to_string(),
            };
            return Err(src.error(
                slice.pos,
                format!(
                    "{label}: `{}` merges a slice's sources onto its base model, and {why}; \
                     set `base_model` (at the top level or in the slice) to one of its sources",
                    m.merge_name
                ),
            ));
        }
        (BaseRole::Optional, Some(b)) => (b, others(b)),
        (BaseRole::Input, Some(b)) => (b, all.clone()),
        (_, None) => (0, all.clone()),
    };
    let n = models.len();
    if n < m.min_models || m.max_models.is_some_and(|hi| n > hi) {
        let count = match (m.min_models, m.max_models) {
            (lo, Some(hi)) if lo == hi => format!("exactly {lo}"),
            (lo, _) => format!("at least {lo}"),
        };
        let besides = if m.base == BaseRole::Input {
            ""
        } else {
            " besides the base"
        };
        return Err(src.error(
            slice.pos,
            format!(
                "{label}: `{}` takes {count} model(s){besides} in a slice with several \
                 sources; this slice gives {n}",
                m.merge_name
            ),
        ));
    }
    Ok((b, models, at.is_some()))
}

/// A slice's parameters: the slice seen as a config whose `models` are its sources.
fn slice_params(
    src: &Source,
    raw: &RawConfig,
    slice: &SliceEntry,
    paths: &[PathBuf],
    (b, models): (usize, &[usize]),
    m: &Resolved,
    notes: &mut Vec<String>,
) -> Result<super::params::ConfigParams, ConfigError> {
    let view = RawConfig {
        models: slice
            .sources
            .iter()
            .map(|s| ModelEntry {
                model: s.model.clone(),
                params: s.params.clone(),
                pos: s.pos,
            })
            .collect(),
        models_pos: slice.pos,
        parameters: slice.params.clone(),
        slices: None,
        ..raw.clone()
    };
    let inputs = Inputs {
        base: paths[b].clone(),
        candidates: models
            .iter()
            .map(|&i| Candidate {
                path: paths[i].clone(),
                label: slice.sources[i].model.value.clone(),
                pos: slice.sources[i].pos,
                entry: Some(i),
            })
            .collect(),
    };
    let mut params = super::build::params(src, &view, &raw.parameters, m, &inputs, notes)?;
    params.describe = super::build::describe(&view, m, &inputs);
    Ok(params)
}

/// Whether any `parameters` in the config set `name`.
fn sets(raw: &RawConfig, slices: &[SliceEntry], name: &str) -> bool {
    let has = |ps: &[RawParam]| ps.iter().any(|p| p.name == name);
    has(&raw.parameters)
        || slices
            .iter()
            .any(|s| has(&s.params) || s.sources.iter().any(|x| has(&x.params)))
}

/// The job-level parameters of a `slices:` config: none (each slice has its own), and
/// the slices for mergec.json.
pub struct Described(pub Json);

impl crate::runtime::ParamSource for Described {
    fn params_for(&self, _: &str, _: i64, _: i64) -> Result<Vec<(String, Const)>, String> {
        Ok(Vec::new())
    }
    fn describe(&self) -> Json {
        self.0.clone()
    }
}

/// The stacked layers of a `slices:` config: the job's base and models, the stack, and
/// the slices for mergec.json.
pub struct Stacked {
    pub base: PathBuf,
    pub models: Vec<PathBuf>,
    pub stack: LayerStack,
    pub describe: Json,
}

/// Refuses a model given twice in one slice.
fn check_distinct(
    src: &Source,
    slice: &SliceEntry,
    label: &str,
    paths: &[PathBuf],
) -> Result<(), ConfigError> {
    for (j, p) in paths.iter().enumerate() {
        if let Some(k) = paths[..j].iter().position(|q| same(p, q)) {
            return Err(src.error(
                slice.sources[j].pos,
                format!(
                    "{label}: `{}` is a source twice (also at line {}); a slice merges \
                     different models",
                    slice.sources[j].model.value, slice.sources[k].pos.line
                ),
            ));
        }
    }
    Ok(())
}

/// A slice for mergec.json: its output layers, sources and parameters.
fn describe_slice(
    slice: &SliceEntry,
    paths: &[PathBuf],
    first_layer: i64,
    params: Option<&super::params::ConfigParams>,
) -> Json {
    let len = slice.sources[0].end - slice.sources[0].start;
    json!({
        "output_layers": [first_layer, first_layer + len],
        "sources": slice.sources.iter().zip(paths).map(|(s, p)| json!({
            "model": s.model.value,
            "path": p.display().to_string(),
            "layer_range": [s.start, s.end],
        })).collect::<Vec<_>>(),
        "merged": params.is_some(),
        "parameters": params.map_or(Json::Null, |p| p.describe.clone()),
    })
}

/// The layer stack of a `slices:` config (see the module's documentation).
pub fn stack(
    src: &Source,
    raw: &RawConfig,
    slices: &[SliceEntry],
    m: &Resolved,
    (dir, hub): (&Path, Option<&Path>),
    overrides: &[(String, Const)],
    notes: &mut Vec<String>,
) -> Result<Stacked, ConfigError> {
    let passthrough = m.merge_name == "passthrough";
    let first = &slices[0].sources[0].model;
    let donor = raw.base_model.as_ref().unwrap_or(first);
    let mut models = Models {
        paths: vec![local_path(src, donor, dir, hub)?],
    };
    let scaled = passthrough && sets(raw, slices, "scale");
    let (mut out, mut described) = (Vec::new(), Vec::new());
    let mut next_layer = 0;
    for (i, slice) in slices.iter().enumerate() {
        let label = format!("slice {} (line {})", i + 1, slice.pos.line);
        let paths = slice
            .sources
            .iter()
            .map(|s| local_path(src, &s.model, dir, hub))
            .collect::<Result<Vec<_>, _>>()?;
        check_distinct(src, slice, &label, &paths)?;
        let base_text = slice.base_model.as_ref().or(raw.base_model.as_ref());
        let base = base_text
            .map(|t| Ok::<_, ConfigError>((t, local_path(src, t, dir, hub)?)))
            .transpose()?;
        if passthrough && paths.len() > 1 {
            return Err(src.error(
                slice.pos,
                format!(
                    "{label}: `passthrough` copies one model's layers, and this slice has {} \
                     sources; give it one, or merge them with another merge_method",
                    paths.len()
                ),
            ));
        }
        let (merge, params) = if paths.len() == 1 && !scaled {
            // One source: its layers are copied (mergekit's methods return a lone input);
            // the names of its parameters are still checked.
            let own = slice.sources.iter().flat_map(|x| &x.params);
            for p in slice.params.iter().chain(own) {
                super::build::lookup(src, m, p, notes)?;
            }
            (None, None)
        } else {
            let (b, ms, base_is_source) = if passthrough {
                (0, vec![0], false)
            } else {
                roles(src, slice, &label, &paths, base, m)?
            };
            let mut p = slice_params(src, raw, slice, &paths, (b, &ms), m, notes)?;
            if let Some(u) = m.use_base {
                p.fixed.push((u.to_string(), Const::Bool(base_is_source)));
            }
            p.fixed.extend(overrides.iter().cloned());
            (Some((b, ms)), Some(p))
        };
        described.push(describe_slice(slice, &paths, next_layer, params.as_ref()));
        let len = slice.sources[0].end - slice.sources[0].start;
        next_layer += len;
        out.push(StackSlice {
            label,
            sources: slice
                .sources
                .iter()
                .zip(&paths)
                .map(|(s, p)| SliceSource {
                    input: models.index(p),
                    start: s.start,
                    end: s.end,
                    label: s.model.value.clone(),
                })
                .collect(),
            merge,
            params: match params {
                Some(p) => Box::new(p) as Box<dyn crate::runtime::ParamSource>,
                None => Box::new(crate::runtime::FixedParams(Vec::new())),
            },
        });
    }
    let mut paths = models.paths.into_iter();
    let base = paths.next().unwrap_or_default();
    Ok(Stacked {
        base,
        models: paths.collect(),
        stack: LayerStack { slices: out },
        describe: Json::Array(described),
    })
}
