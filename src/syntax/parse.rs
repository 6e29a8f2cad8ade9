//! Source text to AST: pest for the grammar, pest's Pratt parser for precedence.

use super::ast::*;
use super::errors::pest_error_to_diagnostic;
use super::limits::{self, Limits};
use crate::diag::{Diagnostic, Span};
use pest::Parser;
use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};
use std::cell::RefCell;
use std::sync::LazyLock;

#[derive(pest_derive::Parser)]
#[grammar = "grammar/merge.pest"]
pub(crate) struct MergeParser;

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::or_op, Assoc::Left))
        .op(Op::infix(Rule::and_op, Assoc::Left))
        .op(Op::infix(Rule::eq, Assoc::Left)
            | Op::infix(Rule::ne, Assoc::Left)
            | Op::infix(Rule::lt, Assoc::Left)
            | Op::infix(Rule::le, Assoc::Left)
            | Op::infix(Rule::gt, Assoc::Left)
            | Op::infix(Rule::ge, Assoc::Left))
        .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
        .op(Op::infix(Rule::mul, Assoc::Left) | Op::infix(Rule::div, Assoc::Left))
        .op(Op::prefix(Rule::neg) | Op::prefix(Rule::not))
        .op(Op::infix(Rule::pow, Assoc::Right))
        .op(Op::postfix(Rule::index))
});

/// Parses a whole program. On failure returns every diagnostic found (a pest
/// syntax error stops at the first; the AST-building checks report all).
pub fn parse_program(src: &str) -> Result<Program, Vec<Diagnostic>> {
    limits::precheck_source(src, &Limits::DEFAULT).map_err(|d| vec![d])?;
    let mut pairs =
        super::detail::parse_with_detail_for(src.len(), || MergeParser::parse(Rule::program, src))
            .map_err(|e| vec![pest_error_to_diagnostic(&e, src)])?;
    let program_pair = pairs.next().expect("grammar: program matched");
    limits::check_node_count(&program_pair, &Limits::DEFAULT).map_err(|d| vec![d])?;
    let builder = Builder {
        diags: RefCell::new(Vec::new()),
    };
    let items = program_pair
        .into_inner()
        .filter(|p| p.as_rule() != Rule::EOI)
        .map(|p| builder.item(p))
        .collect();
    let program = Program { items };
    let mut diags = builder.diags.into_inner();
    diags.extend(limits::check_program(&program, &Limits::DEFAULT));
    if diags.is_empty() {
        Ok(program)
    } else {
        Err(diags)
    }
}

/// Parses a single expression (the REPL's input).
pub fn parse_expr(src: &str) -> Result<Expr, Vec<Diagnostic>> {
    parse_fragment(src, Rule::repl_expr).map(|(e, _)| e)
}

/// Parses `let name = expr` (the REPL's binding form).
pub fn parse_let(src: &str) -> Result<(Ident, Expr), Vec<Diagnostic>> {
    let (e, name) = parse_fragment(src, Rule::repl_let)?;
    Ok((name.expect("repl_let has a name"), e))
}

fn parse_fragment(src: &str, rule: Rule) -> Result<(Expr, Option<Ident>), Vec<Diagnostic>> {
    limits::precheck_source(src, &Limits::DEFAULT).map_err(|d| vec![d])?;
    let mut pairs =
        super::detail::parse_with_detail_for(src.len(), || MergeParser::parse(rule, src))
            .map_err(|e| vec![pest_error_to_diagnostic(&e, src)])?;
    let top = pairs.next().expect("grammar: fragment matched");
    limits::check_node_count(&top, &Limits::DEFAULT).map_err(|d| vec![d])?;
    let builder = Builder {
        diags: RefCell::new(Vec::new()),
    };
    let mut name = None;
    let mut expr = None;
    for p in top.into_inner() {
        match p.as_rule() {
            Rule::ident => name = Some(ident(p)),
            Rule::expr => expr = Some(builder.expr(p)),
            _ => {}
        }
    }
    let expr = expr.expect("grammar: fragment has an expression");
    let mut diags = builder.diags.into_inner();
    diags.extend(limits::check_expr_depth(&expr, &Limits::DEFAULT));
    if diags.is_empty() {
        Ok((expr, name))
    } else {
        Err(diags)
    }
}

