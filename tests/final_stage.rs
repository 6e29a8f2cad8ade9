//! The final stage of `mergec develop` end to end on a family of tiny random models:
//! every contender gets exactly `tune_budget` evaluations on dev and one on test, the
//! report compares every row with the baseline to beat on the same problems, and a
//! resumed run reuses every score.

#[path = "common/develop_run.rs"]
mod develop_run;
#[path = "common/mock_http.rs"]
mod mock_http;
#[path = "common/tiny_llama.rs"]
mod tiny_llama;

use develop_run::{develop, family, records, server};
use std::collections::BTreeMap;

/// Score keys of the record, in order.
fn score_keys(dir: &std::path::Path) -> Vec<String> {
    records(dir)
        .iter()
        .filter(|r| r["event"] == "score")
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect()
}

/// `mergec develop` on the family in `dir` with `flags`; fails the test unless it succeeds.
fn run_ok(dir: &std::path::Path, url: &str, flags: &[&str]) {
    let out = develop(dir, url, flags).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Table 1's "the baseline to beat" row.
fn baseline_row(table: &[serde_json::Value]) -> &serde_json::Value {
    table
        .iter()
        .find(|r| {
            r["name"]
                .as_str()
                .unwrap()
                .starts_with("the baseline to beat: ")
        })
        .expect("a baseline to beat")
}

#[test]
fn every_contender_gets_the_same_budget_and_a_resume_scores_nothing_again() {
    let tmp = tempfile::tempdir().unwrap();
    family(tmp.path());
    let url = server();
    let flags = [
        "--tune-budget",
        "3",
        "--tune-top",
        "2",
        "--baseline-grid",
        "[]",
    ];
    run_ok(tmp.path(), &url, &flags);
    let keys = score_keys(tmp.path());
    // "family dev CONTENDER point K": exactly points 0, 1, 2 of each contender.
    let mut dev: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut test: BTreeMap<String, usize> = BTreeMap::new();
    for k in &keys {
        if let Some(rest) = k.strip_prefix("family dev ") {
            let (c, p) = rest.rsplit_once(" point ").unwrap();
            dev.entry(c.to_string())
                .or_default()
                .push(p.parse().unwrap());
        } else if let Some(rest) = k.strip_prefix("family test ") {
            let (c, _) = rest.rsplit_once(" point ").unwrap();
            *test.entry(c.to_string()).or_default() += 1;
        }
    }
    // Two models: every stdlib method but slerp and nearswap, and two programs.
    let methods = mergec::stdlib::methods().len();
    assert_eq!(dev.len(), methods - 2 + 2, "{dev:?}");
    assert!(dev.contains_key("ties") && !dev.contains_key("slerp"));
    assert_eq!(dev.keys().filter(|c| c.starts_with("program ")).count(), 2);
    // Methods with nothing to search (no f32 parameter but guards) have their defaults only.
    for (c, points) in &dev {
        let fixed = ["karcher", "model_stock", "algorithm_a"].contains(&c.as_str());
        let want: &[usize] = if fixed { &[0] } else { &[0, 1, 2] };
        assert_eq!(points, want, "{c}");
    }
    assert_eq!(dev["karcher"], [0]);
    let evaluations: usize = dev.values().map(Vec::len).sum();
    // One test score per contender that scored on dev, nothing else scored on test
    // besides the references and the oracle.
    assert!(test.values().all(|n| *n == 1), "{test:?}");
    assert!(test.len() <= dev.len() && test.contains_key("task_arithmetic"));
    let oracle = keys
        .iter()
        .filter(|k| k.starts_with("family oracle test"))
        .count();
    assert_eq!(oracle, 3);
    // Every score keeps which problems were answered.
    for r in records(tmp.path()).iter().filter(|r| r["event"] == "score") {
        assert_eq!(r["hits"].as_str().unwrap().len(), 2, "{r}");
    }

    let run = tmp.path().join("run");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    let table = report["main"]["table"].as_array().unwrap();
    let baseline = baseline_row(table);
    // The baseline against itself: no difference, p = 1.
    assert_eq!(baseline["paired"]["diff"], 0.0);
    assert_eq!(baseline["paired"]["p_value"], 1.0);
    assert_eq!(baseline["paired"]["n"], 6);
    assert_eq!(baseline["paired_dev"]["n"], 6);
    for r in table {
        assert!(r["paired"]["ci"].as_array().unwrap().len() == 2, "{r}");
    }
    assert_eq!(report["main"]["programs"], dev.len());
    assert_eq!(report["main"]["evaluations"], evaluations);
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains(&format!(
        "Selection over {} programs and {} tuning evaluations on dev.",
        dev.len(),
        evaluations
    )));
    assert!(
        md.contains("Not contenders: ") && md.contains("oracle merge"),
        "{md}"
    );

    // A resumed finished run rewrites the report from the record: nothing scored again.
    run_ok(tmp.path(), &url, &[&flags[..], &["--resume"]].concat());
    assert_eq!(score_keys(tmp.path()), keys);
    let md2 = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert_eq!(md, md2);
}

#[test]
fn test_finalists_limits_the_stdlib_methods_scored_on_test() {
    let tmp = tempfile::tempdir().unwrap();
    family(tmp.path());
    let url = server();
    let flags = [
        "--tune-budget",
        "2",
        "--tune-top",
        "2",
        "--baseline-grid",
        "[]",
        "--test-finalists",
        "3",
    ];
    run_ok(tmp.path(), &url, &flags);
    let tested: Vec<String> = score_keys(tmp.path())
        .into_iter()
        .filter_map(|k| k.strip_prefix("family test ").map(str::to_string))
        .collect();
    // Three stdlib methods and the two programs; the baseline to beat is one of them.
    let programs = tested.iter().filter(|k| k.starts_with("program ")).count();
    assert_eq!((tested.len(), programs), (5, 2), "{tested:?}");
    let md = std::fs::read_to_string(tmp.path().join("run/report.md")).unwrap();
    assert!(
        md.contains("not among the 3 best on dev: not scored on test"),
        "{md}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("run/report.json")).unwrap())
            .unwrap();
    let baseline = baseline_row(report["main"]["table"].as_array().unwrap());
    assert!(baseline["test"].is_object(), "{baseline}");
}
