//! The checked, typed program: names resolved, helpers inlined, overloads
//! resolved to `Op`s. The interpreter runs it; later stages lower it.

use super::ops::Op;
use super::ty::Ty;
use crate::diag::Span;
use std::fmt::Write;
use std::sync::Arc;

pub type VarId = u32;

/// Read-only facts about the tensor being merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fact {
    /// The tensor's name, e.g. `model.layers.3.mlp.up_proj.weight`.
    Name,
    /// attention | mlp | embedding | norm | other
    Kind,
    /// Layer index, or -1 outside the numbered layers.
    Layer,
    /// Number of layers in the model.
    NLayers,
}

impl Fact {
    pub const ALL: [(&'static str, Fact, &'static str, &'static str); 4] = [
        (
            "name",
            Fact::Name,
            "str",
            "the tensor's name, e.g. \"model.layers.3.mlp.up_proj.weight\"",
        ),
        (
            "kind",
            Fact::Kind,
            "str",
            "\"attention\", \"mlp\", \"embedding\", \"norm\" or \"other\"",
        ),
        (
            "layer",
            Fact::Layer,
            "int",
            "layer index from the name, or -1 outside the numbered layers",
        ),
        (
            "n_layers",
            Fact::NLayers,
            "int",
            "number of layers in the model",
        ),
    ];
    pub fn ty(self) -> Ty {
        match self {
            Fact::Name | Fact::Kind => Ty::Str,
            Fact::Layer | Fact::NLayers => Ty::Int,
        }
    }
    pub fn lookup(name: &str) -> Option<Fact> {
        Fact::ALL.iter().find(|f| f.0 == name).map(|f| f.1)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum TKind {
    Int(i64),
    F32(f32),
    Bool(bool),
    Str(Arc<str>),
    /// A tensor literal (row-major).
    TensorLit {
        shape: Vec<usize>,
        data: Arc<Vec<f32>>,
    },
    Var(VarId),
    Fact(Fact),
    Op(Op, Vec<TExpr>),
    /// `let var = value` in `body`.
    Let(VarId, Box<TExpr>, Box<TExpr>),
    If(Box<TExpr>, Box<TExpr>, Box<TExpr>),
    /// Left fold over a list; without `init` the first element starts it.
    Fold {
        list: Box<TExpr>,
        init: Option<Box<TExpr>>,
        acc: VarId,
        elem: VarId,
        index: Option<VarId>,
        body: Box<TExpr>,
    },
    /// `repeat(count, init, |acc, i| body)`.
    Repeat {
        count: Box<TExpr>,
        init: Box<TExpr>,
        acc: VarId,
        index: Option<VarId>,
        body: Box<TExpr>,
    },
    Index(Box<TExpr>, Box<TExpr>),
    List(Vec<TExpr>),
    /// A scalar repeated to the length of `like` (a per-model parameter given one value).
    Splat(Box<TExpr>, Box<TExpr>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct TExpr {
    pub kind: TKind,
    pub ty: Ty,
    pub span: Span,
}

impl TExpr {
    pub fn new(kind: TKind, ty: Ty, span: Span) -> Self {
        TExpr { kind, ty, span }
    }
    pub fn error(span: Span) -> Self {
        TExpr::new(TKind::Bool(false), Ty::Error, span)
    }
    /// Number of nodes (the inlined-size limit).
    pub fn size(&self) -> usize {
        1 + self.children().into_iter().map(TExpr::size).sum::<usize>()
    }

    /// An S-expression with types, for golden tests and `mergec compile --emit typed`.
    pub fn pretty(&self, names: &[String]) -> String {
        let mut out = String::new();
        self.write(&mut out, names, 0);
        out
    }

    fn write(&self, out: &mut String, names: &[String], indent: usize) {
        let pad = "  ".repeat(indent);
        match &self.kind {
            TKind::Let(v, value, body) => {
                let _ = write!(out, "{pad}(let {} ", var_name(names, v));
                value.write_inline(out, names);
                out.push_str(")\n");
                body.write(out, names, indent);
            }
            _ => {
                out.push_str(&pad);
                self.write_inline(out, names);
                out.push('\n');
            }
        }
    }

    fn write_inline(&self, out: &mut String, names: &[String]) {
        match &self.kind {
            TKind::Int(_)
            | TKind::F32(_)
            | TKind::Bool(_)
            | TKind::Str(_)
            | TKind::TensorLit { .. }
            | TKind::Var(_)
            | TKind::Fact(_) => self.write_leaf(out, names),
            TKind::Op(op, args) => {
                let _ = write!(out, "({}", op.name());
                for a in args {
                    out.push(' ');
                    a.write_inline(out, names);
                }
                let _ = write!(out, " : {})", self.ty);
                return;
            }
            TKind::Let(v, value, body) => {
                let _ = write!(out, "(let {} ", var_name(names, v));
                value.write_inline(out, names);
                out.push(' ');
                body.write_inline(out, names);
                out.push(')');
            }
            TKind::If(c, a, b) => {
                out.push_str("(if ");
                c.write_inline(out, names);
                out.push(' ');
                a.write_inline(out, names);
                out.push(' ');
                b.write_inline(out, names);
                out.push(')');
            }
            TKind::Fold { .. } | TKind::Repeat { .. } => self.write_loop(out, names),
            TKind::Index(l, i) => {
                out.push_str("(index ");
                l.write_inline(out, names);
                out.push(' ');
                i.write_inline(out, names);
                out.push(')');
            }
            TKind::List(xs) => {
                out.push('[');
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    x.write_inline(out, names);
                }
                out.push(']');
            }
            TKind::Splat(v, like) => {
                out.push_str("(splat ");
                v.write_inline(out, names);
                out.push(' ');
                like.write_inline(out, names);
                out.push(')');
            }
        }
        if !matches!(self.kind, TKind::Op(..))
            && matches!(
                self.kind,
                TKind::Fold { .. } | TKind::Repeat { .. } | TKind::If(..)
            )
        {
            let _ = write!(out, ":{}", self.ty);
        }
    }

    /// A literal, a variable or a fact: `write_inline` of a node without children.
    fn write_leaf(&self, out: &mut String, names: &[String]) {
        match &self.kind {
            TKind::Int(i) => {
                let _ = write!(out, "{i}");
            }
            TKind::F32(x) => {
                let _ = write!(out, "{x:?}");
            }
            TKind::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            TKind::Str(s) => {
                let _ = write!(out, "{s:?}");
            }
            TKind::TensorLit { shape, .. } => {
                let _ = write!(out, "(tensor-literal {shape:?})");
            }
            TKind::Var(v) => out.push_str(&var_name(names, v)),
            TKind::Fact(f) => {
                let _ = write!(out, "{}", format!("{f:?}").to_lowercase());
            }
            _ => unreachable!("write_leaf: not a leaf"),
        }
    }

    /// A `fold` or a `repeat`, without its type: `write_inline` of a loop.
    fn write_loop(&self, out: &mut String, names: &[String]) {
        let var = |v: &VarId| var_name(names, v);
        match &self.kind {
            TKind::Fold {
                list,
                init,
                acc,
                elem,
                index,
                body,
            } => {
                out.push_str("(fold ");
                list.write_inline(out, names);
                if let Some(i) = init {
                    out.push(' ');
                    i.write_inline(out, names);
                }
                let _ = write!(out, " |{}, {}", var(acc), var(elem));
                if let Some(i) = index {
                    let _ = write!(out, ", {}", var(i));
                }
                out.push_str("| ");
                body.write_inline(out, names);
                out.push(')');
            }
            TKind::Repeat {
                count,
                init,
                acc,
                index,
                body,
            } => {
                out.push_str("(repeat ");
                count.write_inline(out, names);
                out.push(' ');
                init.write_inline(out, names);
                let _ = write!(out, " |{}", var(acc));
                if let Some(i) = index {
                    let _ = write!(out, ", {}", var(i));
                }
                out.push_str("| ");
                body.write_inline(out, names);
                out.push(')');
            }
            _ => unreachable!("write_loop: not a loop"),
        }
    }
}

/// A variable as the S-expressions show it: `name%id`, or `%id` when it has no name.
fn var_name(names: &[String], v: &VarId) -> String {
    names
        .get(*v as usize)
        .map_or_else(|| format!("%{v}"), |n| format!("{n}%{v}"))
}
