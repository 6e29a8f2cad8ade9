//! Random well-formed kernels and their data, reference outputs and comparisons. Shared
//! by tests/cuda_emu.rs (emulated, with common/cuda_harness.rs) and tests/gpu.rs (a real
//! device).

#![allow(dead_code)]

use mergec::codegen::{Engine, Launch};
use mergec::ir::kernel::{
    Args, Bin64, BinOp, Dtype, Inst, KInput, Kernel, KernelIo, KernelKind, Mode, RedOp, Sink, UnOp,
};
use mergec::ir::reference;

pub use crate::rng::Rng;

pub const UN_OPS: [UnOp; 13] = UnOp::ALL;
pub const BIN_OPS: [BinOp; 15] = BinOp::ALL;
pub const BIN64: [Bin64; 3] = [Bin64::Add, Bin64::Sub, Bin64::Mul];
pub const MODES: [Mode; 4] = [Mode::Full, Mode::Row, Mode::Col, Mode::One];
pub const DTYPES: [Dtype; 3] = [Dtype::F32, Dtype::F16, Dtype::BF16];
pub const RED_OPS: [RedOp; 3] = [RedOp::Sum, RedOp::Max, RedOp::Min];

/// Operations whose CUDA versions may differ from the host's libm by a few ulps.
pub fn is_transcendental_un(op: UnOp) -> bool {
    matches!(
        op,
        UnOp::Exp | UnOp::Log | UnOp::Tanh | UnOp::Sigmoid | UnOp::Sin | UnOp::Cos | UnOp::Acos
    )
}

/// The domains every backend is tested on (rows, cols).
pub const DOMAINS: [(usize, usize); 9] = [
    (1, 1),
    (1, 3),
    (1, 50),
    (1, 783),
    (1, 4096),
    (1, 4097),
    (3, 50),
    (50, 3),
    (7, 783),
];

/// f32 values that break careless code.
pub const SPECIALS: [u32; 16] = [
    0x7fc0_0000, // NaN
    0xffc0_0000, // -NaN
    0x7fa0_0001, // signalling NaN with a payload
    0x7f80_0000, // inf
    0xff80_0000, // -inf
    0x0000_0000, // 0
    0x8000_0000, // -0
    0x0000_0001, // smallest subnormal
    0x8000_0fff, // negative subnormal
    0x0080_0000, // smallest normal
    0x7f7f_ffff, // largest finite
    0x3f80_0000, // 1
    0xbf80_0000, // -1
    0x3f00_0000, // 0.5
    0x477f_f000, // 65520: rounds to f16 infinity
    0x3380_0000, // 2^-24: smallest f16 subnormal
];

/// Specials at the default rate (scalars, constants).
pub fn random_f32(rng: &mut Rng) -> f32 {
    random_f32_with(rng, 0.1)
}

/// Mostly normal draws of assorted scales; `specials` of them from `SPECIALS` or raw bits.
pub fn random_f32_with(rng: &mut Rng, specials: f64) -> f32 {
    if rng.chance(specials) {
        return if rng.chance(0.75) {
            f32::from_bits(rng.pick(&SPECIALS))
        } else {
            f32::from_bits(rng.next_u64() as u32)
        };
    }
    let scale = rng.pick(&[1e-6, 1e-2, 1.0, 1.0, 1.0, 30.0, 1e5]);
    (rng.normal() * scale) as f32
}

/// `len` elements of storage bytes with `specials` of them special (16-bit dtypes: half
/// of those are raw random bit patterns).
pub fn random_storage(rng: &mut Rng, dtype: Dtype, len: usize, specials: f64) -> Vec<u8> {
    let mut bytes = vec![0u8; len * dtype.size()];
    for i in 0..len {
        if dtype != Dtype::F32 && rng.chance(specials / 2.0) {
            let raw = (rng.next_u64() as u16).to_le_bytes();
            bytes[2 * i..2 * i + 2].copy_from_slice(&raw);
        } else {
            dtype.store(&mut bytes, i, random_f32_with(rng, specials));
        }
    }
    bytes
}

