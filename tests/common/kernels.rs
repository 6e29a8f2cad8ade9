//! Random well-formed kernels (`mergec::ir::kernel`) with matching random buffers,
//! for testing backends against the reference evaluator. Values are typed as the
//! kernel form requires (f32 for `Load`/`Un`/`Bin`/..., f64 for `Widen`/`Arg64`/
//! `B64`); data is rich in NaN, ±0, ±inf, subnormals and huge values.

#![allow(dead_code)]

use mergec::ir::kernel::{
    Args, Bin64, BinOp, Dtype, Inst, KInput, Kernel, KernelKind, Mode, RedOp, Sink, UnOp, V,
};

pub use crate::rng::Rng;

pub const UN_OPS: [UnOp; 13] = UnOp::ALL;

pub const BIN_OPS: [BinOp; 15] = BinOp::ALL;

pub const DTYPES: [Dtype; 3] = [Dtype::F32, Dtype::F16, Dtype::BF16];
pub const MODES: [Mode; 4] = [Mode::Full, Mode::Row, Mode::Col, Mode::One];

/// Interesting f32 values: specials, subnormals, rounding boundaries of bf16/f16.
pub const SPECIAL: [f32; 24] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    f32::NAN,
    -f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::MIN_POSITIVE,
    1.0e-40,
    -3.0e-45,
    f32::MAX,
    f32::MIN,
    1.0e30,
    65504.0,
    65520.0,
    -65519.99,
    6.0e-8,
    2.98e-8,
    1.0 + 1.0 / 256.0,
    1.0 + 3.0 / 256.0,
    3.0,
    -2.5,
];

/// A random f32. Wild: special values, random bit patterns, or ordinary numbers.
/// Tame (so that sums stay finite and their order shows): finite values of
/// widely varying magnitude, zeros and a few subnormals.
pub fn value(rng: &mut Rng, wild: bool) -> f32 {
    let ordinary =
        |rng: &mut Rng| ((rng.next_u64() >> 40) as f32 / (1u64 << 22) as f32 - 2.0) * 3.0;
    if !wild {
        return match rng.below(12) {
            0 => rng.pick(&[0.0, -0.0, 1.0, -1.0, 1.0e-40, -3.0e-42]),
            1..=3 => {
                let e = (rng.below(60) as i32 - 30) as f32;
                ordinary(rng) * e.exp2()
            }
            _ => ordinary(rng),
        };
    }
    match rng.below(10) {
        0..=2 => rng.pick(&SPECIAL),
        3 => f32::from_bits(rng.next_u64() as u32),
        4 => f32::from_bits(rng.next_u64() as u32 & 0x807f_ffff),
        _ => ordinary(rng),
    }
}

/// `n` random elements of `dtype` as little-endian bytes.
pub fn data(rng: &mut Rng, dtype: Dtype, n: usize, wild: bool) -> Vec<u8> {
    let mut out = vec![0u8; n * dtype.size()];
    for i in 0..n {
        if wild && dtype != Dtype::F32 && rng.percent(25) {
            let bits = rng.next_u64() as u16;
            out[2 * i..2 * i + 2].copy_from_slice(&bits.to_le_bytes());
        } else {
            dtype.store(&mut out, i, value(rng, wild));
        }
    }
    out
}

/// A kernel under construction: its body and the values of each type so far.
struct Body {
    insts: Vec<Inst>,
    f32s: Vec<V>,
    f64s: Vec<V>,
    /// Sometimes read an f64 value where an f32 is expected and vice versa (the
    /// reference defines these reads as casts).
    cross: bool,
}

impl Body {
    fn push(&mut self, inst: Inst, f64: bool) -> V {
        let v = self.insts.len() as V;
        self.insts.push(inst);
        if f64 {
            self.f64s.push(v)
        } else {
            self.f32s.push(v)
        }
        v
    }
    fn f32(&self, rng: &mut Rng) -> V {
        if self.cross && !self.f64s.is_empty() && rng.percent(10) {
            return rng.pick(&self.f64s);
        }
        // Prefer recent values, so chains get deep.
        let n = self.f32s.len();
        if rng.percent(60) {
            self.f32s[n - 1 - rng.below(n.min(4))]
        } else {
            rng.pick(&self.f32s)
        }
    }
    fn f64(&self, rng: &mut Rng) -> V {
        if self.cross && rng.percent(10) {
            return rng.pick(&self.f32s);
        }
        rng.pick(&self.f64s)
    }
}

