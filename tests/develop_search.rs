//! `mergec develop` beyond the paper's plain loop (issue 14): the control arms (the
//! generator without learning and the random program generator, at the same number of
//! scored programs) and the archive of the best programs in the prompt, end to end with
//! a scripted OpenAI-compatible generator on a family of tiny random models.

#[path = "common/develop_run.rs"]
mod develop_run;
#[path = "common/mock_http.rs"]
mod mock_http;
#[path = "common/tiny_llama.rs"]
mod tiny_llama;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// Prompts the mock server was sent, in order.
type Prompts = Arc<Mutex<Vec<String>>>;

/// A completion server whose programs depend on the request's seed (so iterations
/// differ): weighted sums and means of the task vectors, and one program in six that
/// does not check. Records every prompt.
fn server() -> (String, Prompts) {
    let seen: Prompts = Arc::new(Mutex::new(vec![]));
    let log = seen.clone();
    let url = mock_http::serve(move |_, req| {
        let seed = req["seed"].as_u64().unwrap_or(0);
        let n = req["n"].as_u64().unwrap_or(1);
        log.lock()
            .unwrap()
            .push(req["prompt"].as_str().unwrap_or("").to_string());
        let choices: Vec<_> = (0..n)
            .map(|i| {
                let k = seed.wrapping_add(i) % 997;
                let text = match k % 6 {
                    5 => "```merge\nmerge bad(base: Tensor, models: [Tensor]) -> Tensor {\n    return nosuch(base)\n}\n```".to_string(),
                    j => format!(
                        "```merge\nmerge m(base: Tensor, models: [Tensor], w: f32 = 0.{}) -> Tensor {{\n    return base + w * {}(models - base)\n}}\n```",
                        1 + k % 9,
                        if j % 2 == 0 { "sum" } else { "mean" }
                    ),
                };
                serde_json::json!({ "text": text })
            })
            .collect();
        (200, serde_json::json!({ "choices": choices }).to_string())
    });
    (url, seen)
}

