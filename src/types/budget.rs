//! The checker's work budget: every expression it types is charged to a budget
//! shared by the whole check, so no check builds a large tree (see `Limits::max_check_work`).

use super::check::{Checker, MAX_DIAGNOSTICS};
use crate::diag::{Diagnostic, Span};
use std::cell::Cell;
use std::rc::Rc;

impl<'p> Checker<'p> {
    /// Shares `budget` (the work left) with the other checkers of one program.
    pub fn with_budget(mut self, budget: &Rc<Cell<u64>>) -> Self {
        self.work_left = Rc::clone(budget);
        self
    }

    /// Spends `n` units of the check's work; false (after reporting it once) when
    /// the budget is spent: the program is too large to check.
    pub fn spend(&mut self, n: u64, span: Span) -> bool {
        let left = self.work_left.get();
        if left >= n {
            self.work_left.set(left - n);
            return true;
        }
        self.work_left.set(0);
        // Nothing to add when the check stopped at the diagnostics cap.
        if !self.out_of_work && self.diags.len() < MAX_DIAGNOSTICS {
            self.out_of_work = true;
            let at = self.call_spans.first().copied().unwrap_or(span);
            let chain = self.call_stack.join(" -> ");
            self.error(
                Diagnostic::error(
                    at,
                    format!(
                        "program too large to check: more than {} expressions once helpers are inlined",
                        self.limits.max_check_work
                    ),
                )
                .with_label("expands too much from here")
                .with_note(format!("inlining {chain}"))
                .with_hint(
                    "every call of a helper is inlined: a helper that calls another one twice doubles the size at each level; call helpers fewer times, or bind a result with `let` and reuse it",
                ),
            );
        }
        false
    }

    pub fn error(&mut self, d: Diagnostic) {
        // Past a screenful of errors the rest say nothing new; stop checking (a helper
        // with a wrong call inlined thousands of times would repeat it thousands of times).
        if self.diags.len() >= MAX_DIAGNOSTICS {
            self.work_left.set(0);
            return;
        }
        self.diags.push(d);
    }
}
