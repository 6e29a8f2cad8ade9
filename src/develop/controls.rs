//! The controls the paper lacks (issue 14 item 5): after the main run, the same settings
//! with the same number of scored programs for two more arms, each a normal (resumable)
//! run directory under `RUN/controls/`:
//!
//! - `no-dpo`: the same generator, never trained (`learn = false`);
//! - `random`: the type-directed random program generator (`src/gen.rs`), its program
//!   sizes drawn from the node counts of the main run's valid programs.
//!
//! Each arm runs until it has scored as many programs as the main run did
//! (`scored_budget`), for at most [`ITERATION_FACTOR`] times the main run's iterations.
//! A program the main run scored is not merged again: its dev score is reused. The best
//! program of each arm on dev is scored once on test. The report's control table comes
//! from [`table`].

use super::config::{MAX_ITERATIONS, RunConfig};
use super::driver::{self, Ended, Event, Outcome, ProgramRecord};
use super::report::{Acc, IterStats, iteration_stats};
use super::scores::{Job, JobKind, Scorer};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::AtomicBool;

/// The control arms: directory name and what it changes.
pub const ARMS: [&str; 2] = ["no-dpo", "random"];

/// An arm may take this many times the main run's iterations to reach its budget.
pub const ITERATION_FACTOR: usize = 4;

fn records(events: &[Event]) -> impl Iterator<Item = &ProgramRecord> {
    events.iter().filter_map(|e| match e {
        Event::Program(r) => Some(r),
        _ => None,
    })
}

fn scored(events: &[Event]) -> usize {
    records(events)
        .filter(|r| matches!(r.outcome, Outcome::Scored { .. }))
        .count()
}

