//! Typing calls of user functions and merges: argument binding, lifting over lists,
//! splatting scalars into list parameters, and inlining the body.

use super::calls::plural;
use super::check::{Checker, kind_compatible};
use super::suggest::did_you_mean;
use super::tast::{TExpr, TKind};
use super::ty::Ty;
use crate::diag::{Diagnostic, Span};
use crate::syntax::ast::*;

impl<'p> Checker<'p> {
    // ---- user functions and merges ----

    pub(super) fn user_call(&mut self, item: &'p Item, args: &[Arg], span: Span) -> TExpr {
        let fname = item.name.name.clone();
        if self.call_stack.contains(&fname) {
            self.error(
                Diagnostic::error(span, format!("recursion: `{fname}` calls itself"))
                    .with_hint("programs cannot recurse; use fold or repeat"),
            );
            return TExpr::error(span);
        }
        let Some((slots, mut ok)) = self.bind_user_args(item, args, span) else {
            return TExpr::error(span);
        };
        let (mut values, declared) = self.user_arg_values(item, &slots, &mut ok, span);
        if !ok || values.iter().any(|v| v.ty.is_error()) || declared.iter().any(Option::is_none) {
            return TExpr::error(span);
        }
        let Some((bound_tys, lifted)) = self.bind_user_types(item, &mut values, &declared, span)
        else {
            return TExpr::error(span);
        };
        // Inline the body in a fresh scope holding only the parameters.
        let saved = self.take_scope();
        self.call_stack.push(fname.clone());
        self.call_spans.push(span);
        let before = self.diags.len();
        let mut vars = Vec::new();
        for (p, t) in item.params.iter().zip(&bound_tys) {
            vars.push(self.bind(&p.name.name, t.clone()));
        }
        let body = self.check_body(item);
        for d in &mut self.diags[before..] {
            if !d.notes.iter().any(|n| n.starts_with("while inlining")) {
                d.notes
                    .push(format!("while inlining the call to `{fname}`"));
            }
        }
        self.call_stack.pop();
        self.call_spans.pop();
        self.restore_scope(saved);
        if body.ty.is_error() {
            return TExpr::error(span);
        }
        let ret = self.type_from_ast(&item.ret);
        if let Some(r) = &ret {
            let want = if lifted {
                Ty::list(r.clone())
            } else {
                r.clone()
            };
            if !kind_compatible(&want, &body.ty) {
                self.error(
                    Diagnostic::error(
                        item.ret.span,
                        format!(
                            "`{fname}` returns {} but declares {}",
                            body.ty,
                            want.kind_name()
                        ),
                    )
                    .with_label("declared here")
                    .with_hint(format!(
                        "declare `-> {}`, or return a value of the declared type",
                        body.ty.kind_name()
                    ))
                    .with_related(span, "called here"),
                );
                return TExpr::error(span);
            }
        }
        let ty = body.ty.clone();
        let mut result = body;
        for (v, val) in vars.into_iter().zip(values).rev() {
            let t = result.ty.clone();
            result = TExpr::new(TKind::Let(v, Box::new(val), Box::new(result)), t, span);
        }
        result.ty = ty;
        result.span = span;
        result
    }

