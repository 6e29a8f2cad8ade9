//! Helper functions the generated code calls, one lane at a time, for the
//! operations that have no exact vector instruction. Each uses exactly the Rust
//! function `ir::reference` uses, so results match it bit for bit.

use crate::interp::semantics as sem;
use crate::ir::kernel::{BinOp, UnOp};

extern "C" fn exp(x: f32) -> f32 {
    x.exp()
}
extern "C" fn ln(x: f32) -> f32 {
    x.ln()
}
extern "C" fn tanh(x: f32) -> f32 {
    x.tanh()
}
extern "C" fn sigmoid(x: f32) -> f32 {
    sem::sigmoid(x)
}
extern "C" fn sin(x: f32) -> f32 {
    x.sin()
}
extern "C" fn cos(x: f32) -> f32 {
    x.cos()
}
extern "C" fn acos(x: f32) -> f32 {
    x.acos()
}
extern "C" fn powf(a: f32, b: f32) -> f32 {
    a.powf(b)
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
