//! The tree-walking evaluator: the reference semantics of checked programs.

use super::pointwise::pointwise;
use super::tensor_ops::{
    Operand, broadcast_shapes, broadcast_to, fibre_sum, fibre_sum_sq, map_axis, map_n, reduce_axis,
};
use super::value::{RuntimeError, Tensor, TensorFacts, Value};
use crate::cancel::Cancel;
use crate::semantics as sem;
use crate::types::ops::{AxisOp, Op};
use crate::types::tast::{Fact, TExpr, TKind, VarId};
use std::cell::Cell;
use std::sync::Arc;

/// Largest repeat count accepted at run time.
pub const MAX_RUNTIME_REPEAT: i64 = crate::syntax::limits::Limits::DEFAULT.max_runtime_repeat;

/// Loads a tensor for the REPL's `load(path, name)`.
pub type Loader<'a> = &'a dyn Fn(&str, &str) -> Result<Tensor, String>;

/// Everything a program may observe besides its inputs.
pub struct Context<'a> {
    pub seed: u64,
    pub facts: TensorFacts,
    pub loader: Option<Loader<'a>>,
    /// Advanced by each REPL `randn` call.
    pub randn_counter: Cell<u64>,
    /// Polled per op and per loop iteration: a run stops with its reason.
    pub cancel: Cancel,
}

impl<'a> Context<'a> {
    pub fn new(seed: u64, facts: TensorFacts) -> Self {
        Context {
            seed,
            facts,
            loader: None,
            randn_counter: Cell::new(0),
            cancel: Cancel::NEVER,
        }
    }

    /// The context polling `cancel`.
    pub fn with_cancel(self, cancel: Cancel) -> Self {
        Context { cancel, ..self }
    }

    /// An error once the run should stop (interrupted or over its time limit).
    fn poll(&self) -> Result<(), RuntimeError> {
        self.cancel
            .check()
            .map_err(|s| RuntimeError::new(s.to_string()))
    }
}

pub struct Evaluator<'c, 'a> {
    ctx: &'c Context<'a>,
    env: Vec<Option<Value>>,
    name_hash: u64,
    /// Static read counts (see `liveness`); empty when values must outlive the run (REPL).
    reads: Vec<u32>,
    /// Reads left before each bound value is freed.
    left: Vec<u32>,
}

type R = Result<Value, RuntimeError>;

fn err(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::new(msg)
}

impl<'c, 'a> Evaluator<'c, 'a> {
    pub fn new(ctx: &'c Context<'a>, n_vars: usize) -> Self {
        Evaluator {
            ctx,
            env: vec![None; n_vars],
            name_hash: sem::name_hash(&ctx.facts.name),
            reads: Vec::new(),
            left: Vec::new(),
        }
    }

    /// Frees each bound value at its last read (counts from `liveness::read_counts`).
    pub fn free_after_last_read(mut self, reads: Vec<u32>) -> Self {
        self.left = reads.clone();
        self.reads = reads;
        self
    }

    pub fn set(&mut self, var: u32, v: Value) {
        let i = var as usize;
        if i >= self.env.len() {
            self.env.resize(i + 1, None);
        }
        self.env[i] = Some(v);
        if let Some(&r) = self.reads.get(i) {
            self.left[i] = r;
        }
    }

    fn read(&mut self, v: u32) -> Value {
        let i = v as usize;
        let last = match self.left.get_mut(i) {
            Some(n) if *n != super::liveness::UNBOUNDED => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            _ => false,
        };
        let slot = self.env.get_mut(i);
        let value = if last {
            slot.and_then(Option::take)
        } else {
            slot.and_then(|x| x.clone())
        };
        value.unwrap_or_else(|| panic!("interpreter: variable %{v} read before it was bound"))
    }

    pub fn eval(&mut self, e: &TExpr) -> R {
        stacker::maybe_grow(64 * 1024, 4 * 1024 * 1024, || self.eval_inner(e))
            .map_err(|x| x.at(e.span))
    }

