//! The config's parameters checked against the method and typed: the ParamSource
//! the runtime asks per tensor.

use super::error::ConfigError;
use super::inputs::Inputs;
use super::methods;
use super::params::{ConfigParams, Global, PerModel};
use super::resolve::{ParamInfo, Resolved};
use super::schema::{RawConfig, RawParam};
use super::setting::{self, Placed};
use super::yaml::Source;
use serde_json::{Map, Value as Json, json};

/// Checks a parameter name against the method; None when it is ignored (a note is added).
pub(super) fn lookup<'m>(
    src: &Source,
    m: &'m Resolved,
    p: &RawParam,
    notes: &mut Vec<String>,
) -> Result<Option<&'m ParamInfo>, ConfigError> {
    if m.use_base == Some(p.name.as_str()) {
        return Err(src.error(
            p.name_pos,
            format!(
                "`{}` follows from the config: true with a `base_model`, false without",
                p.name
            ),
        ));
    }
    match m.param(&p.name) {
        Some(info) => {
            if let Some(why) = info.why {
                notes.push(format!(
                    "line {}: `{}` is ignored: {why}",
                    p.name_pos.line, p.name
                ));
            }
            Ok(Some(info))
        }
        None if m.mergekit && methods::MERGEKIT_PARAMS.contains(&p.name.as_str()) => {
            notes.push(format!(
                "line {}: `{}` is not a parameter of `{}`; ignored, as mergekit ignores it",
                p.name_pos.line, p.name, m.merge_name
            ));
            Ok(None)
        }
        None => {
            let names: Vec<&str> = m.params.iter().map(|i| i.name.as_str()).collect();
            let hint = crate::types::did_you_mean(&p.name, names.iter().copied())
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            let list = if names.is_empty() {
                "it has none".to_string()
            } else {
                format!("its parameters: {}", names.join(", "))
            };
            Err(src.error(
                p.name_pos,
                format!(
                    "unknown parameter `{}` for `{}`{hint}; {list}",
                    p.name, m.merge_name
                ),
            ))
        }
    }
}

/// The settings under each model (dropped base entries included: checked, then
/// unused), for the parameters the program takes.
fn model_settings(
    src: &Source,
    raw: &RawConfig,
    m: &Resolved,
    notes: &mut Vec<String>,
) -> Result<Vec<Vec<(String, Placed)>>, ConfigError> {
    let mut own: Vec<Vec<(String, Placed)>> = vec![Vec::new(); raw.models.len()];
    for (i, e) in raw.models.iter().enumerate() {
        for p in &e.params {
            let Some(info) = lookup(src, m, p, notes)? else {
                continue;
            };
            if !info.per_model {
                return Err(src.error(
                    p.name_pos,
                    format!(
                        "`{}` is one value for the whole merge (a global parameter of `{}`); \
                         move it to the top-level `parameters`",
                        p.name, m.merge_name
                    ),
                ));
            }
            let placed = setting::parse(src, &p.name, &p.node, info.ty)?;
            if info.target.is_some() {
                own[i].push((p.name.clone(), placed));
            }
        }
    }
    Ok(own)
}

/// The settings of `parameters` (the top-level ones, or a slice's), for the parameters
/// the program takes.
fn top_settings(
    src: &Source,
    parameters: &[RawParam],
    m: &Resolved,
    notes: &mut Vec<String>,
) -> Result<Vec<(String, Placed)>, ConfigError> {
    let mut top: Vec<(String, Placed)> = Vec::new();
    for p in parameters {
        let Some(info) = lookup(src, m, p, notes)? else {
            continue;
        };
        let placed = setting::parse(src, &p.name, &p.node, info.ty)?;
        if info.target.is_some() {
            top.push((p.name.clone(), placed));
        }
    }
    Ok(top)
}

