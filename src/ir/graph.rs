//! The graph IR: one merge of one tensor shape, lists unrolled for the actual number of
//! models, every value a node with a concrete type. A small closed op set, matched
//! exhaustively everywhere.

use super::kernel::{BinOp, UnOp};
use crate::interp::RuntimeError;
use crate::types::ops::{AxisOp, Op};
use std::fmt::{self, Write};
use std::sync::Arc;

pub type NodeId = u32;

/// Scalar types. Host scalars are evaluated between kernels; `F64` holds reduction
/// results before they are rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum STy {
    F32,
    Int,
    Bool,
    F64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NTy {
    Scalar(STy),
    /// An f32 tensor (masks are 0.0/1.0) of a concrete shape.
    Tensor(Vec<usize>),
}

impl NTy {
    pub fn is_tensor(&self) -> bool {
        matches!(self, NTy::Tensor(_))
    }
    pub fn shape(&self) -> Option<&[usize]> {
        match self {
            NTy::Tensor(s) => Some(s),
            NTy::Scalar(_) => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar {
    F32(f32),
    Int(i64),
    Bool(bool),
    F64(f64),
}

impl Scalar {
    pub fn ty(self) -> STy {
        match self {
            Scalar::F32(_) => STy::F32,
            Scalar::Int(_) => STy::Int,
            Scalar::Bool(_) => STy::Bool,
            Scalar::F64(_) => STy::F64,
        }
    }
    /// The value as an f32 kernel argument (the interpreter's `as_f32`).
    pub fn as_f32(self) -> f32 {
        match self {
            Scalar::F32(x) => x,
            Scalar::Int(i) => i as f32,
            Scalar::Bool(b) => crate::semantics::from_bool(b),
            Scalar::F64(x) => x as f32,
        }
    }
    /// Bitwise identity (so NaN constants are merged and -0 is not 0).
    pub fn key(self) -> (u8, u64) {
        match self {
            Scalar::F32(x) => (0, x.to_bits() as u64),
            Scalar::Int(i) => (1, i as u64),
            Scalar::Bool(b) => (2, b as u64),
            Scalar::F64(x) => (3, x.to_bits()),
        }
    }
}

/// Whole-tensor reductions to an f64 host scalar (canonical order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Red {
    /// sum of x
    Sum,
    /// sum of x*x
    SumSq,
    /// sum of x*y (x and y broadcast together)
    Dot,
    /// sum of (x - m)^2 with m an f64 scalar (second argument)
    DevSq,
    /// maximum (NaN-propagating), widened
    Max,
    /// minimum, widened
    Min,
}

/// Host operations on f64 reduction results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum H64 {
    /// x / n
    DivN(u64),
    Sqrt,
    /// round to f32
    ToF32,
    /// cos_sim from (dot, sum x², sum y²): 0 if the norms' product is 0
    Cos,
}

#[derive(Clone, Debug)]
pub enum NodeOp {
    /// Input tensor: 0 the base, 1.. the models.
    Input(u32),
    Const(Scalar),
    /// A tensor literal from the program.
    Literal(Arc<Vec<f32>>),
    /// An error that is raised only if the value is chosen (speculated branches).
    Poison(RuntimeError),
    /// A host scalar operation with the interpreter's scalar semantics.
    Host(Op),
    /// A host operation on reduction results.
    H64(H64),
    /// Tensor elementwise ops (scalar arguments broadcast).
    Un(UnOp),
    Bin(BinOp),
    /// where(c, a, b) elementwise: c != 0.
    Where,
    /// A choice on a host bool (a data-dependent `if`): args [cond, a, b].
    Select,
    /// A tensor of the node's shape filled with a scalar: args [value].
    Fill,
    /// Uniform draws of stream `stream` for model `model`, indexed over the node's shape.
    Uniform {
        model: u32,
        stream: u32,
    },
    /// Whole-tensor reduction over `domain` (the arguments broadcast to it): args [x] or
    /// [x, y] (Dot) or [x, m] (DevSq).
    Reduce(Red, Vec<usize>),
    /// Reduction along an axis (the interpreter's `Op::Axis`): args [x].
    Axis(AxisOp, u8, bool),
    /// topk_mask: args [x, count, skip] (counts: ints, or fractions of numel).
    TopkMask,
    /// q-th quantile: args [x, q].
    Quantile,
    /// Ranks along an axis: args [x].
    Ranks(u8),
}

impl NodeOp {
    /// Short name for printing.
    pub fn name(&self) -> String {
        match self {
            NodeOp::Input(i) => format!("input[{i}]"),
            NodeOp::Const(c) => match c {
                Scalar::F32(x) => format!("{x:?}"),
                Scalar::Int(i) => format!("{i}"),
                Scalar::Bool(b) => format!("{b}"),
                Scalar::F64(x) => format!("{x:?}d"),
            },
            NodeOp::Literal(d) => format!("literal[{}]", d.len()),
            NodeOp::Poison(e) => format!("poison({:?})", e.to_string()),
            NodeOp::Host(op) => format!("host.{}", op.name()),
            NodeOp::H64(h) => format!("h64.{}", format!("{h:?}").to_lowercase()),
            NodeOp::Un(u) => format!("{u:?}").to_lowercase(),
            NodeOp::Bin(b) => format!("{b:?}").to_lowercase(),
            NodeOp::Where => "where".into(),
            NodeOp::Select => "select".into(),
            NodeOp::Fill => "fill".into(),
            NodeOp::Uniform { model, stream } => format!("uniform[m{model},s{stream}]"),
            NodeOp::Reduce(r, d) => format!("reduce.{}{d:?}", format!("{r:?}").to_lowercase()),
            NodeOp::Axis(op, a, k) => format!(
                "axis.{}[{a}{}]",
                format!("{op:?}").to_lowercase(),
                if *k { "" } else { ",drop" }
            ),
            NodeOp::TopkMask => "topk_mask".into(),
            NodeOp::Quantile => "quantile".into(),
            NodeOp::Ranks(a) => format!("ranks[{a}]"),
        }
    }

