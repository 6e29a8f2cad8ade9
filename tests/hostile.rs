//! Hostile and careless inputs beyond `merge` (issue 20; the merge cases are in
//! tests/hostile/merge_cases.rs and docs/errors.md): FIFOs, devices, directories and
//! oversized files where a program, config or prompt is read; non-finite and absurd
//! develop settings; `run --models` and `--threads` past their bounds; a REPL broadcast
//! past its element cap. Each must end quickly (the run is killed and the test fails
//! otherwise) with a clean `error:` naming what and where, and a non-zero exit.

#[path = "common/ckpt.rs"]
mod ckpt;

use ckpt::*;
use mergec::repl::Session;
use std::path::Path;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

/// Runs `mergec ARGS` in `dir`; returns (exit code, stderr), after checking that it
/// failed cleanly, quickly and without a panic.
fn refused(dir: &Path, args: &[&str], expect: &[&str]) -> (i32, String) {
    let start = Instant::now();
    let o = mergec_within(dir, args, LIMIT);
    let secs = start.elapsed().as_secs_f64();
    let e = stderr(&o);
    let code = o.status.code().unwrap_or(-1);
    assert!(code != 0, "`mergec {}` succeeded:\n{e}", args.join(" "));
    assert!(e.contains("error"), "`mergec {}`: {e}", args.join(" "));
    assert!(!e.contains("panicked"), "`mergec {}`: {e}", args.join(" "));
    for s in expect {
        assert!(
            e.contains(s),
            "`mergec {}`: no {s:?} in\n{e}",
            args.join(" ")
        );
    }
    assert!(secs < 10.0, "`mergec {}` took {secs:.1} s", args.join(" "));
    (code, e)
}

#[test]
fn program_files_that_are_not_regular_or_too_large_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    mkfifo(&d.join("pipe.merge"));
    std::fs::create_dir(d.join("folder.merge")).unwrap();
    std::fs::write(d.join("huge.merge"), "#".repeat(70_000)).unwrap();
    refused(d, &["check", "pipe.merge"], &["`pipe.merge`", "FIFO"]);
    refused(
        d,
        &["check", "/dev/zero"],
        &["`/dev/zero`", "character device"],
    );
    refused(
        d,
        &["check", "folder.merge"],
        &["`folder.merge`", "directory"],
    );
    refused(
        d,
        &["check", "huge.merge"],
        &["`huge.merge`", "at most 64 KiB"],
    );
    refused(d, &["run", "pipe.merge"], &["`pipe.merge`", "FIFO"]);
}

#[test]
fn trojan_source_characters_are_refused_with_a_span() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let program = "merge m(base: Tensor, models: [Tensor]) -> Tensor {\n    \
                   let note = \"admin\u{202E} \u{2066}// check\u{2069} \u{2066}\"\n    \
                   return base\n}\n";
    std::fs::write(d.join("bidi.merge"), program).unwrap();
    std::fs::write(
        d.join("zw.merge"),
        "# a\u{200B}b\nmerge m(base: Tensor) -> Tensor { return base }\n",
    )
    .unwrap();
    refused(
        d,
        &["check", "bidi.merge"],
        &[
            "U+202E",
            "RIGHT-TO-LEFT OVERRIDE",
            "string literal",
            "bidi.merge:2:",
        ],
    );
    refused(
        d,
        &["check", "zw.merge"],
        &["U+200B", "comment", "zw.merge:1:4"],
    );
}

#[test]
fn run_models_and_threads_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, _) = refused(
        d,
        &["run", "task_arithmetic", "--models", "100000000"],
        &["--models 100000000", "at most 32"],
    );
    assert_eq!(code, 1);
    refused(
        d,
        &[
            "run",
            "task_arithmetic",
            "--models",
            "32",
            "--shape",
            "8192x8192",
        ],
        &["--models 32", "elements"],
    );
    for n in ["100000", "0"] {
        refused(
            d,
            &["merge", "ties", "--base", "b", "--out", "o", "--threads", n],
            &["--threads", "1 to 1024"],
        );
    }
}

/// A develop config over the test zoo with one extra line.
fn develop_config(z: &Zoo, extra: &str) -> String {
    let dev = "{\"question\": \"1+1?\", \"answer\": \"2 #### 2\"}\n";
    std::fs::write(z.path("dev.jsonl"), dev).unwrap();
    let text = format!(
        "run_dir = \"run\"\nbase = \"base\"\nmodels = [\"m1\", \"m2\"]\n\
         dev = \"dev.jsonl\"\ntest = \"dev.jsonl\"\n{extra}\n"
    );
    std::fs::write(z.path("run.toml"), text).unwrap();
    "run.toml".into()
}

