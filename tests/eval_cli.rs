//! `mergec eval` through the binary: what it says about wrong arguments, and the
//! external evaluators of docs/eval.md (scripts/example-evaluator.sh and the lm_eval
//! command line) against a stand-in `lm_eval` that writes lm_eval's result layout.

#[path = "common/eval_data.rs"]
mod eval_data;

use eval_data::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mergec(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mergec"));
    c.args(args)
        .env("NO_COLOR", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run mergec")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_binary_says_what_is_wrong_with_its_arguments() {
    let dir = files();
    let cache = tempfile::tempdir().expect("cache");
    let env = [("MERGEC_CACHE_DIR", cache.path().as_os_str())];
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let (d, t) = (p("data.jsonl"), p("train.jsonl"));
    std::fs::create_dir(p("lone")).expect("mkdir");
    std::fs::write(p("lone/data.jsonl"), jsonl(&data(3))).expect("write");
    std::fs::write(
        p("broken.jsonl"),
        format!("{}{{\"question\": \"x\"}}\n", jsonl(&data(1))),
    )
    .expect("write");
    std::fs::write(p("empty.jsonl"), "\n").expect("write");
    let missing = p("missing.jsonl");
    let (lone, broken, empty) = (p("lone/data.jsonl"), p("broken.jsonl"), p("empty.jsonl"));
    let cases: Vec<(Vec<&str>, i32, String)> = vec![
        (
            vec!["m", "--data", &missing],
            1,
            format!("cannot read `{missing}`"),
        ),
        (
            vec!["m", "--data", &d, "--train", &missing],
            1,
            format!("cannot read `{missing}`"),
        ),
        (
            vec!["m", "--data", &d, "--split", "dev:x"],
            1,
            "--split `dev:x`".into(),
        ),
        (
            vec!["m", "--data", &d, "--split", "train"],
            1,
            "use all, dev:N or test[:N]".into(),
        ),
        (
            vec!["m", "--data", &d, "--split", "test"],
            1,
            "nothing to score".into(),
        ),
        (
            vec!["m", "--data", &d, "--shots", "20"],
            1,
            format!("--shots 20: the train file `{t}` has only 12 problems"),
        ),
        (
            vec!["m", "--data", &lone, "--shots", "2"],
            1,
            "--shots 2 needs worked examples: pass --train".into(),
        ),
        (
            vec!["m", "--data", &broken],
            1,
            format!("{broken}:2: needs a string field `answer`"),
        ),
        (vec!["m", "--data", &empty], 1, "holds no problems".into()),
        (
            vec!["m", "--data", &d, "--evaluator", "command:echo {model}"],
            2,
            "cannot be used with".into(),
        ),
        (
            vec!["m", "--data", &d, "--chat", "maybe"],
            2,
            "possible values: auto, on, off".into(),
        ),
        (vec!["m", "--shots", "3"], 2, "--data <DATA>".into()),
        (vec!["m"], 1, "--data FILE.jsonl".into()),
        // Valid arguments get as far as loading the model.
        (
            vec!["no-such-model", "--data", &d],
            1,
            "cannot load `no-such-model`".into(),
        ),
    ];
    for (argv, code, want) in cases {
        let out = mergec(&[&["eval"][..], &argv].concat(), &env);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{argv:?}: {err}");
        assert!(err.contains(&want), "{argv:?}: want `{want}` in:\n{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.stdout.is_empty(), "{argv:?}");
    }
    let out = mergec(&["eval", "m", "--data", &lone], &env);
    assert!(
        text(&out.stderr).contains("no train.jsonl next to"),
        "{}",
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// External evaluators from docs/eval.md, against a stand-in lm_eval

/// A stand-in `lm_eval`: writes a result file where and as lm-evaluation-harness does
/// (OUTPUT_PATH/<pretrained with / as __>/results_<timestamp>.json), prints a table on
/// stdout, and logs its arguments to $FAKE_LM_EVAL_LOG.
const FAKE_LM_EVAL: &str = r#"#!/usr/bin/env python3
import json, os, sys
a = sys.argv[1:]
def arg(k):
    return a[a.index(k) + 1]
with open(os.environ["FAKE_LM_EVAL_LOG"], "a") as f:
    f.write(json.dumps(a) + "\n")
if os.environ.get("FAKE_LM_EVAL_NO_RESULTS"):
    sys.exit(0)
margs = dict(kv.split("=", 1) for kv in arg("--model_args").split(","))
d = os.path.join(arg("--output_path"), margs["pretrained"].replace("/", "__"))
os.makedirs(d, exist_ok=True)
res = {
    "results": {"gsm8k": {
        "alias": "gsm8k",
        "exact_match,strict-match": 0.625, "exact_match_stderr,strict-match": 0.0133,
        "exact_match,flexible-extract": 0.65, "exact_match_stderr,flexible-extract": 0.0131}},
    "n-shot": {"gsm8k": int(arg("--num_fewshot"))},
    "config": {"model": "vllm", "model_args": arg("--model_args")},
}
with open(os.path.join(d, "results_2025-01-02T03-04-05.678901.json"), "w") as f:
    json.dump(res, f, indent=2)
print("|Tasks|Version|     Filter     |n-shot|  Metric   |   |Value|   |Stderr|")
print("|gsm8k|      3|strict-match    |     5|exact_match|↑  |0.625|±  |0.0133|")
"#;

struct FakeLmEval {
    dir: tempfile::TempDir,
    path_var: std::ffi::OsString,
}

impl FakeLmEval {
    /// None (with a note) where python3 is missing.
    fn new() -> Option<FakeLmEval> {
        if Command::new("python3").arg("--version").output().is_err() {
            eprintln!("SKIPPED: no python3");
            return None;
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        let exe = bin.join("lm_eval");
        std::fs::write(&exe, FAKE_LM_EVAL).expect("write");
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let model = dir.path().join("merged model");
        std::fs::create_dir(&model).expect("mkdir");
        std::fs::write(model.join("config.json"), "{}").expect("write");
        let mut paths = vec![bin];
        paths.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        let path_var = std::env::join_paths(paths).expect("PATH");
        Some(FakeLmEval { dir, path_var })
    }

    fn model(&self) -> PathBuf {
        self.dir.path().join("merged model")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("lm_eval.log")
    }

    fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let log = self.log();
        let mut env: Vec<(&str, &std::ffi::OsStr)> = vec![
            ("PATH", self.path_var.as_os_str()),
            ("FAKE_LM_EVAL_LOG", log.as_os_str()),
        ];
        for (k, v) in extra {
            env.push((k, std::ffi::OsStr::new(v)));
        }
        mergec(args, &env)
    }
}

#[test]
fn the_example_evaluator_script_reads_lm_evals_results() {
    let Some(fake) = FakeLmEval::new() else {
        return;
    };
    let model = fake.model();
    let model = model.to_str().expect("utf-8");
    let ev = "command:scripts/example-evaluator.sh {model}";
    let out = fake.run(&["eval", model, "--evaluator", ev], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "0.625");
    let logged = std::fs::read_to_string(fake.log()).expect("lm_eval ran");
    let argv: Vec<String> =
        serde_json::from_str(logged.lines().next().expect("a line")).expect("json");
    let at = |k: &str| argv[argv.iter().position(|a| a == k).expect(k) + 1].clone();
    assert_eq!(at("--model"), "vllm");
    assert_eq!(at("--tasks"), "gsm8k");
    assert_eq!(at("--num_fewshot"), "5");
    assert!(
        at("--model_args").starts_with(&format!("pretrained={model},")),
        "{argv:?}"
    );

    let out = fake.run(
        &["eval", model, "--evaluator", ev, "--json"],
        &[("LM_EVAL_FILTER", "flexible-extract")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["accuracy"], 0.65);

    // Failures say why: not a model directory, no result file, an unknown filter.
    let out = fake.run(&["eval", "examples", "--evaluator", ev], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no config.json"),
        "{}",
        text(&out.stderr)
    );
    let out = fake.run(
        &["eval", model, "--evaluator", ev],
        &[("FAKE_LM_EVAL_NO_RESULTS", "1")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("wrote no results"),
        "{}",
        text(&out.stderr)
    );
    let out = fake.run(
        &["eval", model, "--evaluator", ev],
        &[("LM_EVAL_FILTER", "strict")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("exact_match,strict"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_documented_lm_eval_command_line_reads_its_score() {
    let Some(fake) = FakeLmEval::new() else {
        return;
    };
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/eval.md"))
        .expect("docs/eval.md");
    let line = doc
        .lines()
        .find(|l| l.starts_with("mergec eval ") && l.contains("lm_eval --model vllm"))
        .expect("the lm_eval command line in docs/eval.md");
    let ev = line
        .split_once("--evaluator '")
        .and_then(|(_, rest)| rest.strip_suffix('\''))
        .expect("--evaluator '...'");
    let model = fake.model();
    let out = fake.run(
        &["eval", model.to_str().expect("utf-8"), "--evaluator", ev],
        &[],
    );
    assert!(out.status.success(), "{ev}\n{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "0.625");
}
