//! The checker's core: scopes, statements, names, operators and literals.
//! Calls (builtin and user) are in `calls.rs`; programs and merges in `program.rs`.

use super::tast::{Fact, TExpr, TKind, VarId};
use super::ty::{Dim, Shape, Ty, broadcast, shape_str};
use super::{ops::Op, suggest::did_you_mean};
use crate::diag::{Diagnostic, Span};
use crate::syntax::ast::*;
use crate::syntax::limits::Limits;
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

/// Resolves the shape of `load(path, tensor)` in the REPL.
pub type LoadShapeFn<'a> = &'a dyn Fn(&str, &str) -> Result<Vec<usize>, String>;

/// Diagnostics one checker reports at most.
pub(super) const MAX_DIAGNOSTICS: usize = 50;

pub(crate) struct Checker<'p> {
    pub items: HashMap<&'p str, &'p Item>,
    pub diags: Vec<Diagnostic>,
    /// Name of every variable ever bound, indexed by `VarId`.
    pub var_names: Vec<String>,
    scope: Vec<(String, VarId, Ty)>,
    pub call_stack: Vec<String>,
    /// Rank of the base tensor the program is checked for.
    pub rank: usize,
    pub allow_facts: bool,
    pub load_shape: Option<LoadShapeFn<'p>>,
    pub limits: Limits,
    /// Expressions this check may still type ([`Limits::max_check_work`]), shared by
    /// every checker of one program.
    pub work_left: Rc<Cell<u64>>,
    /// Where each helper on `call_stack` was called (the merge itself has none).
    pub call_spans: Vec<Span>,
    /// Whether this checker has reported running out of work.
    pub(super) out_of_work: bool,
}

/// How an elementwise operation types its result.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Class {
    /// Arithmetic that keeps ints (+, -, *, abs, min, ...).
    Numeric,
    /// Arithmetic that always gives f32 (/, sqrt, exp, ...).
    Float,
    /// Comparisons: numbers in, Mask/bool out.
    Compare,
    /// and/or/not: masks and bools in and out.
    Logic,
}

impl<'p> Checker<'p> {
    pub fn new(program: Option<&'p Program>, rank: usize) -> Self {
        let items = program
            .map(|p| p.items.iter().map(|i| (i.name.name.as_str(), i)).collect())
            .unwrap_or_default();
        Checker {
            items,
            diags: Vec::new(),
            var_names: Vec::new(),
            scope: Vec::new(),
            call_stack: Vec::new(),
            rank,
            allow_facts: true,
            load_shape: None,
            limits: Limits::DEFAULT,
            work_left: Rc::new(Cell::new(Limits::DEFAULT.max_check_work)),
            call_spans: Vec::new(),
            out_of_work: false,
        }
    }

    // ---- scopes ----

    pub fn bind(&mut self, name: &str, ty: Ty) -> VarId {
        let id = self.var_names.len() as VarId;
        self.var_names.push(name.to_string());
        self.scope.push((name.to_string(), id, ty));
        id
    }

    pub fn scope_mark(&self) -> usize {
        self.scope.len()
    }

    pub fn scope_reset(&mut self, mark: usize) {
        self.scope.truncate(mark);
    }

    /// Swaps in an empty scope (a function body sees only its parameters).
    pub fn take_scope(&mut self) -> Vec<(String, VarId, Ty)> {
        std::mem::take(&mut self.scope)
    }

    pub fn restore_scope(&mut self, saved: Vec<(String, VarId, Ty)>) {
        self.scope = saved;
    }

    /// Whether the body being checked is a helper `fn` (not a merge).
    fn in_fn(&self) -> bool {
        self.call_stack
            .last()
            .and_then(|n| self.items.get(n.as_str()))
            .is_some_and(|i| i.kind == ItemKind::Fn)
    }

    fn lookup(&self, name: &str) -> Option<(VarId, Ty)> {
        self.scope
            .iter()
            .rev()
            .find(|(n, _, _)| n == name)
            .map(|(_, id, ty)| (*id, ty.clone()))
    }

    // ---- statements ----

