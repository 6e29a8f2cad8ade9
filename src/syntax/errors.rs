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

/// The word that ends just before `pos` (skipping spaces), if any.
fn word_before(src: &str, pos: usize) -> &str {
    let head = src[..pos.min(src.len())].trim_end_matches([' ', '\t']);
    let start = head
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    &head[start..]
}

/// The first non-blank character after the word at `pos`.
fn char_after_word(src: &str, pos: usize) -> Option<char> {
    let pos = pos.min(src.len());
    let rest = &src[pos + found_word(src, pos).len()..];
    rest.trim_start_matches([' ', '\t']).chars().next()
}

/// The word after the token at `pos` (the token itself skipped), e.g. `elif` after `}`.
fn next_word(src: &str, pos: usize) -> &str {
    let pos = pos.min(src.len());
    let skip = found_word(src, pos)
        .len()
        .max(src[pos..].chars().next().map_or(0, char::len_utf8));
    let rest = src[pos + skip..].trim_start();
    found_word(rest, 0)
}

const KEYWORDS: [&str; 11] = [
    "merge", "fn", "let", "return", "if", "else", "true", "false", "and", "or", "not",
];

/// Hints for the mistakes a Python- or Rust-trained writer makes most.
fn hint_for(src: &str, pos: usize, expected: &[String]) -> Option<String> {
    let word = found_word(src, pos);
    let at = src[pos.min(src.len())..].chars().next();
    let before = word_before(src, pos);
    let after = char_after_word(src, pos);
    let eq_follows = after == Some('=') && !src[pos.min(src.len())..].contains("==");
    Some(match (word, at) {
        ("def", _) => "merges are written `merge name(base: Tensor, models: [Tensor]) -> Tensor { ... }`; helpers `fn name(x: Tensor) -> Tensor { ... }`".into(),
        ("for" | "while" | "loop", _) => "there are no loops: arithmetic applies to every model in a list (`models - base`); use sum/mean/max over lists, or fold(list, |acc, x| ...)".into(),
        ("import" | "from", _) => "there is nothing to import: every builtin is always in scope (see `mergec methods` and docs/language.md)".into(),
        _ if word == "lambda" || before == "lambda" => "lambdas are written `|acc, x| expression`, and only as the last argument of fold or repeat".into(),
        _ if word == "elif" || next_word(src, pos) == "elif" => "write `else if`".into(),
        ("var" | "const" | "val", _) => "bindings are written `let name = expression`".into(),
        (_, Some('.')) if !before.is_empty() => format!(
            "there are no modules or methods: call builtins directly, e.g. mean(x, axis=1) instead of {before}.mean(...)"
        ),
        (_, Some(':')) => "blocks use braces, not colons: `if cond { a } else { b }`".into(),
        (w, _) if KEYWORDS.contains(&w) && expected.iter().any(|e| e == "a name") => {
            format!("`{w}` is a reserved word; choose another name")
        }
        (w, _) if !w.is_empty() && eq_follows => format!(
            "bindings start with `let`: `let {w} = expression` (a name cannot be assigned twice)"
        ),
        _ if expected.len() == 1 && expected[0] == "`->`" => {
            "declare the result type after the parameters: `merge name(...) -> Tensor { ... }`".into()
        }
        (_, None) if expected.iter().any(|e| e == "`}`") => {
            "a `{` is never closed: add `}`".into()
        }
        _ if expected.iter().any(|e| e == "`)`") => "a `(` is not closed: add `)`".into(),
        _ => return None,
    })
}

/// Whether an expected token is noise for a reader: character classes and single
/// characters from inside names and numbers, or already said by a description.
fn noise(t: &str, words: &[String]) -> bool {
    const EXPR_START: [&str; 11] = [
        "!", "(", "-", "[", "{", "|", "if", "not", "true", "false", "\"",
    ];
    const OPERATORS: [&str; 18] = [
        "!=", "&&", "**", "*", "+", "-", "/", "<=", "<", "==", ">=", ">", "and", "or", "||", "=",
        "!", "not",
    ];
    let has = |w: &str| words.iter().any(|x| x == w);
    let single = t.chars().count() == 1 && (t.chars().all(|c| c.is_alphanumeric()) || t == "_");
    single
        || t == "."
        || (t.len() == 4 && t.get(1..3) == Some(".."))
        || (has("an expression") && EXPR_START.contains(&t))
        || (has("an operator") && OPERATORS.contains(&t))
}

pub fn pest_error_to_diagnostic(e: &Error<Rule>, src: &str) -> Diagnostic {
    let (mut start, mut end) = match e.location {
        InputLocation::Pos(p) => (p, p),
        InputLocation::Span((s, e)) => (s, e),
    };
    let mut words: Vec<String> = Vec::new();
    if let ErrorVariant::ParsingError { positives, .. } = &e.variant {
        words.extend(
            positives
                .iter()
                .filter_map(|r| rule_words(*r))
                .map(String::from),
        );
    }
    let mut tokens: Vec<String> = Vec::new();
    if let Some(attempts) = e.parse_attempts() {
        tokens = attempts
            .expected_tokens()
            .iter()
            .map(|t| t.to_string())
            .filter(|t| {
                !t.is_empty()
                    && t.len() <= 8
                    && !t.chars().any(char::is_whitespace)
                    && t != "#"
                    && t != "\""
            })
            .collect();
        // pest places the error where the last rule started; its token attempts know
        // how far the parse really got (e.g. at the `{` of a merge missing `-> Tensor`).
        if attempts.max_position > start && tokens.iter().any(|t| !noise(t, &[])) {
            (start, end) = (attempts.max_position, attempts.max_position);
            words.clear();
        } else if attempts.max_position != start {
            tokens.clear();
        }
    }
    if words.iter().any(|w| w == "a name") && tokens.iter().any(|t| t == "(") {
        words.push("an expression".into());
    }
    let mut expected: Vec<String> = tokens
        .iter()
        .filter(|t| !noise(t, &words))
        .map(|t| format!("`{t}`"))
        .collect();
    expected.extend(
        words
            .iter()
            .filter(|w| *w != "a name" || !words.iter().any(|x| x == "an expression"))
            .cloned(),
    );
    let found = found_at(src, start);
    let message = if let ErrorVariant::CustomError { message } = &e.variant {
        message.clone()
    } else {
        format!(
            "expected {}, found {found}",
            join_alternatives(expected.clone())
        )
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
        .with_hint_opt(hint_for(src, start, &expected))
}
