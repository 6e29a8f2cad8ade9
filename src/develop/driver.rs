//! The loop: sample programs, assess, merge and score the new ones on dev, learn from
//! the preferences, repeat; every step recorded in `programs.jsonl` so a killed run
//! resumes with nothing lost and nothing scored twice.

use super::candidate::{Assessed, ProbeTensor, Stage, assess};
use super::config::RunConfig;
use super::generator::{Generator, Pair};
use super::record::RunLog;
use crate::eval::gsm8k::Problem;
use crate::eval::run::{ChatMode, EvalSettings};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// What happened to one generated program.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// It never became runnable (see the assessment's stage and diagnostics).
    Invalid,
    /// The same compiled program was scored before.
    Duplicate { dev: Option<f64> },
    /// Merged and scored on dev.
    Scored { dev: f64, correct: usize, n: usize },
    /// Runnable, but the merge or the evaluation failed (non-finite output, ...).
    Failed { reason: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProgramRecord {
    pub iteration: usize,
    pub index: usize,
    pub generator: String,
    /// The generator's text, as returned.
    pub reply: String,
    pub assessed: Assessed,
    /// Whether `assessed` is the result of the repair round.
    pub repaired: bool,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub merge_s: f64,
    pub eval_s: f64,
}

impl ProgramRecord {
    /// Dev accuracy, for programs that were scored (or duplicate a scored one).
    pub fn dev(&self) -> Option<f64> {
        match &self.outcome {
            Outcome::Scored { dev, .. } => Some(*dev),
            Outcome::Duplicate { dev } => *dev,
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Start {
        config: String,
        version: String,
    },
    Program(ProgramRecord),
    Learned {
        iteration: usize,
        pairs: usize,
        steps: usize,
        losses: Vec<f64>,
        margins: Vec<f64>,
        note: String,
    },
    IterationDone {
        iteration: usize,
        seconds: f64,
    },
    /// A score of the final stage (test scores, baselines, transfer), kept so that a
    /// resumed run does not score anything twice.
    Score {
        key: String,
        accuracy: f64,
        correct: usize,
        n: usize,
    },
}

/// Everything the loop needs besides the generator.
pub struct Setup {
    pub cfg: RunConfig,
    pub dev: Vec<Problem>,
    pub probes: Vec<ProbeTensor>,
    pub prompt: String,
}

impl Setup {
    pub fn new(cfg: &RunConfig) -> Result<Setup, String> {
        cfg.validate()?;
        let mut dev = crate::eval::gsm8k::load_jsonl(&cfg.dev)?;
        if cfg.dev_limit > 0 {
            dev.truncate(cfg.dev_limit);
        }
        Ok(Setup {
            cfg: cfg.clone(),
            dev,
            probes: probes(&cfg.base, &cfg.tensors)?,
            prompt: super::prompt::default_prompt(),
        })
    }
}

/// A few of the merged tensors, one per distinct shape (at most 4), for assessment.
pub fn probes(base: &Path, tensors: &str) -> Result<Vec<ProbeTensor>, String> {
    let ck = crate::runtime::safetensors::Checkpoint::open(base)
        .map_err(|e| format!("{}: {e}", base.display()))?;
    let re = regex::Regex::new(tensors).map_err(|e| format!("tensors: {e}"))?;
    let mut seen = BTreeMap::new();
    for t in ck.tensors() {
        if re.is_match(&t.name) && !seen.contains_key(&t.shape) && seen.len() < 4 {
            seen.insert(t.shape.clone(), t.name.clone());
        }
    }
    if seen.is_empty() {
        return Err(format!(
            "no tensor of {} matches `{tensors}`; check `tensors`",
            base.display()
        ));
    }
    Ok(seen
        .into_iter()
        .map(|(shape, name)| ProbeTensor { name, shape })
        .collect())
}

/// Settings for scoring merged models in process.
pub fn eval_settings(cfg: &RunConfig) -> EvalSettings {
    EvalSettings {
        shots: cfg.shots,
        chat: ChatMode::Off,
        system: None,
        max_new_tokens: cfg.max_new_tokens,
        batch_size: cfg.eval_batch,
        seed: cfg.seed,
    }
}

/// Merges `program` (its first merge, default parameters) of `base` and `models` into
/// `out`, then scores it on `problems`. Returns (accuracy, correct, merge s, eval s).
pub fn merge_and_score(
    cfg: &RunConfig,
    program: &str,
    params: Vec<(String, crate::types::Const)>,
    base: &Path,
    models: &[PathBuf],
    problems: &[Problem],
    out: &Path,
) -> Result<(f64, usize, f64, f64), String> {
    let t0 = Instant::now();
    let (prog, sigs) = crate::check_source(program).map_err(|_| "does not check".to_string())?;
    let name = sigs.first().ok_or("no merge")?.name.clone();
    let job = crate::runtime::merge::MergeJob {
        program: prog,
        program_text: program.to_string(),
        program_label: "generated".into(),
        merge_name: name,
        base: base.to_path_buf(),
        models: models.to_vec(),
        out: out.to_path_buf(),
        params: Box::new(crate::runtime::merge::FixedParams(params)),
        dtype: None,
        only: Some(regex::Regex::new(&cfg.tensors).map_err(|e| e.to_string())?),
        seed: cfg.seed,
        shard_size: 5 << 30,
        max_memory: 2 << 30,
        force: true,
        on_mismatch_base: false,
        allow_nonfinite: false,
        tokenizer_from: None,
        quiet: true,
        backend: crate::runtime::compiled::Backend::Jit,
        extra: serde_json::Value::Null,
    };
    crate::runtime::merge::run(&job).map_err(|e| format!("merge: {e}"))?;
    let merge_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let (acc, correct) = score_model(cfg, out, problems)?;
    Ok((acc, correct, merge_s, t1.elapsed().as_secs_f64()))
}

/// Accuracy of the model at `dir` on `problems` with the configured evaluator.
pub fn score_model(
    cfg: &RunConfig,
    dir: &Path,
    problems: &[Problem],
) -> Result<(f64, usize), String> {
    if cfg.evaluator != "builtin" {
        let ev = crate::eval::external::Evaluator::parse(&cfg.evaluator)?;
        let acc = ev.score(dir)?;
        return Ok((acc, (acc * problems.len() as f64).round() as usize));
    }
    let mut m = crate::model::LoadedModel::load(dir)?;
    let train = match &cfg.train {
        Some(t) => crate::eval::gsm8k::load_jsonl(t)?,
        None => vec![],
    };
    let r = crate::eval::run::evaluate(&mut m, problems, &train, &eval_settings(cfg), &mut |_| {})
        .map_err(|e| format!("eval: {e}"))?;
    Ok((r.accuracy, r.correct))
}

/// The prompt of the repair round: the program and what the checker said.
pub fn repair_prompt(prompt: &str, a: &Assessed) -> String {
    format!(
        "{prompt}\n\nThis program was rejected:\n```merge\n{}\n```\nThe checker said:\n{}\n\
         Fix it. Reply with the corrected program in a single ```merge block.",
        a.program.as_deref().unwrap_or(""),
        a.diagnostics
    )
}

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Finished,
    Interrupted,
}

fn iteration_seed(seed: u64, t: usize) -> u64 {
    crate::interp::semantics::mix64(seed ^ (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Runs (or resumes) the iterations. `log` holds what earlier attempts recorded.
pub fn run_iterations(
    setup: &Setup,
    generator: &mut dyn Generator,
    log: &mut RunLog,
    events: &mut Vec<Event>,
    stop: &AtomicBool,
    say: &mut dyn FnMut(&str),
) -> Result<Ended, String> {
    let cfg = &setup.cfg;
    let scratch = cfg.run_dir.join("scratch");
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let mut known: HashMap<String, Option<f64>> = HashMap::new();
    let mut done: std::collections::HashSet<(usize, usize)> = Default::default();
    let mut finished_iters = std::collections::HashSet::new();
    for e in events.iter() {
        match e {
            Event::Program(r) => {
                done.insert((r.iteration, r.index));
                if let (Some(c), Outcome::Scored { dev, .. }) = (&r.assessed.canonical, &r.outcome)
                {
                    known.insert(c.clone(), Some(*dev));
                } else if let (Some(c), Outcome::Failed { .. }) =
                    (&r.assessed.canonical, &r.outcome)
                {
                    known.insert(c.clone(), None);
                }
            }
            Event::IterationDone { iteration, .. } => {
                finished_iters.insert(*iteration);
            }
            _ => {}
        }
    }
    let mut best: Vec<(f64, PathBuf)> = vec![];
    for t in 1..=cfg.iterations {
        if finished_iters.contains(&t) {
            continue;
        }
        let t0 = Instant::now();
        let temp = cfg.temperature_at(t);
        let seed = iteration_seed(cfg.seed, t);
        say(&format!(
            "iteration {t}/{}: sampling {} programs at temperature {temp:.3}",
            cfg.iterations, cfg.programs
        ));
        let replies = generator.sample(&setup.prompt, cfg.programs, temp, seed)?;
        let gen_id = generator.id();
        for (i, reply) in replies.iter().enumerate() {
            if done.contains(&(t, i)) {
                continue;
            }
            if stop.load(Ordering::SeqCst) {
                return Ok(Ended::Interrupted);
            }
            let mut a = assess(reply, cfg.models.len(), &setup.probes);
            let mut repaired = false;
            let mut reply_text = reply.clone();
            if a.stage != Stage::Valid && a.program.is_some() && cfg.repair && prompted(cfg) {
                let p = repair_prompt(&setup.prompt, &a);
                if let Some(fixed) = generator.sample(&p, 1, temp, seed ^ (i as u64 + 1))?.pop() {
                    let b = assess(&fixed, cfg.models.len(), &setup.probes);
                    if b.stage == Stage::Valid {
                        a = b;
                        repaired = true;
                        reply_text = fixed;
                    }
                }
            }
            let (mut merge_s, mut eval_s) = (0.0, 0.0);
            let outcome = match (&a.stage, &a.canonical) {
                (Stage::Valid, Some(c)) => match known.get(c) {
                    Some(dev) => Outcome::Duplicate { dev: *dev },
                    None => {
                        let out = scratch.join(&c[..16]);
                        match merge_and_score(
                            cfg,
                            a.program.as_deref().unwrap_or(""),
                            vec![],
                            &cfg.base,
                            &cfg.models,
                            &setup.dev,
                            &out,
                        ) {
                            Ok((dev, correct, ms, es)) => {
                                merge_s = ms;
                                eval_s = es;
                                known.insert(c.clone(), Some(dev));
                                keep_best(&mut best, dev, out, cfg.keep_best);
                                Outcome::Scored {
                                    dev,
                                    correct,
                                    n: setup.dev.len(),
                                }
                            }
                            Err(_) if stop.load(Ordering::SeqCst) => {
                                // Interrupted, not failed: nothing recorded, redone on resume.
                                let _ = std::fs::remove_dir_all(&out);
                                return Ok(Ended::Interrupted);
                            }
                            Err(reason) => {
                                let _ = std::fs::remove_dir_all(&out);
                                known.insert(c.clone(), None);
                                Outcome::Failed { reason }
                            }
                        }
                    }
                },
                _ => Outcome::Invalid,
            };
            let rec = ProgramRecord {
                iteration: t,
                index: i,
                generator: gen_id.clone(),
                reply: reply_text,
                assessed: a,
                repaired,
                outcome,
                merge_s,
                eval_s,
            };
            let ev = Event::Program(rec);
            log.append(&ev)?;
            events.push(ev);
        }
        let pairs = preference_pairs(cfg, events, t, &setup.prompt);
        say(&format!(
            "iteration {t}: {} preference pairs; learning",
            pairs.len()
        ));
        let learned = generator.learn(&pairs, t, &cfg.run_dir.join("generator"))?;
        let ev = Event::Learned {
            iteration: t,
            pairs: pairs.len(),
            steps: learned.steps,
            losses: learned.losses,
            margins: learned.margins,
            note: learned.note,
        };
        log.append(&ev)?;
        events.push(ev);
        let ev = Event::IterationDone {
            iteration: t,
            seconds: t0.elapsed().as_secs_f64(),
        };
        log.append(&ev)?;
        events.push(ev);
    }
    Ok(Ended::Finished)
}

/// Whether the generator reads the prompt (the repair round needs one that does).
fn prompted(cfg: &RunConfig) -> bool {
    cfg.generator != "tiny"
}

/// Keeps the checkpoints of the `k` best scores; deletes the rest.
fn keep_best(best: &mut Vec<(f64, PathBuf)>, score: f64, dir: PathBuf, k: usize) {
    best.push((score, dir));
    best.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (_, d) in best.drain(k.min(best.len())..) {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Programs of iteration `t` by dev score, best first (ties by index).
pub fn ranked(events: &[Event], t: usize) -> Vec<&ProgramRecord> {
    let mut v: Vec<&ProgramRecord> = events
        .iter()
        .filter_map(|e| match e {
            Event::Program(r)
                if r.iteration == t && matches!(r.outcome, Outcome::Scored { .. }) =>
            {
                Some(r)
            }
            _ => None,
        })
        .collect();
    v.sort_by(|a, b| {
        b.dev()
            .unwrap_or(-1.0)
            .total_cmp(&a.dev().unwrap_or(-1.0))
            .then(a.index.cmp(&b.index))
    });
    v
}

/// Chosen: the top `chosen_fraction` of iteration `t`'s scored programs plus the best
/// `elites` of each earlier iteration; rejected: the bottom `rejected_fraction` (failed
/// and invalid programs when too few were scored). Every chosen is paired with every
/// rejected whose score is strictly lower.
pub fn preference_pairs(cfg: &RunConfig, events: &[Event], t: usize, prompt: &str) -> Vec<Pair> {
    let r = ranked(events, t);
    let frac = |f: f64| ((r.len() as f64 * f).ceil() as usize).max(1).min(r.len());
    let mut chosen: Vec<&ProgramRecord> =
        r.iter().take(frac(cfg.chosen_fraction)).copied().collect();
    for u in 1..t {
        chosen.extend(ranked(events, u).into_iter().take(cfg.elites));
    }
    let mut rejected: Vec<&ProgramRecord> = if r.len() >= 2 {
        r.iter()
            .rev()
            .take(frac(cfg.rejected_fraction))
            .copied()
            .collect()
    } else {
        vec![]
    };
    if rejected.is_empty() {
        rejected = events
            .iter()
            .filter_map(|e| match e {
                Event::Program(p)
                    if p.iteration == t && p.dev().is_none() && p.assessed.program.is_some() =>
                {
                    Some(p)
                }
                _ => None,
            })
            .take(frac(cfg.rejected_fraction).max(3))
            .collect();
    }
    let text = |p: &ProgramRecord| {
        p.assessed
            .program
            .clone()
            .unwrap_or_else(|| p.reply.clone())
    };
    let mut pairs = vec![];
    for c in &chosen {
        for rj in &rejected {
            if c.dev().unwrap_or(-1.0) > rj.dev().unwrap_or(-1.0) {
                pairs.push(Pair {
                    prompt: prompt.to_string(),
                    chosen: text(c),
                    rejected: text(rj),
                });
            }
        }
    }
    pairs
}
