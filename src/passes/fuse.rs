//! Fusion: every stage becomes one kernel per domain (and one per row-reduced
//! domain) that reads each input once and computes every reduction, materialization
//! and store the next stages need. Tensor values from earlier stages are recomputed
//! from the inputs unless they already sit in a buffer.

use super::schedule::{Schedule, on_host};
use crate::ir::graph::{Graph, NTy, NodeId, NodeOp, Red};
use crate::ir::kernel::{
    Bin64, BinOp, Dtype, Inst, KInput, Kernel, KernelKind, Mode, RedOp, Sink, UnOp, V,
};
use crate::ir::plan::{Launch, Plan, Select, Source, Stage, StoreTarget, U64Arg};

/// Whether `x`'s keys can be computed a chunk of rows at a time: a 2-D value whose
/// kernel cone does not depend on element positions (random draws, top-k masks).
fn chunkable(g: &Graph, x: NodeId) -> bool {
    fn position_free(g: &Graph, n: NodeId, seen: &mut HashSet<NodeId>) -> bool {
        if !seen.insert(n) {
            return true;
        }
        let node = g.node(n);
        if !node.ty.is_tensor() {
            return true;
        }
        match node.op {
            NodeOp::Uniform { .. } | NodeOp::TopkMask => false,
            NodeOp::Input(_) | NodeOp::Literal(_) | NodeOp::Ranks(_) | NodeOp::Axis(..) => true,
            _ => node.args.iter().all(|&a| position_free(g, a, seen)),
        }
    }
    let rank2 = g
        .node(x)
        .ty
        .shape()
        .is_some_and(|s| s.len() == 2 && s[0] > 1);
    rank2 && position_free(g, x, &mut HashSet::new())
}
use crate::types::ops::AxisOp;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A shape as the 2-D domain `rows x cols` (NumPy right-alignment).
pub fn dims2(s: &[usize]) -> (usize, usize) {
    match s {
        [] => (1, 1),
        [n] => (1, *n),
        [r, c] => (*r, *c),
        _ => (s[..s.len() - 1].iter().product(), s[s.len() - 1]),
    }
}

/// How a value of shape `s` is indexed in domain `d`.
fn mode(s: (usize, usize), d: (usize, usize)) -> Mode {
    if s == d {
        Mode::Full
    } else if s == (1, 1) {
        Mode::One
    } else if s == (d.0, 1) {
        Mode::Row
    } else if s == (1, d.1) {
        Mode::Col
    } else {
        panic!("compiler bug: shape {s:?} does not broadcast to the domain {d:?}")
    }
}

fn is_last_axis(g: &Graph, n: NodeId) -> bool {
    let node = g.node(n);
    let NodeOp::Axis(_, axis, _) = node.op else {
        return false;
    };
    let rank = g.node(node.args[0]).ty.shape().map_or(0, <[usize]>::len);
    axis as usize + 1 == rank
}

/// Sinks per (stage, rows kernel?, domain).
type Groups = BTreeMap<(usize, bool, (usize, usize)), Vec<Want>>;

/// A chunked selection group: its key nodes and the top-k nodes reading them.
type SelectGroup = (Vec<NodeId>, Vec<NodeId>);

/// The chunked top-k selections per (stage, key domain).
type Selects = BTreeMap<(usize, (usize, usize)), SelectGroup>;

/// What a sink computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Want {
    Output,
    Materialize(NodeId),
    Reduce(NodeId),
    Rows(NodeId),
}

