//! The `mergec` binary as a user runs it: exit codes, messages, JSON.

use std::process::{Command, Output};

fn mergec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mergec"))
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run mergec")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn scratch(name: &str, src: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, src).expect("write program");
    (dir, path.to_string_lossy().into_owned())
}

#[test]
fn check_valid_prints_signatures_and_exits_zero() {
    let out = mergec(&[
        "check",
        "examples/ties.merge",
        "examples/task_arithmetic.merge",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains(
            "merge ties(base: Tensor, models: [Tensor], weight: [f32] = 1.0, density: [f32] = 0.2"
        ),
        "{s}"
    );
    assert!(s.contains("merge task_arithmetic("), "{s}");
}

#[test]
fn check_invalid_shows_place_caret_and_hint() {
    let (_d, path) = scratch(
        "bad.merge",
        "merge m(base: Tensor, models: [Tensor]) -> Tensor {\n    let q = quantle(base, 0.5)\n    return base * q\n}\n",
    );
    let out = mergec(&["check", &path]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(e.contains("unknown function `quantle`"), "{e}");
    assert!(e.contains("bad.merge:2:13"), "{e}");
    assert!(e.contains("did you mean `quantile`?"), "{e}");
    assert!(e.contains("1 error"), "{e}");
}

#[test]
fn check_reports_several_errors_at_once() {
    let (_d, path) = scratch(
        "two.merge",
        "merge m(base: Tensor, models: [Tensor]) -> Tensor {\n    let a = sum(base)\n    let b = mean(base, axis=3)\n    return base + lamda\n}\n",
    );
    let out = mergec(&["check", &path]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(e.contains("3 errors"), "{e}");
}

#[test]
fn check_json_has_positions_and_hints() {
    let (_d, path) = scratch(
        "bad.merge",
        "merge m(base: Tensor, models: [Tensor]) -> Tensor {\n    return sum(base)\n}\n",
    );
    let out = mergec(&["check", "--format", "json", &path]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], false);
    let d = &v["diagnostics"][0];
    assert_eq!(d["line"], 2);
    assert_eq!(d["column"], 16);
    assert_eq!(d["severity"], "error");
    assert!(
        d["message"]
            .as_str()
            .unwrap_or_default()
            .contains("model list")
    );
    assert!(d["hint"].as_str().unwrap_or_default().contains("sum_all"));
    assert!(d["end_column"].as_u64().is_some());
    let ok = mergec(&["check", "--format", "json", "examples/ties.merge"]);
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["merges"][0]["name"], "ties");
}

#[test]
fn check_missing_file_is_a_clear_error() {
    let out = mergec(&["check", "no/such/file.merge"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read `no/such/file.merge`"));
}

#[test]
fn methods_lists_the_stdlib_and_the_card() {
    let out = mergec(&["methods"]);
    assert!(out.status.success());
    let s = text(&out.stdout);
    for m in [
        "linear",
        "ties",
        "dare_ties",
        "della",
        "slerp",
        "karcher",
        "algorithm_a",
    ] {
        assert!(s.contains(m), "{m} missing from:\n{s}");
    }
    let card = text(&mergec(&["methods", "--builtins"]).stdout);
    assert!(card.contains("quantile(x: Tensor, q: f32) -> f32"));
    assert!(card.contains("fold("));
}

#[test]
fn run_a_stdlib_method_with_overrides() {
    let out = mergec(&["run", "ties", "--set", "density=0.5", "--shape", "50"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Tensor [50]"));
    let bad = mergec(&["run", "ties", "--set", "density=true"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("parameter `density`"),
        "{}",
        text(&bad.stderr)
    );
    let unknown = mergec(&["run", "tiez"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown.stderr).contains("did you mean `ties`?"),
        "{}",
        text(&unknown.stderr)
    );
    let noparam = mergec(&["run", "ties", "--set", "densty=0.5"]);
    assert!(
        text(&noparam.stderr).contains("did you mean `density`?"),
        "{}",
        text(&noparam.stderr)
    );
}

#[test]
fn run_reports_non_finite_results() {
    let (_d, path) = scratch(
        "div.merge",
        "merge m(base: Tensor, models: [Tensor]) -> Tensor {\n    return base / 0.0\n}\n",
    );
    let out = mergec(&["run", &path, "--shape", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("non-finite"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn demo_runs_every_method() {
    let out = mergec(&["demo"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("17 methods; 0 failures"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn every_example_checks() {
    let mut files: Vec<String> = std::fs::read_dir("examples")
        .expect("examples dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path().to_string_lossy().into_owned())
        .filter(|p| p.ends_with(".merge"))
        .collect();
    files.sort();
    assert!(files.len() >= 5);
    let mut args = vec!["check"];
    args.extend(files.iter().map(String::as_str));
    let out = mergec(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn docs_reference_is_current() {
    let text = std::fs::read_to_string("docs/language.md").expect("docs/language.md");
    let fresh = mergec::cli::docs::splice(&text).expect("markers present");
    assert!(
        fresh == text,
        "docs/language.md is out of date with the builtin table: run `cargo run -- docs --write`"
    );
}

#[test]
fn compile_prints_every_form() {
    for (emit, marker) in [
        ("typed", "topk_mask"),
        ("ir", "== after the passes =="),
        ("kernels", "kernel s1_k0 Flat"),
        ("clif", "function u0:0(i64, i64, i64)"),
        ("cuda", "extern \"C\" __global__"),
    ] {
        let out = mergec(&[
            "compile",
            "ties",
            "--set",
            "density=0.5",
            "--shape",
            "50x3",
            "--emit",
            emit,
        ]);
        assert!(out.status.success(), "{emit}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains(marker), "{emit}: no `{marker}`");
    }
    let out = mergec(&["compile", "ties", "--emit", "asm"]);
    // A usage error, as every other bad flag value.
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("'asm'") && err.contains("typed, ir, kernels, clif, cuda"),
        "{err}"
    );
}

#[test]
fn compile_debug_prints_the_graph_after_every_pass() {
    let out = Command::new(env!("CARGO_BIN_EXE_mergec"))
        .args(["compile", "linear", "--models", "2", "--shape", "8"])
        .env("MERGEC_DEBUG", "ir")
        .output()
        .expect("run mergec");
    assert!(out.status.success());
    let err = text(&out.stderr);
    for pass in ["lower", "fold_constants", "cse", "dce", "schedule + fuse"] {
        assert!(
            err.contains(&format!("== after {pass} ==")),
            "{pass}: {err}"
        );
    }
}

#[test]
fn a_missing_gpu_is_a_clear_error_not_a_panic() {
    let out = mergec(&[
        "merge",
        "ties",
        "--base",
        "/nonexistent/b",
        "--model",
        "/nonexistent/m",
        "--out",
        "/nonexistent/o",
        "--backend",
        "cuda",
    ]);
    // Without the cuda feature (or without a GPU) the backend is refused up front.
    if !cfg!(feature = "cuda") {
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("--backend cuda: no usable GPU"));
    }
    assert!(!text(&out.stderr).contains("panicked"));
}

#[test]
fn eval_reads_an_external_evaluators_score() {
    let out = mergec(&[
        "eval",
        "examples",
        "--evaluator",
        "command:test -d {model} && echo 62.5%",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "0.625");
    let out = mergec(&["eval", "examples", "--evaluator", "command:echo {model}"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("printed no score"));
}

#[test]
fn eval_out_into_its_inputs_is_refused_and_nothing_is_touched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir(d.join("model")).unwrap();
    std::fs::write(d.join("model/config.json"), "{\"model_type\": \"llama\"}").unwrap();
    std::fs::write(
        d.join("dev.jsonl"),
        "{\"question\": \"1+1?\", \"answer\": \"#### 2\"}\n",
    )
    .unwrap();
    for (out, input) in [
        ("model/config.json", "model"),
        ("model", "model"),
        ("dev.jsonl", "dev.jsonl"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_mergec"))
            .args(["eval", "model", "--data", "dev.jsonl", "--out", out])
            .current_dir(d)
            .output()
            .expect("run mergec");
        assert_eq!(o.status.code(), Some(1), "--out {out}");
        assert_eq!(
            text(&o.stderr).trim_end(),
            format!(
                "error: --out `{out}` overlaps the input `{input}`; write the results somewhere else"
            )
        );
    }
    assert_eq!(
        std::fs::read_to_string(d.join("model/config.json")).unwrap(),
        "{\"model_type\": \"llama\"}"
    );
    let mut names: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["dev.jsonl", "model"]);
}

#[test]
fn synth_refuses_a_non_empty_out_without_force() {
    let (dir, keep) = scratch("keep.txt", "someone's file");
    let out_dir = dir.path().to_string_lossy().into_owned();
    let out = mergec(&["synth", "--models", "1", "--out", &out_dir]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("base").exists());
    let out = mergec(&["synth", "--models", "1", "--out", &out_dir, "--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.path().join("model-1/config.json").is_file());
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "someone's file");
    // An empty or missing --out needs no --force.
    let fresh = dir.path().join("new");
    let out = mergec(&["synth", "--models", "1", "--out", &fresh.to_string_lossy()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn check_accepts_a_stdlib_method_name_like_run() {
    let out = mergec(&["check", "ties"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("ties: "),
        "{}",
        text(&out.stdout)
    );
    let out = mergec(&["check", "tiez"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("neither a file nor a stdlib method"), "{err}");
}

#[test]
fn check_a_program_without_a_merge_is_an_error() {
    let (_d, path) = scratch(
        "fns.merge",
        "fn twice(x: Tensor) -> Tensor {\n    return x * 2.0\n}\n",
    );
    let out = mergec(&["check", &path]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!("error: {path} defines no merge (")),
        "{err}"
    );
}

#[test]
fn invalid_flag_values_are_usage_errors() {
    for args in [
        &["compile", "ties", "--emit", "foo"][..],
        &["compile", "ties", "--dtype", "xx"],
        &["compile", "ties", "--shape", "0"],
        &["run", "ties", "--shape", "abc"],
        &["compile", "ties", "--models", "abc"],
    ] {
        let out = mergec(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(err.starts_with("error: invalid value"), "{args:?}: {err}");
    }
}
