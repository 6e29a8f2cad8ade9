//! The kernel body on one group of 8 elements: each live instruction becomes a
//! few vector instructions (or one helper call per lane for transcendentals).

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{F32X4, F64X2, I32, I32X4, I64, I64X2};
use cranelift_codegen::ir::{InstBuilder, SigRef, Value};

use super::emit::{self, Fb, GOLDEN};
use super::fns;
use super::plan::{KernelInfo, Ty};
use crate::ir::kernel::{Bin64, BinOp, Inst, Kernel, Mode, UnOp};

/// A value of the body on one group: 8 f32 lanes or 8 f64 lanes.
#[derive(Clone, Copy)]
pub(crate) enum Vv {
    F32([Value; 2]),
    F64([Value; 4]),
}

/// Values defined once per launch, before the loops.
pub(crate) struct Scalars {
    /// Splatted f32 / f64 arguments.
    pub f32: Vec<Value>,
    pub f64: Vec<Value>,
    /// u64 arguments (i64 scalars).
    pub u64: Vec<Value>,
    /// Per u64 argument that is a top-k threshold: its canonical form.
    pub thresholds: Vec<Option<Threshold>>,
    /// Every (threshold, cut) pair a top-k selection uses, with the cut as it applies:
    /// 0 when the threshold's key cannot be taken.
    pub tie_cuts: Vec<TieCut>,
    /// Helper signatures: (f32) -> f32 and (f32, f32) -> f32.
    pub sig_un: SigRef,
    pub sig_bin: SigRef,
}

/// A top-k selection's cut: elements of the threshold key are taken below index `eff`.
#[derive(Clone, Copy)]
pub(crate) struct TieCut {
    pub t: u32,
    pub cut: u32,
    pub eff: Value,
}

/// Per canonical block: its first element and, per [`TieCut`], how many of its
/// elements lie below the cut (I32X4 splats, at most 2^20).
#[derive(Clone)]
pub(crate) struct TieBlock {
    pub base: Value,
    pub rel: Vec<Value>,
}

/// What one group reads: its first element and its input vectors.
pub(crate) struct Group {
    pub e0: Value,
    /// The block's cuts, when the kernel selects.
    pub ties: Option<TieBlock>,
    /// Per input (`None` when unused): its 8 lanes as f32.
    pub inputs: Vec<Option<[Value; 2]>>,
    /// `index * GOLDEN` per lane for row- and column-indexed draws.
    pub ig_row: Option<[Value; 4]>,
    pub ig_col: Option<[Value; 4]>,
}

pub(crate) fn to_f32(b: &mut Fb, v: Vv) -> [Value; 2] {
    match v {
        Vv::F32(x) => x,
        Vv::F64(x) => emit::demote(b, x),
    }
}

pub(crate) fn to_f64(b: &mut Fb, v: Vv) -> [Value; 4] {
    match v {
        Vv::F32(x) => emit::promote(b, x),
        Vv::F64(x) => x,
    }
}

/// Emits the live instructions of the body; returns the value of each.
pub(crate) fn emit_body(
    b: &mut Fb,
    k: &Kernel,
    p: &KernelInfo,
    sc: &Scalars,
    g: &Group,
) -> Result<Vec<Option<Vv>>, String> {
    let mut vals: Vec<Option<Vv>> = Vec::with_capacity(k.body.len());
    // Per comparison: its lane masks, which a select uses as they are.
    let mut masks: Vec<Option<[Value; 2]>> = Vec::with_capacity(k.body.len());
    for (i, inst) in k.body.iter().enumerate() {
        let (mut v, mut m) = (None, None);
        if p.live[i] {
            if let Inst::Bin(op, x, y) = *inst
                && let Some(cc) = compare(op)
            {
                let get = |v: u32| vals[v as usize].ok_or(format!("value {v} not computed"));
                let (x, y) = (to_f32(b, get(x)?), to_f32(b, get(y)?));
                let lanes = [0, 1].map(|h| b.ins().fcmp(cc, x[h], y[h]));
                v = Some(Vv::F32(lanes.map(|l| emit::mask_to_f32(b, l))));
                m = Some(lanes);
            } else {
                v = Some(emit_inst(b, sc, g, inst, p.ty[i], &vals, &masks)?);
            }
        }
        vals.push(v);
        masks.push(m);
    }
    Ok(vals)
}

