//! Common subexpression elimination: structurally equal nodes (same op, same
//! arguments, same type) become one.

use crate::ir::graph::{Graph, NodeId};
use std::collections::HashMap;

pub fn cse(g: Graph) -> Graph {
    let mut seen: HashMap<(String, Vec<NodeId>, String), NodeId> = HashMap::new();
    super::replace_nodes(g, |g, i| {
        let n = &g.nodes[i];
        match n.op.key() {
            Some(k) => *seen
                .entry((k, n.args.clone(), n.ty.to_string()))
                .or_insert(i as NodeId),
            None => i as NodeId,
        }
    })
}
