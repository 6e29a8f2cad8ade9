//! Vector building blocks: constants, casts, f32/f64 conversions, storage-format
//! conversions (bf16, f16) and the counter-based random draw, on Cranelift's
//! 128-bit vectors. A group of 8 elements is two f32x4 halves (lanes 0-3, 4-7) or
//! four f64x2 quarters.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{F32, F32X4, F64X2, I8X16, I16X8, I32X4, I64X2};
use cranelift_codegen::ir::{ConstantData, Endianness, InstBuilder, MemFlagsData, Type, Value};
use cranelift_frontend::FunctionBuilder;

pub(crate) type Fb<'f> = FunctionBuilder<'f>;

/// The SplitMix64 increment (`semantics::uniform_at`).
pub(crate) const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Flags of every load and store: in bounds, but not necessarily aligned.
pub(crate) fn mem() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// Reinterprets the bits of `v` as `ty` (lane order little-endian).
pub(crate) fn cast(b: &mut Fb, ty: Type, v: Value) -> Value {
    if b.func.dfg.value_type(v) == ty {
        return v;
    }
    let le = MemFlagsData::new().with_endianness(Endianness::Little);
    b.ins().bitcast(ty, le, v)
}

pub(crate) fn vconst(b: &mut Fb, ty: Type, bytes: [u8; 16]) -> Value {
    let c = b.func.dfg.constants.insert(ConstantData::from(&bytes[..]));
    b.ins().vconst(ty, c)
}

