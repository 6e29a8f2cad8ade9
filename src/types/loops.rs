//! Typing `fold` and `repeat`: lambdas and accumulators whose type is fixed by their start.

use super::builtins::Builtin;
use super::calls::{const_int, plural};
use super::check::{Checker, join, join_hint};
use super::tast::{TExpr, TKind};
use super::ty::Ty;
use crate::diag::{Diagnostic, Span};
use crate::syntax::ast::*;

impl<'p> Checker<'p> {
    // ---- fold and repeat ----

    fn lambda<'a>(
        &mut self,
        e: &'a Expr,
        arities: &[usize],
        what: &str,
    ) -> Option<(&'a [Ident], &'a Expr)> {
        match &e.kind {
            ExprKind::Lambda { params, body } if arities.contains(&params.len()) => {
                Some((params, body))
            }
            ExprKind::Lambda { params, .. } => {
                self.error(
                    Diagnostic::error(
                        e.span,
                        format!(
                            "this lambda takes {} parameter{}, but {} are needed",
                            params.len(),
                            plural(params.len()),
                            arities
                                .iter()
                                .map(|a| a.to_string())
                                .collect::<Vec<_>>()
                                .join(" or ")
                        ),
                    )
                    .with_hint(what.to_string()),
                );
                None
            }
            _ => {
                self.error(
                    Diagnostic::error(e.span, "expected a lambda here").with_hint(what.to_string()),
                );
                None
            }
        }
    }

    /// Checks a lambda body with the accumulator's type widened until it is stable.
    fn accumulate(
        &mut self,
        init_ty: Ty,
        params: &[Ident],
        extra: &[Ty],
        body: &Expr,
    ) -> Option<(Ty, Vec<u32>, TExpr)> {
        let mut acc_ty = init_ty;
        for round in 0..4 {
            let saved_diags = self.diags.len();
            let saved_vars = self.var_names.len();
            let mark = self.scope_mark();
            let mut vars = vec![self.bind(&params[0].name, acc_ty.clone())];
            for (p, t) in params[1..].iter().zip(extra) {
                vars.push(self.bind(&p.name, t.clone()));
            }
            let b = self.check_expr(body);
            self.scope_reset(mark);
            if b.ty.is_error() {
                return None;
            }
            match join(&acc_ty, &b.ty) {
                Some(j) if j == acc_ty => return Some((acc_ty, vars, b)),
                Some(j) if round < 3 => {
                    self.diags.truncate(saved_diags);
                    self.var_names.truncate(saved_vars);
                    acc_ty = j;
                }
                _ => {
                    let hint = if b.ty.is_list() && !acc_ty.is_list() {
                        "per-model values inside a fold: index them with the model index, |acc, x, i| acc + weight[i] * x"
                    } else if acc_ty.shape().is_none() && b.ty.shape().is_some() {
                        "start the accumulator with a tensor, not a number: e.g. zeros_like(base) as init (a fold may also leave out init to start from the first element)"
                    } else {
                        join_hint(&acc_ty, &b.ty)
                    };
                    self.error(
                        Diagnostic::error(
                            body.span,
                            format!(
                                "the lambda returns {} but the accumulator is {}",
                                b.ty, acc_ty
                            ),
                        )
                        .with_hint(hint),
                    );
                    return None;
                }
            }
        }
        None
    }

    pub(super) fn fold(&mut self, b: &Builtin, args: &[Arg], span: Span) -> TExpr {
        const USAGE: &str = "fold(xs, |acc, x| ...), fold(xs, init, |acc, x| ...), with an optional model index: |acc, x, i|";
        let named_init = args
            .iter()
            .find(|a| a.name.as_ref().is_some_and(|n| n.name == "init"));
        let positional: Vec<&Expr> = args
            .iter()
            .filter(|a| a.name.is_none())
            .map(|a| &a.value)
            .collect();
        if let Some(bad) = args
            .iter()
            .find(|a| a.name.as_ref().is_some_and(|n| n.name != "init"))
        {
            let n = bad
                .name
                .as_ref()
                .map(|n| n.name.clone())
                .unwrap_or_default();
            self.error(
                Diagnostic::error(bad.value.span, format!("`fold` has no parameter `{n}`"))
                    .with_hint(USAGE),
            );
            return TExpr::error(span);
        }
        let (list_e, init_e, f_e) = match (positional.as_slice(), named_init) {
            ([l, f], None) => (*l, None, *f),
            ([l, f], Some(i)) => (*l, Some(&i.value), *f),
            ([l, i, f], None) => (*l, Some(*i), *f),
            _ => {
                self.error(
                    Diagnostic::error(
                        span,
                        format!("`fold` takes 2 or 3 arguments, {} given", args.len()),
                    )
                    .with_hint(b.sigs.join("  |  ")),
                );
                return TExpr::error(span);
            }
        };
        let list = self.check_expr(list_e);
        let init = init_e.map(|e| self.check_expr(e));
        let Some((params, body)) = self.lambda(f_e, &[2, 3], USAGE) else {
            return TExpr::error(span);
        };
        if list.ty.is_error() || init.as_ref().is_some_and(|i| i.ty.is_error()) {
            return TExpr::error(span);
        }
        let Ty::List(elem) = list.ty.clone() else {
            self.not_a_list(
                &list,
                "fold",
                "fold walks the model list: fold(models - base, |acc, t| ...)",
            );
            return TExpr::error(span);
        };
        let init_ty = init.as_ref().map_or(*elem.clone(), |i| i.ty.clone());
        let Some((acc_ty, vars, body)) = self.accumulate(init_ty, params, &[*elem, Ty::Int], body)
        else {
            return TExpr::error(span);
        };
        TExpr::new(
            TKind::Fold {
                list: Box::new(list),
                init: init.map(Box::new),
                acc: vars[0],
                elem: vars[1],
                index: vars.get(2).copied(),
                body: Box::new(body),
            },
            acc_ty,
            span,
        )
    }

    pub(super) fn repeat(&mut self, b: &Builtin, args: &[Arg], span: Span) -> TExpr {
        const USAGE: &str = "repeat(n, init, |acc, i| ...)";
        let Some(bound) = self.bind_builtin(b, args, span) else {
            return TExpr::error(span);
        };
        let count_e = bound.get(0).expect("n");
        let count = self.check_expr(count_e);
        let init = self.check_expr(bound.get(1).expect("init"));
        let Some((params, body)) = self.lambda(bound.get(2).expect("f"), &[1, 2], USAGE) else {
            return TExpr::error(span);
        };
        if count.ty.is_error() || init.ty.is_error() {
            return TExpr::error(span);
        }
        if count.ty != Ty::Int {
            self.error(
                Diagnostic::error(
                    count_e.span,
                    format!("`repeat` needs an int count, found {}", count.ty),
                )
                .with_hint("write a whole number such as 3, or convert with int(x)"),
            );
            return TExpr::error(span);
        }
        if let Some(n) = const_int(count_e)
            && !(0..=self.limits.max_repeat).contains(&n)
        {
            self.error(
                Diagnostic::error(
                    count_e.span,
                    format!("repeat count {n} is outside 0..={}", self.limits.max_repeat),
                )
                .with_hint("every program must finish quickly; iterate fewer times"),
            );
            return TExpr::error(span);
        }
        let Some((acc_ty, vars, body)) = self.accumulate(init.ty.clone(), params, &[Ty::Int], body)
        else {
            return TExpr::error(span);
        };
        TExpr::new(
            TKind::Repeat {
                count: Box::new(count),
                init: Box::new(init),
                acc: vars[0],
                index: vars.get(1).copied(),
                body: Box::new(body),
            },
            acc_ty,
            span,
        )
    }
}
