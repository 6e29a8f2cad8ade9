//! The closed set of operations a checked program is made of. Matched
//! exhaustively by the interpreter (and later backends): adding one lists every
//! place to update.

/// Reductions along one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AxisOp {
    Sum,
    Mean,
    Max,
    Min,
    Norm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    // Elementwise (broadcasting; lifted over lists).
    Neg,
    Not,
    Abs,
    Sign,
    Sqrt,
    Exp,
    Log,
    Tanh,
    Sigmoid,
    Floor,
    Sin,
    Cos,
    Acos,
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Min,
    Max,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    Where,
    Clamp,
    Lerp,
    /// Truncating conversion of a scalar to an integer.
    ToInt,
    ToF32,
    // Over the model list.
    ListSum,
    ListMean,
    ListMax,
    ListMin,
    ListProd,
    ListCount,
    ListArgmax,
    ListArgmin,
    ListSoftmax,
    TakeMax,
    TakeMin,
    Len,
    // Whole tensor to scalar.
    SumAll,
    MeanAll,
    MaxAll,
    MinAll,
    Norm,
    Dot,
    CosSim,
    Std,
    Quantile,
    Numel,
    Ndim,
    Dim(i8),
    // Whole-tensor selections.
    /// `topk_mask(x, density_or_k, skip)`: by |x|, exact counts.
    TopkMask,
    /// Rank of each element along an axis (ascending, ties by position).
    Ranks(i8),
    // Along an axis.
    Axis(AxisOp, i8, bool),
    // Counter-based randomness keyed by (seed, tensor name, model index, stream).
    Bernoulli(u32),
    Uniform(u32),
    // Constructors.
    ZerosLike,
    OnesLike,
    FullLike,
    // Strings (tensor facts).
    StrEq,
    StrNe,
    Contains,
    StartsWith,
    EndsWith,
    // REPL only.
    Randn,
    Zeros,
    Ones,
    Load,
}

impl Op {
    /// Name used when printing typed trees.
    pub fn name(self) -> String {
        match self {
            Op::Dim(a) => format!("dim[{a}]"),
            Op::Ranks(a) => format!("ranks[{a}]"),
            Op::Axis(op, a, k) => {
                format!(
                    "{}[axis={a}{}]",
                    format!("{op:?}").to_lowercase(),
                    if k { "" } else { ",drop" }
                )
            }
            Op::Bernoulli(s) => format!("bernoulli[stream={s}]"),
            Op::Uniform(s) => format!("uniform[stream={s}]"),
            other => {
                let dbg = format!("{other:?}");
                let mut out = String::new();
                for (i, c) in dbg.chars().enumerate() {
                    if c.is_uppercase() && i > 0 {
                        out.push('_');
                    }
                    out.push(c.to_ascii_lowercase());
                }
                out
            }
        }
    }
}
