//! Expressions by target type: dispatch, leaves, and control constructs
//! (`if`, blocks, `fold`, `repeat`, indexing, helper calls). Operators and
//! builtins are in `ops.rs`.

use super::*;

/// The productions an expression can be made by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum P {
    If,
    Block,
    Repeat,
    Fold,
    Index,
    Call,
    Unary,
    Arith,
    Div,
    Pow,
    MinMax,
    Clamp,
    Lerp,
    Where,
    Whole,
    ListReduce,
    TakeBy,
    Softmax,
    Axis,
    Ranks,
    Like,
    IntOf,
    ToInt,
    ToF32,
    Compare,
    Logic,
    Not,
    StrFact,
    Topk,
    Bernoulli,
}

impl Gen {
    /// Whether list values can be made in this scope (a list over the models is in scope).
    pub(super) fn can_list(&self) -> bool {
        self.scope.iter().any(|v| {
            v.ty.list && matches!(v.ty.elem, Elem::Tensor(Shape::Full) | Elem::F32 | Elem::Int)
        })
    }

    /// A variable of exactly type `t`, preferring recent ones.
    fn var_of(&mut self, t: GTy) -> Option<Expr> {
        let names: Vec<usize> = (0..self.scope.len())
            .filter(|&i| self.scope[i].ty == t)
            .collect();
        if names.is_empty() {
            return None;
        }
        let k = names.len();
        let i = if self.rng.chance(0.5) {
            names[k - 1 - self.rng.below(k.min(3))]
        } else {
            names[self.rng.below(k)]
        };
        Some(name(&self.scope[i].name))
    }

    /// A tensor shaped like the base (`base` in a merge, `x` in a helper).
    pub(super) fn full_tensor(&mut self) -> Expr {
        self.var_of(GTy::one(T_FULL))
            .unwrap_or_else(|| name("base"))
    }

    /// A list of tensors shaped like the base: `models`, a tensor-list parameter,
    /// or a per-model number list spread over a tensor.
    pub(super) fn list_base(&mut self) -> Expr {
        if let Some(v) = self.var_of(GTy::list(T_FULL))
            && self.rng.chance(0.8)
        {
            return v;
        }
        let nums: Vec<String> = self
            .scope
            .iter()
            .filter(|v| v.ty.list && matches!(v.ty.elem, Elem::F32 | Elem::Int))
            .map(|v| v.name.clone())
            .collect();
        if nums.is_empty() {
            return self
                .var_of(GTy::list(T_FULL))
                .unwrap_or_else(|| name("models"));
        }
        let n = nums[self.rng.below(nums.len())].clone();
        let x = self.full_tensor();
        call("full_like", vec![x, name(&n)])
    }

    /// `e` (shaped like the base) reduced to shape `s` with keepdim means.
    pub(super) fn reduce_to(&mut self, e: Expr, s: Shape) -> Expr {
        let mean = |e: Expr, axis: i64| call_kw("mean", vec![pos(e), kw("axis", int(axis))]);
        match s {
            Shape::Full => e,
            Shape::Red(true, false) => mean(e, -1),
            Shape::Red(false, true) => mean(e, 0),
            Shape::Red(false, false) => mean(mean(e, 0), -1),
            Shape::Red(true, true) => bin(BinOp::Add, mean(e.clone(), -1), mean(e, 0)),
        }
    }

    pub(super) fn f32_lit(&mut self) -> Expr {
        flt(*self
            .rng
            .pick(&[0.5, 1.0, 0.1, 2.0, 0.0, 0.25, 1e-3, -1.0, 0.9, 3.0]))
    }

    /// A small expression of type `t`.
    pub(super) fn leaf(&mut self, t: GTy) -> Expr {
        if self.rng.chance(0.7)
            && let Some(v) = self.var_of(t)
        {
            return v;
        }
        if t.list {
            let b = self.list_base();
            return match t.elem {
                Elem::Tensor(s) => self.reduce_to(b, s),
                Elem::Mask(s) => bin(BinOp::Gt, self.reduce_to(b, s), flt(0.0)),
                Elem::F32 => call("mean_all", vec![b]),
                Elem::Int => call("numel", vec![b]),
                Elem::Bool => bin(BinOp::Gt, call("mean_all", vec![b]), flt(0.0)),
            };
        }
        match t.elem {
            Elem::Int => match self.rng.below(5) {
                0 => name("layer"),
                1 => name("n_layers"),
                2 if self.can_list() => {
                    let b = self.list_base();
                    call("len", vec![b])
                }
                _ => int(self.rng.below(4) as i64),
            },
            Elem::F32 => self.f32_lit(),
            Elem::Bool => match self.rng.below(3) {
                0 => bin(BinOp::Eq, name("kind"), string("mlp")),
                _ => ex(ExprKind::Bool(self.rng.chance(0.5))),
            },
            Elem::Tensor(s) => {
                let f = self.full_tensor();
                self.reduce_to(f, s)
            }
            Elem::Mask(s) => {
                let f = self.full_tensor();
                bin(BinOp::Gt, self.reduce_to(f, s), flt(0.0))
            }
        }
    }

