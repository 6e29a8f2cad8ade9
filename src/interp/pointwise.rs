//! Pointwise operations: the scalar function of each op, and the loops that apply it
//! (monomorphic fast paths when no broadcasting is needed, the generic map otherwise).

use super::eval::{f32_of, operand};
use super::tensor_ops::{Operand, map_n};
use super::value::{RuntimeError, Tensor, Value};
use crate::types::ops::Op;

/// The scalar function of an elementwise op, on f32 values.
fn scalar_fn(op: Op) -> fn(&[f32]) -> f32 {
    use crate::semantics::{clamp, from_bool, lerp, max, min, sigmoid, sign};
    match op {
        Op::Neg => |v| -v[0],
        Op::Not => |v| from_bool(v[0] == 0.0),
        Op::Abs => |v| v[0].abs(),
        Op::Sign => |v| sign(v[0]),
        Op::Sqrt => |v| v[0].sqrt(),
        Op::Exp => |v| v[0].exp(),
        Op::Log => |v| v[0].ln(),
        Op::Tanh => |v| v[0].tanh(),
        Op::Sigmoid => |v| sigmoid(v[0]),
        Op::Floor => |v| v[0].floor(),
        Op::Sin => |v| v[0].sin(),
        Op::Cos => |v| v[0].cos(),
        Op::Acos => |v| v[0].acos(),
        Op::Add => |v| v[0] + v[1],
        Op::Sub => |v| v[0] - v[1],
        Op::Mul => |v| v[0] * v[1],
        Op::Div => |v| v[0] / v[1],
        Op::Pow => |v| v[0].powf(v[1]),
        Op::Min => |v| min(v[0], v[1]),
        Op::Max => |v| max(v[0], v[1]),
        Op::Eq => |v| from_bool(v[0] == v[1]),
        Op::Ne => |v| from_bool(v[0] != v[1]),
        Op::Lt => |v| from_bool(v[0] < v[1]),
        Op::Le => |v| from_bool(v[0] <= v[1]),
        Op::Gt => |v| from_bool(v[0] > v[1]),
        Op::Ge => |v| from_bool(v[0] >= v[1]),
        Op::And => |v| from_bool(v[0] != 0.0 && v[1] != 0.0),
        Op::Or => |v| from_bool(v[0] != 0.0 || v[1] != 0.0),
        Op::Where => |v| if v[0] != 0.0 { v[1] } else { v[2] },
        Op::Clamp => |v| clamp(v[0], v[1], v[2]),
        Op::Lerp => |v| lerp(v[0], v[1], v[2]),
        other => panic!("interpreter: {other:?} is not pointwise"),
    }
}

fn is_mask_op(op: Op) -> bool {
    matches!(
        op,
        Op::Not | Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::And | Op::Or
    )
}

/// Monomorphic loops for the common ops when no broadcasting is needed; the same
/// scalar functions as `scalar_fn`, so the same bits.
fn fast_pointwise(op: Op, o: &[Operand]) -> Option<Tensor> {
    use super::tensor_ops::{map1_fast, map2_fast, map3_fast};
    use crate::semantics::{clamp, from_bool, lerp, max, min, sigmoid, sign};
    match (op, o) {
        (Op::Neg, [a]) => map1_fast(a, |x| -x),
        (Op::Abs, [a]) => map1_fast(a, f32::abs),
        (Op::Sign, [a]) => map1_fast(a, sign),
        (Op::Sqrt, [a]) => map1_fast(a, f32::sqrt),
        (Op::Exp, [a]) => map1_fast(a, f32::exp),
        (Op::Log, [a]) => map1_fast(a, f32::ln),
        (Op::Tanh, [a]) => map1_fast(a, f32::tanh),
        (Op::Sigmoid, [a]) => map1_fast(a, sigmoid),
        (Op::Not, [a]) => map1_fast(a, |x| from_bool(x == 0.0)),
        (Op::Add, [a, b]) => map2_fast(a, b, |x, y| x + y),
        (Op::Sub, [a, b]) => map2_fast(a, b, |x, y| x - y),
        (Op::Mul, [a, b]) => map2_fast(a, b, |x, y| x * y),
        (Op::Div, [a, b]) => map2_fast(a, b, |x, y| x / y),
        (Op::Min, [a, b]) => map2_fast(a, b, min),
        (Op::Max, [a, b]) => map2_fast(a, b, max),
        (Op::Eq, [a, b]) => map2_fast(a, b, |x, y| from_bool(x == y)),
        (Op::Ne, [a, b]) => map2_fast(a, b, |x, y| from_bool(x != y)),
        (Op::Lt, [a, b]) => map2_fast(a, b, |x, y| from_bool(x < y)),
        (Op::Le, [a, b]) => map2_fast(a, b, |x, y| from_bool(x <= y)),
        (Op::Gt, [a, b]) => map2_fast(a, b, |x, y| from_bool(x > y)),
        (Op::Ge, [a, b]) => map2_fast(a, b, |x, y| from_bool(x >= y)),
        (Op::And, [a, b]) => map2_fast(a, b, |x, y| from_bool(x != 0.0 && y != 0.0)),
        (Op::Or, [a, b]) => map2_fast(a, b, |x, y| from_bool(x != 0.0 || y != 0.0)),
        (Op::Where, [c, a, b]) => map3_fast(c, a, b, |c, x, y| if c != 0.0 { x } else { y }),
        (Op::Clamp, [x, lo, hi]) => map3_fast(x, lo, hi, clamp),
        (Op::Lerp, [a, b, t]) => map3_fast(a, b, t, lerp),
        _ => None,
    }
}