    /// The arguments of a call of `item` by parameter (positional, then named), and
    /// whether every one found its parameter (None: too many positional ones).
    fn bind_user_args<'e>(
        &mut self,
        item: &Item,
        args: &'e [Arg],
        span: Span,
    ) -> Option<(Vec<Option<&'e Expr>>, bool)> {
        let fname = &item.name.name;
        let mut slots: Vec<Option<&Expr>> = vec![None; item.params.len()];
        let positional: Vec<&Arg> = args.iter().filter(|a| a.name.is_none()).collect();
        if positional.len() > item.params.len() {
            self.error(
                Diagnostic::error(
                    span,
                    format!(
                        "`{fname}` takes {} argument{}, but {} were given",
                        item.params.len(),
                        plural(item.params.len()),
                        positional.len()
                    ),
                )
                .with_hint(signature_of(item)),
            );
            return None;
        }
        for (i, a) in positional.iter().enumerate() {
            slots[i] = Some(&a.value);
        }
        let mut ok = true;
        for a in args.iter().filter(|a| a.name.is_some()) {
            let n = a.name.as_ref().expect("named");
            match item.params.iter().position(|p| p.name.name == n.name) {
                Some(i) if slots[i].is_none() => slots[i] = Some(&a.value),
                Some(_) => {
                    self.error(Diagnostic::error(
                        n.span,
                        format!("argument `{}` given twice", n.name),
                    ));
                    ok = false;
                }
                None => {
                    let hint =
                        did_you_mean(&n.name, item.params.iter().map(|p| p.name.name.as_str()));
                    self.error(
                        Diagnostic::error(
                            n.span,
                            format!("`{fname}` has no parameter `{}`", n.name),
                        )
                        .with_hint_opt(hint),
                    );
                    ok = false;
                }
            }
        }
        Some((slots, ok))
    }

    /// Each parameter's checked value (its argument or its default) and declared type.
    fn user_arg_values(
        &mut self,
        item: &Item,
        slots: &[Option<&Expr>],
        ok: &mut bool,
        span: Span,
    ) -> (Vec<TExpr>, Vec<Option<Ty>>) {
        let fname = &item.name.name;
        let mut values: Vec<TExpr> = Vec::new();
        let mut declared: Vec<Option<Ty>> = Vec::new();
        for (p, slot) in item.params.iter().zip(slots) {
            let want = self.type_from_ast(&p.ty);
            let v = match (slot, &p.default) {
                (Some(e), _) => self.check_expr_expect(e, want.as_ref()),
                (None, Some(d)) => {
                    let facts = std::mem::replace(&mut self.allow_facts, false);
                    let v = self.check_expr_expect(d, want.as_ref());
                    self.allow_facts = facts;
                    v
                }
                (None, None) => {
                    self.error(
                        Diagnostic::error(
                            span,
                            format!("`{fname}` {} `{}`", super::MISSING_ARGUMENT, p.name.name),
                        )
                        .with_hint(format!("`{}` has no default", p.name.name)),
                    );
                    *ok = false;
                    TExpr::error(span)
                }
            };
            values.push(v);
            declared.push(want);
        }
        (values, declared)
    }

    /// The types the parameters are bound at: each argument's, lifted over lists (the
    /// bool says whether a scalar parameter got a list) or with a scalar splatted into a
    /// list parameter (`values` is rewritten); None after a type error.
    fn bind_user_types(
        &mut self,
        item: &Item,
        values: &mut [TExpr],
        declared: &[Option<Ty>],
        span: Span,
    ) -> Option<(Vec<Ty>, bool)> {
        let fname = &item.name.name;
        let first_list = values.iter().position(|v| v.ty.is_list());
        let mut lifted = false;
        let mut bound_tys = Vec::new();
        for i in 0..values.len() {
            let want = declared[i].clone().expect("checked above");
            let have = values[i].ty.clone();
            if kind_compatible(&want, &have) {
                bound_tys.push(have);
            } else if !want.is_list() && have.is_list() && kind_compatible(&want, have.elem()) {
                lifted = true;
                bound_tys.push(have);
            } else if want.is_list() && !have.is_list() && kind_compatible(want.elem(), &have) {
                let Some(li) = first_list else {
                    self.error(
                        Diagnostic::error(
                            values[i].span,
                            format!(
                                "`{}` is a list parameter; pass a list",
                                item.params[i].name.name
                            ),
                        )
                        .with_hint("e.g. [0.5, 0.5], one value per model"),
                    );
                    return None;
                };
                let like = values[li].clone();
                let v = std::mem::replace(&mut values[i], TExpr::error(span));
                let sp = v.span;
                let t = Ty::list(v.ty.clone());
                values[i] = TExpr::new(TKind::Splat(Box::new(v), Box::new(like)), t.clone(), sp);
                bound_tys.push(t);
            } else {
                self.error(
                    Diagnostic::error(
                        values[i].span,
                        format!(
                            "`{fname}`'s `{}` is {}, but this is {}",
                            item.params[i].name.name,
                            want.kind_name(),
                            have
                        ),
                    )
                    .with_label(format!("this is {}", have.kind_name())),
                );
                return None;
            }
        }
        Some((bound_tys, lifted))
    }
}

/// `name(a: T, b: U = 1.0)`, as written, for hints.
fn signature_of(item: &Item) -> String {
    let params: Vec<String> = item
        .params
        .iter()
        .map(|p| {
            let ty = crate::syntax::print::type_str(&p.ty);
            match &p.default {
                Some(d) => format!(
                    "{}: {ty} = {}",
                    p.name.name,
                    crate::syntax::print::source_expr(d)
                ),
                None => format!("{}: {ty}", p.name.name),
            }
        })
        .collect();
    format!("{}({})", item.name.name, params.join(", "))
}
