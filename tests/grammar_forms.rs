//! The grammars `mergec grammar` derives from grammar/merge.pest, checked against pest
//! itself with the engines' own libraries: llguidance here (the Lark form), and Python's
//! lark (the Lark form) and llguidance's GBNF reader (the GBNF form) through
//! scripts/grammar_engines.py in the project's `grammar` venv.
//!
//! The corpus: every stdlib method, example and golden program, 10,000 generated
//! programs (some with comments and extra whitespace), and 10,000 mutations of them
//! (a character deleted, inserted, or two swapped), each labelled by pest.

#[path = "common/venv.rs"]
mod venv;
use mergec::model::mask::GrammarMask;
use mergec::semantics::rng::SplitMix64;
use mergec::syntax::forms::{self, Shape};
use mergec::syntax::grammar_accepts;
use std::path::Path;

const GENERATED: u64 = 10_000;

fn files(dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|e| e == "merge") {
            out.push(std::fs::read_to_string(&p).expect("read a .merge file"));
        }
    }
}

/// Comments and whitespace where pest allows them: after some newlines and spaces.
fn decorate(src: &str, rng: &mut SplitMix64) -> String {
    let mut out = String::new();
    for c in src.chars() {
        out.push(c);
        if c == '\n' && rng.unit() < 0.3 {
            out.push_str("  # a comment (with \"quotes\" and ||)\n");
        } else if c == ' ' && rng.unit() < 0.1 {
            out.push_str("\t \n ");
        }
    }
    out
}

