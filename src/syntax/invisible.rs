//! Trojan-source guard: bidirectional controls and other invisible format characters
//! make a program read differently from how it parses (CVE-2021-42574), so none may
//! appear anywhere in a program, string literals and comments included.

use crate::diag::{Diagnostic, Span};

/// The name of a refused character, or `None` for any other.
fn invisible_name(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{00AD}' => "SOFT HYPHEN",
        '\u{061C}' => "ARABIC LETTER MARK",
        '\u{180E}' => "MONGOLIAN VOWEL SEPARATOR",
        '\u{200B}' => "ZERO WIDTH SPACE",
        '\u{200C}' => "ZERO WIDTH NON-JOINER",
        '\u{200D}' => "ZERO WIDTH JOINER",
        '\u{200E}' => "LEFT-TO-RIGHT MARK",
        '\u{200F}' => "RIGHT-TO-LEFT MARK",
        '\u{202A}' => "LEFT-TO-RIGHT EMBEDDING",
        '\u{202B}' => "RIGHT-TO-LEFT EMBEDDING",
        '\u{202C}' => "POP DIRECTIONAL FORMATTING",
        '\u{202D}' => "LEFT-TO-RIGHT OVERRIDE",
        '\u{202E}' => "RIGHT-TO-LEFT OVERRIDE",
        '\u{2060}' => "WORD JOINER",
        '\u{2061}'..='\u{2064}' => "INVISIBLE OPERATOR",
        '\u{2066}' => "LEFT-TO-RIGHT ISOLATE",
        '\u{2067}' => "RIGHT-TO-LEFT ISOLATE",
        '\u{2068}' => "FIRST STRONG ISOLATE",
        '\u{2069}' => "POP DIRECTIONAL ISOLATE",
        '\u{FEFF}' => "ZERO WIDTH NO-BREAK SPACE (BOM)",
        _ => return None,
    })
}

/// The first invisible or bidirectional control character, with where it is.
pub fn check_invisible(src: &str) -> Result<(), Diagnostic> {
    let (mut in_comment, mut in_string) = (false, false);
    for (i, c) in src.char_indices() {
        if let Some(name) = invisible_name(c) {
            let place = match (in_comment, in_string) {
                (true, _) => "in a comment",
                (_, true) => "in a string literal",
                _ => "in the program",
            };
            return Err(Diagnostic::error(
                Span::new(i, i + c.len_utf8()),
                format!(
                    "invisible character U+{:04X} ({name}) {place}: it can make the text \
                     read differently from how it runs",
                    c as u32
                ),
            )
            .with_hint(
                "delete it (bidirectional controls and zero-width characters are refused)",
            ));
        }
        match c {
            '\n' => (in_comment, in_string) = (false, false),
            '#' if !in_string => in_comment = true,
            '"' if !in_comment => in_string = !in_string,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_controls_are_refused_with_their_place() {
        let src = "merge m(base: Tensor) -> Tensor {\n    # ok \u{202E} here\n    return base\n}\n";
        let d = check_invisible(src).unwrap_err();
        assert!(
            d.message.contains("U+202E") && d.message.contains("comment"),
            "{}",
            d.message
        );
        let d = check_invisible("let s = \"a\u{2066}b\"").unwrap_err();
        assert!(d.message.contains("string literal"), "{}", d.message);
        assert!(check_invisible("merge m() -> f32 { return 1.0 } # é ü").is_ok());
    }
}
