//! Dead code elimination: keeps the nodes the output depends on, renumbered in order.

use crate::ir::graph::{Graph, NodeId};

pub fn dce(g: Graph) -> Graph {
    let mut live = vec![false; g.nodes.len()];
    live[g.output as usize] = true;
    for i in (0..g.nodes.len()).rev() {
        if live[i] {
            for &a in &g.nodes[i].args {
                live[a as usize] = true;
            }
        }
    }
    let mut map = vec![NodeId::MAX; g.nodes.len()];
    let mut nodes = Vec::new();
    for (i, mut n) in g.nodes.into_iter().enumerate() {
        if !live[i] {
            continue;
        }
        for a in &mut n.args {
            *a = map[*a as usize];
        }
        map[i] = nodes.len() as NodeId;
        nodes.push(n);
    }
    Graph {
        nodes,
        output: map[g.output as usize],
        input_shapes: g.input_shapes,
    }
}
