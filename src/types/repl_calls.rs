//! Typing the REPL-only builtins: shaped constructors and `load`.

use super::calls::{Bound, const_int};
use super::check::Checker;
use super::ops::Op;
use super::tast::{TExpr, TKind};
use super::ty::{Dim, Ty};
use crate::diag::{Diagnostic, Span};
use crate::syntax::ast::*;

impl<'p> Checker<'p> {
    pub(super) fn repl_shape(&mut self, op: Op, args: &[Arg], span: Span) -> TExpr {
        let mut dims = Vec::new();
        for a in args {
            match (&a.name, const_int(&a.value)) {
                (None, Some(n)) if (1..=1 << 24).contains(&n) => dims.push(n as u64),
                _ => {
                    self.error(
                        Diagnostic::error(
                            a.value.span,
                            "dimensions must be positive whole-number literals",
                        )
                        .with_hint("randn(4, 4)"),
                    );
                    return TExpr::error(span);
                }
            }
        }
        if dims.is_empty() || dims.iter().product::<u64>() > self.limits.max_literal_elems as u64 {
            self.error(Diagnostic::error(
                span,
                "give between 1 and 2^20 elements, e.g. randn(4, 4)",
            ));
            return TExpr::error(span);
        }
        let ty = Ty::Tensor(dims.iter().map(|&d| Dim::Const(d)).collect());
        let args = dims
            .iter()
            .map(|&d| TExpr::new(TKind::Int(d as i64), Ty::Int, span))
            .collect();
        TExpr::new(TKind::Op(op, args), ty, span)
    }

    pub(super) fn load(&mut self, bound: &Bound, span: Span) -> TExpr {
        let mut strs = Vec::new();
        for i in 0..2 {
            let e = bound.get(i).expect("load args");
            match &e.unparen().kind {
                ExprKind::Str(s) => strs.push(s.clone()),
                _ => {
                    self.error(
                        Diagnostic::error(e.span, "load takes string literals").with_hint(
                            "load(\"path/to/model\", \"model.layers.0.mlp.up_proj.weight\")",
                        ),
                    );
                    return TExpr::error(span);
                }
            }
        }
        let Some(f) = self.load_shape else {
            return TExpr::error(span);
        };
        match f(&strs[0], &strs[1]) {
            Ok(shape) => {
                let ty = Ty::Tensor(shape.iter().map(|&d| Dim::Const(d as u64)).collect());
                let args = strs
                    .iter()
                    .map(|s| TExpr::new(TKind::Str(s.as_str().into()), Ty::Str, span))
                    .collect();
                TExpr::new(TKind::Op(Op::Load, args), ty, span)
            }
            Err(msg) => {
                self.error(Diagnostic::error(span, msg));
                TExpr::error(span)
            }
        }
    }
}
