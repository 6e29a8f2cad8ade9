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
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rest {
    /// Values and functions in scope (parameters, `let`s, builtins, tensor facts).
    pub names: BTreeSet<String>,
    /// Keyword arguments' names (the callable functions' parameters).
    pub keywords: BTreeSet<String>,
    /// `let` lines the body may still have.
    pub lets_left: usize,
    /// Only a short `return` is left ([`closing`]).
    pub closing: bool,
    /// The names that hold a tensor (or a mask), by their checked types. When closing,
    /// the `return` starts with one. Otherwise, if any are given, the values of the
    /// body are typed by the grammar: see [`typed_defs`].
    pub tensors: BTreeSet<String>,
    /// The names that hold a list, and those of them that hold tensors (`models`).
    pub lists: BTreeSet<String>,
    pub tensor_lists: BTreeSet<String>,
    /// The functions a merge may call (when typed).
    pub calls: Vec<Callable>,
    /// The type names a `let` may declare (`Tensor` among them).
    pub types: BTreeSet<String>,
}

/// Functions that [`Rest`]'s values may call, with the same parameters, and the same
/// kinds of value their calls can give and their first argument must have: one grammar
/// rule for them all (with a rule per function, llguidance took about 9.4 ms to compile
/// a typed line grammar on the 2-core machine; so, about 8 ms; untyped, 3.9 ms).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Callable {
    pub names: Vec<String>,
    pub params: Vec<String>,
    pub gives: Kinds,
    pub wants: Kinds,
}

/// Kinds of value: which of a scalar, a tensor (or mask) and a list it can be (the
/// builtin table says which for each function: `types::builtins::Builtin::gives`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kinds {
    pub scalar: bool,
    pub tensor: bool,
    pub list: bool,
}

impl Kinds {
    pub const fn new(scalar: bool, tensor: bool, list: bool) -> Kinds {
        Kinds {
            scalar,
            tensor,
            list,
        }
    }
}

/// The terminals of a name in scope and of a keyword argument's name.
pub const NAME_USE: &str = "NAME_USE";
pub const KEYWORD: &str = "KEYWORD_NAME";
/// The terminals of a tensor's name in scope, a list's, and a list of tensors'.
pub const TENSOR_USE: &str = "TENSOR_USE";
const LIST_USE: &str = "LIST_USE";
const TENSOR_LIST: &str = "TENSOR_LIST_USE";
/// The declared type whose value must be able to be a tensor.
const TENSOR: &str = "Tensor";
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
    let typed = if r.tensors.is_empty() {
        vec![]
    } else {
        typed_defs(r)
    };
    let find = |name: &str| {
        let here = |d: &&Def| d.name == name;
        typed
            .iter()
            .find(here)
            .or_else(|| lp.defs.iter().find(here))
    };
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
    let mut tokens = vec![(NAME_USE.to_string(), r.names.clone())];
    if !typed.is_empty() {
        tokens.extend([
            (TENSOR_USE.to_string(), r.tensors.clone()),
            (LIST_USE.to_string(), r.lists.clone()),
            (TENSOR_LIST.to_string(), r.tensor_lists.clone()),
        ]);
        for (i, c) in r.calls.iter().enumerate() {
            tokens.push((functions_of(i), c.names.iter().cloned().collect()));
            tokens.push((keywords_of(i), c.params.iter().cloned().collect()));
        }
    }
    tokens.push((KEYWORD.to_string(), r.keywords.clone()));
    for (name, words) in tokens.into_iter().filter(|(_, w)| !w.is_empty()) {
        defs.push(Def {
            name,
            token: true,
            body: Node::Alt(words.iter().map(|n| lit(n)).collect()),
        });
    }
    Grammar {
        defs,
        skip: lp.skip.clone(),
        dropped: lp.dropped.clone(),
    }
}

const FREE: &str = "_free";