    fn eval_inner(&mut self, e: &TExpr) -> R {
        Ok(match &e.kind {
            TKind::Int(i) => Value::Int(*i),
            TKind::F32(x) => Value::F32(*x),
            TKind::Bool(b) => Value::Bool(*b),
            TKind::Str(s) => Value::Str(s.clone()),
            TKind::TensorLit { shape, data } => {
                Value::tensor(Tensor::new(shape.clone(), data.as_ref().clone()))
            }
            TKind::Var(v) => self.read(*v),
            TKind::Fact(f) => match f {
                Fact::Name => Value::Str(self.ctx.facts.name.as_str().into()),
                Fact::Kind => Value::Str(self.ctx.facts.kind.as_str().into()),
                Fact::Layer => Value::Int(self.ctx.facts.layer),
                Fact::NLayers => Value::Int(self.ctx.facts.n_layers),
            },
            TKind::Let(v, value, body) => {
                let x = self.eval(value)?;
                self.set(*v, x);
                self.eval(body)?
            }
            TKind::If(c, a, b) => self.eval_if(c, a, b)?,
            TKind::Fold {
                list,
                init,
                acc,
                elem,
                index,
                body,
            } => self.eval_fold(list, init.as_deref(), *acc, *elem, *index, body)?,
            TKind::Repeat {
                count,
                init,
                acc,
                index,
                body,
            } => self.eval_repeat(count, init, *acc, *index, body)?,
            TKind::Index(l, i) => self.eval_index(l, i)?,
            TKind::List(xs) => {
                Value::list(xs.iter().map(|x| self.eval(x)).collect::<Result<_, _>>()?)
            }
            TKind::Splat(v, like) => {
                let v = self.eval(v)?;
                let Value::List(l) = self.eval(like)? else {
                    panic!("interpreter: splat like a non-list")
                };
                Value::list(vec![v; l.len()])
            }
            TKind::Op(op, args) => {
                let vals = args
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<Vec<_>, _>>()?;
                self.ctx.poll()?;
                let cancel = self.ctx.cancel;
                let r = super::tensor_ops::polling(cancel, || self.op(*op, vals));
                // An op cut short by the token left its output unfinished.
                self.ctx.poll()?;
                r?
            }
        })
    }

    /// `if`: a bool condition picks a branch; a per-model list of conditions picks per
    /// model, evaluating both branches.
    fn eval_if(&mut self, c: &TExpr, a: &TExpr, b: &TExpr) -> R {
        Ok(match self.eval(c)? {
            Value::Bool(true) => self.eval(a)?,
            Value::Bool(false) => self.eval(b)?,
            Value::List(cs) => {
                let (a, b) = (self.eval(a)?, self.eval(b)?);
                let mut out = Vec::with_capacity(cs.len());
                for (i, c) in cs.iter().enumerate() {
                    let pick = if matches!(c, Value::Bool(true)) {
                        &a
                    } else {
                        &b
                    };
                    out.push(list_item(pick, i, cs.len())?);
                }
                Value::list(out)
            }
            other => panic!("interpreter: `if` condition is {}", other.kind_name()),
        })
    }

    /// `fold(list, init, |acc, elem, index| body)`; without `init` the first element
    /// starts the fold.
    fn eval_fold(
        &mut self,
        list: &TExpr,
        init: Option<&TExpr>,
        acc: VarId,
        elem: VarId,
        index: Option<VarId>,
        body: &TExpr,
    ) -> R {
        let xs = self.eval(list)?;
        let Value::List(xs) = xs else {
            panic!("interpreter: fold over a non-list")
        };
        let (mut a, start) = match init {
            Some(i) => (self.eval(i)?, 0),
            None => (
                xs.first()
                    .cloned()
                    .ok_or_else(|| err("fold over an empty list"))?,
                1,
            ),
        };
        for (i, x) in xs.iter().enumerate().skip(start) {
            self.ctx.poll()?;
            self.set(acc, a);
            self.set(elem, x.clone());
            if let Some(iv) = index {
                self.set(iv, Value::Int(i as i64));
            }
            a = self.eval(body)?;
        }
        Ok(a)
    }

