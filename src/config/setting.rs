//! mergekit parameter settings: a number, a layer gradient (a list of numbers),
//! or a list of `{filter, value}` conditions; parsed with a type, evaluated per tensor.
//!
//! Evaluation follows mergekit's `evaluate_setting` (config.py): a gradient of L
//! values at layer position t in [0, 1] is `(1 - frac) * s[i0] + frac * s[i1]` with
//! `scaled = t * (L - 1)`, `i0 = int(scaled)`, `i1 = min(L - 1, i0 + 1)`,
//! `frac = scaled - i0`, in f64; conditions are scanned in order and the first whose
//! filter is absent, `*`, or a substring of the tensor name gives the value; when none
//! matches the setting gives nothing and the next level of precedence is asked.

use super::error::ConfigError;
use super::yaml::{Kind, Node, Pos, Source};
use crate::types::Const;
use serde_json::{Value as Json, json};

/// The element type a setting must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    F32,
    Int,
    Bool,
    /// A parameter that is accepted and ignored: any number or boolean.
    Any,
}

impl Ty {
    fn what(self) -> &'static str {
        match self {
            Ty::F32 => "a number",
            Ty::Int => "a whole number",
            Ty::Bool => "true or false (or 1 / 0)",
            Ty::Any => "a number",
        }
    }

    /// The evaluated value as the program's constant.
    pub fn to_const(self, v: f64) -> Const {
        match self {
            Ty::F32 | Ty::Any => Const::F32(v as f32),
            Ty::Int => Const::Int(v as i64),
            // mergekit tests booleans for truthiness (they arrive as 1.0 / 0.0).
            Ty::Bool => Const::Bool(v != 0.0),
        }
    }
}

