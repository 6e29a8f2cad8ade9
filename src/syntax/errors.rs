//! Pest's errors in words: rule names become what a person would call them.

use super::parse::Rule;
use crate::diag::{Diagnostic, Span};
use pest::error::{Error, ErrorVariant, InputLocation};

/// What a grammar rule is called in a message, or `None` to leave it out.
fn rule_words(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "end of file",
        Rule::merge_def => "`merge`",
        Rule::fn_def => "`fn`",
        Rule::ident | Rule::keyword => "a name",
        Rule::type_expr | Rule::list_type => "a type",
        Rule::param | Rule::params => "a parameter",
        Rule::let_stmt => "`let`",
        Rule::return_stmt => "`return`",
        Rule::expr
        | Rule::primary
        | Rule::operand
        | Rule::number
        | Rule::boolean
        | Rule::string
        | Rule::paren
        | Rule::call
        | Rule::array
        | Rule::lambda
        | Rule::if_expr => "an expression",
        Rule::or_op
        | Rule::and_op
        | Rule::eq
        | Rule::ne
        | Rule::le
        | Rule::ge
        | Rule::lt
        | Rule::gt
        | Rule::add
        | Rule::sub
        | Rule::mul
        | Rule::div
        | Rule::pow
        | Rule::infix => "an operator",
        Rule::neg | Rule::not | Rule::prefix => "an expression",
        Rule::index | Rule::postfix => "`[`",
        Rule::args | Rule::arg | Rule::kwarg => "an argument",
        Rule::block_expr | Rule::body => "`{`",
        _ => return None,
    })
}

fn join_alternatives(mut words: Vec<String>) -> String {
    words.sort();
    words.dedup();
    // Put plain tokens first, descriptions after, for readability.
    words.sort_by_key(|w| !w.starts_with('`'));
    match words.len() {
        0 => "something else".to_string(),
        1 => words.remove(0),
        _ => {
            let last = words.pop().unwrap_or_default();
            format!("{} or {last}", words.join(", "))
        }
    }
}

/// The token found at `pos`, in words.
fn found_at(src: &str, pos: usize) -> String {
    let rest = &src[pos.min(src.len())..];
    let Some(c) = rest.chars().next() else {
        return "end of file".to_string();
    };
    if c.is_alphanumeric() || c == '_' {
        let word: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
            .take(24)
            .collect();
        format!("`{word}`")
    } else if c == '\n' {
        "end of line".to_string()
    } else {
        format!("`{c}`")
    }
}

fn found_word(src: &str, pos: usize) -> &str {
    let rest = &src[pos.min(src.len())..];
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// Hints for the mistakes a Python- or Rust-trained writer makes most.
fn hint_for(src: &str, pos: usize) -> Option<String> {
    let word = found_word(src, pos);
    let next = src[pos.min(src.len())..].chars().next();
    Some(match (word, next) {
        ("def", _) => "merges are written `merge name(base: Tensor, models: [Tensor]) -> Tensor { ... }`; helpers `fn name(x: Tensor) -> Tensor { ... }`".into(),
        ("for" | "while" | "loop", _) => "there are no loops: arithmetic applies to every model in a list (`models - base`); use sum/mean/max over lists, or fold(list, |acc, x| ...)".into(),
        ("import" | "from", _) => "there is nothing to import: every builtin is always in scope (see `mergec methods` and docs/language.md)".into(),
        ("lambda", _) => "lambdas are written `|acc, x| expression`".into(),
        ("elif", _) => "write `else if`".into(),
        ("var" | "const" | "val", _) => "bindings are written `let name = expression`".into(),
        (_, Some(':')) => "blocks use braces, not colons: `if cond { a } else { b }`".into(),
        (_, Some('=')) => "bindings start with `let`: `let name = expression`".into(),
        _ => return None,
    })
}

pub fn pest_error_to_diagnostic(e: &Error<Rule>, src: &str) -> Diagnostic {
    let (start, end) = match e.location {
        InputLocation::Pos(p) => (p, p),
        InputLocation::Span((s, e)) => (s, e),
    };
    let mut expected: Vec<String> = Vec::new();
    if let ErrorVariant::ParsingError { positives, .. } = &e.variant {
        expected.extend(
            positives
                .iter()
                .filter_map(|r| rule_words(*r))
                .map(String::from),
        );
    }
    if let Some(attempts) = e.parse_attempts()
        && attempts.max_position == start
    {
        for tok in attempts.expected_tokens() {
            let t = tok.to_string();
            if !t.is_empty()
                && t.len() <= 8
                && !t.chars().any(char::is_whitespace)
                && t != "#"
                && t != "\""
            {
                expected.push(format!("`{t}`"));
            }
        }
    }
    let found = found_at(src, start);
    let message = if let ErrorVariant::CustomError { message } = &e.variant {
        message.clone()
    } else {
        format!("expected {}, found {found}", join_alternatives(expected))
    };
    // A one-character span so the caret shows where the problem is.
    let end = if end > start {
        end
    } else {
        src[start.min(src.len())..]
            .chars()
            .next()
            .map_or(start, |c| start + c.len_utf8())
    };
    Diagnostic::error(Span::new(start, end), message)
        .with_label(format!("unexpected {found}"))
        .with_hint_opt(hint_for(src, start))
}
