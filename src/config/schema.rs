//! The shape of a mergekit config: its keys, checked with positions. Parameter
//! values stay YAML nodes here; they are typed once the method is known.

use super::error::ConfigError;
use super::yaml::{Kind, Node, Pos, Source};
use crate::types::did_you_mean;

/// A string value and where it was written.
#[derive(Clone, Debug)]
pub struct Text {
    pub value: String,
    pub pos: Pos,
}

/// `name: value` under a `parameters` key.
#[derive(Clone, Debug)]
pub struct RawParam {
    pub name: String,
    pub name_pos: Pos,
    pub node: Node,
}

/// One entry of `models`.
#[derive(Clone, Debug)]
pub struct ModelEntry {
    pub model: Text,
    pub params: Vec<RawParam>,
    pub pos: Pos,
}

#[derive(Clone, Debug)]
pub struct RawConfig {
    pub merge_method: Text,
    pub base_model: Option<Text>,
    pub models: Vec<ModelEntry>,
    /// Where `models:` is written.
    pub models_pos: Pos,
    pub parameters: Vec<RawParam>,
    pub dtype: Option<Text>,
    pub out_dtype: Option<Text>,
    pub tokenizer_source: Option<Text>,
    /// `slices:` (layer stacking), and where it is written; then `models` is empty.
    pub slices: Option<(Vec<super::slices::SliceEntry>, Pos)>,
}

/// mergekit's top-level keys (MergeConfiguration), for did-you-mean.
const TOP_KEYS: &[&str] = &[
    "merge_method",
    "base_model",
    "models",
    "parameters",
    "dtype",
    "out_dtype",
    "tokenizer_source",
    "slices",
    "modules",
    "tokenizer",
    "chat_template",
];

pub(super) fn unknown_key(src: &Source, key: &Node, place: &str, known: &[&str]) -> ConfigError {
    let name = key
        .as_str()
        .map_or_else(|| key.describe(), |s| format!("`{s}`"));
    let hint = key
        .as_str()
        .and_then(|s| did_you_mean(s, known.iter().copied()))
        .unwrap_or_else(|| format!("known keys: {}", known.join(", ")));
    src.error(key.pos, format!("unknown key {name} {place} ({hint})"))
}

fn pairs<'a>(src: &Source, node: &'a Node, what: &str) -> Result<&'a [(Node, Node)], ConfigError> {
    match &node.kind {
        Kind::Map(m) => Ok(m),
        Kind::Null => Ok(&[]),
        _ => Err(src.error(
            node.pos,
            format!(
                "{what} should be a mapping of `key: value` lines, not {}",
                node.describe()
            ),
        )),
    }
}

pub(super) fn text(src: &Source, key: &str, node: &Node) -> Result<Option<Text>, ConfigError> {
    match &node.kind {
        Kind::Null => Ok(None),
        Kind::Str(s) => Ok(Some(Text {
            value: s.clone(),
            pos: node.pos,
        })),
        _ => Err(src.error(
            node.pos,
            format!(
                "wrong value type: `{key}` takes a string, not {}",
                node.describe()
            ),
        )),
    }
}

pub(super) fn params(src: &Source, node: &Node, owner: &str) -> Result<Vec<RawParam>, ConfigError> {
    pairs(src, node, &format!("`parameters` {owner}"))?
        .iter()
        .map(|(k, v)| {
            let name = k.as_str().ok_or_else(|| {
                src.error(
                    k.pos,
                    format!("a parameter name must be a string, not {}", k.describe()),
                )
            })?;
            Ok(RawParam {
                name: name.to_string(),
                name_pos: k.pos,
                node: v.clone(),
            })
        })
        .collect()
}

fn model_entry(src: &Source, node: &Node) -> Result<ModelEntry, ConfigError> {
    let Kind::Map(m) = &node.kind else {
        return Err(src.error(
            node.pos,
            format!(
                "each entry of `models` is a mapping: `- model: PATH` with optional \
                 `parameters:` below it, not {}",
                node.describe()
            ),
        ));
    };
    let mut model = None;
    let mut ps = Vec::new();
    for (k, v) in m {
        match k.as_str() {
            Some("model") => {
                model = Some(
                    text(src, "model", v)?
                        .ok_or_else(|| src.error(v.pos, "`model` needs a path to a checkpoint"))?,
                )
            }
            Some("parameters") => ps = params(src, v, "of a model")?,
            _ => {
                return Err(unknown_key(
                    src,
                    k,
                    "in an entry of `models`",
                    &["model", "parameters"],
                ));
            }
        }
    }
    let model =
        model.ok_or_else(|| src.error(node.pos, "this entry of `models` has no `model: PATH`"))?;
    Ok(ModelEntry {
        model,
        params: ps,
        pos: node.pos,
    })
}

