//! The rest of a [`Shape::Loop`](super::Shape::Loop) program from one of its body lines
//! on, with the names it may use spelled out: what guided decoding masks with at each
//! line start (`develop::guided`), so that a model can only write names that resolve.
//!
//! Derived from the loop grammar, not written again:
//! - the start is the body's remaining lines: at most `lets_left` `let`s, the `return`
//!   and `}` (only the `return` when closing);
//! - where an expression names a value or calls a function (pest's `primary` and
//!   `call`), the identifier becomes `NAME_USE`, the alternation of the given names;
//! - inside a lambda, and a block that binds names, new names come into scope that a
//!   line-level grammar cannot follow: there the rules are copies (suffix `_free`) with
//!   the plain identifier, and the names check of guided decoding judges them.

use super::{Def, Grammar, Node};
use std::collections::BTreeSet;

/// What the rest of a program may name, and how much of it is left.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rest {
    /// Values and functions in scope (parameters, `let`s, builtins, tensor facts).
    pub names: BTreeSet<String>,
    /// Keyword arguments' names (the callable functions' parameters).
    pub keywords: BTreeSet<String>,
    /// `let` lines the body may still have.
    pub lets_left: usize,
    /// Only a short `return` is left ([`closing`]).
    pub closing: bool,
    /// When closing: the names that hold a tensor (the `return` starts with one).
    pub tensors: BTreeSet<String>,
}

/// The terminals of a name in scope and of a keyword argument's name.
pub const NAME_USE: &str = "NAME_USE";
pub const KEYWORD: &str = "KEYWORD_NAME";
/// The terminal of a tensor's name in scope (closing only).
pub const TENSOR_USE: &str = "TENSOR_USE";
/// Rules where an identifier is a use of a name in scope.
const USES: [&str; 2] = ["primary", "call"];
/// Rules that bring names into scope for what they hold.
const BINDERS: [&str; 2] = ["lambda", "block_expr"];

/// The grammar of the rest of a program whose loop grammar is `lp`
/// ([`super::derive`]`(Shape::Loop)`), from a body line's start.
pub fn rest(lp: &Grammar, r: &Rest) -> Grammar {
    if r.closing {
        return closing(lp, r);
    }
    let lit = |s: &str| Node::Lit(s.to_string());
    let refn = |s: &str| Node::Ref(s.to_string());
    let lets = super::let_lines(r.lets_left);
    let start = Def {
        name: "start".into(),
        token: false,
        body: Node::Seq(vec![
            lets,
            refn("return_stmt"),
            Node::Opt(Box::new(lit(";"))),
            Node::Opt(Box::new(lit("\n"))),
            lit("}"),
        ]),
    };
    let find = |name: &str| lp.defs.iter().find(|d| d.name == name);
    let mut defs = vec![start];
    let mut free_roots: Vec<String> = Vec::new();
    let mut todo: Vec<String> = vec!["let_stmt".into(), "return_stmt".into(), "LOOP_NL".into()];
    let mut seen: BTreeSet<String> = todo.iter().cloned().collect();
    while let Some(name) = todo.pop() {
        let Some(d) = find(&name) else { continue };
        let body = if USES.contains(&name.as_str()) {
            rename(&d.body, &|n| (n == "IDENT").then(|| NAME_USE.to_string()))
        } else if name == "kwarg" && !r.keywords.is_empty() {
            rename(&d.body, &|n| (n == "IDENT").then(|| KEYWORD.to_string()))
        } else if name == "block_expr" {
            // Without `let`s a block binds nothing: the names stay checked.
            let (none, some) = split_stars(&d.body);
            Node::Alt(vec![none, rename(&some, &|n| to_free(lp, n))])
        } else if BINDERS.contains(&name.as_str()) {
            rename(&d.body, &|n| to_free(lp, n))
        } else {
            d.body.clone()
        };
        let mut refs = Vec::new();
        super::collect_refs(&body, &mut refs);
        for x in refs {
            if let Some(base) = x.strip_suffix(FREE) {
                if seen.insert(x.clone()) {
                    free_roots.push(base.to_string());
                }
            } else if x != NAME_USE && x != KEYWORD && seen.insert(x.clone()) {
                todo.push(x);
            }
        }
        defs.push(Def {
            name: d.name.clone(),
            token: d.token,
            body,
        });
    }
    let free = free_copies(lp, free_roots);
    // The free copies' own tokens (IDENT, NUMBER, ...) come along.
    let mut refs = Vec::new();
    free.iter()
        .for_each(|d| super::collect_refs(&d.body, &mut refs));
    for x in refs {
        if !x.ends_with(FREE) && seen.insert(x.clone()) {
            defs.extend(find(&x).cloned());
        }
    }
    defs.extend(free);
    defs.push(Def {
        name: NAME_USE.into(),
        token: true,
        body: Node::Alt(r.names.iter().map(|n| lit(n)).collect()),
    });
    if !r.keywords.is_empty() {
        defs.push(Def {
            name: KEYWORD.into(),
            token: true,
            body: Node::Alt(r.keywords.iter().map(|n| lit(n)).collect()),
        });
    }
    Grammar {
        defs,
        skip: lp.skip.clone(),
        dropped: lp.dropped.clone(),
    }
}