/// The parameters of the config `raw` (or of a slice, seen as a config whose `models`
/// are its sources and whose `parameters` are its own): each model's own setting, else
/// the first of `raw.parameters` and then `outer` (the config's, for a slice) that applies.
pub fn params(
    src: &Source,
    raw: &RawConfig,
    outer: &[RawParam],
    m: &Resolved,
    inputs: &Inputs,
    notes: &mut Vec<String>,
) -> Result<ConfigParams, ConfigError> {
    let mut per_model: Vec<PerModel> = Vec::new();
    let mut globals: Vec<Global> = Vec::new();
    let own = model_settings(src, raw, m, notes)?;
    let levels = [
        top_settings(src, &raw.parameters, m, notes)?,
        top_settings(src, outer, m, notes)?,
    ];
    for info in &m.params {
        let Some(target) = &info.target else { continue };
        let top_setting: Vec<Placed> = levels
            .iter()
            .filter_map(|l| l.iter().find(|(n, _)| n == &info.name))
            .map(|(_, s)| s.clone())
            .collect();
        if info.per_model {
            let settings: Vec<Option<Placed>> = inputs
                .candidates
                .iter()
                .map(|c| {
                    c.entry.and_then(|i| {
                        own[i]
                            .iter()
                            .find(|(n, _)| n == &info.name)
                            .map(|(_, s)| s.clone())
                    })
                })
                .collect();
            let unset = inputs
                .candidates
                .iter()
                .zip(&settings)
                .find(|(_, s)| s.is_none());
            if info.required
                && top_setting.is_empty()
                && let Some((c, _)) = unset
            {
                let msg = if c.entry.is_none() {
                    format!(
                        "`{}` averages the base_model too, as mergekit does (it is not listed \
                             under `models`, so it is appended last), and it has no `{}`: list it \
                             under `models` with its own, or set `{}` in the top-level `parameters`",
                        m.merge_name, info.name, info.name
                    )
                } else {
                    format!(
                        "model `{}` has no `{}` (`{}` needs one per model); set it under its \
                             `parameters`, or for every model in the top-level `parameters`",
                        c.label, info.name, m.merge_name
                    )
                };
                return Err(src.error(c.pos, msg));
            }
            per_model.push(PerModel {
                target: target.clone(),
                config_name: info.name.clone(),
                ty: info.ty,
                own: settings,
                top: top_setting,
                default: info.default.clone(),
                required: info.required,
            });
        } else if !top_setting.is_empty() {
            globals.push(Global {
                target: target.clone(),
                config_name: info.name.clone(),
                ty: info.ty,
                top: top_setting,
                required: info.required,
            });
        } else if info.required {
            return Err(src.error(
                raw.merge_method.pos,
                format!(
                    "`{}` needs `{}`: set it in the top-level `parameters`",
                    m.merge_name, info.name
                ),
            ));
        }
    }
    Ok(ConfigParams {
        per_model,
        globals,
        fixed: Vec::new(),
        models: inputs.candidates.iter().map(|c| c.label.clone()).collect(),
        label: src.label.clone(),
        describe: describe(raw, m, inputs),
    })
}

/// The parameters as the config gives them, for mergec.json.
pub fn describe(raw: &RawConfig, m: &Resolved, inputs: &Inputs) -> Json {
    let settings = |ps: &[RawParam]| -> Json {
        let mut o = Map::new();
        for p in ps {
            if let Some(info) = m.param(&p.name)
                && let Ok(s) = setting::parse(
                    &Source {
                        label: String::new(),
                        text: String::new(),
                    },
                    &p.name,
                    &p.node,
                    info.ty,
                )
            {
                o.insert(p.name.clone(), s.setting.json());
            }
        }
        Json::Object(o)
    };
    json!({
        "merge_method": raw.merge_method.value,
        "base_model": raw.base_model.as_ref().map(|b| &b.value),
        "models": inputs.candidates.iter().map(|c| json!({
            "model": c.label,
            "path": c.path.display().to_string(),
            "parameters": c.entry.map_or(json!({}), |i| settings(&raw.models[i].params)),
        })).collect::<Vec<_>>(),
        "parameters": settings(&raw.parameters),
    })
}
