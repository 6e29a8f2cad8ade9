//! Hard limits on program size and nesting (documented in docs/language.md).
//! They keep every accepted program cheap to check and the front end's
//! recursion bounded, whatever a generator writes.

use super::ast::*;
use super::parse::Rule;
use crate::diag::{Diagnostic, Span};
use pest::iterators::Pair;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_source_bytes: usize,
    /// Nesting of `(`, `[`, `{`, lambdas and `if`s, counted on the raw text.
    pub max_nesting: usize,
    /// Syntax nodes (every grammar rule matched, operators included).
    pub max_syntax_nodes: usize,
    pub max_items: usize,
    pub max_statements: usize,
    pub max_params: usize,
    /// Depth of one expression tree.
    pub max_expr_depth: usize,
    /// Nodes of one merge after every helper call is inlined.
    pub max_inlined_nodes: usize,
    /// Largest `repeat` count.
    pub max_repeat: i64,
    /// Largest `repeat` count at run time (a count that is not a literal).
    pub max_runtime_repeat: i64,
    /// Largest tensor literal (REPL).
    pub max_literal_elems: usize,
    /// Most models one merge takes (the static cost bound assumes this many).
    pub max_models: usize,
    /// Operations per element of the merged tensor, as bounded by the checker.
    pub max_ops_per_element: u64,
    /// Nodes of one merge once `repeat`s and per-model lists are unrolled.
    pub max_unrolled_nodes: u64,
    /// Expressions the checker may type in one check, inlined helpers and
    /// re-checked lambda bodies included: bounds the time and memory of a check.
    pub max_check_work: u64,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_source_bytes: 64 * 1024,
        max_nesting: 32,
        max_syntax_nodes: 8192,
        max_items: 64,
        max_statements: 256,
        max_params: 32,
        max_expr_depth: 64,
        max_inlined_nodes: 20_000,
        max_repeat: 64,
        max_runtime_repeat: 1000,
        max_literal_elems: 1 << 20,
        max_models: 32,
        max_ops_per_element: 10_000_000,
        max_unrolled_nodes: 4_000_000,
        max_check_work: 200_000,
    };
}

fn too_large(span: Span, what: &str, got: usize, limit: usize) -> Diagnostic {
    let hint = match what {
        "bytes of source" => "remove long comments or unused code",
        "statements" => {
            "the limit counts every `let` and `return` in the file: combine steps or drop unused bindings"
        }
        "lambdas and `if` expressions" => {
            "choose per element with where(mask, a, b) instead of many `if`s"
        }
        "parameters" => "use fewer parameters, e.g. one per-model list such as weight: [f32]",
        "functions and merges" => "combine small helpers, or move unrelated merges to other files",
        _ => "split the work into smaller steps or simplify the program",
    };
    Diagnostic::error(
        span,
        format!("program too large: {got} {what} (the limit is {limit})"),
    )
    .with_hint(hint)
}

/// Checks run on the raw text before the grammar sees it.
pub fn precheck_source(src: &str, limits: &Limits) -> Result<(), Diagnostic> {
    if src.len() > limits.max_source_bytes {
        return Err(too_large(
            Span::new(0, 0),
            "bytes of source",
            src.len(),
            limits.max_source_bytes,
        ));
    }
    super::invisible::check_invisible(src)?;
    let mut depth = 0usize;
    let mut in_comment = false;
    let mut in_string = false;
    let mut pipes = 0usize;
    let mut ifs = 0usize;
    let bytes = src.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if in_comment {
            in_comment = b != b'\n';
            continue;
        }
        if in_string {
            in_string = b != b'"' && b != b'\n';
            continue;
        }
        match b {
            b'#' => in_comment = true,
            b'"' => in_string = true,
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'|' => pipes += 1,
            b'i' if bytes.get(i + 1) == Some(&b'f')
                && (i == 0 || !is_ident_byte(bytes[i - 1]))
                && !bytes.get(i + 2).is_some_and(|&c| is_ident_byte(c)) =>
            {
                ifs += 1
            }
            _ => {}
        }
        if depth > limits.max_nesting {
            return Err(Diagnostic::error(
                Span::new(i, i + 1),
                format!(
                    "program nested too deeply (more than {} levels of brackets)",
                    limits.max_nesting
                ),
            )
            .with_hint("name intermediate results with `let`"));
        }
    }
    // Lambdas and `if` chains nest without brackets; bound them too.
    let nested = pipes / 2 + ifs;
    if nested > limits.max_statements {
        return Err(too_large(
            Span::new(0, 0),
            "lambdas and `if` expressions",
            nested,
            limits.max_statements,
        ));
    }
    Ok(())
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Bounds the number of syntax nodes before the AST is built.
pub fn check_node_count(top: &Pair<Rule>, limits: &Limits) -> Result<(), Diagnostic> {
    let n = top.clone().into_inner().flatten().count();
    if n > limits.max_syntax_nodes {
        let s = top.as_span();
        return Err(too_large(
            Span::new(s.start(), s.start()),
            "syntax nodes",
            n,
            limits.max_syntax_nodes,
        ));
    }
    Ok(())
}