    /// `repeat(count, init, |acc, index| body)`, the count checked at run time.
    fn eval_repeat(
        &mut self,
        count: &TExpr,
        init: &TExpr,
        acc: VarId,
        index: Option<VarId>,
        body: &TExpr,
    ) -> R {
        let Value::Int(n) = self.eval(count)? else {
            panic!("interpreter: repeat count")
        };
        if !(0..=MAX_RUNTIME_REPEAT).contains(&n) {
            return Err(err(format!(
                "repeat count {n} is outside 0..={MAX_RUNTIME_REPEAT}"
            )));
        }
        let mut a = self.eval(init)?;
        for i in 0..n {
            self.ctx.poll()?;
            self.set(acc, a);
            if let Some(iv) = index {
                self.set(iv, Value::Int(i));
            }
            a = self.eval(body)?;
        }
        Ok(a)
    }

    /// `list[i]`, negative indices counting from the end.
    fn eval_index(&mut self, l: &TExpr, i: &TExpr) -> R {
        let Value::List(xs) = self.eval(l)? else {
            panic!("interpreter: index of a non-list")
        };
        let Value::Int(i) = self.eval(i)? else {
            panic!("interpreter: non-int index")
        };
        let n = xs.len() as i64;
        let j = if i < 0 { i + n } else { i };
        if !(0..n).contains(&j) {
            return Err(err(format!("index {i} is out of range for a list of {n}"))
                .with_hint(format!("valid indices are 0..{} and -{n}..-1", n - 1)));
        }
        Ok(xs[j as usize].clone())
    }

    fn op(&mut self, op: Op, args: Vec<Value>) -> R {
        match op {
            Op::ListSum
            | Op::ListMean
            | Op::ListMax
            | Op::ListMin
            | Op::ListProd
            | Op::ListCount
            | Op::ListArgmax
            | Op::ListArgmin
            | Op::ListSoftmax
            | Op::TakeMax
            | Op::TakeMin
            | Op::Len => list_op(op, &args),
            Op::Bernoulli(_) | Op::Uniform(_) => {
                self.lift(&args, &|s, vals, i| s.random(op, vals, i))
            }
            Op::Randn | Op::Zeros | Op::Ones => self.repl_shape(op, &args),
            Op::Load => {
                let (Value::Str(p), Value::Str(n)) = (&args[0], &args[1]) else {
                    panic!("interpreter: load args")
                };
                let loader = self
                    .ctx
                    .loader
                    .ok_or_else(|| err("load is available only in the REPL"))?;
                Ok(Value::tensor(loader(p, n).map_err(err)?))
            }
            _ => self.lift(&args, &|_, vals, _| elem_op(op, vals)),
        }
    }

