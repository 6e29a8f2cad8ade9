//! The end of a run: the best programs on dev scored on test, the seed and candidates,
//! the stdlib baselines tuned on dev with the paper's grid, the transfer to a second
//! family, and the report (Markdown tables in the form of the paper's Tables 1-3, plus
//! PNG plots). Every score is recorded as it is made, so a resumed run scores nothing
//! twice.

use super::config::RunConfig;
use super::driver::{
    Event, Outcome, ProgramRecord, merge_and_score, parallel_map, resolve_jobs, score_model,
};
use super::record::RunLog;
use crate::eval::gsm8k::{Problem, accuracy, load_jsonl};
use crate::eval::stats::hits_from_hex;
use crate::types::Const;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// An accuracy with its sample.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Acc {
    pub accuracy: f64,
    pub correct: usize,
    pub n: usize,
}

impl Acc {
    /// "61.5 ± 3.1" style: percent with the 95% Wilson interval.
    pub fn show(&self) -> String {
        let (a, lo, hi) = accuracy(self.correct, self.n);
        format!("{:.1} [{:.1}, {:.1}]", 100.0 * a, 100.0 * lo, 100.0 * hi)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub dev: Option<Acc>,
    pub test: Option<Acc>,
}

#[derive(Clone, Debug, Serialize)]
pub struct IterStats {
    pub iteration: usize,
    pub generated: usize,
    pub valid: usize,
    pub scored: usize,
    pub mean_dev: Option<f64>,
    pub best_dev: Option<f64>,
    pub best_so_far: Option<f64>,
    pub dev_scores: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Final {
    pub iterations: Vec<IterStats>,
    /// Seed, candidates, tuned baselines, best discovered (Table 1).
    pub main: Vec<Row>,
    /// Every baseline grid point on dev.
    pub grid: Vec<Row>,
    /// The top programs on dev with their test scores.
    pub discovered: Vec<(Row, usize, String)>,
    /// Table 3: the second family.
    pub transfer: Vec<Row>,
}

struct Scorer<'a> {
    cfg: &'a RunConfig,
    log: &'a mut RunLog,
    memo: HashMap<String, Acc>,
    /// Which problems each score in `memo` answered (where known), in problem order.
    hits: HashMap<String, Vec<bool>>,
    /// Programs whose merge failed in [`Scorer::prefetch`], with the reason.
    failed: HashMap<String, String>,
    scratch: PathBuf,
    say: &'a mut dyn FnMut(&str),
}

/// One scoring of the final stage: a model directory, or a program merged on a family.
struct Job<'p> {
    key: String,
    what: JobKind,
    problems: &'p [Problem],
}

enum JobKind {
    Model(PathBuf),
    Program {
        src: String,
        params: Params,
        base: PathBuf,
        models: Vec<PathBuf>,
    },
}

