//! Unions of nested top-k masks: `topk_mask(x, a) or topk_mask(x, b)` over one key `x`,
//! with nothing skipped, is the mask with the larger count, since the top-k sets of one
//! order (magnitude descending, index ascending) are nested. The union becomes that mask
//! and the other one is left to DCE: one selection and one mask test per element fewer.
//! TIES writes such a union to keep at least the largest entry
//! (`topk_mask(abs(tau), density) or topk_mask(abs(tau), 1)`). Runs after CSE, which
//! makes the two keys one node.

use crate::interp::{Value, topk_count};
use crate::ir::graph::{Graph, NodeId, NodeOp, Scalar};
use crate::ir::kernel::BinOp;

pub fn nested_topk(g: Graph) -> Graph {
    super::replace_nodes(g, |g, i| {
        let n = &g.nodes[i];
        if matches!(n.op, NodeOp::Bin(BinOp::Or))
            && let [a, b] = n.args[..]
            && let Some(keep) = larger(g, a, b)
            && g.nodes[keep as usize].ty == n.ty
        {
            keep
        } else {
            i as NodeId
        }
    })
}

/// The larger of two top-k masks of the same key with nothing skipped, when both counts
/// are known.
fn larger(g: &Graph, a: NodeId, b: NodeId) -> Option<NodeId> {
    let (na, nb) = (&g.nodes[a as usize], &g.nodes[b as usize]);
    if !matches!(na.op, NodeOp::TopkMask)
        || !matches!(nb.op, NodeOp::TopkMask)
        || na.args[0] != nb.args[0]
    {
        return None;
    }
    let n: usize = g.nodes[na.args[0] as usize].ty.shape()?.iter().product();
    // A count as the runtime computes it (`topk_count`): an int, or a fraction of n.
    let count = |c: NodeId| -> Option<usize> {
        let v = match g.nodes[c as usize].op {
            NodeOp::Const(Scalar::Int(i)) => Value::Int(i),
            NodeOp::Const(Scalar::F32(x)) => Value::F32(x),
            _ => return None,
        };
        Some(topk_count(&v, n))
    };
    if count(na.args[2])? != 0 || count(nb.args[2])? != 0 {
        return None;
    }
    Some(if count(na.args[1])? >= count(nb.args[1])? {
        a
    } else {
        b
    })
}