    /// Applies `f` per model when any argument is a list (giving the model index), else once.
    fn lift(&self, args: &[Value], f: &dyn Fn(&Self, &[Value], u32) -> R) -> R {
        let n = args.iter().find_map(|a| match a {
            Value::List(l) => Some(l.len()),
            _ => None,
        });
        let Some(n) = n else { return f(self, args, 0) };
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let row = args
                .iter()
                .map(|a| list_item(a, i, n))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(f(self, &row, i as u32)?);
        }
        Ok(Value::list(out))
    }

    fn random(&self, op: Op, args: &[Value], model: u32) -> R {
        let (Op::Bernoulli(stream) | Op::Uniform(stream)) = op else {
            unreachable!()
        };
        let key = sem::stream_key(self.ctx.seed, self.name_hash, model, stream);
        let like = args[0].as_tensor().expect("random: tensor arg");
        match op {
            Op::Uniform(_) => {
                let data = (0..like.numel() as u64)
                    .map(|i| sem::uniform_at(key, i))
                    .collect();
                Ok(Value::tensor(Tensor::new(like.shape.clone(), data)))
            }
            _ => {
                // p may be a scalar or a tensor; broadcast with x's shape.
                let shape = match &args[1] {
                    Value::Tensor(p) | Value::Mask(p) => {
                        broadcast_shapes(&[&like.shape, &p.shape])?
                    }
                    _ => like.shape.clone(),
                };
                let n: usize = shape.iter().product();
                let u = Tensor::new(
                    shape,
                    (0..n as u64).map(|i| sem::uniform_at(key, i)).collect(),
                );
                let m = map_n(&[Operand::Tensor(&u), operand(&args[1])], |v| {
                    sem::from_bool(v[0] < v[1])
                })?;
                Ok(Value::mask(m))
            }
        }
    }

    fn repl_shape(&self, op: Op, args: &[Value]) -> R {
        let shape: Vec<usize> = args
            .iter()
            .map(|a| match a {
                Value::Int(i) => *i as usize,
                _ => 1,
            })
            .collect();
        let n: usize = shape.iter().product();
        let data = match op {
            Op::Zeros => vec![0.0; n],
            Op::Ones => vec![1.0; n],
            _ => {
                let c = self.ctx.randn_counter.get();
                self.ctx.randn_counter.set(c + 1);
                let key = sem::stream_key(
                    self.ctx.seed,
                    sem::name_hash("<randn>"),
                    c as u32,
                    (c >> 32) as u32,
                );
                (0..n as u64).map(|i| sem::normal_at(key, i)).collect()
            }
        };
        Ok(Value::tensor(Tensor::new(shape, data)))
    }
}

/// Element `i` of a list argument; non-lists stand for every element.
fn list_item(v: &Value, i: usize, n: usize) -> R {
    match v {
        Value::List(l) if l.len() == n => Ok(l[i].clone()),
        Value::List(l) => Err(
            err(format!("lists of different lengths: {} and {n}", l.len()))
                .with_hint("per-model lists need one value per model"),
        ),
        other => Ok(other.clone()),
    }
}

pub(super) fn operand(v: &Value) -> Operand<'_> {
    match v {
        Value::Tensor(t) | Value::Mask(t) => Operand::Tensor(t),
        other => Operand::Scalar(other.as_f32().unwrap_or(f32::NAN)),
    }
}

pub(super) fn f32_of(v: &Value) -> f32 {
    v.as_f32().unwrap_or(f32::NAN)
}

fn int_overflow() -> RuntimeError {
    err("integer overflow").with_hint("integers are 64-bit; use f32 arithmetic for large values")
}

/// One elementwise or whole-tensor operation on non-list values.
pub(crate) fn elem_op(op: Op, a: &[Value]) -> R {
    use Value as V;
    // Integer arithmetic stays integral.
    if a.iter().all(|v| matches!(v, V::Int(_)))
        && let Some(v) = int_op(op, a)?
    {
        return Ok(v);
    }
    match op {
        Op::SumAll
        | Op::MeanAll
        | Op::MaxAll
        | Op::MinAll
        | Op::Norm
        | Op::Std
        | Op::Numel
        | Op::Ndim
        | Op::Dim(_) => whole_op(op, a[0].as_tensor().expect("whole: tensor")),
        Op::Dot | Op::CosSim => dot_op(
            op,
            a[0].as_tensor().expect("dot a"),
            a[1].as_tensor().expect("dot b"),
        ),
        Op::Quantile => Ok(V::F32(sem::quantile(
            &a[0].as_tensor().expect("quantile x").data,
            f32_of(&a[1]),
        ))),
        Op::TopkMask => {
            let x = a[0].as_tensor().expect("topk x");
            let n = x.numel();
            let m = sem::topk_mask(&x.data, topk_count(&a[1], n), topk_count(&a[2], n));
            Ok(V::mask(Tensor::new(
                x.shape.clone(),
                m.into_iter().map(sem::from_bool).collect(),
            )))
        }
        Op::Ranks(axis) => {
            let x = a[0].as_tensor().expect("ranks x");
            if x.shape.is_empty() {
                return Ok(V::tensor(Tensor::new(vec![], vec![0.0])));
            }
            Ok(V::tensor(map_axis(x, axis as usize, sem::ranks)))
        }
        Op::Axis(aop, axis, keepdim) => Ok(V::tensor(axis_op(
            aop,
            a[0].as_tensor().expect("axis x"),
            axis as usize,
            keepdim,
        ))),
        Op::ZerosLike | Op::OnesLike | Op::FullLike => {
            let x = a[0].as_tensor().expect("like x");
            let v = match op {
                Op::ZerosLike => 0.0,
                Op::OnesLike => 1.0,
                _ => f32_of(&a[1]),
            };
            Ok(V::tensor(Tensor::full(&x.shape, v)))
        }
        Op::StrEq | Op::StrNe | Op::Contains | Op::StartsWith | Op::EndsWith => str_op(op, a),
        Op::ToInt => {
            let x = f32_of(&a[0]);
            if !x.is_finite() || x.abs() >= 9.2e18 {
                return Err(err(format!("int({x}) is not a representable integer")));
            }
            Ok(V::Int(x.trunc() as i64))
        }
        Op::ToF32 => Ok(V::F32(f32_of(&a[0]))),
        _ => pointwise(op, a),
    }
}

