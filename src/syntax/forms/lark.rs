//! The Lark form: rules in lower case, terminals (pest's atomic rules) in upper case as
//! regular expressions, whitespace and comments `%ignore`d, `start` first. Written for
//! the common ground of llguidance (Rust `regex` syntax, no lookarounds) and Python's
//! `lark` (Python `re`): only classes, groups `(?:...)`, `|`, `?`, `*`, `+`.

use super::{Class, Grammar, Node};
use std::fmt::Write;

/// The grammar as Lark text.
pub fn render(g: &Grammar) -> String {
    let mut out = String::from(
        "// The mergec language, derived from grammar/merge.pest by `mergec grammar --format lark`.\n",
    );
    for note in &g.dropped {
        let _ = writeln!(out, "// dropped (no context-free counterpart): {note}");
    }
    for d in &g.defs {
        if d.token {
            let _ = writeln!(out, "{}: /{}/", d.name, regex(&d.body, 0));
        } else {
            let _ = writeln!(out, "{}: {}", d.name, rule(&d.body, 0));
        }
    }
    // One ignored terminal: pest skips `(WHITESPACE | COMMENT)*` (llguidance keeps only
    // one `%ignore`).
    let skip: Vec<String> = g.skip.iter().map(|(_, body)| regex(body, 0)).collect();
    let _ = writeln!(out, "SKIP: /(?:{})+/", skip.join("|"));
    out.push_str("%ignore SKIP\n");
    out
}

/// Binding strength of a context: 0 top (alternatives bare), 1 in a sequence
/// (alternatives grouped), 2 under a postfix operator (sequences grouped too).
fn rule(n: &Node, ctx: u8) -> String {
    let group = |s: String, need: bool| if need { format!("({s})") } else { s };
    match n {
        Node::Lit(s) => quote(s),
        Node::Class(c) => format!("/{}/", class(c)),
        Node::Ref(r) => r.clone(),
        Node::Seq(v) if v.is_empty() => "\"\"".into(),
        Node::Seq(v) if v.len() == 1 => rule(&v[0], ctx),
        Node::Seq(v) => group(
            v.iter().map(|x| rule(x, 1)).collect::<Vec<_>>().join(" "),
            ctx >= 2,
        ),
        Node::Alt(v) => group(
            v.iter().map(|x| rule(x, 0)).collect::<Vec<_>>().join(" | "),
            ctx >= 1,
        ),
        Node::Opt(x) => format!("{}?", rule(x, 2)),
        Node::Star(x) => format!("{}*", rule(x, 2)),
        Node::Plus(x) => format!("{}+", rule(x, 2)),
    }
}

fn quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A terminal's body as a regular expression (same binding contexts as [`rule`]).
pub fn regex(n: &Node, ctx: u8) -> String {
    let group = |s: String, need: bool| if need { format!("(?:{s})") } else { s };
    match n {
        Node::Lit(s) => {
            let e: String = s.chars().map(|c| escape(c, false)).collect();
            group(e, ctx >= 2 && s.chars().count() > 1)
        }
        Node::Class(c) => class(c),
        Node::Ref(r) => panic!("terminal refers to `{r}`: derive inlines terminals"),
        Node::Seq(v) if v.len() == 1 => regex(&v[0], ctx),
        Node::Seq(v) => group(v.iter().map(|x| regex(x, 1)).collect(), ctx >= 2),
        Node::Alt(v) => group(
            v.iter().map(|x| regex(x, 0)).collect::<Vec<_>>().join("|"),
            ctx >= 1,
        ),
        Node::Opt(x) => format!("{}?", regex(x, 2)),
        Node::Star(x) => format!("{}*", regex(x, 2)),
        Node::Plus(x) => format!("{}+", regex(x, 2)),
    }
}

/// `c` in a regular expression, escaped where Rust's `regex` or Python's `re` (or
/// Lark's `/` delimiter) gives it a meaning; `in_class`: inside `[...]`.
fn escape(c: char, in_class: bool) -> String {
    let special = if in_class {
        "\\[]^-/"
    } else {
        "\\.+*?()|[]{}^$/"
    };
    match c {
        '\n' => "\\n".into(),
        '\t' => "\\t".into(),
        '\r' => "\\r".into(),
        c if special.contains(c) => format!("\\{c}"),
        c => c.to_string(),
    }
}

fn class(c: &Class) -> String {
    let (neg, set) = match c {
        Class::Of(s) => ("", s),
        Class::Not(s) => ("^", s),
    };
    if neg.is_empty() && set.len() == 1 {
        return escape(*set.iter().next().expect("one"), false);
    }
    if !neg.is_empty() && set.is_empty() {
        return "(?s:.)".into();
    }
    super::bracket(set, !neg.is_empty(), &|c| escape(c, true))
}
