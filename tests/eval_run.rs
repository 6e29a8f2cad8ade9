//! In-process evaluation (`mergec::eval::run`, `mergec eval --data`) with a deterministic
//! mock model: prompt construction (plain and chat), scoring and intervals, the result
//! cache, per-item output and determinism, and the command line in process. The binary's
//! errors and the external evaluators: tests/eval_cli.rs.

#[path = "common/eval_data.rs"]
mod eval_data;

use clap::Parser;
use eval_data::*;
use mergec::cli::eval::{EvalArgs, execute};
use mergec::eval::gsm8k::{Problem, Split, accuracy, few_shot_prompt};
use mergec::eval::run::{
    ChatMode, Dataset, EvalJob, EvalSettings, ItemRecord, SPLIT_SEED, evaluate, run_job,
};
use mergec::model::{GenOptions, Role, TextModel};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
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
    ) -> mergec::model::Result<Vec<String>> {
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
    assert!(
        matches!(e, mergec::eval::EvalError::Job(_)) && e.to_string().contains("no chat template"),
        "{e}"
    );
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
    assert!(
        matches!(e, mergec::eval::EvalError::Job(_)) && e.to_string().contains("only 12"),
        "{e}"
    );
    let e = evaluate(
        &mut m,
        &[],
        &train,
        &EvalSettings::default(),
        &mut no_progress(),
    )
    .unwrap_err();
    assert!(
        matches!(e, mergec::eval::EvalError::Job(_)) && e.to_string().contains("no problems"),
        "{e}"
    );
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
    assert!(
        matches!(e, mergec::eval::EvalError::Job(_)) && e.to_string().contains("is empty"),
        "{e}"
    );
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