/// Checks the document's keys and structure.
pub fn read(src: &Source, root: &Node) -> Result<RawConfig, ConfigError> {
    let top = match &root.kind {
        Kind::Map(m) => m,
        Kind::Null => return Err(src.error(root.pos, "the config is empty")),
        _ => {
            return Err(src.error(
                root.pos,
                format!(
                    "a mergekit config is a mapping (merge_method:, models:, ...), not {}",
                    root.describe()
                ),
            ));
        }
    };
    let mut merge_method = None;
    let mut base_model = None;
    let mut models = None;
    let mut parameters = Vec::new();
    let (mut dtype, mut out_dtype, mut tokenizer_source) = (None, None, None);
    let mut slices = None;
    for (k, v) in top {
        let Some(key) = k.as_str() else {
            return Err(unknown_key(src, k, "at the top level", TOP_KEYS));
        };
        match key {
            "merge_method" => {
                merge_method = Some(text(src, key, v)?.ok_or_else(|| {
                    src.error(v.pos, "`merge_method` needs a method name or a .merge path")
                })?)
            }
            "base_model" => base_model = text(src, key, v)?,
            "models" => {
                let Kind::Seq(items) = &v.kind else {
                    return Err(src.error(
                        v.pos,
                        format!(
                            "`models` is a list of `- model: PATH` entries, not {}",
                            v.describe()
                        ),
                    ));
                };
                models = Some((
                    items
                        .iter()
                        .map(|n| model_entry(src, n))
                        .collect::<Result<Vec<_>, _>>()?,
                    k.pos,
                ));
            }
            "parameters" => parameters = params(src, v, "at the top level")?,
            "dtype" => dtype = text(src, key, v)?,
            "out_dtype" => out_dtype = text(src, key, v)?,
            "tokenizer_source" => tokenizer_source = text(src, key, v)?,
            "slices" => slices = Some((super::slices::read(src, v)?, k.pos)),
            "modules" => {
                return Err(src.error(
                    k.pos,
                    "`modules` is not supported (a config per module of a multi-module \
                     model); use `models:` (whole models) or `slices:` (layer stacking)",
                ));
            }
            "tokenizer" => {
                return Err(src.error(
                    k.pos,
                    "the `tokenizer:` section (building a merged vocabulary) is not supported; \
                     use `tokenizer_source: base` or a model's path to copy its tokenizer files",
                ));
            }
            "chat_template" => {
                return Err(src.error(
                    k.pos,
                    "`chat_template` is not supported: the tokenizer files (and their chat \
                     template) are copied unchanged from the base or `tokenizer_source`",
                ));
            }
            _ => return Err(unknown_key(src, k, "at the top level", TOP_KEYS)),
        }
    }
    let merge_method = merge_method.ok_or_else(|| {
        src.error(
            root.pos,
            "no `merge_method` (e.g. `merge_method: ties`, or a path to a .merge program)",
        )
    })?;
    let (models, models_pos) = match (models, &slices) {
        (Some(_), Some((_, at))) => {
            return Err(src.error(
                *at,
                "give either `models` (whole models merged) or `slices` (layer ranges \
                 stacked), not both, as mergekit",
            ));
        }
        (None, Some((_, at))) => (Vec::new(), *at),
        (Some(m), None) => m,
        (None, None) => {
            return Err(src.error(
                root.pos,
                "no `models` (a list of `- model: PATH` entries with optional `parameters:`) \
                 and no `slices` (layer ranges to stack)",
            ));
        }
    };
    if models.is_empty() && slices.is_none() {
        return Err(src.error(models_pos, "`models` is empty: list the models to merge"));
    }
    Ok(RawConfig {
        merge_method,
        base_model,
        models,
        models_pos,
        parameters,
        dtype,
        out_dtype,
        tokenizer_source,
        slices,
    })
}
