//! Common subexpression elimination: structurally equal nodes (same op, same
//! arguments, same type) become one.

use crate::ir::graph::{Graph, NodeId};
use std::collections::HashMap;

pub fn cse(mut g: Graph) -> Graph {
    let mut seen: HashMap<(String, Vec<NodeId>, String), NodeId> = HashMap::new();
    let mut map: Vec<NodeId> = Vec::with_capacity(g.nodes.len());
    for i in 0..g.nodes.len() {
        let args: Vec<NodeId> = g.nodes[i].args.iter().map(|&a| map[a as usize]).collect();
        g.nodes[i].args = args.clone();
        let n = &g.nodes[i];
        let id = match n.op.key() {
            Some(k) => *seen
                .entry((k, args, n.ty.to_string()))
                .or_insert(i as NodeId),
            None => i as NodeId,
        };
        map.push(id);
    }
    g.output = map[g.output as usize];
    g
}
