//! The direction of imports (issue 19, item 2): every `crate::NAME` path in `src/NAME2`
//! must name a module listed before `NAME2` in [`mergec::LAYERS`] (or `NAME2` itself),
//! so a lower layer never imports a higher one and no folder-level cycle can appear.
//! The few known exceptions are listed below with the reason; one that no longer
//! occurs fails the test, so the list only shrinks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// (importer, imported, why it is still there).
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

fn order() -> Vec<&'static str> {
    mergec::LAYERS
        .iter()
        .flat_map(|(_, mods)| mods.iter().copied())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of `src/` belongs to (None: lib.rs and main.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    if rel.components().count() > 1 {
        return Some(first);
    }
    match first.strip_suffix(".rs")? {
        "lib" | "main" => None,
        m => Some(m.to_string()),
    }
}

/// Every module named by a `crate::NAME` path outside comments.
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .trim_start_matches("r#")
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn no_module_imports_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let order = order();
    let rank = |m: &str| order.iter().position(|x| *x == m);
    let mut files = vec![];
    rust_files(&src, &mut files);
    files.sort();
    let mut edges: BTreeMap<(String, String), PathBuf> = BTreeMap::new();
    let mut modules = BTreeSet::new();
    for f in &files {
        let Some(m) = module_of(&src, f) else {
            continue;
        };
        modules.insert(m.clone());
        for i in imports(&std::fs::read_to_string(f).unwrap()) {
            if i != m {
                edges.entry((m.clone(), i)).or_insert_with(|| f.clone());
            }
        }
    }
    let unlisted: Vec<&String> = modules.iter().filter(|m| rank(m).is_none()).collect();
    assert!(
        unlisted.is_empty(),
        "modules missing from mergec::LAYERS: {unlisted:?}"
    );
    let mut wrong = vec![];
    for ((from, to), file) in &edges {
        let Some(r) = rank(to) else {
            // A path into the crate root (lib.rs): only its re-exports and LAYERS.
            if !["check_source", "LAYERS"].contains(&to.as_str()) {
                wrong.push(format!("{}: crate::{to} is not a module", file.display()));
            }
            continue;
        };
        let allowed = EXCEPTIONS.iter().any(|(a, b, _)| a == from && b == to);
        if r > rank(from).unwrap() && !allowed {
            wrong.push(format!(
                "{} ({from}) imports {to}, a higher layer",
                file.strip_prefix(&src).unwrap().display()
            ));
        }
    }
    for (a, b, why) in EXCEPTIONS {
        if !edges.contains_key(&(a.to_string(), b.to_string())) {
            wrong.push(format!(
                "the exception {a} -> {b} ({why}) no longer occurs: remove it"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_imports_and_skips_comments() {
    let t = "use crate::syntax::ast;\n// crate::cli in a comment\nlet x = crate::r#gen::f(); // crate::zoo\n";
    let got: Vec<String> = imports(t).into_iter().collect();
    assert_eq!(got, ["gen", "syntax"]);
    let src = Path::new("/x/src");
    assert_eq!(
        module_of(src, Path::new("/x/src/types/check.rs")).as_deref(),
        Some("types")
    );
    assert_eq!(
        module_of(src, Path::new("/x/src/gen.rs")).as_deref(),
        Some("gen")
    );
    assert_eq!(module_of(src, Path::new("/x/src/lib.rs")), None);
}
