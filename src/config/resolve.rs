//! `merge_method` to a checked program and the parameters a config may set.

use super::error::ConfigError;
use super::methods::{self, BaseRole, MethodSpec, Target};
use super::schema::Text;
use super::setting::Ty;
use super::yaml::Source;
use crate::pipeline::{PipelineError, Source as ProgramSource};
use crate::types::ty::Ty as LangTy;
use crate::types::{Const, MergeSig, did_you_mean};
use std::path::Path;

/// A parameter a config may set.
#[derive(Clone, Debug)]
pub struct ParamInfo {
    /// The name in the config (mergekit's).
    pub name: String,
    /// The program parameter, or None when the parameter is accepted and ignored.
    pub target: Option<String>,
    /// Why an ignored parameter is ignored.
    pub why: Option<&'static str>,
    pub per_model: bool,
    pub ty: Ty,
    pub required: bool,
    pub default: Option<Const>,
}

/// The program a config runs and how the config maps onto it.
pub struct Resolved {
    pub program: ProgramSource,
    pub merge_name: String,
    pub base: BaseRole,
    pub min_models: usize,
    pub max_models: Option<usize>,
    pub params: Vec<ParamInfo>,
    /// The program parameter set from whether a base_model is given.
    pub use_base: Option<&'static str>,
    /// A mergekit method (its parameter names; names it ignores get a note, not an error).
    pub mergekit: bool,
}

impl Resolved {
    pub fn param(&self, name: &str) -> Option<&ParamInfo> {
        self.params.iter().find(|p| p.name == name)
    }
}

fn elem_ty(
    src: &Source,
    at: &Text,
    merge: &str,
    name: &str,
    ty: &LangTy,
) -> Result<Ty, ConfigError> {
    match ty {
        LangTy::F32 => Ok(Ty::F32),
        LangTy::Int => Ok(Ty::Int),
        LangTy::Bool => Ok(Ty::Bool),
        LangTy::List(e) => elem_ty(src, at, merge, name, e),
        other => Err(src.error(
            at.pos,
            format!(
                "parameter `{name}` of `{merge}` has type {}, which a config cannot set",
                other.kind_name()
            ),
        )),
    }
}

/// The program's own parameters as settable by their names.
fn own_params(
    src: &Source,
    at: &Text,
    sig: &MergeSig,
    skip: &[&str],
) -> Result<Vec<ParamInfo>, ConfigError> {
    sig.params
        .iter()
        .filter(|p| !skip.contains(&p.name.as_str()))
        .map(|p| {
            Ok(ParamInfo {
                name: p.name.clone(),
                target: Some(p.name.clone()),
                why: None,
                per_model: matches!(p.ty, LangTy::List(_)),
                ty: elem_ty(src, at, &sig.name, &p.name, &p.ty)?,
                required: p.default.is_none(),
                default: p.default.clone(),
            })
        })
        .collect()
}

fn from_spec(
    src: &Source,
    at: &Text,
    spec: &MethodSpec,
    program: ProgramSource,
    sig: &MergeSig,
) -> Result<Resolved, ConfigError> {
    let mut params = Vec::new();
    for mp in spec.params {
        let info = match mp.target {
            Target::Param(t) => {
                let sp = sig.params.iter().find(|p| p.name == t).ok_or_else(|| {
                    src.error(
                        at.pos,
                        format!("internal: stdlib `{}` has no parameter `{t}`", spec.name),
                    )
                })?;
                ParamInfo {
                    name: mp.name.to_string(),
                    target: Some(t.to_string()),
                    why: None,
                    per_model: mp.per_model,
                    ty: elem_ty(src, at, &sig.name, t, &sp.ty)?,
                    required: mp.required || sp.default.is_none(),
                    default: sp.default.clone(),
                }
            }
            Target::Ignored(why) => ParamInfo {
                name: mp.name.to_string(),
                target: None,
                why: Some(why),
                per_model: mp.per_model,
                ty: Ty::Any,
                required: false,
                default: None,
            },
        };
        params.push(info);
    }
    // The program's extras (e.g. paper_rescale) by their own names.
    let mut skip: Vec<&str> = params.iter().filter_map(|p| p.target.as_deref()).collect();
    skip.extend(spec.use_base);
    let extras = own_params(src, at, sig, &skip)?;
    params.extend(extras);
    Ok(Resolved {
        program,
        merge_name: sig.name.clone(),
        base: spec.base,
        min_models: spec.min_models,
        max_models: spec.max_models,
        params,
        use_base: spec.use_base,
        mergekit: true,
    })
}