/// Counts of items, statements and parameters, and the depth of every expression.
pub fn check_program(p: &Program, limits: &Limits) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    if p.items.len() > limits.max_items {
        diags.push(too_large(
            p.items[limits.max_items].name.span,
            "functions and merges",
            p.items.len(),
            limits.max_items,
        ));
    }
    let mut statements = 0;
    // The first statement past the limit, where the error points.
    let mut over = None;
    for item in &p.items {
        let room = limits.max_statements.saturating_sub(statements);
        if over.is_none() {
            over = item.body.get(room).map(Stmt::span);
        }
        statements += item.body.len();
        if item.params.len() > limits.max_params {
            diags.push(too_large(
                item.params[limits.max_params].span,
                "parameters",
                item.params.len(),
                limits.max_params,
            ));
        }
        for param in &item.params {
            if let Some(d) = &param.default {
                diags.extend(check_expr_depth(d, limits));
            }
        }
        for s in &item.body {
            let e = match s {
                Stmt::Let { value, .. } | Stmt::Return { value, .. } => value,
            };
            diags.extend(check_expr_depth(e, limits));
        }
    }
    if statements > limits.max_statements {
        diags.push(too_large(
            over.unwrap_or_default(),
            "statements",
            statements,
            limits.max_statements,
        ));
    }
    diags
}

/// One diagnostic if the expression is deeper than the limit.
pub fn check_expr_depth(e: &Expr, limits: &Limits) -> Option<Diagnostic> {
    let d = expr_depth(e);
    (d > limits.max_expr_depth).then(|| {
        Diagnostic::error(
            e.span,
            format!(
                "expression nested too deeply ({d} levels; the limit is {})",
                limits.max_expr_depth
            ),
        )
        .with_hint("name intermediate results with `let`")
    })
}

fn expr_depth(e: &Expr) -> usize {
    stacker::maybe_grow(64 * 1024, 4 * 1024 * 1024, || {
        1 + match &e.kind {
            ExprKind::Number { .. } | ExprKind::Bool(_) | ExprKind::Str(_) | ExprKind::Name(_) => 0,
            ExprKind::Paren(a) | ExprKind::Unary(_, a) => expr_depth(a),
            ExprKind::Binary(_, a, b) | ExprKind::Index(a, b) => expr_depth(a).max(expr_depth(b)),
            ExprKind::Call { args, .. } => {
                args.iter().map(|a| expr_depth(&a.value)).max().unwrap_or(0)
            }
            ExprKind::Array(xs) => xs.iter().map(expr_depth).max().unwrap_or(0),
            ExprKind::Lambda { body, .. } => expr_depth(body),
            ExprKind::If { cond, then, els } => expr_depth(cond)
                .max(block_depth(then))
                .max(block_depth(els)),
            ExprKind::Block(b) => block_depth(b),
        }
    })
}

fn block_depth(b: &BlockExpr) -> usize {
    let lets = b.lets.iter().map(|s| match s {
        Stmt::Let { value, .. } | Stmt::Return { value, .. } => expr_depth(value),
    });
    lets.max().unwrap_or(0).max(expr_depth(&b.value))
}