    /// Checks `let`s followed by `value` in the current scope, producing nested `Let`s.
    pub fn check_lets_then<F>(&mut self, lets: &[Stmt], value: F) -> TExpr
    where
        F: FnOnce(&mut Self) -> TExpr,
    {
        let mark = self.scope_mark();
        let mut bound = Vec::new();
        for s in lets {
            if let Stmt::Let {
                name, ty, value, ..
            } = s
            {
                let want = ty.as_ref().and_then(|t| self.type_from_ast(t));
                let v = self.check_expr_expect(value, want.as_ref());
                if let (Some(t), Some(w)) = (ty, &want) {
                    self.check_annotation(t, w, &v);
                }
                let id = self.bind(&name.name, v.ty.clone());
                bound.push((id, v));
            }
        }
        let mut result = value(self);
        self.scope_reset(mark);
        for (id, v) in bound.into_iter().rev() {
            let ty = result.ty.clone();
            let span = v.span.to(result.span);
            result = TExpr::new(TKind::Let(id, Box::new(v), Box::new(result)), ty, span);
        }
        result
    }

    /// A body: `let`s, then exactly one `return`, last.
    pub fn check_body(&mut self, item: &Item) -> TExpr {
        let mut lets = Vec::new();
        let mut ret: Option<&Expr> = None;
        for s in &item.body {
            match s {
                Stmt::Let { span, .. } | Stmt::Return { span, .. } if ret.is_some() => {
                    let msg = if matches!(s, Stmt::Return { .. }) {
                        "a second `return`"
                    } else {
                        "code after `return` never runs"
                    };
                    self.error(
                        Diagnostic::error(*span, msg)
                            .with_label("after the `return`")
                            .with_hint(
                                "a body is `let` bindings followed by exactly one `return`, last",
                            ),
                    );
                }
                Stmt::Let { .. } => lets.push(s.clone()),
                Stmt::Return { value, .. } => ret = Some(value),
            }
        }
        let Some(ret) = ret else {
            self.error(
                Diagnostic::error(item.end, format!("`{}` has no `return`", item.name.name))
                    .with_label("the body ends here")
                    .with_hint("end the body with `return expression`"),
            );
            return TExpr::error(item.end);
        };
        self.check_lets_then(&lets, |c| c.check_expr(ret))
    }

    fn check_annotation(&mut self, t: &TypeExpr, want: &Ty, v: &TExpr) {
        if !v.ty.is_error() && !kind_compatible(want, &v.ty) {
            self.error(
                Diagnostic::error(
                    t.span,
                    format!("declared `{}` but the value is {}", want.kind_name(), v.ty),
                )
                .with_label(format!("the value is {}", v.ty.kind_name()))
                .with_hint_opt(annotation_hint(want, &v.ty)),
            );
        }
    }

    /// A written type (`Tensor`, `[f32]`, ...); shapes are the base's.
    pub fn type_from_ast(&mut self, t: &TypeExpr) -> Option<Ty> {
        match &t.kind {
            TypeExprKind::List(e) => {
                let inner = self.type_from_ast(e)?;
                if inner.is_list() {
                    self.error(Diagnostic::error(t.span, "lists cannot be nested"));
                    return None;
                }
                Some(Ty::list(inner))
            }
            TypeExprKind::Named(n) => {
                let base = super::ty::base_shape(self.rank);
                Some(match n.as_str() {
                    "f32" => Ty::F32,
                    "int" => Ty::Int,
                    "bool" => Ty::Bool,
                    "str" => Ty::Str,
                    "Tensor" => Ty::Tensor(base),
                    "Mask" => Ty::Mask(base),
                    _ => {
                        let hint = unknown_type_hint(n);
                        self.error(
                            Diagnostic::error(t.span, format!("unknown type `{n}`"))
                                .with_hint_opt(hint)
                                .with_note("types: f32, int, bool, str, Tensor, Mask and lists of them such as [f32]"),
                        );
                        return None;
                    }
                })
            }
        }
    }

    // ---- expressions ----

    pub fn check_expr(&mut self, e: &Expr) -> TExpr {
        self.check_expr_expect(e, None)
    }

    /// `expect` only steers array literals: `[0.5, 0.5]` is a list where a list is expected.
    pub fn check_expr_expect(&mut self, e: &Expr, expect: Option<&Ty>) -> TExpr {
        if !self.spend(1, e.span) {
            return TExpr::error(e.span);
        }
        stacker::maybe_grow(64 * 1024, 4 * 1024 * 1024, || {
            self.check_expr_inner(e, expect)
        })
    }

