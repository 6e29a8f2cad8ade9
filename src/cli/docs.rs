//! The generated part of docs/language.md: the reference card from the builtin table.

use crate::syntax::limits::Limits;
use crate::types::builtins::{BUILTINS, OPERATORS};
use crate::types::tast::Fact;

pub const BEGIN: &str = "<!-- BEGIN GENERATED REFERENCE (mergec docs --write) -->";
pub const END: &str = "<!-- END GENERATED REFERENCE -->";

/// Markdown tables for operators, facts, builtins, stdlib methods and limits.
pub fn reference_markdown() -> String {
    let mut out = String::new();
    out.push_str("### Operators\n\n| syntax | meaning |\n|---|---|\n");
    for (op, doc) in OPERATORS {
        out.push_str(&format!("| `{op}` | {doc} |\n"));
    }
    out.push_str("\n### Tensor facts\n\n| name | type | meaning |\n|---|---|---|\n");
    for (name, _, ty, doc) in Fact::ALL {
        out.push_str(&format!(
            "| `{name}` | {ty} | {} |\n",
            doc.replace('|', "\\|")
        ));
    }
    let mut group = None;
    for b in BUILTINS {
        if group != Some(b.group) {
            group = Some(b.group);
            out.push_str(&format!(
                "\n### {}\n\n| signature | meaning |\n|---|---|\n",
                b.group.title()
            ));
        }
        let sigs: Vec<String> = b.sigs.iter().map(|s| format!("`{s}`")).collect();
        out.push_str(&format!(
            "| {} | {} |\n",
            sigs.join("<br>"),
            b.doc.replace('|', "\\|")
        ));
    }
    out.push_str(
        "\n### Standard library\n\n| method | parameters | what it does |\n|---|---|---|\n",
    );
    for m in crate::stdlib::methods() {
        let params: Vec<String> = crate::card::method_params(&m)
            .iter()
            .map(|p| format!("`{p}`"))
            .collect();
        out.push_str(&format!(
            "| [`{}`](../stdlib/{}) | {} | {} |\n",
            m.sig.name,
            m.file,
            params.join(", "),
            m.summary
        ));
    }
    let l = Limits::DEFAULT;
    out.push_str("\n### Limits\n\n| limit | value |\n|---|---|\n");
    for (what, v) in [
        ("source size (bytes)", l.max_source_bytes as i64),
        ("bracket nesting", l.max_nesting as i64),
        ("syntax nodes per program", l.max_syntax_nodes as i64),
        ("functions and merges per program", l.max_items as i64),
        (
            "statements per program (also lambdas + ifs)",
            l.max_statements as i64,
        ),
        ("parameters per function", l.max_params as i64),
        ("expression depth", l.max_expr_depth as i64),
        (
            "nodes of one merge after inlining helpers",
            l.max_inlined_nodes as i64,
        ),
        ("literal repeat count", l.max_repeat),
        ("repeat count at run time", l.max_runtime_repeat),
        ("models one merge takes", l.max_models as i64),
        (
            "operations per element, bounded statically (see below)",
            l.max_ops_per_element as i64,
        ),
        (
            "nodes of one merge once loops and lists are unrolled",
            l.max_unrolled_nodes as i64,
        ),
        (
            "expressions typed in one check (inlining and lambda re-checks included)",
            l.max_check_work as i64,
        ),
        (
            "elements of a tensor literal (REPL)",
            l.max_literal_elems as i64,
        ),
    ] {
        out.push_str(&format!("| {what} | {v} |\n"));
    }
    out.push_str(COST_BOUND);
    out
}

/// How the static cost bound is computed (docs/language.md, under the limits).
const COST_BOUND: &str = "
**The cost bound.** While it checks a merge, the checker counts every expression it
types (inlined helper bodies and re-checked lambda bodies included) and stops with
\"program too large to check\" at the call that expands too much once the budget
above is spent, so a check never builds a large tree: every program up to the source
size limit is checked in under 100 ms and 256 MB. It then bounds the checked merge's
cost: operations per element of the merged tensor (an elementwise operation 1, a
transcendental function, `pow`, `sqrt` or a random draw 4, `norm`, `dot`, `cos_sim`,
`std` and `softmax` 3, a selection (`topk_mask`, `quantile`, `ranks`) 16, each times the
number of models when it works on a per-model list), with every `fold` over the models
multiplied by the number of models and every `repeat` by its count; and the nodes the
compiler unrolls. A `repeat` count that is a literal, a parameter (its default when
checking) or arithmetic of those is used as is; any other count is taken as the run-time
limit. `mergec check` assumes the largest number of models; a merge over either limit is
rejected with the innermost loop that passes it. `mergec check --format json` reports both
figures per merge (`cost.ops_per_element`, `cost.unrolled_nodes`). A run checks the bound
again with the real number of models and the parameters' given values (`--set`), before
any tensor is read.
";

/// `text` with the part between the markers replaced by the generated reference.
pub fn splice(text: &str) -> Option<String> {
    let b = text.find(BEGIN)? + BEGIN.len();
    let e = text.find(END)?;
    (b <= e).then(|| format!("{}\n\n{}\n{}", &text[..b], reference_markdown(), &text[e..]))
}

pub fn run(write: bool) -> i32 {
    let path = "docs/language.md";
    if !write {
        print!("{}", reference_markdown());
        return 0;
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {path}: {e} (run from the repository root)");
            return 1;
        }
    };
    match splice(&text) {
        Some(new) => match std::fs::write(path, new) {
            Ok(()) => {
                println!("updated {path}");
                0
            }
            Err(e) => {
                eprintln!("cannot write {path}: {e}");
                1
            }
        },
        None => {
            eprintln!("{path} lacks the markers {BEGIN} ... {END}");
            1
        }
    }
}
