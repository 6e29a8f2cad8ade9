//! What grammar-guided decoding accepts from a generator: a program prefix that can
//! still become one runnable, well-typed merge ([`program_fit`]), for
//! [`crate::model::sample::Guide`]. Used by the `local:` and `tiny` generators.

mod doomed;
mod scope;

pub(crate) use scope::typed_names;
pub use scope::{Known, loop_mask, rest_grammar};

use crate::model::mask::GrammarMask;
use crate::model::sample::{Fit, Guide};

/// The viability of a program prefix for guided decoding: a viable prefix of the
/// language with names resolved ([`crate::prefix`], strict), with a runnable
/// merge header ([`header_fits`]), within [`tidy`] limits (so a small model cannot
/// wander off into endless comments, names, numbers or blank space that the grammar
/// allows), one statement per line, and type-checked at every statement boundary (and
/// at the header's end): the program closed there (`return base }`) must have no error
/// before that point. A whole program must pass the checker.
pub fn program_fit(text: &str) -> Fit {
    use crate::prefix::{PrefixOptions, Viability, check_prefix};
    const STRICT: PrefixOptions = PrefixOptions {
        scoped: true,
        strict: true,
    };
    if !tidy(text) || !header_fits(text) {
        return Fit::No;
    }
    match check_prefix(text, &STRICT) {
        Viability::Invalid => Fit::No,
        Viability::Complete => {
            if crate::types::check_source(text).is_ok() {
                Fit::Whole
            } else {
                Fit::No
            }
        }
        Viability::Incomplete => {
            // Statement boundaries: the program closed right there must check up to
            // there. A line ends only at one (or right after the header). Tokens may
            // hold a newline and indentation, so the boundary is the last newline when
            // only blanks follow it.
            let Some(header_end) = text.find('{') else {
                return Fit::Prefix;
            };
            let trimmed = text.trim_end();
            let last_nl = text
                .rfind('\n')
                .filter(|&i| text[i + 1..].trim().is_empty());
            // The line a newline just ended, if it was the `return`: then only `}`
            // is missing.
            let returned = last_nl.is_some_and(|i| {
                text[..i]
                    .rsplit('\n')
                    .next()
                    .is_some_and(|l| l.trim_start().starts_with("return "))
            });
            let (upto, probe) = if trimmed.len() == header_end + 1 {
                (trimmed, format!("{trimmed}\nreturn base\n}}"))
            } else if let Some(i) = last_nl
                && returned
            {
                (&text[..=i], format!("{}}}", &text[..=i]))
            } else if let Some(i) = last_nl {
                (&text[..=i], format!("{}return base\n}}", &text[..=i]))
            } else if trimmed.ends_with(';') {
                (trimmed, format!("{trimmed}\nreturn base\n}}"))
            } else if let Some(k) = doomed::doomed_group(text)
                .or_else(|| doomed::doomed_element(text))
                .or_else(|| doomed::uncallable(text))
            {
                return Fit::Lost(k);
            } else if doomed::doomed_line(text) {
                return Fit::No;
            } else {
                return Fit::Prefix;
            };
            if check_prefix(&probe, &STRICT) != Viability::Complete {
                let right_after_header = text[header_end + 1..upto.len().max(header_end + 1)]
                    .trim()
                    .is_empty();
                if last_nl.is_some() && !right_after_header {
                    return Fit::No;
                }
            } else if let Err(diags) = crate::types::check_source(&probe)
                && let Some(first) = diags
                    .iter()
                    .map(|d| d.span.start)
                    .filter(|&k| k < upto.len())
                    .min()
            {
                // A type error in the line just ended: it is redone from there.
                let line_start = upto.trim_end().rfind('\n').map_or(0, |i| i + 1);
                return if first >= line_start && line_start > header_end {
                    Fit::Lost(first)
                } else {
                    Fit::No
                };
            }
            Fit::Prefix
        }
    }
}