    fn check_expr_inner(&mut self, e: &Expr, expect: Option<&Ty>) -> TExpr {
        let span = e.span;
        match &e.kind {
            ExprKind::Number { value, is_int } => self.number(*value, *is_int, span),
            ExprKind::Bool(b) => TExpr::new(TKind::Bool(*b), Ty::Bool, span),
            ExprKind::Str(s) => TExpr::new(TKind::Str(s.as_str().into()), Ty::Str, span),
            ExprKind::Name(n) => self.name(n, span),
            ExprKind::Paren(inner) => {
                let mut t = self.check_expr_expect(inner, expect);
                t.span = span;
                t
            }
            ExprKind::Unary(op, x) => {
                let x = self.check_expr(x);
                match op {
                    UnOp::Neg => self.elementwise(Op::Neg, vec![x], Class::Numeric, span, "-"),
                    UnOp::Not => self.elementwise(Op::Not, vec![x], Class::Logic, span, "not"),
                }
            }
            ExprKind::Binary(op, a, b) => self.binary(*op, a, b, span),
            ExprKind::Call { func, args } => self.check_call(func, args, span),
            ExprKind::Index(list, index) => self.index(list, index, span),
            ExprKind::Array(xs) => self.array(xs, expect, span),
            ExprKind::Lambda { .. } => {
                self.error(
                    Diagnostic::error(
                        span,
                        "a lambda can only be the last argument of `fold` or `repeat`",
                    )
                    .with_hint("fold(xs, |acc, x| acc + x) or repeat(n, init, |acc, i| ...)"),
                );
                TExpr::error(span)
            }
            ExprKind::If { cond, then, els } => self.if_expr(cond, then, els, span),
            ExprKind::Block(b) => {
                let mut t = self.check_lets_then(&b.lets, |c| c.check_expr(&b.value));
                t.span = span;
                t
            }
        }
    }

    fn number(&mut self, value: f64, is_int: bool, span: Span) -> TExpr {
        if is_int {
            if value.abs() <= 9.007_199_254_740_992e15 {
                return TExpr::new(TKind::Int(value as i64), Ty::Int, span);
            }
            self.error(
                Diagnostic::error(span, "integer literal too large")
                    .with_hint("integers must be below 2^53; write a float such as 1e20"),
            );
            return TExpr::error(span);
        }
        let f = value as f32;
        if !f.is_finite() {
            self.error(
                Diagnostic::error(span, "number is not finite in f32")
                    .with_label("larger than 3.4e38")
                    .with_hint("literals must be finite f32 values; non-finite results are reported at run time"),
            );
            return TExpr::error(span);
        }
        TExpr::new(TKind::F32(f), Ty::F32, span)
    }

    fn name(&mut self, n: &str, span: Span) -> TExpr {
        if let Some((id, ty)) = self.lookup(n) {
            return TExpr::new(TKind::Var(id), ty, span);
        }
        if self.allow_facts
            && let Some(f) = Fact::lookup(n)
        {
            return TExpr::new(TKind::Fact(f), f.ty(), span);
        }
        let hint = match n {
            "True" | "False" => Some(format!("write `{}`", n.to_ascii_lowercase())),
            "None" | "null" | "nil" => Some("there is no null value".to_string()),
            "nan" | "NaN" | "inf" | "Inf" | "infinity" => Some(
                "non-finite values cannot be written; use a large finite number such as 1e30"
                    .to_string(),
            ),
            "np" | "torch" | "math" | "numpy" => Some(
                "there are no modules: call builtins directly, e.g. mean(x, axis=1)".to_string(),
            ),
            _ if self.items.contains_key(n) || super::builtins::lookup(n).is_some() => {
                Some(format!("`{n}` is a function; call it: `{n}(...)`"))
            }
            "base" | "models" if self.in_fn() => Some(format!(
                "a `fn` sees only its own parameters: pass `{n}` in, e.g. fn f(x: Tensor, xs: [Tensor])"
            )),
            _ => {
                let mut cands: Vec<&str> = self.scope.iter().map(|(s, _, _)| s.as_str()).collect();
                if self.allow_facts {
                    cands.extend(Fact::ALL.iter().map(|f| f.0));
                }
                did_you_mean(n, cands)
            }
        };
        let mut d =
            Diagnostic::error(span, format!("unknown name `{n}`")).with_label("not defined here");
        d = d.with_hint_opt(hint);
        if !self.allow_facts && Fact::lookup(n).is_some() {
            d = d.with_note("tensor facts are not available in parameter defaults");
        }
        self.error(d);
        TExpr::error(span)
    }