impl Scorer<'_> {
    fn record(
        &mut self,
        key: &str,
        (acc, correct, hits): (f64, usize, Option<String>),
        n: usize,
    ) -> Result<Acc, String> {
        self.log.append(&Event::Score {
            key: key.to_string(),
            accuracy: acc,
            correct,
            n,
            hits: hits.clone(),
        })?;
        if let Some(h) = hits.and_then(|h| hits_from_hex(&h, n).ok()) {
            self.hits.insert(key.to_string(), h);
        }
        let a = Acc {
            accuracy: acc,
            correct,
            n,
        };
        self.memo.insert(key.to_string(), a);
        Ok(a)
    }

    /// Scores the jobs not scored yet, `jobs` at a time, and records them in order; the
    /// calls of [`Scorer::model`] and [`Scorer::program`] that follow find them.
    fn prefetch(&mut self, jobs: Vec<Job>) -> Result<(), String> {
        let todo: Vec<(usize, Job)> = jobs
            .into_iter()
            .filter(|j| !self.memo.contains_key(&j.key) && !self.failed.contains_key(&j.key))
            .enumerate()
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        (self.say)(&format!("scoring {} models and merges", todo.len()));
        let (cfg, scratch) = (self.cfg, &self.scratch);
        let results = parallel_map(&todo, resolve_jobs(cfg), |(i, j)| match &j.what {
            JobKind::Model(dir) => score_model(cfg, dir, j.problems),
            JobKind::Program {
                src,
                params,
                base,
                models,
            } => {
                let out = scratch.join(format!("final-{i}"));
                let r = merge_and_score(cfg, src, params.clone(), base, models, j.problems, &out);
                let _ = std::fs::remove_dir_all(&out);
                r.map(|(acc, correct, hits, ..)| (acc, correct, hits))
            }
        });
        if crate::runtime::CANCELLED.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        for ((_, j), r) in todo.iter().zip(results) {
            match (r, &j.what) {
                (Ok(score), _) => {
                    self.record(&j.key, score, j.problems.len())?;
                }
                (Err(e), JobKind::Program { .. }) => {
                    self.failed.insert(j.key.clone(), e);
                }
                (Err(e), JobKind::Model(dir)) => {
                    return Err(format!("{}: {e}", dir.display()));
                }
            }
        }
        Ok(())
    }

    /// A model directory's score (memoized under `key`).
    fn model(&mut self, key: &str, dir: &Path, problems: &[Problem]) -> Result<Acc, String> {
        if let Some(a) = self.memo.get(key) {
            return Ok(*a);
        }
        (self.say)(&format!("scoring {key}"));
        let score = score_model(self.cfg, dir, problems)?;
        self.record(key, score, problems.len())
    }

    /// A program merged on (base, models) and scored (memoized under `key`); a failing
    /// merge scores None.
    fn program(
        &mut self,
        key: &str,
        src: &str,
        params: Vec<(String, Const)>,
        base: &Path,
        models: &[PathBuf],
        problems: &[Problem],
    ) -> Result<Option<Acc>, String> {
        if let Some(a) = self.memo.get(key) {
            return Ok(Some(*a));
        }
        if let Some(e) = self.failed.get(key) {
            (self.say)(&format!("{key}: {e}"));
            return Ok(None);
        }
        (self.say)(&format!("scoring {key}"));
        let out = self.scratch.join("final");
        let r = merge_and_score(self.cfg, src, params, base, models, problems, &out);
        let _ = std::fs::remove_dir_all(&out);
        match r {
            Ok((acc, correct, hits, ..)) => {
                Ok(Some(self.record(key, (acc, correct, hits), problems.len())?))
            }
            Err(e) if crate::runtime::CANCELLED.load(std::sync::atomic::Ordering::SeqCst) => {
                Err(format!("interrupted ({e})"))
            }
            Err(e) => {
                (self.say)(&format!("{key}: {e}"));
                Ok(None)
            }
        }
    }
}

fn programs(events: &[Event]) -> impl Iterator<Item = &ProgramRecord> {
    events.iter().filter_map(|e| match e {
        Event::Program(r) => Some(r),
        _ => None,
    })
}

pub fn iteration_stats(cfg: &RunConfig, events: &[Event]) -> Vec<IterStats> {
    let mut best_so_far: Option<f64> = None;
    (1..=cfg.iterations)
        .map(|t| {
            let recs: Vec<&ProgramRecord> = programs(events).filter(|r| r.iteration == t).collect();
            let valid = recs
                .iter()
                .filter(|r| r.assessed.stage == super::candidate::Stage::Valid)
                .count();
            let dev_scores: Vec<f64> = recs.iter().filter_map(|r| r.dev()).collect();
            let scored = recs
                .iter()
                .filter(|r| matches!(r.outcome, Outcome::Scored { .. }))
                .count();
            let best_dev = dev_scores.iter().copied().reduce(f64::max);
            if let Some(b) = best_dev {
                best_so_far = Some(best_so_far.map_or(b, |x| x.max(b)));
            }
            IterStats {
                iteration: t,
                generated: recs.len(),
                valid,
                scored,
                mean_dev: (!dev_scores.is_empty())
                    .then(|| dev_scores.iter().sum::<f64>() / dev_scores.len() as f64),
                best_dev,
                best_so_far,
                dev_scores,
            }
        })
        .collect()
}

fn load(path: &Path, limit: usize) -> Result<Vec<Problem>, String> {
    let mut p = load_jsonl(path)?;
    if limit > 0 {
        p.truncate(limit);
    }
    Ok(p)
}

/// Parameter overrides of a stdlib method.
type Params = Vec<(String, Const)>;

