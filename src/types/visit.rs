//! The one walk of the typed tree: every pass that only needs to reach each node
//! (`size`, whether a program reads tensor facts, the REPL's broadcast guard, liveness)
//! goes through [`TExpr::children`], so a new [`TKind`] is handled here once.

use super::tast::{TExpr, TKind, VarId};

impl TExpr {
    /// The direct subexpressions, in evaluation order (a fold's list, its init, its body).
    pub fn children(&self) -> Vec<&TExpr> {
        match &self.kind {
            TKind::Int(_)
            | TKind::F32(_)
            | TKind::Bool(_)
            | TKind::Str(_)
            | TKind::TensorLit { .. }
            | TKind::Var(_)
            | TKind::Fact(_) => vec![],
            TKind::Op(_, xs) | TKind::List(xs) => xs.iter().collect(),
            TKind::Let(_, a, b) | TKind::Index(a, b) | TKind::Splat(a, b) => vec![a, b],
            TKind::If(c, a, b) => vec![c, a, b],
            TKind::Fold {
                list, init, body, ..
            } => std::iter::once(&**list)
                .chain(init.as_deref())
                .chain(std::iter::once(&**body))
                .collect(),
            TKind::Repeat {
                count, init, body, ..
            } => vec![count, init, body],
        }
    }

    /// The variables a node binds for its last child (a `let`'s body, a loop's body):
    /// `let` binds one, a fold its accumulator, element and index, `repeat` its
    /// accumulator and index.
    pub fn binds(&self) -> Vec<VarId> {
        match &self.kind {
            TKind::Let(v, _, _) => vec![*v],
            TKind::Fold {
                acc, elem, index, ..
            } => [Some(*acc), Some(*elem), *index]
                .into_iter()
                .flatten()
                .collect(),
            TKind::Repeat { acc, index, .. } => {
                [Some(*acc), *index].into_iter().flatten().collect()
            }
            _ => vec![],
        }
    }

    /// Whether `p` holds for this node or any node under it.
    pub fn any(&self, p: &impl Fn(&TExpr) -> bool) -> bool {
        p(self) || self.children().into_iter().any(|c| c.any(p))
    }
}

/// How many of the models a merge body reads when it reads them only by constant index
/// (`models[0]`, `models[1]`) and `len(models)`: one past the largest index. `None` when
/// it uses the list any other way (a fold, arithmetic on the list, a variable index),
/// which reads every model. `slerp` reads 1, `nuslerp` 2: given more, the rest would be
/// dropped silently, so `mergec merge` refuses them.
pub fn models_read(body: &TExpr, models: VarId) -> Option<usize> {
    fn walk(e: &TExpr, models: VarId, most: &mut usize) -> bool {
        match &e.kind {
            TKind::Var(v) if *v == models => return false,
            TKind::Index(list, i) if matches!(list.kind, TKind::Var(v) if v == models) => {
                return match i.kind {
                    TKind::Int(k) if k >= 0 => {
                        *most = (*most).max(k as usize + 1);
                        true
                    }
                    _ => false,
                };
            }
            TKind::Op(super::ops::Op::Len, xs)
                if xs.len() == 1 && matches!(xs[0].kind, TKind::Var(v) if v == models) =>
            {
                return true;
            }
            _ => {}
        }
        e.children().into_iter().all(|c| walk(c, models, most))
    }
    let mut most = 0;
    walk(body, models, &mut most).then_some(most)
}

#[cfg(test)]
mod tests {
    use crate::types::tast::TKind;

    #[test]
    fn children_binders_and_any_cover_a_real_program() {
        let src = "merge m(base: Tensor, models: [Tensor], w: f32 = 0.5) -> Tensor {\n  let d = fold(models - base, |acc, t, i| acc + t * float(i))\n  let n = repeat(2, d, |a, k| a * 0.5)\n  return if layer > 2 { base + w * n } else { base }\n}";
        let (p, _) = crate::types::check_source(src).expect("checks");
        let m = crate::types::instantiate_merge(&p, "m", 2).expect("rank 2");
        let mut folds = 0;
        let mut repeats = 0;
        let mut nodes = 0;
        fn walk(e: &crate::types::tast::TExpr, f: &mut dyn FnMut(&crate::types::tast::TExpr)) {
            f(e);
            for c in e.children() {
                walk(c, f);
            }
        }
        walk(&m.body, &mut |e| {
            nodes += 1;
            match e.kind {
                TKind::Fold { .. } => {
                    folds += 1;
                    assert_eq!(e.binds().len(), 3, "acc, element and index");
                }
                TKind::Repeat { .. } => {
                    repeats += 1;
                    assert_eq!(e.binds().len(), 2, "acc and index");
                }
                _ => {}
            }
        });
        assert_eq!((folds, repeats), (1, 1));
        assert_eq!(nodes, m.body.size());
        assert_eq!(nodes, 28, "every node once");
        assert!(m.body.any(&|e| matches!(e.kind, TKind::Fact(_))));
        assert!(!m.body.any(&|e| matches!(e.kind, TKind::Str(_))));
    }

    #[test]
    fn models_read_counts_constant_indices_only() {
        let read = |src: &str| {
            let (p, _) = crate::types::check_source(src).expect("checks");
            let m = crate::types::instantiate_merge(&p, "m", 2).expect("rank 2");
            super::models_read(&m.body, m.models)
        };
        let head = "merge m(base: Tensor, models: [Tensor]) -> Tensor {";
        assert_eq!(read(&format!("{head} return base + models[0] }}")), Some(1));
        assert_eq!(
            read(&format!(
                "{head} return if len(models) < 2 {{ models[0] }} else {{ models[1] - base }} }}"
            )),
            Some(2)
        );
        assert_eq!(read(&format!("{head} return base }}")), Some(0));
        assert_eq!(
            read(&format!(
                "{head} return fold(models - base, |acc, t| acc + t) }}"
            )),
            None
        );
        assert_eq!(
            read(&format!("{head} return models[len(models) - 1] }}")),
            None
        );
    }
}
