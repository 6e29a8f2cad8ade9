//! The compiler's passes, run in one ordered list with the verifier between them.
//! `MERGEC_DEBUG=ir` prints the graph after every pass.
//!
//! Helpers are inlined and per-model operations unrolled by lowering (`ir::lower`),
//! which is the first pass; the checker has already resolved every call.

mod cse;
mod dce;
mod fold;
mod fuse;
mod nested;
mod schedule;
mod sign;

use crate::ir::graph::{Graph, NodeId};
use crate::ir::kernel::Dtype;
use crate::ir::plan::Plan;

/// A graph-to-graph pass.
pub struct Pass {
    pub name: &'static str,
    pub run: fn(Graph) -> Graph,
}

/// The graph passes, in order.
pub fn pipeline() -> Vec<Pass> {
    vec![
        Pass {
            name: "fold_constants",
            run: fold::fold_constants,
        },
        Pass {
            name: "sign_match",
            run: sign::sign_match,
        },
        Pass {
            name: "cse",
            run: cse::cse,
        },
        Pass {
            name: "nested_topk",
            run: nested::nested_topk,
        },
        Pass {
            name: "dce",
            run: dce::dce,
        },
    ]
}

/// Visits the nodes in order, each with its arguments already mapped to their
/// replacements; `replace(g, i)` says which node stands for node `i` from now on (`i`
/// itself to keep it; it may also rewrite node `i` in place). The output follows.
fn replace_nodes(mut g: Graph, mut replace: impl FnMut(&mut Graph, usize) -> NodeId) -> Graph {
    let mut map: Vec<NodeId> = Vec::with_capacity(g.nodes.len());
    for i in 0..g.nodes.len() {
        let args: Vec<NodeId> = g.nodes[i].args.iter().map(|&a| map[a as usize]).collect();
        g.nodes[i].args = args;
        map.push(replace(&mut g, i));
    }
    g.output = map[g.output as usize];
    g
}

fn debug_ir() -> bool {
    std::env::var("MERGEC_DEBUG").is_ok_and(|v| v.split(',').any(|p| p == "ir"))
}

/// Runs every graph pass (verifying after each), then splits into stages and fuses
/// each stage into kernels (a chunked selection's chunks of `select_chunk` elements). A
/// verifier failure is a compiler bug: it panics with context.
pub fn compile_graph(
    g: Graph,
    out_dtype: Dtype,
    input_dtypes: &[Dtype],
    select_chunk: usize,
) -> Plan {
    let debug = debug_ir();
    check(&g, "lower");
    if debug {
        eprintln!("== after lower ==\n{}", g.print());
    }
    let mut g = g;
    for p in pipeline() {
        g = (p.run)(g);
        check(&g, p.name);
        if debug {
            eprintln!("== after {} ==\n{}", p.name, g.print());
        }
    }
    let sched = schedule::schedule(&g);
    let plan = fuse::fuse(g, &sched, out_dtype, input_dtypes, select_chunk);
    if debug {
        eprintln!("== after schedule + fuse ==\n{}", plan.print());
    }
    plan
}

fn check(g: &Graph, pass: &str) {
    if let Err(e) = g.verify() {
        panic!(
            "compiler bug: the graph is invalid after `{pass}`: {e}\n{}",
            g.print()
        );
    }
}

pub use schedule::Schedule;
