//! Runs a compiled plan on one tensor: host work between stages, kernels through an
//! engine, selections by the library in `select`. Results are the interpreter's, bit
//! for bit, on the CPU engines.

mod resident;

use super::select;
use crate::codegen::{BackendError, DevBuf, DeviceMemory, Engine, Launch as Code};
use crate::interp::{RuntimeError, Value, elem_op, topk_count};
use crate::ir::graph::{H64, NTy, NodeId, NodeOp, Red, Scalar};
use crate::ir::kernel::{Args, Dtype, KernelIo};
use crate::ir::plan::{Plan, Source, StoreTarget, U64Arg};
use crate::semantics as sem;
use crate::types::ops::AxisOp;
use std::collections::HashMap;
use zerocopy::IntoBytes;

/// A plan with every kernel compiled for one engine.
pub struct Compiled {
    pub plan: Plan,
    /// Whether the engine's launches may run from several threads at once.
    concurrent: bool,
    code: Vec<Vec<Box<dyn Code>>>,
    /// Per stage, per select: the key kernel for a full chunk and for the last one.
    sel_code: Vec<Vec<KeyCode>>,
    /// The engine's device memory: tensors then live there (see `resident`).
    memory: Option<std::sync::Arc<dyn DeviceMemory>>,
}

impl Compiled {
    pub fn new(plan: Plan, engine: &dyn Engine) -> Result<Compiled, BackendError> {
        // Every kernel in one list (one module on a device): per stage, each select's
        // full-chunk and last-chunk key kernels, then the launches.
        let mut all = Vec::new();
        for s in &plan.stages {
            for sel in &s.selects {
                let mut tail = sel.launch.kernel.clone();
                tail.rows = tail_rows(sel);
                all.push(sel.launch.kernel.clone());
                all.push(tail);
            }
            all.extend(s.launches.iter().map(|l| l.kernel.clone()));
        }
        let mut compiled = engine.compile_many(&all)?.into_iter();
        let mut next = || {
            let e = || BackendError::Compile("the engine returned too few kernels".into());
            compiled.next().ok_or_else(e)
        };
        let mut code = Vec::new();
        let mut sel_code = Vec::new();
        for s in &plan.stages {
            let mut sc = Vec::new();
            for _ in &s.selects {
                sc.push((next()?, next()?));
            }
            sel_code.push(sc);
            code.push(
                s.launches
                    .iter()
                    .map(|_| next())
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        Ok(Compiled {
            plan,
            concurrent: engine.concurrent_launches(),
            code,
            sel_code,
            memory: engine.memory(),
        })
    }
}

/// Rows of a select's last chunk.
fn tail_rows(sel: &crate::ir::plan::Select) -> usize {
    match sel.rows % sel.chunk_rows {
        0 => sel.chunk_rows,
        r => r,
    }
}

/// A select's key kernel for a full chunk of rows and for the last chunk.
type KeyCode = (Box<dyn Code>, Box<dyn Code>);

/// The key kernel of select `j` of stage `si` for a chunk of `rows` rows.
fn key_code<'c>(
    c: &'c Compiled,
    si: usize,
    j: usize,
    sel: &crate::ir::plan::Select,
    rows: usize,
) -> &'c dyn Code {
    let code = &c.sel_code[si][j];
    if rows == sel.chunk_rows {
        code.0.as_ref()
    } else {
        code.1.as_ref()
    }
}

/// The bytes (offset, length) of a key kernel's input that rows `r0..r1` read, of an
/// input of `len` bytes: its rows for a Full or Row input, all of it otherwise.
fn chunk_input(
    ki: &crate::ir::kernel::KInput,
    cols: usize,
    r0: usize,
    r1: usize,
    len: usize,
) -> (usize, usize) {
    let size = ki.dtype.size();
    match ki.mode {
        crate::ir::kernel::Mode::Full => (r0 * cols * size, (r1 - r0) * cols * size),
        crate::ir::kernel::Mode::Row => (r0 * size, (r1 - r0) * size),
        _ => (0, len),
    }
}

/// One tensor's inputs and facts.
pub struct RunInputs<'a> {
    /// Base first: storage bytes and dtype.
    pub tensors: Vec<(&'a [u8], Dtype)>,
    pub seed: u64,
    pub name: &'a str,
    /// Polled between stages, selections and chunks of each launch.
    pub cancel: crate::cancel::Cancel,
}

