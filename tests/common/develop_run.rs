//! A `mergec develop` run on a family of tiny random models with a scripted
//! OpenAI-compatible generator (tests/develop.rs, tests/final_stage.rs).

#![allow(dead_code)]

use super::mock_http;
use super::tiny_llama;
use std::path::Path;
use std::process::Command;

pub const VALID: &str = "merge m(base: Tensor, models: [Tensor], w: f32 = 0.3) -> Tensor {\n    return base + w * sum(models - base)\n}";

/// The replies, cycled by the request's seed: valid ones (several distinct), a renamed
/// duplicate, one that does not check, and prose without a program.
pub fn reply(k: u64) -> String {
    match k % 6 {
        0 => format!("```merge\n{VALID}\n```"),
        1 => VALID.replace("0.3", "0.6").to_string(),
        2 => "```merge\nmerge zz(b: Tensor, ms: [Tensor], w: f32 = 0.3) -> Tensor {\n    return b + w * sum(ms - b)\n}\n```".into(),
        3 => "```merge\nmerge bad(base: Tensor, models: [Tensor]) -> Tensor {\n    return base + nosuch(models)\n}\n```".into(),
        4 => "I would average them.".into(),
        _ => VALID.replace("0.3", &format!("0.{}", 1 + k % 5)).replace("sum(", "mean("),
    }
}

/// A completion server: `n` replies per request, by seed; repair prompts get a valid
/// program.
pub fn server() -> String {
    mock_http::serve(|_, req| {
        let seed = req["seed"].as_u64().unwrap_or(0);
        let n = req["n"].as_u64().unwrap_or(1);
        let repair = req["prompt"]
            .as_str()
            .unwrap_or("")
            .contains("was rejected");
        let choices: Vec<_> = (0..n)
            .map(|i| {
                let text = if repair {
                    VALID.replace("0.3", "0.45")
                } else {
                    reply(i)
                };
                serde_json::json!({"text": text, "seed": seed})
            })
            .collect();
        (200, serde_json::json!({"choices": choices}).to_string())
    })
}

pub fn family(dir: &Path) {
    tiny_llama::write_tiny_model(&dir.join("base"), 1, 0.3);
    tiny_llama::write_tiny_model(&dir.join("m1"), 2, 0.3);
    tiny_llama::write_tiny_model(&dir.join("m2"), 3, 0.3);
    let mut data = String::new();
    for i in 0..6 {
        data.push_str(
            &serde_json::json!({"question": format!("what is {i}+1?"), "answer": format!("{i}+1={}\n#### {}", i + 1, i + 1)})
                .to_string(),
        );
        data.push('\n');
    }
    std::fs::write(dir.join("dev.jsonl"), &data).unwrap();
    std::fs::write(dir.join("test.jsonl"), &data).unwrap();
}

/// `mergec develop` on the family in `dir` with the mock server at `url` (or, for a
/// `local:` url, that generator); `extra` flags replace the defaults they name.
pub fn develop(dir: &Path, url: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mergec"));
    c.arg("develop");
    if url.starts_with("local:") {
        c.args(["--generator", url]);
    } else {
        c.args([
            "--generator",
            &format!("openai:{url}"),
            "--generator-model",
            "mock",
            // The mock enforces no grammar, and `auto` would probe it (extra requests the
            // tests count).
            "--generator-grammar",
            "none",
        ]);
    }
    c.arg("--base")
        .arg(dir.join("base"))
        .arg("--models")
        .arg(format!(
            "{},{}",
            dir.join("m1").display(),
            dir.join("m2").display()
        ))
        .arg("--dev")
        .arg(dir.join("dev.jsonl"))
        .arg("--test")
        .arg(dir.join("test.jsonl"))
        .arg("--run-dir")
        .arg(dir.join("run"));
    for (flag, value) in [
        ("--iterations", "2"),
        ("--programs", "6"),
        ("--max-new-tokens", "4"),
        ("--tensors", "mlp"),
    ] {
        if !extra.contains(&flag) {
            c.args([flag, value]);
        }
    }
    c.args(extra);
    c
}

pub fn records(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("run/programs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