    fn binary(&mut self, op: BinOp, a: &Expr, b: &Expr, span: Span) -> TExpr {
        let ta = self.check_expr(a);
        let tb = self.check_expr(b);
        let sym = op.symbol();
        let (o, class) = match op {
            BinOp::Add => (Op::Add, Class::Numeric),
            BinOp::Sub => (Op::Sub, Class::Numeric),
            BinOp::Mul => (Op::Mul, Class::Numeric),
            BinOp::Div => (Op::Div, Class::Float),
            BinOp::Pow => (Op::Pow, Class::Float),
            BinOp::Eq => (Op::Eq, Class::Compare),
            BinOp::Ne => (Op::Ne, Class::Compare),
            BinOp::Lt => (Op::Lt, Class::Compare),
            BinOp::Le => (Op::Le, Class::Compare),
            BinOp::Gt => (Op::Gt, Class::Compare),
            BinOp::Ge => (Op::Ge, Class::Compare),
            BinOp::And => (Op::And, Class::Logic),
            BinOp::Or => (Op::Or, Class::Logic),
        };
        let strs = matches!(ta.ty.elem(), Ty::Str) || matches!(tb.ty.elem(), Ty::Str);
        if strs && class == Class::Compare {
            return self.string_compare(op, ta, tb, span);
        }
        self.elementwise(o, vec![ta, tb], class, span, sym)
    }

    fn string_compare(&mut self, op: BinOp, a: TExpr, b: TExpr, span: Span) -> TExpr {
        if a.ty.is_error() || b.ty.is_error() {
            return TExpr::error(span);
        }
        let o = match op {
            BinOp::Eq => Op::StrEq,
            BinOp::Ne => Op::StrNe,
            _ => {
                self.error(
                    Diagnostic::error(
                        span,
                        format!(
                            "strings can only be compared with == and !=, not {}",
                            op.symbol()
                        ),
                    )
                    .with_hint("use contains(name, \"mlp\"), starts_with or ends_with"),
                );
                return TExpr::error(span);
            }
        };
        if a.ty != Ty::Str || b.ty != Ty::Str {
            self.error(
                Diagnostic::error(span, format!("cannot compare {} with {}", a.ty, b.ty))
                    .with_hint("tensor facts: `kind == \"mlp\"`, `layer < 4`"),
            );
            return TExpr::error(span);
        }
        TExpr::new(TKind::Op(o, vec![a, b]), Ty::Bool, span)
    }

    /// Types an elementwise operation: lifts over lists, broadcasts shapes.
    pub fn elementwise(
        &mut self,
        op: Op,
        args: Vec<TExpr>,
        class: Class,
        span: Span,
        what: &str,
    ) -> TExpr {
        match self.elementwise_ty(&args, class, span, what, op) {
            Some(ty) => TExpr::new(TKind::Op(op, args), ty, span),
            None => TExpr::error(span),
        }
    }

