//! The loop: sample programs, assess, merge and score the new ones on dev, learn from
//! the preferences, repeat; every step recorded in `programs.jsonl` so a killed run
//! resumes with nothing lost and nothing scored twice.

use super::candidate::{Assessed, ProbeTensor};
use super::config::RunConfig;
use crate::eval::gsm8k::Problem;
use crate::eval::run::{ChatMode, EvalSettings};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// What happened to one generated program.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// It never became runnable (see the assessment's stage and diagnostics).
    Invalid,
    /// The same compiled program was scored before.
    Duplicate { dev: Option<f64> },
    /// Merged and scored on dev; `hits`: which problems it answered (hex of a bitmap,
    /// see [`crate::eval::stats::hits_hex`]; absent from older records and external
    /// evaluators).
    Scored {
        dev: f64,
        correct: usize,
        n: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hits: Option<String>,
    },
    /// Runnable, but the merge or the evaluation failed (non-finite output, ...).
    Failed { reason: String },
}

/// Where a program is in the record: (iteration, index).
pub type At = (usize, usize);

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
    /// The archive programs (iteration, index) it was written from (archive mode;
    /// empty: the plain prompt).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<At>,
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
    /// A candidate's process is about to start: a `started` with no `program` record
    /// of the same iteration and index after it (and no `released`) means the run
    /// stopped while it ran; `--resume` runs it again once, and records it as failed
    /// (never to run again) when the run stopped while it ran twice.
    Started {
        iteration: usize,
        index: usize,
        canonical: String,
    },
    /// The driver stopped a started candidate cleanly (Ctrl-C of the run): it may run
    /// again on `--resume`.
    Released {
        iteration: usize,
        index: usize,
    },
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
        /// Which problems were answered, in order (hex of a bitmap, see
        /// [`crate::eval::stats::hits_hex`]; absent from older records).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hits: Option<String>,
    },
}

