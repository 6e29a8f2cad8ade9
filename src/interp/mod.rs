//! The reference interpreter over f32 host tensors: it defines what every
//! program means. Backends are tested against it.

mod eval;
mod liveness;
mod pointwise;
pub mod tensor_ops;
mod value;

pub use eval::{Context, Evaluator, Loader, MAX_RUNTIME_REPEAT};
pub(crate) use eval::{elem_op, list_op, topk_count};
pub use value::{RuntimeError, Tensor, TensorFacts, Value, classify, layer_index};

use crate::diag::Span;
use crate::types::ty::Ty;
use crate::types::{CheckedMerge, Const, MergeParam};
use std::sync::Arc;

/// Turns a parameter value into a runtime value of the declared type; a scalar
/// for a per-model list stands for every model.
pub fn param_value(p: &MergeParam, c: &Const, n_models: usize) -> Result<Value, RuntimeError> {
    let wrong = || {
        RuntimeError::new(format!(
            "parameter `{}` is {}, but {c} was given",
            p.name,
            p.ty.kind_name()
        ))
        .with_hint(match &p.ty {
            Ty::List(e) => format!(
                "give one {} for every model, or one per model: {}=[{}]",
                e.kind_name(),
                p.name,
                match **e {
                    Ty::Bool => "true,false",
                    Ty::Int => "1,2",
                    _ => "0.5,0.5",
                }
            ),
            Ty::Bool => "give true or false".into(),
            Ty::Int => "give a whole number".into(),
            _ => "give a number".into(),
        })
    };
    let scalar = |ty: &Ty, c: &Const| -> Result<Value, RuntimeError> {
        match (ty, c) {
            (Ty::F32, Const::F32(x)) if x.is_finite() => Ok(Value::F32(*x)),
            (Ty::F32, Const::Int(i)) => Ok(Value::F32(*i as f32)),
            (Ty::Int, Const::Int(i)) => Ok(Value::Int(*i)),
            (Ty::Bool, Const::Bool(b)) => Ok(Value::Bool(*b)),
            _ => Err(wrong()),
        }
    };
    match (&p.ty, c) {
        (Ty::List(elem), Const::List(xs)) => {
            if xs.len() != n_models {
                return Err(RuntimeError::new(format!(
                    "parameter `{}` has {} values but {n_models} models were given",
                    p.name,
                    xs.len()
                ))
                .with_hint("give one value per model, in the order of the models, or a single value for all"));
            }
            Ok(Value::list(
                xs.iter()
                    .map(|x| scalar(elem, x))
                    .collect::<Result<_, _>>()?,
            ))
        }
        (Ty::List(elem), c) => Ok(Value::list(vec![scalar(elem, c)?; n_models])),
        (ty, c) => scalar(ty, c),
    }
}

/// Runs a checked merge on one tensor. `overrides` replace parameter defaults.
/// Non-finite results are an error naming how many and where, unless `allow_nonfinite`.
pub fn run_merge(
    m: &CheckedMerge,
    base: &Tensor,
    models: &[Tensor],
    overrides: &[(String, Const)],
    ctx: &Context,
    allow_nonfinite: bool,
) -> Result<Tensor, RuntimeError> {
    run_merge_owned(
        m,
        base.clone(),
        models.to_vec(),
        overrides,
        ctx,
        allow_nonfinite,
    )
}

/// [`run_merge`] taking its inputs by value, so no copy of them is made (the merge runtime).
pub fn run_merge_owned(
    m: &CheckedMerge,
    base: Tensor,
    models: Vec<Tensor>,
    overrides: &[(String, Const)],
    ctx: &Context,
    allow_nonfinite: bool,
) -> Result<Tensor, RuntimeError> {
    let tensor = &ctx.facts.name;
    if models.is_empty() {
        return Err(RuntimeError::new("no models to merge")
            .with_hint("give at least one model besides the base"));
    }
    if base.shape.len() != m.rank {
        return Err(RuntimeError::new(format!(
            "`{}` was checked for {}-D tensors but `{tensor}` is {}-D",
            m.name,
            m.rank,
            base.shape.len()
        )));
    }
    for (i, t) in models.iter().enumerate() {
        if t.shape != base.shape {
            return Err(RuntimeError::new(format!(
                "`{tensor}`: model {i} has shape {:?} but the base has {:?}",
                t.shape, base.shape
            )));
        }
    }
    let values = resolve_params(m, overrides, models.len())?;
    let reads = liveness::read_counts(&m.body, m.var_names.len());
    let mut ev = Evaluator::new(ctx, m.var_names.len()).free_after_last_read(reads);
    ev.set(m.base, Value::Tensor(Arc::new(base)));
    ev.set(
        m.models,
        Value::list(
            models
                .into_iter()
                .map(|t| Value::Tensor(Arc::new(t)))
                .collect(),
        ),
    );
    for ((_, var), v) in m.params.iter().zip(values) {
        ev.set(*var, v);
    }
    let out = ev.eval(&m.body)?;
    let t = match out {
        Value::Tensor(t) | Value::Mask(t) => Arc::try_unwrap(t).unwrap_or_else(|t| (*t).clone()),
        other => panic!("interpreter: merge returned {}", other.kind_name()),
    };
    if !allow_nonfinite {
        check_finite(&t, tensor)?;
    }
    Ok(t)
}

