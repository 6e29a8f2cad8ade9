//! Builtins by target type: whole-tensor and list reductions, axis reductions,
//! constructors, integer facts, top-k masks and random masks.

use super::*;

const F32: GTy = GTy {
    elem: Elem::F32,
    list: false,
};

impl Gen {
    pub(super) fn whole(&mut self, t: GTy, b: usize) -> Expr {
        match self.rng.below(9) {
            0..=5 => {
                let f = *self
                    .rng
                    .pick(&["sum_all", "mean_all", "max_all", "min_all", "norm", "std"]);
                let x = self.any_tensor(t.list);
                call(f, vec![self.expr(x, b - 1)])
            }
            6 | 7 => {
                let fl = self.lift_flags(t.list, 2);
                let tys = [self.any_tensor(fl[0]), self.any_tensor(fl[1])];
                let f = *self.rng.pick(&["dot", "cos"]);
                call(f, self.exprs(&tys, b))
            }
            _ => {
                let fl = self.lift_flags(t.list, 2);
                let [b0, b1] = self.split(b, 2)[..] else {
                    unreachable!()
                };
                let xt = self.any_tensor(fl[0]);
                let x = self.expr(xt, b0);
                let q = self.fraction(fl[1], b1);
                call("quantile", vec![x, q])
            }
        }
    }

    pub(super) fn list_reduce(&mut self, t: GTy, b: usize) -> Option<Expr> {
        let (f, elem) = match t.elem {
            Elem::F32 => match self.rng.below(9) {
                0..=6 => (
                    *self
                        .rng
                        .pick(&["sum", "mean", "max", "min", "prod", "argmax", "argmin"]),
                    Elem::F32,
                ),
                7 => ("mean", Elem::Int),
                _ => ("count", Elem::Bool),
            },
            Elem::Int => (*self.rng.pick(&["sum", "max", "min", "prod"]), Elem::Int),
            Elem::Tensor(s) => match self.rng.below(10) {
                0..=6 => (
                    *self.rng.pick(&[
                        "sum", "mean", "max", "min", "prod", "argmax", "argmin", "sum", "mean",
                    ]),
                    Elem::Tensor(s),
                ),
                7 => (*self.rng.pick(&["sum", "mean"]), Elem::Mask(s)),
                _ => ("count", Elem::Mask(s)),
            },
            _ => return None,
        };
        let xs = self.expr(GTy::list(elem), b - 1);
        Some(call(f, vec![xs]))
    }

    /// An axis reduction (keepdim) giving the reduced shape `t`.
    pub(super) fn axis(&mut self, t: GTy, b: usize) -> Option<Expr> {
        let Elem::Tensor(Shape::Red(k0, k1)) = t.elem else {
            return None;
        };
        let mut options = Vec::new();
        if !k1 {
            // axis=-1 keeps dimension 0 as it is.
            let mut ins = vec![Shape::Red(k0, true), Shape::Red(k0, false)];
            if k0 {
                ins.push(Shape::Full);
            }
            options.push((-1, ins));
        }
        if !k0 {
            let mut ins = vec![Shape::Red(true, k1), Shape::Red(false, k1)];
            if k1 {
                ins.push(Shape::Full);
            }
            options.push((0, ins));
        }
        let (axis, ins) = options.swap_remove(self.rng.below(options.len()));
        let s_in = *self.rng.pick(&ins);
        let x = self.expr(
            GTy {
                elem: Elem::Tensor(s_in),
                list: t.list,
            },
            b - 1,
        );
        let f = *self
            .rng
            .pick(&["sum", "mean", "max", "min", "norm", "mean"]);
        let mut args = vec![pos(x), kw("axis", int(axis))];
        if self.rng.chance(0.2) {
            args.push(kw("keepdim", ex(ExprKind::Bool(true))));
        }
        Some(call_kw(f, args))
    }

    pub(super) fn like(&mut self, t: GTy, b: usize) -> Expr {
        match self.rng.below(5) {
            0 => {
                let x = self.expr(t, b - 1);
                let stream = int(self.rng.below(3) as i64);
                call_kw("uniform", vec![pos(x), kw("stream", stream)])
            }
            1 => call("uniform", vec![self.expr(t, b - 1)]),
            2 => {
                let f = *self.rng.pick(&["zeros_like", "ones_like"]);
                call(f, vec![self.expr(t, b - 1)])
            }
            _ => {
                let fl = self.lift_flags(t.list, 2);
                let tys = [t.with_list(fl[0]), F32.with_list(fl[1])];
                call("full_like", self.exprs(&tys, b))
            }
        }
    }

    pub(super) fn int_of(&mut self, t: GTy, b: usize) -> Expr {
        let x = self.any_tensor(t.list);
        match self.rng.below(5) {
            0 if !t.list => {
                let f = *self.rng.pick(&["layer", "n_layers"]);
                name(f)
            }
            1 if !t.list && self.can_list() => {
                let elem = *self.rng.pick(&[T_FULL, Elem::F32, Elem::Mask(Shape::Full)]);
                call("len", vec![self.expr(GTy::list(elem), b - 1)])
            }
            2 => {
                let axis = int(*self.rng.pick(&[0, -1]));
                call("dim", vec![self.expr(x, b - 1), axis])
            }
            3 => call("ndim", vec![self.expr(x, b - 1)]),
            _ => call("numel", vec![self.expr(x, b - 1)]),
        }
    }

    pub(super) fn topk(&mut self, t: GTy, b: usize) -> Option<Expr> {
        let Elem::Mask(s) = t.elem else { return None };
        let f = self.lift_flags(t.list, 2);
        let [b0, b1] = self.split(b, 2)[..] else {
            unreachable!()
        };
        let x = self.expr(
            GTy {
                elem: Elem::Tensor(s),
                list: f[0],
            },
            b0,
        );
        let mut args = vec![pos(x)];
        if !f[1] && self.rng.chance(0.2) {
            args.push(pos(int(self.rng.below(4) as i64)));
        } else {
            args.push(pos(self.fraction(f[1], b1)));
            if self.rng.chance(0.2) {
                args.push(kw("skip", flt(*self.rng.pick(&[0.0, 0.1, 0.05]))));
            }
        }
        Some(call_kw("topk_mask", args))
    }

    pub(super) fn bernoulli(&mut self, t: GTy, b: usize) -> Option<Expr> {
        let Elem::Mask(s) = t.elem else { return None };
        let f = self.lift_flags(t.list, 2);
        let [b0, b1] = self.split(b, 2)[..] else {
            unreachable!()
        };
        let x = self.expr(
            GTy {
                elem: Elem::Tensor(s),
                list: f[0],
            },
            b0,
        );
        let p = if self.rng.chance(0.2) {
            let ps = Elem::Tensor(self.sub_shape(s));
            let pe = self.expr(
                GTy {
                    elem: ps,
                    list: f[1],
                },
                b1,
            );
            call("sigmoid", vec![pe])
        } else {
            self.fraction(f[1], b1)
        };
        let mut args = vec![pos(x), pos(p)];
        if self.rng.chance(0.4) {
            args.push(kw("stream", int(self.rng.below(4) as i64)));
        }
        Some(call_kw("bernoulli", args))
    }
}
