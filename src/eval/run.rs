//! In-process GSM8K evaluation through a [`TextModel`]: prompts (plain few-shot text, or
//! a multi-turn conversation through the model's chat template), greedy generation,
//! scoring with [`gsm8k::is_correct`], and a result cache on disk.
//!
//! - [`evaluate`]: the core: problems in, an [`EvalReport`] out.
//! - [`EvalJob`] and [`run_job`]: a data file, its split and limit, the train file the
//!   shots come from and the settings, with results cached under a key that covers all
//!   of them, the model's content hash and [`CACHE_FORMAT`].

use super::gsm8k::{self, Problem, Split};
use crate::model::{GenOptions, Role, TextModel};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Errors are text that says what and where.
pub type Result<T> = std::result::Result<T, super::EvalError>;

/// Version of prompts, scoring and the cached report; bump it when any of them changes
/// meaning so old cache entries are not reused.
pub const CACHE_FORMAT: u32 = 1;

/// The seed of the shuffle behind `dev:N` / `test:N` splits. Fixed (not `--seed`), so a
/// data file's dev and test problems never overlap whatever the other settings.
pub const SPLIT_SEED: u64 = 0;

/// Stop strings of plain few-shot prompts: the model starting the next question.
pub const PLAIN_STOP: [&str; 2] = ["\n\nQuestion:", "\nQuestion:"];

/// Whether to prompt through the model's chat template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatMode {
    /// The chat template when the model has one, else plain text.
    Auto,
    /// The chat template; an error if the model has none.
    On,
    /// Plain few-shot text.
    Off,
}

impl ChatMode {
    pub fn parse(s: &str) -> Result<ChatMode> {
        match s {
            "auto" => Ok(ChatMode::Auto),
            "on" => Ok(ChatMode::On),
            "off" => Ok(ChatMode::Off),
            _ => Err(crate::eval::EvalError::Setting(format!(
                "--chat `{s}`: use auto, on or off"
            ))),
        }
    }
}

/// How problems are prompted and generated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    /// Worked examples before each question, drawn from the train problems.
    pub shots: usize,
    pub chat: ChatMode,
    /// A system turn opening each conversation (chat prompts only).
    pub system: Option<String>,
    pub max_new_tokens: usize,
    /// Prompts generated together.
    pub batch_size: usize,
    /// Seed for choosing the shots (the same shots for every question).
    pub seed: u64,
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings {
            shots: 5,
            chat: ChatMode::Auto,
            system: None,
            max_new_tokens: 256,
            batch_size: 16,
            seed: 0,
        }
    }
}

/// One scored problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemRecord {
    /// Position in the data file (0-based, blank lines not counted); from [`evaluate`]
    /// alone, the position in the problems it was given.
    pub index: usize,
    pub question: String,
    /// The reference answer, normalised.
    pub target: String,
    /// The model's completion, cut at the first stop string.
    pub completion: String,
    /// The answer extracted from the completion, normalised.
    pub answer: Option<String>,
    pub correct: bool,
}

/// The outcome of an evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Fraction correct, with its 95% Wilson interval.
    pub accuracy: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub n: usize,
    pub correct: usize,
    /// Whether the prompts went through the chat template.
    pub chat: bool,
    /// Positions of the shots among the train problems.
    pub shots: Vec<usize>,
    pub items: Vec<ItemRecord>,
}

/// `k` distinct shots out of `available` train problems: the first `k` of a seeded
/// shuffle, so the choice depends only on the train size, `k` and the seed.
pub fn choose_shots(available: usize, k: usize, seed: u64) -> Result<Vec<usize>> {
    if k > available {
        return Err(crate::eval::EvalError::Job(format!(
            "{k} shots asked for, but the train problems number only {available}"
        )));
    }
    Ok(Split::Dev(k).indices(available, seed))
}

/// The turns of a chat prompt: an optional system turn, each shot as a user question
/// and the assistant's worked solution (ending `#### N`), then the question.
pub fn chat_turns(system: Option<&str>, shots: &[&Problem], q: &Problem) -> Vec<(Role, String)> {
    let mut turns = Vec::with_capacity(2 * shots.len() + 2);
    if let Some(s) = system {
        turns.push((Role::System, s.to_string()));
    }
    for s in shots {
        turns.push((Role::User, s.question.clone()));
        turns.push((Role::Assistant, s.solution.clone()));
    }
    turns.push((Role::User, q.question.clone()));
    turns
}