/// Values of each C type so far, for picking operands.
struct Builder {
    body: Vec<Inst>,
    f32s: Vec<u32>,
    f64s: Vec<u32>,
}

impl Builder {
    fn push(&mut self, inst: Inst, wide: bool) -> u32 {
        let v = self.body.len() as u32;
        self.body.push(inst);
        if wide { &mut self.f64s } else { &mut self.f32s }.push(v);
        v
    }
    /// Mostly recent values, so chains get deep.
    fn pick(rng: &mut Rng, pool: &[u32]) -> u32 {
        if rng.chance(0.7) {
            let recent = pool.len().min(6);
            pool[pool.len() - 1 - rng.below(recent)]
        } else {
            rng.pick(pool)
        }
    }
    fn f(&self, rng: &mut Rng) -> u32 {
        Self::pick(rng, &self.f32s)
    }
    fn d(&mut self, rng: &mut Rng) -> u32 {
        if self.f64s.is_empty() {
            let x = self.f(rng);
            return self.push(Inst::Widen(x), true);
        }
        Self::pick(rng, &self.f64s)
    }
}

/// What a generated kernel may contain.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    /// Exp, Log, Tanh, Sigmoid, Sin, Cos, Acos and Pow anywhere in the body.
    pub transcendentals: bool,
}

fn random_inst(rng: &mut Rng, b: &mut Builder, k: &Kernel, style: Style) {
    let un: Vec<UnOp> = UN_OPS
        .into_iter()
        .filter(|&op| style.transcendentals || !is_transcendental_un(op))
        .collect();
    let bins: Vec<BinOp> = BIN_OPS
        .into_iter()
        .filter(|&op| style.transcendentals || op != BinOp::Pow)
        .collect();
    match rng.below(20) {
        0..=4 => {
            let i = Inst::Un(rng.pick(&un), b.f(rng));
            b.push(i, false)
        }
        5..=9 => {
            let i = Inst::Bin(rng.pick(&bins), b.f(rng), b.f(rng));
            b.push(i, false)
        }
        10 => {
            let i = Inst::Select(b.f(rng), b.f(rng), b.f(rng));
            b.push(i, false)
        }
        11 => {
            let i = Inst::Uniform {
                key: rng.below(k.n_u64 as usize) as u32,
                mode: rng.pick(&MODES),
            };
            b.push(i, false)
        }
        12 => {
            let n = k.n_u64 as usize;
            let i = Inst::TopSel {
                x: b.f(rng),
                t: rng.below(n) as u32,
                cut: rng.below(n) as u32,
            };
            b.push(i, false)
        }
        13 => {
            let i = Inst::Widen(b.f(rng));
            b.push(i, true)
        }
        14 if k.n_f64 > 0 => b.push(Inst::Arg64(rng.below(k.n_f64 as usize) as u32), true),
        14 | 15 => {
            let (x, y) = (b.d(rng), b.d(rng));
            b.push(Inst::B64(rng.pick(&BIN64), x, y), true)
        }
        16 => b.push(Inst::Const(random_f32(rng)), false),
        17 if k.n_f32 > 0 => b.push(Inst::Arg(rng.below(k.n_f32 as usize) as u32), false),
        _ => b.push(Inst::Load(rng.below(k.inputs.len()) as u32), false),
    };
}

