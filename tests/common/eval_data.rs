//! Small GSM8K-format data sets for the evaluation tests (tests/eval_run.rs,
//! tests/eval_cli.rs).

#![allow(dead_code)]

use mergec::eval::gsm8k::Problem;

pub fn problem(question: String, solution: String) -> Problem {
    let target = solution.rsplit_once("#### ").expect("####").1.to_string();
    Problem {
        question,
        solution,
        target,
    }
}

/// `n` addition problems (targets 3, 5, 7, ...).
pub fn data(n: usize) -> Vec<Problem> {
    (0..n)
        .map(|i| {
            problem(
                format!("What is {i} plus {}?", i + 3),
                format!("{i} + {} = {}\n#### {}", i + 3, 2 * i + 3, 2 * i + 3),
            )
        })
        .collect()
}

/// `n` worked examples (doubling).
pub fn train(n: usize) -> Vec<Problem> {
    (0..n)
        .map(|i| {
            problem(
                format!("Train {i}: what is {i} doubled?"),
                format!("{i} * 2 = {}\n#### {}", 2 * i, 2 * i),
            )
        })
        .collect()
}

pub fn jsonl(ps: &[Problem]) -> String {
    ps.iter()
        .map(|p| {
            serde_json::json!({"question": p.question, "answer": p.solution}).to_string() + "\n"
        })
        .collect()
}

/// A directory with data.jsonl (6 problems) and train.jsonl (12).
pub fn files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("data.jsonl"), jsonl(&data(6))).expect("write data");
    std::fs::write(dir.path().join("train.jsonl"), jsonl(&train(12))).expect("write train");
    dir
}