#[derive(Clone, Debug)]
enum HVal {
    V(Value),
    D(f64),
    Cuts([select::TopkCut; 2]),
    /// A tensor result in a buffer.
    Buf,
}

type HR = Result<HVal, RuntimeError>;

/// A tensor value: on the host, in device memory, or both (a copy made for host work or
/// for a launch).
#[derive(Default)]
struct Buf {
    host: Option<Vec<f32>>,
    dev: Option<DevBuf>,
}

impl Buf {
    fn host(v: Vec<f32>) -> Buf {
        Buf {
            host: Some(v),
            dev: None,
        }
    }
}

struct State<'a> {
    c: &'a Compiled,
    inp: &'a RunInputs<'a>,
    /// The engine's device memory, where the tensor's buffers live if it has one.
    mem: Option<&'a dyn DeviceMemory>,
    /// The inputs' device copies (uploaded on first use, in their storage dtype).
    inputs_dev: Vec<Option<DevBuf>>,
    host: Vec<Option<HR>>,
    buffers: HashMap<NodeId, Buf>,
    partials: HashMap<NodeId, Vec<f64>>,
    poison: Vec<Option<Option<RuntimeError>>>,
}

/// Runs the plan, writing the result into the buffer `out` gives (its numel × the
/// output dtype's size). `out` is called once, before the first launch, which is where
/// the memory-hungry part begins (the kernels' buffers and the output): the caller may
/// wait there until its memory budget allows it, while the selections before it run.
/// A plan with no launch does not call it.
pub fn execute<'o>(
    c: &Compiled,
    inp: &RunInputs,
    out: impl FnOnce() -> &'o mut [u8],
) -> Result<(), RuntimeError> {
    let n = c.plan.graph.nodes.len();
    let mut st = State {
        c,
        inp,
        mem: c.memory.as_deref(),
        inputs_dev: inp.tensors.iter().map(|_| None).collect(),
        host: vec![None; n],
        buffers: HashMap::new(),
        partials: HashMap::new(),
        poison: vec![None; n],
    };
    for (i, node) in c.plan.graph.nodes.iter().enumerate() {
        if let NodeOp::Literal(d) = &node.op {
            st.buffers
                .insert(i as NodeId, Buf::host(d.as_ref().clone()));
        }
    }
    let (mut give, mut out) = (Some(out), None);
    let timing = std::env::var("MERGEC_DEBUG").is_ok_and(|v| v.split(',').any(|p| p == "time"));
    let stop = |s: crate::cancel::Stop| RuntimeError::new(s.to_string());
    // A failure once the token fired is the stop (a launch cut short says only that).
    let failed = |e: BackendError| match inp.cancel.check() {
        Err(s) => stop(s),
        Ok(()) => backend_error(e),
    };
    for (si, stage) in c.plan.stages.iter().enumerate() {
        let t0 = std::time::Instant::now();
        for &h in &stage.host {
            if stage.selects.iter().any(|sel| sel.topk.contains(&h)) {
                continue;
            }
            inp.cancel.check().map_err(stop)?;
            let v = st.eval_host(h);
            st.host[h as usize] = Some(v);
        }
        for (j, sel) in stage.selects.iter().enumerate() {
            st.select(si, j, sel).map_err(failed)?;
        }
        let t1 = std::time::Instant::now();
        for (li, l) in stage.launches.iter().enumerate() {
            if let Some(give) = give.take() {
                out = Some(give());
                inp.cancel.check().map_err(stop)?;
            }
            st.launch(si, li, l, &mut out).map_err(failed)?;
        }
        for &n in &stage.frees {
            st.put_buffer(n, None);
        }
        if timing {
            eprintln!(
                "{}: stage {si}: host {:.3} s, kernels {:.3} s",
                inp.name,
                (t1 - t0).as_secs_f64(),
                t1.elapsed().as_secs_f64()
            );
        }
    }
    // A selection cut short leaves a deferred error that a branch may not read.
    inp.cancel.check().map_err(stop)?;
    if let Some(e) = st.poison_of(c.plan.graph.output) {
        return Err(e);
    }
    Ok(())
}

