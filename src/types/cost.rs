//! The static cost bound of a checked merge: how many operations it may spend per
//! element of the merged tensor, and how large it becomes once the compiler unrolls
//! its `repeat`s and per-model lists. Both are upper bounds computed from the typed
//! tree with the worst case of everything not known before run time: `max_models`
//! models, parameters at their defaults, a `repeat` whose count cannot be known
//! running `max_runtime_repeat` times. The checker rejects a merge over either limit
//! with the place that makes it expensive; the run checks the bound again with the
//! real number of models and the parameters' given values, before any work. So every
//! program that runs finishes in bounded time and memory.

use super::ops::Op;
use super::tast::{TExpr, TKind, VarId};
use super::ty::Ty;
use crate::diag::{Diagnostic, Span};
use crate::syntax::limits::Limits;
use std::collections::HashMap;

/// The bound of one merge, as reported by `mergec check --format json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Cost {
    /// Operations per element of the merged tensor (selections and transcendental
    /// functions weighted), with `max_models` models.
    pub ops_per_element: f64,
    /// Nodes after unrolling every `repeat` and every per-model list.
    pub unrolled_nodes: f64,
}

/// Where most of the cost comes from: the innermost loop (or the merge itself)
/// whose cost passes a limit.
struct Culprit {
    span: Span,
    what: String,
}

/// What is known of the run the bound is for.
#[derive(Clone, Debug)]
pub struct CostEnv {
    /// Models merged: the real count at run time, `max_models` when checking.
    pub models: usize,
    /// Values of int variables (parameters: their defaults when checking, the
    /// values given at run time); `let`s of known ints are added as they are met.
    pub ints: HashMap<VarId, i64>,
}

impl CostEnv {
    /// The worst case of a check: `max_models` models, parameters at their values here.
    pub fn checking(limits: &Limits, ints: HashMap<VarId, i64>) -> CostEnv {
        CostEnv {
            models: limits.max_models,
            ints,
        }
    }
}

struct Walk<'l> {
    limits: &'l Limits,
    env: CostEnv,
    culprit: Option<Culprit>,
}

/// What one operation costs per element (before multiplying by the models it runs over).
fn weight(op: Op) -> f64 {
    match op {
        // Selections sort or histogram the whole tensor: several passes.
        Op::TopkMask | Op::Quantile | Op::Ranks(_) => 16.0,
        Op::Exp
        | Op::Log
        | Op::Tanh
        | Op::Sigmoid
        | Op::Sin
        | Op::Cos
        | Op::Acos
        | Op::Pow
        | Op::Sqrt
        | Op::Bernoulli(_)
        | Op::Uniform(_) => 4.0,
        Op::Norm | Op::Dot | Op::CosSim | Op::Std | Op::ListSoftmax => 3.0,
        Op::Len | Op::Numel | Op::Ndim | Op::Dim(_) => 0.0,
        _ => 1.0,
    }
}