/// The baseline grid: (label, stdlib method, parameters).
fn grid_params(cfg: &RunConfig) -> Vec<(String, &'static str, Params)> {
    let mut v = vec![];
    for &g in &cfg.baseline_grid {
        v.push((
            format!("task_arithmetic lambda={g}"),
            "task_arithmetic",
            vec![("lambda".to_string(), Const::F32(g as f32))],
        ));
    }
    for &d in &cfg.baseline_grid {
        for &g in &cfg.baseline_grid {
            v.push((
                format!("ties density={d} lambda={}", 2.0 * g),
                "ties",
                vec![
                    ("density".to_string(), Const::F32(d as f32)),
                    ("lambda".to_string(), Const::F32((2.0 * g) as f32)),
                ],
            ));
        }
    }
    v
}

/// Tunes the baselines on `dev` of (base, models) and scores the best of each method on
/// `test`; returns (every grid row, the tuned rows).
#[allow(clippy::too_many_arguments)]
fn baselines(
    s: &mut Scorer,
    tag: &str,
    base: &Path,
    models: &[PathBuf],
    dev: &[Problem],
    test: &[Problem],
) -> Result<(Vec<Row>, Vec<Row>), String> {
    let mut grid = vec![];
    for (name, method, params) in grid_params(s.cfg) {
        let src = crate::stdlib::method(method).ok_or("stdlib method")?.source;
        let d = s.program(
            &grid_key(tag, "dev", &name),
            src,
            params.clone(),
            base,
            models,
            dev,
        )?;
        grid.push(Row {
            name: name.clone(),
            dev: d,
            test: None,
        });
    }
    let mut tuned = vec![];
    for (method, name, params) in tuned_choices(s, tag) {
        let src = crate::stdlib::method(method).ok_or("stdlib method")?.source;
        let dev = s.memo.get(&grid_key(tag, "dev", &name)).copied();
        let test = s.program(
            &grid_key(tag, "test", &name),
            src,
            params,
            base,
            models,
            test,
        )?;
        tuned.push(Row {
            name: format!("{name} (tuned on dev)"),
            dev,
            test,
        });
    }
    Ok((grid, tuned))
}

/// The record key of a baseline grid point's score on a family (`tag`) and split.
fn grid_key(tag: &str, split: &str, name: &str) -> String {
    format!("{tag} {split} {name}")
}

/// Each baseline method's best grid point on dev among those scored under `tag`:
/// (method, label, parameters), task arithmetic first.
fn tuned_choices(s: &Scorer, tag: &str) -> Vec<(&'static str, String, Params)> {
    let mut best: HashMap<&str, (f64, String, Params)> = HashMap::new();
    for (name, method, params) in grid_params(s.cfg) {
        if let Some(d) = s.memo.get(&grid_key(tag, "dev", &name))
            && best.get(method).is_none_or(|b| d.accuracy > b.0)
        {
            best.insert(method, (d.accuracy, name, params));
        }
    }
    ["task_arithmetic", "ties"]
        .into_iter()
        .filter_map(|m| best.remove(m).map(|(_, name, params)| (m, name, params)))
        .collect()
}

/// The jobs of a family's baselines: the grid on dev, or (`tuned`) the tuned choices
/// on test.
fn baseline_jobs<'p>(
    s: &Scorer,
    tag: &str,
    base: &Path,
    models: &[PathBuf],
    problems: &'p [Problem],
    tuned: bool,
) -> Vec<Job<'p>> {
    let points: Vec<(&'static str, String, Params)> = if tuned {
        tuned_choices(s, tag)
    } else {
        grid_params(s.cfg)
            .into_iter()
            .map(|(name, method, params)| (method, name, params))
            .collect()
    };
    points
        .into_iter()
        .filter_map(|(method, name, params)| {
            Some(Job {
                key: grid_key(tag, if tuned { "test" } else { "dev" }, &name),
                what: JobKind::Program {
                    src: crate::stdlib::method(method)?.source.to_string(),
                    params,
                    base: base.to_path_buf(),
                    models: models.to_vec(),
                },
                problems,
            })
        })
        .collect()
}

/// The `top_test` best distinct programs on dev (ties: the earliest).
fn top_programs<'e>(cfg: &RunConfig, events: &'e [Event]) -> Vec<&'e ProgramRecord> {
    let mut by_hash: HashMap<&str, &ProgramRecord> = HashMap::new();
    for r in programs(events) {
        if let (Some(c), Outcome::Scored { .. }) = (r.assessed.canonical.as_deref(), &r.outcome) {
            by_hash.entry(c).or_insert(r);
        }
    }
    let mut top: Vec<&ProgramRecord> = by_hash.into_values().collect();
    top.sort_by(|a, b| {
        b.dev()
            .unwrap_or(0.0)
            .total_cmp(&a.dev().unwrap_or(0.0))
            .then((a.iteration, a.index).cmp(&(b.iteration, b.index)))
    });
    top.truncate(cfg.top_test);
    top
}