    pub fn elementwise_ty(
        &mut self,
        args: &[TExpr],
        class: Class,
        span: Span,
        what: &str,
        op: Op,
    ) -> Option<Ty> {
        if args.iter().any(|a| a.ty.is_error()) {
            return None;
        }
        let lifted = args.iter().any(|a| a.ty.is_list());
        let mut shape: Option<Shape> = None;
        let mut all_int = true;
        for a in args {
            let t = a.ty.elem();
            let ok = match class {
                Class::Logic => matches!(t, Ty::Bool | Ty::Mask(_)),
                _ => t.is_numeric(),
            };
            if !ok {
                let d = if class == Class::Logic {
                    Diagnostic::error(
                        a.span,
                        format!("`{what}` needs masks or bools, found {}", a.ty),
                    )
                    .with_hint("make a mask with a comparison, e.g. `x > 0`")
                } else {
                    Diagnostic::error(
                        a.span,
                        format!("`{what}` needs numbers or tensors, found {}", a.ty),
                    )
                };
                self.error(d.with_label(format!("this is {}", a.ty.kind_name())));
                return None;
            }
            all_int &= matches!(t, Ty::Int);
            if let Some(s) = t.shape() {
                shape = Some(match shape {
                    None => s.clone(),
                    Some(prev) => match broadcast(&prev, s) {
                        Ok(b) => b,
                        Err((x, y)) => {
                            self.shape_error(span, what, &prev, s, x, y);
                            return None;
                        }
                    },
                });
            }
        }
        let int_preserving = matches!(
            op,
            Op::Add
                | Op::Sub
                | Op::Mul
                | Op::Neg
                | Op::Abs
                | Op::Sign
                | Op::Min
                | Op::Max
                | Op::Clamp
        );
        let elem = match (class, shape) {
            (Class::Numeric | Class::Float, Some(s)) => Ty::Tensor(s),
            (Class::Compare | Class::Logic, Some(s)) => Ty::Mask(s),
            (Class::Numeric, None) if all_int && int_preserving => Ty::Int,
            (Class::Numeric | Class::Float, None) => Ty::F32,
            (Class::Compare | Class::Logic, None) => Ty::Bool,
        };
        Some(if lifted { Ty::list(elem) } else { elem })
    }

    pub fn shape_error(&mut self, span: Span, what: &str, a: &[Dim], b: &[Dim], x: Dim, y: Dim) {
        let mut d = Diagnostic::error(
            span,
            format!(
                "shapes {} and {} do not broadcast in `{what}`",
                shape_str(a),
                shape_str(b)
            ),
        )
        .with_label(format!("dimension {x} against {y}"));
        d = d.with_hint(
            "reductions keep their axis by default so results broadcast back; \
             check axis= and keepdim=false",
        );
        if a.iter().chain(b).any(|d| matches!(d, Dim::Sym(_))) {
            d = d.with_note(format!(
                "d0, d1, ... are the base tensor's dimensions (checked for {}-D tensors)",
                self.rank
            ));
        }
        self.error(d);
    }

    fn index(&mut self, list: &Expr, index: &Expr, span: Span) -> TExpr {
        let l = self.check_expr(list);
        let i = self.check_expr(index);
        if l.ty.is_error() || i.ty.is_error() {
            return TExpr::error(span);
        }
        let Ty::List(elem) = l.ty.clone() else {
            let hint = if l.ty.shape().is_some() {
                "tensors cannot be indexed; reduce along an axis with sum(x, axis=0), or select with where(...)"
            } else {
                "only lists (like `models` or per-model parameters) can be indexed"
            };
            self.error(
                Diagnostic::error(list.span, format!("cannot index {}", l.ty))
                    .with_label("not a list")
                    .with_hint(hint),
            );
            return TExpr::error(span);
        };
        if i.ty != Ty::Int {
            self.error(
                Diagnostic::error(
                    index.span,
                    format!("list index must be an int, found {}", i.ty),
                )
                .with_hint("write models[0], or models[-1] for the last"),
            );
            return TExpr::error(span);
        }
        TExpr::new(TKind::Index(Box::new(l), Box::new(i)), *elem, span)
    }

    fn if_expr(&mut self, cond: &Expr, then: &BlockExpr, els: &BlockExpr, span: Span) -> TExpr {
        let c = self.check_expr(cond);
        let a = self.check_lets_then(&then.lets, |ch| ch.check_expr(&then.value));
        let b = self.check_lets_then(&els.lets, |ch| ch.check_expr(&els.value));
        if c.ty.is_error() || a.ty.is_error() || b.ty.is_error() {
            return TExpr::error(span);
        }
        if !matches!(c.ty.elem(), Ty::Bool) {
            let hint = if c.ty.elem().shape().is_some() {
                "`if` chooses by one bool; to choose per element use where(mask, a, b)"
            } else {
                "compare to make a bool, e.g. `if layer < 8 { ... }`"
            };
            self.error(
                Diagnostic::error(
                    cond.span,
                    format!("`if` needs a bool condition, found {}", c.ty),
                )
                .with_hint(hint),
            );
            return TExpr::error(span);
        }
        let lifted = c.ty.is_list();
        let joined = if lifted {
            join(a.ty.elem(), b.ty.elem())
        } else {
            join(&a.ty, &b.ty)
        };
        let Some(j) = joined else {
            self.error(
                Diagnostic::error(span, format!("the branches differ: {} and {}", a.ty, b.ty))
                    .with_hint(join_hint(&a.ty, &b.ty)),
            );
            return TExpr::error(span);
        };
        let ty = if lifted {
            Ty::list(j.elem().clone())
        } else {
            j
        };
        TExpr::new(TKind::If(Box::new(c), Box::new(a), Box::new(b)), ty, span)
    }
}