/// `select_chunk`: elements per chunk of a chunked top-k selection's keys (the engine's
/// choice, [`crate::codegen::Engine::select_chunk`]).
pub fn fuse(
    g: Graph,
    s: &Schedule,
    out_dtype: Dtype,
    in_dtypes: &[Dtype],
    select_chunk: usize,
) -> Plan {
    let (mut groups, mut materialized, selects) = wanted(&g, s);
    materialize_expensive(&g, s, &mut materialized, &mut groups);
    let out = g.output;
    groups
        .entry((
            s.level[out as usize] as usize,
            false,
            dims2(&node_shape(&g, out)),
        ))
        .or_default()
        .push(Want::Output);
    let mut stages: Vec<Stage> = vec![Stage::default(); s.n_stages];
    for (i, n) in g.nodes.iter().enumerate() {
        if on_host(&n.op, n.ty.is_tensor()) {
            let st = (s.level[i] as usize).min(s.n_stages - 1);
            stages[st].host.push(i as NodeId);
        }
    }
    let mut mask_buffers = HashSet::new();
    let kernels = Kernels {
        g: &g,
        materialized: &materialized,
        in_dtypes,
        out_dtype,
        select_chunk,
    };
    kernels.selects(selects, &mut mask_buffers, &mut stages);
    kernels.launches(groups, &mut mask_buffers, &mut stages);
    let mut mask_buffers: Vec<NodeId> = mask_buffers.into_iter().collect();
    mask_buffers.sort_unstable();
    plan_frees(&g, &mut stages);
    Plan {
        graph: g,
        stages,
        mask_buffers,
    }
}

/// A tensor node's shape (empty for scalars).
fn node_shape(g: &Graph, n: NodeId) -> Vec<usize> {
    g.node(n)
        .ty
        .shape()
        .map(<[usize]>::to_vec)
        .unwrap_or_default()
}

/// What each stage's kernels must produce: sinks per (stage, kind, domain), the values
/// materialized for host-side operations (with their stage), and the chunked top-k
/// selections per (stage, key domain).
fn wanted(g: &Graph, s: &Schedule) -> (Groups, HashMap<NodeId, usize>, Selects) {
    let mut groups: Groups = BTreeMap::new();
    let mut materialized: HashMap<NodeId, usize> = HashMap::new();
    let mut selects: Selects = BTreeMap::new();
    let shape = |n: NodeId| node_shape(g, n);
    for (i, n) in g.nodes.iter().enumerate() {
        let id = i as NodeId;
        let lv = |a: NodeId| s.level[a as usize] as usize;
        match &n.op {
            NodeOp::Reduce(_, domain) => {
                let st = n.args.iter().map(|&a| lv(a)).max().unwrap_or(0);
                groups
                    .entry((st, false, dims2(domain)))
                    .or_default()
                    .push(Want::Reduce(id));
            }
            NodeOp::Axis(..) if is_last_axis(g, id) => {
                let x = n.args[0];
                groups
                    .entry((lv(x), true, dims2(&shape(x))))
                    .or_default()
                    .push(Want::Rows(id));
            }
            NodeOp::TopkMask if chunkable(g, n.args[0]) => {
                let x = n.args[0];
                let e = selects
                    .entry((s.level[i] as usize, dims2(&shape(x))))
                    .or_default();
                if !e.0.contains(&x) {
                    e.0.push(x);
                }
                e.1.push(id);
            }
            NodeOp::Axis(..) | NodeOp::Ranks(_) | NodeOp::Quantile | NodeOp::TopkMask => {
                let x = n.args[0];
                if buffer_backed(g, x) || materialized.contains_key(&x) {
                    continue;
                }
                materialized.insert(x, lv(x));
                groups
                    .entry((lv(x), false, dims2(&shape(x))))
                    .or_default()
                    .push(Want::Materialize(x));
            }
            _ => {}
        }
    }
    (groups, materialized, selects)
}

/// What building a stage's kernels shares.
struct Kernels<'a> {
    g: &'a Graph,
    materialized: &'a HashMap<NodeId, usize>,
    in_dtypes: &'a [Dtype],
    out_dtype: Dtype,
    select_chunk: usize,
}