/// The condition of a comparison operator.
fn compare(op: BinOp) -> Option<FloatCC> {
    Some(match op {
        BinOp::Eq => FloatCC::Equal,
        BinOp::Ne => FloatCC::NotEqual,
        BinOp::Lt => FloatCC::LessThan,
        BinOp::Le => FloatCC::LessThanOrEqual,
        BinOp::Gt => FloatCC::GreaterThan,
        BinOp::Ge => FloatCC::GreaterThanOrEqual,
        _ => return None,
    })
}

fn emit_inst(
    b: &mut Fb,
    sc: &Scalars,
    g: &Group,
    inst: &Inst,
    ty: Ty,
    vals: &[Option<Vv>],
    masks: &[Option<[Value; 2]>],
) -> Result<Vv, String> {
    let get = |v: u32| vals[v as usize].ok_or_else(|| format!("value {v} not computed"));
    Ok(match *inst {
        Inst::Load(j) => Vv::F32(g.inputs[j as usize].ok_or("input not loaded")?),
        Inst::Arg(j) => Vv::F32([sc.f32[j as usize]; 2]),
        Inst::Const(x) => Vv::F32([emit::splat_f32(b, x); 2]),
        Inst::Un(op, a) => {
            let a = to_f32(b, get(a)?);
            Vv::F32(a.map(|x| unary(b, sc, op, x)))
        }
        Inst::Bin(op, x, y) => {
            let (x, y) = (to_f32(b, get(x)?), to_f32(b, get(y)?));
            Vv::F32([0, 1].map(|h| binary(b, sc, op, x[h], y[h])))
        }
        Inst::Select(c, x, y) => {
            let mask = masks[c as usize];
            let c = to_f32(b, get(c)?);
            select(b, c, mask, get(x)?, get(y)?, ty)
        }
        Inst::Uniform { key, mode } => Vv::F32(uniform(b, sc, g, key, mode)?),
        Inst::TopSel { x, t, cut } => {
            let x = to_f32(b, get(x)?);
            Vv::F32(topsel(b, sc, g, x, t, cut)?)
        }
        Inst::Widen(a) => Vv::F64(to_f64(b, get(a)?)),
        Inst::Arg64(j) => Vv::F64([sc.f64[j as usize]; 4]),
        Inst::B64(op, x, y) => {
            let (x, y) = (to_f64(b, get(x)?), to_f64(b, get(y)?));
            Vv::F64([0, 1, 2, 3].map(|q| match op {
                Bin64::Add => b.ins().fadd(x[q], y[q]),
                Bin64::Sub => b.ins().fsub(x[q], y[q]),
                Bin64::Mul => b.ins().fmul(x[q], y[q]),
            }))
        }
    })
}

/// Calls a scalar helper on each lane of an f32x4.
fn per_lane(b: &mut Fb, sig: SigRef, addr: usize, args: &[Value]) -> Value {
    let f = b.ins().iconst(I64, addr as i64);
    let mut out = args[0];
    for lane in 0..4u8 {
        let lanes: Vec<Value> = args.iter().map(|&a| b.ins().extractlane(a, lane)).collect();
        let call = b.ins().call_indirect(sig, f, &lanes);
        let r = b.inst_results(call)[0];
        out = b.ins().insertlane(out, r, lane);
    }
    out
}

fn unary(b: &mut Fb, sc: &Scalars, op: UnOp, x: Value) -> Value {
    if let Some(addr) = fns::unary(op) {
        return per_lane(b, sc.sig_un, addr, &[x]);
    }
    match op {
        // The sign bit flipped or cleared with a constant mask: the same bits as
        // fneg / fabs, which Cranelift lowers by building the mask in registers (two
        // more instructions per use) where an and/xor can read it from memory.
        UnOp::Neg => sign_bit(b, x, 0x8000_0000, true),
        UnOp::Abs => sign_bit(b, x, 0x7fff_ffff, false),
        UnOp::Sqrt => b.ins().sqrt(x),
        UnOp::Floor => b.ins().floor(x),
        UnOp::Not => {
            let z = emit::splat_f32(b, 0.0);
            let m = b.ins().fcmp(FloatCC::Equal, x, z);
            emit::mask_to_f32(b, m)
        }
        // Sign: -1 / 1, or x itself for ±0 and NaN.
        _ => {
            let z = emit::splat_f32(b, 0.0);
            let gt = b.ins().fcmp(FloatCC::GreaterThan, x, z);
            let lt = b.ins().fcmp(FloatCC::LessThan, x, z);
            let (gt, lt) = (emit::cast(b, F32X4, gt), emit::cast(b, F32X4, lt));
            let (one, neg) = (emit::splat_f32(b, 1.0), emit::splat_f32(b, -1.0));
            let r = b.ins().bitselect(lt, neg, x);
            b.ins().bitselect(gt, one, r)
        }
    }
}