fn random_inst(rng: &mut Rng, b: &mut Body, k: &Kernel, wild: bool) {
    match rng.below(20) {
        0..=3 => {
            let (op, a) = (rng.pick(&UN_OPS), b.f32(rng));
            b.push(Inst::Un(op, a), false);
        }
        4..=9 => {
            let (op, x, y) = (rng.pick(&BIN_OPS), b.f32(rng), b.f32(rng));
            b.push(Inst::Bin(op, x, y), false);
        }
        10 => {
            let (c, x, y) = (b.f32(rng), b.f32(rng), b.f32(rng));
            b.push(Inst::Select(c, x, y), false);
        }
        11 => {
            let (c, x, y) = (b.f32(rng), b.f64(rng), b.f64(rng));
            b.push(Inst::Select(c, x, y), true);
        }
        12 => {
            let (key, mode) = (rng.below(k.n_u64 as usize) as u32, rng.pick(&MODES));
            b.push(Inst::Uniform { key, mode }, false);
        }
        13 => {
            let x = b.f32(rng);
            b.push(Inst::TopSel { x, t: 0, cut: 1 }, false);
        }
        14 | 15 => {
            let a = b.f32(rng);
            b.push(Inst::Widen(a), true);
        }
        16 => {
            let j = rng.below(k.n_f64 as usize) as u32;
            b.push(Inst::Arg64(j), true);
        }
        17 => {
            let c = if wild {
                rng.pick(&SPECIAL)
            } else {
                value(rng, false)
            };
            b.push(Inst::Const(c), false);
        }
        _ => {
            let op = rng.pick(&[Bin64::Add, Bin64::Sub, Bin64::Mul]);
            let (x, y) = (b.f64(rng), b.f64(rng));
            b.push(Inst::B64(op, x, y), true);
        }
    }
}

fn random_sinks(rng: &mut Rng, b: &Body, kind: KernelKind) -> Vec<Sink> {
    let mut sinks = vec![];
    let stores = if kind == KernelKind::Flat || rng.percent(25) {
        rng.below(4)
    } else {
        0
    };
    for _ in 0..stores {
        let dtype = rng.pick(&DTYPES);
        sinks.push(Sink::Store {
            value: b.f32(rng),
            buf: sinks.len() as u32,
            dtype,
        });
    }
    let reds = if sinks.is_empty() {
        1 + rng.below(4)
    } else {
        rng.below(4)
    };
    for _ in 0..reds {
        let op = rng.pick(&[RedOp::Sum, RedOp::Sum, RedOp::Max, RedOp::Min]);
        let value = if op == RedOp::Sum {
            b.f64(rng)
        } else {
            b.f32(rng)
        };
        sinks.push(Sink::Reduce { op, value });
    }
    // Interleave stores and reductions.
    for i in (1..sinks.len()).rev() {
        sinks.swap(i, rng.below(i + 1));
    }
    sinks
}

/// A random kernel of `kind` over `rows x cols` (`wild`: constants may be special values).
pub fn random_kernel(
    rng: &mut Rng,
    kind: KernelKind,
    rows: usize,
    cols: usize,
    wild: bool,
) -> Kernel {
    let n_inputs = 1 + rng.below(4);
    let inputs = (0..n_inputs)
        .map(|_| KInput {
            dtype: rng.pick(&DTYPES),
            mode: if rng.percent(50) {
                Mode::Full
            } else {
                rng.pick(&MODES)
            },
        })
        .collect();
    let mut k = Kernel {
        name: format!("k{}", rng.next_u64() % 1000),
        kind,
        rows,
        cols,
        inputs,
        body: vec![],
        sinks: vec![],
        n_f32: 1 + rng.below(3) as u32,
        n_f64: 1 + rng.below(2) as u32,
        n_u64: 4,
    };
    let mut b = Body {
        insts: vec![],
        f32s: vec![],
        f64s: vec![],
        cross: rng.percent(10),
    };
    for j in 0..n_inputs {
        b.push(Inst::Load(j as u32), false);
    }
    b.push(Inst::Arg(rng.below(k.n_f32 as usize) as u32), false);
    let a = b.f32(rng);
    b.push(Inst::Widen(a), true);
    for _ in 0..4 + rng.below(24) {
        random_inst(rng, &mut b, &k, wild);
    }
    // TopSel: thresholds at u64 arguments 0..2 (t) and 1..3 (cut).
    for inst in &mut b.insts {
        if let Inst::TopSel { t, cut, .. } = inst {
            *t = rng.below(2) as u32 * 2;
            *cut = 1 + rng.below(2) as u32 * 2;
        }
    }
    k.sinks = random_sinks(rng, &b, kind);
    k.body = b.insts;
    k
}