/// Which of the first three discovered programs scored best on the transfer family's
/// dev set (the first of equals).
fn best_transfer(s: &Scorer, n: usize) -> Option<usize> {
    let mut best: Option<(f64, usize)> = None;
    for i in 0..n.min(3) {
        if let Some(d) = s.memo.get(&format!("transfer dev discovered {i}"))
            && best.is_none_or(|b| d.accuracy > b.0)
        {
            best = Some((d.accuracy, i));
        }
    }
    best.map(|b| b.1)
}

/// Runs the final stage and writes `report.md`, `report.json`, the plots and `best/`.
pub fn finalize(
    cfg: &RunConfig,
    log: &mut RunLog,
    events: &[Event],
    say: &mut dyn FnMut(&str),
) -> Result<Final, String> {
    let mut hits = HashMap::new();
    let memo = events
        .iter()
        .filter_map(|e| match e {
            Event::Score {
                key,
                accuracy,
                correct,
                n,
                hits: _,
            } => Some((
                key.clone(),
                Acc {
                    accuracy: *accuracy,
                    correct: *correct,
                    n: *n,
                },
            )),
            _ => None,
        })
        .collect();
    for e in events {
        if let Event::Score {
            key, n, hits: Some(h), ..
        } = e
            && let Ok(bits) = hits_from_hex(h, *n)
        {
            hits.insert(key.clone(), bits);
        }
    }
    let scratch = cfg.run_dir.join("scratch");
    let mut s = Scorer {
        cfg,
        log,
        memo,
        hits,
        failed: HashMap::new(),
        scratch,
        say,
    };
    let dev = load(&cfg.dev, cfg.dev_limit)?;
    let test = load(&cfg.test, cfg.test_limit)?;
    let top = top_programs(cfg, events);
    let second = match (&cfg.transfer_base, &cfg.transfer_dev, &cfg.transfer_test) {
        (Some(tb), Some(td), Some(tt)) if !cfg.transfer_models.is_empty() => Some((
            tb.clone(),
            load(td, cfg.dev_limit)?,
            load(tt, cfg.test_limit)?,
        )),
        _ => None,
    };
    // Everything that does not depend on another score, in parallel; then the tuned
    // baselines and the transfer choice on test. The tables below then read the scores.
    let model = |key: String, dir: &Path, problems| Job {
        key,
        what: JobKind::Model(dir.to_path_buf()),
        problems,
    };
    let program = |key: String, src: &str, base: &Path, models: &[PathBuf], problems| Job {
        key,
        what: JobKind::Program {
            src: src.to_string(),
            params: vec![],
            base: base.to_path_buf(),
            models: models.to_vec(),
        },
        problems,
    };
    let mut jobs = vec![
        model("seed dev".into(), &cfg.base, &dev),
        model("seed test".into(), &cfg.base, &test),
    ];
    for (i, m) in cfg.models.iter().enumerate() {
        jobs.push(model(format!("candidate {i} dev"), m, &dev));
        jobs.push(model(format!("candidate {i} test"), m, &test));
    }
    jobs.extend(baseline_jobs(
        &s,
        "family",
        &cfg.base,
        &cfg.models,
        &dev,
        false,
    ));
    for r in &top {
        let c = r.assessed.canonical.as_deref().unwrap_or_default();
        let src = r.assessed.program.as_deref().unwrap_or_default();
        jobs.push(program(
            format!("program {} test", &c[..16]),
            src,
            &cfg.base,
            &cfg.models,
            &test,
        ));
    }
    if let Some((tb, tdev, ttest)) = &second {
        let tm = &cfg.transfer_models;
        jobs.push(model("transfer seed dev".into(), tb, tdev));
        jobs.push(model("transfer seed test".into(), tb, ttest));
        for (i, m) in tm.iter().enumerate() {
            jobs.push(model(format!("transfer candidate {i} dev"), m, tdev));
            jobs.push(model(format!("transfer candidate {i} test"), m, ttest));
        }
        jobs.extend(baseline_jobs(&s, "transfer", tb, tm, tdev, false));
        for (i, r) in top.iter().enumerate().take(3) {
            let src = r.assessed.program.as_deref().unwrap_or_default();
            jobs.push(program(
                format!("transfer dev discovered {i}"),
                src,
                tb,
                tm,
                tdev,
            ));
        }
    }
    s.prefetch(jobs)?;
    let mut jobs = baseline_jobs(&s, "family", &cfg.base, &cfg.models, &test, true);
    if let Some((tb, _, ttest)) = &second {
        let tm = &cfg.transfer_models;
        jobs.extend(baseline_jobs(&s, "transfer", tb, tm, ttest, true));
        if let Some(i) = best_transfer(&s, top.len()) {
            let src = top[i].assessed.program.as_deref().unwrap_or_default();
            jobs.push(program(
                format!("transfer test discovered {i}"),
                src,
                tb,
                tm,
                ttest,
            ));
        }
    }
    s.prefetch(jobs)?;
    let mut main = vec![];
    let seed_dev = s.model("seed dev", &cfg.base, &dev)?;
    let seed_test = s.model("seed test", &cfg.base, &test)?;
    main.push(Row {
        name: "seed model (base)".into(),
        dev: Some(seed_dev),
        test: Some(seed_test),
    });
    for (i, m) in cfg.models.iter().enumerate() {
        let name = m
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        let d = s.model(&format!("candidate {i} dev"), m, &dev)?;
        let t = s.model(&format!("candidate {i} test"), m, &test)?;
        main.push(Row {
            name: format!("candidate: {name}"),
            dev: Some(d),
            test: Some(t),
        });
    }
    let (grid, tuned) = baselines(&mut s, "family", &cfg.base, &cfg.models, &dev, &test)?;
    main.extend(tuned);
    let best_dir = cfg.run_dir.join("best");
    std::fs::create_dir_all(&best_dir).map_err(|e| format!("{}: {e}", best_dir.display()))?;
    let mut discovered = vec![];
    for (rank, r) in top.iter().enumerate() {
        let c = r.assessed.canonical.clone().unwrap_or_default();
        let src = r.assessed.program.clone().unwrap_or_default();
        let t = s.program(
            &format!("program {} test", &c[..16]),
            &src,
            vec![],
            &cfg.base,
            &cfg.models,
            &test,
        )?;
        let dev_acc = match &r.outcome {
            Outcome::Scored {
                dev, correct, n, ..
            } => Some(Acc {
                accuracy: *dev,
                correct: *correct,
                n: *n,
            }),
            _ => None,
        };
        let header = format!(
            "# Discovered by mergec develop: iteration {}, program {}, rank {} on dev.\n# dev {}  test {}\n",
            r.iteration,
            r.index,
            rank + 1,
            dev_acc.map(|a| a.show()).unwrap_or_default(),
            t.map(|a| a.show()).unwrap_or_else(|| "failed".into())
        );
        let file = best_dir.join(format!("{:02}-{}.merge", rank + 1, &c[..8]));
        crate::eval::run::write_atomic(&file, format!("{header}{src}\n").as_bytes())?;
        discovered.push((
            Row {
                name: format!("#{} (iteration {}, {})", rank + 1, r.iteration, &c[..8]),
                dev: dev_acc,
                test: t,
            },
            r.iteration,
            src,
        ));
    }
    if let Some((row, _, _)) = discovered.first() {
        main.push(Row {
            name: format!("best discovered on dev ({})", row.name),
            ..row.clone()
        });
    }
    // Transfer: the best programs, unchanged, on the second family.
    let mut transfer = vec![];
    if let Some((tb, tdev, ttest)) = &second {
        let (tdev, ttest) = (tdev.as_slice(), ttest.as_slice());
        let b_dev = s.model("transfer seed dev", tb, tdev)?;
        let b_test = s.model("transfer seed test", tb, ttest)?;
        transfer.push(Row {
            name: "seed model (base)".into(),
            dev: Some(b_dev),
            test: Some(b_test),
        });
        for (i, m) in cfg.transfer_models.iter().enumerate() {
            let t = s.model(&format!("transfer candidate {i} test"), m, ttest)?;
            let d = s.model(&format!("transfer candidate {i} dev"), m, tdev)?;
            transfer.push(Row {
                name: format!(
                    "candidate: {}",
                    m.file_name()
                        .map(|f| f.to_string_lossy().to_string())
                        .unwrap_or_default()
                ),
                dev: Some(d),
                test: Some(t),
            });
        }
        let (_, tuned) = baselines(&mut s, "transfer", tb, &cfg.transfer_models, tdev, ttest)?;
        transfer.extend(tuned);
        // The discovered programs are chosen on the new family's dev set, then tested.
        if let Some(i) = best_transfer(&s, discovered.len()) {
            let src = discovered[i].2.clone();
            let d = s.memo.get(&format!("transfer dev discovered {i}")).copied();
            let t = s.program(
                &format!("transfer test discovered {i}"),
                &src,
                vec![],
                tb,
                &cfg.transfer_models,
                ttest,
            )?;
            transfer.push(Row {
                name: format!("discovered #{} (chosen on this family's dev)", i + 1),
                dev: d,
                test: t,
            });
        }
    }
    let fin = Final {
        iterations: iteration_stats(cfg, events),
        main,
        grid,
        discovered,
        transfer,
    };
    write_report(cfg, &fin)?;
    Ok(fin)
}

