//! Lowering of ops with at least one tensor argument into graph nodes.

use super::graph::{H64, NTy, NodeId, NodeOp, Red, STy, Scalar};
use super::kernel::{BinOp, UnOp};
use super::lower::{LowerError, State, Sym};
use crate::interp::Value;
use crate::interp::tensor_ops::broadcast_shapes;
use crate::types::ops::Op;

type R<T> = Result<T, LowerError>;

fn unsupported<T>(why: impl Into<String>) -> R<T> {
    Err(LowerError::Unsupported(why.into()))
}

fn un_of(op: Op) -> Option<UnOp> {
    Some(match op {
        Op::Neg => UnOp::Neg,
        Op::Not => UnOp::Not,
        Op::Abs => UnOp::Abs,
        Op::Sign => UnOp::Sign,
        Op::Sqrt => UnOp::Sqrt,
        Op::Exp => UnOp::Exp,
        Op::Log => UnOp::Log,
        Op::Tanh => UnOp::Tanh,
        Op::Sigmoid => UnOp::Sigmoid,
        Op::Floor => UnOp::Floor,
        Op::Sin => UnOp::Sin,
        Op::Cos => UnOp::Cos,
        Op::Acos => UnOp::Acos,
        _ => return None,
    })
}

fn bin_of(op: Op) -> Option<BinOp> {
    Some(match op {
        Op::Add => BinOp::Add,
        Op::Sub => BinOp::Sub,
        Op::Mul => BinOp::Mul,
        Op::Div => BinOp::Div,
        Op::Pow => BinOp::Pow,
        Op::Min => BinOp::Min,
        Op::Max => BinOp::Max,
        Op::Eq => BinOp::Eq,
        Op::Ne => BinOp::Ne,
        Op::Lt => BinOp::Lt,
        Op::Le => BinOp::Le,
        Op::Gt => BinOp::Gt,
        Op::Ge => BinOp::Ge,
        Op::And => BinOp::And,
        Op::Or => BinOp::Or,
        _ => return None,
    })
}

fn numel(s: &[usize]) -> u64 {
    s.iter().product::<usize>() as u64
}

/// `op` on arguments of which at least one is a tensor (`shapes`: the tensors' shapes).
pub(super) fn tensor_op(
    st: &mut State,
    op: Op,
    args: &[Sym],
    shapes: &[Vec<usize>],
    model: u32,
) -> R<Sym> {
    if let Some(u) = un_of(op) {
        let a = st.arg(&args[0])?;
        return Ok(Sym::N(st.un(u, a)?));
    }
    if let Some(b) = bin_of(op) {
        let (x, y) = (st.arg(&args[0])?, st.arg(&args[1])?);
        return Ok(Sym::N(st.bin(b, x, y)?));
    }
    let first = || -> R<NodeId> {
        match &args[0] {
            Sym::N(n) => Ok(*n),
            other => unsupported(format!("{other:?} where a tensor is needed")),
        }
    };
    let sh0 = shapes[0].clone();
    Ok(match op {
        Op::Where => {
            let ids = args.iter().map(|a| st.arg(a)).collect::<R<Vec<_>>>()?;
            let ty = st.join(&ids)?;
            Sym::N(st.node(NodeOp::Where, ids, ty)?)
        }
        Op::Clamp => {
            let m = st.elem(Op::Max, &[args[0].clone(), args[1].clone()], model)?;
            st.elem(Op::Min, &[m, args[2].clone()], model)?
        }
        Op::Lerp => {
            let d = st.elem(Op::Sub, &[args[1].clone(), args[0].clone()], model)?;
            let t = st.elem(Op::Mul, &[args[2].clone(), d], model)?;
            st.elem(Op::Add, &[args[0].clone(), t], model)?
        }
        Op::SumAll | Op::MeanAll | Op::MaxAll | Op::MinAll | Op::Norm | Op::Std => {
            Sym::N(whole_reduce(st, op, first()?)?)
        }
        Op::Dot | Op::CosSim => dot_or_cos(st, op, args)?,
        Op::Numel => Sym::K(Value::Int(numel(&sh0) as i64)),
        Op::Ndim => Sym::K(Value::Int(sh0.len() as i64)),
        Op::Dim(a) => Sym::K(Value::Int(sh0[a as usize] as i64)),
        Op::ZerosLike | Op::OnesLike | Op::FullLike => {
            let x = first()?;
            let s = st.shape_of(x).unwrap_or_default();
            let v = match op {
                Op::ZerosLike => st.arg(&Sym::K(Value::F32(0.0)))?,
                Op::OnesLike => st.arg(&Sym::K(Value::F32(1.0)))?,
                _ => match &args[1] {
                    Sym::K(v) => st.arg(&Sym::K(Value::F32(v.as_f32().unwrap_or(f32::NAN))))?,
                    other => st.arg(other)?,
                },
            };
            Sym::N(st.node(NodeOp::Fill, vec![v], NTy::Tensor(s))?)
        }
        Op::TopkMask => {
            let x = first()?;
            let (k, skip) = (st.arg(&args[1])?, st.arg(&args[2])?);
            Sym::N(st.node(NodeOp::TopkMask, vec![x, k, skip], NTy::Tensor(sh0))?)
        }
        Op::Quantile => {
            let x = first()?;
            let q = st.arg(&args[1])?;
            Sym::N(st.node(NodeOp::Quantile, vec![x, q], NTy::Scalar(STy::F32))?)
        }
        Op::Ranks(axis) => {
            let x = first()?;
            if sh0.is_empty() {
                let z = st.node(
                    NodeOp::Const(Scalar::F32(0.0)),
                    vec![],
                    NTy::Scalar(STy::F32),
                )?;
                return Ok(Sym::N(st.node(
                    NodeOp::Fill,
                    vec![z],
                    NTy::Tensor(vec![]),
                )?));
            }
            Sym::N(st.node(NodeOp::Ranks(axis as u8), vec![x], NTy::Tensor(sh0))?)
        }
        Op::Axis(aop, axis, keepdim) => {
            let x = first()?;
            let mut s = sh0;
            let a = axis as usize;
            if keepdim {
                s[a] = 1;
            } else {
                s.remove(a);
            }
            Sym::N(st.node(
                NodeOp::Axis(aop, axis as u8, keepdim),
                vec![x],
                NTy::Tensor(s),
            )?)
        }
        Op::Uniform(stream) => {
            let u = st.node(NodeOp::Uniform { model, stream }, vec![], NTy::Tensor(sh0))?;
            Sym::N(u)
        }
        Op::Bernoulli(stream) => {
            let p = st.arg(&args[1])?;
            let x = first()?;
            let xs = st.shape_of(x).unwrap_or_default();
            let shape = match st.shape_of(p) {
                Some(ps) => broadcast_shapes(&[&xs, &ps])?,
                None => xs,
            };
            let u = st.node(
                NodeOp::Uniform { model, stream },
                vec![],
                NTy::Tensor(shape),
            )?;
            Sym::N(st.bin(BinOp::Lt, u, p)?)
        }
        other => return unsupported(format!("`{}` on tensors", other.name())),
    })
}

