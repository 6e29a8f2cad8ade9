//! Hostile inputs to `mergec merge` (issue 20): FIFOs and devices where files are read,
//! oversized files, shard paths leading out of the model directory, and safetensors
//! headers with repeated names, overlapping or unaligned data, or unknown dtypes. Each
//! is a row of docs/errors.md; the harness in tests/merge_errors.rs runs it with a time limit.

use super::{Case, UP1, Zoo, cmd, mkfifo};
use std::path::Path;

/// A safetensors file with a header written by hand (names may repeat) and `data` zero bytes.
fn hand_written(path: &Path, header: &str, data: usize) {
    let mut text = header.to_string();
    while !(8 + text.len()).is_multiple_of(8) {
        text.push(' ');
    }
    let mut b = (text.len() as u64).to_le_bytes().to_vec();
    b.extend(text.as_bytes());
    b.extend(vec![0u8; data]);
    std::fs::write(path, b).unwrap();
}

/// One header entry as JSON text.
fn entry(name: &str, dtype: &str, shape: &[usize], start: usize, end: usize) -> String {
    format!(
        "\"{name}\": {{\"dtype\": \"{dtype}\", \"shape\": {shape:?}, \"data_offsets\": [{start}, {end}]}}"
    )
}

/// Points one tensor of m1's index at `file`.
fn repoint_m1(z: &Zoo, file: &str) {
    let path = z.path("m1/model.safetensors.index.json");
    let mut index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    index["weight_map"][UP1] = serde_json::json!(file);
    std::fs::write(&path, index.to_string()).unwrap();
}

const MERGE_BY_FLAGS: &[&str] = &["merge", "algo.merge", "--merge", "wavg"];

fn with_inputs(base: &'static str, m1: &'static str) -> Vec<&'static str> {
    let mut a = MERGE_BY_FLAGS.to_vec();
    a.extend([
        "--base", base, "--model", m1, "--model", "m2", "--out", "out",
    ]);
    a
}

