//! A type-directed random program generator: well-typed merge programs of about a
//! requested size, deterministic for a seed. Used by the property tests, fuzzing,
//! differential backend tests and the self-develop loop's built-in generator.
//!
//! Every program it writes passes `check_source` at ranks 1 and 2: shapes are
//! tracked symbolically (the base's shape, or that shape with axis 0 and/or the
//! last axis reduced with keepdim), types exactly as the checker computes them,
//! and only constructs valid at both ranks are used (axis=0 / axis=-1, literal
//! list indices 0 and -1 or a fold's model index, small literal repeat counts).
//! Divisions, logarithms, square roots and exponentials are guarded so most
//! programs stay finite; NaN or inf at run time is still possible and allowed.

mod builtins;
mod expr;
mod ops;

use crate::diag::Span;
use crate::semantics::rng::SplitMix64;
use crate::syntax::ast::*;

/// Largest `size` honoured; larger requests are clamped so programs stay inside
/// the language's size limits (syntax nodes, statements, inlined nodes).
pub const MAX_SIZE: usize = 2000;
/// Deepest nesting of generated expressions (bracket nesting stays under 32).
const MAX_DEPTH: usize = 9;

/// A well-typed program of roughly `size` expression nodes.
pub fn generate(seed: u64, size: usize) -> Program {
    // Leaves average about two nodes, so the internal budget is half the target.
    Gen::new(seed).program(size.clamp(1, MAX_SIZE).div_ceil(2))
}

/// `generate`, printed as source text.
pub fn generate_source(seed: u64, size: usize) -> String {
    crate::syntax::print::source(&generate(seed, size))
}

/// Number of expression nodes in a program (the measure `size` approximates).
pub fn program_size(p: &Program) -> usize {
    p.items
        .iter()
        .flat_map(|i| &i.body)
        .map(|s| match s {
            Stmt::Let { value, .. } | Stmt::Return { value, .. } => expr_size(value),
        })
        .sum()
}

fn expr_size(e: &Expr) -> usize {
    1 + match &e.kind {
        ExprKind::Number { .. } | ExprKind::Bool(_) | ExprKind::Str(_) | ExprKind::Name(_) => 0,
        ExprKind::Paren(a) | ExprKind::Unary(_, a) => expr_size(a),
        ExprKind::Binary(_, a, b) | ExprKind::Index(a, b) => expr_size(a) + expr_size(b),
        ExprKind::Call { args, .. } => args.iter().map(|a| expr_size(&a.value)).sum(),
        ExprKind::Array(xs) => xs.iter().map(expr_size).sum(),
        ExprKind::Lambda { body, .. } => expr_size(body),
        ExprKind::If { cond, then, els } => expr_size(cond) + block_size(then) + block_size(els),
        ExprKind::Block(b) => block_size(b),
    }
}

fn block_size(b: &BlockExpr) -> usize {
    let lets: usize = b
        .lets
        .iter()
        .map(|s| match s {
            Stmt::Let { value, .. } | Stmt::Return { value, .. } => expr_size(value),
        })
        .sum();
    lets + expr_size(&b.value)
}

/// A shape relative to the base's: the base's own, or with axis 0 (`k0 = false`) and/or
/// the last axis (`k1 = false`) reduced to 1. At rank 1 every reduced shape is `[1]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Full,
    Red(bool, bool),
}

impl Shape {
    /// NumPy broadcasting of two such shapes (always succeeds).
    fn or(self, o: Shape) -> Shape {
        match (self, o) {
            (Shape::Full, _) | (_, Shape::Full) => Shape::Full,
            (Shape::Red(a, b), Shape::Red(c, d)) => Shape::Red(a || c, b || d),
        }
    }
    const ALL: [Shape; 5] = [
        Shape::Full,
        Shape::Red(true, false),
        Shape::Red(false, true),
        Shape::Red(false, false),
        Shape::Red(true, true),
    ];
}

/// An element type, with tensors' symbolic shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    Int,
    F32,
    Bool,
    Tensor(Shape),
    Mask(Shape),
}

/// A generated expression's exact type: an element type, or a list of them over the models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GTy {
    elem: Elem,
    list: bool,
}

impl GTy {
    fn one(elem: Elem) -> GTy {
        GTy { elem, list: false }
    }
    fn list(elem: Elem) -> GTy {
        GTy { elem, list: true }
    }
    fn with_list(self, list: bool) -> GTy {
        GTy { list, ..self }
    }
    /// The type as written in a program (shapes are implicit).
    fn written(self) -> String {
        let e = match self.elem {
            Elem::Int => "int",
            Elem::F32 => "f32",
            Elem::Bool => "bool",
            Elem::Tensor(_) => "Tensor",
            Elem::Mask(_) => "Mask",
        };
        if self.list {
            format!("[{e}]")
        } else {
            e.to_string()
        }
    }
}

const T_FULL: Elem = Elem::Tensor(Shape::Full);

struct Var {
    name: String,
    ty: GTy,
    /// A fold's model index: always a valid index into a list over the models.
    model_index: bool,
}