/// The prompts for `problems`, whether they are chat prompts, and the stop strings.
fn build_prompts(
    model: &dyn TextModel,
    problems: &[Problem],
    shots: &[&Problem],
    settings: &EvalSettings,
) -> Result<(Vec<String>, bool, Vec<String>)> {
    if settings.chat != ChatMode::Off {
        let chat: Vec<Option<String>> = problems
            .iter()
            .map(|q| model.chat_prompt(&chat_turns(settings.system.as_deref(), shots, q)))
            .collect();
        let made = chat.iter().filter(|p| p.is_some()).count();
        if made == problems.len() {
            // The template closes each turn; generation ends at EOS.
            return Ok((chat.into_iter().flatten().collect(), true, Vec::new()));
        }
        if made > 0 {
            return Err(crate::eval::EvalError::Job(format!(
                "the model's chat template gave no prompt for {} of {} problems",
                problems.len() - made,
                problems.len()
            )));
        }
        if settings.chat == ChatMode::On {
            return Err(crate::eval::EvalError::Job(
                "--chat on: the model has no chat template (use --chat off or auto)".to_string(),
            ));
        }
    }
    let owned: Vec<Problem> = shots.iter().map(|p| (*p).clone()).collect();
    let prompts = problems
        .iter()
        .map(|q| gsm8k::few_shot_prompt(&owned, q))
        .collect();
    let stop = PLAIN_STOP.iter().map(|s| s.to_string()).collect();
    Ok((prompts, false, stop))
}

/// A completion cut at the first of the stop strings (models should already do this;
/// scoring must not depend on it).
fn cut_at_stop(text: &str, stop: &[String]) -> String {
    crate::model::generate::cut_at_stop(text, stop).0
}

/// Scores `model` on `problems`, each prompted with `settings.shots` worked examples
/// chosen from `train` with `settings.seed`. `progress` is called with the number of
/// problems generated so far.
pub fn evaluate(
    model: &mut dyn TextModel,
    problems: &[Problem],
    train: &[Problem],
    settings: &EvalSettings,
    progress: &mut dyn FnMut(usize),
) -> Result<EvalReport> {
    if problems.is_empty() {
        return Err(crate::eval::EvalError::Job(
            "no problems to score".to_string(),
        ));
    }
    if settings.batch_size == 0 {
        return Err(crate::eval::EvalError::Job(
            "the batch size must be at least 1".to_string(),
        ));
    }
    if settings.max_new_tokens == 0 {
        return Err(crate::eval::EvalError::Job(
            "max_new_tokens must be at least 1".to_string(),
        ));
    }
    let shot_idx = choose_shots(train.len(), settings.shots, settings.seed)?;
    let shots: Vec<&Problem> = shot_idx.iter().map(|&i| &train[i]).collect();
    let (prompts, chat, stop) = build_prompts(model, problems, &shots, settings)?;
    let opts = GenOptions {
        max_new_tokens: settings.max_new_tokens,
        stop,
        batch_size: settings.batch_size,
    };
    let completions = model.generate(&prompts, &opts, progress)?;
    if completions.len() != prompts.len() {
        return Err(crate::eval::EvalError::Job(format!(
            "the model returned {} completions for {} prompts",
            completions.len(),
            prompts.len()
        )));
    }
    let items: Vec<ItemRecord> = problems
        .iter()
        .zip(completions)
        .enumerate()
        .map(|(index, (p, c))| {
            let completion = cut_at_stop(&c, &opts.stop);
            ItemRecord {
                index,
                question: p.question.clone(),
                target: p.target.clone(),
                answer: gsm8k::extract_answer(&completion),
                correct: gsm8k::is_correct(&completion, &p.target),
                completion,
            }
        })
        .collect();
    let correct = items.iter().filter(|r| r.correct).count();
    let (accuracy, ci_low, ci_high) = gsm8k::accuracy(correct, items.len());
    Ok(EvalReport {
        accuracy,
        ci_low,
        ci_high,
        n: items.len(),
        correct,
        chat,
        shots: shot_idx,
        items,
    })
}

/// A GSM8K-format file with its content hash.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub path: PathBuf,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
    pub problems: Vec<Problem>,
}

impl Dataset {
    /// Reads and parses a JSONL file; errors name the path (and line).
    pub fn load(path: &Path) -> Result<Dataset> {
        let bytes = crate::files::read_bytes(path, "a data set", crate::files::limit::DATASET)?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            super::EvalError::Data(format!("`{}` is not UTF-8: {e}", path.display()))
        })?;
        let problems = gsm8k::parse_jsonl(text, &path.display().to_string())?;
        Ok(Dataset {
            path: path.to_path_buf(),
            sha256: crate::files::sha256_hex(&bytes),
            problems,
        })
    }
}

/// An evaluation of a data file's split: what [`run_job`] runs and caches.
#[derive(Clone, Debug)]
pub struct EvalJob<'a> {
    pub data: &'a Dataset,
    /// Where the shots come from (none: 0 shots).
    pub train: Option<&'a Dataset>,
    pub split: Split,
    /// Only the first this many problems of the split.
    pub limit: Option<usize>,
    pub settings: EvalSettings,
}

impl EvalJob<'_> {
    /// Positions in the data file of the problems scored, in order.
    pub fn indices(&self) -> Vec<usize> {
        let mut ix = self.split.indices(self.data.problems.len(), SPLIT_SEED);
        if let Some(l) = self.limit {
            ix.truncate(l);
        }
        ix
    }

    /// The cache key for a model with this content hash: hex SHA-256 over everything
    /// that can change the result.
    pub fn cache_key(&self, model_hash: &str) -> String {
        let material = serde_json::json!({
            "format": CACHE_FORMAT,
            "model": model_hash,
            "data": self.data.sha256,
            "train": self.train.map(|t| t.sha256.as_str()),
            "split": self.split.to_string(),
            "split_seed": SPLIT_SEED,
            "limit": self.limit,
            "settings": self.settings,
            "plain_stop": PLAIN_STOP,
        });
        crate::files::sha256_hex(material.to_string().as_bytes())
    }
}