impl Kernels<'_> {
    /// The key kernels of the chunked top-k selections.
    fn selects(&self, selects: Selects, mask_buffers: &mut HashSet<NodeId>, stages: &mut [Stage]) {
        let (g, materialized, in_dtypes) = (self.g, self.materialized, self.in_dtypes);
        for ((stage, domain), (keys, topk)) in selects {
            let mut kb = Builder::new(g, domain, stage, materialized, in_dtypes, mask_buffers);
            let mut sinks = Vec::new();
            let mut stores = Vec::new();
            for (j, &x) in keys.iter().enumerate() {
                let v = kb.val(x);
                sinks.push(Sink::Store {
                    value: v,
                    buf: j as u32,
                    dtype: Dtype::F32,
                });
                stores.push(StoreTarget::Buffer(x));
            }
            let chunk_rows = (self.select_chunk / domain.1.max(1)).clamp(1, domain.0);
            let name = format!("s{stage}_keys{}", stages[stage].selects.len());
            let launch = kb.finish(
                name,
                KernelKind::Flat,
                (chunk_rows, domain.1),
                sinks,
                stores,
                vec![],
            );
            stages[stage].selects.push(Select {
                launch,
                keys,
                topk,
                rows: domain.0,
                chunk_rows,
            });
        }
    }

    /// One kernel per (stage, kind, domain) group of sinks.
    fn launches(&self, groups: Groups, mask_buffers: &mut HashSet<NodeId>, stages: &mut [Stage]) {
        let (g, materialized, in_dtypes) = (self.g, self.materialized, self.in_dtypes);
        let (out, out_dtype) = (g.output, self.out_dtype);
        for ((stage, rows, domain), wants) in groups {
            let mut kb = Builder::new(g, domain, stage, materialized, in_dtypes, mask_buffers);
            let mut sinks = Vec::new();
            let mut stores = Vec::new();
            let mut reductions = Vec::new();
            for w in wants {
                match w {
                    Want::Output => {
                        let v = kb.val(out);
                        sinks.push(Sink::Store {
                            value: v,
                            buf: stores.len() as u32,
                            dtype: out_dtype,
                        });
                        stores.push(StoreTarget::Output);
                    }
                    Want::Materialize(x) => {
                        let v = kb.val(x);
                        let buf = stores.len() as u32;
                        sinks.push(Sink::Store {
                            value: v,
                            buf,
                            dtype: Dtype::F32,
                        });
                        stores.push(StoreTarget::Buffer(x));
                    }
                    Want::Reduce(r) => {
                        sinks.push(kb.reduce_sink(r));
                        reductions.push(r);
                    }
                    Want::Rows(a) => {
                        sinks.push(kb.rows_sink(a));
                        reductions.push(a);
                    }
                }
            }
            let name = format!("s{stage}_k{}", stages[stage].launches.len());
            let kind = if rows {
                KernelKind::Rows
            } else {
                KernelKind::Flat
            };
            let launch = kb.finish(name, kind, domain, sinks, stores, reductions);
            stages[stage].launches.push(launch);
        }
    }
}

/// Largest kernel cone (in nodes) recomputed by a later stage; bigger values used by
/// later stages are stored where they are computed and read back.
const RECOMPUTE_LIMIT: usize = 32;

/// Marks values whose recomputation in later stages would cost more than reading them
/// back (long chains such as the iterations of a `repeat`), and stores them.
fn materialize_expensive(
    g: &Graph,
    s: &Schedule,
    materialized: &mut HashMap<NodeId, usize>,
    groups: &mut Groups,
) {
    // The latest stage that evaluates each node's value inside a kernel.
    let mut used_in = vec![0usize; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        let st = match n.op {
            NodeOp::Reduce(..) | NodeOp::Axis(..) | NodeOp::Ranks(_) | NodeOp::Quantile => {
                (s.level[i] as usize).saturating_sub(1)
            }
            _ => s.level[i] as usize,
        };
        for &a in &n.args {
            used_in[a as usize] = used_in[a as usize].max(st);
        }
    }
    let mut cost = vec![0usize; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        let id = i as NodeId;
        if !n.ty.is_tensor() || on_host(&n.op, true) || buffer_backed(g, id) {
            continue;
        }
        let c = 1 + n
            .args
            .iter()
            .map(|&a| {
                if materialized.contains_key(&a) {
                    1
                } else {
                    cost[a as usize]
                }
            })
            .sum::<usize>();
        let lv = s.level[i] as usize;
        if c > RECOMPUTE_LIMIT && used_in[i] > lv && !matches!(n.op, NodeOp::Input(_)) {
            materialized.insert(id, lv);
            let shape = n.ty.shape().unwrap_or(&[]);
            groups
                .entry((lv, false, dims2(shape)))
                .or_default()
                .push(Want::Materialize(id));
            cost[i] = 1;
        } else {
            cost[i] = c;
        }
    }
}