/// `x`'s bits xor'ed (`flip`) or and'ed with `mask`.
fn sign_bit(b: &mut Fb, x: Value, mask: u32, flip: bool) -> Value {
    let bits = emit::cast(b, I32X4, x);
    let m = emit::splat_i32(b, mask);
    let r = if flip {
        b.ins().bxor(bits, m)
    } else {
        b.ins().band(bits, m)
    };
    emit::cast(b, F32X4, r)
}

fn binary(b: &mut Fb, sc: &Scalars, op: BinOp, x: Value, y: Value) -> Value {
    if let Some(addr) = fns::binary(op) {
        return per_lane(b, sc.sig_bin, addr, &[x, y]);
    }
    let cc = match op {
        BinOp::Add => return b.ins().fadd(x, y),
        BinOp::Sub => return b.ins().fsub(x, y),
        BinOp::Mul => return b.ins().fmul(x, y),
        BinOp::Div => return b.ins().fdiv(x, y),
        BinOp::Min => return b.ins().fmin(x, y),
        BinOp::Max => return b.ins().fmax(x, y),
        BinOp::And | BinOp::Or => {
            let z = emit::splat_f32(b, 0.0);
            let mx = b.ins().fcmp(FloatCC::NotEqual, x, z);
            let my = b.ins().fcmp(FloatCC::NotEqual, y, z);
            let m = if op == BinOp::And {
                b.ins().band(mx, my)
            } else {
                b.ins().bor(mx, my)
            };
            return emit::mask_to_f32(b, m);
        }
        // The comparisons (Pow has a helper).
        op => compare(op).unwrap_or(FloatCC::GreaterThanOrEqual),
    };
    let m = b.ins().fcmp(cc, x, y);
    emit::mask_to_f32(b, m)
}

/// `c != 0 ? x : y` per lane; `mask`: the lane masks of `c != 0` when `c` is a
/// comparison of this kernel (then used as they are).
fn select(b: &mut Fb, c: [Value; 2], mask: Option<[Value; 2]>, x: Vv, y: Vv, ty: Ty) -> Vv {
    match ty {
        Ty::F32 => {
            let (x, y) = (to_f32(b, x), to_f32(b, y));
            let z = emit::splat_f32(b, 0.0);
            Vv::F32([0, 1].map(|h| {
                let m = match mask {
                    Some(m) => m[h],
                    None => b.ins().fcmp(FloatCC::NotEqual, c[h], z),
                };
                let m = emit::cast(b, F32X4, m);
                b.ins().bitselect(m, x[h], y[h])
            }))
        }
        Ty::F64 => {
            let c = emit::promote(b, c);
            let (x, y) = (to_f64(b, x), to_f64(b, y));
            let z = emit::splat_f64(b, 0.0);
            Vv::F64([0, 1, 2, 3].map(|q| {
                let m = b.ins().fcmp(FloatCC::NotEqual, c[q], z);
                let m = emit::cast(b, F64X2, m);
                b.ins().bitselect(m, x[q], y[q])
            }))
        }
    }
}

fn uniform(
    b: &mut Fb,
    sc: &Scalars,
    g: &Group,
    key: u32,
    mode: Mode,
) -> Result<[Value; 2], String> {
    let base = b.ins().iadd_imm_s(sc.u64[key as usize], GOLDEN as i64);
    let ig: [Value; 4] = match mode {
        Mode::Full => {
            let s = b.ins().imul_imm_s(g.e0, GOLDEN as i64);
            let s = b.ins().splat(I64X2, s);
            [0, 1, 2, 3].map(|q| {
                let l = emit::golden_lanes(b, q);
                b.ins().iadd(s, l)
            })
        }
        Mode::Row => g.ig_row.ok_or("row index not loaded")?,
        Mode::Col => g.ig_col.ok_or("column index not loaded")?,
        Mode::One => [emit::const_i64x2(b, [0, 0]); 4],
    };
    let base = b.ins().splat(I64X2, base);
    let x = ig.map(|v| b.ins().iadd(v, base));
    Ok(emit::uniform(b, x))
}

/// A top-k threshold in the form the group loop compares with: see [`threshold`].
#[derive(Clone, Copy)]
pub(crate) struct Threshold {
    /// The canonical threshold key, splatted (I32X4).
    pub(crate) key: Value,
    /// Whether elements of the threshold key can be taken (i8: 0 or 1).
    pub(crate) ties: Value,
}

/// Canonical keys order like the magnitude key and fit in a signed 32-bit lane (SSE has
/// signed compares only): `|x|`'s bits, every NaN as this value (the magnitude key puts
/// NaN, as `u32::MAX`, above everything).
const CANON_NAN: i64 = 0x7f80_0001;