fn span_of(p: &Pair<Rule>) -> Span {
    let s = p.as_span();
    // A pair can end with the whitespace skipped after its last token; leave it out.
    let end = s.start() + s.as_str().trim_end().len();
    Span::new(s.start(), end)
}

fn ident(p: Pair<Rule>) -> Ident {
    Ident {
        name: p.as_str().to_string(),
        span: span_of(&p),
    }
}

struct Builder {
    diags: RefCell<Vec<Diagnostic>>,
}

impl Builder {
    fn item(&self, p: Pair<Rule>) -> Item {
        let kind = match p.as_rule() {
            Rule::merge_def => ItemKind::Merge,
            Rule::fn_def => ItemKind::Fn,
            r => unreachable!("grammar: item is {r:?}"),
        };
        let span = span_of(&p);
        let mut inner = p.into_inner();
        let name = ident(inner.next().expect("item name"));
        let params = inner
            .next()
            .expect("item params")
            .into_inner()
            .map(|p| self.param(p))
            .collect();
        let ret = type_expr(inner.next().expect("item return type"));
        let body_pair = inner.next().expect("item body");
        let end = Span::new(span.end.saturating_sub(1), span.end);
        let body = body_pair.into_inner().map(|s| self.stmt(s)).collect();
        Item {
            kind,
            name,
            params,
            ret,
            body,
            end,
            span,
        }
    }

    fn param(&self, p: Pair<Rule>) -> Param {
        let span = span_of(&p);
        let mut inner = p.into_inner();
        let name = ident(inner.next().expect("param name"));
        let ty = type_expr(inner.next().expect("param type"));
        let default = inner.next().map(|e| self.expr(e));
        Param {
            name,
            ty,
            default,
            span,
        }
    }

    fn stmt(&self, p: Pair<Rule>) -> Stmt {
        let span = span_of(&p);
        match p.as_rule() {
            Rule::let_stmt => {
                let mut inner = p.into_inner();
                let name = ident(inner.next().expect("let name"));
                let mut ty = None;
                let mut value = None;
                for q in inner {
                    match q.as_rule() {
                        Rule::type_expr => ty = Some(type_expr(q)),
                        _ => value = Some(self.expr(q)),
                    }
                }
                Stmt::Let {
                    name,
                    ty,
                    value: value.expect("let value"),
                    span,
                }
            }
            Rule::return_stmt => Stmt::Return {
                value: self.expr(p.into_inner().next().expect("return value")),
                span,
            },
            r => unreachable!("grammar: statement is {r:?}"),
        }
    }

    fn expr(&self, p: Pair<Rule>) -> Expr {
        debug_assert_eq!(p.as_rule(), Rule::expr);
        self.pratt(p.into_inner())
    }

    fn pratt(&self, pairs: Pairs<Rule>) -> Expr {
        PRATT
            .map_primary(|p| self.primary(p))
            .map_prefix(|op, rhs| {
                let span = span_of(&op).to(rhs.span);
                let op = if op.as_rule() == Rule::neg {
                    UnOp::Neg
                } else {
                    UnOp::Not
                };
                Expr {
                    kind: ExprKind::Unary(op, Box::new(rhs)),
                    span,
                }
            })
            .map_postfix(|lhs, op| {
                let span = lhs.span.to(span_of(&op));
                let index = self.expr(op.into_inner().next().expect("index expr"));
                Expr {
                    kind: ExprKind::Index(Box::new(lhs), Box::new(index)),
                    span,
                }
            })
            .map_infix(|lhs, op, rhs| self.infix(lhs, op, rhs))
            .parse(pairs)
    }

    fn infix(&self, lhs: Expr, op: Pair<Rule>, rhs: Expr) -> Expr {
        let bop = match op.as_rule() {
            Rule::or_op => BinOp::Or,
            Rule::and_op => BinOp::And,
            Rule::eq => BinOp::Eq,
            Rule::ne => BinOp::Ne,
            Rule::lt => BinOp::Lt,
            Rule::le => BinOp::Le,
            Rule::gt => BinOp::Gt,
            Rule::ge => BinOp::Ge,
            Rule::add => BinOp::Add,
            Rule::sub => BinOp::Sub,
            Rule::mul => BinOp::Mul,
            Rule::div => BinOp::Div,
            Rule::pow => BinOp::Pow,
            r => unreachable!("grammar: infix is {r:?}"),
        };
        if bop.is_comparison()
            && let ExprKind::Binary(inner, _, _) = &lhs.kind
            && inner.is_comparison()
        {
            self.diags.borrow_mut().push(
                Diagnostic::error(lhs.span.to(rhs.span), "comparisons cannot be chained")
                    .with_label("a comparison of a comparison")
                    .with_hint("write `a < b and b < c`, or add parentheses"),
            );
        }
        let span = lhs.span.to(rhs.span);
        Expr {
            kind: ExprKind::Binary(bop, Box::new(lhs), Box::new(rhs)),
            span,
        }
    }

