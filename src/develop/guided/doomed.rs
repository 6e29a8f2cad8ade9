//! Lines a guided program can never finish well: [`doomed_line`] (an operator after
//! an error no operand mends) and [`doomed_group`] (a closed bracket group with a type
//! error inside), for [`super::program_fit`].

/// Whether `text` ends in a body line (`let` or `return`) whose expression so far ends
/// in a binary operator (maybe with unary `-`/`!` after it) and can never check,
/// whatever follows:
/// - with any operand after the operator (one of each type a value can have, see
///   [`OPERANDS`]), the expression has a type error that ends before that operand: a
///   later operand binds only to the nodes ending there (the right spine), so the
///   operator's left operand and everything before it stay as they are, error and all
///   (`max(a, b) && ...` on tensors, `sqrt(w, w) + ...`);
/// - it is a `return` whose value so far is a list: binary operators on a list give a
///   list, never a tensor.
///
/// (A small model otherwise writes on to the line limit, `mixed + mixed + ...`,
/// `x && y == 1.0 && ...` or `min(xs) || 4 || 5 ...`, then redoes the whole line.)
pub(super) fn doomed_line(text: &str) -> bool {
    let Some(i) = text.rfind('\n') else {
        return false;
    };
    let line = text[i + 1..].trim_end();
    let head = line.trim_end_matches(['+', '-', '*', '/', '!', '&', '|', '=', '<', '>', ' ']);
    let tail = line[head.len()..].trim_start();
    let Some(op) = BINARY.iter().find(|op| tail.starts_with(**op)) else {
        return false;
    };
    // A model refused an operand there writes `- -`.
    if !tail[op.len()..]
        .chars()
        .all(|c| matches!(c, '-' | '!' | ' '))
    {
        return false;
    }
    let stmt = head.trim_start();
    let (expr, returns) = match stmt.strip_prefix("return ") {
        Some(e) => (e, true),
        None => match stmt.strip_prefix("let ").and_then(|l| l.split_once('=')) {
            Some((_, e)) if !e.starts_with('=') => (e, false),
            _ => return false,
        },
    };
    let expr = expr.trim();
    if expr.is_empty() {
        return false;
    }
    // The expression as a `let`'s value (a merge returning a list does not check).
    let before = format!("{}let probe = ", &text[..=i]);
    let from = before.len();
    let to = from + expr.len() + 1 + op.len();
    let probe = |operand: &str| format!("{before}{expr} {op} {operand}\nreturn base\n}}");
    let doomed_with = |operand: &str| {
        probe_errors(&probe(operand)).is_some_and(|diags| {
            diags
                .iter()
                .any(|d| d.span.start >= from && d.span.end <= to)
        })
    };
    if OPERANDS.iter().all(|o| doomed_with(o)) {
        return true;
    }
    // A return whose value so far is a list stays a list.
    returns
        && parsed(&format!("{before}{expr}\nreturn base\n}}")).is_some_and(|p| {
            super::typed_names(&p, &p.items[0].name.name)
                .last()
                .is_some_and(|(n, t)| n == "probe" && t.is_list())
        })
}

/// A probe program, parsed; None if it does not parse or holds no item.
fn parsed(src: &str) -> Option<crate::syntax::ast::Program> {
    crate::syntax::parse_program(src)
        .ok()
        .filter(|p| !p.items.is_empty())
}

/// The checker's errors for a probe program's merge (at rank 2): None if it does not
/// parse or has none.
fn probe_errors(src: &str) -> Option<Vec<crate::diag::Diagnostic>> {
    let p = parsed(src)?;
    crate::types::instantiate_merge(&p, &p.items[0].name.name, 2).err()
}

/// The binary operators [`doomed_line`] looks for, longest first.
const BINARY: [&str; 13] = [
    "&&", "||", "==", "!=", "<=", ">=", "**", "<", ">", "+", "-", "*", "/",
];

/// One operand of each type a value can have (tensor, list, float, int, bool, mask,
/// list of masks, lists of numbers, string), for [`doomed_line`]'s probes.
const OPERANDS: [&str; 10] = [
    "base",
    "models",
    "1.0",
    "1",
    "true",
    "(base > 0.0)",
    "(models > 0.0)",
    "[1.0]",
    "[1]",
    "\"a\"",
];