/// A pointwise op on scalars or tensors (broadcasting).
pub(super) fn pointwise(op: Op, a: &[Value]) -> Result<Value, RuntimeError> {
    let f = scalar_fn(op);
    if a.iter().all(|v| v.as_tensor().is_none()) {
        let vals: Vec<f32> = a.iter().map(f32_of).collect();
        let r = f(&vals);
        return Ok(if is_mask_op(op) {
            Value::Bool(r != 0.0)
        } else {
            Value::F32(r)
        });
    }
    let ops: Vec<Operand> = a.iter().map(operand).collect();
    let t = match fast_pointwise(op, &ops) {
        Some(t) => t,
        None => map_n(&ops, f)?,
    };
    Ok(if is_mask_op(op) {
        Value::mask(t)
    } else {
        Value::tensor(t)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The monomorphic fast loops give exactly the bits of the generic broadcasting map.
    #[test]
    fn fast_pointwise_matches_the_generic_map() {
        let vals = [
            0.0f32,
            -0.0,
            1.5,
            -2.25,
            f32::NAN,
            f32::INFINITY,
            3e-39,
            -7.0,
            0.5,
        ];
        let t = |k: usize| Tensor::new(vec![3, 3], (0..9).map(|i| vals[(i * k + k) % 9]).collect());
        let (a, b, c) = (t(1), t(2), t(4));
        let ops = [
            Op::Neg,
            Op::Abs,
            Op::Sign,
            Op::Sqrt,
            Op::Exp,
            Op::Log,
            Op::Tanh,
            Op::Sigmoid,
            Op::Not,
            Op::Add,
            Op::Sub,
            Op::Mul,
            Op::Div,
            Op::Min,
            Op::Max,
            Op::Eq,
            Op::Ne,
            Op::Lt,
            Op::Le,
            Op::Gt,
            Op::Ge,
            Op::And,
            Op::Or,
            Op::Where,
            Op::Clamp,
            Op::Lerp,
        ];
        let operands = [
            Operand::Tensor(&a),
            Operand::Tensor(&b),
            Operand::Tensor(&c),
            Operand::Scalar(0.75),
        ];
        for op in ops {
            let arity = match op {
                Op::Where | Op::Clamp | Op::Lerp => 3,
                Op::Neg
                | Op::Abs
                | Op::Sign
                | Op::Sqrt
                | Op::Exp
                | Op::Log
                | Op::Tanh
                | Op::Sigmoid
                | Op::Not => 1,
                _ => 2,
            };
            for pick in 0..16usize {
                let args: Vec<Operand> = (0..arity).map(|j| operands[(pick >> j) % 4]).collect();
                let Some(fast) = fast_pointwise(op, &args) else {
                    continue;
                };
                let slow = map_n(&args, scalar_fn(op)).expect("same shapes");
                let bits = |t: &Tensor| t.data.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&slow), "{op:?} with pick {pick}");
            }
        }
    }
}