    /// Structural identity for CSE (None: never merged).
    pub fn key(&self) -> Option<String> {
        match self {
            NodeOp::Poison(_) | NodeOp::Literal(_) => None,
            NodeOp::Const(c) => Some(format!("const{:?}", c.key())),
            other => Some(format!("{other:?}")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub op: NodeOp,
    pub args: Vec<NodeId>,
    pub ty: NTy,
}

/// One merge, lowered for `k` models and concrete input shapes.
#[derive(Clone, Debug)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub output: NodeId,
    /// Shape of every input (base first).
    pub input_shapes: Vec<Vec<usize>>,
}

impl Graph {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    /// Checks the graph's invariants; a failure is a compiler bug.
    pub fn verify(&self) -> Result<(), String> {
        if self.output as usize >= self.nodes.len() {
            return Err(format!("output %{} does not exist", self.output));
        }
        if !self.node(self.output).ty.is_tensor() {
            return Err("the output is not a tensor".into());
        }
        for (i, n) in self.nodes.iter().enumerate() {
            for &a in &n.args {
                if a as usize >= i {
                    return Err(format!(
                        "%{i} ({}) reads %{a}, not defined before it",
                        n.op.name()
                    ));
                }
            }
            let want = arity(&n.op);
            if let Some(w) = want
                && n.args.len() != w
            {
                return Err(format!(
                    "%{i} ({}) has {} args, wants {w}",
                    n.op.name(),
                    n.args.len()
                ));
            }
            let tensor_op = matches!(
                n.op,
                NodeOp::Input(_)
                    | NodeOp::Literal(_)
                    | NodeOp::Un(_)
                    | NodeOp::Bin(_)
                    | NodeOp::Where
                    | NodeOp::Fill
                    | NodeOp::Uniform { .. }
                    | NodeOp::Axis(..)
                    | NodeOp::TopkMask
                    | NodeOp::Ranks(_)
            );
            if tensor_op && !n.ty.is_tensor() {
                return Err(format!("%{i} ({}) should be a tensor", n.op.name()));
            }
            let scalar_op = matches!(
                n.op,
                NodeOp::Const(_)
                    | NodeOp::Host(_)
                    | NodeOp::H64(_)
                    | NodeOp::Reduce(..)
                    | NodeOp::Quantile
            );
            if scalar_op && n.ty.is_tensor() {
                return Err(format!("%{i} ({}) should be a scalar", n.op.name()));
            }
        }
        Ok(())
    }

    /// Text form: one node per line.
    pub fn print(&self) -> String {
        let mut out = String::new();
        let shapes: Vec<String> = self.input_shapes.iter().map(|s| format!("{s:?}")).collect();
        let _ = writeln!(out, "graph inputs {} -> %{}", shapes.join(" "), self.output);
        for (i, n) in self.nodes.iter().enumerate() {
            let args: Vec<String> = n.args.iter().map(|a| format!("%{a}")).collect();
            let _ = writeln!(
                out,
                "  %{i} = {} {} : {}",
                n.op.name(),
                args.join(" "),
                n.ty
            );
        }
        out
    }
}

impl fmt::Display for NTy {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            NTy::Scalar(s) => write!(f, "{}", format!("{s:?}").to_lowercase()),
            NTy::Tensor(s) => write!(f, "tensor{s:?}"),
        }
    }
}

/// Fixed argument counts (None: variable).
fn arity(op: &NodeOp) -> Option<usize> {
    Some(match op {
        NodeOp::Input(_) | NodeOp::Const(_) | NodeOp::Literal(_) | NodeOp::Poison(_) => 0,
        NodeOp::Uniform { .. } => 0,
        NodeOp::Host(_) => return None,
        NodeOp::H64(H64::Cos) => 3,
        NodeOp::H64(_) => 1,
        NodeOp::Un(_) | NodeOp::Fill | NodeOp::Axis(..) | NodeOp::Ranks(_) => 1,
        NodeOp::Bin(_) | NodeOp::Quantile => 2,
        NodeOp::Where | NodeOp::Select | NodeOp::TopkMask => 3,
        NodeOp::Reduce(Red::Dot | Red::DevSq, _) => 2,
        NodeOp::Reduce(..) => 1,
    })
}
