//! Broadcasting, axis walks and whole-tensor reductions over host tensors.

use super::value::{RuntimeError, Tensor};
use crate::cancel::Cancel;
use crate::semantics::canonical_sum;

/// NumPy broadcasting of concrete shapes.
pub fn broadcast_shapes(shapes: &[&[usize]]) -> Result<Vec<usize>, RuntimeError> {
    let n = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; n];
    for s in shapes {
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[n - s.len() + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(RuntimeError::new(format!(
                    "shapes {:?} do not broadcast",
                    shapes.iter().map(|s| s.to_vec()).collect::<Vec<_>>()
                )));
            }
        }
    }
    Ok(out)
}

/// One argument of an elementwise map: a scalar or a tensor.
#[derive(Clone, Copy)]
pub enum Operand<'a> {
    Scalar(f32),
    Tensor(&'a Tensor),
}

/// Strides that read `shape` broadcast to `out` (0 along broadcast dims).
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; out.len()];
    let mut stride = 1;
    for i in (0..shape.len()).rev() {
        let oi = out.len() - shape.len() + i;
        strides[oi] = if shape[i] == 1 { 0 } else { stride };
        stride *= shape[i];
    }
    strides
}

thread_local! {
    /// The token the elementwise loops poll (set by the evaluator around each op).
    static CANCEL: std::cell::Cell<Cancel> = const { std::cell::Cell::new(Cancel::NEVER) };
}

/// Runs `f` (one op) with `cancel` polled by the elementwise loops it runs: every
/// `POLL` elements they check it, and once it fired they stop (the loops that cannot
/// fail leave the rest of their output unset: the caller polls the same token after
/// the op and discards it).
pub fn polling<T>(cancel: Cancel, f: impl FnOnce() -> T) -> T {
    let old = CANCEL.replace(cancel);
    let r = f();
    CANCEL.set(old);
    r
}

/// Elements between two polls of the token.
const POLL: usize = 1 << 16;

/// Applies `f` elementwise over broadcast operands.
pub fn map_n(args: &[Operand], f: impl Fn(&[f32]) -> f32) -> Result<Tensor, RuntimeError> {
    let cancel = CANCEL.get();
    let shapes: Vec<&[usize]> = args
        .iter()
        .filter_map(|a| match a {
            Operand::Tensor(t) => Some(t.shape.as_slice()),
            Operand::Scalar(_) => None,
        })
        .collect();
    let out_shape = broadcast_shapes(&shapes)?;
    let n: usize = out_shape.iter().product();
    let mut vals = vec![0.0f32; args.len()];
    // Fast path: every tensor already has the output shape.
    if args.iter().all(|a| match a {
        Operand::Tensor(t) => t.shape == out_shape,
        Operand::Scalar(_) => true,
    }) {
        let mut data = Vec::with_capacity(n);
        for i in 0..n {
            if i % POLL == 0 {
                cancel.check()?;
            }
            for (v, a) in vals.iter_mut().zip(args) {
                *v = match a {
                    Operand::Scalar(s) => *s,
                    Operand::Tensor(t) => t.data[i],
                };
            }
            data.push(f(&vals));
        }
        return Ok(Tensor::new(out_shape, data));
    }
    let strides: Vec<Vec<usize>> = args
        .iter()
        .map(|a| match a {
            Operand::Tensor(t) => broadcast_strides(&t.shape, &out_shape),
            Operand::Scalar(_) => vec![0; out_shape.len()],
        })
        .collect();
    let mut index = vec![0usize; out_shape.len()];
    let mut offsets = vec![0usize; args.len()];
    let mut data = Vec::with_capacity(n);
    for i in 0..n {
        if i % POLL == 0 {
            cancel.check()?;
        }
        for ((v, a), off) in vals.iter_mut().zip(args).zip(&offsets) {
            *v = match a {
                Operand::Scalar(s) => *s,
                Operand::Tensor(t) => t.data[*off],
            };
        }
        data.push(f(&vals));
        // Advance the multi-index.
        for d in (0..out_shape.len()).rev() {
            index[d] += 1;
            for (off, s) in offsets.iter_mut().zip(&strides) {
                *off += s[d];
            }
            if index[d] < out_shape[d] {
                break;
            }
            for (off, s) in offsets.iter_mut().zip(&strides) {
                *off -= s[d] * index[d];
            }
            index[d] = 0;
        }
    }
    Ok(Tensor::new(out_shape, data))
}

/// Calls `f(sequence)` for every fibre along `axis`, giving (outer, inner, len) layout.
pub fn along_axis(
    t: &Tensor,
    axis: usize,
    mut f: impl FnMut(&dyn Fn(usize) -> f32, usize) -> Vec<f32>,
) -> Vec<Vec<f32>> {
    let len = t.shape[axis];
    let inner: usize = t.shape[axis + 1..].iter().product();
    let outer: usize = t.shape[..axis].iter().product();
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let base = o * len * inner + i;
            let get = |j: usize| t.data[base + j * inner];
            out.push(f(&get, len));
        }
    }
    out
}