/// Table 1 (and Table 3 when there is a transfer family), for the terminal.
pub fn summary_table(f: &Final) -> String {
    let mut t = table(&f.main);
    if !f.transfer.is_empty() {
        t.push_str("\ntransfer to the second family:\n");
        t.push_str(&table(&f.transfer));
    }
    t
}

fn table(rows: &[Row]) -> String {
    let mut t = String::from("| method | dev | test |\n|---|---:|---:|\n");
    for r in rows {
        let _ = writeln!(
            t,
            "| {} | {} | {} |",
            r.name,
            r.dev.map(|a| a.show()).unwrap_or_else(|| "–".into()),
            r.test.map(|a| a.show()).unwrap_or_else(|| "–".into())
        );
    }
    t
}

fn write_report(cfg: &RunConfig, f: &Final) -> Result<(), String> {
    let mut md = String::from("# mergec develop: report\n\n");
    let _ = writeln!(
        md,
        "Generator `{}`; {} iterations of {} programs; dev {} ({} problems{}), test {}.\n\
         Accuracies in percent with 95% Wilson intervals.\n",
        cfg.generator,
        cfg.iterations,
        cfg.programs,
        cfg.dev.display(),
        if cfg.dev_limit > 0 {
            cfg.dev_limit.to_string()
        } else {
            "all".into()
        },
        if cfg.dev_limit > 0 { " at most" } else { "" },
        cfg.test.display()
    );
    md.push_str(
        "## Table 1: the seed, the candidates, tuned baselines and the best discovered program\n\n",
    );
    md.push_str(&table(&f.main));
    md.push_str("\n## Table 2: per iteration\n\n| iteration | generated | valid | valid rate | scored (new) | mean dev of valid | best dev | best so far |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let pct = |x: Option<f64>| {
        x.map(|v| format!("{:.1}", 100.0 * v))
            .unwrap_or_else(|| "–".into())
    };
    for s in &f.iterations {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1}% | {} | {} | {} | {} |",
            s.iteration,
            s.generated,
            s.valid,
            100.0 * s.valid as f64 / s.generated.max(1) as f64,
            s.scored,
            pct(s.mean_dev),
            pct(s.best_dev),
            pct(s.best_so_far)
        );
    }
    md.push_str("\n## The best programs on dev, scored on test\n\n");
    let rows: Vec<Row> = f.discovered.iter().map(|d| d.0.clone()).collect();
    md.push_str(&table(&rows));
    if let Some((_, _, src)) = f.discovered.first() {
        let _ = writeln!(md, "\nThe best (also in `best/`):\n\n```merge\n{src}\n```");
    }
    if !f.transfer.is_empty() {
        md.push_str("\n## Table 3: transfer to the second family (programs unchanged)\n\n");
        md.push_str(&table(&f.transfer));
    }
    md.push_str("\n## Baseline grid on dev\n\n");
    md.push_str(&table(&f.grid));
    md.push_str("\n![dev scores per iteration](dev-scores.png)\n![valid rate](valid-rate.png)\n![best so far](best-so-far.png)\n");
    let dir = &cfg.run_dir;
    super::plots::write_all(dir, &f.iterations)?;
    crate::eval::run::write_atomic(&dir.join("report.md"), md.as_bytes())?;
    let json = serde_json::to_string_pretty(f).map_err(|e| e.to_string())?;
    crate::eval::run::write_atomic(&dir.join("report.json"), json.as_bytes())
}