pub(crate) fn const_i32x4(b: &mut Fb, x: [u32; 4]) -> Value {
    let mut bytes = [0u8; 16];
    for (i, v) in x.iter().enumerate() {
        bytes[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    vconst(b, I32X4, bytes)
}

pub(crate) fn const_i64x2(b: &mut Fb, x: [u64; 2]) -> Value {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&x[0].to_le_bytes());
    bytes[8..].copy_from_slice(&x[1].to_le_bytes());
    vconst(b, I64X2, bytes)
}

pub(crate) fn splat_i32(b: &mut Fb, x: u32) -> Value {
    const_i32x4(b, [x; 4])
}

pub(crate) fn splat_f32(b: &mut Fb, x: f32) -> Value {
    let v = const_i32x4(b, [x.to_bits(); 4]);
    cast(b, F32X4, v)
}

pub(crate) fn splat_f64(b: &mut Fb, x: f64) -> Value {
    let v = const_i64x2(b, [x.to_bits(); 2]);
    cast(b, F64X2, v)
}

/// Byte shuffle of two 128-bit vectors (mask entries 0-15: `x`, 16-31: `y`).
pub(crate) fn shuffle(b: &mut Fb, ty: Type, x: Value, y: Value, mask: [u8; 16]) -> Value {
    let (x, y) = (cast(b, I8X16, x), cast(b, I8X16, y));
    let imm = b.func.dfg.immediates.push(ConstantData::from(&mask[..]));
    let r = b.ins().shuffle(x, y, imm);
    cast(b, ty, r)
}

fn seq(start: u8) -> [u8; 8] {
    std::array::from_fn(|i| start + i as u8)
}

fn cat(a: [u8; 8], b: [u8; 8]) -> [u8; 16] {
    std::array::from_fn(|i| if i < 8 { a[i] } else { b[i - 8] })
}

/// A mask (all ones / all zeros per lane) as 1.0 / 0.0.
pub(crate) fn mask_to_f32(b: &mut Fb, m: Value) -> Value {
    let m = cast(b, I32X4, m);
    let one = splat_i32(b, 1.0f32.to_bits());
    let r = b.ins().band(m, one);
    cast(b, F32X4, r)
}

/// Exact widening of 8 f32 lanes to 8 f64 lanes.
pub(crate) fn promote(b: &mut Fb, v: [Value; 2]) -> [Value; 4] {
    let mut out = [v[0]; 4];
    for (h, &x) in v.iter().enumerate() {
        out[2 * h] = b.ins().fvpromote_low(x);
        let hi = shuffle(b, F32X4, x, x, cat(seq(8), seq(8)));
        out[2 * h + 1] = b.ins().fvpromote_low(hi);
    }
    out
}

/// Rounding of 8 f64 lanes to 8 f32 lanes (as Rust's `as f32`).
pub(crate) fn demote(b: &mut Fb, v: [Value; 4]) -> [Value; 2] {
    let d: Vec<Value> = v.iter().map(|&x| b.ins().fvdemote(x)).collect();
    let lo = shuffle(b, F32X4, d[0], d[1], cat(seq(0), seq(16)));
    let hi = shuffle(b, F32X4, d[2], d[3], cat(seq(0), seq(16)));
    [lo, hi]
}

/// bf16 storage (8 lanes of u16) to f32: the bits shifted up by 16, by
/// interleaving zero words below them.
pub(crate) fn bf16_to_f32(b: &mut Fb, raw: Value) -> [Value; 2] {
    let zero = const_i32x4(b, [0; 4]);
    [0u8, 8].map(|w| {
        let mask: [u8; 16] = std::array::from_fn(|i| {
            let word = w + (i / 4) as u8 * 2 + (i % 2) as u8;
            if i % 4 < 2 { word } else { 16 + word }
        });
        shuffle(b, F32X4, zero, raw, mask)
    })
}

/// f16 storage to f32, exactly (subnormals renormalised through one exact subtraction).
pub(crate) fn f16_to_f32(b: &mut Fb, raw: Value) -> [Value; 2] {
    let lo = b.ins().uwiden_low(raw);
    let hi = b.ins().uwiden_high(raw);
    [lo, hi].map(|h| f16_half(b, h))
}

fn f16_half(b: &mut Fb, h: Value) -> Value {
    let c = |b: &mut Fb, x: u32| splat_i32(b, x);
    let mag = c(b, 0x7fff);
    let o = b.ins().band(h, mag);
    let o = b.ins().ishl_imm_s(o, 13);
    let expm = c(b, 0x0f80_0000);
    let exp = b.ins().band(o, expm);
    let bias = c(b, 0x3800_0000);
    let o = b.ins().iadd(o, bias);
    // Inf / NaN: exponent all ones.
    let is_inf = b.ins().icmp(IntCC::Equal, exp, expm);
    let o_inf = b.ins().iadd(o, bias);
    let o = b.ins().bitselect(is_inf, o_inf, o);
    // Zero / subnormal: (o + 2^23) as float - 2^-14, exact.
    let zero = c(b, 0);
    let is_sub = b.ins().icmp(IntCC::Equal, exp, zero);
    let one_exp = c(b, 0x0080_0000);
    let t = b.ins().iadd(o, one_exp);
    let t = cast(b, F32X4, t);
    let magic = splat_f32(b, f32::from_bits(0x3880_0000));
    let t = b.ins().fsub(t, magic);
    let t = cast(b, I32X4, t);
    let o = b.ins().bitselect(is_sub, t, o);
    let sm = c(b, 0x8000);
    let sign = b.ins().band(h, sm);
    let sign = b.ins().ishl_imm_s(sign, 16);
    let o = b.ins().bor(o, sign);
    cast(b, F32X4, o)
}

/// f32 to bf16 storage, as `half::bf16::from_f32`: round to nearest even; NaN
/// keeps its sign and high bits, with the quiet bit set.
pub(crate) fn f32_to_bf16(b: &mut Fb, v: [Value; 2]) -> Value {
    let [lo, hi] = v.map(|f| {
        let x = cast(b, I32X4, f);
        let one = splat_i32(b, 1);
        let lsb = b.ins().ushr_imm_s(x, 16);
        let lsb = b.ins().band(lsb, one);
        let half = splat_i32(b, 0x7fff);
        let r = b.ins().iadd(x, half);
        let r = b.ins().iadd(r, lsb);
        let r = b.ins().ushr_imm_s(r, 16);
        let is_nan = b.ins().fcmp(FloatCC::NotEqual, f, f);
        let is_nan = cast(b, I32X4, is_nan);
        let qb = splat_i32(b, 0x0040);
        let n = b.ins().ushr_imm_s(x, 16);
        let n = b.ins().bor(n, qb);
        b.ins().bitselect(is_nan, n, r)
    });
    b.ins().unarrow(lo, hi)
}

/// f32 to f16 storage, round to nearest even (as `half::f16::from_f32`; NaN stays NaN).
pub(crate) fn f32_to_f16(b: &mut Fb, v: [Value; 2]) -> Value {
    let [lo, hi] = v.map(|x| f16_from_half(b, x));
    b.ins().unarrow(lo, hi)
}

fn f16_from_half(b: &mut Fb, x: Value) -> Value {
    let c = |b: &mut Fb, x: u32| splat_i32(b, x);
    let f = cast(b, I32X4, x);
    let sm = c(b, 0x8000_0000);
    let sign = b.ins().band(f, sm);
    let f = b.ins().bxor(f, sign);
    // Overflow, infinity, NaN.
    let f16max = c(b, 0x4780_0000);
    let is_big = b.ins().icmp(IntCC::SignedGreaterThanOrEqual, f, f16max);
    let inf = c(b, 0x7f80_0000);
    let is_nan = b.ins().icmp(IntCC::SignedGreaterThan, f, inf);
    let (qnan, hinf) = (c(b, 0x7e00), c(b, 0x7c00));
    let o_big = b.ins().bitselect(is_nan, qnan, hinf);
    // Subnormal results: adding 0.5 rounds the mantissa into place.
    let minnorm = c(b, 0x3880_0000);
    let is_small = b.ins().icmp(IntCC::SignedLessThan, f, minnorm);
    let ff = cast(b, F32X4, f);
    let magic = splat_f32(b, 0.5);
    let t = b.ins().fadd(ff, magic);
    let t = cast(b, I32X4, t);
    let magic_bits = c(b, 0x3f00_0000);
    let o_small = b.ins().isub(t, magic_bits);
    // Normal results: rebias and round to nearest even.
    let one = c(b, 1);
    let odd = b.ins().ushr_imm_s(f, 13);
    let odd = b.ins().band(odd, one);
    let rebias = c(b, 0xc800_0fff);
    let t = b.ins().iadd(f, rebias);
    let t = b.ins().iadd(t, odd);
    let o_norm = b.ins().ushr_imm_s(t, 13);
    let o = b.ins().bitselect(is_small, o_small, o_norm);
    let o = b.ins().bitselect(is_big, o_big, o);
    let s = b.ins().ushr_imm_s(sign, 16);
    b.ins().bor(o, s)
}

/// The SplitMix64 finaliser on two u64 lanes.
fn mix64(b: &mut Fb, z: Value) -> Value {
    let c1 = const_i64x2(b, [0xBF58_476D_1CE4_E5B9; 2]);
    let c2 = const_i64x2(b, [0x94D0_49BB_1331_11EB; 2]);
    let s = b.ins().ushr_imm_s(z, 30);
    let z = b.ins().bxor(z, s);
    let z = b.ins().imul(z, c1);
    let s = b.ins().ushr_imm_s(z, 27);
    let z = b.ins().bxor(z, s);
    let z = b.ins().imul(z, c2);
    let s = b.ins().ushr_imm_s(z, 31);
    b.ins().bxor(z, s)
}

/// `uniform_at` of 8 lanes given `key + (i + 1) * GOLDEN` per lane (4 x i64x2).
pub(crate) fn uniform(b: &mut Fb, x: [Value; 4]) -> [Value; 2] {
    let bits = x.map(|z| {
        let m = mix64(b, z);
        b.ins().ushr_imm_s(m, 40)
    });
    let low32 = cat([0, 1, 2, 3, 8, 9, 10, 11], [16, 17, 18, 19, 24, 25, 26, 27]);
    let scale = splat_f32(b, 1.0 / 16_777_216.0);
    [0, 1].map(|h| {
        let packed = shuffle(b, I32X4, bits[2 * h], bits[2 * h + 1], low32);
        let f = b.ins().fcvt_from_sint(F32X4, packed);
        b.ins().fmul(f, scale)
    })
}

/// Lane offsets `lane * GOLDEN` of quarter `q` (lanes 2q, 2q+1).
pub(crate) fn golden_lanes(b: &mut Fb, q: usize) -> Value {
    let l = 2 * q as u64;
    const_i64x2(b, [l.wrapping_mul(GOLDEN), (l + 1).wrapping_mul(GOLDEN)])
}

/// A scalar f32 splat from a 16- or 32-bit storage element already in a register.
pub(crate) fn splat_scalar(b: &mut Fb, ty: Type, x: Value) -> Value {
    let vt = if ty == F32 { F32X4 } else { I16X8 };
    b.ins().splat(vt, x)
}
