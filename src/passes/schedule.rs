//! Splitting into stages. A node's level is the first stage whose kernels can compute
//! it: whole-tensor and axis reductions and selections (quantile, top-k, ranks) need
//! their input complete, so their results are available one stage later. Host work
//! (scalars, reduction results, selections) of level `s` runs before stage `s`.

use crate::ir::graph::{Graph, NodeOp};

#[derive(Clone, Debug)]
pub struct Schedule {
    pub level: Vec<u32>,
    pub n_stages: usize,
}

/// Whether the host evaluates this node (before the kernels of its level).
pub fn on_host(op: &NodeOp, is_tensor: bool) -> bool {
    match op {
        NodeOp::Host(_)
        | NodeOp::H64(_)
        | NodeOp::Reduce(..)
        | NodeOp::Quantile
        | NodeOp::TopkMask
        | NodeOp::Ranks(_)
        | NodeOp::Axis(..)
        | NodeOp::Const(_) => true,
        NodeOp::Select | NodeOp::Poison(_) => !is_tensor,
        NodeOp::Input(_)
        | NodeOp::Literal(_)
        | NodeOp::Un(_)
        | NodeOp::Bin(_)
        | NodeOp::Where
        | NodeOp::Fill
        | NodeOp::Uniform { .. } => false,
    }
}

pub fn schedule(g: &Graph) -> Schedule {
    let mut level = vec![0u32; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        let arg = |k: usize| level[n.args[k] as usize];
        let max_args = n.args.iter().map(|&a| level[a as usize]).max().unwrap_or(0);
        level[i] = match &n.op {
            NodeOp::Input(_)
            | NodeOp::Const(_)
            | NodeOp::Literal(_)
            | NodeOp::Poison(_)
            | NodeOp::Uniform { .. } => 0,
            NodeOp::Host(_)
            | NodeOp::H64(_)
            | NodeOp::Un(_)
            | NodeOp::Bin(_)
            | NodeOp::Where
            | NodeOp::Select
            | NodeOp::Fill => max_args,
            NodeOp::Reduce(..) => max_args + 1,
            NodeOp::Axis(..) | NodeOp::Ranks(_) => arg(0) + 1,
            NodeOp::Quantile | NodeOp::TopkMask => (arg(0) + 1).max(max_args),
        };
    }
    let n_stages = level[g.output as usize] as usize + 1;
    Schedule { level, n_stages }
}