struct Helper {
    name: String,
    params: Vec<(String, GTy, Option<Expr>)>,
    ret: GTy,
}

pub(crate) struct Gen {
    rng: SplitMix64,
    scope: Vec<Var>,
    fresh: usize,
    depth: usize,
    helpers: Vec<Helper>,
    /// Helper calls the current item may still make (bounds inlined size).
    calls_left: usize,
    /// `repeat` and `fold` bodies being generated around this point (bounds the cost).
    loops: usize,
}

// ---- AST builders (spans are irrelevant: programs are printed and re-parsed) ----

fn ex(kind: ExprKind) -> Expr {
    Expr {
        kind,
        span: Span::default(),
    }
}
fn ident(name: &str) -> Ident {
    Ident {
        name: name.to_string(),
        span: Span::default(),
    }
}
fn name(n: &str) -> Expr {
    ex(ExprKind::Name(n.to_string()))
}
fn int(v: i64) -> Expr {
    let e = ex(ExprKind::Number {
        value: v.unsigned_abs() as f64,
        is_int: true,
    });
    if v < 0 { un(UnOp::Neg, e) } else { e }
}
fn flt(v: f64) -> Expr {
    let e = ex(ExprKind::Number {
        value: v.abs(),
        is_int: false,
    });
    if v < 0.0 { un(UnOp::Neg, e) } else { e }
}
fn string(s: &str) -> Expr {
    ex(ExprKind::Str(s.to_string()))
}
fn un(op: UnOp, a: Expr) -> Expr {
    ex(ExprKind::Unary(op, Box::new(a)))
}
fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
    ex(ExprKind::Binary(op, Box::new(a), Box::new(b)))
}
fn call(f: &str, args: Vec<Expr>) -> Expr {
    call_kw(f, args.into_iter().map(pos).collect())
}
fn call_kw(f: &str, args: Vec<Arg>) -> Expr {
    ex(ExprKind::Call {
        func: ident(f),
        args,
    })
}
fn pos(value: Expr) -> Arg {
    Arg { name: None, value }
}
fn kw(n: &str, value: Expr) -> Arg {
    Arg {
        name: Some(ident(n)),
        value,
    }
}
fn block(lets: Vec<Stmt>, value: Expr) -> BlockExpr {
    BlockExpr {
        lets,
        value: Box::new(value),
        span: Span::default(),
    }
}
fn let_stmt(n: &str, ty: Option<TypeExpr>, value: Expr) -> Stmt {
    Stmt::Let {
        name: ident(n),
        ty,
        value,
        span: Span::default(),
    }
}
fn type_expr(written: &str) -> TypeExpr {
    let kind = match written.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        Some(inner) => TypeExprKind::List(Box::new(type_expr(inner))),
        None => TypeExprKind::Named(written.to_string()),
    };
    TypeExpr {
        kind,
        span: Span::default(),
    }
}

impl Gen {
    fn new(seed: u64) -> Self {
        Gen {
            rng: SplitMix64::new(seed ^ 0x6D65_7267_6563_2167),
            scope: Vec::new(),
            fresh: 0,
            depth: 0,
            helpers: Vec::new(),
            calls_left: 0,
            loops: 0,
        }
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.fresh += 1;
        format!("{prefix}{}", self.fresh)
    }

    fn bind(&mut self, name: &str, ty: GTy) {
        self.scope.push(Var {
            name: name.to_string(),
            ty,
            model_index: false,
        });
    }

    fn program(&mut self, size: usize) -> Program {
        let n_helpers = if size < 12 { 0 } else { self.rng.below(3) };
        let helper_budget = (size / 5).clamp(3, 100);
        let mut items = Vec::new();
        for i in 0..n_helpers {
            items.push(self.helper(i, helper_budget));
        }
        let rest = size.saturating_sub(n_helpers * helper_budget).max(3);
        let merge = self.merge(rest);
        // Helpers may be defined before or after the merge that calls them.
        let at = if self.rng.chance(0.7) { items.len() } else { 0 };
        items.insert(at, merge);
        Program { items }
    }

    /// A random value for a `let`: mostly tensors, sometimes lists and scalars.
    fn let_type(&mut self) -> GTy {
        let lists = self.can_list();
        loop {
            let t = match self.rng.below(14) {
                0..=3 => GTy::one(T_FULL),
                4 => GTy::one(Elem::Tensor(*self.rng.pick(&Shape::ALL))),
                5 => GTy::one(Elem::Mask(Shape::Full)),
                6 | 7 => GTy::one(Elem::F32),
                8 => GTy::one(Elem::Int),
                9 => GTy::one(Elem::Bool),
                10 | 11 => GTy::list(T_FULL),
                12 => GTy::list(Elem::F32),
                _ => GTy::list(*self.rng.pick(&[
                    Elem::Mask(Shape::Full),
                    Elem::Tensor(Shape::Red(true, false)),
                    Elem::Int,
                    Elem::Bool,
                ])),
            };
            if lists || !t.list {
                return t;
            }
        }
    }