/// After which stage each buffer is read for the last time (then it is freed).
fn plan_frees(g: &Graph, stages: &mut [Stage]) {
    let mut last: HashMap<NodeId, usize> = HashMap::new();
    for (si, st) in stages.iter().enumerate() {
        let loads = st
            .launches
            .iter()
            .chain(st.selects.iter().map(|x| &x.launch))
            .flat_map(|l| l.loads.iter());
        for src in loads {
            if let Source::Buffer(n) = src {
                last.insert(*n, si);
            }
        }
        for &h in &st.host {
            for &a in &g.node(h).args {
                if g.node(a).ty.is_tensor() {
                    last.insert(a, si);
                }
            }
        }
    }
    for (n, si) in last {
        stages[si].frees.push(n);
    }
    for st in stages.iter_mut() {
        st.frees.sort_unstable();
    }
}

/// Nodes whose value the host leaves in an f32 buffer.
fn buffer_backed(g: &Graph, n: NodeId) -> bool {
    matches!(
        g.node(n).op,
        NodeOp::Literal(_) | NodeOp::Ranks(_) | NodeOp::Axis(..)
    )
}

struct Builder<'a> {
    g: &'a Graph,
    domain: (usize, usize),
    stage: usize,
    materialized: &'a HashMap<NodeId, usize>,
    in_dtypes: &'a [Dtype],
    mask_buffers: &'a mut HashSet<NodeId>,
    body: Vec<Inst>,
    memo: HashMap<NodeId, V>,
    inputs: Vec<KInput>,
    launch_loads: Vec<Source>,
    f32_args: Vec<NodeId>,
    f64_args: Vec<NodeId>,
    u64_args: Vec<U64Arg>,
}