    /// An expression of exactly type `t`, of about `budget` nodes.
    pub(super) fn expr(&mut self, t: GTy, budget: usize) -> Expr {
        if budget <= 1 || self.depth >= MAX_DEPTH {
            return self.leaf(t);
        }
        self.depth += 1;
        let table = self.productions(t);
        let total: u32 = table.iter().map(|(_, w)| w).sum();
        let mut out = None;
        for _ in 0..6 {
            let mut r = self.rng.below(total as usize) as u32;
            let mut choice = table[0].0;
            for &(p, w) in &table {
                if r < w {
                    choice = p;
                    break;
                }
                r -= w;
            }
            out = self.production(choice, t, budget);
            if out.is_some() {
                break;
            }
        }
        self.depth -= 1;
        out.unwrap_or_else(|| self.leaf(t))
    }

    /// The productions that can make a value of type `t` here, with weights.
    fn productions(&self, t: GTy) -> Vec<(P, u32)> {
        let lists = self.can_list();
        let one = !t.list;
        // Loops nest at most two deep, so programs stay inside the cost bound.
        let loops = self.loops < 2;
        let mut v = vec![(P::If, 3), (P::Block, 1)];
        if loops {
            v.push((P::Repeat, 1));
        }
        if one && loops {
            v.push((P::Fold, 2));
        }
        if one && lists {
            v.push((P::Index, 2));
        }
        if self.calls_left > 0 && self.helpers.iter().any(|h| self.callable(h, t)) {
            v.push((P::Call, 4));
        }
        let both = |v: &mut Vec<(P, u32)>, items: &[(P, u32)]| v.extend_from_slice(items);
        match t.elem {
            Elem::F32 => {
                both(
                    &mut v,
                    &[(P::Unary, 5), (P::Arith, 6), (P::Div, 2), (P::Pow, 1)],
                );
                both(
                    &mut v,
                    &[(P::MinMax, 1), (P::Clamp, 1), (P::Lerp, 1), (P::Where, 1)],
                );
                both(&mut v, &[(P::Whole, 5), (P::ToF32, 1)]);
                if one && lists {
                    both(&mut v, &[(P::ListReduce, 3), (P::TakeBy, 1)]);
                }
                if !one {
                    v.push((P::Softmax, 2));
                }
            }
            Elem::Int => {
                both(&mut v, &[(P::Arith, 4), (P::Unary, 1), (P::MinMax, 1)]);
                both(&mut v, &[(P::Clamp, 1), (P::IntOf, 3), (P::ToInt, 1)]);
                if one && lists {
                    v.push((P::ListReduce, 1));
                }
            }
            Elem::Bool => {
                both(&mut v, &[(P::Compare, 6), (P::Logic, 3), (P::Not, 1)]);
                if one {
                    v.push((P::StrFact, 2));
                }
            }
            Elem::Tensor(s) => {
                both(
                    &mut v,
                    &[(P::Unary, 5), (P::Arith, 8), (P::Div, 2), (P::Pow, 1)],
                );
                both(
                    &mut v,
                    &[(P::MinMax, 1), (P::Clamp, 1), (P::Lerp, 1), (P::Where, 3)],
                );
                both(&mut v, &[(P::Ranks, 1), (P::Like, 2)]);
                if one && lists {
                    both(&mut v, &[(P::ListReduce, 4), (P::TakeBy, 1)]);
                }
                if !one {
                    v.push((P::Softmax, 2));
                }
                if s != Shape::Full && s != Shape::Red(true, true) {
                    v.push((P::Axis, 4));
                }
            }
            Elem::Mask(_) => {
                both(&mut v, &[(P::Compare, 6), (P::Logic, 2), (P::Not, 1)]);
                both(&mut v, &[(P::Topk, 2), (P::Bernoulli, 2)]);
            }
        }
        v
    }

