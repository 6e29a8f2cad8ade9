//! Lowering: a checked merge, its parameter values, the tensor's facts and the input
//! shapes become a graph. This is a symbolic run of the program: every value known
//! before data is read (parameters, facts, shapes, list lengths) is computed with
//! the interpreter's own scalar functions, so lists and folds unroll for the actual
//! number of models, `repeat` for its count, and `if`s on known values pick their
//! branch. An `if` on a data-dependent value lowers both branches (an error in a
//! branch becomes a `Poison` node, raised only if that branch is chosen) joined by
//! `Select`.

use super::graph::{Graph, H64, NTy, Node, NodeId, NodeOp, Red, STy, Scalar};
use super::kernel::{BinOp, UnOp};
use crate::interp::tensor_ops::broadcast_shapes;
use crate::interp::{MAX_RUNTIME_REPEAT, RuntimeError, TensorFacts, Value, elem_op};
use crate::types::CheckedMerge;
use crate::types::ops::Op;
use crate::types::tast::VarId;
use crate::types::tast::{Fact, TExpr, TKind};

/// Most nodes a lowered graph may have.
pub const MAX_NODES: usize = 200_000;

#[derive(Clone, Debug, thiserror::Error)]
pub enum LowerError {
    /// The program fails on this tensor, as the interpreter would.
    #[error("it fails on this tensor: {0}")]
    Runtime(#[from] RuntimeError),
    /// The compiler cannot handle this program (the interpreter can).
    #[error("the compiler declines it: {0} (the interpreter runs it)")]
    Unsupported(String),
}

type R<T> = Result<T, LowerError>;

/// A symbolic value.
#[derive(Clone, Debug)]
pub(super) enum SV {
    /// Known before any data is read (scalars and strings).
    K(Value),
    N(NodeId),
    L(Vec<SV>),
    /// A speculated branch that failed.
    P(RuntimeError),
}

fn unsupported<T>(why: impl Into<String>) -> R<T> {
    Err(LowerError::Unsupported(why.into()))
}

/// What lowering needs besides the program.
pub struct LowerInput<'a> {
    pub merge: &'a CheckedMerge,
    /// Value of every parameter (after defaults and overrides), in `merge.params` order.
    pub params: Vec<Value>,
    pub facts: &'a TensorFacts,
    /// Base shape first, then each model's.
    pub shapes: Vec<Vec<usize>>,
}

pub fn lower(input: &LowerInput) -> R<Graph> {
    let m = input.merge;
    let mut l = Lowerer {
        nodes: Vec::new(),
        env: vec![None; m.var_names.len()],
        facts: input.facts,
    };
    let base = l.push(
        NodeOp::Input(0),
        vec![],
        NTy::Tensor(input.shapes[0].clone()),
    )?;
    l.set(m.base, SV::N(base));
    let mut models = Vec::new();
    for (i, s) in input.shapes.iter().enumerate().skip(1) {
        models.push(SV::N(l.push(
            NodeOp::Input(i as u32),
            vec![],
            NTy::Tensor(s.clone()),
        )?));
    }
    l.set(m.models, SV::L(models));
    for ((_, var), v) in m.params.iter().zip(&input.params) {
        l.set(*var, from_value(v));
    }
    let out = l.lower(&m.body)?;
    let output = match out {
        SV::N(n) if l.nodes[n as usize].ty.is_tensor() => n,
        SV::P(e) => return Err(LowerError::Runtime(e)),
        other => return unsupported(format!("the merge returned {other:?}, not a tensor")),
    };
    Ok(Graph {
        nodes: l.nodes,
        output,
        input_shapes: input.shapes.clone(),
    })
}

fn from_value(v: &Value) -> SV {
    match v {
        Value::List(xs) => SV::L(xs.iter().map(from_value).collect()),
        other => SV::K(other.clone()),
    }
}

pub(super) struct Lowerer<'a> {
    nodes: Vec<Node>,
    env: Vec<Option<SV>>,
    facts: &'a TensorFacts,
}