/// The guide of program sampling: [`program_fit`]'s rules, lines ending as soon as they
/// can after [`SOFT_LINE`] characters; with `mask` (see [`loop_mask`]), tokens are drawn
/// only from those the grammar allows.
pub fn program_guide<'a>(pieces: &'a [Option<String>], mask: Option<&'a GrammarMask>) -> Guide<'a> {
    let mut g = Guide::new(pieces, &program_fit);
    g.mask = mask;
    g.closing = Some(&closing_fit);
    g.soft_line = SOFT_LINE;
    g.soft_header = SOFT_HEADER;
    g.soft_word = MAX_WORD;
    g
}

/// Headers this long close their parameter list as soon as they can: a header must fit
/// in [`tidy`]'s 200 characters, and one cannot be redone.
pub const SOFT_HEADER: usize = 150;

/// [`program_fit`] for a program that must finish: the body line being written must be
/// the `return` (or the closing `}`), of at most [`CLOSING_LINE`] characters.
fn closing_fit(text: &str) -> Fit {
    if let Some(i) = text.rfind('\n')
        && text.find('{').is_some_and(|h| h < i)
    {
        let l = text[i + 1..].trim_start();
        if l.len() > CLOSING_LINE {
            return Fit::No;
        }
        if !(starts_with_word(l, "return") || l.starts_with('}')) {
            return Fit::No;
        }
    }
    program_fit(text)
}

/// Longest `return` line of a program that must finish (long ones were mostly
/// `+ 1.0 + 1.0 ...` loops that never became a tensor).
const CLOSING_LINE: usize = 64;

/// Body lines this long end at their first statement boundary (see [`Guide::soft_line`]).
pub const SOFT_LINE: usize = 80;

/// Parameters of a guided merge besides `base` and `models`.
pub const MAX_PARAMS: usize = 6;
/// Statements (lines) of a guided merge body; then it must return.
pub const MAX_STATEMENTS: usize = 8;
/// Longest word (name, keyword, number's digits and letters) of a guided program.
pub const MAX_WORD: usize = 32;
/// Longest body line of a guided program.
const MAX_LINE: usize = 120;

/// Layout limits of guided programs: no comments or tabs, the header on one line (at
/// most 200 characters), no blank lines, at most [`MAX_STATEMENTS`] statements before
/// the `return` and nothing but `}` after it, body lines of at most 120 characters, words
/// of at most 32 characters, numbers of at most 12 digits and no runs of more than 8
/// spaces; body lines [`plain_line`]s, and no `return` of a list literal (a list,
/// unless indexed). (SmolLM2 at temperature 1.0 wrote `return [mixed, total, ...` and
/// `max(sum_all(x = sum_all(x = sqrt(sum_all(...` to the line limit: a third of the
/// text it dropped.)
pub fn tidy(text: &str) -> bool {
    if text.contains(['#', '\t', '\r']) || text.contains("         ") {
        return false;
    }
    // One line of header; no blank (or whitespace-only) lines.
    let header_end = text.find('{').unwrap_or(text.len());
    if text[..header_end].contains('\n') {
        return false;
    }
    let mut blank = false;
    let mut returned = false;
    for (i, line) in text.split('\n').enumerate().skip(1) {
        let l = line.trim();
        // After the return, only `}`, unindented (an indented line there is a dead end
        // for a model that then expects code, not a brace).
        if blank || l.len() > MAX_LINE || (returned && (l != line || !"}".starts_with(l))) {
            return false;
        }
        returned = l.starts_with("return ");
        if (returned && l["return ".len()..].trim_start().starts_with('['))
            || !plain_line(line.trim_start())
        {
            return false;
        }
        // Each line starts a statement (or closes the body); after MAX_STATEMENTS
        // statements, only `return` (then `}`).
        let ending = starts_with_word(l, "return") || l.starts_with('}');
        if !ending && (!starts_with_word(l, "let") || i > MAX_STATEMENTS) {
            return false;
        }
        blank = l.is_empty();
    }
    let mut word = 0;
    let mut digits = 0;
    let mut line = 0;
    for c in text.chars() {
        word = if c.is_ascii_alphanumeric() || c == '_' {
            word + 1
        } else {
            0
        };
        digits = if c.is_ascii_digit() { digits + 1 } else { 0 };
        line = if c == '\n' { 0 } else { line + 1 };
        if word > MAX_WORD || digits > 12 || line > 200 {
            return false;
        }
    }
    true
}

