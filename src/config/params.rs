//! The config's parameters resolved per tensor: mergekit's precedence (a model's
//! own setting, then the top-level one, then the default), gradients over the
//! layers and filters by tensor name.

use super::setting::{Placed, Ty};
use crate::runtime::ParamSource;
use crate::types::Const;
use serde_json::Value as Json;

/// A per-model (list) parameter of the program.
pub struct PerModel {
    /// The program's parameter.
    pub target: String,
    /// The name the config uses (mergekit's), for messages.
    pub config_name: String,
    pub ty: Ty,
    /// Each candidate's own setting, in the order of the program's `models`.
    pub own: Vec<Option<Placed>>,
    /// The settings for every model: a slice's, then the top-level one (the first
    /// that applies wins).
    pub top: Vec<Placed>,
    /// The program's default (a scalar for every model, or a list).
    pub default: Option<Const>,
    /// mergekit stops when no value applies (or the program has no default).
    pub required: bool,
}

/// A scalar parameter given at the top level.
pub struct Global {
    pub target: String,
    pub config_name: String,
    pub ty: Ty,
    /// A slice's setting, then the top-level one (the first that applies wins); not empty.
    pub top: Vec<Placed>,
    pub required: bool,
}

pub struct ConfigParams {
    pub per_model: Vec<PerModel>,
    pub globals: Vec<Global>,
    /// Values for every tensor: derived ones (use_base) and --set overrides, which win.
    pub fixed: Vec<(String, Const)>,
    /// The candidates as the config names them, for messages.
    pub models: Vec<String>,
    /// The config file's name, for messages.
    pub label: String,
    pub describe: Json,
}

/// mergekit's layer position: `layer / (n_layers - 1)` within the model, 1 for a single
/// layer, and 0 for tensors outside the layers (embeddings, final norm, lm_head).
pub fn layer_t(layer: i64, n_layers: i64) -> f64 {
    if layer < 0 {
        0.0
    } else if n_layers <= 1 {
        1.0
    } else {
        layer as f64 / (n_layers - 1) as f64
    }
}

impl ConfigParams {
    fn where_set(&self, p: Option<&Placed>) -> String {
        p.map_or_else(String::new, |p| {
            format!(
                " (its setting at `{}`, line {}, has no filter matching this tensor)",
                self.label, p.pos.line
            )
        })
    }
}

/// The first of `settings` that applies to the tensor.
fn first_value(settings: &[Placed], tensor: &str, t: f64) -> Option<f64> {
    settings.iter().find_map(|s| s.setting.eval(tensor, t))
}

impl ConfigParams {
    /// The values for the tensor `tensor`, each model's own settings matched against
    /// `model_tensor(i)` (mergekit matches a model's settings against its input tensor).
    fn values(
        &self,
        tensor: &str,
        model_tensor: &dyn Fn(usize) -> String,
        layer: i64,
        n_layers: i64,
    ) -> Result<Vec<(String, Const)>, String> {
        let t = layer_t(layer, n_layers);
        let mut out: Vec<(String, Const)> = Vec::new();
        for g in &self.globals {
            match first_value(&g.top, tensor, t) {
                Some(v) => out.push((g.target.clone(), g.ty.to_const(v))),
                None if g.required => {
                    return Err(format!(
                        "tensor `{tensor}`: no value of `{}` applies{}; the method needs one",
                        g.config_name,
                        self.where_set(g.top.first())
                    ));
                }
                None => {}
            }
        }
        for p in &self.per_model {
            let mut given = false;
            let mut values = Vec::with_capacity(p.own.len());
            for (i, own) in p.own.iter().enumerate() {
                let name = model_tensor(i);
                let v = own
                    .as_ref()
                    .and_then(|s| s.setting.eval(&name, t))
                    .or_else(|| first_value(&p.top, &name, t));
                let default = match &p.default {
                    Some(Const::List(xs)) => xs.get(i).cloned(),
                    other => other.clone(),
                };
                match (v, default) {
                    (Some(v), _) => {
                        given = true;
                        values.push(p.ty.to_const(v));
                    }
                    (None, Some(d)) if !p.required => values.push(d),
                    (None, _) => {
                        let model = self.models.get(i).map_or("?", String::as_str);
                        let place = self.where_set(own.as_ref().or(p.top.first()));
                        return Err(format!(
                            "tensor `{tensor}`: no value of `{}` applies to model `{model}`{place}; \
                             give it under the model's `parameters` or the top-level `parameters`",
                            p.config_name
                        ));
                    }
                }
            }
            if given {
                out.push((p.target.clone(), Const::List(values)));
            }
        }
        for (name, value) in &self.fixed {
            out.retain(|(n, _)| n != name);
            out.push((name.clone(), value.clone()));
        }
        Ok(out)
    }
}

impl ParamSource for ConfigParams {
    fn params_for(
        &self,
        tensor: &str,
        layer: i64,
        n_layers: i64,
    ) -> Result<Vec<(String, Const)>, String> {
        self.values(tensor, &|_| tensor.to_string(), layer, n_layers)
    }

    fn params_for_models(
        &self,
        tensor: &str,
        models: &[&str],
        layer: i64,
        n_layers: i64,
    ) -> Result<Vec<(String, Const)>, String> {
        let name = |i: usize| models.get(i).copied().unwrap_or(tensor).to_string();
        self.values(tensor, &name, layer, n_layers)
    }

    fn describe(&self) -> Json {
        self.describe.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_positions() {
        assert_eq!(layer_t(-1, 4), 0.0);
        assert_eq!(layer_t(0, 1), 1.0);
        assert_eq!(layer_t(0, 4), 0.0);
        assert_eq!(layer_t(3, 4), 1.0);
        assert!((layer_t(1, 4) - 1.0 / 3.0).abs() < 1e-15);
    }
}
