//! The GBNF form (llama.cpp's grammars): character-level, so pest's implicit whitespace
//! and comments between items become an explicit `ws` rule; rule names use `-` for `_`
//! (GBNF names are letters, digits and `-`); the start rule is `root`.

use super::{Class, Grammar, Node};
use std::fmt::Write;

/// The grammar as GBNF text.
pub fn render(g: &Grammar) -> String {
    let mut out = String::from(
        "# The mergec language, derived from grammar/merge.pest by `mergec grammar --format gbnf`.\n",
    );
    for note in &g.dropped {
        let _ = writeln!(out, "# dropped (no context-free counterpart): {note}");
    }
    for (i, d) in g.defs.iter().enumerate() {
        let name = if i == 0 { "root".into() } else { name(&d.name) };
        let body = if i == 0 {
            // Whitespace and comments may open and close a program.
            format!("ws {} ws", expr(&d.body, !d.token, 1))
        } else {
            expr(&d.body, !d.token, 0)
        };
        let _ = writeln!(out, "{name} ::= {body}");
    }
    let skip: Vec<String> = g.skip.iter().map(|(_, n)| expr(n, false, 0)).collect();
    let _ = writeln!(out, "ws ::= ({})*", skip.join(" | "));
    out
}

fn name(n: &str) -> String {
    let lower = n.to_ascii_lowercase().replace('_', "-");
    // Terminals and rules share one namespace here: keep terminals apart.
    if n.chars().any(|c| c.is_ascii_uppercase()) {
        format!("t-{lower}")
    } else {
        lower
    }
}

/// `spaced`: items of sequences and repetitions are separated by `ws` (a rule's body).
/// `ctx`: 0 top, 1 in a sequence, 2 under a postfix operator.
fn expr(n: &Node, spaced: bool, ctx: u8) -> String {
    let group = |s: String, need: bool| if need { format!("({s})") } else { s };
    match n {
        Node::Lit(s) => quote(s),
        Node::Class(c) => class(c),
        Node::Ref(r) => name(r),
        Node::Seq(v) if v.is_empty() => "\"\"".into(),
        Node::Seq(v) if v.len() == 1 => expr(&v[0], spaced, ctx),
        Node::Seq(v) => group(seq(v, spaced), ctx >= 2),
        Node::Alt(v) => group(
            v.iter()
                .map(|x| expr(x, spaced, 0))
                .collect::<Vec<_>>()
                .join(" | "),
            ctx >= 1,
        ),
        Node::Opt(x) => format!("{}?", expr(x, spaced, 2)),
        Node::Star(x) if spaced => format!("({})?", repeat(x)),
        Node::Plus(x) if spaced => group(repeat(x), ctx >= 2),
        Node::Star(x) => format!("{}*", expr(x, spaced, 2)),
        Node::Plus(x) => format!("{}+", expr(x, spaced, 2)),
    }
}

/// One or more `x` with whitespace between.
fn repeat(x: &Node) -> String {
    let one = expr(x, true, 2);
    format!("{one} (ws {one})*")
}

/// A spaced sequence: `ws` before each item but the first, inside an optional or
/// repeated item's group so that an absent item leaves one `ws`, not two.
fn seq(v: &[Node], spaced: bool) -> String {
    if !spaced {
        return v
            .iter()
            .map(|x| expr(x, false, 1))
            .collect::<Vec<_>>()
            .join(" ");
    }
    let mut parts = vec![expr(&v[0], true, 1)];
    for x in &v[1..] {
        parts.push(match x {
            Node::Opt(y) => format!("(ws {})?", expr(y, true, 1)),
            Node::Star(y) => format!("(ws {})*", expr(y, true, 1)),
            Node::Plus(y) => format!("(ws {})+", expr(y, true, 1)),
            y => format!("ws {}", expr(y, true, 1)),
        });
    }
    parts.join(" ")
}

fn quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        o.push_str(&esc(c, false));
    }
    o.push('"');
    o
}

fn esc(c: char, in_class: bool) -> String {
    match c {
        '\n' => "\\n".into(),
        '\t' => "\\t".into(),
        '\r' => "\\r".into(),
        '"' if !in_class => "\\\"".into(),
        '\\' => "\\\\".into(),
        ']' | '[' | '-' | '^' if in_class => format!("\\{c}"),
        c => c.to_string(),
    }
}

fn class(c: &Class) -> String {
    let (neg, set) = match c {
        Class::Of(s) => ("", s),
        Class::Not(s) => ("^", s),
    };
    if neg.is_empty() && set.len() == 1 {
        return quote(&set.iter().next().expect("one").to_string());
    }
    if !neg.is_empty() && set.is_empty() {
        // Any character: GBNF has no `.`; all but a byte no text has.
        return "[^\\x00]".into();
    }
    super::bracket(set, !neg.is_empty(), &|c| esc(c, true))
}