fn mutate(src: &str, rng: &mut SplitMix64) -> String {
    const CHARS: &[u8] = b"abz_019.+-*/=<>!|&()[]{},:;# \n\"eorn";
    let mut b: Vec<u8> = src.bytes().collect();
    if b.is_empty() {
        return "x".into();
    }
    let i = (rng.next_u64() % b.len() as u64) as usize;
    match rng.next_u64() % 3 {
        0 => {
            b.remove(i);
        }
        1 => b.insert(i, CHARS[(rng.next_u64() % CHARS.len() as u64) as usize]),
        _ => {
            let j = (i + 1).min(b.len() - 1);
            b.swap(i, j);
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// (text, pest accepts it) for the whole corpus.
fn corpus() -> Vec<(String, bool)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut texts: Vec<String> = mergec::stdlib::SOURCES
        .iter()
        .map(|(_, s)| s.to_string())
        .collect();
    files(&root.join("examples"), &mut texts);
    files(&root.join("tests/golden"), &mut texts);
    let mut rng = SplitMix64::new(17);
    for seed in 0..GENERATED {
        let p = mergec::r#gen::generate_source(seed, 4 + (seed % 60) as usize);
        texts.push(if seed % 4 == 0 {
            decorate(&p, &mut rng)
        } else {
            p
        });
    }
    let accepted: Vec<String> = texts
        .iter()
        .filter(|t| grammar_accepts(t))
        .cloned()
        .collect();
    let mut out: Vec<(String, bool)> = texts
        .into_iter()
        .map(|t| {
            let ok = grammar_accepts(&t);
            (t, ok)
        })
        .collect();
    for k in 0..GENERATED as usize {
        let m = mutate(&accepted[k % accepted.len()], &mut rng);
        let ok = grammar_accepts(&m);
        out.push((m, ok));
    }
    out
}

/// Where pest and a lexer-based engine may read a text differently: a keyword glued to
/// the next word or number. pest reads `letx = 1` as `let x = 1` (its keywords need no
/// boundary) where a lexer reads one name `letx`; and a lexer reads `a orb` as `a or b`
/// where pest's `or` needs a boundary (the dropped `!ident_char`).
fn glued_keyword(text: &str) -> bool {
    const KEYWORDS: [&str; 11] = [
        "merge", "fn", "let", "return", "if", "else", "true", "false", "and", "or", "not",
    ];
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    KEYWORDS.iter().any(|w| {
        text.match_indices(w).any(|(i, _)| {
            !i.checked_sub(1).is_some_and(|j| word(b[j]))
                && b.get(i + w.len()).is_some_and(|&c| word(c))
        })
    })
}

/// Only whitespace and comments.
fn blank(text: &str) -> bool {
    text.lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
}

#[test]
fn the_lark_form_agrees_with_pest_under_llguidance() {
    let lark = forms::lark::render(&forms::derive(Shape::Program).expect("derive"));
    let g = GrammarMask::bytes(&lark).expect("llguidance compiles the Lark form");
    let corpus = corpus();
    let (mut yes_yes, mut yes_no, mut no_yes, mut no_no, mut unexplained) = (0, 0, 0, 0, vec![]);
    for (t, pest) in &corpus {
        match (pest, g.accepts(t)) {
            (true, true) => yes_yes += 1,
            (true, false) => {
                yes_no += 1;
                if !glued_keyword(t) {
                    unexplained.push(t.clone());
                }
            }
            (false, true) => {
                no_yes += 1;
                if !glued_keyword(t) {
                    unexplained.push(t.clone());
                }
            }
            (false, false) => no_no += 1,
        }
    }
    println!(
        "llguidance, Lark form, {} texts: pest accepts {} (llguidance accepts {yes_yes}, rejects {yes_no}); \
         pest rejects {} (llguidance rejects {no_no}, accepts {no_yes})",
        corpus.len(),
        yes_yes + yes_no,
        no_yes + no_no
    );
    assert!(yes_yes > 10_000, "the corpus holds the generated programs");
    assert!(no_no > 3_000, "the corpus holds rejected texts");
    for (i, t) in unexplained.iter().enumerate().take(20) {
        let _ = std::fs::write(
            std::env::temp_dir().join(format!("grammar-forms-{i}.merge")),
            t,
        );
    }
    assert!(
        unexplained.is_empty(),
        "{} texts where llguidance and pest disagree other than at a glued keyword, e.g.:\n{}",
        unexplained.len(),
        unexplained
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n-----\n")
    );
}

#[test]
fn the_loop_form_holds_the_loops_programs_and_only_those() {
    let lark = forms::lark::render(&forms::derive(Shape::Loop).expect("derive"));
    let g = GrammarMask::bytes(&lark).expect("llguidance compiles the loop form");
    let h = "merge m(base: Tensor, models: [Tensor]";
    for ok in [
        format!("{h}) -> Tensor {{\n  return base }}"),
        format!("{h}) -> Tensor {{\n    return base\n}}"),
        format!(
            "{h}, w: f32 = -0.5, k: int = 2, t: bool = true) -> Tensor {{\n  let d = models[0] - base;\n  return base * w\n}}"
        ),
        format!(
            "{h}, d: [f32] = -1.0,) -> Tensor {{\n  return if true {{ let x = base; x }} else {{ base }}\n}}"
        ),
    ] {
        assert!(g.accepts(&ok), "{ok}");
    }
    let nine_lets = "  let a = base\n".repeat(9);
    for bad in [
        "fn f(x: f32) -> f32 { return x }".to_string(),
        format!("{h}) -> Tensor {{ return base }}"),
        format!("{h}, w: Tensor = 1.0) -> Tensor {{\n  return base\n}}"),
        format!("{h}, k: int = 1.5) -> Tensor {{\n  return base\n}}"),
        // A list's default is a scalar: a literal's length need not match the models.
        format!("{h}, d: [f32] = [0.5]) -> Tensor {{\n  return base\n}}"),
        format!("{h}) -> [Tensor] {{\n  return models\n}}"),
        format!("{h}) -> Tensor {{\n  # a comment\n  return base\n}}"),
        format!("{h}) -> Tensor {{\n  let a = base\n\n  return a\n}}"),
        format!("{h}) -> Tensor {{\n  let a = base +\n base\n  return a\n}}"),
        format!("{h}) -> Tensor {{\n{nine_lets}  return a\n}}"),
        format!("{h}\n) -> Tensor {{\n  return base\n}}"),
        "merge m(x: Tensor, models: [Tensor]) -> Tensor {\n  return x\n}".to_string(),
        format!(
            "{h}) -> Tensor {{\n  return base\n}}\nmerge n(base: Tensor) -> Tensor {{\n  return base\n}}"
        ),
    ] {
        assert!(!g.accepts(&bad), "{bad}");
    }
}

#[test]
fn the_derived_forms_are_stable() {
    for (shape, name) in [(Shape::Program, "program"), (Shape::Loop, "loop")] {
        let g = forms::derive(shape).expect("derive");
        insta::assert_snapshot!(format!("lark_{name}"), forms::lark::render(&g));
        insta::assert_snapshot!(format!("gbnf_{name}"), forms::gbnf::render(&g));
    }
}

#[test]
fn python_lark_and_the_gbnf_reader_agree_with_pest() {
    let py = match venv::python("grammar") {
        Ok(p) => p,
        Err(e) => {
            eprintln!("SKIP: no `grammar` venv (lark, llguidance from PyPI): {e}");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let g = forms::derive(Shape::Program).expect("derive");
    let (lark, gbnf, corpus_file) = (
        dir.path().join("merge.lark"),
        dir.path().join("merge.gbnf"),
        dir.path().join("corpus.jsonl"),
    );
    std::fs::write(&lark, forms::lark::render(&g)).expect("write");
    std::fs::write(&gbnf, forms::gbnf::render(&g)).expect("write");
    // Rejected texts first, interleaved, so Python lark's sample has both kinds.
    let mut corpus = corpus();
    corpus.sort_by_key(|(_, ok)| *ok);
    let n = corpus.len();
    let (no, yes) = corpus.split_at(corpus.iter().filter(|c| !c.1).count());
    let mixed: Vec<&(String, bool)> = (0..n)
        .filter_map(|i| {
            if i % 2 == 0 {
                yes.get(i / 2)
            } else {
                no.get(i / 2)
            }
        })
        .chain(yes.iter().skip(n / 2))
        .chain(no.iter().skip(n / 2))
        .collect();
    let lines: String = mixed
        .iter()
        .map(|(t, ok)| serde_json::json!({"text": t, "pest": ok}).to_string() + "\n")
        .collect();
    std::fs::write(&corpus_file, lines).expect("write");
    let out = std::process::Command::new(&py)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/grammar_engines.py"))
        .args(["--lark".as_ref(), lark.as_os_str()])
        .args(["--gbnf".as_ref(), gbnf.as_os_str()])
        .args(["--corpus".as_ref(), corpus_file.as_os_str()])
        .output()
        .expect("run grammar_engines.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("json");
    println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    for engine in ["lark", "gbnf_llguidance"] {
        let t = &v[engine];
        for side in ["examples_engine_no", "examples_engine_yes"] {
            for ex in t[side].as_array().expect("examples") {
                let ex = ex.as_str().expect("text");
                assert!(
                    glued_keyword(ex)
                        || (engine == "gbnf_llguidance" && side == "examples_engine_yes"),
                    "{engine} and pest disagree ({side}), not at a glued keyword:\n{ex}"
                );
            }
        }
        for e in t["errors"].as_array().into_iter().flatten() {
            assert!(
                blank(e["text"].as_str().expect("text")),
                "{engine} failed on {e}"
            );
        }
    }
}
