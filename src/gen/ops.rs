//! Operators and builtins by target type. Each returns `None` when it cannot
//! make a value of the requested type; the caller then tries another production.

use super::expr::P;
use super::*;

const F32: GTy = GTy {
    elem: Elem::F32,
    list: false,
};
const INT: GTy = GTy {
    elem: Elem::Int,
    list: false,
};

impl Gen {
    /// Which of `n` operands are lists: none for a scalar result, at least one for a list.
    pub(super) fn lift_flags(&mut self, list: bool, n: usize) -> Vec<bool> {
        if !list {
            return vec![false; n];
        }
        let mut f: Vec<bool> = (0..n).map(|_| self.rng.chance(0.4)).collect();
        let must = self.rng.below(n);
        f[must] = true;
        f
    }

    /// A shape that broadcasts into `s` without growing it.
    pub(super) fn sub_shape(&mut self, s: Shape) -> Shape {
        let subs: Vec<Shape> = Shape::ALL
            .iter()
            .copied()
            .filter(|x| x.or(s) == s)
            .collect();
        *self.rng.pick(&subs)
    }

    /// Operand types of an elementwise operation giving `t`: one operand has the
    /// result's element type, the others smaller shapes or scalars.
    fn operands(&mut self, t: GTy, n: usize) -> Vec<GTy> {
        let flags = self.lift_flags(t.list, n);
        let exact = self.rng.below(n);
        (0..n)
            .map(|i| {
                let elem = match t.elem {
                    Elem::Tensor(s) if i == exact => {
                        if self.rng.chance(0.1) {
                            Elem::Mask(s)
                        } else {
                            Elem::Tensor(s)
                        }
                    }
                    Elem::Tensor(s) | Elem::Mask(s) => {
                        if self.rng.chance(0.5) {
                            Elem::Tensor(self.sub_shape(s))
                        } else if self.rng.chance(0.8) {
                            Elem::F32
                        } else {
                            Elem::Int
                        }
                    }
                    Elem::F32 if i != exact && self.rng.chance(0.3) => Elem::Int,
                    e => e,
                };
                GTy {
                    elem,
                    list: flags[i],
                }
            })
            .collect()
    }

    pub(super) fn exprs(&mut self, tys: &[GTy], budget: usize) -> Vec<Expr> {
        let b = self.split(budget, tys.len());
        tys.iter().zip(b).map(|(t, b)| self.expr(*t, b)).collect()
    }

    /// `max(abs(b), 0.001)` or `abs(b) + 1.0`: a divisor away from zero.
    fn guard(&mut self, e: Expr) -> Expr {
        let a = call("abs", vec![e]);
        if self.rng.chance(0.5) {
            call("max", vec![a, flt(1e-3)])
        } else {
            bin(BinOp::Add, a, flt(1.0))
        }
    }

    /// A tensor of any shape (occasionally a mask), listed when `list`.
    pub(super) fn any_tensor(&mut self, list: bool) -> GTy {
        let s = *self.rng.pick(&Shape::ALL);
        let e = if self.rng.chance(0.1) {
            Elem::Mask(s)
        } else {
            Elem::Tensor(s)
        };
        GTy { elem: e, list }
    }

    /// A fraction in [0, 1]: a literal, or a generated f32 (clamped by the builtin).
    pub(super) fn fraction(&mut self, list: bool, budget: usize) -> Expr {
        if !list && self.rng.chance(0.5) {
            return flt(*self.rng.pick(&[0.1, 0.2, 0.5, 0.8, 0.9, 0.75]));
        }
        self.expr(F32.with_list(list), budget)
    }