/// `op` on integers only, giving an int or a bool; `None` when `op` is not integral
/// (the caller then treats the ints as numbers).
fn int_op(op: Op, a: &[Value]) -> Result<Option<Value>, RuntimeError> {
    use Value as V;
    let i = |k: usize| match a[k] {
        V::Int(x) => x,
        _ => unreachable!(),
    };
    let r = match op {
        Op::Add => i(0).checked_add(i(1)).ok_or_else(int_overflow)?,
        Op::Sub => i(0).checked_sub(i(1)).ok_or_else(int_overflow)?,
        Op::Mul => i(0).checked_mul(i(1)).ok_or_else(int_overflow)?,
        Op::Neg => i(0).checked_neg().ok_or_else(int_overflow)?,
        Op::Abs => i(0).checked_abs().ok_or_else(int_overflow)?,
        Op::Sign => i(0).signum(),
        Op::Min => i(0).min(i(1)),
        Op::Max => i(0).max(i(1)),
        Op::Clamp => i(0).max(i(1)).min(i(2)),
        Op::Eq => return Ok(Some(V::Bool(i(0) == i(1)))),
        Op::Ne => return Ok(Some(V::Bool(i(0) != i(1)))),
        Op::Lt => return Ok(Some(V::Bool(i(0) < i(1)))),
        Op::Le => return Ok(Some(V::Bool(i(0) <= i(1)))),
        Op::Gt => return Ok(Some(V::Bool(i(0) > i(1)))),
        Op::Ge => return Ok(Some(V::Bool(i(0) >= i(1)))),
        Op::ToF32 => return Ok(Some(V::F32(i(0) as f32))),
        Op::ToInt => i(0),
        _ => return Ok(None),
    };
    Ok(Some(V::Int(r)))
}

/// `dot(x, y)` or `cos_sim(x, y)` of two broadcast tensors.
fn dot_op(op: Op, x: &Tensor, y: &Tensor) -> R {
    let shape = broadcast_shapes(&[&x.shape, &y.shape])?;
    let (x, y) = (broadcast_to(x, &shape)?, broadcast_to(y, &shape)?);
    let n = x.numel();
    let dot = sem::canonical_sum(n, |j| x.data[j] as f64 * y.data[j] as f64);
    if op == Op::Dot {
        return Ok(Value::F32(dot as f32));
    }
    let nx = sem::canonical_sum(n, |j| (x.data[j] as f64).powi(2)).sqrt();
    let ny = sem::canonical_sum(n, |j| (y.data[j] as f64).powi(2)).sqrt();
    let d = nx * ny;
    Ok(Value::F32(if d == 0.0 { 0.0 } else { (dot / d) as f32 }))
}