impl Lowerer<'_> {
    fn set(&mut self, v: VarId, x: SV) {
        let i = v as usize;
        if i >= self.env.len() {
            self.env.resize(i + 1, None);
        }
        self.env[i] = Some(x);
    }

    fn push(&mut self, op: NodeOp, args: Vec<NodeId>, ty: NTy) -> R<NodeId> {
        if self.nodes.len() >= MAX_NODES {
            return unsupported(format!("the lowered graph exceeds {MAX_NODES} nodes"));
        }
        self.nodes.push(Node { op, args, ty });
        Ok(self.nodes.len() as NodeId - 1)
    }

    fn ty(&self, n: NodeId) -> &NTy {
        &self.nodes[n as usize].ty
    }

    fn lower(&mut self, e: &TExpr) -> R<SV> {
        stacker::maybe_grow(64 * 1024, 4 * 1024 * 1024, || self.lower_inner(e)).map_err(|x| match x
        {
            LowerError::Runtime(r) => LowerError::Runtime(r.at(e.span)),
            other => other,
        })
    }

    /// Lowers a branch that may not be taken: its failure becomes a value.
    fn speculate(&mut self, e: &TExpr) -> R<SV> {
        match self.lower(e) {
            Err(LowerError::Runtime(r)) => Ok(SV::P(r)),
            other => other,
        }
    }

    fn lower_inner(&mut self, e: &TExpr) -> R<SV> {
        Ok(match &e.kind {
            TKind::Int(i) => SV::K(Value::Int(*i)),
            TKind::F32(x) => SV::K(Value::F32(*x)),
            TKind::Bool(b) => SV::K(Value::Bool(*b)),
            TKind::Str(s) => SV::K(Value::Str(s.clone())),
            TKind::TensorLit { shape, data } => SV::N(self.push(
                NodeOp::Literal(data.clone()),
                vec![],
                NTy::Tensor(shape.clone()),
            )?),
            TKind::Var(v) => self.env[*v as usize]
                .clone()
                .unwrap_or_else(|| panic!("lowering: %{v} read before it was bound")),
            TKind::Fact(f) => SV::K(match f {
                Fact::Name => Value::Str(self.facts.name.as_str().into()),
                Fact::Kind => Value::Str(self.facts.kind.as_str().into()),
                Fact::Layer => Value::Int(self.facts.layer),
                Fact::NLayers => Value::Int(self.facts.n_layers),
            }),
            TKind::Let(v, value, body) => {
                let x = self.lower(value)?;
                self.set(*v, x);
                self.lower(body)?
            }
            TKind::If(c, a, b) => {
                let c = self.lower(c)?;
                self.lower_if(c, a, b)?
            }
            TKind::Fold {
                list,
                init,
                acc,
                elem,
                index,
                body,
            } => {
                let SV::L(xs) = self.lower(list)? else {
                    return unsupported("fold over a non-list");
                };
                let (mut a, start) = match init {
                    Some(i) => (self.lower(i)?, 0),
                    None => (
                        xs.first()
                            .cloned()
                            .ok_or_else(|| RuntimeError::new("fold over an empty list"))?,
                        1,
                    ),
                };
                for (i, x) in xs.iter().enumerate().skip(start) {
                    self.set(*acc, a);
                    self.set(*elem, x.clone());
                    if let Some(iv) = index {
                        self.set(*iv, SV::K(Value::Int(i as i64)));
                    }
                    a = self.lower(body)?;
                }
                a
            }
            TKind::Repeat {
                count,
                init,
                acc,
                index,
                body,
            } => {
                let n = match self.lower(count)? {
                    SV::K(Value::Int(n)) => n,
                    _ => return unsupported("a repeat count that depends on tensor data"),
                };
                if !(0..=MAX_RUNTIME_REPEAT).contains(&n) {
                    return Err(RuntimeError::new(format!(
                        "repeat count {n} is outside 0..={MAX_RUNTIME_REPEAT}"
                    ))
                    .into());
                }
                let mut a = self.lower(init)?;
                for i in 0..n {
                    self.set(*acc, a);
                    if let Some(iv) = index {
                        self.set(*iv, SV::K(Value::Int(i)));
                    }
                    a = self.lower(body)?;
                }
                a
            }
            TKind::Index(l, i) => {
                let SV::L(xs) = self.lower(l)? else {
                    return unsupported("index of a non-list");
                };
                let i = self.lower(i)?;
                self.index(xs, i)?
            }
            TKind::List(xs) => SV::L(xs.iter().map(|x| self.lower(x)).collect::<R<_>>()?),
            TKind::Splat(v, like) => {
                let v = self.lower(v)?;
                let SV::L(l) = self.lower(like)? else {
                    return unsupported("splat like a non-list");
                };
                SV::L(vec![v; l.len()])
            }
            TKind::Op(op, args) => {
                let vals = args.iter().map(|a| self.lower(a)).collect::<R<Vec<_>>>()?;
                self.op(*op, vals)?
            }
        })
    }

    fn lower_if(&mut self, c: SV, a: &TExpr, b: &TExpr) -> R<SV> {
        match c {
            SV::K(Value::Bool(true)) => self.lower(a),
            SV::K(Value::Bool(false)) => self.lower(b),
            SV::N(_) => {
                let (x, y) = (self.speculate(a)?, self.speculate(b)?);
                self.select(&c, x, y)
            }
            SV::L(cs) => {
                let (x, y) = (self.speculate(a)?, self.speculate(b)?);
                let n = cs.len();
                let mut out = Vec::with_capacity(n);
                for (i, c) in cs.iter().enumerate() {
                    let (xi, yi) = (item(&x, i, n)?, item(&y, i, n)?);
                    out.push(self.select(c, xi, yi)?);
                }
                Ok(SV::L(out))
            }
            other => unsupported(format!("`if` on {other:?}")),
        }
    }

    /// Chooses between two values on a condition (known or a host bool).
    fn select(&mut self, c: &SV, a: SV, b: SV) -> R<SV> {
        match c {
            SV::K(Value::Bool(true)) => return Ok(a),
            SV::K(Value::Bool(false)) => return Ok(b),
            SV::P(e) => return Ok(SV::P(e.clone())),
            _ => {}
        }
        let SV::N(cn) = *c else {
            return unsupported(format!("condition {c:?}"));
        };
        match (a, b) {
            (SV::P(e), SV::P(_)) => Ok(SV::P(e)),
            (SV::L(xs), SV::L(ys)) if xs.len() == ys.len() => {
                let mut out = Vec::new();
                for (x, y) in xs.into_iter().zip(ys) {
                    out.push(self.select(c, x, y)?);
                }
                Ok(SV::L(out))
            }
            (SV::L(xs), SV::P(e)) => {
                let ys = vec![SV::P(e); xs.len()];
                self.select(c, SV::L(xs), SV::L(ys))
            }
            (SV::P(e), SV::L(ys)) => {
                let xs = vec![SV::P(e); ys.len()];
                self.select(c, SV::L(xs), SV::L(ys))
            }
            (SV::L(_), _) | (_, SV::L(_)) => unsupported("branches of different list shapes"),
            (x, y) => {
                let like = match (&x, &y) {
                    (SV::P(_), other) | (other, SV::P(_)) => other.clone(),
                    _ => x.clone(),
                };
                let ty = self.sv_ty(&like)?;
                let xn = self.node_of(x, &ty)?;
                let yn = self.node_of(y, &ty)?;
                let ty = if self.ty(xn).is_tensor() {
                    self.ty(xn).clone()
                } else {
                    self.ty(yn).clone()
                };
                if self.ty(xn).is_tensor() != self.ty(yn).is_tensor() {
                    return unsupported("a data-dependent choice between a tensor and a number");
                }
                Ok(SV::N(self.push(NodeOp::Select, vec![cn, xn, yn], ty)?))
            }
        }
    }

    fn sv_ty(&self, v: &SV) -> R<NTy> {
        Ok(match v {
            SV::K(Value::F32(_)) => NTy::Scalar(STy::F32),
            SV::K(Value::Int(_)) => NTy::Scalar(STy::Int),
            SV::K(Value::Bool(_)) => NTy::Scalar(STy::Bool),
            SV::N(n) => self.ty(*n).clone(),
            other => return unsupported(format!("a data-dependent choice of {other:?}")),
        })
    }

    /// A node holding a value (constants become `Const`, failures `Poison` of type `ty`).
    fn node_of(&mut self, v: SV, ty: &NTy) -> R<NodeId> {
        match v {
            SV::N(n) => Ok(n),
            SV::K(Value::F32(x)) => {
                self.push(NodeOp::Const(Scalar::F32(x)), vec![], NTy::Scalar(STy::F32))
            }
            SV::K(Value::Int(x)) => {
                self.push(NodeOp::Const(Scalar::Int(x)), vec![], NTy::Scalar(STy::Int))
            }
            SV::K(Value::Bool(x)) => self.push(
                NodeOp::Const(Scalar::Bool(x)),
                vec![],
                NTy::Scalar(STy::Bool),
            ),
            SV::P(e) => self.push(NodeOp::Poison(e), vec![], ty.clone()),
            other => unsupported(format!("{other:?} as a graph value")),
        }
    }

    fn index(&mut self, xs: Vec<SV>, i: SV) -> R<SV> {
        let n = xs.len() as i64;
        let out_of_range = |i: i64| {
            RuntimeError::new(format!("index {i} is out of range for a list of {n}"))
                .with_hint(format!("valid indices are 0..{} and -{n}..-1", n - 1))
        };
        match i {
            SV::K(Value::Int(i)) => {
                let j = if i < 0 { i + n } else { i };
                if !(0..n).contains(&j) {
                    return Err(out_of_range(i).into());
                }
                Ok(xs[j as usize].clone())
            }
            SV::N(_) => {
                // A chain of choices; out of range fails only if reached.
                let mut acc = SV::P(
                    RuntimeError::new("index out of range for the model list")
                        .with_hint(format!("valid indices are 0..{} and -{n}..-1", n - 1)),
                );
                for (j, x) in xs.into_iter().enumerate().rev() {
                    let j = j as i64;
                    let a = self.op(Op::Eq, vec![i.clone(), SV::K(Value::Int(j))])?;
                    let b = self.op(Op::Eq, vec![i.clone(), SV::K(Value::Int(j - n))])?;
                    let hit = self.op(Op::Or, vec![a, b])?;
                    acc = self.select(&hit, x, acc)?;
                }
                Ok(acc)
            }
            other => unsupported(format!("index {other:?}")),
        }
    }

    fn op(&mut self, op: Op, args: Vec<SV>) -> R<SV> {
        if let Some(e) = first_failure(&args) {
            return Ok(SV::P(e));
        }
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
            | Op::Len => super::lower_lists::list_op(self, op, args),
            Op::Randn | Op::Zeros | Op::Ones | Op::Load => {
                unsupported(format!("`{}` is available only in the REPL", op.name()))
            }
            _ => self.lift(op, &args),
        }
    }

    /// Applies an op per model when any argument is a list.
    fn lift(&mut self, op: Op, args: &[SV]) -> R<SV> {
        let n = args.iter().find_map(|a| match a {
            SV::L(l) => Some(l.len()),
            _ => None,
        });
        let Some(n) = n else {
            return self.elem(op, args, 0);
        };
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let row = args.iter().map(|a| item(a, i, n)).collect::<R<Vec<_>>>()?;
            out.push(self.elem(op, &row, i as u32)?);
        }
        Ok(SV::L(out))
    }

    /// One op on non-list values.
    pub(super) fn elem(&mut self, op: Op, args: &[SV], model: u32) -> R<SV> {
        if let Some(e) = first_failure(args) {
            return Ok(SV::P(e));
        }
        if args.iter().all(|a| matches!(a, SV::K(_))) && !needs_tensor(op) {
            let vals: Vec<Value> = args
                .iter()
                .map(|a| match a {
                    SV::K(v) => v.clone(),
                    _ => unreachable!(),
                })
                .collect();
            return Ok(SV::K(elem_op(op, &vals)?));
        }
        let tensors: Vec<Vec<usize>> = args
            .iter()
            .filter_map(|a| match a {
                SV::N(n) => self.ty(*n).shape().map(<[usize]>::to_vec),
                _ => None,
            })
            .collect();
        if tensors.is_empty() {
            return self.host(op, args);
        }
        super::lower_ops::tensor_op(self, op, args, &tensors, model)
    }

    /// A host scalar op on scalars, some data-dependent.
    fn host(&mut self, op: Op, args: &[SV]) -> R<SV> {
        let mut ids = Vec::new();
        let mut all_int = true;
        for a in args {
            let ty = self.sv_ty(a).or_else(|_| match a {
                SV::K(Value::Str(_)) => Ok(NTy::Scalar(STy::F32)),
                _ => unsupported("host op arg"),
            })?;
            all_int &= ty == NTy::Scalar(STy::Int);
            if let SV::K(Value::Str(_)) = a {
                return unsupported("a string operation on data-dependent values");
            }
            ids.push(self.node_of(a.clone(), &ty)?);
        }
        let ty = match op {
            Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::And | Op::Or | Op::Not => {
                STy::Bool
            }
            Op::ToInt => STy::Int,
            Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Neg
            | Op::Abs
            | Op::Sign
            | Op::Min
            | Op::Max
            | Op::Clamp
                if all_int =>
            {
                STy::Int
            }
            Op::Where => {
                let t = self.ty(ids[1]).clone();
                return Ok(SV::N(self.push(NodeOp::Host(op), ids, t)?));
            }
            _ => STy::F32,
        };
        Ok(SV::N(self.push(NodeOp::Host(op), ids, NTy::Scalar(ty))?))
    }

    // ---- helpers for the op files ----

    pub(super) fn node(&mut self, op: NodeOp, args: Vec<NodeId>, ty: NTy) -> R<NodeId> {
        self.push(op, args, ty)
    }
    pub(super) fn node_ty(&self, n: NodeId) -> NTy {
        self.ty(n).clone()
    }
    pub(super) fn shape_of(&self, n: NodeId) -> Option<Vec<usize>> {
        self.ty(n).shape().map(<[usize]>::to_vec)
    }
    /// A node for a scalar or tensor argument (numbers become f32 constants for kernels).
    pub(super) fn arg(&mut self, v: &SV) -> R<NodeId> {
        match v {
            SV::N(n) => Ok(*n),
            SV::K(x) => {
                let Some(f) = x.as_f32() else {
                    return unsupported(format!("{x:?} in a tensor operation"));
                };
                let s = match x {
                    Value::Int(i) => Scalar::Int(*i),
                    Value::Bool(b) => Scalar::Bool(*b),
                    _ => Scalar::F32(f),
                };
                self.push(NodeOp::Const(s), vec![], NTy::Scalar(s.ty()))
            }
            other => unsupported(format!("{other:?} in a tensor operation")),
        }
    }
    pub(super) fn un(&mut self, u: UnOp, a: NodeId) -> R<NodeId> {
        let ty = self.ty(a).clone();
        self.push(NodeOp::Un(u), vec![a], ty)
    }
    pub(super) fn bin(&mut self, b: BinOp, x: NodeId, y: NodeId) -> R<NodeId> {
        let ty = self.join(&[x, y])?;
        self.push(NodeOp::Bin(b), vec![x, y], ty)
    }
    /// The broadcast type of tensor/scalar nodes.
    pub(super) fn join(&self, ids: &[NodeId]) -> R<NTy> {
        let shapes: Vec<&[usize]> = ids.iter().filter_map(|&i| self.ty(i).shape()).collect();
        if shapes.is_empty() {
            return Ok(NTy::Scalar(STy::F32));
        }
        Ok(NTy::Tensor(broadcast_shapes(&shapes)?))
    }
    pub(super) fn reduce(&mut self, r: Red, args: Vec<NodeId>, domain: Vec<usize>) -> R<NodeId> {
        self.push(NodeOp::Reduce(r, domain), args, NTy::Scalar(STy::F64))
    }
    pub(super) fn h64(&mut self, h: H64, args: Vec<NodeId>) -> R<NodeId> {
        let ty = if matches!(h, H64::ToF32 | H64::Cos) {
            STy::F32
        } else {
            STy::F64
        };
        self.push(NodeOp::H64(h), args, NTy::Scalar(ty))
    }
    pub(super) fn pick(&mut self, c: &SV, a: SV, b: SV) -> R<SV> {
        self.select(c, a, b)
    }
}