/// Random arguments for `k`: u64 slots 0 and 2 are top-k thresholds (magnitude
/// keys), 1 and 3 cut indices; every slot also serves as a random-stream key.
pub fn random_args(rng: &mut Rng, k: &Kernel, wild: bool) -> Args {
    let n = k.numel() as u64;
    let key = |rng: &mut Rng| match rng.below(4) {
        0 => rng.next_u64(),
        1 => (1u64 << 32) | (rng.next_u64() % 4),
        2 => u32::MAX as u64,
        _ => (value(rng, wild).to_bits() & 0x7fff_ffff) as u64,
    };
    let cut = |rng: &mut Rng| match rng.below(3) {
        0 => rng.next_u64() % (n + 10),
        1 => rng.next_u64(),
        _ => rng.next_u64() % 20,
    };
    Args {
        f32: (0..k.n_f32).map(|_| value(rng, wild)).collect(),
        f64: (0..k.n_f64)
            .map(|_| value(rng, wild) as f64 * 1.5)
            .collect(),
        u64: vec![key(rng), cut(rng), key(rng), cut(rng)],
    }
}

/// Random input buffers for `k`.
pub fn random_inputs(rng: &mut Rng, k: &Kernel, wild: bool) -> Vec<Vec<u8>> {
    k.inputs
        .iter()
        .map(|inp| data(rng, inp.dtype, k.input_len(inp.mode), wild))
        .collect()
}

/// Output buffers of `k`: one per store (filled with `fill`), one per reduction.
pub fn outputs(k: &Kernel, fill: u8) -> (Vec<Vec<u8>>, Vec<Vec<f64>>) {
    let stores = k
        .sinks
        .iter()
        .filter_map(|s| match s {
            Sink::Store { dtype, .. } => Some(vec![fill; k.numel() * dtype.size()]),
            Sink::Reduce { .. } => None,
        })
        .collect();
    let reds = (0..k.n_reductions())
        .map(|_| vec![f64::from_bits(fill as u64); k.n_units()])
        .collect();
    (stores, reds)
}

/// The dtype of each store sink, in order.
pub fn store_dtypes(k: &Kernel) -> Vec<Dtype> {
    k.sinks
        .iter()
        .filter_map(|s| match s {
            Sink::Store { dtype, .. } => Some(*dtype),
            Sink::Reduce { .. } => None,
        })
        .collect()
}

/// First difference between two results, treating NaN == NaN (any payload).
pub fn compare(
    k: &Kernel,
    (sa, ra): (&[Vec<u8>], &[Vec<f64>]),
    (sb, rb): (&[Vec<u8>], &[Vec<f64>]),
) -> Option<String> {
    for (s, dt) in store_dtypes(k).into_iter().enumerate() {
        for i in 0..k.numel() {
            let (x, y) = (dt.load(&sa[s], i), dt.load(&sb[s], i));
            let sz = dt.size();
            let same = sa[s][sz * i..sz * (i + 1)] == sb[s][sz * i..sz * (i + 1)];
            if !(same || x.is_nan() && y.is_nan()) {
                return Some(format!("store {s} ({dt:?}) element {i}: {x:?} vs {y:?}"));
            }
        }
    }
    for (r, (a, b)) in ra.iter().zip(rb).enumerate() {
        for u in 0..a.len() {
            let (x, y) = (a[u], b[u]);
            if x.to_bits() != y.to_bits() && !(x.is_nan() && y.is_nan()) {
                return Some(format!("reduction {r} unit {u}: {x:?} vs {y:?}"));
            }
        }
    }
    None
}
