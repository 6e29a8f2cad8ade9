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

/// Per canonical block, how a top-k selection's elements of the threshold key are
/// taken ([`tie_block`]).
#[derive(Clone)]
pub(crate) enum TieBlock {
    /// A cut falls inside the block: its first element and, per [`TieCut`], how many
    /// of its elements lie below the cut (I32X4 splats, at most 2^20); each element's
    /// index is tested.
    Exact { base: Value, rel: Vec<Value> },
    /// No cut inside the block (every block but at most one per cut): per [`TieCut`],
    /// the canonical key an element's must exceed (I32X4 splats): the threshold's when
    /// none of its elements here is taken, one less when all are.
    Whole { over: Vec<Value> },
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
            } else if let Inst::Select(c, x, y) = *inst
                && p.ty[i] == Ty::F32
                && let (Some(mc), Some(mx), Some(my)) =
                    (masks[c as usize], masks[x as usize], masks[y as usize])
            {
                // A choice between two comparisons is a comparison: its lane masks
                // chosen, then one conversion to 0.0 / 1.0.
                let lanes = [0, 1].map(|h| b.ins().bitselect(mc[h], mx[h], my[h]));
                v = Some(Vv::F32(lanes.map(|l| emit::mask_to_f32(b, l))));
                m = Some(lanes);
            } else if let Inst::TopSel { x, t, cut } = *inst {
                let xv = vals[x as usize].ok_or(format!("value {x} not computed"))?;
                let xv = to_f32(b, xv);
                // The key of `|y|` needs no second clearing of the sign bit.
                let nonneg = matches!(k.body[x as usize], Inst::Un(UnOp::Abs, _));
                v = Some(Vv::F32(topsel(b, sc, g, xv, Sel { t, cut, nonneg })?));
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
        Inst::TopSel { .. } => return Err("top-k selection outside the body loop".into()),
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

/// One top-k membership test: threshold `t`, cut `cut`; `nonneg`: the key's sign bit
/// is known clear.
struct Sel {
    t: u32,
    cut: u32,
    nonneg: bool,
}

/// Top-k membership: key > t, or key == t and the element's index < cut. In a block
/// the cut does not fall in, one compare with the block's bound ([`TieBlock::Whole`]);
/// in the block it does, the index test is `(e0 - base) + lane < rel`, with `rel` the
/// block's count below the cut: one subtraction and splat per group, shared by every
/// selection of the kernel.
fn topsel(
    b: &mut Fb,
    sc: &Scalars,
    g: &Group,
    x: [Value; 2],
    s: Sel,
) -> Result<[Value; 2], String> {
    let th = sc.thresholds[s.t as usize].ok_or("top-k threshold not mapped")?;
    let i = sc
        .tie_cuts
        .iter()
        .position(|c| c.t == s.t && c.cut == s.cut)
        .ok_or("top-k cut not mapped")?;
    let abs_m = emit::splat_i32(b, 0x7fff_ffff);
    let nan_v = emit::splat_i32(b, CANON_NAN as u32);
    let key = |b: &mut Fb, x: Value| {
        let bits = emit::cast(b, I32X4, x);
        let key = if s.nonneg {
            bits
        } else {
            b.ins().band(bits, abs_m)
        };
        b.ins().smin(key, nan_v)
    };
    match g.ties.as_ref().ok_or("top-k cuts not set for the block")? {
        TieBlock::Whole { over } => Ok([0usize, 1].map(|h| {
            let k = key(b, x[h]);
            let m = b.ins().icmp(IntCC::SignedGreaterThan, k, over[i]);
            emit::mask_to_f32(b, m)
        })),
        TieBlock::Exact { base, rel } => {
            let j = b.ins().isub(g.e0, *base);
            let j = b.ins().ireduce(I32, j);
            let j = b.ins().splat(I32X4, j);
            Ok([0usize, 1].map(|h| {
                let k = key(b, x[h]);
                let gt = b.ins().icmp(IntCC::SignedGreaterThan, k, th.key);
                let eq = b.ins().icmp(IntCC::Equal, k, th.key);
                let l = 4 * h as u32;
                let iota = emit::const_i32x4(b, [l, l + 1, l + 2, l + 3]);
                let idx = b.ins().iadd(j, iota);
                let below = b.ins().icmp(IntCC::SignedLessThan, idx, rel[i]);
                let tie = b.ins().band(eq, below);
                let m = b.ins().bor(gt, tie);
                emit::mask_to_f32(b, m)
            }))
        }
    }
}

/// The two forms of the block from `base` to `end` ([`TieBlock`]) and whether a cut
/// falls inside it (an i8): `0 < rel < end - base` for some cut, where `rel`, the
/// block's lanes below the cut, is `min(eff - base, 2^20)`, or 0 when the cut is at or
/// before `base` (block and group offsets are far below 2^20). Elsewhere the elements
/// of the threshold key are all taken (`rel >= end - base`) or none is (`rel == 0`).
pub(crate) fn tie_block(
    b: &mut Fb,
    sc: &Scalars,
    base: Value,
    end: Value,
) -> (Value, [TieBlock; 2]) {
    let len = b.ins().isub(end, base);
    let mut exact = b.ins().iconst(cranelift_codegen::ir::types::I8, 0);
    let (mut rels, mut overs) = (Vec::new(), Vec::new());
    for c in &sc.tie_cuts {
        let past = b.ins().icmp(IntCC::UnsignedGreaterThan, c.eff, base);
        let diff = b.ins().isub(c.eff, base);
        let zero = b.ins().iconst(I64, 0);
        let rel = b.ins().select(past, diff, zero);
        let cap = b.ins().iconst(I64, 1 << 20);
        let rel = b.ins().umin(rel, cap);
        let all = b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, rel, len);
        let some = b.ins().icmp_imm_s(IntCC::NotEqual, rel, 0);
        let part = b.ins().bxor_imm_u(all, 1);
        let inside = b.ins().band(some, part);
        exact = b.ins().bor(exact, inside);
        let rel = b.ins().ireduce(I32, rel);
        rels.push(b.ins().splat(I32X4, rel));
        // All taken: key >= t, i.e. key > t - 1 (t >= 0 in canonical form: no overflow).
        // (A cut with no threshold fails in `topsel`.)
        let over = match sc.thresholds[c.t as usize] {
            Some(th) => {
                let all = b.ins().uextend(I32, all);
                let all = b.ins().splat(I32X4, all);
                b.ins().isub(th.key, all)
            }
            None => emit::splat_i32(b, i32::MAX as u32),
        };
        overs.push(over);
    }
    (
        exact,
        [
            TieBlock::Exact { base, rel: rels },
            TieBlock::Whole { over: overs },
        ],
    )
}
