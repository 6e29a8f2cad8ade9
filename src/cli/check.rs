//! `mergec check FILE...`

use crate::diag::{JsonDiagnostic, render_all};
use serde::Serialize;

#[derive(Serialize)]
struct JsonMerge {
    file: String,
    name: String,
    signature: String,
    ranks: Vec<usize>,
    /// The static cost bound (operations per element, unrolled nodes).
    cost: crate::types::cost::Cost,
}

#[derive(Serialize)]
struct JsonReport {
    ok: bool,
    merges: Vec<JsonMerge>,
    diagnostics: Vec<JsonDiagnostic>,
}

/// Checks each file; prints signatures or diagnostics. Returns the exit code.
impl JsonReport {
    /// Prints (unless `json`) and records the signatures of `file`'s merges.
    fn add(&mut self, file: &str, sigs: &[crate::types::MergeSig], json: bool) {
        for s in sigs {
            if !json {
                println!("{file}: {}", s.signature());
            }
            self.merges.push(JsonMerge {
                file: file.to_string(),
                name: s.name.clone(),
                signature: s.signature(),
                ranks: s.ranks.clone(),
                cost: s.cost,
            });
        }
    }
}

pub fn run(files: &[String], json: bool) -> i32 {
    let mut report = JsonReport {
        ok: true,
        merges: Vec::new(),
        diagnostics: Vec::new(),
    };
    for file in files {
        // A stdlib method's name, as `run`, `compile` and `merge` accept it.
        if !std::path::Path::new(file).exists() && !file.ends_with(".merge") {
            match crate::pipeline::Source::load(file) {
                Ok(source) => {
                    report.add(file, &source.sigs, json);
                }
                Err(e) => {
                    report.ok = false;
                    let msg = e.render(!json && crate::diag::use_color());
                    if json {
                        report.diagnostics.push(
                            crate::diag::Diagnostic::error(Default::default(), msg)
                                .to_json(file, ""),
                        );
                    } else {
                        eprintln!("error: {msg}");
                    }
                }
            }
            continue;
        }
        let src = match crate::files::read_program(file) {
            Ok(s) => s,
            Err(msg) => {
                report.ok = false;
                if json {
                    report.diagnostics.push(
                        crate::diag::Diagnostic::error(Default::default(), msg).to_json(file, ""),
                    );
                } else {
                    eprintln!("error: {msg}");
                }
                continue;
            }
        };
        match crate::types::check_source(&src) {
            Ok((_, sigs)) if sigs.is_empty() => {
                report.ok = false;
                let msg = format!(
                    "{file} defines no merge (only functions; `run`, `compile` and `merge` need \
                     a `merge`)"
                );
                if json {
                    report.diagnostics.push(
                        crate::diag::Diagnostic::error(Default::default(), msg).to_json(file, &src),
                    );
                } else {
                    eprintln!("error: {msg}");
                }
            }
            Ok((_, sigs)) => {
                report.add(file, &sigs, json);
            }
            Err(diags) => {
                report.ok = false;
                if json {
                    report
                        .diagnostics
                        .extend(diags.iter().map(|d| d.to_json(file, &src)));
                } else {
                    eprint!(
                        "{}",
                        render_all(&diags, file, &src, crate::diag::use_color())
                    );
                    let n = diags.len();
                    eprintln!("{file}: {n} error{}", if n == 1 { "" } else { "s" });
                }
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    }
    if report.ok { 0 } else { 1 }
}
