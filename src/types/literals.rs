//! Array and tensor literals: `[a, b, c]` as a list (or a list of lists), a literal of
//! numbers as a constant tensor.

use super::check::{Checker, join, join_hint};
use super::tast::{TExpr, TKind};
use super::ty::{Dim, Ty};
use crate::diag::{Diagnostic, Span};
use crate::syntax::ast::*;

impl Checker<'_> {
    pub(super) fn array(&mut self, xs: &[Expr], expect: Option<&Ty>, span: Span) -> TExpr {
        if xs.is_empty() {
            self.error(
                Diagnostic::error(span, super::EMPTY_LIST)
                    .with_hint("lists hold one value per model"),
            );
            return TExpr::error(span);
        }
        let want_list = matches!(expect, Some(Ty::List(_)));
        if !want_list && xs.iter().all(is_numeric_literal_tree) {
            return self.tensor_literal(xs, span);
        }
        let elems: Vec<TExpr> = xs.iter().map(|x| self.check_expr(x)).collect();
        if elems.iter().any(|e| e.ty.is_error()) {
            return TExpr::error(span);
        }
        let mut ty = elems[0].ty.clone();
        for e in &elems[1..] {
            match join(&ty, &e.ty) {
                Some(j) => ty = j,
                None => {
                    self.error(
                        Diagnostic::error(
                            e.span,
                            format!("list elements differ: {} and {}", ty, e.ty),
                        )
                        .with_hint(join_hint(&ty, &e.ty)),
                    );
                    return TExpr::error(span);
                }
            }
        }
        if ty.is_list() {
            self.error(
                Diagnostic::error(span, "lists cannot be nested")
                    .with_hint("a tensor literal holds only numbers: [[1, 2], [3, 4]]"),
            );
            return TExpr::error(span);
        }
        if matches!(expect, Some(Ty::List(e)) if **e == Ty::F32) && ty == Ty::Int {
            ty = Ty::F32;
        }
        TExpr::new(TKind::List(elems), Ty::list(ty), span)
    }

    fn tensor_literal(&mut self, xs: &[Expr], span: Span) -> TExpr {
        let mut shape = Vec::new();
        let mut data = Vec::new();
        if let Err(d) = flatten_literal(xs, 0, &mut shape, &mut data, span) {
            self.error(d);
            return TExpr::error(span);
        }
        if data.len() > self.limits.max_literal_elems {
            self.error(Diagnostic::error(span, "tensor literal too large"));
            return TExpr::error(span);
        }
        if !self.spend(data.len() as u64, span) {
            return TExpr::error(span);
        }
        if let Some(bad) = data.iter().find(|v| !v.is_finite()) {
            self.error(Diagnostic::error(
                span,
                format!("tensor literal holds a non-finite value ({bad})"),
            ));
            return TExpr::error(span);
        }
        let ty = Ty::Tensor(shape.iter().map(|&n| Dim::Const(n as u64)).collect());
        TExpr::new(
            TKind::TensorLit {
                shape,
                data: std::sync::Arc::new(data),
            },
            ty,
            span,
        )
    }
}

fn is_numeric_literal_tree(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Number { .. } => true,
        ExprKind::Unary(UnOp::Neg, x) | ExprKind::Paren(x) => is_numeric_literal_tree(x),
        ExprKind::Array(xs) => !xs.is_empty() && xs.iter().all(is_numeric_literal_tree),
        _ => false,
    }
}

fn literal_value(e: &Expr) -> f64 {
    match &e.kind {
        ExprKind::Number { value, .. } => *value,
        ExprKind::Unary(UnOp::Neg, x) => -literal_value(x),
        ExprKind::Paren(x) => literal_value(x),
        _ => f64::NAN,
    }
}

fn flatten_literal(
    xs: &[Expr],
    depth: usize,
    shape: &mut Vec<usize>,
    data: &mut Vec<f32>,
    span: Span,
) -> Result<(), Diagnostic> {
    if shape.len() == depth {
        shape.push(xs.len());
    } else if shape[depth] != xs.len() {
        return Err(Diagnostic::error(
            span,
            format!(
                "ragged tensor literal: rows of {} and {} elements",
                shape[depth],
                xs.len()
            ),
        )
        .with_hint("every row of a tensor literal has the same length"));
    }
    let nested = matches!(xs[0].unparen().kind, ExprKind::Array(_));
    for x in xs {
        match (&x.unparen().kind, nested) {
            (ExprKind::Array(inner), true) => flatten_literal(inner, depth + 1, shape, data, span)?,
            (ExprKind::Array(_), false) | (_, true) => {
                return Err(Diagnostic::error(
                    x.span,
                    "ragged tensor literal: numbers and rows mixed",
                )
                .with_hint("write [[1, 2], [3, 4]]"));
            }
            (_, false) => data.push(literal_value(x) as f32),
        }
    }
    Ok(())
}