/// Where the last body line of `text` went wrong for good, if it did: its last closed
/// bracket group (a call with its name, a parenthesized expression or a list, not an
/// index) has a type error inside it. Nothing after a closed group changes what is
/// inside it, so no continuation mends that error: the line is to be redone from the
/// error's start (the byte offset returned), not written on to its limit. (SmolLM2 at
/// temperature 1.0 wrote `sum(x = (base == 0.0))` or `topk_mask(numel(x = 1))` and
/// then 80 more characters before the line was dropped.)
///
/// An error only more text before the closing bracket mends (a missing argument, an
/// empty list: [`crate::types::wants_more`]) returns the bracket's offset: the token
/// that wrote it is refused, and the model writes on inside the group instead.
///
/// Not judged (None): groups with a name bound inside the line (a lambda's or a
/// block's), whose probe cannot resolve it, and lines with a string. Memoized per
/// text up to the group's end, so each group is checked once.
pub(super) fn doomed_group(text: &str) -> Option<usize> {
    let (nl, line) = body_line(text)?;
    let close = line.rfind([')', ']'])?;
    let upto = &text[..nl + 1 + close + 1];
    memo(upto, || match group_error(&text[..=nl], &line[..=close])? {
        Wrong::At(k) => Some(nl + 1 + k),
        Wrong::Unfinished => Some(nl + 1 + close),
    })
}

/// Where the last body line of `text` went wrong for good, if it ends in a `,` after a
/// list literal's element and that list, closed right there, has a type error that
/// more elements do not mend (`[base, [1.0],`: lists do not nest): the byte offset to
/// redo the line from, a comma earlier than [`doomed_group`] sees the list's close.
///
/// Only lists: a call's argument may check only with a later one (`sum(base, axis=0)`
/// is a sum along an axis, `sum(base)` a type error), so a call is judged at its close.
pub(super) fn doomed_element(text: &str) -> Option<usize> {
    let (nl, line) = body_line(text)?;
    let comma = line.trim_end().strip_suffix(',')?.len();
    if line.as_bytes()[innermost_open(&line.as_bytes()[..comma])?] != b'[' {
        return None;
    }
    let closed = format!("{}]", &line[..comma]);
    memo(&text[..nl + 1 + comma + 1], || {
        match group_error(&text[..=nl], &closed)? {
            Wrong::At(k) if k < comma => Some(nl + 1 + k),
            _ => None,
        }
    })
}

/// Where the last body line of `text` went wrong for good, if it ends in a builtin
/// function's name (not a name the program binds) at [`super::MAX_DEPTH`] brackets, then
/// a blank: only a `(` could follow it, and no bracket opens that deep, so the line is
/// redone from the name. (SmolLM2 at temperature 1.0 wrote `float(float(float(float(float`
/// and then spaces to the run limit before the line was dropped: 17 of 63 lines dropped,
/// a fifth of the text dropped, in a trace of 32 programs.)
pub(super) fn uncallable(text: &str) -> Option<usize> {
    let (nl, line) = body_line(text)?;
    let head = line.trim_end();
    if head.len() == line.len() {
        return None;
    }
    let at = head
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    let word = &head[at..];
    let depth = head[..at].bytes().fold(0isize, |d, c| match c {
        b'(' | b'[' | b'{' => d + 1,
        b')' | b']' | b'}' => d - 1,
        _ => d,
    });
    if depth < super::MAX_DEPTH as isize || crate::types::builtins::lookup(word).is_none() {
        return None;
    }
    // A name the program binds (a parameter, a `let`) is a value there.
    let program = parsed(&format!("{}return base\n}}", &text[..=nl]))?;
    let bound = super::typed_names(&program, &program.items[0].name.name)
        .iter()
        .any(|(n, _)| n == word);
    (!bound).then_some(nl + 1 + at)
}

