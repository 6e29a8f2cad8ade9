//! How many times each variable is read, so the interpreter can free a value
//! at its last read instead of holding every intermediate tensor until the end.
//! Reads inside a loop body of a variable bound outside it are unbounded.

use crate::types::tast::{TExpr, TKind, VarId};

/// A variable read this many times is never freed early.
pub const UNBOUNDED: u32 = u32::MAX;

/// Static read counts per variable; `UNBOUNDED` where a read may repeat.
pub fn read_counts(e: &TExpr, n_vars: usize) -> Vec<u32> {
    let mut w = Walk {
        counts: vec![0; n_vars],
        bound_at: vec![0; n_vars],
    };
    w.walk(e, 0);
    w.counts
}

struct Walk {
    counts: Vec<u32>,
    /// Loop depth at which each variable is bound.
    bound_at: Vec<u32>,
}

impl Walk {
    fn grow(&mut self, v: VarId) {
        let i = v as usize + 1;
        if self.counts.len() < i {
            self.counts.resize(i, 0);
            self.bound_at.resize(i, 0);
        }
    }

    fn bind(&mut self, v: VarId, depth: u32) {
        self.grow(v);
        self.bound_at[v as usize] = depth;
    }

    fn walk(&mut self, e: &TExpr, depth: u32) {
        stacker::maybe_grow(64 * 1024, 4 * 1024 * 1024, || self.walk_inner(e, depth))
    }

    fn walk_inner(&mut self, e: &TExpr, depth: u32) {
        match &e.kind {
            TKind::Int(_)
            | TKind::F32(_)
            | TKind::Bool(_)
            | TKind::Str(_)
            | TKind::TensorLit { .. }
            | TKind::Fact(_) => {}
            TKind::Var(v) => {
                self.grow(*v);
                let i = *v as usize;
                self.counts[i] = if depth > self.bound_at[i] {
                    UNBOUNDED
                } else {
                    self.counts[i].saturating_add(1)
                };
            }
            TKind::Op(_, args) | TKind::List(args) => args.iter().for_each(|a| self.walk(a, depth)),
            TKind::Let(v, value, body) => {
                self.walk(value, depth);
                self.bind(*v, depth);
                self.walk(body, depth);
            }
            TKind::If(c, a, b) => {
                self.walk(c, depth);
                self.walk(a, depth);
                self.walk(b, depth);
            }
            TKind::Index(a, b) | TKind::Splat(a, b) => {
                self.walk(a, depth);
                self.walk(b, depth);
            }
            TKind::Fold {
                list,
                init,
                acc,
                elem,
                index,
                body,
            } => {
                self.walk(list, depth);
                if let Some(i) = init {
                    self.walk(i, depth);
                }
                for v in [Some(*acc), Some(*elem), *index].into_iter().flatten() {
                    self.bind(v, depth + 1);
                }
                self.walk(body, depth + 1);
            }
            TKind::Repeat {
                count,
                init,
                acc,
                index,
                body,
            } => {
                self.walk(count, depth);
                self.walk(init, depth);
                for v in [Some(*acc), *index].into_iter().flatten() {
                    self.bind(v, depth + 1);
                }
                self.walk(body, depth + 1);
            }
        }
    }
}