    pub(super) fn op(&mut self, p: P, t: GTy, b: usize) -> Option<Expr> {
        let is_tensor = matches!(t.elem, Elem::Tensor(_));
        let floaty = is_tensor || t.elem == Elem::F32;
        Some(match p {
            P::Unary => self.unary(t, b)?,
            P::Arith | P::Div | P::Pow | P::MinMax | P::Clamp | P::Lerp => self.arith(p, t, b)?,
            P::Where if floaty => self.where_(t, b),
            P::Whole if t.elem == Elem::F32 => self.whole(t, b),
            P::ListReduce if !t.list => self.list_reduce(t, b)?,
            P::TakeBy if !t.list => self.take_by(t, b)?,
            P::Softmax if t.list && floaty => {
                let inner = if t.elem == Elem::F32 && self.rng.chance(0.2) {
                    GTy::list(Elem::Int)
                } else {
                    t
                };
                let x = self.expr(inner, b - 1);
                call("softmax", vec![x])
            }
            P::Axis => self.axis(t, b)?,
            P::Ranks if is_tensor => {
                let x = self.expr(t, b - 1);
                match self.rng.below(3) {
                    0 => call("ranks", vec![x]),
                    1 => call_kw("ranks", vec![pos(x), kw("axis", int(-1))]),
                    _ => call_kw("ranks", vec![pos(x), kw("axis", int(0))]),
                }
            }
            P::Like if is_tensor => self.like(t, b),
            P::IntOf if t.elem == Elem::Int => self.int_of(t, b),
            P::ToInt if t.elem == Elem::Int => {
                call("int", vec![self.expr(F32.with_list(t.list), b - 1)])
            }
            P::ToF32 if t.elem == Elem::F32 => {
                call("float", vec![self.expr(INT.with_list(t.list), b - 1)])
            }
            P::Compare => self.compare(t, b)?,
            P::Logic => self.logic(t, b)?,
            P::Not if matches!(t.elem, Elem::Bool | Elem::Mask(_)) => {
                un(UnOp::Not, self.expr(t, b - 1))
            }
            P::StrFact if t == GTy::one(Elem::Bool) => self.str_fact(),
            P::Topk => self.topk(t, b)?,
            P::Bernoulli => self.bernoulli(t, b)?,
            _ => return None,
        })
    }

    /// Arithmetic on numbers of type `t`: `+ - *`, a guarded division, a guarded
    /// power, `min`/`max`, `clamp` and `lerp`.
    fn arith(&mut self, p: P, t: GTy, b: usize) -> Option<Expr> {
        let floaty = matches!(t.elem, Elem::Tensor(_)) || t.elem == Elem::F32;
        Some(match p {
            P::Arith if floaty || t.elem == Elem::Int => {
                let tys = self.operands(t, 2);
                let [x, y] = <[Expr; 2]>::try_from(self.exprs(&tys, b)).ok()?;
                let op = *self
                    .rng
                    .pick(&[BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Add]);
                bin(op, x, y)
            }
            P::Div if floaty => {
                let tys = self.operands(t, 2);
                let [x, y] = <[Expr; 2]>::try_from(self.exprs(&tys, b)).ok()?;
                let y = self.guard(y);
                bin(BinOp::Div, x, y)
            }
            P::Pow if floaty => {
                let tys = self.operands(t, 2);
                let [x, y] = <[Expr; 2]>::try_from(self.exprs(&tys, b)).ok()?;
                let base = bin(BinOp::Add, call("abs", vec![x]), flt(1e-3));
                let e = call("clamp", vec![y, flt(-2.0), flt(2.0)]);
                if self.rng.chance(0.5) {
                    call("pow", vec![base, e])
                } else {
                    bin(BinOp::Pow, base, e)
                }
            }
            P::MinMax if floaty || t.elem == Elem::Int => {
                let tys = self.operands(t, 2);
                let f = *self.rng.pick(&["min", "max"]);
                call(f, self.exprs(&tys, b))
            }
            P::Clamp if floaty || t.elem == Elem::Int => {
                let tys = self.operands(t, 3);
                call("clamp", self.exprs(&tys, b))
            }
            P::Lerp if floaty => {
                let tys = self.operands(t, 3);
                call("lerp", self.exprs(&tys, b))
            }
            _ => return None,
        })
    }

    /// `take_max(keys, values)` or `take_min`, giving `t` (a tensor or an f32).
    fn take_by(&mut self, t: GTy, b: usize) -> Option<Expr> {
        let (k, v) = match t.elem {
            Elem::Tensor(s) => {
                let sub = Elem::Tensor(self.sub_shape(s));
                if self.rng.chance(0.5) {
                    (t.elem, sub)
                } else {
                    (sub, t.elem)
                }
            }
            Elem::F32 => (Elem::F32, Elem::F32),
            _ => return None,
        };
        let args = self.exprs(&[GTy::list(k), GTy::list(v)], b);
        let f = *self.rng.pick(&["take_max", "take_min"]);
        Some(call(f, args))
    }

    /// `and` or `or` giving `t` (a bool or a mask), one operand maybe of a smaller shape.
    fn logic(&mut self, t: GTy, b: usize) -> Option<Expr> {
        let other = match t.elem {
            Elem::Bool => Elem::Bool,
            Elem::Mask(s) if self.rng.chance(0.8) => Elem::Mask(self.sub_shape(s)),
            Elem::Mask(_) => Elem::Bool,
            _ => return None,
        };
        let f = self.lift_flags(t.list, 2);
        let mut tys = [
            t.with_list(f[0]),
            GTy {
                elem: other,
                list: f[1],
            },
        ];
        if self.rng.chance(0.5) {
            tys.swap(0, 1);
        }
        let [x, y] = <[Expr; 2]>::try_from(self.exprs(&tys, b)).ok()?;
        Some(bin(*self.rng.pick(&[BinOp::And, BinOp::Or]), x, y))
    }

