//! The builtin table: every function the language knows, with its parameters,
//! signatures and one line of documentation. The checker types calls from it and
//! `docs/language.md` and `mergec methods`' reference card are generated from it,
//! so they cannot drift.

use super::ops::{AxisOp, Op};
pub use crate::syntax::forms::scoped::Kinds;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub optional: bool,
}

const fn req(name: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        optional: false,
    }
}
const fn opt(name: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        optional: true,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Elementwise,
    Models,
    Whole,
    Axis,
    Random,
    Construct,
    Control,
    Strings,
    Repl,
}

impl Group {
    pub fn title(self) -> &'static str {
        match self {
            Group::Elementwise => "Elementwise (broadcasting; applied to every model of a list)",
            Group::Models => "Across the model list (per element)",
            Group::Whole => "Over a whole tensor (one value per tensor)",
            Group::Axis => "Along an axis (the axis is kept, size 1, unless keepdim=false)",
            Group::Random => {
                "Randomness (deterministic from seed, tensor name, model index, stream)"
            }
            Group::Construct => "Constructors and conversions",
            Group::Control => "Control",
            Group::Strings => "Strings (tensor facts)",
            Group::Repl => "REPL only",
        }
    }
}

/// How the checker types a call; see `calls.rs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    Unary(Op),
    Binary(Op),
    MinMax(Op, Op, AxisOp),
    SumMean(Op, AxisOp),
    Norm,
    Cos,
    ListReduce(Op),
    Softmax,
    TakeBy(Op),
    Len,
    Where,
    Clamp,
    Lerp,
    Whole(Op),
    Whole2(Op),
    Quantile,
    TopkMask,
    Ranks,
    Numel,
    Ndim,
    DimOf,
    Bernoulli,
    Uniform,
    Like(Op),
    FullLike,
    StrPred(Op),
    ToInt,
    ToF32,
    Fold,
    Repeat,
    ReplShape(Op),
    Load,
}

#[derive(Clone, Copy, Debug)]
pub struct Builtin {
    pub name: &'static str,
    pub params: &'static [ParamSpec],
    /// One line per accepted form, as written in docs.
    pub sigs: &'static [&'static str],
    pub doc: &'static str,
    pub group: Group,
    pub rule: Rule,
}

impl Builtin {
    pub fn repl_only(&self) -> bool {
        self.group == Group::Repl
    }

    /// The kinds of value a call of it can give, whatever its arguments (for the
    /// grammar of guided decoding): calls over a list give a list (`abs(models)`,
    /// `sum_all(models)`).
    pub fn gives(&self) -> Kinds {
        const ANY: Kinds = Kinds::new(true, true, true);
        match self.rule {
            Rule::Softmax => Kinds::new(false, false, true),
            Rule::Len | Rule::StrPred(_) | Rule::ToInt | Rule::ToF32 => {
                Kinds::new(true, false, false)
            }
            Rule::Whole(_)
            | Rule::Whole2(_)
            | Rule::Quantile
            | Rule::Numel
            | Rule::Ndim
            | Rule::DimOf => Kinds::new(true, false, true),
            Rule::ListReduce(_) | Rule::TakeBy(_) | Rule::SumMean(..) | Rule::Norm => {
                Kinds::new(false, true, true)
            }
            Rule::TopkMask
            | Rule::Ranks
            | Rule::Bernoulli
            | Rule::Uniform
            | Rule::Like(_)
            | Rule::FullLike => Kinds::new(false, true, true),
            Rule::ReplShape(_) | Rule::Load => Kinds::new(false, true, false),
            _ => ANY,
        }
    }

    /// The kinds of value its first argument may have (for the grammar of guided
    /// decoding): a list for functions across the model list (`sum(x, axis=i)` also
    /// takes a tensor), a tensor or a list for functions of a whole tensor.
    pub fn wants(&self) -> Kinds {
        match self.rule {
            Rule::ListReduce(_) | Rule::Softmax | Rule::TakeBy(_) | Rule::Len | Rule::Fold => {
                Kinds::new(false, false, true)
            }
            Rule::SumMean(..)
            | Rule::Whole(_)
            | Rule::Whole2(_)
            | Rule::Quantile
            | Rule::TopkMask
            | Rule::Ranks
            | Rule::Numel
            | Rule::Ndim
            | Rule::DimOf
            | Rule::Bernoulli
            | Rule::Uniform
            | Rule::Like(_)
            | Rule::FullLike
            | Rule::Norm => Kinds::new(false, true, true),
            _ => Kinds::new(true, true, true),
        }
    }
}

macro_rules! b {
    ($name:expr, [$($p:expr),*], [$($s:expr),+], $doc:expr, $group:ident, $rule:expr) => {
        Builtin { name: $name, params: &[$($p),*], sigs: &[$($s),+], doc: $doc, group: Group::$group, rule: $rule }
    };
}