/// Ops whose (first) argument must be a tensor; never folded on known values.
fn needs_tensor(op: Op) -> bool {
    matches!(
        op,
        Op::SumAll
            | Op::MeanAll
            | Op::MaxAll
            | Op::MinAll
            | Op::Norm
            | Op::Dot
            | Op::CosSim
            | Op::Std
            | Op::Quantile
            | Op::Numel
            | Op::Ndim
            | Op::Dim(_)
            | Op::TopkMask
            | Op::Ranks(_)
            | Op::Axis(..)
            | Op::Bernoulli(_)
            | Op::Uniform(_)
            | Op::ZerosLike
            | Op::OnesLike
            | Op::FullLike
    )
}

/// The first failed (speculated) argument: an op on it fails the same way.
fn first_failure(args: &[SV]) -> Option<RuntimeError> {
    args.iter().find_map(|a| match a {
        SV::P(e) => Some(e.clone()),
        _ => None,
    })
}

/// Element `i` of a list argument; non-lists stand for every element.
fn item(v: &SV, i: usize, n: usize) -> R<SV> {
    match v {
        SV::L(l) if l.len() == n => Ok(l[i].clone()),
        SV::L(l) => Err(RuntimeError::new(format!(
            "lists of different lengths: {} and {n}",
            l.len()
        ))
        .with_hint("per-model lists need one value per model")
        .into()),
        other => Ok(other.clone()),
    }
}

pub(super) type Sym = SV;
pub(super) type State<'a> = Lowerer<'a>;
