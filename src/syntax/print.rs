//! Printers: the AST as an S-expression (golden tests) and back as source
//! (the random program generator writes ASTs and prints them).

use super::ast::*;
use std::fmt::Write;

/// A compact S-expression of the program, one item per line.
pub fn sexpr(p: &Program) -> String {
    let mut out = String::new();
    for item in &p.items {
        let kind = match item.kind {
            ItemKind::Merge => "merge",
            ItemKind::Fn => "fn",
        };
        let _ = write!(out, "({kind} {} (", item.name.name);
        for (i, param) in item.params.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let _ = write!(out, "({} {}", param.name.name, type_str(&param.ty));
            if let Some(d) = &param.default {
                let _ = write!(out, " = {}", sexpr_expr(d));
            }
            out.push(')');
        }
        let _ = writeln!(out, ") -> {}", type_str(&item.ret));
        for s in &item.body {
            let _ = writeln!(out, "  {}", sexpr_stmt(s));
        }
        out.push_str(")\n");
    }
    out
}

pub fn type_str(t: &TypeExpr) -> String {
    match &t.kind {
        TypeExprKind::Named(n) => n.clone(),
        TypeExprKind::List(e) => format!("[{}]", type_str(e)),
    }
}

fn sexpr_stmt(s: &Stmt) -> String {
    match s {
        Stmt::Let {
            name, ty, value, ..
        } => match ty {
            Some(t) => format!("(let {}: {} {})", name.name, type_str(t), sexpr_expr(value)),
            None => format!("(let {} {})", name.name, sexpr_expr(value)),
        },
        Stmt::Return { value, .. } => format!("(return {})", sexpr_expr(value)),
    }
}

fn number_str(value: f64, is_int: bool) -> String {
    if is_int {
        format!("{value}")
    } else {
        format!("{value:?}")
    }
}

pub fn sexpr_expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Number { value, is_int } => number_str(*value, *is_int),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Str(s) => format!("{s:?}"),
        ExprKind::Name(n) => n.clone(),
        ExprKind::Paren(x) => sexpr_expr(x),
        ExprKind::Unary(op, x) => {
            let o = if *op == UnOp::Neg { "neg" } else { "not" };
            format!("({o} {})", sexpr_expr(x))
        }
        ExprKind::Binary(op, a, b) => {
            format!("({} {} {})", op.symbol(), sexpr_expr(a), sexpr_expr(b))
        }
        ExprKind::Call { func, args } => {
            let mut s = format!("(call {}", func.name);
            for a in args {
                match &a.name {
                    Some(n) => {
                        let _ = write!(s, " {}={}", n.name, sexpr_expr(&a.value));
                    }
                    None => {
                        let _ = write!(s, " {}", sexpr_expr(&a.value));
                    }
                }
            }
            s + ")"
        }
        ExprKind::Index(a, i) => format!("(index {} {})", sexpr_expr(a), sexpr_expr(i)),
        ExprKind::Array(xs) => {
            let inner: Vec<String> = xs.iter().map(sexpr_expr).collect();
            format!("[{}]", inner.join(" "))
        }
        ExprKind::Lambda { params, body } => {
            let ps: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
            format!("(lambda ({}) {})", ps.join(" "), sexpr_expr(body))
        }
        ExprKind::If { cond, then, els } => format!(
            "(if {} {} {})",
            sexpr_expr(cond),
            sexpr_block(then),
            sexpr_block(els)
        ),
        ExprKind::Block(b) => format!("(block {})", sexpr_block(b)),
    }
}

fn sexpr_block(b: &BlockExpr) -> String {
    if b.lets.is_empty() {
        return sexpr_expr(&b.value);
    }
    let lets: Vec<String> = b.lets.iter().map(sexpr_stmt).collect();
    format!("(block {} {})", lets.join(" "), sexpr_expr(&b.value))
}

/// Binding strength of an operator; higher binds tighter.
fn prec(op: BinOp) -> u8 {
    match op {
        BinOp::Or => 1,
        BinOp::And => 2,
        BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 3,
        BinOp::Add | BinOp::Sub => 4,
        BinOp::Mul | BinOp::Div => 5,
        BinOp::Pow => 7,
    }
}
const PREC_UNARY: u8 = 6;
const PREC_ATOM: u8 = 9;

