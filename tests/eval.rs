//! Evaluation on the real GSM8K files when `scripts/fetch-assets.sh` has fetched them
//! (skipped with a message otherwise): every record parses, and every reference
//! solution scores as correct against its own target.

use mergec::eval::gsm8k::{Split, is_correct, load_jsonl};
use std::path::Path;

#[test]
fn real_gsm8k_parses_and_its_solutions_score_correct() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/gsm8k");
    if !dir.join("test.jsonl").exists() {
        eprintln!("SKIPPED: no assets/gsm8k (run scripts/fetch-assets.sh)");
        return;
    }
    let train = load_jsonl(&dir.join("train.jsonl")).expect("train parses");
    let test = load_jsonl(&dir.join("test.jsonl")).expect("test parses");
    assert_eq!((train.len(), test.len()), (7473, 1319));
    for p in train.iter().chain(&test) {
        assert!(
            is_correct(&p.solution, &p.target),
            "{}: {}",
            p.target,
            p.solution
        );
    }
    let dev = Split::Dev(100).indices(test.len(), 0);
    assert_eq!(dev.len(), 100);
    println!(
        "gsm8k: {} train and {} test problems; all reference solutions score correct",
        train.len(),
        test.len()
    );
}

/// The real model end to end (item 4): SmolLM2-135M-Instruct (GGUF) answers three real
/// GSM8K test questions through `mergec eval`: chat template, 2 shots from the train
/// file, batched greedy decoding, answer extraction, per-item output. The pipeline is
/// checked, not the score.
#[test]
fn smollm2_answers_three_real_gsm8k_questions_end_to_end() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let data = root.join("assets/gsm8k/test.jsonl");
    if !model.is_file() || !data.is_file() {
        eprintln!("SKIPPED: assets not fetched (run scripts/fetch-assets.sh)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let items = tmp.path().join("items.jsonl");
    let t0 = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mergec"))
        .arg("eval")
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--train")
        .arg(root.join("assets/gsm8k/train.jsonl"))
        .args(["--split", "test", "--limit", "3", "--shots", "2"])
        .args(["--max-new-tokens", "160", "--json", "--out"])
        .arg(&items)
        .env("MERGEC_CACHE_DIR", tmp.path().join("cache"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("--json output");
    assert_eq!(report["n"], 3, "{report}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&items)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for it in &lines {
        let c = it["completion"].as_str().unwrap();
        assert!(
            c.chars().any(|ch| ch.is_ascii_digit()),
            "a completion with no number: {c:?}"
        );
        assert!(it["answer"].is_string(), "no answer extracted: {it}");
        println!(
            "target {} answer {} correct {}",
            it["target"], it["answer"], it["correct"]
        );
    }
    println!(
        "smollm2: 3 real GSM8K questions end to end in {:.1} s: {}",
        t0.elapsed().as_secs_f64(),
        stdout.trim()
    );
}