/// A random well-formed kernel over `rows x cols`.
pub fn random_kernel(
    rng: &mut Rng,
    name: &str,
    kind: KernelKind,
    rows: usize,
    cols: usize,
    style: Style,
) -> Kernel {
    let n_inputs = 1 + rng.below(4);
    let mut k = Kernel {
        name: name.to_string(),
        kind,
        rows,
        cols,
        inputs: (0..n_inputs)
            .map(|_| KInput {
                dtype: rng.pick(&DTYPES),
                mode: rng.pick(&MODES),
            })
            .collect(),
        body: Vec::new(),
        sinks: Vec::new(),
        n_f32: rng.below(3) as u32,
        n_f64: rng.below(3) as u32,
        n_u64: 1 + rng.below(3) as u32,
    };
    let mut b = Builder {
        body: Vec::new(),
        f32s: Vec::new(),
        f64s: Vec::new(),
    };
    for j in 0..n_inputs {
        b.push(Inst::Load(j as u32), false);
    }
    for _ in 0..6 + rng.below(26) {
        random_inst(rng, &mut b, &k, style);
    }
    let n_stores = if kind == KernelKind::Flat {
        rng.below(5)
    } else {
        0
    };
    for _ in 0..n_stores {
        let buf = k.sinks.len() as u32;
        k.sinks.push(Sink::Store {
            value: b.f(rng),
            buf,
            dtype: rng.pick(&DTYPES),
        });
    }
    let min_red = if k.sinks.is_empty() { 1 } else { 0 };
    for _ in 0..min_red + rng.below(4 - min_red) {
        let op = rng.pick(&RED_OPS);
        let value = if op == RedOp::Sum && rng.chance(0.7) {
            b.d(rng)
        } else {
            b.f(rng)
        };
        k.sinks.push(Sink::Reduce { op, value });
    }
    k.body = b.body;
    k
}

/// A kernel, its inputs (storage bytes) and its scalar arguments.
pub struct Case {
    pub kernel: Kernel,
    pub inputs: Vec<Vec<u8>>,
    pub args: Args,
}

pub fn random_args(rng: &mut Rng, k: &Kernel, specials: f64) -> Args {
    let numel = k.numel();
    Args {
        f32: (0..k.n_f32)
            .map(|_| random_f32_with(rng, specials))
            .collect(),
        f64: (0..k.n_f64)
            .map(|_| {
                if rng.chance(0.5) {
                    random_f32_with(rng, specials) as f64
                } else {
                    rng.normal() * 3.0
                }
            })
            .collect(),
        u64: (0..k.n_u64)
            .map(|_| match rng.below(4) {
                0 => rng.next_u64(),
                1 => reference::magnitude_key(random_f32(rng)) as u64,
                2 => rng.below(numel + 2) as u64,
                _ => rng.pick(&[0, u32::MAX as u64, 1 << 32, u64::MAX]),
            })
            .collect(),
    }
}

/// Data for a kernel: special values at a rate drawn per case (often none, so that
/// reductions over thousands of elements are mostly numbers).
pub fn random_case(rng: &mut Rng, kernel: Kernel) -> Case {
    let specials = rng.pick(&[0.0, 0.0, 0.0005, 0.01, 0.1]);
    let inputs = kernel
        .inputs
        .iter()
        .map(|i| random_storage(rng, i.dtype, kernel.input_len(i.mode), specials))
        .collect();
    let args = random_args(rng, &kernel, specials);
    Case {
        kernel,
        inputs,
        args,
    }
}

/// Store buffers (in sink order) and reduction values of one launch.
#[derive(Clone, Debug, PartialEq)]
pub struct Outputs {
    pub stores: Vec<Vec<u8>>,
    pub reductions: Vec<Vec<f64>>,
}

/// Bytes an output starts as, so an element nobody wrote shows up.
pub const CANARY: u8 = 0xA5;

pub fn store_dtypes(k: &Kernel) -> Vec<Dtype> {
    k.sinks
        .iter()
        .filter_map(|s| match *s {
            Sink::Store { dtype, .. } => Some(dtype),
            Sink::Reduce { .. } => None,
        })
        .collect()
}

/// Runs a case through `Launch` (the reference, or any engine's).
pub fn run_launch(launch: &dyn Launch, case: &Case) -> Outputs {
    let k = &case.kernel;
    let mut stores: Vec<Vec<u8>> = store_dtypes(k)
        .into_iter()
        .map(|d| vec![CANARY; k.numel() * d.size()])
        .collect();
    let canary = f64::from_le_bytes([CANARY; 8]);
    let mut reductions = vec![vec![canary; k.n_units()]; k.n_reductions()];
    let mut io = KernelIo {
        inputs: case.inputs.iter().map(|v| v.as_slice()).collect(),
        args: &case.args,
        stores: stores.iter_mut().map(|v| v.as_mut_slice()).collect(),
        reductions: reductions.iter_mut().map(|v| v.as_mut_slice()).collect(),
    };
    launch.launch(&mut io);
    Outputs { stores, reductions }
}

