//! The checker's rules for builtin calls whose typing takes more than a line or two
//! (`calls.rs` dispatches on [`Rule`] and keeps the short ones).

use super::builtins::Rule;
use super::calls::{Bound, lift};
use super::check::{Checker, Class};
use super::ops::{AxisOp, Op};
use super::tast::{TExpr, TKind};
use super::ty::Ty;
use crate::diag::{Diagnostic, Span};

impl Checker<'_> {
    pub(super) fn min_max(
        &mut self,
        elem: Op,
        list: Op,
        axis_op: AxisOp,
        bound: &Bound,
        span: Span,
        name: &str,
    ) -> TExpr {
        if bound.get(2).is_some() {
            if let Some(extra) = bound.get(1) {
                self.error(
                    Diagnostic::error(
                        extra.span,
                        format!("`{name}` along an axis takes one tensor"),
                    )
                    .with_hint(format!("{name}(x, axis=1)")),
                );
                return TExpr::error(span);
            }
            return self.axis_reduce(axis_op, bound, span, name);
        }
        if bound.get(3).is_some() {
            return self.keepdim_without_axis(bound, span, name);
        }
        let a = self.arg(bound, 0).expect("a");
        match self.arg(bound, 1) {
            Some(bb) => self.elementwise(elem, vec![a, bb], Class::Numeric, span, name),
            None => self.list_reduce(list, a, span, name),
        }
    }

    pub(super) fn where_call(&mut self, bound: &Bound, span: Span, name: &str) -> TExpr {
        let c = self.arg(bound, 0).expect("cond");
        if !c.ty.is_error() && !matches!(c.ty.elem(), Ty::Mask(_) | Ty::Bool) {
            self.error(
                Diagnostic::error(
                    c.span,
                    format!("`where` needs a Mask condition, found {}", c.ty),
                )
                .with_hint("make one with a comparison, e.g. where(x > 0, x, 0.0)"),
            );
            return TExpr::error(span);
        }
        let a = self.arg(bound, 1).expect("a");
        let bb = self.arg(bound, 2).expect("b");
        let ty = self.elementwise_ty(
            std::slice::from_ref(&c),
            Class::Logic,
            span,
            name,
            Op::Where,
        );
        let vt = self.elementwise_ty(
            &[c.clone(), a.clone(), bb.clone()],
            Class::Float,
            span,
            name,
            Op::Where,
        );
        match (ty, vt) {
            (Some(_), Some(t)) => TExpr::new(TKind::Op(Op::Where, vec![c, a, bb]), t, span),
            _ => TExpr::error(span),
        }
    }

    pub(super) fn quantile(&mut self, bound: &Bound, span: Span, name: &str) -> TExpr {
        let x = self.arg(bound, 0).expect("x");
        let q = self.arg(bound, 1).expect("q");
        if x.ty.elem().is_scalar() && q.ty.elem().shape().is_some() {
            self.error(
                Diagnostic::error(span, "`quantile` takes the tensor first, then q")
                    .with_label("arguments in the wrong order")
                    .with_hint("quantile(x, q), e.g. quantile(abs(d), 0.9)"),
            );
            return TExpr::error(span);
        }
        if !self.scalar_arg(&q, name, "q") {
            return TExpr::error(span);
        }
        self.whole(Op::Quantile, vec![x, q], span, name)
    }

    pub(super) fn ranks(&mut self, bound: &Bound, span: Span, name: &str) -> TExpr {
        let x = self.arg(bound, 0).expect("x");
        let Some(shape) = self.tensor_arg(&x, name) else {
            return TExpr::error(span);
        };
        let axis = match bound.get(1) {
            Some(e) => match self.axis_value(e, shape.len(), name) {
                Some(a) => a,
                None => return TExpr::error(span),
            },
            None if shape.is_empty() => 0,
            None => shape.len() - 1,
        };
        let ty = lift(&x.ty, Ty::Tensor(shape));
        TExpr::new(TKind::Op(Op::Ranks(axis as i8), vec![x]), ty, span)
    }

    pub(super) fn numel_or_ndim(
        &mut self,
        rule: Rule,
        bound: &Bound,
        span: Span,
        name: &str,
    ) -> TExpr {
        let x = self.arg(bound, 0).expect("x");
        if self.tensor_arg(&x, name).is_none() {
            return TExpr::error(span);
        }
        let op = if rule == Rule::Numel {
            Op::Numel
        } else {
            Op::Ndim
        };
        let ty = lift(&x.ty, Ty::Int);
        TExpr::new(TKind::Op(op, vec![x]), ty, span)
    }

    pub(super) fn dim_of(&mut self, bound: &Bound, span: Span, name: &str) -> TExpr {
        let x = self.arg(bound, 0).expect("x");
        let Some(shape) = self.tensor_arg(&x, name) else {
            return TExpr::error(span);
        };
        let Some(axis) = bound
            .get(1)
            .and_then(|e| self.axis_value(e, shape.len(), name))
        else {
            return TExpr::error(span);
        };
        let ty = lift(&x.ty, Ty::Int);
        TExpr::new(TKind::Op(Op::Dim(axis as i8), vec![x]), ty, span)
    }

    pub(super) fn bernoulli(&mut self, bound: &Bound, span: Span, name: &str) -> TExpr {
        let x = self.arg(bound, 0).expect("x");
        let p = self.arg(bound, 1).expect("p");
        let Some(stream) = self.stream(bound.get(2)) else {
            return TExpr::error(span);
        };
        if self.tensor_arg(&x, name).is_none() {
            return TExpr::error(span);
        }
        match self.elementwise_ty(
            &[x.clone(), p.clone()],
            Class::Compare,
            span,
            name,
            Op::Bernoulli(stream),
        ) {
            Some(ty) => TExpr::new(TKind::Op(Op::Bernoulli(stream), vec![x, p]), ty, span),
            None => TExpr::error(span),
        }
    }

    pub(super) fn full_like(&mut self, bound: &Bound, span: Span, name: &str) -> TExpr {
        let x = self.arg(bound, 0).expect("x");
        let v = self.arg(bound, 1).expect("value");
        let Some(shape) = self.tensor_arg(&x, name) else {
            return TExpr::error(span);
        };
        if !self.scalar_arg(&v, name, "value") {
            return TExpr::error(span);
        }
        let ty = if x.ty.is_list() || v.ty.is_list() {
            Ty::list(Ty::Tensor(shape))
        } else {
            Ty::Tensor(shape)
        };
        TExpr::new(TKind::Op(Op::FullLike, vec![x, v]), ty, span)
    }

    pub(super) fn str_pred(&mut self, op: Op, bound: &Bound, span: Span, name: &str) -> TExpr {
        let a = self.arg(bound, 0).expect("s");
        let bb = self.arg(bound, 1).expect("sub");
        if a.ty.is_error() || bb.ty.is_error() {
            return TExpr::error(span);
        }
        for x in [&a, &bb] {
            if x.ty != Ty::Str {
                self.error(
                    Diagnostic::error(x.span, format!("`{name}` needs strings, found {}", x.ty))
                        .with_hint("e.g. contains(name, \"mlp\")"),
                );
                return TExpr::error(span);
            }
        }
        TExpr::new(TKind::Op(op, vec![a, bb]), Ty::Bool, span)
    }

    pub(super) fn scalar_conversion(
        &mut self,
        rule: Rule,
        bound: &Bound,
        span: Span,
        name: &str,
    ) -> TExpr {
        let x = self.arg(bound, 0).expect("x");
        if !self.scalar_arg(&x, name, "x") {
            return TExpr::error(span);
        }
        let (op, t) = if rule == Rule::ToInt {
            (Op::ToInt, Ty::Int)
        } else {
            (Op::ToF32, Ty::F32)
        };
        let ty = lift(&x.ty, t);
        TExpr::new(TKind::Op(op, vec![x]), ty, span)
    }

    pub(super) fn sum_mean(
        &mut self,
        list: Op,
        axis_op: AxisOp,
        bound: &Bound,
        span: Span,
        name: &str,
    ) -> TExpr {
        if bound.get(1).is_some() {
            return self.axis_reduce(axis_op, bound, span, name);
        }
        if bound.get(2).is_some() {
            return self.keepdim_without_axis(bound, span, name);
        }
        let x = self.arg(bound, 0).expect("x");
        self.list_reduce(list, x, span, name)
    }

    pub(super) fn len_call(&mut self, bound: &Bound, span: Span, name: &str) -> TExpr {
        let x = self.arg(bound, 0).expect("xs");
        if x.ty.is_error() {
            return TExpr::error(span);
        }
        if !x.ty.is_list() {
            self.not_a_list(&x, name, "len(models) is the number of models");
            return TExpr::error(span);
        }
        TExpr::new(TKind::Op(Op::Len, vec![x]), Ty::Int, span)
    }
}