impl<'a> Builder<'a> {
    fn new(
        g: &'a Graph,
        domain: (usize, usize),
        stage: usize,
        materialized: &'a HashMap<NodeId, usize>,
        in_dtypes: &'a [Dtype],
        mask_buffers: &'a mut HashSet<NodeId>,
    ) -> Builder<'a> {
        Builder {
            g,
            domain,
            stage,
            materialized,
            in_dtypes,
            mask_buffers,
            body: Vec::new(),
            memo: HashMap::new(),
            inputs: Vec::new(),
            launch_loads: Vec::new(),
            f32_args: Vec::new(),
            f64_args: Vec::new(),
            u64_args: Vec::new(),
        }
    }

    /// The launch of the kernel built, over `dims` (rows x cols).
    fn finish(
        self,
        name: String,
        kind: KernelKind,
        dims: (usize, usize),
        sinks: Vec<Sink>,
        stores: Vec<StoreTarget>,
        reductions: Vec<NodeId>,
    ) -> Launch {
        let kernel = Kernel {
            name,
            kind,
            rows: dims.0,
            cols: dims.1,
            inputs: self.inputs,
            body: self.body,
            sinks,
            n_f32: self.f32_args.len() as u32,
            n_f64: self.f64_args.len() as u32,
            n_u64: self.u64_args.len() as u32,
        };
        Launch {
            kernel,
            loads: self.launch_loads,
            f32_args: self.f32_args,
            f64_args: self.f64_args,
            u64_args: self.u64_args,
            stores,
            reductions,
        }
    }

    fn emit(&mut self, i: Inst) -> V {
        self.body.push(i);
        self.body.len() as V - 1
    }

    fn load(&mut self, src: Source, n: NodeId) -> V {
        let s = dims2(self.g.node(n).ty.shape().unwrap_or(&[]));
        let m = mode(s, self.domain);
        let dtype = match src {
            Source::Input(i) => self.in_dtypes[i as usize],
            Source::Buffer(_) => Dtype::F32,
        };
        let slot = match self
            .launch_loads
            .iter()
            .zip(&self.inputs)
            .position(|(l, k)| *l == src && k.mode == m)
        {
            Some(p) => p,
            None => {
                self.launch_loads.push(src);
                self.inputs.push(KInput { dtype, mode: m });
                self.inputs.len() - 1
            }
        } as u32;
        self.emit(Inst::Load(slot))
    }

    fn u64_arg(&mut self, a: U64Arg) -> u32 {
        match self.u64_args.iter().position(|x| *x == a) {
            Some(p) => p as u32,
            None => {
                self.u64_args.push(a);
                self.u64_args.len() as u32 - 1
            }
        }
    }

    /// The kernel value of node `n` at the current domain.
    fn val(&mut self, n: NodeId) -> V {
        if let Some(&v) = self.memo.get(&n) {
            return v;
        }
        let v = self.val_inner(n);
        self.memo.insert(n, v);
        v
    }

    fn val_inner(&mut self, n: NodeId) -> V {
        let node = self.g.node(n);
        let args = node.args.clone();
        if let NTy::Scalar(sty) = node.ty {
            if let NodeOp::Const(c) = node.op
                && sty != crate::ir::graph::STy::F64
            {
                return self.emit(Inst::Const(c.as_f32()));
            }
            if sty == crate::ir::graph::STy::F64 {
                let slot = self.f64_args.len() as u32;
                self.f64_args.push(n);
                return self.emit(Inst::Arg64(slot));
            }
            let slot = self.f32_args.len() as u32;
            self.f32_args.push(n);
            return self.emit(Inst::Arg(slot));
        }
        // A value materialized by an earlier stage is loaded, unless recomputing it
        // from what this kernel reads anyway is cheaper than reading 4 bytes more.
        if let Some(&st) = self.materialized.get(&n)
            && st < self.stage
            && !self.cheap(n, 6)
        {
            return self.load(Source::Buffer(n), n);
        }
        match &node.op {
            NodeOp::Input(i) => self.load(Source::Input(*i), n),
            NodeOp::Literal(_) | NodeOp::Ranks(_) | NodeOp::Axis(..) => {
                self.load(Source::Buffer(n), n)
            }
            NodeOp::Poison(_) => self.emit(Inst::Const(f32::NAN)),
            NodeOp::Un(u) => {
                let a = self.val(args[0]);
                self.emit(Inst::Un(*u, a))
            }
            NodeOp::Bin(b) => {
                let (x, y) = (self.val(args[0]), self.val(args[1]));
                self.emit(Inst::Bin(*b, x, y))
            }
            NodeOp::Where | NodeOp::Select => {
                let (c, a, b) = (self.val(args[0]), self.val(args[1]), self.val(args[2]));
                self.emit(Inst::Select(c, a, b))
            }
            NodeOp::Fill => self.val(args[0]),
            NodeOp::Uniform { model, stream } => {
                let key = self.u64_arg(U64Arg::Key {
                    model: *model,
                    stream: *stream,
                });
                let s = dims2(node.ty.shape().unwrap_or(&[]));
                let m = mode(s, self.domain);
                self.emit(Inst::Uniform { key, mode: m })
            }
            NodeOp::TopkMask => {
                let s = dims2(node.ty.shape().unwrap_or(&[]));
                if s != self.domain {
                    self.mask_buffers.insert(n);
                    return self.load(Source::Buffer(n), n);
                }
                // The keys: recomputed (cheap ones, and chunk-selected ones, which have
                // no buffer), else read back.
                let stored =
                    self.materialized.contains_key(&args[0]) || buffer_backed(self.g, args[0]);
                let x = if self.cheap(args[0], 6) || !stored {
                    self.val(args[0])
                } else {
                    self.load(Source::Buffer(args[0]), args[0])
                };
                let sel = |b: &mut Self, which: u8| {
                    let t = b.u64_arg(U64Arg::TopT { node: n, which });
                    let cut = b.u64_arg(U64Arg::TopCut { node: n, which });
                    b.emit(Inst::TopSel { x, t, cut })
                };
                let upto = sel(self, 0);
                // Nothing skipped (the usual case): the first cut alone is the mask.
                let no_skip = matches!(
                    self.g.node(args[2]).op,
                    NodeOp::Const(crate::ir::graph::Scalar::Int(0))
                        | NodeOp::Const(crate::ir::graph::Scalar::F32(0.0))
                );
                if no_skip {
                    return upto;
                }
                let skipped = sel(self, 1);
                let keep = self.emit(Inst::Un(UnOp::Not, skipped));
                self.emit(Inst::Bin(BinOp::And, upto, keep))
            }
            other => panic!("compiler bug: {} is not a kernel tensor op", other.name()),
        }
    }

    /// Whether `n` is a small pointwise function of checkpoint inputs and constants
    /// (at most `budget` nodes).
    fn cheap(&self, n: NodeId, budget: usize) -> bool {
        fn walk(g: &Graph, n: NodeId, left: &mut usize) -> bool {
            if *left == 0 {
                return false;
            }
            *left -= 1;
            let node = g.node(n);
            match node.op {
                NodeOp::Input(_) | NodeOp::Const(_) => true,
                NodeOp::Un(_) | NodeOp::Bin(_) => node.args.iter().all(|&a| walk(g, a, left)),
                _ => false,
            }
        }
        let mut left = budget;
        walk(self.g, n, &mut left)
    }

    fn widen(&mut self, n: NodeId) -> V {
        let v = self.val(n);
        self.emit(Inst::Widen(v))
    }

    fn reduce_sink(&mut self, r: NodeId) -> Sink {
        let node = self.g.node(r);
        let NodeOp::Reduce(red, _) = node.op else {
            unreachable!()
        };
        let a = node.args.clone();
        let (op, value) = match red {
            Red::Sum => (RedOp::Sum, self.widen(a[0])),
            Red::SumSq => {
                let w = self.widen(a[0]);
                (RedOp::Sum, self.emit(Inst::B64(Bin64::Mul, w, w)))
            }
            Red::Dot => {
                let (x, y) = (self.widen(a[0]), self.widen(a[1]));
                (RedOp::Sum, self.emit(Inst::B64(Bin64::Mul, x, y)))
            }
            Red::DevSq => {
                let x = self.widen(a[0]);
                let m = self.val(a[1]);
                let d = self.emit(Inst::B64(Bin64::Sub, x, m));
                (RedOp::Sum, self.emit(Inst::B64(Bin64::Mul, d, d)))
            }
            Red::Max => (RedOp::Max, self.val(a[0])),
            Red::Min => (RedOp::Min, self.val(a[0])),
        };
        Sink::Reduce { op, value }
    }

    fn rows_sink(&mut self, a: NodeId) -> Sink {
        let node = self.g.node(a);
        let NodeOp::Axis(aop, _, _) = node.op else {
            unreachable!()
        };
        let x = node.args[0];
        let (op, value) = match aop {
            AxisOp::Sum | AxisOp::Mean => (RedOp::Sum, self.widen(x)),
            AxisOp::Norm => {
                let w = self.widen(x);
                (RedOp::Sum, self.emit(Inst::B64(Bin64::Mul, w, w)))
            }
            AxisOp::Max => (RedOp::Max, self.val(x)),
            AxisOp::Min => (RedOp::Min, self.val(x)),
        };
        Sink::Reduce { op, value }
    }
}
