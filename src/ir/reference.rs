//! The kernel form's semantics: a plain, sequential evaluator. Backends are tested
//! against it; it is also the `--backend ref` engine (slow, obviously right).

use super::kernel::{Bin64, BinOp, Inst, Kernel, KernelIo, KernelKind, Mode, RedOp, Sink, UnOp};
use crate::semantics as sem;

/// Magnitude key of the top-k order: |x| as bits, NaN above everything.
#[inline(always)]
pub fn magnitude_key(x: f32) -> u32 {
    if x.is_nan() {
        u32::MAX
    } else {
        x.to_bits() & 0x7fff_ffff
    }
}

pub fn un(op: UnOp, x: f32) -> f32 {
    match op {
        UnOp::Neg => -x,
        UnOp::Not => sem::from_bool(x == 0.0),
        UnOp::Abs => x.abs(),
        UnOp::Sign => sem::sign(x),
        UnOp::Sqrt => x.sqrt(),
        UnOp::Exp => x.exp(),
        UnOp::Log => x.ln(),
        UnOp::Tanh => x.tanh(),
        UnOp::Sigmoid => sem::sigmoid(x),
        UnOp::Floor => x.floor(),
        UnOp::Sin => x.sin(),
        UnOp::Cos => x.cos(),
        UnOp::Acos => x.acos(),
    }
}

pub fn bin(op: BinOp, a: f32, b: f32) -> f32 {
    use sem::from_bool as fb;
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Pow => a.powf(b),
        BinOp::Min => sem::min(a, b),
        BinOp::Max => sem::max(a, b),
        BinOp::Eq => fb(a == b),
        BinOp::Ne => fb(a != b),
        BinOp::Lt => fb(a < b),
        BinOp::Le => fb(a <= b),
        BinOp::Gt => fb(a > b),
        BinOp::Ge => fb(a >= b),
        BinOp::And => fb(a != 0.0 && b != 0.0),
        BinOp::Or => fb(a != 0.0 || b != 0.0),
    }
}

pub fn bin64(op: Bin64, a: f64, b: f64) -> f64 {
    match op {
        Bin64::Add => a + b,
        Bin64::Sub => a - b,
        Bin64::Mul => a * b,
    }
}

/// Index of element (r, c) under a mode.
pub fn mode_index(mode: Mode, cols: usize, r: usize, c: usize) -> usize {
    match mode {
        Mode::Full => r * cols + c,
        Mode::Row => r,
        Mode::Col => c,
        Mode::One => 0,
    }
}

/// Evaluates the body at element (r, c); f32 values are stored widened in `vals`.
fn eval_body(k: &Kernel, io: &KernelIo, r: usize, c: usize, vals: &mut [f64]) {
    let full = r * k.cols + c;
    for (i, inst) in k.body.iter().enumerate() {
        let f = |v: u32| vals[v as usize] as f32;
        let d = |v: u32| vals[v as usize];
        vals[i] = match *inst {
            Inst::Load(j) => {
                let inp = k.inputs[j as usize];
                let idx = mode_index(inp.mode, k.cols, r, c);
                inp.dtype.load(io.inputs[j as usize], idx) as f64
            }
            Inst::Arg(j) => io.args.f32[j as usize] as f64,
            Inst::Const(x) => x as f64,
            Inst::Un(op, a) => un(op, f(a)) as f64,
            Inst::Bin(op, a, b) => bin(op, f(a), f(b)) as f64,
            Inst::Select(cnd, a, b) => {
                if f(cnd) != 0.0 {
                    d(a)
                } else {
                    d(b)
                }
            }
            Inst::Uniform { key, mode } => {
                let idx = mode_index(mode, k.cols, r, c) as u64;
                sem::uniform_at(io.args.u64[key as usize], idx) as f64
            }
            Inst::TopSel { x, t, cut } => {
                let key = magnitude_key(f(x)) as u64;
                let t = io.args.u64[t as usize];
                let cut = io.args.u64[cut as usize];
                sem::from_bool(key > t || (key == t && (full as u64) < cut)) as f64
            }
            Inst::Widen(a) => d(a),
            Inst::Arg64(j) => io.args.f64[j as usize],
            Inst::B64(op, a, b) => bin64(op, d(a), d(b)),
        };
    }
}

/// Combines a canonical block's 8 lane partials.
pub fn combine_lanes(l: &[f64; 8]) -> f64 {
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

/// Running state of one reduction over one canonical sequence.
#[derive(Clone, Copy)]
struct Acc {
    lanes: [f64; 8],
    total: f64,
    ext: Option<f32>,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            lanes: [0.0; 8],
            total: 0.0,
            ext: None,
        }
    }
    fn add(&mut self, op: RedOp, j: usize, v: f64) {
        match op {
            RedOp::Sum => self.lanes[j % 8] += v,
            RedOp::Max | RedOp::Min => {
                let x = v as f32;
                self.ext = Some(match (self.ext, op) {
                    (None, _) => x,
                    (Some(e), RedOp::Max) => sem::max(e, x),
                    (Some(e), _) => sem::min(e, x),
                });
            }
        }
    }
    /// Ends a canonical block (sums only).
    fn end_block(&mut self) {
        self.total += combine_lanes(&self.lanes);
        self.lanes = [0.0; 8];
    }
    fn value(&self, op: RedOp) -> f64 {
        match op {
            RedOp::Sum => self.total,
            _ => self.ext.map_or(f64::NAN, |e| e as f64),
        }
    }
}

/// Runs units `[lo, hi)` (blocks or rows) of a kernel, sequentially.
pub fn run_units(k: &Kernel, io: &mut KernelIo, lo: usize, hi: usize) {
    let mut vals = vec![0.0f64; k.body.len()];
    let red: Vec<(usize, RedOp, u32)> = reductions(k);
    let n = k.numel();
    for unit in lo..hi {
        let (start, end) = match k.kind {
            KernelKind::Flat => (
                unit * super::kernel::BLOCK,
                ((unit + 1) * super::kernel::BLOCK).min(n),
            ),
            KernelKind::Rows => (unit * k.cols, (unit + 1) * k.cols),
        };
        let mut accs = vec![Acc::new(); red.len()];
        for e in start..end {
            let (r, c) = (e / k.cols, e % k.cols);
            eval_body(k, io, r, c, &mut vals);
            // Position within the canonical sequence: the flat block, or the row.
            let j = (e - start) % super::kernel::BLOCK;
            for (a, &(_, op, v)) in accs.iter_mut().zip(&red) {
                a.add(op, j, vals[v as usize]);
                if j == super::kernel::BLOCK - 1 || e + 1 == end {
                    a.end_block();
                }
            }
            let mut s = 0;
            for sink in &k.sinks {
                if let Sink::Store { value, dtype, .. } = sink {
                    dtype.store(io.stores[s], e, vals[*value as usize] as f32);
                    s += 1;
                }
            }
        }
        for (a, &(slot, op, _)) in accs.iter().zip(&red) {
            io.reductions[slot][unit] = a.value(op);
        }
    }
}

/// Runs a whole kernel, sequentially.
pub fn run(k: &Kernel, io: &mut KernelIo) {
    run_units(k, io, 0, k.n_units());
}

/// (reduction slot, op, value) of each `Reduce` sink, in sink order.
pub fn reductions(k: &Kernel) -> Vec<(usize, RedOp, u32)> {
    k.sinks
        .iter()
        .filter_map(|s| match s {
            Sink::Reduce { op, value } => Some((*op, *value)),
            Sink::Store { .. } => None,
        })
        .enumerate()
        .map(|(i, (op, v))| (i, op, v))
        .collect()
}