const FREE: &str = "_free";

/// The `return` of a program that must finish now: arithmetic (`+ - * /`, parentheses)
/// of the names in scope and numbers that starts with a tensor's name (a return of
/// numbers alone is never a tensor), then `}`. A sub-language of the loop grammar.
fn closing(lp: &Grammar, r: &Rest) -> Grammar {
    let lit = |s: &str| Node::Lit(s.to_string());
    let refn = |s: &str| Node::Ref(s.to_string());
    let op = Node::Alt(["+", "-", "*", "/"].iter().map(|o| lit(o)).collect());
    let def = |name: &str, token: bool, body: Node| Def {
        name: name.into(),
        token,
        body,
    };
    let mut defs = vec![
        def(
            "start",
            false,
            Node::Seq(vec![
                lit("return"),
                refn("closing_expr"),
                Node::Opt(Box::new(lit(";"))),
                Node::Opt(Box::new(lit("\n"))),
                lit("}"),
            ]),
        ),
        def(
            "closing_expr",
            false,
            Node::Seq(vec![
                refn(TENSOR_USE),
                Node::Star(Box::new(Node::Seq(vec![op, refn("closing_operand")]))),
            ]),
        ),
        def(
            "closing_inner",
            false,
            Node::Seq(vec![
                refn("closing_operand"),
                Node::Star(Box::new(Node::Seq(vec![
                    Node::Alt(["+", "-", "*", "/"].iter().map(|o| lit(o)).collect()),
                    refn("closing_operand"),
                ]))),
            ]),
        ),
        def(
            "closing_operand",
            false,
            Node::Alt(vec![
                refn(NAME_USE),
                refn("NUMBER"),
                Node::Seq(vec![lit("("), refn("closing_inner"), lit(")")]),
            ]),
        ),
        def(
            NAME_USE,
            true,
            Node::Alt(r.names.iter().map(|n| lit(n)).collect()),
        ),
        def(
            TENSOR_USE,
            true,
            Node::Alt(r.tensors.iter().map(|n| lit(n)).collect()),
        ),
    ];
    defs.extend(lp.defs.iter().find(|d| d.name == "NUMBER").cloned());
    Grammar {
        defs,
        skip: lp.skip.clone(),
        dropped: lp.dropped.clone(),
    }
}

/// A rule's free copy's name (tokens keep theirs).
fn to_free(lp: &Grammar, name: &str) -> Option<String> {
    let d = lp.defs.iter().find(|d| d.name == name)?;
    (!d.token).then(|| format!("{name}{FREE}"))
}

/// Free copies of the `roots` and every rule they reach, each once.
fn free_copies(lp: &Grammar, roots: Vec<String>) -> Vec<Def> {
    let mut out: Vec<Def> = Vec::new();
    let mut todo = roots;
    let mut seen: BTreeSet<String> = todo.iter().cloned().collect();
    while let Some(name) = todo.pop() {
        let Some(d) = lp.defs.iter().find(|d| d.name == name) else {
            continue;
        };
        let mut refs = Vec::new();
        super::collect_refs(&d.body, &mut refs);
        for x in refs {
            if to_free(lp, &x).is_some() && seen.insert(x.clone()) {
                todo.push(x);
            }
        }
        out.push(Def {
            name: format!("{name}{FREE}"),
            token: false,
            body: rename(&d.body, &|n| to_free(lp, n)),
        });
    }
    out
}

/// `n` with the references `f` renames renamed.
fn rename(n: &Node, f: &dyn Fn(&str) -> Option<String>) -> Node {
    let all = |v: &[Node]| v.iter().map(|x| rename(x, f)).collect();
    match n {
        Node::Ref(r) => Node::Ref(f(r).unwrap_or_else(|| r.clone())),
        Node::Seq(v) => Node::Seq(all(v)),
        Node::Alt(v) => Node::Alt(all(v)),
        Node::Opt(x) => Node::Opt(Box::new(rename(x, f))),
        Node::Star(x) => Node::Star(Box::new(rename(x, f))),
        Node::Plus(x) => Node::Plus(Box::new(rename(x, f))),
        Node::Lit(_) | Node::Class(_) => n.clone(),
    }
}

/// A sequence `n` without its `*` items, and with them at least once (`+`).
fn split_stars(n: &Node) -> (Node, Node) {
    let Node::Seq(v) = n else {
        return (n.clone(), n.clone());
    };
    let none = v.iter().filter(|x| !matches!(x, Node::Star(_))).cloned();
    let some = v.iter().map(|x| match x {
        Node::Star(y) => Node::Plus(y.clone()),
        x => x.clone(),
    });
    (Node::Seq(none.collect()), Node::Seq(some.collect()))
}