/// An error naming the tensor, the count and the first position of non-finite values.
pub fn check_finite(t: &Tensor, tensor: &str) -> Result<(), RuntimeError> {
    let bad = t.data.iter().filter(|v| !v.is_finite()).count();
    if bad == 0 {
        return Ok(());
    }
    let first = t.data.iter().position(|v| !v.is_finite()).unwrap_or(0);
    Err(RuntimeError::new(format!(
        "the merge produced {bad} non-finite value{} in `{tensor}` (first at flat index {first}: {})",
        if bad == 1 { "" } else { "s" },
        t.data[first]
    ))
    .with_hint("look for division by zero or log of a non-positive value, e.g. guard with max(x, 1e-8)"))
}

/// The value of every parameter of `m` (in `m.params` order): overrides, else defaults.
pub fn resolve_params(
    m: &CheckedMerge,
    overrides: &[(String, Const)],
    n_models: usize,
) -> Result<Vec<Value>, RuntimeError> {
    for (name, _) in overrides {
        if !m.params.iter().any(|(p, _)| &p.name == name) {
            let names: Vec<&str> = m.params.iter().map(|(p, _)| p.name.as_str()).collect();
            let hint = crate::types::did_you_mean(name, names.iter().copied())
                .unwrap_or_else(|| format!("its parameters: {}", names.join(", ")));
            return Err(
                RuntimeError::new(format!("`{}` has no parameter `{name}`", m.name))
                    .with_hint(hint),
            );
        }
    }
    m.params
        .iter()
        .map(|(p, _)| {
            let given = overrides
                .iter()
                .rev()
                .find(|(n, _)| n == &p.name)
                .map(|(_, c)| c);
            let c = given.or(p.default.as_ref()).ok_or_else(|| {
                RuntimeError::new(format!(
                    "parameter `{}` of `{}` has no default and was not set",
                    p.name, m.name
                ))
                .with_hint(format!("set it: --set {}=...", p.name))
            })?;
            param_value(p, c, n_models)
        })
        .collect::<Result<Vec<Value>, RuntimeError>>()
        .and_then(|values| {
            check_run_cost(m, &values, n_models)?;
            Ok(values)
        })
}

/// The static cost bound again, with the real number of models and the parameters'
/// values: a count given with --set cannot make a checked program run away.
fn check_run_cost(m: &CheckedMerge, values: &[Value], n_models: usize) -> Result<(), RuntimeError> {
    let limits = crate::syntax::limits::Limits::DEFAULT;
    if n_models > limits.max_models {
        return Err(RuntimeError::new(format!(
            "{n_models} models given; a merge takes at most {}",
            limits.max_models
        )));
    }
    let ints = m
        .params
        .iter()
        .zip(values)
        .filter_map(|((_, var), v)| match v {
            Value::Int(n) => Some((*var, *n)),
            _ => None,
        })
        .collect();
    let env = crate::types::cost::CostEnv {
        models: n_models,
        ints,
    };
    crate::types::cost::check_cost(&m.body, &limits, env, Span::new(0, 0))
        .map(|_| ())
        .map_err(|d| {
            let label = d.label.map(|l| format!(" ({l})")).unwrap_or_default();
            RuntimeError {
                message: format!("`{}`: {}{label}", m.name, d.message),
                span: Some(d.span),
                hint: d.hint,
            }
        })
}
