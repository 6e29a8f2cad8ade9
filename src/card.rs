//! The language card: the stdlib methods one per line, and the builtin reference card
//! (what `mergec methods`, the REPL and the develop loop's prompt show).

use crate::types::builtins::{BUILTINS, OPERATORS};
use crate::types::tast::Fact;

/// A method's parameters as a signature writes them: `name: kind` or
/// `name: kind = default`.
pub fn method_params(m: &crate::stdlib::Method) -> Vec<String> {
    m.sig
        .params
        .iter()
        .map(|p| match &p.default {
            Some(d) => format!("{}: {} = {d}", p.name, p.ty.kind_name()),
            None => format!("{}: {}", p.name, p.ty.kind_name()),
        })
        .collect()
}

/// One line per method: name, parameters with defaults, what it does.
pub fn methods_text() -> String {
    let mut out = String::new();
    for m in crate::stdlib::methods() {
        let params = method_params(&m);
        out.push_str(&format!(
            "{:<17} {}\n{:<17} ({})\n",
            m.sig.name,
            m.summary,
            "",
            params.join(", ")
        ));
    }
    out
}

/// The builtin table as a compact reference card (also the prompt's language card).
pub fn builtins_text() -> String {
    let mut out = String::from("Operators:\n");
    for (op, doc) in OPERATORS {
        out.push_str(&format!("  {op:<46} {doc}\n"));
    }
    out.push_str("\nTensor facts (read-only names):\n");
    for (name, _, ty, doc) in Fact::ALL {
        out.push_str(&format!("  {name}: {ty:<40} {doc}\n"));
    }
    let mut group = None;
    for b in BUILTINS {
        if group != Some(b.group) {
            group = Some(b.group);
            out.push_str(&format!("\n{}:\n", b.group.title()));
        }
        for (i, s) in b.sigs.iter().enumerate() {
            let doc = if i == 0 { b.doc } else { "" };
            out.push_str(&format!("  {s:<46} {doc}\n"));
        }
    }
    out
}

/// The reference card in brief, for small models' prompts: each group's functions by
/// their first signature, without docs (REPL-only functions left out).
pub fn builtins_compact() -> String {
    let mut out = String::from(
        "Operators: + - * / ** (elementwise, lists per model), == != < <= > >= (masks), and or not, xs[i], if c { a } else { b }\n",
    );
    let facts: Vec<&str> = Fact::ALL.iter().map(|f| f.0).collect();
    out.push_str(&format!("Tensor facts: {}\n", facts.join(", ")));
    let mut group = None;
    for b in BUILTINS.iter().filter(|b| !b.repl_only()) {
        if group != Some(b.group) {
            if group.is_some() {
                out.push('\n');
            }
            group = Some(b.group);
            out.push_str(&format!("{}: ", b.group.title()));
        } else {
            out.push_str("; ");
        }
        let sig = b.sigs[0];
        out.push_str(sig.split(" -> ").next().unwrap_or(sig));
    }
    out.push('\n');
    out
}
