//! Types and symbolic shapes.

use std::fmt;

/// One dimension of a shape: a known size, or the base tensor's dimension `i`
/// (unknown until run time, the same for every tensor shaped like the base).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Const(u64),
    Sym(u8),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Const(n) => write!(f, "{n}"),
            Dim::Sym(i) => write!(f, "d{i}"),
        }
    }
}

pub type Shape = Vec<Dim>;

/// The names of the types a program may write (a list type wraps one of them).
pub const TYPE_NAMES: [&str; 6] = ["f32", "int", "bool", "str", "Tensor", "Mask"];

pub fn shape_str(s: &[Dim]) -> String {
    let parts: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// The base tensor's symbolic shape at a given rank: `[d0, d1, ...]`.
pub fn base_shape(rank: usize) -> Shape {
    (0..rank).map(|i| Dim::Sym(i as u8)).collect()
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    Int,
    F32,
    Bool,
    Str,
    Tensor(Shape),
    /// Booleans per element; 0/1 when used as numbers.
    Mask(Shape),
    /// A list over the candidate models (never nested).
    List(Box<Ty>),
    /// Already reported; suppresses follow-on errors.
    Error,
}

impl Ty {
    pub fn list(elem: Ty) -> Ty {
        match elem {
            Ty::Error => Ty::Error,
            e => Ty::List(Box::new(e)),
        }
    }
    pub fn is_list(&self) -> bool {
        matches!(self, Ty::List(_))
    }
    /// The element type of a list, or the type itself.
    pub fn elem(&self) -> &Ty {
        match self {
            Ty::List(e) => e,
            t => t,
        }
    }
    pub fn is_error(&self) -> bool {
        matches!(self, Ty::Error)
    }
    /// Numbers, masks and tensors: what arithmetic accepts.
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            Ty::Int | Ty::F32 | Ty::Bool | Ty::Tensor(_) | Ty::Mask(_)
        )
    }
    pub fn is_scalar(&self) -> bool {
        matches!(self, Ty::Int | Ty::F32 | Ty::Bool)
    }
    pub fn shape(&self) -> Option<&Shape> {
        match self {
            Ty::Tensor(s) | Ty::Mask(s) => Some(s),
            _ => None,
        }
    }
    /// The kind of value without its shape, as written in programs.
    pub fn kind_name(&self) -> String {
        match self {
            Ty::Int => "int".into(),
            Ty::F32 => "f32".into(),
            Ty::Bool => "bool".into(),
            Ty::Str => "str".into(),
            Ty::Tensor(_) => "Tensor".into(),
            Ty::Mask(_) => "Mask".into(),
            Ty::List(e) => format!("[{}]", e.kind_name()),
            Ty::Error => "?".into(),
        }
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Tensor(s) => write!(f, "Tensor{}", shape_str(s)),
            Ty::Mask(s) => write!(f, "Mask{}", shape_str(s)),
            Ty::List(e) => write!(f, "[{e}]"),
            t => f.write_str(&t.kind_name()),
        }
    }
}

/// NumPy broadcasting over symbolic shapes. `Err` names the two clashing dims.
pub fn broadcast(a: &[Dim], b: &[Dim]) -> Result<Shape, (Dim, Dim)> {
    let n = a.len().max(b.len());
    let mut out = vec![Dim::Const(1); n];
    for i in 0..n {
        let da = if i < n - a.len() {
            Dim::Const(1)
        } else {
            a[i - (n - a.len())]
        };
        let db = if i < n - b.len() {
            Dim::Const(1)
        } else {
            b[i - (n - b.len())]
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (Dim::Const(1), y) => y,
            (x, Dim::Const(1)) => x,
            (x, y) => return Err((x, y)),
        };
    }
    Ok(out)
}
