//! The kernel form: what every backend (the kernel interpreter, the Cranelift JIT,
//! CUDA C) executes. One kernel is a straight-line SSA body evaluated once per
//! element of its domain, whose values flow into sinks (stores and reductions).
//!
//! The exact meaning of each instruction is `reference::eval_inst`; every backend
//! must match it bit for bit on the CPU (the GPU within the tolerance stated for
//! transcendentals).
//!
//! Domains. A kernel iterates a 2-D domain `rows x cols` in row-major order (1-D
//! tensors are `1 x n`). Element `i = r * cols + c`.
//! - `KernelKind::Flat` kernels are run over ranges of *blocks*: block `b` holds the
//!   elements `[b * BLOCK, min((b + 1) * BLOCK, n))` (`BLOCK` = 4096, the interpreter's
//!   canonical reduction block). Each block-reduction sink gets one `f64` per block.
//! - `KernelKind::Rows` kernels are run over ranges of rows; each row-reduction sink
//!   gets one `f64` per row, reduced over the row's `cols` elements in the canonical
//!   order (blocks of 4096 columns, 8 interleaved lanes: see `semantics::canonical_sum`).
//!
//! Canonical order of a sum over a sequence (a flat block, or a row): element `j`
//! (0-based within the block) is added to lane `j % 8` (f64, in increasing `j`); the
//! block's value is `((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))`. For a row longer than 4096
//! the per-block values are added left to right, starting from 0.0.
//! Max and min reductions use `semantics::max`/`min` (NaN-propagating, +0 > -0); they
//! are associative and commutative, so any order gives the same bits; the value of
//! an empty set never occurs (domains are non-empty).

/// Elements per canonical reduction block.
pub const BLOCK: usize = crate::semantics::RED_BLOCK;
/// Interleaved lanes per block.
pub const LANES: usize = crate::semantics::RED_LANES;

/// An SSA value: the index of an instruction in `Kernel::body`.
pub type V = u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelKind {
    Flat,
    Rows,
}

/// How an operand of shape S is indexed in a domain `rows x cols` (S broadcasts to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Same shape as the domain: index `r * cols + c`.
    Full,
    /// One value per row (shape `[rows, 1]` or `[rows]`... as laid out): index `r`.
    Row,
    /// One value per column (shape `[1, cols]` or `[cols]`): index `c`.
    Col,
    /// One value: index 0.
    One,
}

pub use crate::semantics::dtype::Dtype;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KInput {
    pub dtype: Dtype,
    pub mode: Mode,
}

/// f32 -> f32 operations. Semantics: `interp::pointwise::scalar_fn` of the same `Op`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnOp {
    Neg,
    /// 1.0 if x == 0.0 else 0.0
    Not,
    Abs,
    /// -1, 1, or x itself for ±0 and NaN
    Sign,
    Sqrt,
    Exp,
    Log,
    Tanh,
    /// 1 / (1 + exp(-x))
    Sigmoid,
    Floor,
    Sin,
    Cos,
    Acos,
}

impl UnOp {
    pub const ALL: [UnOp; 13] = [
        UnOp::Neg,
        UnOp::Not,
        UnOp::Abs,
        UnOp::Sign,
        UnOp::Sqrt,
        UnOp::Exp,
        UnOp::Log,
        UnOp::Tanh,
        UnOp::Sigmoid,
        UnOp::Floor,
        UnOp::Sin,
        UnOp::Cos,
        UnOp::Acos,
    ];
}

/// (f32, f32) -> f32 operations. Comparisons and logic give 1.0 or 0.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `f32::powf`
    Pow,
    /// `semantics::min` (NaN-propagating, -0 < +0)
    Min,
    /// `semantics::max`
    Max,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// a != 0 && b != 0
    And,
    /// a != 0 || b != 0
    Or,
}

impl BinOp {
    pub const ALL: [BinOp; 15] = [
        BinOp::Add,
        BinOp::Sub,
        BinOp::Mul,
        BinOp::Div,
        BinOp::Pow,
        BinOp::Min,
        BinOp::Max,
        BinOp::Eq,
        BinOp::Ne,
        BinOp::Lt,
        BinOp::Le,
        BinOp::Gt,
        BinOp::Ge,
        BinOp::And,
        BinOp::Or,
    ];
}