fn expr_prec(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Binary(op, ..) => prec(*op),
        ExprKind::Unary(..) => PREC_UNARY,
        ExprKind::Lambda { .. } | ExprKind::If { .. } => 0,
        ExprKind::Block(_) => PREC_ATOM,
        _ => PREC_ATOM,
    }
}

/// `merge name(p: T = default, ...) -> R`: an item's header as source.
pub fn item_header(item: &Item) -> String {
    let kind = match item.kind {
        ItemKind::Merge => "merge",
        ItemKind::Fn => "fn",
    };
    let params: Vec<String> = item
        .params
        .iter()
        .map(|p| match &p.default {
            Some(d) => format!("{}: {} = {}", p.name.name, type_str(&p.ty), source_expr(d)),
            None => format!("{}: {}", p.name.name, type_str(&p.ty)),
        })
        .collect();
    format!(
        "{kind} {}({}) -> {}",
        item.name.name,
        params.join(", "),
        type_str(&item.ret)
    )
}

/// Source text that parses back to the same tree (modulo spans and parentheses).
pub fn source(p: &Program) -> String {
    let mut out = String::new();
    for item in &p.items {
        let _ = writeln!(out, "{} {{", item_header(item));
        for s in &item.body {
            let _ = writeln!(out, "    {}", source_stmt(s));
        }
        out.push_str("}\n");
    }
    out
}

fn source_stmt(s: &Stmt) -> String {
    match s {
        Stmt::Let {
            name, ty, value, ..
        } => match ty {
            Some(t) => format!(
                "let {}: {} = {}",
                name.name,
                type_str(t),
                source_expr(value)
            ),
            None => format!("let {} = {}", name.name, source_expr(value)),
        },
        Stmt::Return { value, .. } => format!("return {}", source_expr(value)),
    }
}

fn wrap(e: &Expr, min_prec: u8) -> String {
    let s = source_expr(e);
    if expr_prec(e) < min_prec {
        format!("({s})")
    } else {
        s
    }
}

pub fn source_expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Number { value, is_int } => {
            if *is_int {
                format!("{value}")
            } else {
                let s = format!("{value:?}");
                if s.contains(['.', 'e', 'E']) {
                    s
                } else {
                    format!("{s}.0")
                }
            }
        }
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Str(s) => format!("\"{s}\""),
        ExprKind::Name(n) => n.clone(),
        ExprKind::Paren(x) => format!("({})", source_expr(x)),
        ExprKind::Unary(op, x) => {
            let o = if *op == UnOp::Neg { "-" } else { "not " };
            format!("{o}{}", wrap(x, PREC_UNARY))
        }
        ExprKind::Binary(op, a, b) => {
            let p = prec(*op);
            let (lp, rp) = match op {
                BinOp::Pow => (p + 1, p),
                _ if op.is_comparison() => (p + 1, p + 1),
                _ => (p, p + 1),
            };
            format!("{} {} {}", wrap(a, lp), op.symbol(), wrap(b, rp))
        }
        ExprKind::Call { func, args } => {
            let a: Vec<String> = args
                .iter()
                .map(|a| match &a.name {
                    Some(n) => format!("{}={}", n.name, source_expr(&a.value)),
                    None => source_expr(&a.value),
                })
                .collect();
            format!("{}({})", func.name, a.join(", "))
        }
        ExprKind::Index(a, i) => format!("{}[{}]", wrap(a, PREC_ATOM), source_expr(i)),
        ExprKind::Array(xs) => {
            let inner: Vec<String> = xs.iter().map(source_expr).collect();
            format!("[{}]", inner.join(", "))
        }
        ExprKind::Lambda { params, body } => {
            let ps: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
            format!("|{}| {}", ps.join(", "), source_expr(body))
        }
        ExprKind::If { cond, then, els } => format!(
            "if {} {} else {}",
            source_expr(cond),
            source_block(then),
            source_block(els)
        ),
        ExprKind::Block(b) => source_block(b),
    }
}

fn source_block(b: &BlockExpr) -> String {
    let mut s = String::from("{ ");
    for l in &b.lets {
        let _ = write!(s, "{}; ", source_stmt(l));
    }
    s + &source_expr(&b.value) + " }"
}
