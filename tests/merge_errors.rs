//! `mergec merge` on bad input: every error is clear (names the file or tensor and what
//! to do), exits 1 within seconds, and leaves no output, no temporary directory and
//! unmodified inputs. Each case is a row of docs/errors.md; after changing a message,
//! regenerate it with `MERGEC_UPDATE_DOCS=1 cargo test --release --test merge_errors`.

#[path = "common/ckpt.rs"]
mod ckpt;
#[path = "hostile/merge_cases.rs"]
mod hostile;
#[path = "common/merge_run.rs"]
mod merge_run;

use ckpt::*;
use merge_run::*;
use mergec::runtime::safetensors::{Dtype, RawTensor, encode_raw};
use std::path::Path;

// ---------------------------------------------------------------------------
// Errors: each is clear, names the file or tensor, and leaves nothing behind.

/// One failing case for the table in docs/errors.md.
struct Case {
    case: &'static str,
    /// Changes to the fresh zoo before the run.
    setup: fn(&Zoo),
    args: Vec<&'static str>,
    /// Substrings the message must contain (the file or tensor it names, what to do).
    expect: &'static [&'static str],
}

fn cmd(program: &'static str, merge: &'static str, extra: &[&'static str]) -> Vec<&'static str> {
    let mut a = vec!["merge", program, "--merge", merge];
    a.extend(INPUTS);
    a.extend(["--out", "out"]);
    a.extend(extra);
    a
}

fn patch(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(path).unwrap();
    f(&mut b);
    std::fs::write(path, b).unwrap();
}

fn header_len(b: &[u8]) -> usize {
    u64::from_le_bytes(b[..8].try_into().unwrap()) as usize
}

fn cases() -> Vec<Case> {
    let wavg = |extra: &[&'static str]| cmd("algo.merge", "wavg", extra);
    vec![
        Case {
            case: "truncated shard (the base's second shard cut 100 bytes short)",
            setup: |z| {
                patch(&z.path("base/model-00002-of-00003.safetensors"), |b| {
                    b.truncate(b.len() - 100)
                })
            },
            args: wavg(&[]),
            expect: &[
                "base/model-00002-of-00003.safetensors",
                "truncated",
                "model.layers.",
            ],
        },
        Case {
            case: "file shorter than the 8-byte header length",
            setup: |z| std::fs::write(z.path("m2/model.safetensors"), b"\x10\0\0").unwrap(),
            args: wavg(&[]),
            expect: &["m2/model.safetensors", "truncated"],
        },
        Case {
            case: "header length past the end of the file",
            setup: |z| {
                patch(&z.path("m1/model-00001-of-00002.safetensors"), |b| {
                    b[..8].copy_from_slice(&1_000_000u64.to_le_bytes())
                })
            },
            args: wavg(&[]),
            expect: &[
                "m1/model-00001-of-00002.safetensors",
                "header length 1000000",
                "past the end",
            ],
        },
        Case {
            case: "garbage header JSON",
            setup: |z| {
                patch(&z.path("base/model-00001-of-00003.safetensors"), |b| {
                    let n = header_len(b);
                    let garbage = b"{\"model.embed_tokens.weight\": {\"dtype\": \"BF16\", \"shape\": [37, 16 oops";
                    b[8..8 + garbage.len()].copy_from_slice(garbage);
                    assert!(garbage.len() < n);
                })
            },
            args: wavg(&[]),
            expect: &["base/model-00001-of-00003.safetensors", "bad header JSON"],
        },
        Case {
            case: "shard named in the index but missing",
            setup: |z| {
                std::fs::remove_file(z.path("base/model-00003-of-00003.safetensors")).unwrap()
            },
            args: wavg(&[]),
            expect: &[
                "base/model.safetensors.index.json",
                "model-00003-of-00003.safetensors",
                "missing",
            ],
        },
        Case {
            case: "tensor stored in two shards",
            setup: |z| {
                let t = variant(1, Dtype::F16);
                // The second shard also holds the first shard's first tensor.
                let mut second = t[10..].to_vec();
                second.push(t[0].clone());
                std::fs::write(
                    z.path("m1/model-00002-of-00002.safetensors"),
                    encode_raw(&second),
                )
                .unwrap();
            },
            args: wavg(&[]),
            expect: &[
                "model.embed_tokens.weight",
                "m1/model-00001-of-00002.safetensors",
                "m1/model-00002-of-00002.safetensors",
            ],
        },
        Case {
            case: "index JSON that is not JSON",
            setup: |z| {
                std::fs::write(
                    z.path("m1/model.safetensors.index.json"),
                    "{\"weight_map\": ",
                )
                .unwrap()
            },
            args: wavg(&[]),
            expect: &["m1/model.safetensors.index.json", "bad index JSON"],
        },
        Case {
            case: "model directory without weights",
            setup: |z| {
                std::fs::remove_file(z.path("m2/model.safetensors")).unwrap();
                std::fs::write(
                    z.path("m2/weights.safetensors"),
                    encode_raw(&variant(2, Dtype::F32)),
                )
                .unwrap();
            },
            args: wavg(&[]),
            expect: &["m2", "weights.safetensors"],
        },
        Case {
            case: "unsupported dtype (F64) in a merged tensor of a model",
            setup: |z| {
                rewrite_m2(z, |t| {
                    let v = values(UP1, &[24, 16], 2);
                    let i = t.iter().position(|t| t.name == UP1).unwrap();
                    t[i] = RawTensor {
                        name: UP1.into(),
                        dtype: "F64".into(),
                        shape: vec![24, 16],
                        bytes: v.iter().flat_map(|x| (*x as f64).to_le_bytes()).collect(),
                    };
                })
            },
            args: wavg(&[]),
            expect: &[UP1, "F64", "m2"],
        },
        Case {
            case: "non-float tensor (I64) held by every model, selected for merging",
            setup: |z| {
                rewrite_m2(z, |t| t.push(i64_buffer()));
                let mut t = variant(1, Dtype::F16);
                t.push(i64_buffer());
                std::fs::remove_file(z.path("m1/model.safetensors.index.json")).unwrap();
                for f in [
                    "m1/model-00001-of-00002.safetensors",
                    "m1/model-00002-of-00002.safetensors",
                ] {
                    std::fs::remove_file(z.path(f)).unwrap();
                }
                write_dir(&z.path("m1"), &t, 2);
            },
            args: wavg(&[]),
            expect: &[I64_BUFFER, "I64", "--only"],
        },
        Case {
            case: "mismatched shapes (a resized vocabulary)",
            setup: |z| {
                rewrite_m2(z, |t| {
                    t[0] = raw(EMBED, &[40, 16], &values(EMBED, &[40, 16], 2), Dtype::F32);
                })
            },
            args: wavg(&[]),
            expect: &[EMBED, "[37, 16]", "[40, 16]", "--on-mismatch base"],
        },
        Case {
            case: "--out inside an input",
            setup: |_| {},
            args: cmd("algo.merge", "wavg", &[])
                .into_iter()
                .map(|a| if a == "out" { "base/merged" } else { a })
                .collect(),
            expect: &["base/merged", "`base`"],
        },
        Case {
            case: "--out containing an input, with --force",
            setup: |_| {},
            args: cmd("algo.merge", "wavg", &["--force"])
                .into_iter()
                .map(|a| if a == "out" { "." } else { a })
                .collect(),
            expect: &["overlaps", "`base`"],
        },
        Case {
            case: "an earlier merge at --out, without --force",
            setup: |z| {
                std::fs::create_dir(z.path("out")).unwrap();
                std::fs::write(z.path("out/model.safetensors"), "an earlier merge").unwrap();
            },
            args: wavg(&[]),
            expect: &["`out`", "--force"],
        },
        Case {
            case: "program that does not check",
            setup: |z| {
                z.program("bad.merge", "merge bad(base: Tensor, models: [Tensor]) -> Tensor {\n    return base + mean(modles)\n}\n");
            },
            args: cmd("bad.merge", "bad", &[]),
            expect: &["bad.merge", "modles", "models"],
        },
        Case {
            case: "unknown stdlib method",
            setup: |_| {},
            args: {
                let mut a = vec!["merge", "tiess"];
                a.extend(INPUTS);
                a.extend(["--out", "out"]);
                a
            },
            expect: &["tiess", "ties"],
        },
        Case {
            case: "program valid only for 2-D tensors, without --only",
            setup: |_| {},
            args: cmd("algo.merge", "rows", &[]),
            expect: &["model.layers.0.input_layernorm.weight", "1-D", "--only"],
        },
        Case {
            case: "merge producing NaN",
            setup: |_| {},
            args: cmd("algo.merge", "nan_norms", &[]),
            expect: &[
                "model.layers.0.input_layernorm.weight",
                "non-finite",
                "--allow-nonfinite",
            ],
        },
        Case {
            case: "merge producing NaN in the last tensor, after several output shards are written",
            setup: |_| {},
            args: cmd(
                "algo.merge",
                "nan_norms",
                &["--only", "mlp|model.norm", "--shard-size", "2KB"],
            ),
            expect: &["model.norm.weight", "non-finite"],
        },
        Case {
            case: "--dtype f16 and a merged weight of 70000 (past F16's 65504)",
            setup: put_70000,
            args: wavg(&["--dtype", "f16"]),
            expect: &[UP1, "F16", "--allow-nonfinite"],
        },
        Case {
            case: "--set of an unknown parameter",
            setup: |_| {},
            args: wavg(&["--set", "lamda=0.5"]),
            expect: &["lamda", "did you mean `lambda`"],
        },
        Case {
            case: "--set of the wrong type",
            setup: |_| {},
            args: wavg(&["--set", "lambda=true"]),
            expect: &["lambda", "true"],
        },
        Case {
            case: "--set list of the wrong length",
            setup: |_| {},
            args: wavg(&["--set", "weight=[0.2, 0.3, 0.5]"]),
            expect: &["weight", "3 values", "2 models"],
        },
        Case {
            case: "a model with one layer fewer than the base (layer 1 missing)",
            setup: |z| rewrite_m2(z, |t| t.retain(|t| !t.name.contains("layers.1."))),
            args: wavg(&[]),
            expect: &[
                "architecture",
                "model 2 `m2`",
                "1 layers where the base has 2",
                "model.layers.1.",
                "--allow-arch-mismatch",
            ],
        },
        Case {
            case: "a model with a layer more than the base",
            setup: |z| {
                rewrite_m2(z, |t| {
                    let extra: Vec<RawTensor> = t
                        .iter()
                        .filter(|t| t.name.contains("layers.1."))
                        .map(|t| RawTensor {
                            name: t.name.replace("layers.1.", "layers.2."),
                            ..t.clone()
                        })
                        .collect();
                    t.extend(extra);
                })
            },
            args: wavg(&[]),
            expect: &[
                "3 layers where the base has 2",
                "tensors the base lacks",
                "model.layers.2.",
            ],
        },
        Case {
            case: "slerp (base and one model) given two models",
            setup: |_| {},
            args: cmd("slerp", "slerp", &[]),
            expect: &["reads only models[0]", "2 were given", "`m2` would be ignored"],
        },
        Case {
            case: "--tokenizer-from that is not a directory",
            setup: |_| {},
            args: wavg(&["--tokenizer-from", "nowhere"]),
            expect: &["nowhere"],
        },
    ]
    .into_iter()
    .chain(hostile::cases())
    .collect()
}

/// An argument as a POSIX shell reads it back.
fn shell_quote(a: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c);
    if !a.is_empty() && a.chars().all(plain) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// The markdown table of docs/errors.md.
fn table(rows: &[(String, String, String)]) -> String {
    let cell = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('|', "&#124;")
            .replace('`', "&#96;")
            .replace('\n', "<br>")
    };
    let mut t = String::from("| Case | Command | Message (stderr) |\n|---|---|---|\n");
    for (case, command, message) in rows {
        t.push_str(&format!(
            "| {} | <code>{}</code> | <code>{}</code> |\n",
            cell(case),
            cell(command),
            cell(message)
        ));
    }
    t
}

const DOC_HEAD: &str = "# Error messages of `mergec merge`

Every case below exits with status 1 within seconds (the test allows a minute; FIFOs and
devices are refused, never read), leaves nothing at `--out` and no temporary
`.out.mergec-tmp-*` directory beside it, and does not modify the inputs. The inputs are
the test models of `tests/common/ckpt.rs`: `base` (BF16, three shards with an index),
`m1` (F16, two shards) and `m2` (F32, one `model.safetensors`), each case with
the corruption it names; `algo.merge` holds the test programs (`wavg`, `rows`,
`nan_norms`). The messages are checked by `cargo test --release --test merge_errors`;
regenerate this file with `MERGEC_UPDATE_DOCS=1 cargo test --release --test merge_errors`.

";

#[test]
fn every_error_is_clear_and_leaves_nothing_behind() {
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for c in cases() {
        let zoo = Zoo::new();
        zoo.program("algo.merge", PROGRAM);
        (c.setup)(&zoo);
        let before = snapshot(zoo.dir());
        let out_existed = zoo.path("out").exists();
        // A hang is a failure too: every case must end well within this.
        let o = mergec_within(zoo.dir(), &c.args, std::time::Duration::from_secs(60));
        let message = match o.status.code() {
            Some(1) => stderr(&o),
            other => {
                failures.push(format!("{}: exit {other:?}\n{}", c.case, stderr(&o)));
                continue;
            }
        };
        let missing: Vec<&&str> = c.expect.iter().filter(|s| !message.contains(**s)).collect();
        if !message.starts_with("error: ") || !missing.is_empty() {
            failures.push(format!("{}: missing {missing:?} in\n{message}", c.case));
        }
        if message.contains("panicked") || message.contains("RUST_BACKTRACE") {
            failures.push(format!("{}: a panic\n{message}", c.case));
        }
        let changed = changed_files(&before, &snapshot(zoo.dir()));
        if !changed.is_empty() {
            failures.push(format!("{}: files changed: {changed:?}", c.case));
        }
        if !out_existed && zoo.path("out").exists() {
            failures.push(format!("{}: `out` was created", c.case));
        }
        for d in [zoo.dir().to_path_buf(), zoo.path("base")] {
            let left = leftovers(&d);
            if !left.is_empty() {
                failures.push(format!("{}: left {left:?}", c.case));
            }
        }
        let quoted: Vec<String> = c.args.iter().map(|a| shell_quote(a)).collect();
        rows.push((
            c.case.to_string(),
            format!("mergec {}", quoted.join(" ")),
            message,
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let doc = format!("{DOC_HEAD}{}", table(&rows));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/errors.md");
    if std::env::var_os("MERGEC_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &doc).unwrap();
    } else {
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == doc,
            "docs/errors.md is out of date: rerun with MERGEC_UPDATE_DOCS=1"
        );
    }
}

/// A write that fails midway (here over a file size limit, as on a full disk) is an
/// error that names the file, not a hang or a kill, and leaves no output behind.
#[test]
fn a_failed_write_is_an_error_and_leaves_nothing() {
    use std::os::unix::process::CommandExt;
    let zoo = Zoo::new();
    zoo.program("algo.merge", PROGRAM);
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_mergec"));
    c.current_dir(zoo.dir())
        .args(cmd("algo.merge", "wavg", &["--quiet"]))
        .stdin(std::process::Stdio::null());
    // SAFETY: setrlimit only, between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 2048,
                rlim_max: 2048,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = c.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("a merge whose writes fail did not end within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let o = child.wait_with_output().unwrap();
    let message = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{message}");
    assert!(
        message.starts_with("error: ")
            && message.contains("cannot write")
            && message.contains("File too large"),
        "{message}"
    );
    assert!(!zoo.path("out").exists(), "`out` was created");
    assert!(
        leftovers(zoo.dir()).is_empty(),
        "{:?}",
        leftovers(zoo.dir())
    );
}