    fn production(&mut self, p: P, t: GTy, b: usize) -> Option<Expr> {
        match p {
            P::If => Some(self.if_expr(t, b)),
            P::Block => Some(self.block_expr(t, b)),
            P::Repeat => Some(self.repeat(t, b)),
            P::Fold => Some(self.fold(t, b)),
            P::Index => Some(self.index(t, b)),
            P::Call => self.helper_call(t, b),
            _ => self.op(p, t, b),
        }
    }

    /// Splits `budget - 1` nodes among `n` children (each at least 1).
    pub(super) fn split(&mut self, budget: usize, n: usize) -> Vec<usize> {
        let total = budget.saturating_sub(1).max(n) as u64;
        let w: Vec<u64> = (0..n).map(|_| 1 + self.rng.below(4) as u64).collect();
        let sum: u64 = w.iter().sum();
        w.iter()
            .map(|x| ((total * x / sum) as usize).max(1))
            .collect()
    }

    /// A scalar bool condition for `if`.
    pub(super) fn cond(&mut self, budget: usize) -> Expr {
        let t = GTy::one(Elem::Bool);
        if budget <= 1 || self.depth >= MAX_DEPTH {
            return self.leaf(t);
        }
        self.depth += 1;
        let p = *self
            .rng
            .pick(&[P::Compare, P::Compare, P::Logic, P::Not, P::StrFact]);
        let e = self.op(p, t, budget);
        self.depth -= 1;
        e.unwrap_or_else(|| self.leaf(t))
    }

    fn branch(&mut self, t: GTy, budget: usize) -> BlockExpr {
        if budget > 4 && self.rng.chance(0.2) {
            let [b0, b1] = self.split(budget, 2)[..] else {
                unreachable!()
            };
            let (stmt, n) = self.local_let(b0);
            let value = self.expr(t, b1);
            self.pop_to(n);
            block(vec![stmt], value)
        } else {
            let value = self.expr(t, budget);
            block(Vec::new(), value)
        }
    }

    /// A `let` of a random type, bound in scope; returns the scope length before it.
    fn local_let(&mut self, budget: usize) -> (Stmt, usize) {
        let t = self.let_type();
        let value = self.expr(t, budget);
        let n = self.scope.len();
        let v = self.fresh("q");
        self.bind(&v, t);
        (let_stmt(&v, None, value), n)
    }

    fn pop_to(&mut self, n: usize) {
        self.scope.truncate(n);
    }

    fn if_expr(&mut self, t: GTy, budget: usize) -> Expr {
        let [b0, b1, b2] = self.split(budget, 3)[..] else {
            unreachable!()
        };
        let (cond, ta, tb) = if t.list && self.rng.chance(0.4) {
            // Per model: a [bool] condition picks between the branches model by model.
            let c = self.expr(GTy::list(Elem::Bool), b0);
            let ta = t.with_list(self.rng.chance(0.5));
            let tb = t.with_list(self.rng.chance(0.5));
            (c, ta, tb)
        } else {
            (self.cond(b0), t, t)
        };
        let then = self.branch(ta, b1);
        let els = if self.rng.chance(0.15) && b2 > 3 {
            // `else if`
            let e = self.if_expr(tb, b2);
            block(Vec::new(), e)
        } else {
            self.branch(tb, b2)
        };
        ex(ExprKind::If {
            cond: Box::new(cond),
            then,
            els,
        })
    }

    fn block_expr(&mut self, t: GTy, budget: usize) -> Expr {
        let [b0, b1] = self.split(budget, 2)[..] else {
            unreachable!()
        };
        let (stmt, n) = self.local_let(b0);
        let value = self.expr(t, b1);
        self.pop_to(n);
        ex(ExprKind::Block(block(vec![stmt], value)))
    }

    fn lambda(&mut self, params: &[(String, GTy, bool)], t: GTy, budget: usize) -> Expr {
        let n = self.scope.len();
        for (p, ty, model_index) in params {
            self.scope.push(Var {
                name: p.clone(),
                ty: *ty,
                model_index: *model_index,
            });
        }
        self.loops += 1;
        let body = self.expr(t, budget);
        self.loops -= 1;
        self.pop_to(n);
        ex(ExprKind::Lambda {
            params: params.iter().map(|p| ident(&p.0)).collect(),
            body: Box::new(body),
        })
    }