pub fn run_engine(engine: &dyn Engine, case: &Case) -> Result<Outputs, String> {
    let launch = engine.compile(&case.kernel)?;
    Ok(run_launch(launch.as_ref(), case))
}

pub fn run_reference(case: &Case) -> Outputs {
    run_engine(&mergec::codegen::RefEngine, case).expect("the reference compiles everything")
}

/// How close outputs must be: bit-exact (all NaNs alike), or within `n` ulps (f32 stores;
/// one ulp for 16-bit stores; reductions stay exact).
#[derive(Clone, Copy, Debug)]
pub enum Tolerance {
    Exact,
    Ulps(u32),
}

/// Distance in ulps between two finite or infinite f32s of any sign.
pub fn ulps(a: f32, b: f32) -> u64 {
    let ord = |x: f32| {
        let i = x.to_bits() as i32;
        (if i < 0 { i32::MIN - i } else { i }) as i64
    };
    (ord(a) - ord(b)).unsigned_abs()
}

/// Distance in ulps of their dtype between two stored elements (neither NaN).
fn stored_ulps(dtype: Dtype, a: &[u8], b: &[u8]) -> u64 {
    match dtype {
        Dtype::F32 => ulps(
            f32::from_le_bytes(a.try_into().expect("4 bytes")),
            f32::from_le_bytes(b.try_into().expect("4 bytes")),
        ),
        Dtype::F16 | Dtype::BF16 => {
            let ord = |x: &[u8]| {
                let h = u16::from_le_bytes(x.try_into().expect("2 bytes"));
                let m = (h & 0x7fff) as i64;
                if h >> 15 == 1 { -m } else { m }
            };
            (ord(a) - ord(b)).unsigned_abs()
        }
    }
}

/// Compares outputs; the error names the first difference.
pub fn compare(case: &Case, want: &Outputs, got: &Outputs, tol: Tolerance) -> Result<(), String> {
    let k = &case.kernel;
    for (s, dtype) in store_dtypes(k).into_iter().enumerate() {
        let allowed = match (tol, dtype) {
            (Tolerance::Exact, _) => 0,
            (Tolerance::Ulps(n), Dtype::F32) => n,
            (Tolerance::Ulps(_), _) => 1,
        };
        for i in 0..k.numel() {
            let (w, g) = (
                dtype.load(&want.stores[s], i),
                dtype.load(&got.stores[s], i),
            );
            let raw = |b: &[u8]| b[i * dtype.size()..(i + 1) * dtype.size()].to_vec();
            let close = if w.is_nan() || g.is_nan() {
                w.is_nan() && g.is_nan()
            } else {
                let (rw, rg) = (raw(&want.stores[s]), raw(&got.stores[s]));
                rw == rg || stored_ulps(dtype, &rw, &rg) <= allowed as u64
            };
            if !close {
                return Err(format!(
                    "store {s} ({dtype:?}) element {i} (row {}, col {}): want {w:e} {:02x?}, got {g:e} {:02x?}",
                    i / k.cols,
                    i % k.cols,
                    raw(&want.stores[s]),
                    raw(&got.stores[s])
                ));
            }
        }
    }
    for (r, (w, g)) in want.reductions.iter().zip(&got.reductions).enumerate() {
        for (u, (&w, &g)) in w.iter().zip(g).enumerate() {
            let same = (w.is_nan() && g.is_nan()) || w.to_bits() == g.to_bits();
            if !same {
                return Err(format!(
                    "reduction {r} unit {u}: want {w:e} ({:#018x}), got {g:e} ({:#018x})",
                    w.to_bits(),
                    g.to_bits()
                ));
            }
        }
    }
    Ok(())
}
