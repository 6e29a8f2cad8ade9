//! In-process evaluation (`mergec::eval::run`, `mergec eval --data`) with a deterministic
//! mock model: prompt construction (plain and chat), scoring and intervals, the result
//! cache, per-item output and determinism; the command line's errors through the binary;
//! and the external evaluators of docs/eval.md (scripts/example-evaluator.sh and the
//! lm_eval command line) against a stand-in `lm_eval` that writes lm_eval's result layout.

use clap::Parser;
use mergec::cli::eval::{EvalArgs, execute};
use mergec::eval::gsm8k::{Problem, Split, accuracy, few_shot_prompt};
use mergec::eval::run::{
    ChatMode, Dataset, EvalJob, EvalSettings, ItemRecord, SPLIT_SEED, evaluate, run_job,
};
use mergec::model::{GenOptions, Role, TextModel};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::rc::Rc;

// ---------------------------------------------------------------------------------------
// The mock model

/// What the mock saw.
#[derive(Default)]
struct Log {
    /// Calls of `generate`.
    calls: usize,
    prompts: Vec<String>,
    opts: Vec<GenOptions>,
    /// Conversations given to `chat_prompt`.
    turns: Vec<Vec<(Role, String)>>,
}

/// Answers the questions it knows with their number (then, in plain mode, rambles on
/// into a next question, as base models do) and everything else with 0.
struct Mock {
    knows: HashMap<String, String>,
    template: bool,
    hash: String,
    log: Rc<RefCell<Log>>,
}

impl Mock {
    fn new(knows: &[Problem], template: bool, hash: &str) -> Mock {
        Mock {
            knows: knows
                .iter()
                .map(|p| (p.question.clone(), p.target.clone()))
                .collect(),
            template,
            hash: hash.to_string(),
            log: Rc::default(),
        }
    }

    fn answer(&self, prompt: &str) -> String {
        let (question, plain) = match prompt.rsplit_once("<|user|>") {
            Some((_, rest)) => (rest.split("<|end|>").next().unwrap_or(""), false),
            None => {
                let rest = prompt.rsplit_once("Question: ").map_or("", |(_, r)| r);
                (rest.split("\nAnswer:").next().unwrap_or(""), true)
            }
        };
        match self.knows.get(question) {
            Some(n) if plain => format!(" Adding up gives {n}.\n#### {n}\n\nQuestion: And 99?"),
            Some(n) => format!("Adding up gives {n}.\n#### {n}"),
            None => " I am not sure, maybe 0.".to_string(),
        }
    }
}

impl TextModel for Mock {
    fn generate(
        &mut self,
        prompts: &[String],
        opts: &GenOptions,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<String>, String> {
        {
            let mut log = self.log.borrow_mut();
            log.calls += 1;
            log.prompts.extend(prompts.iter().cloned());
            log.opts.push(opts.clone());
        }
        let mut out = Vec::new();
        for chunk in prompts.chunks(opts.batch_size) {
            out.extend(chunk.iter().map(|p| self.answer(p)));
            progress(out.len());
        }
        Ok(out)
    }

    fn chat_prompt(&self, turns: &[(Role, String)]) -> Option<String> {
        if !self.template {
            return None;
        }
        self.log.borrow_mut().turns.push(turns.to_vec());
        let mut s = String::new();
        for (role, text) in turns {
            let r = match role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            s.push_str(&format!("<|{r}|>{text}<|end|>"));
        }
        s.push_str("<|assistant|>");
        Some(s)
    }

    fn content_hash(&self) -> String {
        self.hash.clone()
    }
}

// ---------------------------------------------------------------------------------------
// Data

fn problem(question: String, solution: String) -> Problem {
    let target = solution.rsplit_once("#### ").expect("####").1.to_string();
    Problem {
        question,
        solution,
        target,
    }
}

/// `n` addition problems (targets 3, 5, 7, ...).
fn data(n: usize) -> Vec<Problem> {
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
fn train(n: usize) -> Vec<Problem> {
    (0..n)
        .map(|i| {
            problem(
                format!("Train {i}: what is {i} doubled?"),
                format!("{i} * 2 = {}\n#### {}", 2 * i, 2 * i),
            )
        })
        .collect()
}

fn jsonl(ps: &[Problem]) -> String {
    ps.iter()
        .map(|p| {
            serde_json::json!({"question": p.question, "answer": p.solution}).to_string() + "\n"
        })
        .collect()
}

/// A directory with data.jsonl (6 problems) and train.jsonl (12).
fn files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("data.jsonl"), jsonl(&data(6))).expect("write data");
    std::fs::write(dir.path().join("train.jsonl"), jsonl(&train(12))).expect("write train");
    dir
}