/// The rules that type the values of the body when the types of the names are known
/// (they replace the loop grammar's `return_stmt`, `let_stmt` and `call`):
/// - a value that must be a tensor (the `return`'s, a `let` declared `: Tensor`) has an
///   operand that can be one: a tensor's name, a list of tensors' name indexed, a call
///   that can give one (or a list, indexed), a parenthesis of such a value, an `if` or a
///   block (`tensor_expr`);
/// - a call has at most as many arguments as its function has parameters, named by
///   them; a first argument that must be a list, or a tensor or a list, has an operand
///   that can be one (`sum(1.0 ...` and `len(base ...` are never drawn);
/// - a declared type is one of [`Rest::types`], or a list of one.
///
/// Operands are judged by what they can be, so no program that checks is ruled out
/// (`abs(x)` can be anything).
fn typed_defs(r: &Rest) -> Vec<Def> {
    let lit = |s: &str| Node::Lit(s.to_string());
    let refn = |s: &str| Node::Ref(s.to_string());
    let seq = |v: Vec<Node>| Node::Seq(v);
    let star = |n: Node| Node::Star(Box::new(n));
    let calls = |f: &dyn Fn(&Kinds) -> bool| {
        let v: Vec<Node> = r
            .calls
            .iter()
            .enumerate()
            .filter(|(_, c)| f(&c.gives))
            .map(|(i, _)| refn(&call_rule(i)))
            .collect();
        (!v.is_empty()).then_some(Node::Alt(v))
    };
    let mut tensor = vec![refn(TENSOR_USE)];
    let mut list = vec![refn("array")];
    if !r.tensor_lists.is_empty() {
        tensor.push(seq(vec![refn(TENSOR_LIST), refn("index")]));
    }
    if !r.lists.is_empty() {
        list.push(refn(LIST_USE));
    }
    tensor.extend(calls(&|k| k.tensor));
    if let Some(c) = calls(&|k| k.list) {
        tensor.push(seq(vec![c.clone(), refn("index")]));
        list.push(c);
    }
    let def = |name: &str, body: Node| Def {
        name: name.into(),
        token: false,
        body,
    };
    let mut defs = Vec::new();
    for (kind, mut primary) in [("tensor", tensor), ("list", list)] {
        let expr = format!("{kind}_expr");
        let operand = format!("{kind}_operand");
        primary.extend([
            seq(vec![lit("("), refn(&expr), lit(")")]),
            refn("if_expr"),
            refn("block_expr"),
        ]);
        defs.extend([
            def(&expr, some_operand(&operand)),
            def(
                &operand,
                seq(vec![
                    star(refn("prefix")),
                    refn(&format!("{kind}_primary")),
                    star(refn("postfix")),
                ]),
            ),
            def(&format!("{kind}_primary"), Node::Alt(primary)),
        ]);
    }
    defs.push(def(
        "either_expr",
        Node::Alt(vec![refn("tensor_expr"), refn("list_expr")]),
    ));
    let names = |f: &dyn Fn(&str) -> bool| {
        Node::Alt(r.types.iter().filter(|t| f(t)).map(|t| lit(t)).collect())
    };
    let other_type = Node::Alt(vec![
        names(&|t| t != TENSOR),
        seq(vec![lit("["), names(&|_| true), lit("]")]),
    ]);
    let let_as = |ty: Option<Node>, value: &str| {
        let declared = ty.map(|t| vec![lit(":"), t]).unwrap_or_default();
        let head = vec![lit("let"), refn("IDENT")];
        seq([head, declared, vec![lit("="), refn(value)]].concat())
    };
    defs.extend([
        def("return_stmt", seq(vec![lit("return"), refn("tensor_expr")])),
        def(
            "let_stmt",
            Node::Alt(vec![
                let_as(None, "expr"),
                let_as(Some(lit(TENSOR)), "tensor_expr"),
                let_as(Some(other_type), "expr"),
            ]),
        ),
        def(
            "call",
            Node::Alt((0..r.calls.len()).map(|i| refn(&call_rule(i))).collect()),
        ),
    ]);
    defs.extend(
        r.calls
            .iter()
            .enumerate()
            .map(|(i, c)| def(&call_rule(i), call_body(i, c))),
    );
    defs
}

/// `(operand infix)* <operand> (infix operand)*`: an expression with at least one
/// operand of rule `operand`.
fn some_operand(operand: &str) -> Node {
    let refn = |s: &str| Node::Ref(s.to_string());
    let star = |n: Node| Node::Star(Box::new(n));
    Node::Seq(vec![
        star(Node::Seq(vec![refn("operand"), refn("infix")])),
        refn(operand),
        star(Node::Seq(vec![refn("infix"), refn("operand")])),
    ])
}

/// The rule of a call of `f`, and the terminal of its parameters' names.
fn call_rule(i: usize) -> String {
    format!("call_{i}")
}
fn keywords_of(i: usize) -> String {
    format!("KW_{i}")
}
fn functions_of(i: usize) -> String {
    format!("FN_{i}")
}

/// A call of `c`: `f()`, or its arguments (at most one per parameter; named ones by
/// its parameters' names), the first of the kind it wants, and a trailing comma.
fn call_body(i: usize, c: &Callable) -> Node {
    let lit = |s: &str| Node::Lit(s.to_string());
    let refn = |s: &str| Node::Ref(s.to_string());
    let seq = |v: Vec<Node>| Node::Seq(v);
    let opt = |n: Node| Node::Opt(Box::new(n));
    let (kw, name) = (keywords_of(i), refn(&functions_of(i)));
    let Some(first_param) = c.params.first() else {
        return seq(vec![name, lit("("), lit(")")]);
    };
    let arg = Node::Alt(vec![
        seq(vec![refn(&kw), lit("="), refn("expr")]),
        refn("expr"),
    ]);
    let w = c.wants;
    let first = if w.scalar {
        arg.clone()
    } else {
        let value = match (w.tensor, w.list) {
            (true, true) => "either_expr",
            (false, true) => "list_expr",
            _ => "tensor_expr",
        };
        let others: Vec<Node> = c.params[1..].iter().map(|p| lit(p)).collect();
        let mut v = vec![
            refn(value),
            seq(vec![lit(first_param), lit("="), refn(value)]),
        ];
        if !others.is_empty() {
            v.push(seq(vec![Node::Alt(others), lit("="), refn("expr")]));
        }
        Node::Alt(v)
    };
    // `("," (arg ("," (arg ","?)?)?)?)?` for the parameters after the first.
    let mut tail = opt(lit(","));
    for _ in 1..c.params.len() {
        tail = opt(seq(vec![lit(","), opt(seq(vec![arg.clone(), tail]))]));
    }
    seq(vec![name, lit("("), opt(seq(vec![first, tail])), lit(")")])
}

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