    /// A test of the tensor's name or kind.
    fn str_fact(&mut self) -> Expr {
        match self.rng.below(6) {
            0 => bin(BinOp::Eq, name("kind"), string("mlp")),
            1 => bin(BinOp::Ne, name("kind"), string("norm")),
            2 => call("contains", vec![name("name"), string("mlp")]),
            3 => call("starts_with", vec![name("name"), string("model.")]),
            4 => call("ends_with", vec![name("name"), string(".weight")]),
            _ => bin(BinOp::Eq, name("kind"), string("attention")),
        }
    }

    fn unary(&mut self, t: GTy, b: usize) -> Option<Expr> {
        let arg_ty = match t.elem {
            Elem::Int => {
                let x = self.expr(t, b - 1);
                return Some(match self.rng.below(3) {
                    0 => call("abs", vec![x]),
                    1 => call("sign", vec![x]),
                    _ => un(UnOp::Neg, x),
                });
            }
            Elem::Tensor(s) if self.rng.chance(0.1) => t.elem_as(Elem::Mask(s)),
            Elem::Tensor(_) | Elem::F32 => t,
            _ => return None,
        };
        let x = self.expr(arg_ty, b - 1);
        let f = *self.rng.pick(&[
            "abs", "sign", "tanh", "sigmoid", "sin", "cos", "floor", "neg", "sqrt", "log", "exp",
            "acos",
        ]);
        Some(match f {
            "neg" => un(UnOp::Neg, x),
            "sqrt" => call("sqrt", vec![call("abs", vec![x])]),
            "log" => call(
                "log",
                vec![bin(BinOp::Add, call("abs", vec![x]), flt(1e-3))],
            ),
            "exp" => call("exp", vec![call("clamp", vec![x, flt(-10.0), flt(10.0)])]),
            "acos" => call("acos", vec![call("clamp", vec![x, flt(-1.0), flt(1.0)])]),
            f => call(f, vec![x]),
        })
    }

    fn where_(&mut self, t: GTy, b: usize) -> Expr {
        let f = self.lift_flags(t.list, 3);
        let (cond, a, c) = match t.elem {
            Elem::Tensor(s) => {
                let exact = self.rng.below(3);
                let cond = if exact == 0 {
                    Elem::Mask(s)
                } else if self.rng.chance(0.8) {
                    Elem::Mask(self.sub_shape(s))
                } else {
                    Elem::Bool
                };
                let value = |g: &mut Gen, i: usize| {
                    if i == exact {
                        Elem::Tensor(s)
                    } else if g.rng.chance(0.5) {
                        Elem::Tensor(g.sub_shape(s))
                    } else {
                        Elem::F32
                    }
                };
                (cond, value(self, 1), value(self, 2))
            }
            _ => (Elem::Bool, Elem::F32, Elem::F32),
        };
        let tys = [
            GTy {
                elem: cond,
                list: f[0],
            },
            GTy {
                elem: a,
                list: f[1],
            },
            GTy {
                elem: c,
                list: f[2],
            },
        ];
        call("where", self.exprs(&tys, b))
    }

    fn compare(&mut self, t: GTy, b: usize) -> Option<Expr> {
        let op = *self.rng.pick(&[
            BinOp::Lt,
            BinOp::Le,
            BinOp::Gt,
            BinOp::Ge,
            BinOp::Eq,
            BinOp::Ne,
            BinOp::Gt,
        ]);
        let tys = match t.elem {
            Elem::Bool => {
                let f = self.lift_flags(t.list, 2);
                let pick = |g: &mut Gen, l| {
                    let e = if g.rng.chance(0.7) {
                        Elem::F32
                    } else {
                        Elem::Int
                    };
                    GTy { elem: e, list: l }
                };
                vec![pick(self, f[0]), pick(self, f[1])]
            }
            Elem::Mask(s) => self.operands(
                GTy {
                    elem: Elem::Tensor(s),
                    list: t.list,
                },
                2,
            ),
            _ => return None,
        };
        let [x, y] = <[Expr; 2]>::try_from(self.exprs(&tys, b)).ok()?;
        Some(bin(op, x, y))
    }
}

impl GTy {
    fn elem_as(self, elem: Elem) -> GTy {
        GTy { elem, ..self }
    }
}