/// Maps the u64 threshold argument `t` (scalar code, once per call) to the canonical key
/// space. `u32::MAX` (the NaN key) becomes [`CANON_NAN`]; `t >= 2^32` selects nothing:
/// `i32::MAX`, above every canonical key; `t` between infinity's key and `u32::MAX` has
/// only NaN above it and no key equal to it: infinity's key, with no ties.
pub(crate) fn threshold(b: &mut Fb, t: Value) -> Threshold {
    const INF: i64 = 0x7f80_0000;
    let is_nan = b.ins().icmp_imm_s(IntCC::Equal, t, u32::MAX as i64);
    let none = b
        .ins()
        .icmp_imm_s(IntCC::UnsignedGreaterThan, t, u32::MAX as i64);
    let gap = b.ins().icmp_imm_s(IntCC::UnsignedGreaterThan, t, INF);
    let (nan_c, max_c, inf_c) = (
        b.ins().iconst(I64, CANON_NAN),
        b.ins().iconst(I64, i32::MAX as i64),
        b.ins().iconst(I64, INF),
    );
    let tc = b.ins().select(gap, inf_c, t);
    let tc = b.ins().select(is_nan, nan_c, tc);
    let tc = b.ins().select(none, max_c, tc);
    let tc = b.ins().ireduce(I32, tc);
    // gap holds for the NaN key and past 2^32 too: ties are off only in the gap itself.
    let no_tie = b.ins().bxor(gap, is_nan);
    let no_tie = b.ins().bxor(no_tie, none);
    Threshold {
        key: b.ins().splat(I32X4, tc),
        ties: b.ins().bxor_imm_u(no_tie, 1),
    }
}

/// Top-k membership: key > t, or key == t and the element's index < cut. The index
/// test is `(e0 - base) + lane < rel`, with `rel` the block's count below the cut: one
/// subtraction and splat per group, shared by every selection of the kernel.
fn topsel(
    b: &mut Fb,
    sc: &Scalars,
    g: &Group,
    x: [Value; 2],
    t: u32,
    cut: u32,
) -> Result<[Value; 2], String> {
    let th = sc.thresholds[t as usize].ok_or("top-k threshold not mapped")?;
    let i = sc
        .tie_cuts
        .iter()
        .position(|c| c.t == t && c.cut == cut)
        .ok_or("top-k cut not mapped")?;
    let ties = g.ties.as_ref().ok_or("top-k cuts not set for the block")?;
    let j = b.ins().isub(g.e0, ties.base);
    let j = b.ins().ireduce(I32, j);
    let j = b.ins().splat(I32X4, j);
    let rel = ties.rel[i];
    let abs_m = emit::splat_i32(b, 0x7fff_ffff);
    let nan_v = emit::splat_i32(b, CANON_NAN as u32);
    Ok([0usize, 1].map(|h| {
        let bits = emit::cast(b, I32X4, x[h]);
        let key = b.ins().band(bits, abs_m);
        let key = b.ins().smin(key, nan_v);
        let gt = b.ins().icmp(IntCC::SignedGreaterThan, key, th.key);
        let eq = b.ins().icmp(IntCC::Equal, key, th.key);
        let l = 4 * h as u32;
        let iota = emit::const_i32x4(b, [l, l + 1, l + 2, l + 3]);
        let idx = b.ins().iadd(j, iota);
        let below = b.ins().icmp(IntCC::SignedLessThan, idx, rel);
        let tie = b.ins().band(eq, below);
        let m = b.ins().bor(gt, tie);
        emit::mask_to_f32(b, m)
    }))
}

/// The lanes of the block from `base` below each cut: `min(eff - base, 2^20)`, or 0
/// when the cut is at or before `base` (block and group offsets are far below 2^20).
pub(crate) fn tie_block(b: &mut Fb, sc: &Scalars, base: Value) -> TieBlock {
    let rel = sc
        .tie_cuts
        .iter()
        .map(|c| {
            let past = b.ins().icmp(IntCC::UnsignedGreaterThan, c.eff, base);
            let diff = b.ins().isub(c.eff, base);
            let zero = b.ins().iconst(I64, 0);
            let rel = b.ins().select(past, diff, zero);
            let cap = b.ins().iconst(I64, 1 << 20);
            let rel = b.ins().umin(rel, cap);
            let rel = b.ins().ireduce(I32, rel);
            b.ins().splat(I32X4, rel)
        })
        .collect();
    TieBlock { base, rel }
}