fn generic(
    src: &Source,
    at: &Text,
    program: ProgramSource,
    sig: &MergeSig,
) -> Result<Resolved, ConfigError> {
    Ok(Resolved {
        params: own_params(src, at, sig, &[])?,
        program,
        merge_name: sig.name.clone(),
        base: BaseRole::Required,
        min_models: 1,
        max_models: None,
        use_base: None,
        mergekit: false,
    })
}

/// Whether `merge_method` names a program file rather than a method.
fn is_path(s: &str) -> bool {
    s.ends_with(".merge") || s.contains('/') || s.contains('\\')
}

/// Resolves `merge_method` (a stdlib method or a .merge path relative to `config_dir`).
pub fn method(
    src: &Source,
    at: &Text,
    config_dir: &Path,
    merge: Option<&str>,
) -> Result<Resolved, ConfigError> {
    let name = at.value.trim();
    if is_path(name) {
        let path = config_dir.join(name);
        let label = path.display().to_string();
        let text = crate::files::read_text(&path, "a program file", crate::files::limit::PROGRAM)
            .map_err(|e| src.error(at.pos, e))?;
        let program = ProgramSource::check(label, text).map_err(|e| {
            let headline = src.error(at.pos, e.to_string());
            format!(
                "{headline}\n{}",
                e.render_diagnostics(crate::diag::use_color())
            )
        })?;
        let sig = program.merge(merge).cloned().map_err(|e| match e {
            PipelineError::NoMerge { .. } => src.error(at.pos, e.to_string()),
            _ => ConfigError::Other(format!("--merge: {e}")),
        })?;
        return generic(src, at, program, &sig);
    }
    if merge.is_some() {
        return Err(ConfigError::Other(format!(
            "--merge picks one merge of a .merge program; `{name}` is a stdlib method"
        )));
    }
    if let Some(m) = crate::stdlib::method(name) {
        let sig = m.sig.clone();
        let program = ProgramSource::stdlib(m);
        return match methods::spec(name) {
            Some(spec) => from_spec(src, at, spec, program, &sig),
            None => generic(src, at, program, &sig),
        };
    }
    if name == methods::PASSTHROUGH.name {
        let program = ProgramSource::check("mergec/passthrough", methods::PASSTHROUGH_PROGRAM)
            .map_err(|e| ConfigError::Other(format!("internal: passthrough: {e}")))?;
        let sig = program.sigs[0].clone();
        return from_spec(src, at, &methods::PASSTHROUGH, program, &sig);
    }
    if methods::NOT_IN_STDLIB.contains(&name) {
        return Err(src.error(
            at.pos,
            format!(
                "mergekit's `{name}` is not in mergec's stdlib (`mergec methods` lists the \
                 methods it has); write it as a .merge program and give its path here"
            ),
        ));
    }
    let stdlib: Vec<String> = crate::stdlib::methods()
        .into_iter()
        .map(|m| m.sig.name)
        .collect();
    let hint = did_you_mean(name, stdlib.iter().map(String::as_str))
        .unwrap_or_else(|| format!("known methods: {}", stdlib.join(", ")));
    Err(src.error(
        at.pos,
        format!("unknown merge_method `{name}` ({hint}; or give the path of a .merge program)"),
    ))
}