pub fn cases() -> Vec<Case> {
    let wavg = |extra: &[&'static str]| cmd("algo.merge", "wavg", extra);
    vec![
        Case {
            case: "a FIFO as --base (blocked forever)",
            setup: |z| mkfifo(&z.path("pipe")),
            args: with_inputs("pipe", "m1"),
            expect: &["`pipe`", "FIFO", "must be a directory or a regular file"],
        },
        Case {
            case: "/dev/zero as --model (read until memory ran out)",
            setup: |_| {},
            args: with_inputs("base", "/dev/zero"),
            expect: &["`/dev/zero`", "character device"],
        },
        Case {
            case: "a FIFO as a shard named in the index",
            setup: |z| {
                let shard = z.path("base/model-00002-of-00003.safetensors");
                std::fs::remove_file(&shard).unwrap();
                mkfifo(&shard);
            },
            args: wavg(&[]),
            expect: &["base/model-00002-of-00003.safetensors", "FIFO"],
        },
        Case {
            case: "a FIFO as the program file",
            setup: |z| mkfifo(&z.path("pipe.merge")),
            args: cmd("pipe.merge", "wavg", &[]),
            expect: &[
                "`pipe.merge`",
                "FIFO",
                "a program file must be a regular file",
            ],
        },
        Case {
            case: "a program file over the language's 64 KiB source limit",
            setup: |z| {
                std::fs::write(z.path("huge.merge"), "#".repeat(100_000)).unwrap();
            },
            args: cmd("huge.merge", "wavg", &[]),
            expect: &["`huge.merge`", "100.0 KB", "at most 64 KiB"],
        },
        Case {
            case: "a FIFO as the mergekit YAML config",
            setup: |z| mkfifo(&z.path("pipe.yaml")),
            args: vec!["merge", "pipe.yaml", "--out", "out"],
            expect: &[
                "`pipe.yaml`",
                "FIFO",
                "a merge config must be a regular file",
            ],
        },
        Case {
            case: "a YAML config over 1 MiB",
            setup: |z| {
                let mut text = "merge_method: linear\n".to_string();
                text.push_str(&"# padding\n".repeat(120_000));
                std::fs::write(z.path("big.yaml"), text).unwrap();
            },
            args: vec!["merge", "big.yaml", "--out", "out"],
            expect: &["`big.yaml`", "at most 1 MiB"],
        },
        Case {
            case: "a FIFO as the YAML config's merge_method program",
            setup: |z| {
                mkfifo(&z.path("pipe.merge"));
                let yaml = "merge_method: pipe.merge\nbase_model: base\nmodels:\n  - model: m1\n  - model: m2\n";
                std::fs::write(z.path("cfg.yaml"), yaml).unwrap();
            },
            args: vec!["merge", "cfg.yaml", "--out", "out"],
            expect: &["cfg.yaml", "pipe.merge", "FIFO"],
        },
        Case {
            case: "the base's config.json a link to /dev/zero (read until memory ran out)",
            setup: |z| {
                let config = z.path("base/config.json");
                std::fs::remove_file(&config).unwrap();
                std::os::unix::fs::symlink("/dev/zero", &config).unwrap();
            },
            args: wavg(&[]),
            expect: &["base/config.json", "character device"],
        },
        Case {
            case: "index shard name leading out of the model directory (`../`)",
            setup: |z| repoint_m1(z, "../m2/model.safetensors"),
            args: wavg(&[]),
            expect: &[
                "m1/model.safetensors.index.json",
                "`../m2/model.safetensors`",
                "not a plain file name",
            ],
        },
        Case {
            case: "index shard name that is an absolute path",
            setup: |z| repoint_m1(z, "/etc/passwd"),
            args: wavg(&[]),
            expect: &["m1/model.safetensors.index.json", "`/etc/passwd`"],
        },
        Case {
            case: "index shard that is a symlink out of the model directory",
            setup: |z| {
                std::os::unix::fs::symlink(
                    z.path("m2/model.safetensors"),
                    z.path("m1/elsewhere.safetensors"),
                )
                .unwrap();
                repoint_m1(z, "elsewhere.safetensors");
            },
            args: wavg(&[]),
            expect: &["`elsewhere.safetensors`", "outside the model directory"],
        },
        Case {
            case: "a tensor named twice in one header (the last one won)",
            setup: |z| {
                let h = format!(
                    "{{{}, {}}}",
                    entry(UP1, "F32", &[2], 0, 8),
                    entry(UP1, "F32", &[2], 8, 16)
                );
                hand_written(&z.path("m2/model.safetensors"), &h, 16);
            },
            args: wavg(&[]),
            expect: &["m2/model.safetensors", UP1, "named twice"],
        },
        Case {
            case: "two tensors whose data overlap",
            setup: |z| {
                let h = format!(
                    "{{{}, {}}}",
                    entry("a.weight", "F32", &[4], 0, 16),
                    entry("b.weight", "F32", &[4], 8, 24)
                );
                hand_written(&z.path("m2/model.safetensors"), &h, 24);
            },
            args: wavg(&[]),
            expect: &[
                "m2/model.safetensors",
                "`b.weight`",
                "overlaps",
                "`a.weight`",
            ],
        },
        Case {
            case: "data offset not aligned to the element size",
            setup: |z| {
                let h = format!("{{{}}}", entry("a.weight", "F32", &[2], 2, 10));
                hand_written(&z.path("m2/model.safetensors"), &h, 10);
            },
            args: wavg(&[]),
            expect: &[
                "m2/model.safetensors",
                "`a.weight`",
                "not aligned",
                "4 bytes",
            ],
        },
        Case {
            case: "unknown dtype (a GGUF Q4_K block copied as is)",
            setup: |z| {
                let h = format!("{{{}}}", entry("a.weight", "Q4_K", &[256], 0, 144));
                hand_written(&z.path("m2/model.safetensors"), &h, 144);
            },
            args: wavg(&[]),
            expect: &["m2/model.safetensors", "`a.weight`", "unknown dtype `Q4_K`"],
        },
        Case {
            case: "--out a named pipe",
            setup: |z| mkfifo(&z.path("out")),
            args: wavg(&["--force"]),
            expect: &["`out`", "named pipe", "another --out"],
        },
        Case {
            case: "--out an existing file, with --force",
            setup: |z| std::fs::write(z.path("out"), "someone's results").unwrap(),
            args: wavg(&["--force"]),
            expect: &["`out`", "a regular file", "another --out"],
        },
        Case {
            case: "--out a directory of someone's files, with --force",
            setup: |z| {
                std::fs::create_dir(z.path("out")).unwrap();
                std::fs::write(z.path("out/config.json"), "{}").unwrap();
                std::fs::write(z.path("out/notes.txt"), "mine").unwrap();
            },
            args: wavg(&["--force"]),
            expect: &["`out`", "`notes.txt`", "not part of a model"],
        },
        Case {
            case: "--out a directory with a subdirectory, with --force",
            setup: |z| {
                std::fs::create_dir_all(z.path("out/src")).unwrap();
                std::fs::write(z.path("out/model.safetensors"), "x").unwrap();
            },
            args: wavg(&["--force"]),
            expect: &["`out`", "the directory `src/`", "not part of a model"],
        },
        Case {
            case: "--out a link to nowhere",
            setup: |z| std::os::unix::fs::symlink("gone", z.path("out")).unwrap(),
            args: wavg(&[]),
            expect: &["`out`", "symbolic link", "does not exist"],
        },
    ]
}