/// What to do when a `let` annotation and its value disagree.
fn annotation_hint(want: &Ty, have: &Ty) -> Option<String> {
    match (want.is_list(), have.is_list()) {
        (false, true) => Some(format!(
            "this holds one value per model; reduce it (mean(...), sum(...), xs[0]) or declare `{}`",
            have.kind_name()
        )),
        (true, false) => Some(format!(
            "this is one value, not a list; declare `{}`",
            have.kind_name()
        )),
        _ => Some(format!(
            "declare `{}`, or leave the type out",
            have.kind_name()
        )),
    }
}

/// The hint for an unknown type name.
pub(crate) fn unknown_type_hint(n: &str) -> Option<String> {
    match n {
        "float" | "f64" | "double" | "number" | "float32" => {
            Some("did you mean `f32`?".to_string())
        }
        "i32" | "i64" | "usize" | "integer" => Some("did you mean `int`?".to_string()),
        "list" | "List" => Some("list types are written `[f32]` or `[Tensor]`".to_string()),
        _ => did_you_mean(n, super::ty::TYPE_NAMES),
    }
}

/// Whether a value of type `have` may be passed where `want` is declared (ignoring shapes).
pub(crate) fn kind_compatible(want: &Ty, have: &Ty) -> bool {
    match (want, have) {
        (_, Ty::Error) | (Ty::Error, _) => true,
        (Ty::Tensor(_), Ty::Tensor(_) | Ty::Mask(_)) => true,
        (Ty::Mask(_), Ty::Mask(_)) => true,
        (Ty::F32, Ty::F32 | Ty::Int) => true,
        (Ty::Int, Ty::Int) | (Ty::Bool, Ty::Bool) | (Ty::Str, Ty::Str) => true,
        (Ty::List(w), Ty::List(h)) => kind_compatible(w, h),
        _ => false,
    }
}

/// The type of a value that is `a` or `b` (for `if` branches, list elements, fold and
/// repeat accumulators). Run time never converts such a value, so only types with the same
/// representation join: int with f32, and a mask with a tensor of the same shape. A number
/// does not join a tensor, and shapes do not broadcast (the value keeps its own shape).
pub(crate) fn join(a: &Ty, b: &Ty) -> Option<Ty> {
    if a == b {
        return Some(a.clone());
    }
    match (a, b) {
        (Ty::Error, _) | (_, Ty::Error) => Some(Ty::Error),
        (Ty::List(x), Ty::List(y)) => join(x, y).map(Ty::list),
        (Ty::Int, Ty::F32) | (Ty::F32, Ty::Int) => Some(Ty::F32),
        (Ty::Mask(x), Ty::Tensor(y)) | (Ty::Tensor(x), Ty::Mask(y)) if x == y => {
            Some(Ty::Tensor(x.clone()))
        }
        _ => None,
    }
}

/// What to do when `a` and `b` do not join.
pub(crate) fn join_hint(a: &Ty, b: &Ty) -> &'static str {
    if a.is_list() != b.is_list() {
        return "one is a list over the models and the other is not; reduce the list (sum, mean, xs[0]) or make both lists";
    }
    let (a, b) = (a.elem(), b.elem());
    match (a.shape(), b.shape()) {
        (Some(_), None) | (None, Some(_)) if a.is_numeric() && b.is_numeric() => {
            "a number is not a tensor: write the tensor form, e.g. full_like(base, 0.5) or zeros_like(base)"
        }
        (Some(_), Some(_)) => {
            "the shapes differ: bring the smaller one to the full shape first, e.g. zeros_like(base) + mean(base, axis=-1)"
        }
        _ => "both must be the same kind of value",
    }
}