/// What [`run_job`] did.
#[derive(Clone, Debug)]
pub struct JobOutcome {
    /// Item indices are positions in the data file.
    pub report: EvalReport,
    /// Whether the report came from the cache (and the model generated nothing).
    pub cached: bool,
    pub cache_key: String,
    /// The cache entry read or written, if caching was on.
    pub cache_file: Option<PathBuf>,
    /// Problems that did not stop the evaluation (a cache entry that could not be written).
    pub warnings: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct CacheEntry {
    format: u32,
    key: String,
    report: EvalReport,
}

/// Runs a job, reading and writing results under `cache_dir` (None: no cache).
pub fn run_job(
    model: &mut dyn TextModel,
    job: &EvalJob,
    cache_dir: Option<&Path>,
    progress: &mut dyn FnMut(usize),
) -> Result<JobOutcome> {
    let indices = job.indices();
    if indices.is_empty() {
        return Err(crate::eval::EvalError::Job(format!(
            "the split {} of `{}` ({} problems) is empty",
            job.split,
            job.data.path.display(),
            job.data.problems.len()
        )));
    }
    let key = job.cache_key(&model.content_hash());
    let cache_file = cache_dir.map(|d| d.join(format!("{key}.json")));
    if let Some(f) = &cache_file
        && let Ok(text) = crate::files::read_text(f, "a cache entry", crate::files::limit::DATASET)
        && let Ok(entry) = serde_json::from_str::<CacheEntry>(&text)
        && entry.format == CACHE_FORMAT
        && entry.key == key
        && entry.report.n == indices.len()
        && entry.report.items.len() == indices.len()
    {
        let mut report = entry.report;
        // Recomputed rather than read: JSON need not round-trip the last bit of a float.
        report.correct = report.items.iter().filter(|r| r.correct).count();
        (report.accuracy, report.ci_low, report.ci_high) =
            gsm8k::accuracy(report.correct, report.n);
        return Ok(JobOutcome {
            report,
            cached: true,
            cache_key: key,
            cache_file,
            warnings: Vec::new(),
        });
    }
    let problems: Vec<Problem> = indices
        .iter()
        .map(|&i| job.data.problems[i].clone())
        .collect();
    let train = job.train.map_or(&[][..], |t| &t.problems[..]);
    let mut report = evaluate(model, &problems, train, &job.settings, progress)?;
    for (r, &i) in report.items.iter_mut().zip(&indices) {
        r.index = i;
    }
    let mut warnings = Vec::new();
    if let Some(f) = &cache_file {
        let entry = CacheEntry {
            format: CACHE_FORMAT,
            key: key.clone(),
            report: report.clone(),
        };
        let written = serde_json::to_vec(&entry)
            .map_err(|e| e.to_string())
            .and_then(|bytes| Ok(crate::files::write_atomic(f, &bytes)?));
        if let Err(e) = written {
            warnings.push(format!("the result was not cached: {e}"));
        }
    }
    Ok(JobOutcome {
        report,
        cached: false,
        cache_key: key,
        cache_file,
        warnings,
    })
}

/// The result cache: `$MERGEC_CACHE_DIR`, else `$XDG_CACHE_HOME/mergec/eval`, else
/// `~/.cache/mergec/eval`; None if none of these is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("MERGEC_CACHE_DIR") {
        return Some(d);
    }
    if let Some(d) = var("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return Some(d.join("mergec").join("eval"));
    }
    var("HOME").map(|h| h.join(".cache").join("mergec").join("eval"))
}

/// Per-item records as JSONL, one object a line.
pub fn items_jsonl(report: &EvalReport) -> String {
    let mut out = String::new();
    for r in &report.items {
        out.push_str(&serde_json::to_string(r).expect("records serialise"));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_cut_at_the_earliest() {
        let stop: Vec<String> = PLAIN_STOP.iter().map(|s| s.to_string()).collect();
        assert_eq!(cut_at_stop("#### 4\n\nQuestion: x", &stop), "#### 4");
        assert_eq!(cut_at_stop("#### 4\nQuestion: x", &stop), "#### 4");
        assert_eq!(cut_at_stop("#### 4", &stop), "#### 4");
        assert_eq!(cut_at_stop("abc", &[String::new()]), "abc");
    }

    #[test]
    fn shots_are_seeded_and_bounded() {
        let a = choose_shots(100, 5, 1).expect("fits");
        assert_eq!(a, choose_shots(100, 5, 1).expect("fits"));
        assert_ne!(a, choose_shots(100, 5, 2).expect("fits"));
        let mut d = a.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 5);
        assert!(
            choose_shots(3, 5, 0)
                .unwrap_err()
                .to_string()
                .contains("only 3")
        );
        assert!(choose_shots(0, 0, 0).expect("none").is_empty());
    }
}