/// A reduction of `x` along `axis`.
fn axis_op(aop: AxisOp, x: &Tensor, axis: usize, keepdim: bool) -> Tensor {
    match aop {
        AxisOp::Sum => reduce_axis(x, axis, keepdim, |g, n| fibre_sum(g, n) as f32),
        AxisOp::Mean => reduce_axis(x, axis, keepdim, |g, n| (fibre_sum(g, n) / n as f64) as f32),
        AxisOp::Norm => reduce_axis(x, axis, keepdim, |g, n| fibre_sum_sq(g, n).sqrt() as f32),
        AxisOp::Max => reduce_axis(x, axis, keepdim, |g, n| fold_minmax(g, n, sem::max)),
        AxisOp::Min => reduce_axis(x, axis, keepdim, |g, n| fold_minmax(g, n, sem::min)),
    }
}

/// A comparison or a test of two strings.
fn str_op(op: Op, a: &[Value]) -> R {
    let (Value::Str(s), Value::Str(t)) = (&a[0], &a[1]) else {
        panic!("interpreter: string op args")
    };
    Ok(Value::Bool(match op {
        Op::StrEq => s == t,
        Op::StrNe => s != t,
        Op::Contains => s.contains(t.as_ref()),
        Op::StartsWith => s.starts_with(t.as_ref()),
        _ => s.ends_with(t.as_ref()),
    }))
}

/// A top-k count argument of a tensor of `n` elements: an int (clamped), else a fraction.
pub(crate) fn topk_count(v: &Value, n: usize) -> usize {
    match v {
        Value::Int(k) => (*k).clamp(0, n as i64) as usize,
        other => sem::fraction_count(f32_of(other), n),
    }
}

fn fold_minmax(get: &dyn Fn(usize) -> f32, n: usize, f: fn(f32, f32) -> f32) -> f32 {
    if n == 0 {
        return f32::NAN;
    }
    (1..n).fold(get(0), |acc, j| f(acc, get(j)))
}

fn whole_op(op: Op, x: &Tensor) -> R {
    let n = x.numel();
    let get = |j: usize| x.data[j];
    Ok(match op {
        Op::SumAll => Value::F32(fibre_sum(&get, n) as f32),
        Op::MeanAll => Value::F32((fibre_sum(&get, n) / n as f64) as f32),
        Op::MaxAll => Value::F32(fold_minmax(&get, n, sem::max)),
        Op::MinAll => Value::F32(fold_minmax(&get, n, sem::min)),
        Op::Norm => Value::F32(fibre_sum_sq(&get, n).sqrt() as f32),
        Op::Std => {
            let mean = fibre_sum(&get, n) / n as f64;
            let ss = sem::canonical_sum(n, |j| (x.data[j] as f64 - mean).powi(2));
            Value::F32((ss / n as f64).sqrt() as f32)
        }
        Op::Numel => Value::Int(n as i64),
        Op::Ndim => Value::Int(x.shape.len() as i64),
        Op::Dim(axis) => Value::Int(x.shape[axis as usize] as i64),
        _ => unreachable!("whole_op {op:?}"),
    })
}

