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
        if let TKind::Var(v) = &e.kind {
            self.grow(*v);
            let i = *v as usize;
            self.counts[i] = if depth > self.bound_at[i] {
                UNBOUNDED
            } else {
                self.counts[i].saturating_add(1)
            };
            return;
        }
        let children = e.children();
        let binds = e.binds();
        let Some((body, before)) = children.split_last().filter(|_| !binds.is_empty()) else {
            children.into_iter().for_each(|c| self.walk(c, depth));
            return;
        };
        // A binder: its body sees the bound variables; a loop's body runs again for
        // each trip (one level deeper), a `let`'s once.
        let inner = if matches!(e.kind, TKind::Let(..)) {
            depth
        } else {
            depth + 1
        };
        before.iter().for_each(|c| self.walk(c, depth));
        binds.into_iter().for_each(|v| self.bind(v, inner));
        self.walk(body, inner);
    }
}