/// The shared family and command (tests/common/develop_run.rs), two tests scored.
fn develop(dir: &Path, url: &str, extra: &[&str]) -> Command {
    let mut c = develop_run::develop(dir, url, extra);
    c.args(["--top-test", "2"]);
    c
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn scored(recs: &[serde_json::Value]) -> usize {
    recs.iter()
        .filter(|r| r["event"] == "program" && r["outcome"] == "scored")
        .count()
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    err
}

#[test]
fn controls_score_as_many_programs_as_the_main_run_and_resume_with_nothing_new() {
    let tmp = tempfile::tempdir().unwrap();
    develop_run::family(tmp.path());
    let (url, _) = server();
    run_ok(&mut develop(tmp.path(), &url, &["--controls", "true"]));
    let run = tmp.path().join("run");
    let main = records(&run.join("programs.jsonl"));
    let n = scored(&main);
    assert!(n >= 3, "{n} scored");
    for arm in ["no-dpo", "random"] {
        let dir = run.join("controls").join(arm);
        let recs = records(&dir.join("programs.jsonl"));
        assert_eq!(scored(&recs), n, "{arm}");
        let cfg = std::fs::read_to_string(dir.join("config.toml")).unwrap();
        assert!(cfg.contains("learn = false"), "{cfg}");
        assert!(cfg.contains(&format!("scored_budget = {n}")), "{cfg}");
        // Nothing learned, and the best program scored once on test.
        for l in recs.iter().filter(|r| r["event"] == "learned") {
            assert_eq!(l["steps"], 0);
        }
        let tests = recs.iter().filter(|r| r["event"] == "score").count();
        assert_eq!(tests, 1, "{arm}");
    }
    // The no-DPO arm's first iteration is the main run's: its scores are reused.
    let nodpo = records(&run.join("controls/no-dpo/programs.jsonl"));
    let first = |recs: &[serde_json::Value]| -> Vec<(String, String)> {
        recs.iter()
            .filter(|r| r["event"] == "program" && r["iteration"] == 1)
            .map(|r| (r["reply"].to_string(), r["outcome"].to_string()))
            .collect()
    };
    assert_eq!(first(&main), first(&nodpo));
    // The random arm's programs come from src/gen.rs.
    let random = records(&run.join("controls/random/programs.jsonl"));
    assert!(
        random
            .iter()
            .any(|r| r["event"] == "program"
                && r["generator"].as_str().unwrap().starts_with("random"))
    );
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("## Controls"), "{report}");
    assert!(report.contains("| no-dpo |") && report.contains("| random |"));
    assert!(report.contains("DPO"), "{report}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["controls"]["arms"].as_array().unwrap().len(), 3);
    // Resuming the finished run adds nothing anywhere.
    let before: Vec<usize> = [
        "programs.jsonl",
        "controls/no-dpo/programs.jsonl",
        "controls/random/programs.jsonl",
    ]
    .iter()
    .map(|f| records(&run.join(f)).len())
    .collect();
    run_ok(&mut develop(
        tmp.path(),
        &url,
        &["--controls", "true", "--resume"],
    ));
    let after: Vec<usize> = [
        "programs.jsonl",
        "controls/no-dpo/programs.jsonl",
        "controls/random/programs.jsonl",
    ]
    .iter()
    .map(|f| records(&run.join(f)).len())
    .collect();
    assert_eq!(before, after);
    // An arm's directory that is no longer a mergec run is refused, and left alone.
    let arm = run.join("controls/random");
    std::fs::remove_file(arm.join(".mergec-run")).unwrap();
    let listing = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let files = listing(&arm);
    let out = develop(tmp.path(), &url, &["--controls", "true", "--resume"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("controls/random") && err.contains("not a mergec run"),
        "{err}"
    );
    assert_eq!(listing(&arm), files);
    assert_eq!(records(&arm.join("programs.jsonl")).len(), before[2]);
}

#[test]
fn the_archive_shows_the_best_programs_with_their_scores_and_the_same_prompts_for_a_seed() {
    let mut runs = vec![];
    for _ in 0..2 {
        let tmp = tempfile::tempdir().unwrap();
        develop_run::family(tmp.path());
        let (url, seen) = server();
        let flags = [
            "--archive",
            "2",
            "--archive-per-prompt",
            "4",
            "--repair",
            "false",
        ];
        run_ok(&mut develop(tmp.path(), &url, &flags));
        let recs = records(&tmp.path().join("run/programs.jsonl"));
        let prompts = seen.lock().unwrap().clone();
        let pairs = tmp.path().join("run/generator/dpo-pairs-iter2.jsonl");
        runs.push((prompts, recs, std::fs::read_to_string(pairs).unwrap()));
    }
    assert_eq!(runs[0].0, runs[1].0, "the same prompts for the same seed");
    let (prompts, recs, _) = &runs[0];
    // Iteration 1: one plain request; iteration 2: 6 programs at 4 a prompt, 2 requests.
    assert_eq!(prompts.len(), 3, "{prompts:#?}");
    assert!(!prompts[0].contains("Programs written so far"));
    let dev_of = |prog: &str| -> Option<f64> {
        recs.iter()
            .find(|r| {
                r["event"] == "program"
                    && r["iteration"] == 1
                    && r["outcome"] == "scored"
                    && r["assessed"]["program"].as_str().map(str::trim_end) == Some(prog)
            })
            .map(|r| r["dev"].as_f64().unwrap())
    };
    let scored_first = recs
        .iter()
        .filter(|r| r["event"] == "program" && r["iteration"] == 1 && r["outcome"] == "scored")
        .count();
    for p in &prompts[1..] {
        let shown: Vec<&str> = p.split("\nProgram ").skip(1).collect();
        assert_eq!(shown.len(), 2.min(scored_first), "{p}");
        for s in shown {
            let pct: f64 = s
                .split("dev accuracy ")
                .nth(1)
                .unwrap()
                .split('%')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let prog = s
                .split("```merge\n")
                .nth(1)
                .unwrap()
                .split("\n```")
                .next()
                .unwrap();
            let dev = dev_of(prog).unwrap_or_else(|| panic!("not an iteration-1 program:\n{prog}"));
            assert!((100.0 * dev - pct).abs() < 0.051, "{pct} vs {dev}");
        }
    }
    // Programs of iteration 2 are recorded as coming from those prompts' replies, with
    // the iteration-1 programs shown as their parents.
    let second: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["event"] == "program" && r["iteration"] == 2)
        .collect();
    assert_eq!(second.len(), 6);
    for r in &second {
        let parents = r["parents"].as_array().unwrap();
        assert_eq!(parents.len(), 2.min(scored_first), "{r}");
        assert!(parents.iter().all(|p| p[0] == 1), "{r}");
    }
    // What the generator learns from after iteration 2: pairs within a parent set, each
    // with the archive prompt its children were written from.
    let learned = &runs[0].2;
    assert!(!learned.is_empty());
    for l in learned.lines() {
        let pair: serde_json::Value = serde_json::from_str(l).unwrap();
        let prompt = pair["prompt"].as_str().unwrap();
        assert!(prompts[1..].iter().any(|p| p == prompt), "{prompt}");
        let from = |text: &serde_json::Value| {
            second
                .iter()
                .find(|r| r["assessed"]["program"] == *text)
                .map(|r| r["parents"].clone())
        };
        let (c, r) = (from(&pair["chosen"]), from(&pair["rejected"]));
        assert!(
            c.is_some() && c == r,
            "chosen and rejected share their parents: {pair}"
        );
    }
}