    fn primary(&self, p: Pair<Rule>) -> Expr {
        let span = span_of(&p);
        let kind = match p.as_rule() {
            Rule::number => {
                let text = p.as_str();
                let is_int = !text.contains(['.', 'e', 'E']);
                // The grammar only admits decimal digits, so this cannot fail;
                // overflow gives inf, which the checker reports.
                let value = text.parse::<f64>().unwrap_or(f64::INFINITY);
                ExprKind::Number { value, is_int }
            }
            Rule::boolean => ExprKind::Bool(p.as_str() == "true"),
            Rule::string => {
                let s = p.as_str();
                ExprKind::Str(s[1..s.len() - 1].to_string())
            }
            Rule::ident => ExprKind::Name(p.as_str().to_string()),
            Rule::paren => {
                ExprKind::Paren(Box::new(self.expr(p.into_inner().next().expect("paren"))))
            }
            Rule::call => {
                let mut inner = p.into_inner();
                let func = ident(inner.next().expect("call name"));
                let args = inner
                    .next()
                    .expect("call args")
                    .into_inner()
                    .map(|a| self.arg(a))
                    .collect();
                ExprKind::Call { func, args }
            }
            Rule::array => ExprKind::Array(p.into_inner().map(|e| self.expr(e)).collect()),
            Rule::lambda => {
                let mut params = Vec::new();
                let mut body = None;
                for q in p.into_inner() {
                    match q.as_rule() {
                        Rule::ident => params.push(ident(q)),
                        _ => body = Some(self.expr(q)),
                    }
                }
                ExprKind::Lambda {
                    params,
                    body: Box::new(body.expect("lambda body")),
                }
            }
            Rule::if_expr => {
                let mut inner = p.into_inner();
                let cond = self.expr(inner.next().expect("if cond"));
                let then = self.block_expr(inner.next().expect("if then"));
                let else_pair = inner.next().expect("if else");
                let els = if else_pair.as_rule() == Rule::if_expr {
                    let e = self.primary(else_pair);
                    BlockExpr {
                        lets: Vec::new(),
                        span: e.span,
                        value: Box::new(e),
                    }
                } else {
                    self.block_expr(else_pair)
                };
                ExprKind::If {
                    cond: Box::new(cond),
                    then,
                    els,
                }
            }
            Rule::block_expr => ExprKind::Block(self.block_expr(p)),
            r => unreachable!("grammar: primary is {r:?}"),
        };
        Expr { kind, span }
    }

    fn arg(&self, p: Pair<Rule>) -> Arg {
        match p.as_rule() {
            Rule::kwarg => {
                let mut inner = p.into_inner();
                let name = ident(inner.next().expect("kwarg name"));
                let value = self.expr(inner.next().expect("kwarg value"));
                Arg {
                    name: Some(name),
                    value,
                }
            }
            _ => Arg {
                name: None,
                value: self.expr(p),
            },
        }
    }

    fn block_expr(&self, p: Pair<Rule>) -> BlockExpr {
        let span = span_of(&p);
        let mut lets = Vec::new();
        let mut value = None;
        for q in p.into_inner() {
            match q.as_rule() {
                Rule::let_stmt => lets.push(self.stmt(q)),
                _ => value = Some(self.expr(q)),
            }
        }
        BlockExpr {
            lets,
            value: Box::new(value.expect("block value")),
            span,
        }
    }
}

fn type_expr(p: Pair<Rule>) -> TypeExpr {
    let span = span_of(&p);
    let inner = p.into_inner().next().expect("type inner");
    let kind = match inner.as_rule() {
        Rule::ident => TypeExprKind::Named(inner.as_str().to_string()),
        Rule::list_type => TypeExprKind::List(Box::new(type_expr(
            inner.into_inner().next().expect("list elem type"),
        ))),
        r => unreachable!("grammar: type is {r:?}"),
    };
    TypeExpr { kind, span }
}
