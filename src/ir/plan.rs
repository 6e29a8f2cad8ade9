//! The scheduled form: stages of fused kernels plus the host work between them.

use super::graph::{Graph, NodeId};
use super::kernel::Kernel;
use std::fmt::Write;

/// Where a kernel input comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// Checkpoint input (0 the base), in its storage dtype.
    Input(u32),
    /// An f32 buffer holding a node's value (materialized, library result or literal).
    Buffer(NodeId),
}

/// A u64 kernel argument, known at run time.
#[derive(Clone, Debug, PartialEq)]
pub enum U64Arg {
    /// The random stream key of (model, stream) for this tensor and seed.
    Key {
        model: u32,
        stream: u32,
    },
    /// Top-k cut of a `TopkMask` node: `which` 0 = before(k + skip), 1 = before(skip).
    TopT {
        node: NodeId,
        which: u8,
    },
    TopCut {
        node: NodeId,
        which: u8,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum StoreTarget {
    /// The merge result, in the output dtype.
    Output,
    /// An f32 buffer for `node`.
    Buffer(NodeId),
}

/// One kernel and how its slots bind to the run's values.
#[derive(Clone, Debug)]
pub struct Launch {
    pub kernel: Kernel,
    /// One per kernel input.
    pub loads: Vec<Source>,
    /// Scalar nodes passed as f32 / f64 arguments.
    pub f32_args: Vec<NodeId>,
    pub f64_args: Vec<NodeId>,
    pub u64_args: Vec<U64Arg>,
    /// One per store sink.
    pub stores: Vec<StoreTarget>,
    /// The node each reduction sink computes (a `Reduce` node, or an `Axis` node for rows).
    pub reductions: Vec<NodeId>,
}

#[derive(Clone, Debug, Default)]
pub struct Stage {
    /// Nodes evaluated on the host before this stage's kernels, in order.
    pub host: Vec<NodeId>,
    /// Top-k selections resolved on the host before this stage's kernels (after `host`).
    pub selects: Vec<Select>,
    pub launches: Vec<Launch>,
    /// Buffers no later stage reads: freed after this stage.
    pub frees: Vec<NodeId>,
}

/// Elements per chunk of a chunked selection's keys, unless the engine asks for another
/// size ([`crate::codegen::Engine::select_chunk`]): a device holds the keys whole and
/// only pays for more launches with smaller chunks.
pub const SELECT_CHUNK: usize = 1 << 17;

/// Top-k selections over keys recomputed chunk by chunk (whole rows at a time), so
/// no key buffer of the tensor's size is ever held: the launch's kernel computes the
/// keys of `chunk_rows` rows (its stores: one f32 buffer per key node, in order).
#[derive(Clone, Debug)]
pub struct Select {
    pub launch: Launch,
    /// The key nodes, in store order.
    pub keys: Vec<NodeId>,
    /// The `TopkMask` nodes resolved (each reads one of `keys`).
    pub topk: Vec<NodeId>,
    /// Rows of the key domain.
    pub rows: usize,
    pub chunk_rows: usize,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub graph: Graph,
    pub stages: Vec<Stage>,
    /// `TopkMask` nodes whose mask must also be built as a buffer (used at another shape).
    pub mask_buffers: Vec<NodeId>,
}

impl Plan {
    /// Every kernel: each stage's selection key kernels, then its launches.
    pub fn kernels(&self) -> impl Iterator<Item = &Kernel> {
        self.stages.iter().flat_map(|s| {
            s.selects
                .iter()
                .map(|x| &x.launch.kernel)
                .chain(s.launches.iter().map(|l| &l.kernel))
        })
    }

    /// Text form of the stages and kernels.
    pub fn print(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.stages.iter().enumerate() {
            let host: Vec<String> = s.host.iter().map(|n| format!("%{n}")).collect();
            let _ = writeln!(out, "stage {i}: host [{}]", host.join(" "));
            for sel in &s.selects {
                let _ = writeln!(
                    out,
                    "  select {:?} over keys {:?} ({} rows, {} per chunk):",
                    sel.topk, sel.keys, sel.rows, sel.chunk_rows
                );
                out.push_str(&print_kernel(&sel.launch.kernel));
                let _ = writeln!(out, "    loads {:?}", sel.launch.loads);
            }
            for l in &s.launches {
                out.push_str(&print_kernel(&l.kernel));
                let _ = writeln!(
                    out,
                    "    loads {:?} f32 {:?} f64 {:?} u64 {:?} stores {:?} reductions {:?}",
                    l.loads, l.f32_args, l.f64_args, l.u64_args, l.stores, l.reductions
                );
            }
        }
        out
    }
}

/// One kernel as text.
pub fn print_kernel(k: &Kernel) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  kernel {} {:?} {}x{} inputs {:?}",
        k.name,
        k.kind,
        k.rows,
        k.cols,
        k.inputs
            .iter()
            .map(|i| format!("{:?}/{:?}", i.dtype, i.mode))
            .collect::<Vec<_>>()
    );
    for (i, inst) in k.body.iter().enumerate() {
        let _ = writeln!(out, "    v{i} = {inst:?}");
    }
    for s in &k.sinks {
        let _ = writeln!(out, "    sink {s:?}");
    }
    out
}
