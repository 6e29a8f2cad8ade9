//! Constant folding: host operations on constants are computed (with the
//! interpreter's scalar semantics), and data-dependent choices whose condition
//! turned out constant are resolved. Lowering already folds what is known from the
//! start; this pass folds what remains. Tensor products with a constant 1.0 (the
//! default weights and lambdas of most methods) are dropped where that changes no
//! bit: see [`times_one`].

use crate::interp::{Value, elem_op};
use crate::ir::graph::{Graph, NodeId, NodeOp, Scalar};
use crate::ir::kernel::{BinOp, UnOp};

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
            NodeOp::Bin(BinOp::Mul | BinOp::Div) => times_one(g, i).unwrap_or(i as NodeId),
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

/// For `x * 1.0`, `1.0 * x` or `x / 1.0` (node `i`): `x`, when it has the node's type
/// and can hold no signalling NaN. IEEE multiplication and division by one return
/// their operand exactly, except that a signalling NaN comes back quiet: so `x` must be
/// the result of arithmetic (which never gives a signalling NaN) or a 0/1 truth
/// value, not an input, literal or a choice between them.
fn times_one(g: &Graph, i: usize) -> Option<NodeId> {
    let n = &g.nodes[i];
    let one =
        |a: NodeId| matches!(g.nodes[a as usize].op, NodeOp::Const(Scalar::F32(c)) if c == 1.0);
    let x = match (&n.op, &n.args[..]) {
        (NodeOp::Bin(BinOp::Mul), &[a, b]) if one(a) => b,
        (NodeOp::Bin(BinOp::Mul | BinOp::Div), &[a, b]) if one(b) => a,
        _ => return None,
    };
    let quiet = matches!(
        g.nodes[x as usize].op,
        NodeOp::Bin(
            BinOp::Add
                | BinOp::Sub
                | BinOp::Mul
                | BinOp::Div
                | BinOp::Eq
                | BinOp::Ne
                | BinOp::Lt
                | BinOp::Le
                | BinOp::Gt
                | BinOp::Ge
                | BinOp::And
                | BinOp::Or
        ) | NodeOp::Un(UnOp::Not)
            | NodeOp::TopkMask
    );
    (quiet && g.nodes[x as usize].ty == n.ty).then_some(x)
}

fn scalar_ty(g: &Graph, i: usize) -> Option<crate::ir::graph::STy> {
    match g.nodes[i].ty {
        crate::ir::graph::NTy::Scalar(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::graph::{NTy, Node};

    /// `1.0 * x` and `x / 1.0` become `x` for arithmetic results and truth values, and
    /// stay for inputs (whose signalling NaN the product would quiet) and other factors.
    #[test]
    fn products_with_one_drop_only_where_no_bit_changes() {
        let t = NTy::Tensor(vec![4]);
        let node = |op, args: &[NodeId], ty: &NTy| Node {
            op,
            args: args.to_vec(),
            ty: ty.clone(),
        };
        let one = node(
            NodeOp::Const(Scalar::F32(1.0)),
            &[],
            &NTy::Scalar(Scalar::F32(1.0).ty()),
        );
        let two = node(NodeOp::Const(Scalar::F32(2.0)), &[], &one.ty);
        let nodes = vec![
            node(NodeOp::Input(0), &[], &t),             // 0
            node(NodeOp::Input(1), &[], &t),             // 1
            one,                                         // 2
            two,                                         // 3
            node(NodeOp::Bin(BinOp::Sub), &[1, 0], &t),  // 4: arithmetic
            node(NodeOp::Bin(BinOp::Mul), &[2, 4], &t),  // 5: 1 * sub -> 4
            node(NodeOp::Bin(BinOp::Mul), &[5, 2], &t),  // 6: sub * 1 -> 4
            node(NodeOp::Bin(BinOp::Div), &[6, 2], &t),  // 7: sub / 1 -> 4
            node(NodeOp::Bin(BinOp::Mul), &[2, 1], &t),  // 8: 1 * input: stays
            node(NodeOp::Bin(BinOp::Div), &[2, 4], &t),  // 9: 1 / sub: stays
            node(NodeOp::Bin(BinOp::Mul), &[3, 4], &t),  // 10: 2 * sub: stays
            node(NodeOp::Bin(BinOp::Ge), &[4, 0], &t),   // 11: truth value
            node(NodeOp::Bin(BinOp::Mul), &[2, 11], &t), // 12: 1 * mask -> 11
            node(NodeOp::Un(UnOp::Abs), &[1], &t),       // 13: |input| keeps sNaN
            node(NodeOp::Bin(BinOp::Mul), &[13, 2], &t), // 14: stays
            node(NodeOp::Bin(BinOp::Add), &[7, 8], &t),  // 15
        ];
        let g = Graph {
            nodes,
            output: 15,
            input_shapes: vec![vec![4]; 2],
        };
        let g = fold_constants(g);
        let args = |i: usize| g.nodes[i].args.clone();
        assert_eq!(args(15), vec![4, 8], "1 * (sub * 1) / 1 is sub");
        assert_eq!(args(8), vec![2, 1]);
        for (i, want) in [(9, vec![2, 4]), (10, vec![3, 4]), (14, vec![13, 2])] {
            assert_eq!(args(i), want, "node {i}");
            assert!(matches!(g.nodes[i].op, NodeOp::Bin(_)), "node {i} stays");
        }
        let g2 = Graph {
            output: 12,
            ..g.clone()
        };
        assert_eq!(fold_constants(g2).output, 11, "1 * mask is the mask");
    }
}
