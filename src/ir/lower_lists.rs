//! Lowering of operations over the model list, unrolled for the actual count; the
//! same sequence of scalar operations as the interpreter's `list_op`.

use super::lower::{LowerError, State, Sym};
use crate::interp::{RuntimeError, Value, list_op as eval_list_op};
use crate::types::ops::Op;

type R<T> = Result<T, LowerError>;

fn known(xs: &[Sym]) -> Option<Vec<Value>> {
    xs.iter()
        .map(|x| match x {
            Sym::K(v) => Some(v.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn list_op(st: &mut State, op: Op, args: Vec<Sym>) -> R<Sym> {
    let Sym::L(xs) = &args[0] else {
        return Err(LowerError::Unsupported(format!(
            "{} of a non-list",
            op.name()
        )));
    };
    if op == Op::Len {
        return Ok(Sym::K(Value::Int(xs.len() as i64)));
    }
    if xs.is_empty() {
        return Err(RuntimeError::new("an empty model list")
            .with_hint("give at least one model")
            .into());
    }
    // Entirely known: the interpreter computes it.
    if let Some(kx) = known(xs) {
        let rest: Option<Vec<Value>> = args[1..]
            .iter()
            .map(|a| match a {
                Sym::L(l) => known(l).map(Value::list),
                Sym::K(v) => Some(v.clone()),
                _ => None,
            })
            .collect();
        if let Some(rest) = rest {
            let mut all = vec![Value::list(kx)];
            all.extend(rest);
            return Ok(from_value(eval_list_op(op, &all)?));
        }
    }
    let k = xs.len();
    let fold2 = |st: &mut State, f: Op| -> R<Sym> {
        let mut acc = xs[0].clone();
        for x in &xs[1..] {
            acc = st.elem(f, &[acc, x.clone()], 0)?;
        }
        Ok(acc)
    };
    match op {
        Op::ListSum => fold2(st, Op::Add),
        Op::ListProd => fold2(st, Op::Mul),
        Op::ListMax => fold2(st, Op::Max),
        Op::ListMin => fold2(st, Op::Min),
        Op::ListMean => {
            let s = fold2(st, Op::Add)?;
            st.elem(Op::Div, &[s, Sym::K(Value::F32(k as f32))], 0)
        }
        Op::ListCount => {
            let mut acc = to_float(st, &xs[0])?;
            for x in &xs[1..] {
                let f = to_float(st, x)?;
                acc = st.elem(Op::Add, &[acc, f], 0)?;
            }
            Ok(acc)
        }
        Op::ListSoftmax => {
            let m = fold2(st, Op::Max)?;
            let mut es = Vec::with_capacity(k);
            for x in xs {
                let d = st.elem(Op::Sub, &[x.clone(), m.clone()], 0)?;
                es.push(st.elem(Op::Exp, &[d], 0)?);
            }
            let mut s = es[0].clone();
            for e in &es[1..] {
                s = st.elem(Op::Add, &[s, e.clone()], 0)?;
            }
            let mut out = Vec::with_capacity(k);
            for e in es {
                out.push(st.elem(Op::Div, &[e, s.clone()], 0)?);
            }
            Ok(Sym::L(out))
        }
        Op::ListArgmax | Op::ListArgmin | Op::TakeMax | Op::TakeMin => {
            let take = matches!(op, Op::TakeMax | Op::TakeMin);
            let larger = matches!(op, Op::ListArgmax | Op::TakeMax);
            let values = if take {
                let Sym::L(v) = &args[1] else {
                    return Err(LowerError::Unsupported("take values".into()));
                };
                if v.len() != k {
                    return Err(RuntimeError::new(format!(
                        "keys and values have {k} and {} models",
                        v.len()
                    ))
                    .into());
                }
                Some(v.clone())
            } else {
                None
            };
            select_by(st, xs, values.as_deref(), larger)
        }
        other => Err(LowerError::Unsupported(format!("list op {}", other.name()))),
    }
}

fn from_value(v: Value) -> Sym {
    match v {
        Value::List(xs) => Sym::L(xs.iter().cloned().map(from_value).collect()),
        other => Sym::K(other),
    }
}

/// The interpreter's `to_float`: bools count as 0/1.
fn to_float(st: &mut State, x: &Sym) -> R<Sym> {
    match x {
        Sym::K(Value::Bool(b)) => Ok(Sym::K(Value::F32(crate::semantics::from_bool(*b)))),
        Sym::N(_) => {
            if let Some(super::graph::NTy::Scalar(super::graph::STy::Bool)) = st_ty(st, x) {
                st.elem(Op::ToF32, std::slice::from_ref(x), 0)
            } else {
                Ok(x.clone())
            }
        }
        other => Ok(other.clone()),
    }
}

fn st_ty(st: &State, x: &Sym) -> Option<super::graph::NTy> {
    match x {
        Sym::N(n) => Some(match st.shape_of(*n) {
            Some(s) => super::graph::NTy::Tensor(s),
            None => st_scalar_ty(st, *n),
        }),
        _ => None,
    }
}

fn st_scalar_ty(st: &State, n: super::graph::NodeId) -> super::graph::NTy {
    st.node_ty(n)
}

/// Per element: the index (or value) of the first extreme key; NaN if any key is NaN.
fn select_by(st: &mut State, keys: &[Sym], values: Option<&[Sym]>, larger: bool) -> R<Sym> {
    let cmp = if larger { Op::Gt } else { Op::Lt };
    let val = |i: usize| match values {
        Some(v) => v[i].clone(),
        None => Sym::K(Value::F32(i as f32)),
    };
    let mut best_k = keys[0].clone();
    let mut best_v = val(0);
    let mut nan = st.elem(Op::Ne, &[keys[0].clone(), keys[0].clone()], 0)?;
    for (i, key) in keys.iter().enumerate().skip(1) {
        let better = st.elem(cmp, &[key.clone(), best_k.clone()], 0)?;
        best_k = choose(st, &better, key.clone(), best_k)?;
        best_v = choose(st, &better, val(i), best_v)?;
        let isnan = st.elem(Op::Ne, &[key.clone(), key.clone()], 0)?;
        nan = st.elem(Op::Or, &[nan, isnan], 0)?;
    }
    let out = choose(st, &nan, Sym::K(Value::F32(f32::NAN)), best_v)?;
    match &out {
        // The interpreter returns scalars as f32.
        Sym::N(n) if st.shape_of(*n).is_none() => st.elem(Op::ToF32, &[out], 0),
        _ => Ok(out),
    }
}

/// where() for tensor conditions, a data-dependent choice for scalar ones.
fn choose(st: &mut State, c: &Sym, a: Sym, b: Sym) -> R<Sym> {
    let tensor_involved = [c, &a, &b]
        .iter()
        .any(|x| matches!(x, Sym::N(n) if st.shape_of(*n).is_some()));
    if tensor_involved {
        st.elem(Op::Where, &[c.clone(), a, b], 0)
    } else {
        st.pick(c, a, b)
    }
}