fn no_progress() -> impl FnMut(usize) {
    |_| {}
}

// ---------------------------------------------------------------------------------------
// evaluate: prompts, scoring

#[test]
fn plain_prompts_are_few_shot_text_with_stop_strings() {
    let (train, data) = (train(12), data(6));
    let mut m = Mock::new(&data[..4], false, "h");
    let settings = EvalSettings {
        shots: 3,
        max_new_tokens: 77,
        batch_size: 4,
        ..EvalSettings::default()
    };
    let mut seen = Vec::new();
    let r = evaluate(&mut m, &data, &train, &settings, &mut |d| seen.push(d)).expect("runs");
    assert!(!r.chat, "no template: plain prompts");
    assert_eq!(seen, [4, 6], "progress passed through");
    let log = m.log.borrow();
    assert_eq!((log.calls, log.prompts.len()), (1, 6));
    assert_eq!(r.shots.len(), 3);
    let shots: Vec<Problem> = r.shots.iter().map(|&i| train[i].clone()).collect();
    let s0 = &shots[0];
    let want0 = format!("Question: {}\nAnswer: {}\n\n", s0.question, s0.solution);
    for (p, q) in log.prompts.iter().zip(&data) {
        assert!(p.starts_with(&want0), "{p}");
        assert!(
            p.ends_with(&format!("\n\nQuestion: {}\nAnswer:", q.question)),
            "{p}"
        );
        assert_eq!(p.matches("Question: ").count(), 4, "3 shots + the question");
        assert_eq!(p, &few_shot_prompt(&shots, q));
    }
    let o = &log.opts[0];
    assert_eq!((o.max_new_tokens, o.batch_size), (77, 4));
    assert!(o.stop.iter().any(|s| s == "\n\nQuestion:"), "{:?}", o.stop);
    assert!(o.stop.iter().any(|s| s == "\nQuestion:"), "{:?}", o.stop);
    // --chat off on a model with a template still gives plain prompts.
    let mut m = Mock::new(&[], true, "h");
    let off = EvalSettings {
        chat: ChatMode::Off,
        ..settings
    };
    let r = evaluate(&mut m, &data, &train, &off, &mut no_progress()).expect("runs");
    assert!(!r.chat);
    assert!(m.log.borrow().prompts[0].starts_with("Question: "));
    assert!(m.log.borrow().turns.is_empty());
}

#[test]
fn chat_prompts_are_conversations_with_worked_shots() {
    let (train, data) = (train(12), data(3));
    let mut m = Mock::new(&data, true, "h");
    let settings = EvalSettings {
        shots: 2,
        system: Some("Solve the problem.".to_string()),
        ..EvalSettings::default()
    };
    let r = evaluate(&mut m, &data, &train, &settings, &mut no_progress()).expect("runs");
    assert!(r.chat, "auto uses the template");
    assert_eq!(r.correct, 3);
    let log = m.log.borrow();
    assert_eq!(log.turns.len(), 3);
    for (turns, q) in log.turns.iter().zip(&data) {
        let roles: Vec<Role> = turns.iter().map(|t| t.0).collect();
        use Role::*;
        assert_eq!(roles, [System, User, Assistant, User, Assistant, User]);
        assert_eq!(turns[0].1, "Solve the problem.");
        for (k, &i) in r.shots.iter().enumerate() {
            assert_eq!(turns[1 + 2 * k].1, train[i].question);
            assert_eq!(turns[2 + 2 * k].1, train[i].solution);
            assert!(
                turns[2 + 2 * k]
                    .1
                    .ends_with(&format!("#### {}", train[i].target))
            );
        }
        assert_eq!(turns[5].1, q.question);
    }
    assert!(log.prompts.iter().all(|p| p.ends_with("<|assistant|>")));
    assert!(log.opts[0].stop.is_empty(), "chat turns end at EOS");
    drop(log);

    // No system turn: shots and question only; --chat on needs a template.
    let mut m = Mock::new(&data, true, "h");
    let plain_sys = EvalSettings {
        shots: 1,
        chat: ChatMode::On,
        ..EvalSettings::default()
    };
    evaluate(&mut m, &data, &train, &plain_sys, &mut no_progress()).expect("runs");
    let roles: Vec<Role> = m.log.borrow().turns[0].iter().map(|t| t.0).collect();
    assert_eq!(roles, [Role::User, Role::Assistant, Role::User]);
    let mut m = Mock::new(&data, false, "h");
    let e = evaluate(&mut m, &data, &train, &plain_sys, &mut no_progress()).unwrap_err();
    assert!(e.contains("no chat template"), "{e}");
    assert_eq!(m.log.borrow().calls, 0);
}

