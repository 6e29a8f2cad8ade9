//! Constant folding: host operations on constants are computed (with the
//! interpreter's scalar semantics), and data-dependent choices whose condition
//! turned out constant are resolved. Lowering already folds what is known from the
//! start; this pass folds what remains.

use crate::interp::{Value, elem_op};
use crate::ir::graph::{Graph, NodeId, NodeOp, Scalar};

fn value(s: Scalar) -> Option<Value> {
    Some(match s {
        Scalar::F32(x) => Value::F32(x),
        Scalar::Int(i) => Value::Int(i),
        Scalar::Bool(b) => Value::Bool(b),
        Scalar::F64(_) => return None,
    })
}

fn scalar(v: &Value) -> Option<Scalar> {
    Some(match v {
        Value::F32(x) => Scalar::F32(*x),
        Value::Int(i) => Scalar::Int(*i),
        Value::Bool(b) => Scalar::Bool(*b),
        _ => return None,
    })
}

fn constant(g: &Graph, n: NodeId) -> Option<Scalar> {
    match g.nodes[n as usize].op {
        NodeOp::Const(c) => Some(c),
        _ => None,
    }
}

pub fn fold_constants(g: Graph) -> Graph {
    // Resolved choices are replaced by the chosen node; host operations on constants
    // become constants in place.
    super::replace_nodes(g, |g, i| {
        let n = &g.nodes[i];
        match &n.op {
            NodeOp::Select => match constant(g, n.args[0]) {
                Some(Scalar::Bool(b)) => {
                    if b {
                        n.args[1]
                    } else {
                        n.args[2]
                    }
                }
                _ => i as NodeId,
            },
            NodeOp::Host(op) if !n.args.is_empty() => {
                let vals: Option<Vec<Value>> = n
                    .args
                    .iter()
                    .map(|&a| constant(g, a).and_then(value))
                    .collect();
                let folded = vals
                    .and_then(|v| elem_op(*op, &v).ok())
                    .and_then(|v| scalar(&v))
                    .filter(|s| s.ty() == scalar_ty(g, i).unwrap_or(s.ty()));
                if let Some(s) = folded {
                    g.nodes[i].op = NodeOp::Const(s);
                    g.nodes[i].args.clear();
                }
                i as NodeId
            }
            _ => i as NodeId,
        }
    })
}

fn scalar_ty(g: &Graph, i: usize) -> Option<crate::ir::graph::STy> {
    match g.nodes[i].ty {
        crate::ir::graph::NTy::Scalar(s) => Some(s),
        _ => None,
    }
}