impl Walk<'_> {
    fn models(&self) -> f64 {
        self.env.models as f64
    }

    /// The value of an int expression, where the bound can know it.
    fn known_int(&self, e: &TExpr) -> Option<i64> {
        match &e.kind {
            TKind::Int(n) => Some(*n),
            TKind::Var(v) => self.env.ints.get(v).copied(),
            TKind::Op(Op::Len, args) if args.first().is_some_and(|a| a.ty.is_list()) => {
                Some(self.env.models as i64)
            }
            TKind::Op(op @ (Op::Add | Op::Sub | Op::Mul | Op::Min | Op::Max), args)
                if args.len() == 2 =>
            {
                let (a, b) = (self.known_int(&args[0])?, self.known_int(&args[1])?);
                match op {
                    Op::Add => a.checked_add(b),
                    Op::Sub => a.checked_sub(b),
                    Op::Mul => a.checked_mul(b),
                    Op::Min => Some(a.min(b)),
                    _ => Some(a.max(b)),
                }
            }
            _ => None,
        }
    }

    /// (operations per element, unrolled nodes) of `e`.
    fn walk(&mut self, e: &TExpr) -> (f64, f64) {
        let (ops, nodes) = match &e.kind {
            TKind::Int(_)
            | TKind::F32(_)
            | TKind::Bool(_)
            | TKind::Str(_)
            | TKind::TensorLit { .. }
            | TKind::Var(_)
            | TKind::Fact(_) => (0.0, 1.0),
            TKind::Op(op, args) => {
                let over_list = e.ty.is_list() || args.iter().any(|a| a.ty.is_list());
                let times = if over_list { self.models() } else { 1.0 };
                let (o, n) = self.all(args);
                (o + weight(*op) * times, n + times)
            }
            TKind::List(xs) => {
                let (o, n) = self.all(xs);
                (o, n + 1.0)
            }
            TKind::Let(v, a, b) => {
                if let Some(n) = self.known_int(a) {
                    self.env.ints.insert(*v, n);
                }
                let (oa, na) = self.walk(a);
                let (ob, nb) = self.walk(b);
                (oa + ob, na + nb + 1.0)
            }
            TKind::Index(a, b) | TKind::Splat(a, b) => {
                let (oa, na) = self.walk(a);
                let (ob, nb) = self.walk(b);
                (oa + ob, na + nb + 1.0)
            }
            TKind::If(c, a, b) => {
                let (oc, nc) = self.walk(c);
                let (oa, na) = self.walk(a);
                let (ob, nb) = self.walk(b);
                // A scalar condition runs one branch; a mask runs both.
                let branches = if matches!(c.ty, Ty::Bool) {
                    oa.max(ob)
                } else {
                    oa + ob
                };
                (oc + branches, nc + na + nb + 1.0)
            }
            TKind::Fold {
                list, init, body, ..
            } => {
                let (ol, nl) = self.walk(list);
                let (oi, ni) = init.as_ref().map_or((0.0, 0.0), |i| self.walk(i));
                let trips = match &list.kind {
                    TKind::List(xs) => xs.len() as f64,
                    _ => self.models(),
                };
                let (ob, nb) = self.walk(body);
                self.looped(e.span, "fold", trips, ob, nb, (ol + oi, nl + ni))
            }
            TKind::Repeat {
                count, init, body, ..
            } => {
                let (oc, nc) = self.walk(count);
                let (oi, ni) = self.walk(init);
                let trips = match self.known_int(count) {
                    Some(n) => n.clamp(0, self.limits.max_runtime_repeat) as f64,
                    None => self.limits.max_runtime_repeat as f64,
                };
                let (ob, nb) = self.walk(body);
                self.looped(e.span, "repeat", trips, ob, nb, (oc + oi, nc + ni))
            }
        };
        (ops.min(f64::MAX), nodes.min(f64::MAX))
    }

    fn all(&mut self, xs: &[TExpr]) -> (f64, f64) {
        xs.iter().fold((0.0, 0.0), |(o, n), x| {
            let (a, b) = self.walk(x);
            (o + a, n + b)
        })
    }

    /// A loop of `trips` runs of a body costing (`ops`, `nodes`), plus `outside`.
    fn looped(
        &mut self,
        span: Span,
        what: &str,
        trips: f64,
        ops: f64,
        nodes: f64,
        outside: (f64, f64),
    ) -> (f64, f64) {
        let total = (outside.0 + trips * ops, outside.1 + trips * nodes + 1.0);
        if self.culprit.is_none() && self.over(total) {
            self.culprit = Some(Culprit {
                span,
                what: format!(
                    "this `{what}` runs {trips} times a body of {} operations per element ({} nodes unrolled)",
                    round(ops),
                    round(nodes)
                ),
            });
        }
        total
    }

    fn over(&self, (ops, nodes): (f64, f64)) -> bool {
        ops > self.limits.max_ops_per_element as f64
            || nodes > self.limits.max_unrolled_nodes as f64
    }
}

fn round(x: f64) -> String {
    if x < 1e9 {
        format!("{}", x.round() as u64)
    } else {
        format!("{x:.2e}")
    }
}

/// The merge's cost, or a diagnostic at the place that makes it too expensive
/// (`merge_span` when no single loop does).
pub fn check_cost(
    body: &TExpr,
    limits: &Limits,
    env: CostEnv,
    merge_span: Span,
) -> Result<Cost, Diagnostic> {
    let models = env.models;
    let mut w = Walk {
        limits,
        env,
        culprit: None,
    };
    let (ops, nodes) = w.walk(body);
    if !w.over((ops, nodes)) {
        return Ok(Cost {
            ops_per_element: ops,
            unrolled_nodes: nodes,
        });
    }
    let message = format!(
        "program too expensive: up to {} operations per element and {} nodes once loops are unrolled (the limits are {} and {})",
        round(ops),
        round(nodes),
        limits.max_ops_per_element,
        limits.max_unrolled_nodes
    );
    let hint = format!(
        "every checked program must finish quickly: iterate fewer times, nest fewer loops, or move work out of loop bodies (bounded with {models} models, parameters at their values, and {} runs of a repeat whose count is not known)",
        limits.max_runtime_repeat
    );
    let d = match w.culprit {
        Some(c) => Diagnostic::error(c.span, message).with_label(c.what),
        None => Diagnostic::error(merge_span, message),
    };
    Err(d.with_hint(hint))
}