#[test]
fn develop_settings_are_range_checked_with_the_key_named() {
    let z = Zoo::new();
    let cases: &[(&str, &[&str])] = &[
        ("time_limit_s = inf", &["time_limit_s", "finite", "inf"]),
        ("time_limit_s = 1e300", &["time_limit_s", "1e300"]),
        ("time_limit_s = 1.8e19", &["time_limit_s", "1.8e19"]),
        ("time_limit_s = -1.0", &["time_limit_s", "-1"]),
        ("programs = 1000000000000000", &["programs", "100000"]),
        ("iterations = 0", &["iterations", "1..=10000"]),
        ("keep_best = 0", &["keep_best", "1..=1000"]),
        ("temperature = nan", &["temperature", "NaN"]),
        ("temperature = inf", &["temperature", "inf"]),
        ("temperature_decay = -inf", &["temperature_decay"]),
        ("baseline_grid = [0.2, nan]", &["baseline_grid[1]", "NaN"]),
        ("baseline_grid = [inf]", &["baseline_grid[0]", "inf"]),
        ("chosen_fraction = nan", &["chosen_fraction", "NaN"]),
        ("memory_budget_gb = inf", &["memory_budget_gb"]),
        ("dpo_lr = nan", &["dpo_lr"]),
        ("generator_batch = 0", &["generator_batch"]),
        ("jobs = 100000", &["jobs"]),
    ];
    for (line, expect) in cases {
        let cfg = develop_config(&z, line);
        refused(z.dir(), &["develop", "--config", &cfg], expect);
        assert!(
            !z.path("run").exists(),
            "{line}: the run directory was made"
        );
    }
}

#[test]
fn develop_config_and_prompt_that_are_fifos_or_devices_are_refused() {
    let z = Zoo::new();
    mkfifo(&z.path("pipe.toml"));
    refused(
        z.dir(),
        &["develop", "--config", "pipe.toml"],
        &["`pipe.toml`", "FIFO"],
    );
    mkfifo(&z.path("prompt.txt"));
    for prompt in ["prompt.txt", "/dev/zero"] {
        let cfg = develop_config(&z, &format!("prompt = \"{prompt}\""));
        refused(
            z.dir(),
            &["develop", "--config", &cfg],
            &[
                &format!("`{prompt}`"),
                "a prompt file must be a regular file",
            ],
        );
    }
}

#[test]
fn a_fifo_as_the_develop_base_is_refused() {
    let z = Zoo::new();
    mkfifo(&z.path("pipe"));
    let cfg = develop_config(&z, "");
    let text = std::fs::read_to_string(z.path(&cfg))
        .unwrap()
        .replace("base = \"base\"", "base = \"pipe\"");
    std::fs::write(z.path(&cfg), text).unwrap();
    refused(z.dir(), &["develop", "--config", &cfg], &["`pipe`", "FIFO"]);
}

/// Runs REPL lines on a thread; fails the test if they take longer than `LIMIT`.
fn in_repl(lines: &'static [&'static str]) -> Vec<(bool, String)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = Session::new(0);
        let outs: Vec<(bool, String)> = lines
            .iter()
            .map(|l| {
                let o = s.eval_line(l);
                (o.is_error, o.text)
            })
            .collect();
        let _ = tx.send(outs);
    });
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("the REPL did not answer {lines:?} within {LIMIT:?}"))
}

#[test]
fn a_repl_broadcast_past_the_element_cap_is_an_error_that_keeps_the_session() {
    let outs = in_repl(&[
        "let a = randn(2, 2)",
        "zeros(1048576, 1) + zeros(1, 1048576)",
        "let b = sum_all(zeros(1048576, 1) * zeros(1, 1048576))",
        "a",
        "zeros(1024, 1) + zeros(1, 1024)",
    ]);
    assert!(!outs[0].0, "{}", outs[0].1);
    for (is_error, text) in &outs[1..3] {
        assert!(is_error, "{text}");
        assert!(text.contains("at most 1048576"), "{text}");
        assert!(!text.contains("internal error"), "{text}");
    }
    assert!(!outs[3].0, "`a` was lost: {}", outs[3].1);
    assert!(
        !outs[4].0,
        "a broadcast within the cap failed: {}",
        outs[4].1
    );
}

#[test]
fn repl_load_of_a_fifo_or_device_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let pipe = dir.path().join("pipe.merge");
    mkfifo(&pipe);
    let line: &'static str = Box::leak(format!(":load {}", pipe.display()).into_boxed_str());
    let lines: &'static [&'static str] = Box::leak(Box::new([line, ":load /dev/zero"]));
    for (is_error, text) in in_repl(lines) {
        assert!(is_error, "{text}");
        assert!(
            text.contains("FIFO") || text.contains("character device"),
            "{text}"
        );
    }
}