const X: ParamSpec = req("x");
const A: ParamSpec = req("a");
const AXIS: ParamSpec = opt("axis");
const KEEPDIM: ParamSpec = opt("keepdim");

pub static BUILTINS: &[Builtin] = &[
    b!(
        "abs",
        [X],
        ["abs(x) -> same"],
        "absolute value",
        Elementwise,
        Rule::Unary(Op::Abs)
    ),
    b!(
        "sign",
        [X],
        ["sign(x) -> same"],
        "-1, 0 or 1 (zeros and NaN are kept)",
        Elementwise,
        Rule::Unary(Op::Sign)
    ),
    b!(
        "sqrt",
        [X],
        ["sqrt(x) -> same"],
        "square root (NaN below 0)",
        Elementwise,
        Rule::Unary(Op::Sqrt)
    ),
    b!(
        "exp",
        [X],
        ["exp(x) -> same"],
        "e to the x",
        Elementwise,
        Rule::Unary(Op::Exp)
    ),
    b!(
        "log",
        [X],
        ["log(x) -> same"],
        "natural logarithm",
        Elementwise,
        Rule::Unary(Op::Log)
    ),
    b!(
        "tanh",
        [X],
        ["tanh(x) -> same"],
        "hyperbolic tangent",
        Elementwise,
        Rule::Unary(Op::Tanh)
    ),
    b!(
        "sigmoid",
        [X],
        ["sigmoid(x) -> same"],
        "1 / (1 + exp(-x))",
        Elementwise,
        Rule::Unary(Op::Sigmoid)
    ),
    b!(
        "floor",
        [X],
        ["floor(x) -> same"],
        "round down to a whole number (still f32)",
        Elementwise,
        Rule::Unary(Op::Floor)
    ),
    b!(
        "sin",
        [X],
        ["sin(x) -> same"],
        "sine (radians)",
        Elementwise,
        Rule::Unary(Op::Sin)
    ),
    b!(
        "acos",
        [X],
        ["acos(x) -> same"],
        "arc cosine (NaN outside [-1, 1])",
        Elementwise,
        Rule::Unary(Op::Acos)
    ),
    b!(
        "cos",
        [A, opt("b")],
        ["cos(x) -> same", "cos(a: Tensor, b: Tensor) -> f32"],
        "one argument: cosine (radians); two: cosine similarity of two whole tensors (0 if either is all zeros)",
        Elementwise,
        Rule::Cos
    ),
    b!(
        "pow",
        [X, req("y")],
        ["pow(x, y) -> broadcast"],
        "x to the power y (also written x ** y)",
        Elementwise,
        Rule::Binary(Op::Pow)
    ),
    b!(
        "min",
        [A, opt("b"), AXIS, KEEPDIM],
        [
            "min(a, b) -> broadcast",
            "min(xs: [T]) -> T",
            "min(x, axis=i, keepdim=true) -> Tensor"
        ],
        "smaller of two (NaN wins); per element over the model list; or along an axis",
        Elementwise,
        Rule::MinMax(Op::Min, Op::ListMin, AxisOp::Min)
    ),
    b!(
        "max",
        [A, opt("b"), AXIS, KEEPDIM],
        [
            "max(a, b) -> broadcast",
            "max(xs: [T]) -> T",
            "max(x, axis=i, keepdim=true) -> Tensor"
        ],
        "larger of two (NaN wins); per element over the model list; or along an axis",
        Elementwise,
        Rule::MinMax(Op::Max, Op::ListMax, AxisOp::Max)
    ),
    b!(
        "clamp",
        [X, req("lo"), req("hi")],
        ["clamp(x, lo, hi) -> broadcast"],
        "min(max(x, lo), hi)",
        Elementwise,
        Rule::Clamp
    ),
    b!(
        "where",
        [req("cond"), A, req("b")],
        ["where(cond: Mask, a, b) -> broadcast"],
        "a where cond holds, else b",
        Elementwise,
        Rule::Where
    ),
    b!(
        "lerp",
        [A, req("b"), req("t")],
        ["lerp(a, b, t) -> broadcast"],
        "a + t * (b - a)",
        Elementwise,
        Rule::Lerp
    ),
    b!(
        "sum",
        [X, AXIS, KEEPDIM],
        [
            "sum(xs: [T]) -> T",
            "sum(x, axis=i, keepdim=true) -> Tensor"
        ],
        "add over the model list (in order); or along an axis",
        Models,
        Rule::SumMean(Op::ListSum, AxisOp::Sum)
    ),
    b!(
        "mean",
        [X, AXIS, KEEPDIM],
        [
            "mean(xs: [T]) -> T",
            "mean(x, axis=i, keepdim=true) -> Tensor"
        ],
        "average over the model list; or along an axis",
        Models,
        Rule::SumMean(Op::ListMean, AxisOp::Mean)
    ),
    b!(
        "prod",
        [req("xs")],
        ["prod(xs: [T]) -> T"],
        "multiply over the model list",
        Models,
        Rule::ListReduce(Op::ListProd)
    ),
    b!(
        "count",
        [req("xs")],
        ["count(xs: [Mask]) -> Tensor"],
        "how many models' masks hold, per element",
        Models,
        Rule::ListReduce(Op::ListCount)
    ),
    b!(
        "argmax",
        [req("xs")],
        ["argmax(xs: [T]) -> T"],
        "index of the model with the largest value (first on ties)",
        Models,
        Rule::ListReduce(Op::ListArgmax)
    ),
    b!(
        "argmin",
        [req("xs")],
        ["argmin(xs: [T]) -> T"],
        "index of the model with the smallest value (first on ties)",
        Models,
        Rule::ListReduce(Op::ListArgmin)
    ),
    b!(
        "softmax",
        [req("xs")],
        ["softmax(xs: [T]) -> [T]"],
        "softmax across the model list, per element",
        Models,
        Rule::Softmax
    ),
    b!(
        "take_max",
        [req("keys"), req("values")],
        ["take_max(keys: [T], values: [T]) -> T"],
        "per element, the value of the model whose key is largest (first on ties)",
        Models,
        Rule::TakeBy(Op::TakeMax)
    ),
    b!(
        "take_min",
        [req("keys"), req("values")],
        ["take_min(keys: [T], values: [T]) -> T"],
        "per element, the value of the model whose key is smallest (first on ties)",
        Models,
        Rule::TakeBy(Op::TakeMin)
    ),
    b!(
        "len",
        [req("xs")],
        ["len(xs: [T]) -> int"],
        "number of models",
        Models,
        Rule::Len
    ),
    b!(
        "sum_all",
        [X],
        ["sum_all(x: Tensor) -> f32"],
        "sum of every element",
        Whole,
        Rule::Whole(Op::SumAll)
    ),
    b!(
        "mean_all",
        [X],
        ["mean_all(x: Tensor) -> f32"],
        "mean of every element",
        Whole,
        Rule::Whole(Op::MeanAll)
    ),
    b!(
        "max_all",
        [X],
        ["max_all(x: Tensor) -> f32"],
        "largest element",
        Whole,
        Rule::Whole(Op::MaxAll)
    ),
    b!(
        "min_all",
        [X],
        ["min_all(x: Tensor) -> f32"],
        "smallest element",
        Whole,
        Rule::Whole(Op::MinAll)
    ),
    b!(
        "norm",
        [X, AXIS, KEEPDIM],
        [
            "norm(x: Tensor) -> f32",
            "norm(x, axis=i, keepdim=true) -> Tensor"
        ],
        "L2 (Frobenius) norm of the whole tensor; or along an axis",
        Whole,
        Rule::Norm
    ),
    b!(
        "std",
        [X],
        ["std(x: Tensor) -> f32"],
        "population standard deviation of every element",
        Whole,
        Rule::Whole(Op::Std)
    ),
    b!(
        "dot",
        [A, req("b")],
        ["dot(a: Tensor, b: Tensor) -> f32"],
        "sum of a * b over every element",
        Whole,
        Rule::Whole2(Op::Dot)
    ),
    b!(
        "quantile",
        [X, req("q")],
        ["quantile(x: Tensor, q: f32) -> f32"],
        "q-th quantile of the elements, linear interpolation (q clamped to [0, 1])",
        Whole,
        Rule::Quantile
    ),
    b!(
        "topk_mask",
        [X, req("density"), opt("skip")],
        [
            "topk_mask(x: Tensor, density: f32, skip=0.0) -> Mask",
            "topk_mask(x: Tensor, k: int) -> Mask"
        ],
        "exactly floor(density*numel) (or k) largest |x| (ties: lower index first), after skipping the floor(skip*numel) largest",
        Whole,
        Rule::TopkMask
    ),
    b!(
        "ranks",
        [X, AXIS],
        ["ranks(x: Tensor, axis=-1) -> Tensor"],
        "0-based rank of each element along the axis, ascending (ties: lower index first)",
        Whole,
        Rule::Ranks
    ),
    b!(
        "numel",
        [X],
        ["numel(x: Tensor) -> int"],
        "number of elements",
        Whole,
        Rule::Numel
    ),
    b!(
        "ndim",
        [X],
        ["ndim(x: Tensor) -> int"],
        "number of dimensions",
        Whole,
        Rule::Ndim
    ),
    b!(
        "dim",
        [X, req("axis")],
        ["dim(x: Tensor, axis: int) -> int"],
        "size of one dimension",
        Whole,
        Rule::DimOf
    ),
    b!(
        "bernoulli",
        [X, req("p"), opt("stream")],
        ["bernoulli(x: Tensor, p, stream=0) -> Mask"],
        "random mask shaped like x, true with probability p (p may be a tensor)",
        Random,
        Rule::Bernoulli
    ),
    b!(
        "uniform",
        [X, opt("stream")],
        ["uniform(x: Tensor, stream=0) -> Tensor"],
        "random values in [0, 1) shaped like x",
        Random,
        Rule::Uniform
    ),
    b!(
        "zeros_like",
        [X],
        ["zeros_like(x: Tensor) -> Tensor"],
        "zeros shaped like x",
        Construct,
        Rule::Like(Op::ZerosLike)
    ),
    b!(
        "ones_like",
        [X],
        ["ones_like(x: Tensor) -> Tensor"],
        "ones shaped like x",
        Construct,
        Rule::Like(Op::OnesLike)
    ),
    b!(
        "full_like",
        [X, req("value")],
        ["full_like(x: Tensor, value: f32) -> Tensor"],
        "value everywhere, shaped like x",
        Construct,
        Rule::FullLike
    ),
    b!(
        "int",
        [X],
        ["int(x: f32) -> int"],
        "truncate a scalar toward zero",
        Construct,
        Rule::ToInt
    ),
    b!(
        "float",
        [X],
        ["float(x: int) -> f32"],
        "an int as f32",
        Construct,
        Rule::ToF32
    ),
    b!(
        "fold",
        [req("xs"), opt("init"), req("f")],
        [
            "fold(xs: [T], |acc, x| ...) -> T",
            "fold(xs: [T], init, |acc, x, i| ...) -> type of init"
        ],
        "left fold in model order; without init the first model starts it; i is the model index",
        Control,
        Rule::Fold
    ),
    b!(
        "repeat",
        [req("n"), req("init"), req("f")],
        ["repeat(n: int, init, |acc, i| ...) -> type of init"],
        "apply f n times (n at most 64 unless set at run time, at most 1000)",
        Control,
        Rule::Repeat
    ),
    b!(
        "contains",
        [req("s"), req("sub")],
        ["contains(s: str, sub: str) -> bool"],
        "sub occurs in s",
        Strings,
        Rule::StrPred(Op::Contains)
    ),
    b!(
        "starts_with",
        [req("s"), req("prefix")],
        ["starts_with(s: str, prefix: str) -> bool"],
        "s begins with prefix",
        Strings,
        Rule::StrPred(Op::StartsWith)
    ),
    b!(
        "ends_with",
        [req("s"), req("suffix")],
        ["ends_with(s: str, suffix: str) -> bool"],
        "s ends with suffix",
        Strings,
        Rule::StrPred(Op::EndsWith)
    ),
    b!(
        "randn",
        [],
        ["randn(d0, d1, ...) -> Tensor"],
        "standard normal values (seeded; each call draws new ones)",
        Repl,
        Rule::ReplShape(Op::Randn)
    ),
    b!(
        "zeros",
        [],
        ["zeros(d0, d1, ...) -> Tensor"],
        "zeros of the given shape",
        Repl,
        Rule::ReplShape(Op::Zeros)
    ),
    b!(
        "ones",
        [],
        ["ones(d0, d1, ...) -> Tensor"],
        "ones of the given shape",
        Repl,
        Rule::ReplShape(Op::Ones)
    ),
    b!(
        "load",
        [req("path"), req("tensor")],
        ["load(path: str, tensor: str) -> Tensor"],
        "a tensor from a .safetensors file or a model directory (f32, f16, bf16)",
        Repl,
        Rule::Load
    ),
];

pub fn lookup(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// The operators, for the reference card.
pub static OPERATORS: &[(&str, &str)] = &[
    (
        "a + b, a - b, a * b, a / b",
        "elementwise arithmetic; lists apply per model, scalars and axes broadcast (NumPy rules)",
    ),
    (
        "a ** b",
        "power (right-associative, binds tighter than unary minus)",
    ),
    ("-a", "negation"),
    (
        "a == b, a != b, a < b, a <= b, a > b, a >= b",
        "comparisons; give a Mask for tensors, bool for scalars; do not chain",
    ),
    (
        "a and b, a or b, not a  (also &&, ||, !)",
        "logic on masks and bools",
    ),
    (
        "xs[i]",
        "the i-th element of a list (negative counts from the end)",
    ),
    (
        "if c { a } else { b }",
        "choose by a scalar bool (or per model, by a [bool])",
    ),
    ("{ let y = ...; expr }", "a block with local bindings"),
    (
        "|acc, x| expr",
        "a lambda, only as the last argument of fold and repeat",
    ),
];