/// The offset of the innermost bracket (`(` or `[`) still open at the end of `b`.
fn innermost_open(b: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    for j in (0..b.len()).rev() {
        match b[j] {
            b')' | b']' => depth += 1,
            b'(' | b'[' if depth == 0 => return Some(j),
            b'(' | b'[' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The last line of `text` if it is a body line without a string: the offset of the
/// newline before it, and the line.
fn body_line(text: &str) -> Option<(usize, &str)> {
    let header_end = text.find('{')?;
    let nl = text.rfind('\n').filter(|&i| i > header_end)?;
    let line = &text[nl + 1..];
    (!line.contains('"')).then_some((nl, line))
}

/// `judge()`, remembered per `key` (per thread, up to [`MEMO_SIZE`] entries).
fn memo(key: &str, judge: impl FnOnce() -> Option<usize>) -> Option<usize> {
    thread_local! {
        static MEMO: std::cell::RefCell<std::collections::HashMap<String, Option<usize>>> =
            Default::default();
    }
    if let Some(known) = MEMO.with(|m| m.borrow().get(key).copied()) {
        return known;
    }
    let found = judge();
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= MEMO_SIZE {
            m.clear();
        }
        m.insert(key.to_string(), found);
    });
    found
}

/// Entries [`memo`] remembers per thread before it starts afresh.
const MEMO_SIZE: usize = 4096;

/// What is wrong inside a closed group ([`group_error`]).
enum Wrong {
    /// A type error starts at this offset in the line.
    At(usize),
    /// Only errors that more text before the closing bracket mends.
    Unfinished,
}

/// What is wrong inside the group that ends `line` (after the program's lines
/// `before`), if its probe `let probe = <group>` has a type error there.
fn group_error(before: &str, line: &str) -> Option<Wrong> {
    let b = line.as_bytes();
    let close = b.len() - 1;
    let open = innermost_open(&b[..close])?;
    if (b[open] == b'(') != (b[close] == b')') {
        return None;
    }
    let head = line[..open].trim_end();
    let word_at = head
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    let word = &head[word_at..];
    let named = !word.is_empty() && !KEYWORDS.contains(&word);
    let start = match b[open] {
        b'(' if named => word_at,
        // An index: its value depends on what it indexes.
        b'[' if named || head.ends_with([')', ']']) => return None,
        _ => open,
    };
    let group = &line[start..];
    let src = format!("{before}let probe = {group}\nreturn base\n}}");
    let from = before.len() + "let probe = ".len();
    let diags = probe_errors(&src)?;
    let inside: Vec<_> = diags
        .iter()
        .filter(|d| d.severity == crate::diag::Severity::Error)
        .filter(|d| d.span.start >= from && d.span.end <= from + group.len())
        .collect();
    if inside.iter().any(|d| d.message.starts_with("unknown name")) {
        return None;
    }
    let first = inside
        .iter()
        .filter(|d| !crate::types::wants_more(d))
        .map(|d| start + d.span.start - from)
        .min();
    match first {
        Some(k) => Some(Wrong::At(k)),
        None if inside.is_empty() => None,
        None => Some(Wrong::Unfinished),
    }
}

/// Words before a `(` that make it a parenthesized expression, not a call.
const KEYWORDS: [&str; 7] = ["return", "if", "else", "and", "or", "not", "let"];

#[cfg(test)]
mod tests {
    use super::super::{Fit, program_fit};

    #[test]
    fn a_line_that_can_never_check_goes_no_further() {
        let h = "merge m(base: Tensor, models: [Tensor], w: f32 = 1.0) -> Tensor {\n    let d = models - base\n";
        for doomed in [
            "    return d + ",
            "    return base + d * ",
            "    return d - w *",
            "    let x = sum(x = 1.0, -base) * ",
            "    let x = sqrt(w, w) + base - ",
            "    return (base + sqrt(w, w)) * ",
            "    return d - -",
            "    return d * - !",
            "    let x = max(d[0], base) && ",
            "    let x = max(d[0], base) && w == 1.0 && ",
            "    let x = min([1, 2, 3]) || ",
            "    return sqrt(w, w) == ",
        ] {
            let fit = program_fit(&format!("{h}{doomed}"));
            assert!(matches!(fit, Fit::No | Fit::Lost(_)), "{doomed:?}: {fit:?}");
        }
        for open in [
            "    return base + ",
            "    return sum(d) + ",
            "    return d",
            "    return base + w * ",
            "    return base * -",
            "    let x = base + sqrt(w) - ",
            "    let x = sum(d) / ",
            "    let x: f32 = w * ",
            "    let x = base > 0.0 && ",
            "    let x = w == ",
            "    let x = base ** ",
            "    return base + (w ",
            "    let x = ",
        ] {
            assert_eq!(program_fit(&format!("{h}{open}")), Fit::Prefix, "{open:?}");
        }
    }

    #[test]
    fn a_closed_group_with_a_type_error_is_redone_from_the_error() {
        let h = "merge m(base: Tensor, models: [Tensor], w: f32 = 1.0) -> Tensor {\n    let d = models[0] - base\n";
        // (line, where the error starts in it)
        for (doomed, from) in [
            ("    let x = sqrt(w, w)", "sqrt"),
            ("    let x = base + sum(x = (base == 0.0))", "(base =="),
            ("    let x = base + sum(x = (base == 0.0)) * ", "(base =="),
            ("    return d * max([base, models])", "models]"),
            // `topk_mask` lacks its `k`: the line is redone from its close.
            ("    let x = topk_mask(numel(x = 1)) + base", ") + base"),
            ("    let x = (d && base) * 2.0", "d &&"),
            // A list's element is judged at the comma after it.
            ("    let x = [base, [1.0],", "[1.0]"),
            ("    let x = sum([base, true, ", "true"),
        ] {
            let text = format!("{h}{doomed}");
            let at = text.len() - doomed.len() + doomed.find(from).unwrap();
            assert_eq!(program_fit(&text), Fit::Lost(at), "{doomed:?}");
        }
        for open in [
            "    let x = sqrt(w)",
            "    let x = sum(models) + sqrt(",
            "    let x = models[0]",
            "    let x = (d + base) * ",
            "    return sum(models)",
            "    let x = [1.0, 2.0]",
            // Inside a lambda its parameter is not known to the probe: not judged.
            "    let x = fold(models - base, |acc, tau, i| (acc + tau))",
            "    let x = fold(models - base, |acc, tau, i| (acc && tau)",
            // A call's argument is judged at its close: `axis` makes this a sum.
            "    let x = sum(base,",
            "    let x = [base, base,",
        ] {
            assert_eq!(program_fit(&format!("{h}{open}")), Fit::Prefix, "{open:?}");
        }
    }

    #[test]
    fn a_function_name_too_deep_to_call_is_redone() {
        let h = "merge m(base: Tensor, models: [Tensor], w: f32 = 1.0) -> Tensor {\n    let abs = base\n";
        let deep = "    let x = float(float(float(float(";
        let text = format!("{h}{deep}float ");
        assert_eq!(program_fit(&text), Fit::Lost(h.len() + deep.len()));
        for open in [
            // Still to be called, or a value.
            format!("{deep}float"),
            format!("{deep}w "),
            format!("{deep}abs "),
            "    let x = float(float(float(float ".to_string(),
        ] {
            assert_eq!(program_fit(&format!("{h}{open}")), Fit::Prefix, "{open:?}");
        }
    }

    #[test]
    fn a_close_that_leaves_a_group_unfinished_is_refused() {
        let h = "merge m(base: Tensor, models: [Tensor], w: f32 = 1.0) -> Tensor {\n";
        // The closing bracket's token is refused (its offset is in the token), and
        // the model writes on inside the group.
        for unfinished in [
            "    let x = clamp(base, 0.0)",
            "    let x = where(base > 0.0, base)",
            "    let x = base + lerp(base, b = base)",
            "    let x = []",
        ] {
            let text = format!("{h}{unfinished}");
            assert_eq!(
                program_fit(&text),
                Fit::Lost(text.len() - 1),
                "{unfinished:?}"
            );
        }
        // With another error inside too, the line is redone from that one.
        let text = format!("{h}    let x = where(base > 0.0, sqrt(w, w), [])");
        let at = text.find("sqrt").unwrap();
        assert_eq!(program_fit(&text), Fit::Lost(at));
    }
}