/// Everything the loop needs besides the generator.
pub struct Setup {
    pub cfg: RunConfig,
    pub dev: Vec<Problem>,
    pub probes: Vec<ProbeTensor>,
    pub prompt: String,
    /// Dev scores (accuracy, correct, hits) by canonical hash that another run with the same
    /// settings already made (the controls reuse the main run's): such a program is
    /// recorded as scored with that score, not merged again (scoring is deterministic).
    pub prior: HashMap<String, (f64, usize, Option<String>)>,
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
            prompt: super::prompt::for_run(cfg)?,
            prior: HashMap::new(),
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
/// `out`, then scores it on `problems`. Returns (accuracy, correct, hits, merge s,
/// eval s), hits as in [`score_model`].
/// Fails with "over the time limit" when `cfg.time_limit_s` (if set) runs out.
pub fn merge_and_score(
    cfg: &RunConfig,
    program: &str,
    params: Vec<(String, crate::types::Const)>,
    base: &Path,
    models: &[PathBuf],
    problems: &[Problem],
    out: &Path,
) -> Result<(f64, usize, Option<String>, f64, f64), String> {
    let t0 = Instant::now();
    let deadline =
        (cfg.time_limit_s > 0.0).then(|| t0 + std::time::Duration::from_secs_f64(cfg.time_limit_s));
    let program = crate::pipeline::Source::check("generated", program)
        .map_err(|_| "does not check".to_string())?;
    let name = program
        .merge_name(None)
        .map_err(|_| "no merge".to_string())?;
    let (base, models, dir) = (base.to_path_buf(), models.to_vec(), out.to_path_buf());
    let mut job = crate::runtime::merge::MergeJob::new(program, &name, base, models, dir);
    job.params = Box::new(crate::runtime::merge::FixedParams(params));
    job.only = Some(regex::Regex::new(&cfg.tensors).map_err(|e| e.to_string())?);
    job.seed = cfg.seed;
    job.shard_size = 5 << 30;
    job.max_memory = 2 << 30;
    job.force = true;
    job.allow_unread_models = true;
    job.deadline = deadline;
    // The candidate is read back at once to be scored: keep it in the page cache.
    job.write_mode = crate::runtime::WriteMode::Buffered;
    crate::runtime::merge::run(&job).map_err(|e| format!("merge: {e}"))?;
    let merge_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let (acc, correct, hits) = score_model_until(cfg, out, problems, deadline)?;
    Ok((acc, correct, hits, merge_s, t1.elapsed().as_secs_f64()))
}

/// Accuracy of the model at `dir` on `problems` with the configured evaluator:
/// (accuracy, correct, which problems were answered as [`crate::eval::stats::hits_hex`];
/// None from an external evaluator, which reports only its accuracy).
pub fn score_model(
    cfg: &RunConfig,
    dir: &Path,
    problems: &[Problem],
) -> Result<(f64, usize, Option<String>), String> {
    score_model_until(cfg, dir, problems, None)
}

/// [`score_model`], failing with "over the time limit" if `deadline` passes (checked
/// between batches: greedy decoding does not depend on the batching, so the score is
/// the same as in one call).
fn score_model_until(
    cfg: &RunConfig,
    dir: &Path,
    problems: &[Problem],
    deadline: Option<Instant>,
) -> Result<(f64, usize, Option<String>), String> {
    if cfg.evaluator != "builtin" {
        let ev = crate::eval::external::Evaluator::parse(&cfg.evaluator)?;
        // A candidate's evaluator gets what is left of its time; others (final stage)
        // get `time_limit_s` each.
        let left = match deadline {
            Some(d) => Some(d.saturating_duration_since(Instant::now())),
            None if cfg.time_limit_s > 0.0 => {
                std::time::Duration::try_from_secs_f64(cfg.time_limit_s).ok()
            }
            None => None,
        };
        let acc = ev.score_within(dir, left)?;
        return Ok((acc, (acc * problems.len() as f64).round() as usize, None));
    }
    let mut m = crate::model::LoadedModel::load(dir)?;
    let train = match &cfg.train {
        Some(t) => crate::eval::gsm8k::load_jsonl(t)?,
        None => vec![],
    };
    let settings = eval_settings(cfg);
    let mut hits = Vec::with_capacity(problems.len());
    for chunk in problems.chunks(settings.batch_size.max(1)) {
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(format!(
                "eval: over the time limit of {} s (time_limit_s)",
                cfg.time_limit_s
            ));
        }
        let r = crate::eval::run::evaluate(&mut m, chunk, &train, &settings, &mut |_| {})
            .map_err(|e| format!("eval: {e}"))?;
        hits.extend(r.items.iter().map(|i| i.correct));
    }
    let correct = hits.iter().filter(|h| **h).count();
    let (acc, _, _) = crate::eval::gsm8k::accuracy(correct, problems.len());
    Ok((acc, correct, Some(crate::eval::stats::hits_hex(&hits))))
}

/// How many candidates of the loop run at once: `max_in_flight` on a cluster, one per
/// device of `devices`, else [`resolve_jobs`].
pub fn candidates_at_once(cfg: &RunConfig) -> usize {
    if cfg.executor != "local" {
        return cfg.max_in_flight;
    }
    match (cfg.devices.len(), cfg.jobs) {
        (0, _) => resolve_jobs(cfg),
        (d, 0) => d,
        (d, j) => d.min(j),
    }
}

/// How many candidates are merged and scored at once: `jobs`, or (0) as many as the
/// cores allow and fit `memory_budget_gb`, each estimated at twice the base
/// checkpoint (its merge output plus the model loaded for scoring) and the merge's
/// working memory for one tensor of each input.
pub fn resolve_jobs(cfg: &RunConfig) -> usize {
    if cfg.jobs > 0 {
        return cfg.jobs;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let base_bytes = super::isolate::checkpoint_bytes(&cfg.base).unwrap_or(1 << 30);
    let per = 2 * base_bytes + (64 << 20);
    let fit = (cfg.memory_budget_gb * (1u64 << 30) as f64 / per as f64).floor() as usize;
    cores.min(fit).max(1)
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

/// `f` over `items`, `jobs` at a time on threads (in order when `jobs` is 1), each
/// thread's tensor work on its own share of the cores; results in the items' order.
pub fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let workers = jobs.min(items.len());
    if workers <= 1 {
        return items.iter().map(f).collect();
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = (cores / workers).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let work = || {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(item) = items.get(i) else { break };
                        let r = f(item);
                        *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                    }
                };
                match rayon::ThreadPoolBuilder::new().num_threads(per).build() {
                    Ok(pool) => pool.install(work),
                    Err(_) => work(),
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every item is computed")
        })
        .collect()
}