#[test]
fn completions_are_cut_scored_and_intervalled() {
    let (train, data) = (train(12), data(6));
    let mut m = Mock::new(&data[..4], false, "h");
    let r = evaluate(
        &mut m,
        &data,
        &train,
        &EvalSettings::default(),
        &mut no_progress(),
    )
    .expect("runs");
    assert_eq!((r.n, r.correct), (6, 4));
    let (acc, lo, hi) = accuracy(4, 6);
    assert_eq!((r.accuracy, r.ci_low, r.ci_high), (acc, lo, hi));
    assert!(lo < r.accuracy && r.accuracy < hi && (r.accuracy - 4.0 / 6.0).abs() < 1e-12);
    for (i, (rec, p)) in r.items.iter().zip(&data).enumerate() {
        assert_eq!(rec.index, i);
        assert_eq!((&rec.question, &rec.target), (&p.question, &p.target));
        if i < 4 {
            assert_eq!(
                rec.completion,
                format!(" Adding up gives {0}.\n#### {0}", p.target),
                "cut at the stop string"
            );
            assert_eq!(rec.answer.as_deref(), Some(p.target.as_str()));
            assert!(rec.correct);
        } else {
            assert_eq!(rec.answer.as_deref(), Some("0"));
            assert!(!rec.correct);
        }
    }
    // Too many shots, no problems: errors before generating.
    let many = EvalSettings {
        shots: 13,
        ..EvalSettings::default()
    };
    let e = evaluate(&mut m, &data, &train, &many, &mut no_progress()).unwrap_err();
    assert!(e.contains("only 12"), "{e}");
    let e = evaluate(
        &mut m,
        &[],
        &train,
        &EvalSettings::default(),
        &mut no_progress(),
    )
    .unwrap_err();
    assert!(e.contains("no problems"), "{e}");
    assert_eq!(m.log.borrow().calls, 1);
}

#[test]
fn evaluation_is_deterministic_and_the_seed_picks_the_shots() {
    let (train, data) = (train(12), data(6));
    let run = |seed: u64| {
        let mut m = Mock::new(&data[..3], false, "h");
        let s = EvalSettings {
            seed,
            ..EvalSettings::default()
        };
        let r = evaluate(&mut m, &data, &train, &s, &mut no_progress()).expect("runs");
        let prompts = m.log.borrow().prompts.clone();
        (r, prompts)
    };
    let (a, pa) = run(7);
    let (b, pb) = run(7);
    assert_eq!((&a, &pa), (&b, &pb));
    let (c, pc) = run(8);
    assert_ne!(a.shots, c.shots);
    assert_ne!(pa, pc);
    assert_eq!(a.correct, c.correct);
}

// ---------------------------------------------------------------------------------------
// run_job: splits, the cache

fn job<'a>(data: &'a Dataset, train: Option<&'a Dataset>) -> EvalJob<'a> {
    EvalJob {
        data,
        train,
        split: Split::All,
        limit: None,
        settings: EvalSettings::default(),
    }
}

#[test]
fn jobs_score_their_split_with_data_file_indices() {
    let dir = files();
    let data = Dataset::load(&dir.path().join("data.jsonl")).expect("data");
    let train = Dataset::load(&dir.path().join("train.jsonl")).expect("train");
    let mut j = job(&data, Some(&train));
    j.split = Split::Dev(4);
    let want = Split::Dev(4).indices(6, SPLIT_SEED);
    let mut m = Mock::new(&data.problems, false, "h");
    let o = run_job(&mut m, &j, None, &mut no_progress()).expect("runs");
    let got: Vec<usize> = o.report.items.iter().map(|r| r.index).collect();
    assert_eq!(got, want);
    for r in &o.report.items {
        assert_eq!(r.question, data.problems[r.index].question);
    }
    j.limit = Some(2);
    let o = run_job(&mut m, &j, None, &mut no_progress()).expect("runs");
    let got: Vec<usize> = o.report.items.iter().map(|r| r.index).collect();
    assert_eq!(got, want[..2]);
    j.limit = Some(0);
    let e = run_job(&mut m, &j, None, &mut no_progress()).unwrap_err();
    assert!(e.contains("is empty"), "{e}");
}