/// A number or a gradient.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Scalar(f64),
    Gradient(Vec<f64>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cond {
    pub filter: Option<String>,
    pub value: Val,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Setting {
    Plain(Val),
    Conditions(Vec<Cond>),
}

/// A setting and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Placed {
    pub setting: Setting,
    pub pos: Pos,
}

impl Val {
    /// mergekit's gradient interpolation at layer position `t`.
    pub fn at(&self, t: f64) -> f64 {
        match self {
            Val::Scalar(x) => *x,
            Val::Gradient(s) => {
                let last = s.len() - 1;
                let scaled = t * last as f64;
                let i0 = (scaled as usize).min(last);
                let i1 = (i0 + 1).min(last);
                let frac = scaled - i0 as f64;
                (1.0 - frac) * s[i0] + frac * s[i1]
            }
        }
    }

    fn json(&self) -> Json {
        match self {
            Val::Scalar(x) => json!(x),
            Val::Gradient(s) => json!(s),
        }
    }
}

impl Setting {
    /// The value for `tensor` at layer position `t`, or None when no condition matches.
    pub fn eval(&self, tensor: &str, t: f64) -> Option<f64> {
        match self {
            Setting::Plain(v) => Some(v.at(t)),
            Setting::Conditions(cs) => cs
                .iter()
                .find(|c| match c.filter.as_deref() {
                    None | Some("*") => true,
                    Some(f) => tensor.contains(f),
                })
                .map(|c| c.value.at(t)),
        }
    }

    /// The setting as written, for mergec.json.
    pub fn json(&self) -> Json {
        match self {
            Setting::Plain(v) => v.json(),
            Setting::Conditions(cs) => Json::Array(
                cs.iter()
                    .map(|c| json!({ "filter": c.filter, "value": c.value.json() }))
                    .collect(),
            ),
        }
    }
}

/// Parses `node` as the setting of parameter `name` of element type `ty`.
pub fn parse(src: &Source, name: &str, node: &Node, ty: Ty) -> Result<Placed, ConfigError> {
    let setting = match &node.kind {
        Kind::Seq(items) if items.iter().all(|n| matches!(n.kind, Kind::Map(_))) => {
            if items.is_empty() {
                return Err(src.error(node.pos, format!("`{name}` is an empty list")));
            }
            Setting::Conditions(
                items
                    .iter()
                    .map(|n| condition(src, name, n, ty))
                    .collect::<Result<_, _>>()?,
            )
        }
        Kind::Map(_) => {
            return Err(src.error(
                node.pos,
                format!(
                    "`{name}`: a `filter`/`value` condition must be an entry of a list \
                     (mergekit rejects a bare one); write `{name}:` then `- filter: ...` \
                     and `value: ...` on the next lines"
                ),
            ));
        }
        _ => Setting::Plain(value(src, name, node, ty)?),
    };
    Ok(Placed {
        setting,
        pos: node.pos,
    })
}

fn condition(src: &Source, name: &str, node: &Node, ty: Ty) -> Result<Cond, ConfigError> {
    let Kind::Map(pairs) = &node.kind else {
        return Err(src.error(node.pos, "expected a `filter`/`value` entry"));
    };
    let mut filter = None;
    let mut val = None;
    for (k, v) in pairs {
        match k.as_str() {
            Some("filter") => {
                filter = match &v.kind {
                    Kind::Null => None,
                    Kind::Str(s) => Some(s.clone()),
                    _ => {
                        return Err(src.error(
                            v.pos,
                            format!(
                                "`filter` is a piece of a tensor name (a string), not {}",
                                v.describe()
                            ),
                        ));
                    }
                }
            }
            Some("value") => val = Some(value(src, name, v, ty)?),
            _ => {
                let key = k
                    .as_str()
                    .map_or_else(|| k.describe(), |s| format!("`{s}`"));
                let hint = k
                    .as_str()
                    .and_then(|s| crate::types::did_you_mean(s, ["filter", "value"]))
                    .unwrap_or_else(|| "a condition has `filter` and `value`".into());
                return Err(src.error(
                    k.pos,
                    format!("unknown key {key} in a condition of `{name}` ({hint})"),
                ));
            }
        }
    }
    let value = val.ok_or_else(|| {
        src.error(
            node.pos,
            format!("this condition of `{name}` has no `value`"),
        )
    })?;
    Ok(Cond { filter, value })
}

/// A scalar or a gradient of `ty`.
fn value(src: &Source, name: &str, node: &Node, ty: Ty) -> Result<Val, ConfigError> {
    match &node.kind {
        Kind::Seq(items) => {
            if items.is_empty() {
                return Err(src.error(node.pos, format!("`{name}` is an empty list")));
            }
            if ty == Ty::Int {
                return Err(src.error(
                    node.pos,
                    format!("`{name}` takes one whole number, not a list (a gradient)"),
                ));
            }
            if let Some(bad) = items.iter().find(|n| matches!(n.kind, Kind::Map(_))) {
                return Err(src.error(
                    bad.pos,
                    format!(
                        "`{name}` mixes numbers and `filter`/`value` conditions in one list; \
                         use a list of numbers (a gradient over the layers) or a list of conditions"
                    ),
                ));
            }
            Ok(Val::Gradient(
                items
                    .iter()
                    .map(|n| scalar(src, name, n, ty))
                    .collect::<Result<_, _>>()?,
            ))
        }
        _ => Ok(Val::Scalar(scalar(src, name, node, ty)?)),
    }
}

fn scalar(src: &Source, name: &str, node: &Node, ty: Ty) -> Result<f64, ConfigError> {
    let wrong = || {
        src.error(
            node.pos,
            format!(
                "wrong value type: `{name}` takes {}, but this is {}",
                ty.what(),
                node.describe()
            ),
        )
    };
    let as_bool = |s: &str| match s.to_ascii_lowercase().as_str() {
        // YAML 1.1 booleans, which mergekit's PyYAML reads as such.
        "true" | "yes" | "on" => Some(1.0),
        "false" | "no" | "off" => Some(0.0),
        _ => None,
    };
    match (&node.kind, ty) {
        (Kind::Bool(b), Ty::Bool | Ty::Any) => Ok(if *b { 1.0 } else { 0.0 }),
        (Kind::Str(s), Ty::Bool | Ty::Any) if as_bool(s).is_some() => as_bool(s).ok_or_else(wrong),
        (Kind::Bool(_), _) => Err(wrong()),
        (Kind::Null, _) => Err(src.error(node.pos, format!("`{name}` has no value"))),
        _ => {
            let x = node
                .as_number()
                .filter(|x| x.is_finite())
                .ok_or_else(wrong)?;
            match ty {
                Ty::Bool if x != 0.0 && x != 1.0 => Err(src.error(
                    node.pos,
                    format!("wrong value type: `{name}` is a boolean: give true or false (or 1 / 0), not {x}"),
                )),
                Ty::Int if x.fract() != 0.0 || x.abs() > 9.0e15 => Err(wrong()),
                _ => Ok(x),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(yaml: &str, ty: Ty) -> Result<Setting, String> {
        let src = Source {
            label: "t.yml".into(),
            text: format!("p: {yaml}\n"),
        };
        let root = src.parse()?;
        let Kind::Map(m) = &root.kind else {
            panic!("a map")
        };
        parse(&src, "p", &m[0].1, ty)
            .map(|p| p.setting)
            .map_err(String::from)
    }

    #[test]
    fn gradients_interpolate_like_mergekit() {
        let s = setting("[0.2, 1.0, 0.4]", Ty::F32).expect("parses");
        assert_eq!(s.eval("x", 0.0), Some(0.2));
        assert_eq!(s.eval("x", 1.0), Some(0.4));
        assert_eq!(s.eval("x", 0.5), Some(1.0));
        let v = s.eval("x", 0.25).expect("a value");
        assert!((v - 0.6).abs() < 1e-12, "{v}");
        let one = setting("[0.7]", Ty::F32).expect("parses");
        assert_eq!(one.eval("x", 0.9), Some(0.7));
    }

    #[test]
    fn first_matching_filter_wins() {
        let s = setting(
            "[{filter: self_attn, value: 0.1}, {filter: mlp, value: [0, 1]}, {value: 0.5}]",
            Ty::F32,
        )
        .expect("parses");
        assert_eq!(
            s.eval("model.layers.0.self_attn.q_proj.weight", 0.5),
            Some(0.1)
        );
        assert_eq!(s.eval("model.layers.0.mlp.up_proj.weight", 0.5), Some(0.5));
        assert_eq!(s.eval("model.norm.weight", 0.5), Some(0.5));
        let partial = setting("[{filter: mlp, value: 2}]", Ty::F32).expect("parses");
        assert_eq!(partial.eval("model.embed_tokens.weight", 0.0), None);
        let star = setting("[{filter: '*', value: 3}]", Ty::F32).expect("parses");
        assert_eq!(star.eval("anything", 0.0), Some(3.0));
    }

    #[test]
    fn types() {
        assert!(setting("abc", Ty::F32).is_err_and(|e| e.contains("wrong value type")));
        assert!(setting("true", Ty::F32).is_err());
        assert_eq!(
            setting("'0.5'", Ty::F32),
            Ok(Setting::Plain(Val::Scalar(0.5)))
        );
        assert_eq!(setting("1", Ty::Bool), Ok(Setting::Plain(Val::Scalar(1.0))));
        assert_eq!(
            setting("false", Ty::Bool),
            Ok(Setting::Plain(Val::Scalar(0.0)))
        );
        assert!(setting("0.5", Ty::Bool).is_err());
        assert!(setting("2.5", Ty::Int).is_err());
        assert!(setting("[1, 2]", Ty::Int).is_err());
        assert!(setting("{filter: mlp, value: 1}", Ty::F32).is_err_and(|e| e.contains("list")));
        assert!(
            setting("[{filtr: mlp, value: 1}]", Ty::F32).is_err_and(|e| e.contains("`filter`"))
        );
        assert!(setting("[{filter: mlp}]", Ty::F32).is_err_and(|e| e.contains("no `value`")));
        assert!(setting("[1, {value: 2}]", Ty::F32).is_err_and(|e| e.contains("mixes")));
        assert!(setting("[]", Ty::F32).is_err());
    }
}
