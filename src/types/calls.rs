//! Typing calls: builtins from the table, and user functions and merges (inlined).

use super::builtins::{self, Builtin, ParamSpec, Rule};
use super::check::{Checker, Class};
use super::ops::{AxisOp, Op};
use super::suggest::did_you_mean;
use super::tast::{TExpr, TKind};
use super::ty::{Dim, Ty, broadcast};
use crate::diag::{Diagnostic, Span};
use crate::syntax::ast::*;

/// Arguments bound to a builtin's parameters.
pub(super) struct Bound<'a> {
    args: Vec<Option<&'a Expr>>,
}

impl<'a> Bound<'a> {
    pub(super) fn get(&self, i: usize) -> Option<&'a Expr> {
        self.args.get(i).copied().flatten()
    }
}

pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn param_list(params: &[ParamSpec]) -> String {
    params
        .iter()
        .map(|p| {
            if p.optional {
                format!("{}?", p.name)
            } else {
                p.name.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl<'p> Checker<'p> {
    pub fn check_call(&mut self, func: &Ident, args: &[Arg], span: Span) -> TExpr {
        let name = func.name.as_str();
        if let Some(item) = self.items.get(name).copied() {
            return self.user_call(item, args, span);
        }
        let Some(b) = builtins::lookup(name) else {
            let mut cands: Vec<&str> = builtins::BUILTINS
                .iter()
                .filter(|b| !b.repl_only() || self.load_shape.is_some())
                .map(|b| b.name)
                .collect();
            cands.extend(self.items.keys().copied());
            let hint = did_you_mean(name, cands);
            self.error(
                Diagnostic::error(func.span, format!("unknown function `{name}`"))
                    .with_label("not a builtin or a function of this program")
                    .with_hint_opt(hint)
                    .with_note("`mergec methods --builtins` lists every builtin"),
            );
            // Still check the arguments, to report their errors too.
            for a in args {
                if !matches!(a.value.kind, ExprKind::Lambda { .. }) {
                    self.check_expr(&a.value);
                }
            }
            return TExpr::error(span);
        };
        if b.repl_only() && self.load_shape.is_none() {
            self.error(
                Diagnostic::error(func.span, format!("`{name}` is available only in the REPL"))
                    .with_hint("a merge sees only its inputs: use uniform(base) or bernoulli(base, p) for randomness"),
            );
            return TExpr::error(span);
        }
        match b.rule {
            Rule::Fold => return self.fold(b, args, span),
            Rule::Repeat => return self.repeat(b, args, span),
            Rule::ReplShape(op) => return self.repl_shape(op, args, span),
            _ => {}
        }
        let Some(bound) = self.bind_builtin(b, args, span) else {
            return TExpr::error(span);
        };
        self.builtin(b, &bound, span)
    }

    pub(super) fn bind_builtin<'a>(
        &mut self,
        b: &Builtin,
        args: &'a [Arg],
        span: Span,
    ) -> Option<Bound<'a>> {
        let mut slots: Vec<Option<&'a Expr>> = vec![None; b.params.len()];
        let mut ok = true;
        let positional: Vec<&Arg> = args.iter().filter(|a| a.name.is_none()).collect();
        if positional.len() > b.params.len() || (b.params.is_empty() && !positional.is_empty()) {
            let max = b.params.len();
            self.error(
                Diagnostic::error(
                    span,
                    format!(
                        "`{}` takes at most {max} argument{} ({}), but {} were given",
                        b.name,
                        plural(max),
                        param_list(b.params),
                        positional.len()
                    ),
                )
                .with_hint(b.sigs.join("  |  ")),
            );
            return None;
        }
        for (i, a) in positional.iter().enumerate() {
            slots[i] = Some(&a.value);
        }
        for a in args.iter().filter(|a| a.name.is_some()) {
            let n = a.name.as_ref().map(|n| n.name.as_str()).unwrap_or_default();
            let nspan = a.name.as_ref().map_or(span, |n| n.span);
            match b.params.iter().position(|p| p.name == n) {
                Some(i) if slots[i].is_some() => {
                    self.error(Diagnostic::error(
                        nspan,
                        format!("argument `{n}` given twice"),
                    ));
                    ok = false;
                }
                Some(i) => slots[i] = Some(&a.value),
                None => {
                    let hint = did_you_mean(n, b.params.iter().map(|p| p.name))
                        .unwrap_or_else(|| format!("its parameters: {}", param_list(b.params)));
                    self.error(
                        Diagnostic::error(nspan, format!("`{}` has no parameter `{n}`", b.name))
                            .with_hint(hint),
                    );
                    ok = false;
                }
            }
        }
        for (i, p) in b.params.iter().enumerate() {
            if !p.optional && slots[i].is_none() {
                self.error(
                    Diagnostic::error(
                        span,
                        format!("`{}` {} `{}`", b.name, super::MISSING_ARGUMENT, p.name),
                    )
                    .with_hint(b.sigs.join("  |  ")),
                );
                ok = false;
            }
        }
        ok.then_some(Bound { args: slots })
    }

    pub(super) fn arg(&mut self, bound: &Bound, i: usize) -> Option<TExpr> {
        bound.get(i).map(|e| self.check_expr(e))
    }

    pub(super) fn builtin(&mut self, b: &Builtin, bound: &Bound, span: Span) -> TExpr {
        let name = b.name;
        match b.rule {
            Rule::Unary(op) => {
                let x = self.arg(bound, 0).expect("x");
                let class = if matches!(op, Op::Abs | Op::Sign) {
                    Class::Numeric
                } else {
                    Class::Float
                };
                self.elementwise(op, vec![x], class, span, name)
            }
            Rule::Binary(op) => {
                let args = vec![
                    self.arg(bound, 0).expect("a"),
                    self.arg(bound, 1).expect("b"),
                ];
                self.elementwise(op, args, Class::Float, span, name)
            }
            Rule::Cos => {
                let a = self.arg(bound, 0).expect("a");
                match self.arg(bound, 1) {
                    Some(bb) => self.whole(Op::CosSim, vec![a, bb], span, name),
                    None => self.elementwise(Op::Cos, vec![a], Class::Float, span, name),
                }
            }
            Rule::MinMax(elem, list, axis_op) => {
                self.min_max(elem, list, axis_op, bound, span, name)
            }
            Rule::SumMean(list, axis_op) => self.sum_mean(list, axis_op, bound, span, name),
            Rule::Norm => {
                if bound.get(1).is_some() {
                    return self.axis_reduce(AxisOp::Norm, bound, span, name);
                }
                let x = self.arg(bound, 0).expect("x");
                self.whole(Op::Norm, vec![x], span, name)
            }
            Rule::ListReduce(op) => {
                let x = self.arg(bound, 0).expect("xs");
                self.list_reduce(op, x, span, name)
            }
            Rule::Softmax => {
                let x = self.arg(bound, 0).expect("xs");
                let r = self.list_reduce(Op::ListSoftmax, x, span, name);
                let ty = Ty::list(r.ty.clone());
                TExpr { ty, ..r }
            }
            Rule::TakeBy(op) => self.take_by(op, bound, span, name),
            Rule::Len => self.len_call(bound, span, name),
            Rule::Where => self.where_call(bound, span, name),
            Rule::Clamp => {
                let args = (0..3)
                    .map(|i| self.arg(bound, i).expect("clamp arg"))
                    .collect();
                self.elementwise(Op::Clamp, args, Class::Numeric, span, name)
            }
            Rule::Lerp => {
                let args = (0..3)
                    .map(|i| self.arg(bound, i).expect("lerp arg"))
                    .collect();
                self.elementwise(Op::Lerp, args, Class::Float, span, name)
            }
            Rule::Whole(op) => {
                let x = self.arg(bound, 0).expect("x");
                self.whole(op, vec![x], span, name)
            }
            Rule::Whole2(op) => {
                let args = vec![
                    self.arg(bound, 0).expect("a"),
                    self.arg(bound, 1).expect("b"),
                ];
                self.whole(op, args, span, name)
            }
            Rule::Quantile => self.quantile(bound, span, name),
            Rule::TopkMask => self.topk(bound, span, name),
            Rule::Ranks => self.ranks(bound, span, name),
            Rule::Numel | Rule::Ndim => self.numel_or_ndim(b.rule, bound, span, name),
            Rule::DimOf => self.dim_of(bound, span, name),
            Rule::Bernoulli => self.bernoulli(bound, span, name),
            Rule::Uniform => {
                let x = self.arg(bound, 0).expect("x");
                let Some(stream) = self.stream(bound.get(1)) else {
                    return TExpr::error(span);
                };
                let Some(shape) = self.tensor_arg(&x, name) else {
                    return TExpr::error(span);
                };
                let ty = lift(&x.ty, Ty::Tensor(shape));
                TExpr::new(TKind::Op(Op::Uniform(stream), vec![x]), ty, span)
            }
            Rule::Like(op) => {
                let x = self.arg(bound, 0).expect("x");
                let Some(shape) = self.tensor_arg(&x, name) else {
                    return TExpr::error(span);
                };
                let ty = lift(&x.ty, Ty::Tensor(shape));
                TExpr::new(TKind::Op(op, vec![x]), ty, span)
            }
            Rule::FullLike => self.full_like(bound, span, name),
            Rule::StrPred(op) => self.str_pred(op, bound, span, name),
            Rule::ToInt | Rule::ToF32 => self.scalar_conversion(b.rule, bound, span, name),
            Rule::Load => self.load(bound, span),
            Rule::Fold | Rule::Repeat | Rule::ReplShape(_) => {
                unreachable!("handled before binding")
            }
        }
    }

    pub(super) fn keepdim_without_axis(&mut self, bound: &Bound, span: Span, name: &str) -> TExpr {
        let e = bound.get(bound.args.len() - 1).map_or(span, |e| e.span);
        self.error(Diagnostic::error(
            e,
            format!("`keepdim` needs `axis`: {name}(x, axis=1, keepdim=false)"),
        ));
        TExpr::error(span)
    }

    pub(super) fn not_a_list(&mut self, x: &TExpr, name: &str, hint: &str) {
        self.error(
            Diagnostic::error(
                x.span,
                format!("`{name}` works across the model list, but this is {}", x.ty),
            )
            .with_label("not a list")
            .with_hint(hint.to_string()),
        );
    }

    pub(super) fn list_reduce(&mut self, op: Op, x: TExpr, span: Span, name: &str) -> TExpr {
        if x.ty.is_error() {
            return TExpr::error(span);
        }
        let Ty::List(elem) = x.ty.clone() else {
            let hint = match op {
                Op::ListSum => format!(
                    "to add every element use sum_all(x); along an axis use {name}(x, axis=0)"
                ),
                Op::ListMean => format!(
                    "for the mean of every element use mean_all(x); along an axis use {name}(x, axis=0)"
                ),
                Op::ListMax | Op::ListMin => format!(
                    "for the {name} element use {name}_all(x); of two values {name}(a, b); along an axis {name}(x, axis=0)"
                ),
                _ => "pass a list such as `models - base`".to_string(),
            };
            self.not_a_list(&x, name, &hint);
            return TExpr::error(span);
        };
        let ok = match op {
            Op::ListCount => matches!(*elem, Ty::Mask(_) | Ty::Bool),
            _ => elem.is_numeric(),
        };
        if !ok {
            let want = if op == Op::ListCount {
                "masks or bools"
            } else {
                "numbers or tensors"
            };
            self.error(Diagnostic::error(
                x.span,
                format!("`{name}` needs a list of {want}, found {}", x.ty),
            ));
            return TExpr::error(span);
        }
        let ty = match (*elem, op) {
            (Ty::Int, Op::ListSum | Op::ListMax | Op::ListMin | Op::ListProd) => Ty::Int,
            (Ty::Mask(s) | Ty::Tensor(s), _) => Ty::Tensor(s),
            _ => Ty::F32,
        };
        TExpr::new(TKind::Op(op, vec![x]), ty, span)
    }

    pub(super) fn take_by(&mut self, op: Op, bound: &Bound, span: Span, name: &str) -> TExpr {
        let k = self.arg(bound, 0).expect("keys");
        let v = self.arg(bound, 1).expect("values");
        if k.ty.is_error() || v.ty.is_error() {
            return TExpr::error(span);
        }
        for x in [&k, &v] {
            if !x.ty.is_list() {
                self.not_a_list(
                    x,
                    name,
                    "take_max(abs(d), d) picks, per element, the d with the largest |d|",
                );
                return TExpr::error(span);
            }
        }
        match self.elementwise_ty(&[k.clone(), v.clone()], Class::Float, span, name, op) {
            Some(t) => TExpr::new(TKind::Op(op, vec![k, v]), t.elem().clone(), span),
            None => TExpr::error(span),
        }
    }

    /// A whole-tensor reduction to one f32 (lifted over lists).
    pub(super) fn whole(&mut self, op: Op, args: Vec<TExpr>, span: Span, name: &str) -> TExpr {
        if args.iter().any(|a| a.ty.is_error()) {
            return TExpr::error(span);
        }
        let tensors = if matches!(op, Op::Quantile) {
            1
        } else {
            args.len()
        };
        let mut shape: Option<Vec<Dim>> = None;
        for a in &args[..tensors] {
            let Some(s) = self.tensor_arg(a, name) else {
                return TExpr::error(span);
            };
            shape = Some(match shape {
                None => s,
                Some(prev) => match broadcast(&prev, &s) {
                    Ok(b) => b,
                    Err((x, y)) => {
                        self.shape_error(span, name, &prev, &s, x, y);
                        return TExpr::error(span);
                    }
                },
            });
        }
        let lifted = args.iter().any(|a| a.ty.is_list());
        let ty = if lifted { Ty::list(Ty::F32) } else { Ty::F32 };
        TExpr::new(TKind::Op(op, args), ty, span)
    }

    /// The shape of a tensor (or list of tensors) argument, or an error.
    pub(super) fn tensor_arg(&mut self, x: &TExpr, name: &str) -> Option<Vec<Dim>> {
        if x.ty.is_error() {
            return None;
        }
        match x.ty.elem().shape() {
            Some(s) => Some(s.clone()),
            None => {
                self.error(
                    Diagnostic::error(x.span, format!("`{name}` needs a Tensor, found {}", x.ty))
                        .with_label(format!("this is {}", x.ty.kind_name())),
                );
                None
            }
        }
    }

    /// A number (or per-model list of numbers): f32 or int.
    pub(super) fn scalar_arg(&mut self, x: &TExpr, name: &str, what: &str) -> bool {
        if x.ty.is_error() {
            return false;
        }
        if matches!(x.ty.elem(), Ty::F32 | Ty::Int) {
            return true;
        }
        self.error(
            Diagnostic::error(
                x.span,
                format!("`{name}`'s `{what}` must be a number, found {}", x.ty),
            )
            .with_label(format!("this is {}", x.ty.kind_name())),
        );
        false
    }

    /// A constant axis, normalised to 0..rank.
    pub(super) fn axis_value(&mut self, e: &Expr, rank: usize, name: &str) -> Option<usize> {
        let Some(a) = const_int(e) else {
            self.error(
                Diagnostic::error(
                    e.span,
                    "axis must be a whole-number literal such as 0, 1 or -1",
                )
                .with_label("not a literal"),
            );
            return None;
        };
        let r = rank as i64;
        if a >= r || a < -r || rank == 0 {
            let valid = if rank == 0 {
                "a scalar has no axes".to_string()
            } else {
                format!("valid axes are 0..{} or -{}..-1", r - 1, r)
            };
            self.error(
                Diagnostic::error(
                    e.span,
                    format!("axis {a} is out of range for a {rank}-D tensor in `{name}`"),
                )
                .with_label("out of range")
                .with_hint(valid)
                .with_note(format!("checked with the base as a {}-D tensor", self.rank)),
            );
            return None;
        }
        Some(if a < 0 { (a + r) as usize } else { a as usize })
    }

    pub(super) fn axis_reduce(
        &mut self,
        op: AxisOp,
        bound: &Bound,
        span: Span,
        name: &str,
    ) -> TExpr {
        let x = self.arg(bound, 0).expect("x");
        let Some(shape) = self.tensor_arg(&x, name) else {
            return TExpr::error(span);
        };
        let axis_idx = if matches!(op, AxisOp::Max | AxisOp::Min) {
            2
        } else {
            1
        };
        let keep_idx = axis_idx + 1;
        let Some(axis) = bound
            .get(axis_idx)
            .and_then(|e| self.axis_value(e, shape.len(), name))
        else {
            return TExpr::error(span);
        };
        let keepdim = match bound.get(keep_idx) {
            None => true,
            Some(e) => match &e.unparen().kind {
                ExprKind::Bool(b) => *b,
                _ => {
                    self.error(Diagnostic::error(
                        e.span,
                        "keepdim must be `true` or `false`",
                    ));
                    return TExpr::error(span);
                }
            },
        };
        let mut out = shape.clone();
        if keepdim {
            out[axis] = Dim::Const(1);
        } else {
            out.remove(axis);
        }
        let ty = lift(&x.ty, Ty::Tensor(out));
        TExpr::new(
            TKind::Op(Op::Axis(op, axis as i8, keepdim), vec![x]),
            ty,
            span,
        )
    }

    pub(super) fn topk(&mut self, bound: &Bound, span: Span, name: &str) -> TExpr {
        let x = self.arg(bound, 0).expect("x");
        let d = self.arg(bound, 1).expect("density");
        let skip = match self.arg(bound, 2) {
            Some(s) => s,
            None => TExpr::new(TKind::F32(0.0), Ty::F32, span),
        };
        let Some(shape) = self.tensor_arg(&x, name) else {
            return TExpr::error(span);
        };
        if !self.scalar_arg(&d, name, "density") || !self.scalar_arg(&skip, name, "skip") {
            return TExpr::error(span);
        }
        let lifted = [&x, &d, &skip].iter().any(|a| a.ty.is_list());
        let ty = if lifted {
            Ty::list(Ty::Mask(shape))
        } else {
            Ty::Mask(shape)
        };
        TExpr::new(TKind::Op(Op::TopkMask, vec![x, d, skip]), ty, span)
    }

    pub(super) fn stream(&mut self, e: Option<&Expr>) -> Option<u32> {
        let Some(e) = e else { return Some(0) };
        match const_int(e) {
            Some(s) if (0..=u32::MAX as i64).contains(&s) => Some(s as u32),
            _ => {
                self.error(
                    Diagnostic::error(e.span, "stream must be a non-negative whole-number literal")
                        .with_hint("stream=1 draws a mask independent of stream=0"),
                );
                None
            }
        }
    }
}

pub(super) fn lift(arg: &Ty, elem: Ty) -> Ty {
    if arg.is_list() { Ty::list(elem) } else { elem }
}

/// An integer literal, possibly negated.
pub(crate) fn const_int(e: &Expr) -> Option<i64> {
    match &e.unparen().kind {
        ExprKind::Number {
            value,
            is_int: true,
        } => Some(*value as i64),
        ExprKind::Unary(UnOp::Neg, x) => const_int(x).map(|v| -v),
        _ => None,
    }
}
