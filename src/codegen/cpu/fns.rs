//! Helper functions the generated code calls, one lane at a time, for the
//! operations that have no exact vector instruction. Each uses exactly the Rust
//! function `ir::reference` uses, so results match it bit for bit.
//!
//! The reference keeps every value as f64, so the operands it passes are always
//! quiet NaNs (the f32 -> f64 -> f32 round trip sets the quiet bit). The JIT moves
//! bits unchanged (a bf16 or f32 input may hold a signalling NaN), and `powf`
//! distinguishes the two (`powf(sNaN, 0)` is NaN, `powf(qNaN, 0)` is 1), so the
//! helpers quiet their operands first.

use crate::ir::kernel::{BinOp, UnOp};
use crate::semantics as sem;

/// `x` with a NaN made quiet, as the reference's f64 round trip does.
fn q(x: f32) -> f32 {
    if x.is_nan() {
        f32::from_bits(x.to_bits() | 0x0040_0000)
    } else {
        x
    }
}

extern "C" fn exp(x: f32) -> f32 {
    let x = q(x);
    x.exp()
}
extern "C" fn ln(x: f32) -> f32 {
    let x = q(x);
    x.ln()
}
extern "C" fn tanh(x: f32) -> f32 {
    let x = q(x);
    x.tanh()
}
extern "C" fn sigmoid(x: f32) -> f32 {
    let x = q(x);
    sem::sigmoid(x)
}
extern "C" fn sin(x: f32) -> f32 {
    let x = q(x);
    x.sin()
}
extern "C" fn cos(x: f32) -> f32 {
    let x = q(x);
    x.cos()
}
extern "C" fn acos(x: f32) -> f32 {
    let x = q(x);
    x.acos()
}
extern "C" fn powf(a: f32, b: f32) -> f32 {
    q(a).powf(q(b))
}

/// The address of the lane helper of a unary op, if it needs one.
pub(crate) fn unary(op: UnOp) -> Option<usize> {
    let f: extern "C" fn(f32) -> f32 = match op {
        UnOp::Exp => exp,
        UnOp::Log => ln,
        UnOp::Tanh => tanh,
        UnOp::Sigmoid => sigmoid,
        UnOp::Sin => sin,
        UnOp::Cos => cos,
        UnOp::Acos => acos,
        _ => return None,
    };
    Some(f as usize)
}

/// The address of the lane helper of a binary op, if it needs one.
pub(crate) fn binary(op: BinOp) -> Option<usize> {
    let f: extern "C" fn(f32, f32) -> f32 = match op {
        BinOp::Pow => powf,
        _ => return None,
    };
    Some(f as usize)
}