/// Operations across the model list.
pub(crate) fn list_op(op: Op, args: &[Value]) -> R {
    let Value::List(xs) = &args[0] else {
        panic!("interpreter: {op:?} of a non-list")
    };
    if op == Op::Len {
        return Ok(Value::Int(xs.len() as i64));
    }
    if xs.is_empty() {
        return Err(err("an empty model list").with_hint("give at least one model"));
    }
    let k = xs.len();
    let fold2 = |f: Op| -> R {
        let mut acc = as_number(&xs[0]);
        for x in &xs[1..] {
            acc = elem_op(f, &[acc, as_number(x)])?;
        }
        Ok(acc)
    };
    match op {
        Op::ListSum => fold2(Op::Add),
        Op::ListProd => fold2(Op::Mul),
        Op::ListMax => fold2(Op::Max),
        Op::ListMin => fold2(Op::Min),
        Op::ListMean => {
            let s = fold2(Op::Add)?;
            elem_op(Op::Div, &[s, Value::F32(k as f32)])
        }
        Op::ListCount => {
            let mut acc = to_float(&xs[0]);
            for x in &xs[1..] {
                acc = elem_op(Op::Add, &[acc, to_float(x)])?;
            }
            Ok(acc)
        }
        Op::ListSoftmax => {
            let m = fold2(Op::Max)?;
            let es = xs
                .iter()
                .map(|x| {
                    let d = elem_op(Op::Sub, &[as_number(x), m.clone()])?;
                    elem_op(Op::Exp, &[d])
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut s = es[0].clone();
            for e in &es[1..] {
                s = elem_op(Op::Add, &[s, e.clone()])?;
            }
            Ok(Value::list(
                es.into_iter()
                    .map(|e| elem_op(Op::Div, &[e, s.clone()]))
                    .collect::<Result<_, _>>()?,
            ))
        }
        Op::ListArgmax | Op::ListArgmin | Op::TakeMax | Op::TakeMin => {
            let take = matches!(op, Op::TakeMax | Op::TakeMin);
            let larger = matches!(op, Op::ListArgmax | Op::TakeMax);
            let values = if take {
                let Value::List(v) = &args[1] else {
                    panic!("interpreter: take values")
                };
                if v.len() != k {
                    return Err(err(format!(
                        "keys and values have {k} and {} models",
                        v.len()
                    )));
                }
                Some(v.clone())
            } else {
                None
            };
            select_by(xs, values.as_deref().map(|v| v.as_slice()), larger)
        }
        _ => unreachable!("list_op {op:?}"),
    }
}

/// Per element: the index (or the value) of the first model with the extreme key.
fn select_by(keys: &[Value], values: Option<&[Value]>, larger: bool) -> R {
    let all: Vec<Value> = keys
        .iter()
        .chain(values.into_iter().flatten())
        .cloned()
        .collect();
    let shapes: Vec<&[usize]> = all
        .iter()
        .filter_map(|v| v.as_tensor().map(|t| t.shape.as_slice()))
        .collect();
    if shapes.is_empty() {
        let ks: Vec<f32> = keys.iter().map(f32_of).collect();
        let i = extreme_index(&ks, larger);
        return Ok(Value::F32(match (i, values) {
            (None, _) => f32::NAN,
            (Some(i), None) => i as f32,
            (Some(i), Some(v)) => f32_of(&v[i]),
        }));
    }
    let shape = broadcast_shapes(&shapes)?;
    let dense = |v: &Value| -> Result<Tensor, RuntimeError> {
        match v.as_tensor() {
            Some(t) => broadcast_to(t, &shape),
            None => Ok(Tensor::full(&shape, f32_of(v))),
        }
    };
    let kt: Vec<Tensor> = keys.iter().map(dense).collect::<Result<_, _>>()?;
    let vt: Option<Vec<Tensor>> = values.map(|v| v.iter().map(dense).collect()).transpose()?;
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut col = vec![0.0; kt.len()];
    for j in 0..n {
        for (c, t) in col.iter_mut().zip(&kt) {
            *c = t.data[j];
        }
        out.push(match (extreme_index(&col, larger), &vt) {
            (None, _) => f32::NAN,
            (Some(i), None) => i as f32,
            (Some(i), Some(v)) => v[i].data[j],
        });
    }
    Ok(Value::tensor(Tensor::new(shape, out)))
}

/// Index of the first largest (or smallest) value; `None` if any is NaN.
fn extreme_index(xs: &[f32], larger: bool) -> Option<usize> {
    if xs.iter().any(|x| x.is_nan()) {
        return None;
    }
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate().skip(1) {
        if (larger && x > xs[best]) || (!larger && x < xs[best]) {
            best = i;
        }
    }
    Some(best)
}

/// Masks count as 0/1 tensors in arithmetic.
fn as_number(v: &Value) -> Value {
    match v {
        Value::Mask(t) => Value::Tensor(Arc::clone(t)),
        other => other.clone(),
    }
}

fn to_float(v: &Value) -> Value {
    match v {
        Value::Mask(t) => Value::Tensor(Arc::clone(t)),
        Value::Bool(b) => Value::F32(sem::from_bool(*b)),
        other => other.clone(),
    }
}