/// The settings of control arm `arm` of the main run `cfg` whose record is `events`.
pub fn arm_config(cfg: &RunConfig, arm: &str, events: &[Event]) -> RunConfig {
    let mut c = cfg.clone();
    c.run_dir = cfg.run_dir.join("controls").join(arm);
    c.controls = false;
    c.learn = false;
    c.scored_budget = scored(events);
    c.iterations = (cfg.iterations * ITERATION_FACTOR).min(MAX_ITERATIONS);
    if arm == "random" {
        c.generator = super::generator::GeneratorSpec::Random;
        c.archive = 0;
        c.random_sizes = records(events)
            .filter(|r| r.assessed.stage == super::candidate::Stage::Valid)
            .filter_map(|r| super::random::source_size(r.assessed.program.as_deref()?))
            .map(|s| s.clamp(1, crate::r#gen::MAX_SIZE))
            .collect();
    }
    c
}

/// Runs (or resumes) the control arms of the finished main run `cfg` (record `events`,
/// appended to through `log`) and scores each arm's best program on dev, the main run's
/// included, once on test at its defaults (the same for every arm).
pub fn run(
    cfg: &RunConfig,
    log: &mut super::record::RunLog,
    events: &mut Vec<Event>,
    stop: &AtomicBool,
    say: &mut dyn FnMut(&str),
) -> Result<Ended, String> {
    if scored(events) == 0 {
        say("controls: the main run scored no program; nothing to compare");
        return Ok(Ended::Finished);
    }
    if let Some(ev) = best_on_test(cfg, log, events, say)? {
        events.push(ev);
    }
    let events: &[Event] = events;
    let prior: HashMap<String, (f64, usize, Option<String>)> = records(events)
        .filter_map(|r| match (&r.assessed.canonical, &r.outcome) {
            (
                Some(c),
                Outcome::Scored {
                    dev, correct, hits, ..
                },
            ) => Some((c.clone(), (*dev, *correct, hits.clone()))),
            _ => None,
        })
        .collect();
    for arm in ARMS {
        let c = arm_config(cfg, arm, events);
        say(&format!(
            "control `{arm}`: {} programs to score, at most {} iterations, in {}",
            c.scored_budget,
            c.iterations,
            c.run_dir.display()
        ));
        let fresh = super::record::check_run_dir(&c.run_dir, false)?;
        let mut setup = driver::Setup::new(&c)?;
        setup.prior = prior.clone();
        let (mut log, mut arm_events) = super::run::open_run(&c, fresh, true)?;
        let finished = arm_events
            .iter()
            .filter(|e| matches!(e, Event::IterationDone { .. }))
            .count();
        let mut generator = super::run::generator(&c, finished)?;
        let ended = super::iteration::run_iterations(
            &setup,
            generator.as_mut(),
            &mut log,
            &mut arm_events,
            stop,
            say,
        )?;
        if ended == Ended::Interrupted {
            return Ok(ended);
        }
        best_on_test(&c, &mut log, &arm_events, say)?;
    }
    Ok(Ended::Finished)
}

/// The arm's best program on dev (ties: the earliest).
fn best(events: &[Event]) -> Option<&ProgramRecord> {
    let mut b: Option<&ProgramRecord> = None;
    for r in records(events).filter(|r| matches!(r.outcome, Outcome::Scored { .. })) {
        if b.is_none_or(|x| r.dev().unwrap_or(0.0) > x.dev().unwrap_or(0.0)) {
            b = Some(r);
        }
    }
    b
}

/// The record key of an arm's best program's test score.
fn test_key(r: &ProgramRecord) -> String {
    let c = r.assessed.canonical.as_deref().unwrap_or_default();
    format!("best test {}", &c[..16.min(c.len())])
}

/// Scores the arm's best program on test once, at its defaults, through the final
/// stage's [`Scorer`] (recorded; a resumed run reads it), and returns the event
/// recorded (None: nothing new, or the merge failed: "failed" in the table).
fn best_on_test(
    cfg: &RunConfig,
    log: &mut super::record::RunLog,
    events: &[Event],
    say: &mut dyn FnMut(&str),
) -> Result<Option<Event>, String> {
    let Some(r) = best(events) else {
        return Ok(None);
    };
    let key = test_key(r);
    if find_score(events, &key).is_some() {
        return Ok(None);
    }
    let mut test = crate::eval::gsm8k::load_jsonl(&cfg.test)?;
    if cfg.test_limit > 0 {
        test.truncate(cfg.test_limit);
    }
    let mut scorer = Scorer::new(cfg, log, events, say);
    scorer.prefetch(vec![Job {
        key: key.clone(),
        what: JobKind::Program {
            src: r.assessed.program.clone().unwrap_or_default(),
            params: vec![],
            base: cfg.base.clone(),
            models: cfg.models.clone(),
        },
        problems: &test,
    }])?;
    Ok(scorer.event(&key))
}

fn find_score(events: &[Event], key: &str) -> Option<Acc> {
    events.iter().find_map(|e| match e {
        Event::Score {
            key: k,
            accuracy,
            correct,
            n,
            ..
        } if k == key => Some(Acc {
            accuracy: *accuracy,
            correct: *correct,
            n: *n,
        }),
        _ => None,
    })
}

/// One arm of the control table.
#[derive(Clone, Debug, Serialize)]
pub struct Arm {
    pub arm: String,
    pub generator: String,
    pub learn: bool,
    pub generated: usize,
    pub valid: usize,
    pub scored: usize,
    pub best_dev: Option<f64>,
    pub best_test: Option<Acc>,
    /// Mean dev of the valid programs after the first iteration (where learning acts).
    pub mean_dev_after_first: Option<f64>,
    pub iterations: Vec<IterStats>,
}

/// The control table: the main run and its arms.
#[derive(Clone, Debug, Serialize)]
pub struct ControlTable {
    pub arms: Vec<Arm>,
    pub verdict: String,
}

fn arm_stats(name: &str, cfg: &RunConfig, events: &[Event], best_test: Option<Acc>) -> Arm {
    let mut iterations = iteration_stats(cfg, events);
    while iterations.last().is_some_and(|s| s.generated == 0) {
        iterations.pop();
    }
    let later: Vec<f64> = iterations
        .iter()
        .skip(1)
        .flat_map(|s| s.dev_scores.iter().copied())
        .collect();
    Arm {
        arm: name.into(),
        generator: cfg.generator.to_string(),
        learn: cfg.learn,
        generated: iterations.iter().map(|s| s.generated).sum(),
        valid: iterations.iter().map(|s| s.valid).sum(),
        scored: scored(events),
        best_dev: iterations
            .iter()
            .filter_map(|s| s.best_dev)
            .reduce(f64::max),
        best_test,
        mean_dev_after_first: (!later.is_empty())
            .then(|| later.iter().sum::<f64>() / later.len() as f64),
        iterations,
    }
}

/// The control table of the run `cfg` (None when `controls` is off), from the main
/// record `events` (with its best program's test score) and the arms'
/// records under `RUN/controls/`.
pub fn table(cfg: &RunConfig, events: &[Event]) -> Option<ControlTable> {
    if !cfg.controls {
        return None;
    }
    let main_name = if cfg.learn { "main (DPO)" } else { "main" };
    let main_test = best(events).and_then(|r| find_score(events, &test_key(r)));
    let mut arms = vec![arm_stats(main_name, cfg, events, main_test)];
    for name in ARMS {
        let c = arm_config(cfg, name, events);
        let record = c.run_dir.join("programs.jsonl");
        if !record.is_file() {
            continue;
        }
        let Ok((_, ev)) = super::record::RunLog::open::<Event>(&record) else {
            continue;
        };
        let t = best(&ev).and_then(|r| find_score(&ev, &test_key(r)));
        arms.push(arm_stats(name, &c, &ev, t));
    }
    let verdict = verdict(&arms);
    Some(ControlTable { arms, verdict })
}

/// Whether DPO beat its no-DPO control on dev (best dev, and mean dev of the valid
/// programs after the first iteration, where the two arms first differ).
fn verdict(arms: &[Arm]) -> String {
    let (Some(main), Some(ctl)) = (arms.first(), arms.iter().find(|a| a.arm == "no-dpo")) else {
        return "The no-DPO control did not run.".into();
    };
    let pct = |x: Option<f64>| {
        x.map(|v| format!("{:.1}", 100.0 * v))
            .unwrap_or_else(|| "–".into())
    };
    let gt = |a: Option<f64>, b: Option<f64>| a.unwrap_or(-1.0) > b.unwrap_or(-1.0);
    let better_best = gt(main.best_dev, ctl.best_dev);
    let better_mean = gt(main.mean_dev_after_first, ctl.mean_dev_after_first);
    let figures = format!(
        "best dev {} vs {}, mean dev of valid programs after iteration 1 {} vs {}",
        pct(main.best_dev),
        pct(ctl.best_dev),
        pct(main.mean_dev_after_first),
        pct(ctl.mean_dev_after_first)
    );
    if !main.learn {
        format!("The main run did not learn (learn = false): {figures}.")
    } else if better_best && better_mean {
        format!("DPO beats its no-DPO control on dev: {figures}.")
    } else {
        format!(
            "**DPO does not beat its no-DPO control** on dev ({}): {figures}.",
            if better_best || better_mean {
                "better on one of the two measures only"
            } else {
                "no better on either measure"
            }
        )
    }
}

impl ControlTable {
    /// The report's section.
    pub fn markdown(&self) -> String {
        let pct = |x: Option<f64>| {
            x.map(|v| format!("{:.1}", 100.0 * v))
                .unwrap_or_else(|| "–".into())
        };
        let mut md = String::from(
            "\n## Controls: the same number of scored programs without DPO, and random programs\n\n\
             | arm | generator | generated | valid rate | programs scored | best dev | mean dev of valid after iteration 1 | best on dev, on test |\n\
             |---|---|---:|---:|---:|---:|---:|---:|\n",
        );
        for a in &self.arms {
            let _ = writeln!(
                md,
                "| {} | `{}`{} | {} | {:.1}% | {} | {} | {} | {} |",
                a.arm,
                a.generator,
                if a.learn { "" } else { " (no learning)" },
                a.generated,
                100.0 * a.valid as f64 / a.generated.max(1) as f64,
                a.scored,
                pct(a.best_dev),
                pct(a.mean_dev_after_first),
                a.best_test.map(|t| t.show()).unwrap_or_else(|| "–".into())
            );
        }
        let _ = writeln!(md, "\n{}\n", self.verdict);
        md.push_str("Per iteration: valid rate / mean dev of valid programs (programs scored).\n\n| iteration |");
        for a in &self.arms {
            let _ = write!(md, " {} |", a.arm);
        }
        md.push_str("\n|---:|");
        md.push_str(&"---:|".repeat(self.arms.len()));
        md.push('\n');
        let rows = self
            .arms
            .iter()
            .map(|a| a.iterations.len())
            .max()
            .unwrap_or(0);
        for t in 0..rows {
            let _ = write!(md, "| {} |", t + 1);
            for a in &self.arms {
                match a.iterations.get(t) {
                    Some(s) => {
                        let _ = write!(
                            md,
                            " {:.0}% / {} ({}) |",
                            100.0 * s.valid as f64 / s.generated.max(1) as f64,
                            pct(s.mean_dev),
                            s.scored
                        );
                    }
                    None => md.push_str(" |"),
                }
            }
            md.push('\n');
        }
        md.push_str(
            "\nThe arms are run directories under `controls/`. A program the main run scored \
             is not merged again in an arm (its dev score is reused; scoring is deterministic). \
             The random arm draws each program's size from the node counts of the main run's \
             valid programs.\n",
        );
        md
    }
}