    fn repeat(&mut self, t: GTy, budget: usize) -> Expr {
        let [b0, b1] = self.split(budget, 2)[..] else {
            unreachable!()
        };
        let count = if self.can_list() && self.rng.chance(0.2) {
            let l = self.list_base();
            call("len", vec![l])
        } else {
            int(self.rng.below(4) as i64)
        };
        let init = self.expr(t, b0);
        let mut params = vec![(self.fresh("acc"), t, false)];
        if self.rng.chance(0.5) {
            params.push((self.fresh("i"), GTy::one(Elem::Int), false));
        }
        let f = self.lambda(&params, t, b1);
        call("repeat", vec![count, init, f])
    }

    fn fold(&mut self, t: GTy, budget: usize) -> Expr {
        if !self.can_list() {
            return self.leaf(t);
        }
        let [b0, b1, b2] = self.split(budget, 3)[..] else {
            unreachable!()
        };
        let with_init = self.rng.chance(0.6);
        let elem = if with_init {
            *self.rng.pick(&[
                T_FULL,
                T_FULL,
                Elem::Tensor(Shape::Red(true, false)),
                Elem::F32,
                Elem::Mask(Shape::Full),
                Elem::Int,
            ])
        } else {
            t.elem
        };
        let list = self.expr(GTy::list(elem), b0);
        let mut args = vec![pos(list)];
        if with_init {
            let init = self.expr(t, b1);
            args.push(if self.rng.chance(0.2) {
                kw("init", init)
            } else {
                pos(init)
            });
        }
        let mut params = vec![
            (self.fresh("acc"), t, false),
            (self.fresh("x"), GTy::one(elem), false),
        ];
        if self.rng.chance(0.4) {
            params.push((self.fresh("i"), GTy::one(Elem::Int), true));
        }
        args.push(pos(self.lambda(&params, t, b2)));
        call_kw("fold", args)
    }

    /// `xs[i]` with an index valid for any list over the models.
    fn index(&mut self, t: GTy, budget: usize) -> Expr {
        let list = self.expr(t.with_list(true), budget.saturating_sub(1));
        let model_index: Vec<String> = self
            .scope
            .iter()
            .filter(|v| v.model_index)
            .map(|v| v.name.clone())
            .collect();
        let i = match self.rng.below(4) {
            0 if !model_index.is_empty() => name(&model_index[self.rng.below(model_index.len())]),
            1 => {
                let l = self.list_base();
                bin(BinOp::Sub, call("len", vec![l]), int(1))
            }
            2 => int(-1),
            _ => int(0),
        };
        ex(ExprKind::Index(Box::new(list), Box::new(i)))
    }

    /// A helper returning `t` whose arguments can be made here.
    fn callable(&self, h: &Helper, t: GTy) -> bool {
        h.ret == t && (self.can_list() || h.params.iter().all(|p| !p.1.list))
    }

    fn helper_call(&mut self, t: GTy, budget: usize) -> Option<Expr> {
        let fits: Vec<usize> = (0..self.helpers.len())
            .filter(|&i| self.callable(&self.helpers[i], t))
            .collect();
        if fits.is_empty() || self.calls_left == 0 {
            return None;
        }
        self.calls_left -= 1;
        let h = fits[self.rng.below(fits.len())];
        let params: Vec<(String, GTy, bool)> = self.helpers[h]
            .params
            .iter()
            .map(|(n, t, d)| (n.clone(), *t, d.is_some()))
            .collect();
        let fname = self.helpers[h].name.clone();
        // One [f32] parameter may get a single number when another list is passed.
        let lists = params.iter().filter(|p| p.1.list).count();
        let splat = params
            .iter()
            .position(|p| p.1 == GTy::list(Elem::F32))
            .filter(|_| lists >= 2 && self.rng.chance(0.3));
        let budgets = self.split(budget, params.len().max(1));
        let mut args = Vec::new();
        let mut positional = true;
        for (i, (pname, ty, has_default)) in params.iter().enumerate() {
            if *has_default && self.rng.chance(0.4) {
                positional = false;
                continue;
            }
            let ty = if splat == Some(i) {
                ty.with_list(false)
            } else {
                *ty
            };
            let value = self.expr(ty, budgets[i.min(budgets.len() - 1)]);
            if positional && self.rng.chance(0.8) {
                args.push(pos(value));
            } else {
                positional = false;
                args.push(kw(pname, value));
            }
        }
        Some(call_kw(&fname, args))
    }
}