/// A whole-tensor reduction (`sum_all`, `mean_all`, `max_all`, `min_all`, `norm`,
/// `std`) of `x`: a reduction in f64, then to f32.
fn whole_reduce(st: &mut State, op: Op, x: NodeId) -> R<NodeId> {
    let s = st.shape_of(x).unwrap_or_default();
    let n = numel(&s);
    Ok(match op {
        Op::SumAll => {
            let r = st.reduce(Red::Sum, vec![x], s)?;
            st.h64(H64::ToF32, vec![r])?
        }
        Op::MeanAll => {
            let r = st.reduce(Red::Sum, vec![x], s)?;
            let m = st.h64(H64::DivN(n), vec![r])?;
            st.h64(H64::ToF32, vec![m])?
        }
        Op::MaxAll | Op::MinAll => {
            let red = if op == Op::MaxAll { Red::Max } else { Red::Min };
            let r = st.reduce(red, vec![x], s)?;
            st.h64(H64::ToF32, vec![r])?
        }
        Op::Norm => {
            let r = st.reduce(Red::SumSq, vec![x], s)?;
            let q = st.h64(H64::Sqrt, vec![r])?;
            st.h64(H64::ToF32, vec![q])?
        }
        _ => {
            let r = st.reduce(Red::Sum, vec![x], s.clone())?;
            let mean = st.h64(H64::DivN(n), vec![r])?;
            let ss = st.reduce(Red::DevSq, vec![x, mean], s)?;
            let v = st.h64(H64::DivN(n), vec![ss])?;
            let q = st.h64(H64::Sqrt, vec![v])?;
            st.h64(H64::ToF32, vec![q])?
        }
    })
}

/// `dot(x, y)` or `cos(x, y)` of two tensors: reductions in f64, then to f32.
fn dot_or_cos(st: &mut State, op: Op, args: &[Sym]) -> R<Sym> {
    let (Sym::N(x), Sym::N(y)) = (&args[0], &args[1]) else {
        return unsupported("dot of a number");
    };
    let (x, y) = (*x, *y);
    let (sx, sy) = (st.shape_of(x), st.shape_of(y));
    let (Some(sx), Some(sy)) = (sx, sy) else {
        return unsupported("dot of a number");
    };
    let d = broadcast_shapes(&[&sx, &sy])?;
    let dot = st.reduce(Red::Dot, vec![x, y], d.clone())?;
    if op == Op::Dot {
        return Ok(Sym::N(st.h64(H64::ToF32, vec![dot])?));
    }
    let xx = st.reduce(Red::Dot, vec![x, x], d.clone())?;
    let yy = st.reduce(Red::Dot, vec![y, y], d)?;
    Ok(Sym::N(st.h64(H64::Cos, vec![dot, xx, yy])?))
}