/// Brackets open at once in a body line of a guided program, at most (the standard
/// library's lines open at most 4).
const MAX_DEPTH: usize = 4;

/// Spaces in a row in a body line of a guided program (its indentation aside), at most.
const MAX_BLANKS: usize = 2;

/// Longest string literal of a guided program.
const MAX_STRING: usize = 32;

/// Whether body line `l` (its indentation aside) stays plain: at most [`MAX_DEPTH`]
/// brackets open at once, string literals of at most [`MAX_STRING`] characters, no `if`
/// inside an `if`'s condition, and at most [`MAX_BLANKS`] spaces in a row outside
/// strings. (Otherwise a prefix stays viable however long it runs: SmolLM2 wrote
/// unclosed strings, `if a < 1 || if len(...` conditions and runs of spaces to the
/// line's limits.)
fn plain_line(l: &str) -> bool {
    let (mut open, mut string, mut condition) = (0usize, None::<usize>, false);
    let mut blanks = 0;
    let mut word = String::new();
    for c in l.chars().chain(['\n']) {
        if let Some(n) = string.as_mut() {
            *n += 1;
            if c == '"' {
                string = None;
            } else if *n > MAX_STRING {
                return false;
            }
            continue;
        }
        blanks = if c == ' ' { blanks + 1 } else { 0 };
        if blanks > MAX_BLANKS {
            return false;
        }
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if word == "if" {
            if condition {
                return false;
            }
            condition = true;
        }
        word.clear();
        match c {
            '"' => string = Some(0),
            '(' | '[' | '{' => {
                open += 1;
                condition &= c != '{';
                if open > MAX_DEPTH {
                    return false;
                }
            }
            ')' | ']' | '}' => open = open.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Whether line `l` (trimmed) can still start with the word `w`: it is a prefix of it
/// (the empty line too) or starts with it and a space.
fn starts_with_word(l: &str, w: &str) -> bool {
    w.starts_with(l) || l.strip_prefix(w).is_some_and(|r| r.starts_with(' '))
}

/// Guided programs are one merge whose header is
/// `merge NAME(base: Tensor, models: [Tensor]` then parameters with literal defaults
/// (`, NAME: f32|int|bool = LITERAL`) then `) -> Tensor {`: what the loop can run. Whether
/// `text` can still have that header.
pub fn header_fits(text: &str) -> bool {
    let head = match text.find('{') {
        Some(i) => &text[..=i],
        None => text,
    };
    let toks = header_tokens(head);
    let open_end = !text.contains('{') && !text.ends_with(|c: char| c.is_whitespace());
    const FIXED: [&str; 12] = [
        "merge", "\0", "(", "base", ":", "Tensor", ",", "models", ":", "[", "Tensor", "]",
    ];
    let mut st = 0usize; // 0..12: FIXED; 12: after a parameter; 20+: in a parameter; 30+: tail
    let mut ty = "";
    let mut params = 0;
    // Parameter names so far: a name given twice fails the checker at the header's
    // end, and a header cannot be redone.
    let mut names = vec!["base", "models"];
    for (k, tok) in toks.iter().enumerate() {
        let partial = open_end && k + 1 == toks.len();
        let is_word = |t: &str| {
            t.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let is_number = |t: &str| {
            t.starts_with(|c: char| c.is_ascii_digit() || c == '.')
                && (t.parse::<f64>().is_ok()
                    || (partial && (t.ends_with(['e', 'E', '-', '+', '.']))))
        };
        let word_ok = |want: &str| tok == want || (partial && want.starts_with(tok.as_str()));
        let ok = match st {
            1 => is_word(tok) && (partial || !KEYWORDS.contains(&tok.as_str())),
            0..=11 => word_ok(FIXED[st]),
            // No comma after the last parameter allowed: `)` is then unlikely enough
            // to fall outside the tokens tried, and the header cannot be redone.
            12 => (params < MAX_PARAMS && word_ok(",")) || word_ok(")"),
            20 => is_word(tok) && (partial || !KEYWORDS.contains(&tok.as_str())) || word_ok(")"),
            21 => word_ok(":"),
            22 => ["f32", "int", "bool"].iter().any(|t| word_ok(t)) || word_ok("["),
            26 => ["f32", "int", "bool"].iter().any(|t| word_ok(t)),
            27 => word_ok("]"),
            23 => word_ok("="),
            // A default is a scalar of the type (of its elements', for a list: one
            // value for every model; a list literal's length need not match the
            // number of models, and the merge would not instantiate).
            24 if ty == "bool" => word_ok("true") || word_ok("false"),
            24 | 25 if ty == "int" => {
                (st == 24 && word_ok("-")) || tok.chars().all(|c| c.is_ascii_digit())
            }
            24 => word_ok("-") || is_number(tok),
            25 => is_number(tok),
            30 => word_ok("->"),
            31 => word_ok("Tensor"),
            32 => word_ok("{"),
            _ => false,
        };
        if !ok {
            return false;
        }
        if st == 20 && tok != ")" {
            params += 1;
            if params > MAX_PARAMS || (!partial && names.contains(&tok.as_str())) {
                return false;
            }
            names.push(tok.as_str());
        }
        if st == 22 || st == 26 {
            ty = ["f32", "int", "bool"]
                .into_iter()
                .find(|t| t == tok)
                .unwrap_or("");
        }
        st = match (st, tok.as_str()) {
            (11, _) => 12,
            (12, ",") => 20,
            (12, _) | (20, ")") => 30,
            (22, "[") => 26,
            (26, _) => 27,
            (27, _) => 23,
            (24, "-") => 25,
            (24, _) | (25, _) => 12,
            (s, _) if s < 12 || (20..32).contains(&s) => s + 1,
            (s, _) => s,
        };
    }
    true
}

const KEYWORDS: [&str; 11] = [
    "merge", "fn", "let", "return", "if", "else", "true", "false", "and", "or", "not",
];

/// The header's tokens: words and numbers (with exponents), `->`, other characters one
/// by one; whitespace separates.
fn header_tokens(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' {
            let start = i;
            let number = c.is_ascii_digit() || c == b'.';
            while i < b.len() {
                let d = b[i];
                let exp_sign =
                    number && (d == b'-' || d == b'+') && matches!(b[i - 1], b'e' | b'E');
                if d.is_ascii_alphanumeric() || d == b'_' || (number && d == b'.') || exp_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            out.push(s[start..i].to_string());
        } else if c == b'-' && b.get(i + 1) == Some(&b'>') {
            out.push("->".into());
            i += 2;
        } else {
            out.push((c as char).to_string());
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Fit, header_fits, program_fit, tidy};

    #[test]
    fn a_return_line_can_end_before_its_brace() {
        let h =
            "merge m(base: Tensor, models: [Tensor]) -> Tensor {\n    let d = models[0] - base\n";
        assert_eq!(
            program_fit(&format!("{h}    return base + d\n")),
            Fit::Prefix
        );
        assert_eq!(
            program_fit(&format!("{h}    return base + d\n}}")),
            Fit::Whole
        );
        // A type error in the line just ended: redone from the error.
        assert_eq!(
            program_fit(&format!("{h}    return 1.0\n")),
            Fit::Lost(h.len() + "    return ".len())
        );
        assert_eq!(
            program_fit(&format!("{h}    return base\n    let")),
            Fit::No
        );
        assert_eq!(program_fit(&format!("{h}    return base\n    ")), Fit::No);
    }

    #[test]
    fn body_lines_stay_plain_and_return_no_list_literal() {
        let h = "merge m(base: Tensor, models: [Tensor]) -> Tensor {\n";
        for ok in [
            "    let x = sum(sqrt(abs(max(base, 1.0))))",
            "    let w = [1.0, 2.0]",
            "    return base + sum([1.0, 2.0] * (models - base))",
            "    let x = if sum_all(base) > 0.0 { 1.0 } else if true { 2.0 } else { 3.0 }",
            "        let x  =  base  ",
            "    let x = contains(\"a    b\", \"a\")",
        ] {
            assert!(tidy(&format!("{h}{ok}")), "{ok:?}");
        }
        for refused in [
            "    let x = sum(sqrt(abs(max(min(",
            "    return [",
            "    return  [base, base",
            "    let x = \"a very long string that never ends, on and on",
            "    let x = if base > 0.0 || if ",
            "    let x = sum   ",
            "    let x = base   ",
        ] {
            assert!(!tidy(&format!("{h}{refused}")), "{refused:?}");
        }
    }

    #[test]
    fn guided_programs_have_a_runnable_merge_header() {
        for ok in [
            "",
            "mer",
            "merge",
            "merge m",
            "merge m(base: Tensor, models: [Tensor]",
            "merge m(base: Tensor, models: [Tensor], w",
            "merge m(base: Tensor, models: [Tensor], w: f32 = 0.",
            "merge m(base: Tensor, models: [Tensor], w: f32 = -1e-",
            "merge m(base: Tensor, models: [Tensor], w: f32 = 1e-3, k: int = 2, t: bool = tr",
            "merge m(base: Tensor, models: [Tensor], weight: [f32] = 1.0, d: [f32] = -1",
            "merge m(base: Tensor, models: [Tensor], k: [int] = 2, on: [bool] = tr",
            "merge m(base: Tensor, models: [Tensor], on: [bool] = false) -> Tensor {",
            "merge m(base: Tensor, models: [Tensor],) -",
            "merge m(base: Tensor, models: [Tensor], w: f32 = 1.0, w",
            "merge m(base: Tensor, models: [Tensor], w: f32 = 1.0, w2:",
            "merge m(base: Tensor, models: [Tensor]) -> Tensor {\n  return base }",
        ] {
            assert!(header_fits(ok), "{ok:?}");
        }
        for bad in [
            "fn h",
            "merge m(x",
            "merge m(base: f32",
            "merge m(base: Tensor, models: [Tensor], w: f32)",
            "merge m(base: Tensor, models: [Tensor], w: Tensor = 1.0",
            "merge m(base: Tensor, models: [Tensor], w: f32 = x",
            "merge m(base: Tensor, models: [Tensor], k: int = 1.5",
            "merge m(base: Tensor, models: [Tensor], w: [f32] = [x",
            "merge m(base: Tensor, models: [Tensor]) -> [Tensor]",
            "merge let(",
            "merge m(base: Tensor, models: [Tensor], w: f32 = 1.0, w:",
            "merge m(base: Tensor, models: [Tensor], w: [f32] = []",
            // A list literal's length need not match the number of models.
            "merge m(base: Tensor, models: [Tensor], w: [f32] = [0",
            "merge m(base: Tensor, models: [Tensor], on: [bool] = 1",
            "merge m(base: Tensor, models: [Tensor], k: [int] = 1.5",
            "merge m(base: Tensor, models: [Tensor], w: f32 = 1.0, w ",
            "merge m(base: Tensor, models: [Tensor], models :",
            "merge m(base: Tensor, models: [Tensor], base:",
            "merge m(base: Tensor, models: [Tensor], a: f32 = 1.0, b: f32 = 1.0, c: f32 = 1.0, \
             d: f32 = 1.0, e: f32 = 1.0, f: f32 = 1.0,",
        ] {
            assert!(!header_fits(bad), "{bad:?}");
        }
    }
}
