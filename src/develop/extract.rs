//! Finding the program in a generated text: the first fenced block that holds a `merge`
//! (or any fenced block), else the text from the first line that starts a `merge` or
//! `fn` to the brace that closes the last definition.

/// The program text in `reply`, or None when there is none.
pub fn extract_program(reply: &str) -> Option<String> {
    let blocks = fenced_blocks(reply);
    if let Some(b) = blocks.iter().find(|b| has_merge(b)) {
        return Some(b.trim().to_string());
    }
    // An unterminated fence (the generator ran out of tokens or stopped at the fence).
    let body = match reply.find("```") {
        Some(i) if blocks.is_empty() => {
            let rest = &reply[i + 3..];
            rest.split_once('\n').map(|(_, r)| r).unwrap_or(rest)
        }
        _ => reply,
    };
    let start = body.lines().scan(0usize, |off, l| {
        let here = *off;
        *off += l.len() + 1;
        Some((here, l))
    });
    let mut begin = None;
    for (off, line) in start {
        let t = line.trim_start();
        if t.starts_with("merge ") || t.starts_with("fn ") {
            // Keep comment lines right above the definition.
            begin = Some(off);
            break;
        }
    }
    let text = &body[begin?..];
    Some(cut_after_last_closing_brace(text).trim().to_string())
}

fn has_merge(block: &str) -> bool {
    block.lines().any(|l| l.trim_start().starts_with("merge "))
}

/// The contents of every closed ``` fence (any info string).
fn fenced_blocks(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur: Option<String> = None;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            match cur.take() {
                Some(b) => out.push(b),
                None => cur = Some(String::new()),
            }
        } else if let Some(b) = cur.as_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    out
}

/// `text` up to the `}` that brings brace depth back to zero for the last time (so prose
/// after the program is dropped); the whole text when braces never balance.
fn cut_after_last_closing_brace(text: &str) -> &str {
    let mut depth = 0i64;
    let mut end = None;
    let mut in_comment = false;
    for (i, c) in text.char_indices() {
        match c {
            '#' => in_comment = true,
            '\n' => in_comment = false,
            '{' if !in_comment => depth += 1,
            '}' if !in_comment => {
                depth -= 1;
                if depth == 0 {
                    end = Some(i + 1);
                }
            }
            _ => {}
        }
    }
    match end {
        Some(e) => &text[..e],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenced_unfenced_and_truncated_replies() {
        let p = "merge m(base: Tensor, models: [Tensor]) -> Tensor {\n    return base\n}";
        assert_eq!(
            extract_program(&format!("Here:\n```merge\n{p}\n```\nThis is better.")),
            Some(p.to_string())
        );
        assert_eq!(
            extract_program(&format!("Sure. {}\n{p}\nIt works because...", "")),
            Some(p.to_string())
        );
        assert_eq!(extract_program(&format!("```\n{p}\n")), Some(p.to_string()));
        assert_eq!(extract_program("no program here"), None);
        let two = format!("```python\nprint(1)\n```\n```merge\n{p}\n```");
        assert_eq!(extract_program(&two), Some(p.to_string()));
    }
}