impl State<'_> {
    fn value(&self, n: NodeId) -> HR {
        let g = &self.c.plan.graph;
        if let NodeOp::Const(s) = g.node(n).op {
            return Ok(match s {
                Scalar::F32(x) => HVal::V(Value::F32(x)),
                Scalar::Int(i) => HVal::V(Value::Int(i)),
                Scalar::Bool(b) => HVal::V(Value::Bool(b)),
                Scalar::F64(x) => HVal::D(x),
            });
        }
        self.host[n as usize]
            .clone()
            .unwrap_or_else(|| panic!("executor: %{n} used before it was computed"))
    }

    fn scalar(&self, n: NodeId) -> Result<Value, RuntimeError> {
        match self.value(n)? {
            HVal::V(v) => Ok(v),
            HVal::D(x) => Ok(Value::F32(x as f32)),
            other => panic!("executor: %{n} is {other:?}, not a scalar"),
        }
    }

    fn f64_of(&self, n: NodeId) -> Result<f64, RuntimeError> {
        match self.value(n)? {
            HVal::D(x) => Ok(x),
            other => panic!("executor: %{n} is {other:?}, not an f64"),
        }
    }

    /// A buffer's host copy (made by `fetch_host` first where it may live on a device).
    fn buffer(&self, n: NodeId) -> &[f32] {
        self.buffers
            .get(&n)
            .and_then(|b| b.host.as_deref())
            .unwrap_or_else(|| panic!("executor: no host buffer for %{n}"))
    }

    /// Sets (or with None, drops) a node's buffer, freeing the device copy it replaces.
    fn put_buffer(&mut self, n: NodeId, b: Option<Buf>) {
        let old = match b {
            Some(b) => self.buffers.insert(n, b),
            None => self.buffers.remove(&n),
        };
        if let (Some(mem), Some(dev)) = (self.mem, old.and_then(|o| o.dev)) {
            mem.free(dev);
        }
    }

    fn shape(&self, n: NodeId) -> Vec<usize> {
        self.c
            .plan
            .graph
            .node(n)
            .ty
            .shape()
            .map(<[usize]>::to_vec)
            .unwrap_or_default()
    }

    fn eval_host(&mut self, n: NodeId) -> HR {
        let g = &self.c.plan.graph;
        let node = g.node(n);
        let args = node.args.clone();
        // A tensor argument's deferred error.
        for &a in &args {
            if g.node(a).ty.is_tensor()
                && let Some(e) = self.poison_of(a)
            {
                return Err(e);
            }
        }
        Ok(match &node.op {
            NodeOp::Const(_) => return self.value(n),
            NodeOp::Poison(e) => return Err(e.clone()),
            NodeOp::Host(op) => {
                let vals = args
                    .iter()
                    .map(|&a| self.scalar(a))
                    .collect::<Result<Vec<_>, _>>()?;
                HVal::V(elem_op(*op, &vals)?)
            }
            NodeOp::Select => match self.scalar(args[0])? {
                Value::Bool(true) => return self.value(args[1]),
                _ => return self.value(args[2]),
            },
            NodeOp::H64(h) => {
                let x = self.f64_of(args[0])?;
                match h {
                    H64::DivN(d) => HVal::D(x / *d as f64),
                    H64::Sqrt => HVal::D(x.sqrt()),
                    H64::ToF32 => HVal::V(Value::F32(x as f32)),
                    H64::Cos => {
                        let (xx, yy) = (self.f64_of(args[1])?, self.f64_of(args[2])?);
                        let d = xx.sqrt() * yy.sqrt();
                        HVal::V(Value::F32(if d == 0.0 { 0.0 } else { (x / d) as f32 }))
                    }
                }
            }
            NodeOp::Reduce(red, _) => {
                let p = self.partials.remove(&n).unwrap_or_default();
                HVal::D(match red {
                    Red::Max => p
                        .iter()
                        .fold(None, |a: Option<f32>, &x| {
                            Some(a.map_or(x as f32, |a| sem::max(a, x as f32)))
                        })
                        .map_or(f64::NAN, |x| x as f64),
                    Red::Min => p
                        .iter()
                        .fold(None, |a: Option<f32>, &x| {
                            Some(a.map_or(x as f32, |a| sem::min(a, x as f32)))
                        })
                        .map_or(f64::NAN, |x| x as f64),
                    _ => p.iter().fold(0.0, |a, &x| a + x),
                })
            }
            NodeOp::Quantile => {
                let q = self.scalar(args[1])?.as_f32().unwrap_or(f32::NAN);
                if let Some(q) = self.quantile_resident(args[0], q) {
                    return Ok(HVal::V(Value::F32(q.map_err(backend_error)?)));
                }
                let cancel = &self.inp.cancel;
                HVal::V(Value::F32(select::quantile(
                    self.buffer(args[0]),
                    q,
                    cancel,
                )?))
            }
            NodeOp::TopkMask => {
                let n_el = self.shape(args[0]).iter().product();
                let (k, skip) = self.topk_counts(&args, n_el)?;
                let (k, skip) = select::topk_counts(n_el, k, skip);
                let cuts = match self.cuts_resident(args[0], [k + skip, skip]) {
                    Some(cuts) => cuts.map_err(backend_error)?,
                    None => {
                        let (x, cancel) = (self.buffer(args[0]), &self.inp.cancel);
                        [
                            select::topk_cut(x, k + skip, cancel)?,
                            select::topk_cut(x, skip, cancel)?,
                        ]
                    }
                };
                if self.c.plan.mask_buffers.contains(&n) {
                    self.fetch_host(args[0]).map_err(backend_error)?;
                    let m = mask_from_cuts(self.buffer(args[0]), &cuts, 0);
                    self.put_buffer(n, Some(Buf::host(m)));
                }
                HVal::Cuts(cuts)
            }
            NodeOp::Ranks(axis) => {
                self.fetch_host(args[0]).map_err(backend_error)?;
                let shape = self.shape(args[0]);
                let r = select::ranks(
                    self.buffer(args[0]),
                    &shape,
                    *axis as usize,
                    &self.inp.cancel,
                )?;
                self.put_buffer(n, Some(Buf::host(r)));
                HVal::Buf
            }
            NodeOp::Axis(aop, axis, keepdim) => {
                let buf = match self.partials.remove(&n) {
                    Some(rows) => finish_rows(*aop, &rows, self.shape(args[0])),
                    None => {
                        self.fetch_host(args[0]).map_err(backend_error)?;
                        let shape = self.shape(args[0]);
                        let x = self.buffer(args[0]);
                        select::reduce_axis(x, &shape, *axis as usize, *keepdim, *aop).1
                    }
                };
                self.put_buffer(n, Some(Buf::host(buf)));
                HVal::Buf
            }
            other => panic!("executor: {} is not host work", other.name()),
        })
    }

    /// Resolves a chunked top-k group: its cut points (and mask buffers if needed).
    fn select(
        &mut self,
        si: usize,
        j: usize,
        sel: &crate::ir::plan::Select,
    ) -> Result<(), BackendError> {
        let g = &self.c.plan.graph;
        let cols = sel.launch.kernel.cols;
        let n = sel.rows * cols;
        let mut requests = Vec::new();
        let mut ok = Vec::new();
        for &t in &sel.topk {
            let node = g.node(t);
            let args = node.args.clone();
            let counts = match self.poison_of(args[0]) {
                Some(e) => Err(e),
                None => self.topk_counts(&args, n),
            };
            match counts {
                Ok((k, skip)) => {
                    let (k, skip) = select::topk_counts(n, k, skip);
                    let key = sel
                        .keys
                        .iter()
                        .position(|&x| x == args[0])
                        .expect("select key");
                    requests.push(super::topk::Request {
                        key,
                        count: k + skip,
                    });
                    requests.push(super::topk::Request { key, count: skip });
                    ok.push(t);
                }
                Err(e) => self.host[t as usize] = Some(Err(e)),
            }
        }
        if self.mem.is_some() {
            return self.select_resident(si, j, sel, &ok, &requests);
        }
        let chunks = sel.rows.div_ceil(sel.chunk_rows);
        let fill = |c: usize, bufs: &mut [Vec<f32>]| self.key_chunk(si, j, sel, c, bufs);
        let keys = super::topk::ChunkedKeys {
            n_keys: sel.keys.len(),
            n,
            chunks,
            parallel: self.c.concurrent,
            fill: &fill,
        };
        let cuts = super::topk::select_chunked(&keys, &requests)?;
        for (i, &t) in ok.iter().enumerate() {
            let c = [cuts[2 * i], cuts[2 * i + 1]];
            self.host[t as usize] = Some(Ok(HVal::Cuts(c)));
            if self.c.plan.mask_buffers.contains(&t) {
                let x = g.node(t).args[0];
                let key = sel.keys.iter().position(|&k| k == x).expect("select key");
                let mut mask = Vec::with_capacity(n);
                let mut bufs = vec![Vec::new(); sel.keys.len()];
                for ch in 0..chunks {
                    let start = self.key_chunk(si, j, sel, ch, &mut bufs)?;
                    mask.extend(mask_from_cuts(&bufs[key], &c, start));
                }
                self.put_buffer(t, Some(Buf::host(mask)));
            }
        }
        Ok(())
    }

    /// The (k, skip) counts of a `TopkMask` node's arguments over `n` elements.
    fn topk_counts(&self, args: &[NodeId], n: usize) -> Result<(usize, usize), RuntimeError> {
        let k = topk_count(&self.scalar(args[1])?, n);
        Ok((k, topk_count(&self.scalar(args[2])?, n)))
    }

    /// Computes chunk `c` of a select's keys into `bufs`; returns its first element's index.
    fn key_chunk(
        &self,
        si: usize,
        j: usize,
        sel: &crate::ir::plan::Select,
        c: usize,
        bufs: &mut [Vec<f32>],
    ) -> Result<usize, BackendError> {
        let l = &sel.launch;
        let cols = l.kernel.cols;
        let r0 = c * sel.chunk_rows;
        let r1 = (r0 + sel.chunk_rows).min(sel.rows);
        let len = (r1 - r0) * cols;
        let args = self.args(l);
        let inputs: Vec<&[u8]> = l
            .loads
            .iter()
            .zip(&l.kernel.inputs)
            .map(|(src, ki)| {
                let bytes = match src {
                    Source::Input(i) => self.inp.tensors[*i as usize].0,
                    Source::Buffer(n) => self.buffer(*n).as_bytes(),
                };
                let (at, len) = chunk_input(ki, cols, r0, r1, bytes.len());
                &bytes[at..at + len]
            })
            .collect();
        for b in bufs.iter_mut() {
            b.resize(len, 0.0);
        }
        let mut io = KernelIo {
            inputs,
            args: &args,
            stores: bufs
                .iter_mut()
                .map(|b| b.as_mut_slice().as_mut_bytes())
                .collect(),
            reductions: Vec::new(),
        };
        key_code(self.c, si, j, sel, r1 - r0).launch_until(&mut io, &self.inp.cancel)?;
        Ok(r0 * cols)
    }

    fn args(&self, l: &crate::ir::plan::Launch) -> Args {
        Args {
            f32: l
                .f32_args
                .iter()
                .map(|&a| match self.value(a) {
                    Ok(HVal::V(v)) => v.as_f32().unwrap_or(f32::NAN),
                    Ok(HVal::D(x)) => x as f32,
                    _ => f32::NAN,
                })
                .collect(),
            f64: l
                .f64_args
                .iter()
                .map(|&a| self.f64_of(a).unwrap_or(f64::NAN))
                .collect(),
            u64: l.u64_args.iter().map(|a| self.u64_arg(a)).collect(),
        }
    }

    /// The deferred error a tensor node carries, if its chosen inputs failed.
    fn poison_of(&mut self, n: NodeId) -> Option<RuntimeError> {
        if let Some(p) = &self.poison[n as usize] {
            return p.clone();
        }
        let g = &self.c.plan.graph;
        let node = g.node(n);
        let args = node.args.clone();
        let p = if !node.ty.is_tensor() {
            match self.host[n as usize].clone() {
                Some(Err(e)) => Some(e),
                _ => None,
            }
        } else {
            match &node.op {
                NodeOp::Poison(e) => Some(e.clone()),
                NodeOp::Select => match self.scalar(args[0]) {
                    Err(e) => Some(e),
                    Ok(Value::Bool(true)) => self.poison_of(args[1]),
                    Ok(_) => self.poison_of(args[2]),
                },
                NodeOp::Ranks(_) | NodeOp::Axis(..) | NodeOp::TopkMask => {
                    match self.host[n as usize].clone() {
                        Some(Err(e)) => Some(e),
                        _ => None,
                    }
                }
                _ => args.iter().find_map(|&a| self.poison_of(a)),
            }
        };
        self.poison[n as usize] = Some(p.clone());
        p
    }

    fn u64_arg(&self, a: &U64Arg) -> u64 {
        match a {
            U64Arg::Key { model, stream } => sem::stream_key(
                self.inp.seed,
                sem::name_hash(self.inp.name),
                *model,
                *stream,
            ),
            U64Arg::TopT { node, which } | U64Arg::TopCut { node, which } => {
                let cut = match self.value(*node) {
                    Ok(HVal::Cuts(c)) => c[*which as usize],
                    _ => select::TopkCut {
                        t: u32::MAX,
                        cut: 0,
                    },
                };
                match a {
                    U64Arg::TopT { .. } => cut.t as u64,
                    _ => cut.cut,
                }
            }
        }
    }

    fn launch(
        &mut self,
        si: usize,
        li: usize,
        l: &crate::ir::plan::Launch,
        out: &mut Option<&mut [u8]>,
    ) -> Result<(), BackendError> {
        if self.mem.is_some() {
            return self.launch_resident(si, li, l, out);
        }
        let k = &l.kernel;
        let args = self.args(l);
        // Buffers this launch stores into, taken out while it runs.
        let mut owned: Vec<Vec<f32>> = l
            .stores
            .iter()
            .filter_map(|s| match s {
                StoreTarget::Buffer(_) => Some(vec![0.0f32; k.numel()]),
                StoreTarget::Output => None,
            })
            .collect();
        let mut reds: Vec<Vec<f64>> = vec![vec![0.0; k.n_units()]; l.reductions.len()];
        {
            let inputs: Vec<&[u8]> = l
                .loads
                .iter()
                .map(|s| match s {
                    Source::Input(i) => self.inp.tensors[*i as usize].0,
                    Source::Buffer(n) => self.buffer(*n).as_bytes(),
                })
                .collect();
            let mut owned_it = owned.iter_mut();
            let mut out_slot = if l.stores.contains(&StoreTarget::Output) {
                out.take()
            } else {
                None
            };
            let mut stores: Vec<&mut [u8]> = Vec::new();
            for s in &l.stores {
                match s {
                    StoreTarget::Buffer(_) => {
                        stores.push(owned_it.next().expect("store buffer").as_mut_bytes())
                    }
                    StoreTarget::Output => stores.push(
                        out_slot
                            .take()
                            .expect("executor: the output is stored once"),
                    ),
                }
            }
            let mut io = KernelIo {
                inputs,
                args: &args,
                stores,
                reductions: reds.iter_mut().map(|r| r.as_mut_slice()).collect(),
            };
            self.c.code[si][li].launch_until(&mut io, &self.inp.cancel)?;
        }
        let mut owned_it = owned.into_iter();
        for s in &l.stores {
            if let StoreTarget::Buffer(n) = s {
                let b = Buf::host(owned_it.next().expect("store buffer"));
                self.put_buffer(*n, Some(b));
            }
        }
        for (r, p) in l.reductions.iter().zip(reds) {
            self.partials.insert(*r, p);
        }
        Ok(())
    }
}

