//! How large each function and merge becomes once every helper call in it is
//! inlined, computed on the syntax tree before anything is checked. A helper that
//! calls another one twice doubles at every level, so these sizes grow
//! exponentially while the source stays small: the checker compares them with
//! `max_inlined_nodes` before it inlines a call, and never builds such a tree.

use crate::syntax::ast::*;
use std::collections::HashMap;

/// Inlined size (expression nodes, saturating) of every item, by name. Call only on
/// a program without recursion.
pub fn inlined_sizes(p: &Program) -> HashMap<&str, u64> {
    let items: HashMap<&str, &Item> = p.items.iter().map(|i| (i.name.name.as_str(), i)).collect();
    let mut sizes = HashMap::new();
    for item in &p.items {
        size_of_item(item, &items, &mut sizes, 0);
    }
    sizes
}

fn size_of_item<'p>(
    item: &'p Item,
    items: &HashMap<&'p str, &'p Item>,
    sizes: &mut HashMap<&'p str, u64>,
    depth: usize,
) -> u64 {
    let name = item.name.name.as_str();
    if let Some(&n) = sizes.get(name) {
        return n;
    }
    // Recursion is rejected before sizes are asked for; the depth guard only keeps a
    // cycle from overflowing the stack if that ever changes.
    if depth > items.len() {
        return u64::MAX;
    }
    let mut walk = Walk {
        items,
        sizes,
        depth,
    };
    let mut n: u64 = 0;
    for s in &item.body {
        let (Stmt::Let { value, .. } | Stmt::Return { value, .. }) = s;
        n = n.saturating_add(walk.expr(value));
    }
    for param in &item.params {
        if let Some(d) = &param.default {
            n = n.saturating_add(walk.expr(d));
        }
    }
    sizes.insert(name, n);
    n
}

struct Walk<'a, 'p> {
    items: &'a HashMap<&'p str, &'p Item>,
    sizes: &'a mut HashMap<&'p str, u64>,
    depth: usize,
}

impl<'p> Walk<'_, 'p> {
    fn expr(&mut self, e: &'p Expr) -> u64 {
        stacker::maybe_grow(64 * 1024, 4 * 1024 * 1024, || {
            let inner = match &e.kind {
                ExprKind::Number { .. }
                | ExprKind::Bool(_)
                | ExprKind::Str(_)
                | ExprKind::Name(_) => 0,
                // Parentheses vanish in the typed tree.
                ExprKind::Paren(x) => return self.expr(x),
                ExprKind::Unary(_, x) | ExprKind::Lambda { body: x, .. } => self.expr(x),
                ExprKind::Binary(_, a, b) | ExprKind::Index(a, b) => {
                    self.expr(a).saturating_add(self.expr(b))
                }
                ExprKind::Array(xs) => self.all(xs.iter()),
                ExprKind::Call { func, args } => {
                    let callee = match self.items.get(func.name.as_str()) {
                        Some(item) => size_of_item(item, self.items, self.sizes, self.depth + 1),
                        None => 0,
                    };
                    callee.saturating_add(self.all(args.iter().map(|a| &a.value)))
                }
                ExprKind::If { cond, then, els } => self
                    .expr(cond)
                    .saturating_add(self.block(then))
                    .saturating_add(self.block(els)),
                ExprKind::Block(b) => self.block(b),
            };
            inner.saturating_add(1)
        })
    }

    fn all(&mut self, xs: impl Iterator<Item = &'p Expr>) -> u64 {
        xs.fold(0u64, |n, x| n.saturating_add(self.expr(x)))
    }

    fn block(&mut self, b: &'p BlockExpr) -> u64 {
        let lets = b.lets.iter().map(|s| {
            let (Stmt::Let { value, .. } | Stmt::Return { value, .. }) = s;
            value
        });
        self.all(lets).saturating_add(self.expr(&b.value))
    }
}