#[test]
fn results_are_cached_under_a_key_of_everything_that_matters() {
    let dir = files();
    let cache = tempfile::tempdir().expect("cache dir");
    let data = Dataset::load(&dir.path().join("data.jsonl")).expect("data");
    let train = Dataset::load(&dir.path().join("train.jsonl")).expect("train");
    let base = job(&data, Some(&train));

    let mut m = Mock::new(&data.problems[..2], false, "h1");
    let first = run_job(&mut m, &base, Some(cache.path()), &mut no_progress()).expect("runs");
    assert!(!first.cached);
    assert_eq!(m.log.borrow().calls, 1);
    let file = first.cache_file.clone().expect("a cache file");
    assert!(file.is_file());

    // Same model content, same job: read back, nothing generated.
    let mut again = Mock::new(&[], false, "h1");
    let second = run_job(&mut again, &base, Some(cache.path()), &mut no_progress()).expect("ok");
    assert!(second.cached);
    assert_eq!(again.log.borrow().calls, 0, "a hit does not generate");
    assert_eq!(second.report, first.report);
    assert_eq!(second.cache_key, first.cache_key);

    // Anything that changes the result changes the key.
    let mut other_data_text = jsonl(&data.problems);
    other_data_text.push_str(&jsonl(&[problem("Extra?".into(), "#### 1".into())]));
    std::fs::write(dir.path().join("other.jsonl"), other_data_text).expect("write");
    let other = Dataset::load(&dir.path().join("other.jsonl")).expect("other");
    let key = |j: &EvalJob, h: &str| j.cache_key(h);
    let mut keys = vec![key(&base, "h1"), key(&base, "h2")];
    let variants: Vec<fn(&mut EvalJob)> = vec![
        |j| j.split = Split::Dev(3),
        |j| j.split = Split::Test(3),
        |j| j.limit = Some(5),
        |j| j.train = None,
        |j| j.settings.shots = 4,
        |j| j.settings.chat = ChatMode::Off,
        |j| j.settings.chat = ChatMode::On,
        |j| j.settings.system = Some("Hi".into()),
        |j| j.settings.max_new_tokens = 128,
        |j| j.settings.batch_size = 8,
        |j| j.settings.seed = 1,
    ];
    for v in &variants {
        let mut j = base.clone();
        v(&mut j);
        keys.push(key(&j, "h1"));
    }
    let mut j = base.clone();
    j.data = &other;
    keys.push(key(&j, "h1"));
    let mut j = base.clone();
    j.train = Some(&other);
    keys.push(key(&j, "h1"));
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "every variant has its own key");
    assert_eq!(base.cache_key("h1"), first.cache_key, "keys are stable");

    // A different setting or model misses and generates.
    let mut j = base.clone();
    j.settings.max_new_tokens = 128;
    let mut m = Mock::new(&[], false, "h1");
    let o = run_job(&mut m, &j, Some(cache.path()), &mut no_progress()).expect("runs");
    assert!(!o.cached && m.log.borrow().calls == 1);
    let mut m = Mock::new(&[], false, "h2");
    let o = run_job(&mut m, &base, Some(cache.path()), &mut no_progress()).expect("runs");
    assert!(!o.cached && m.log.borrow().calls == 1);
    assert_eq!(o.report.correct, 0, "h2's own result, not h1's");

    // A damaged entry is a miss and is rewritten; no temporary files are left behind.
    std::fs::write(&file, "{ not json").expect("damage");
    let mut m = Mock::new(&data.problems[..2], false, "h1");
    let o = run_job(&mut m, &base, Some(cache.path()), &mut no_progress()).expect("runs");
    assert!(!o.cached && m.log.borrow().calls == 1);
    assert_eq!(o.report, first.report);
    let mut m = Mock::new(&[], false, "h1");
    assert!(
        run_job(&mut m, &base, Some(cache.path()), &mut no_progress())
            .expect("runs")
            .cached
    );
    for e in std::fs::read_dir(cache.path()).expect("list") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(name.ends_with(".json") && !name.starts_with('.'), "{name}");
    }

    // No cache directory: nothing read or written.
    let mut m = Mock::new(&[], false, "h1");
    let o = run_job(&mut m, &base, None, &mut no_progress()).expect("runs");
    assert!(!o.cached && o.cache_file.is_none() && m.log.borrow().calls == 1);
}

// ---------------------------------------------------------------------------------------
// The command line in process (execute, with a mock loader)

#[derive(Parser)]
struct Cmd {
    #[command(flatten)]
    args: EvalArgs,
}

fn args(argv: &[&str]) -> EvalArgs {
    Cmd::try_parse_from(std::iter::once("eval").chain(argv.iter().copied()))
        .expect("parses")
        .args
}