/// (f64, f64) -> f64 operations, for reduction operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bin64 {
    Add,
    Sub,
    Mul,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Inst {
    /// f32: element of input `i`, converted from its dtype (bf16/f16 exactly), indexed by its mode.
    Load(u32),
    /// f32: scalar argument `args.f32[i]`.
    Arg(u32),
    /// f32 constant.
    Const(f32),
    Un(UnOp, V),
    Bin(BinOp, V, V),
    /// f32: `if c != 0.0 { a } else { b }`.
    Select(V, V, V),
    /// f32: `semantics::uniform_at(args.u64[key], idx)` where idx is the element's index
    /// under `mode` (Full: r * cols + c; Row: r; Col: c; One: 0).
    Uniform {
        key: u32,
        mode: Mode,
    },
    /// f32 0/1: top-k membership of element with magnitude key `mk(x)` (`mk(x)` =
    /// `x.to_bits() & 0x7fff_ffff`, or `u32::MAX` if x is NaN): with `t = args.u64[t]` and
    /// `cut = args.u64[cut]`, 1.0 iff `mk(x) > t || (mk(x) == t && i < cut)`, where `i` is
    /// the element's Full index.
    TopSel {
        x: V,
        t: u32,
        cut: u32,
    },
    /// f64: exact widening of an f32 value.
    Widen(V),
    /// f64: `args.f64[i]`.
    Arg64(u32),
    B64(Bin64, V, V),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RedOp {
    /// Canonical f64 sum of an f64 value.
    Sum,
    /// `semantics::max` of an f32 value (result widened to f64).
    Max,
    /// `semantics::min` of an f32 value (result widened to f64).
    Min,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Sink {
    /// Write an f32 value, converted to `dtype` (bf16/f16: round to nearest even, as the
    /// `half` crate does), to store buffer `buf` at the element's Full index. Flat kernels only.
    Store { value: V, buf: u32, dtype: Dtype },
    /// Flat: one f64 per block; Rows: one f64 per row.
    Reduce { op: RedOp, value: V },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub name: String,
    pub kind: KernelKind,
    pub rows: usize,
    pub cols: usize,
    pub inputs: Vec<KInput>,
    pub body: Vec<Inst>,
    pub sinks: Vec<Sink>,
    /// Counts of scalar arguments the body reads.
    pub n_f32: u32,
    pub n_f64: u32,
    pub n_u64: u32,
}

impl Kernel {
    pub fn numel(&self) -> usize {
        self.rows * self.cols
    }
    pub fn n_blocks(&self) -> usize {
        self.numel().div_ceil(BLOCK)
    }
    /// Units a launch is split over: blocks (Flat) or rows (Rows).
    pub fn n_units(&self) -> usize {
        match self.kind {
            KernelKind::Flat => self.n_blocks(),
            KernelKind::Rows => self.rows,
        }
    }
    /// Elements an input of this mode holds.
    pub fn input_len(&self, mode: Mode) -> usize {
        match mode {
            Mode::Full => self.numel(),
            Mode::Row => self.rows,
            Mode::Col => self.cols,
            Mode::One => 1,
        }
    }
    /// Number of store sinks (the store buffers a launch gets, in sink order).
    pub fn n_stores(&self) -> usize {
        self.sinks
            .iter()
            .filter(|s| matches!(s, Sink::Store { .. }))
            .count()
    }
    pub fn n_reductions(&self) -> usize {
        self.sinks.len() - self.n_stores()
    }
}

/// Scalar arguments of one launch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Args {
    pub f32: Vec<f32>,
    pub f64: Vec<f64>,
    pub u64: Vec<u64>,
}

/// Host memory a launch reads and writes.
pub struct KernelIo<'a> {
    /// One per kernel input: little-endian storage bytes, `input_len(mode)` elements.
    pub inputs: Vec<&'a [u8]>,
    pub args: &'a Args,
    /// One per `Store` sink, in sink order: `numel * dtype.size()` bytes.
    pub stores: Vec<&'a mut [u8]>,
    /// One per `Reduce` sink, in sink order: `n_units()` values.
    pub reductions: Vec<&'a mut [f64]>,
}