/// Marks a device failure (not the program's): callers may retry elsewhere.
pub const BACKEND_ERROR: &str = "backend error: ";

fn backend_error(e: BackendError) -> RuntimeError {
    RuntimeError::new(format!("{BACKEND_ERROR}{e}"))
}

/// Row reduction results (one f64 per row) finished as the interpreter does.
fn finish_rows(aop: AxisOp, rows: &[f64], x_shape: Vec<usize>) -> Vec<f32> {
    let cols = *x_shape.last().unwrap_or(&1) as f64;
    rows.iter()
        .map(|&s| match aop {
            AxisOp::Sum | AxisOp::Max | AxisOp::Min => s as f32,
            AxisOp::Mean => (s / cols) as f32,
            AxisOp::Norm => s.sqrt() as f32,
        })
        .collect()
}

/// The 0/1 mask of a top-k selection, as a buffer.
fn mask_from_cuts(x: &[f32], cuts: &[select::TopkCut; 2], start: usize) -> Vec<f32> {
    let before = |c: &select::TopkCut, i: usize, key: u64| {
        key > c.t as u64 || (key == c.t as u64 && (i as u64) < c.cut)
    };
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let key = crate::ir::reference::magnitude_key(v) as u64;
            let i = start + i;
            sem::from_bool(before(&cuts[0], i, key) && !before(&cuts[1], i, key))
        })
        .collect()
}

/// The type of a node, for callers.
pub fn output_shape(c: &Compiled) -> Vec<usize> {
    match &c.plan.graph.node(c.plan.graph.output).ty {
        NTy::Tensor(s) => s.clone(),
        NTy::Scalar(_) => vec![],
    }
}