/// Runs `mergec eval` in process with a mock that knows the first 4 problems.
fn cli(argv: &[&str], cache: Option<&Path>, log: &Rc<RefCell<Log>>) -> Result<String, String> {
    let known = data(4);
    let load = |p: &Path| -> Result<Box<dyn TextModel>, String> {
        if p == Path::new("broken") {
            return Err("boom".to_string());
        }
        let mut m = Mock::new(&known, false, "cli");
        m.log = log.clone();
        Ok(Box::new(m))
    };
    let mut out = Vec::new();
    execute(&args(argv), &load, cache, &mut out)?;
    Ok(String::from_utf8(out).expect("utf-8"))
}

#[test]
fn the_command_prints_accuracy_json_and_per_item_results() {
    let dir = files();
    let cache = tempfile::tempdir().expect("cache");
    let d = dir.path().join("data.jsonl");
    let d = d.to_str().expect("utf-8 path");
    let log = Rc::new(RefCell::new(Log::default()));

    let text = cli(&["m", "--data", d, "--no-cache"], None, &log).expect("runs");
    let (acc, lo, hi) = accuracy(4, 6);
    let want = format!(
        "accuracy {:.1}% (95% CI {:.1}-{:.1}) on 6 problems [all of {d}; 5-shot]\n",
        100.0 * acc,
        100.0 * lo,
        100.0 * hi
    );
    assert_eq!(text, want);
    assert!(
        log.borrow().prompts[0].matches("Question: ").count() == 6,
        "train.jsonl next to the data gives 5 shots"
    );

    let items = dir.path().join("out/items.jsonl");
    let argv = [
        "m",
        "--data",
        d,
        "--split",
        "dev:5",
        "--limit",
        "3",
        "--shots",
        "2",
        "--max-new-tokens",
        "64",
        "--batch-size",
        "2",
        "--json",
        "--out",
        items.to_str().expect("utf-8"),
    ];
    let calls = log.borrow().calls;
    let v: serde_json::Value =
        serde_json::from_str(&cli(&argv, Some(cache.path()), &log).expect("runs")).expect("json");
    assert_eq!(log.borrow().calls, calls + 1);
    assert_eq!(v["n"], 3);
    assert_eq!(v["split"], "dev:5");
    assert_eq!(v["limit"], 3);
    assert_eq!(v["shots"], 2);
    assert_eq!(v["chat"], false);
    assert_eq!(v["cached"], false);
    assert_eq!(v["max_new_tokens"], 64);
    let o = log.borrow().opts.last().cloned().expect("opts");
    assert_eq!((o.max_new_tokens, o.batch_size), (64, 2));
    let want_idx = &Split::Dev(5).indices(6, SPLIT_SEED)[..3];
    let correct = want_idx.iter().filter(|&&i| i < 4).count();
    assert_eq!(v["correct"], correct);
    assert!((v["accuracy"].as_f64().expect("acc") - correct as f64 / 3.0).abs() < 1e-12);

    let recs: Vec<ItemRecord> = std::fs::read_to_string(&items)
        .expect("items written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record"))
        .collect();
    let idx: Vec<usize> = recs.iter().map(|r| r.index).collect();
    assert_eq!(idx, want_idx);
    for r in &recs {
        assert_eq!(r.correct, r.index < 4);
        assert_eq!(r.target, data(6)[r.index].target);
    }
    let leftovers: Vec<_> = std::fs::read_dir(items.parent().expect("dir"))
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");

    // Again: from the cache, the model not asked; the items file written again.
    std::fs::remove_file(&items).expect("rm");
    let v: serde_json::Value =
        serde_json::from_str(&cli(&argv, Some(cache.path()), &log).expect("runs")).expect("json");
    assert_eq!(v["cached"], true);
    assert_eq!(log.borrow().calls, calls + 1);
    assert_eq!(
        std::fs::read_to_string(&items)
            .expect("items")
            .lines()
            .count(),
        3
    );

    // Errors: the loader's, bad values, and none from the model when the data is wrong.
    let e = cli(&["broken", "--data", d], None, &log).unwrap_err();
    assert_eq!(e, "cannot load `broken`: boom");
    let e = cli(&["m", "--data", d, "--batch-size", "0"], None, &log).unwrap_err();
    assert!(e.contains("--batch-size"), "{e}");
    let e = cli(&["m", "--data", d, "--shots", "13"], None, &log).unwrap_err();
    assert!(e.contains("has only 12 problems"), "{e}");
    let e = cli(&["m"], None, &log).unwrap_err();
    assert!(e.contains("--data FILE.jsonl"), "{e}");
}

// ---------------------------------------------------------------------------------------
// The binary

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