    /// `let`s, then `return` of a value of type `ret`.
    fn body(&mut self, ret: GTy, size: usize) -> Vec<Stmt> {
        let n_lets = if size < 6 {
            0
        } else {
            1 + self.rng.below((size / 10).clamp(1, 200))
        };
        let per = (size / (n_lets + 1)).max(1);
        let mut body = Vec::new();
        for _ in 0..n_lets {
            let t = self.let_type();
            let b = 1 + self.rng.below(2 * per);
            let value = self.expr(t, b);
            let v = self.fresh("v");
            let ann = self.rng.chance(0.15).then(|| type_expr(&t.written()));
            body.push(let_stmt(&v, ann, value));
            self.bind(&v, t);
        }
        let value = self.expr(ret, per.max(2));
        body.push(Stmt::Return {
            value,
            span: Span::default(),
        });
        body
    }

    fn merge(&mut self, size: usize) -> Item {
        self.scope.clear();
        self.calls_left = 3;
        self.bind("base", GTy::one(T_FULL));
        self.bind("models", GTy::list(T_FULL));
        let mut params = vec![
            param("base", "Tensor", None),
            param("models", "[Tensor]", None),
        ];
        for _ in 0..self.rng.below(4) {
            let (prefix, ty, default) = match self.rng.below(8) {
                0 => ("lambda", GTy::one(Elem::F32), self.default_f32()),
                1 => ("density", GTy::one(Elem::F32), flt(0.5)),
                2 => ("weight", GTy::list(Elem::F32), self.default_f32()),
                3 => ("k", GTy::one(Elem::Int), int(self.rng.below(4) as i64)),
                4 => ("flag", GTy::one(Elem::Bool), self.bool_lit()),
                5 => ("ks", GTy::list(Elem::Int), int(1)),
                6 => ("flags", GTy::list(Elem::Bool), self.bool_lit()),
                _ => ("t", GTy::one(Elem::F32), int(1)),
            };
            let n = self.fresh(prefix);
            params.push(param(&n, &ty.written(), Some(default)));
            self.bind(&n, ty);
        }
        let ret = if self.rng.chance(0.9) {
            GTy::one(T_FULL)
        } else {
            GTy::one(Elem::Mask(Shape::Full))
        };
        let body = self.body(ret, size);
        Item {
            kind: ItemKind::Merge,
            name: ident("merged"),
            params,
            ret: type_expr("Tensor"),
            body,
            end: Span::default(),
            span: Span::default(),
        }
    }

    fn default_f32(&mut self) -> Expr {
        flt(*self.rng.pick(&[1.0, 0.5, 0.3, -0.5, 2.0]))
    }

    fn bool_lit(&mut self) -> Expr {
        ex(ExprKind::Bool(self.rng.chance(0.5)))
    }

    /// `fn hN(x: Tensor, ...) -> T`, callable from later items.
    fn helper(&mut self, i: usize, size: usize) -> Item {
        self.scope.clear();
        self.calls_left = 1;
        let mut sig: Vec<(String, GTy, Option<Expr>)> = vec![("x".into(), GTy::one(T_FULL), None)];
        for j in 0..self.rng.below(3) {
            let (ty, default) = match self.rng.below(6) {
                0 => (GTy::one(Elem::F32), Some(self.default_f32())),
                1 => (GTy::one(Elem::F32), None),
                2 => (GTy::one(Elem::Int), Some(int(2))),
                3 => (GTy::one(Elem::Mask(Shape::Full)), None),
                4 => (GTy::list(T_FULL), None),
                _ => (GTy::list(Elem::F32), None),
            };
            sig.push((format!("a{j}"), ty, default));
        }
        let mut params = Vec::new();
        for (n, ty, default) in &sig {
            params.push(param(n, &ty.written(), default.clone()));
            self.bind(n, *ty);
        }
        let mut ret = match self.rng.below(8) {
            0..=2 => GTy::one(T_FULL),
            3 => GTy::one(Elem::Tensor(*self.rng.pick(&Shape::ALL))),
            4 => GTy::one(Elem::Mask(Shape::Full)),
            5 => GTy::one(Elem::F32),
            6 => GTy::one(Elem::Int),
            _ => GTy::one(Elem::Bool),
        };
        if self.can_list() && self.rng.chance(0.25) {
            ret = ret.with_list(true);
        }
        let body = self.body(ret, size);
        let name = format!("h{i}");
        self.helpers.push(Helper {
            name: name.clone(),
            params: sig,
            ret,
        });
        Item {
            kind: ItemKind::Fn,
            name: ident(&name),
            params,
            ret: type_expr(&ret.written()),
            body,
            end: Span::default(),
            span: Span::default(),
        }
    }
}

fn param(n: &str, ty: &str, default: Option<Expr>) -> Param {
    Param {
        name: ident(n),
        ty: type_expr(ty),
        default,
        span: Span::default(),
    }
}

#[cfg(test)]
mod tests;