/// Reduces along `axis` with `reduce(get, len) -> f32`; keeps the axis as size 1 when `keepdim`.
pub fn reduce_axis(
    t: &Tensor,
    axis: usize,
    keepdim: bool,
    reduce: impl Fn(&dyn Fn(usize) -> f32, usize) -> f32,
) -> Tensor {
    let vals = along_axis(t, axis, |get, len| vec![reduce(get, len)]);
    let mut shape = t.shape.clone();
    if keepdim {
        shape[axis] = 1;
    } else {
        shape.remove(axis);
    }
    Tensor::new(shape, vals.into_iter().flatten().collect())
}

/// Replaces every fibre along `axis` by `f(fibre)` (same length).
pub fn map_axis(t: &Tensor, axis: usize, f: impl Fn(&[f32]) -> Vec<f32>) -> Tensor {
    let len = t.shape[axis];
    let inner: usize = t.shape[axis + 1..].iter().product();
    let mut data = vec![0.0; t.numel()];
    let fibres = along_axis(t, axis, |get, n| f(&(0..n).map(get).collect::<Vec<_>>()));
    let outer: usize = t.shape[..axis].iter().product();
    let mut k = 0;
    for o in 0..outer {
        for i in 0..inner {
            let base = o * len * inner + i;
            for (j, v) in fibres[k].iter().enumerate() {
                data[base + j * inner] = *v;
            }
            k += 1;
        }
    }
    Tensor::new(t.shape.clone(), data)
}

/// Canonical f64 sum of a fibre, as f32.
pub fn fibre_sum(get: &dyn Fn(usize) -> f32, len: usize) -> f64 {
    canonical_sum(len, |j| get(j) as f64)
}

/// Canonical f64 sum of squares.
pub fn fibre_sum_sq(get: &dyn Fn(usize) -> f32, len: usize) -> f64 {
    canonical_sum(len, |j| {
        let v = get(j) as f64;
        v * v
    })
}

/// Broadcasts a tensor to `shape` (materialised).
pub fn broadcast_to(t: &Tensor, shape: &[usize]) -> Result<Tensor, RuntimeError> {
    if t.shape == shape {
        return Ok(t.clone());
    }
    let target = Tensor::full(shape, 0.0);
    map_n(&[Operand::Tensor(t), Operand::Tensor(&target)], |v| v[0])
}

/// Element `i` of an operand already at the output shape.
#[inline(always)]
fn get(o: &Operand, i: usize) -> f32 {
    match o {
        Operand::Scalar(s) => *s,
        Operand::Tensor(t) => t.data[i],
    }
}

/// The output shape when every tensor operand has it (no broadcasting needed).
fn common_shape(args: &[Operand]) -> Option<Vec<usize>> {
    let mut shape: Option<&Vec<usize>> = None;
    for a in args {
        if let Operand::Tensor(t) = a {
            match shape {
                None => shape = Some(&t.shape),
                Some(s) if *s == t.shape => {}
                Some(_) => return None,
            }
        }
    }
    shape.cloned()
}

/// Elements below this are computed on the calling thread.
const PAR_MIN: usize = 1 << 15;

/// `(0..n).map(f)`, in parallel chunks for large `n`: elementwise, so the same values in the
/// same order whatever the thread count.
/// Chunks left once the token (see [`polling`]) fired stay 0.
fn par_map(n: usize, f: impl Fn(usize) -> f32 + Sync + Send) -> Vec<f32> {
    use rayon::prelude::*;
    if n < 2 * PAR_MIN {
        return (0..n).map(f).collect();
    }
    let cancel = CANCEL.get();
    let mut out = vec![0.0f32; n];
    out.par_chunks_mut(PAR_MIN)
        .enumerate()
        .for_each(|(c, dst)| {
            if cancel.fired() {
                return;
            }
            for (j, d) in dst.iter_mut().enumerate() {
                *d = f(c * PAR_MIN + j);
            }
        });
    out
}

/// Fast path of [`map_n`] for one operand: a loop the compiler can vectorise.
pub fn map1_fast(a: &Operand, f: impl Fn(f32) -> f32 + Sync) -> Option<Tensor> {
    let Operand::Tensor(t) = a else { return None };
    Some(Tensor::new(
        t.shape.clone(),
        par_map(t.numel(), |i| f(t.data[i])),
    ))
}

/// Fast path of [`map_n`] for two operands of the same shape (or scalars); `None` when
/// broadcasting is needed. Gives exactly the values `map_n` gives.
pub fn map2_fast(a: &Operand, b: &Operand, f: impl Fn(f32, f32) -> f32 + Sync) -> Option<Tensor> {
    if matches!((a, b), (Operand::Scalar(_), Operand::Scalar(_))) {
        return None;
    }
    let shape = common_shape(&[*a, *b])?;
    let n: usize = shape.iter().product();
    Some(Tensor::new(shape, par_map(n, |i| f(get(a, i), get(b, i)))))
}

/// Fast path of [`map_n`] for three operands of the same shape (or scalars).
pub fn map3_fast(
    a: &Operand,
    b: &Operand,
    c: &Operand,
    f: impl Fn(f32, f32, f32) -> f32 + Sync,
) -> Option<Tensor> {
    let shape = common_shape(&[*a, *b, *c])?;
    let n: usize = shape.iter().product();
    Some(Tensor::new(
        shape,
        par_map(n, |i| f(get(a, i), get(b, i), get(c, i))),
    ))
}
