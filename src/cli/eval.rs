//! `mergec eval`: a model's GSM8K accuracy, in process (`--data`) or from an external
//! evaluator (`--evaluator 'command:CMD {model}'`). See docs/eval.md.

use crate::eval::external::Evaluator;
use crate::eval::gsm8k::Split;
use crate::eval::run::{
    ChatMode, Dataset, EvalJob, EvalSettings, default_cache_dir, items_jsonl, run_job,
};
use crate::model::TextModel;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Loads a model from a path (a Hugging Face directory or a GGUF file).
pub type Loader<'a> = &'a dyn Fn(&Path) -> Result<Box<dyn TextModel>, String>;

/// The command line of `mergec eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// The model: a Hugging Face directory or GGUF file (in process), or the path
    /// given to the external evaluator.
    pub model: PathBuf,
    /// GSM8K-format JSONL to score in process ({"question", "answer": "... #### N"}).
    #[arg(long, conflicts_with = "evaluator")]
    pub data: Option<PathBuf>,
    /// Where the shots come from [default: train.jsonl next to --data, if there].
    #[arg(long, requires = "data")]
    pub train: Option<PathBuf>,
    /// Worked examples before each question [default: 5, or 0 without a train file].
    #[arg(long, requires = "data")]
    pub shots: Option<usize>,
    /// all, dev:N (the first N of a fixed shuffle), test (after dev:100) or test:N [default: all].
    #[arg(long, requires = "data")]
    pub split: Option<String>,
    /// Only the first N problems of the split.
    #[arg(long, requires = "data")]
    pub limit: Option<usize>,
    /// Prompts generated together [default: 16].
    #[arg(long, requires = "data")]
    pub batch_size: Option<usize>,
    /// Longest completion in tokens [default: 256].
    #[arg(long, requires = "data")]
    pub max_new_tokens: Option<usize>,
    /// auto (the chat template when the model has one), on or off [default: auto].
    #[arg(long, requires = "data", value_parser = ["auto", "on", "off"])]
    pub chat: Option<String>,
    /// A system turn opening each chat prompt.
    #[arg(long, requires = "data")]
    pub system: Option<String>,
    /// Seed for choosing the shots from the train file [default: 0].
    #[arg(long, requires = "data")]
    pub seed: Option<u64>,
    /// Write per-item results here (JSONL: index, question, target, completion, answer, correct).
    #[arg(long, requires = "data")]
    pub out: Option<PathBuf>,
    /// Print a JSON object instead of the summary line (the same as --format json).
    #[arg(long)]
    pub json: bool,
    /// Output format: text (a summary line) or json (one object), as every command that
    /// prints results takes it.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
    /// Neither read nor write the result cache ($MERGEC_CACHE_DIR, else
    /// $XDG_CACHE_HOME/mergec/eval, else ~/.cache/mergec/eval).
    #[arg(long, requires = "data")]
    pub no_cache: bool,
    /// command:CMD with {model}, e.g. 'command:scripts/example-evaluator.sh {model}';
    /// the score is the last line (0.62 or 62%) or a JSON object with "accuracy".
    #[arg(long)]
    pub evaluator: Option<String>,
}

/// Runs `mergec eval`; the exit code (1 on any error, said on stderr).
pub fn run(args: &EvalArgs, load: Loader) -> i32 {
    let cache = if args.no_cache {
        None
    } else {
        default_cache_dir()
    };
    let stdout = std::io::stdout();
    match execute(args, load, cache.as_deref(), &mut stdout.lock()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// `mergec eval` with the cache directory chosen (None: no cache) and the result
/// written to `out`; notes and the progress bar go to stderr.
pub fn execute(
    args: &EvalArgs,
    load: Loader,
    cache_dir: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), String> {
    let text = match (&args.data, &args.evaluator) {
        (Some(data), None) => in_process(args, data, load, cache_dir)?,
        (None, Some(e)) => external(args, e)?,
        (None, None) => {
            return Err(
                "say what to score the model on: --data FILE.jsonl (GSM8K format, \
                        in process) or --evaluator 'command:CMD {model}'"
                    .to_string(),
            );
        }
        (Some(_), Some(_)) => {
            return Err("--data and --evaluator exclude each other".to_string());
        }
    };
    writeln!(out, "{text}").map_err(|e| format!("cannot write the result: {e}"))
}

fn external(args: &EvalArgs, e: &str) -> Result<String, String> {
    let score = Evaluator::parse(e)?.score(&args.model)?;
    Ok(if args.json || args.format == "json" {
        serde_json::json!({
            "accuracy": score,
            "model": args.model.display().to_string(),
            "evaluator": e,
        })
        .to_string()
    } else {
        score.to_string()
    })
}

fn note(s: &str) {
    eprintln!("note: {s}");
}

/// The train file: --train, else `train.jsonl` beside the data (unless that is the data).
fn train_path(args: &EvalArgs, data: &Path) -> Option<PathBuf> {
    if let Some(t) = &args.train {
        return Some(t.clone());
    }
    let beside = data.parent().unwrap_or(Path::new("")).join("train.jsonl");
    let same = match (beside.canonicalize(), data.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    (beside.is_file() && !same).then_some(beside)
}

fn in_process(
    args: &EvalArgs,
    data_path: &Path,
    load: Loader,
    cache_dir: Option<&Path>,
) -> Result<String, String> {
    if let Some(out) = &args.out {
        let train = train_path(args, data_path);
        let mut inputs = vec![args.model.as_path(), data_path];
        inputs.extend(train.as_deref());
        crate::runtime::plan::refuse_overlap("--out", out, &inputs, "the results")?;
    }
    let data = Dataset::load(data_path)?;
    if data.problems.is_empty() {
        return Err(format!("`{}` holds no problems", data_path.display()));
    }
    let split_text = args.split.as_deref().unwrap_or("all");
    let split = Split::parse(split_text)?;
    if let Split::Dev(d) = split
        && d > data.problems.len()
    {
        note(&format!(
            "--split {split}: `{}` has only {} problems; scoring all of them",
            data_path.display(),
            data.problems.len()
        ));
    }
    let train = match train_path(args, data_path) {
        Some(p) => Some(Dataset::load(&p)?),
        None => None,
    };
    if train.as_ref().is_some_and(|t| t.sha256 == data.sha256) {
        note("the train file is the data file: the shots may include the questions scored");
    }
    let settings = eval_settings(args, shots_for(args, train.as_ref(), data_path)?)?;
    let job = EvalJob {
        data: &data,
        train: train.as_ref(),
        split,
        limit: args.limit,
        settings,
    };
    let n = job.indices().len();
    if n == 0 {
        let why = match (split, args.limit) {
            (_, Some(0)) => "--limit 0".to_string(),
            (Split::Test(d), _) => format!("the test split starts after a dev of {d}"),
            _ => format!("--split {split_text}"),
        };
        return Err(format!(
            "nothing to score: `{}` has {} problems and {why}; try --split all or a smaller dev:N",
            data_path.display(),
            data.problems.len()
        ));
    }

    let mut model =
        load(&args.model).map_err(|e| format!("cannot load `{}`: {e}", args.model.display()))?;
    let bar = progress_bar(n);
    let outcome = run_job(model.as_mut(), &job, cache_dir, &mut |done| {
        bar.set_position(done as u64)
    });
    bar.finish_and_clear();
    let outcome = outcome?;
    for w in &outcome.warnings {
        eprintln!("warning: {w}");
    }
    if outcome.cached {
        note(&format!(
            "cached result{} (--no-cache recomputes)",
            outcome
                .cache_file
                .as_ref()
                .map(|f| format!(" from {}", f.display()))
                .unwrap_or_default()
        ));
    }
    let r = &outcome.report;
    if let Some(path) = &args.out {
        crate::files::write_atomic(path, items_jsonl(r).as_bytes())?;
    }
    let train_name = train.as_ref().map(|t| t.path.display().to_string());
    Ok(summary(args, data_path, train_name, &job, &outcome))
}

/// The number of worked examples: `--shots`, else 5 (at most the train file's), else 0
/// when there is no train file.
fn shots_for(args: &EvalArgs, train: Option<&Dataset>, data_path: &Path) -> Result<usize, String> {
    Ok(match (args.shots, train) {
        (Some(k), Some(t)) if k > t.problems.len() => {
            return Err(format!(
                "--shots {k}: the train file `{}` has only {} problems",
                t.path.display(),
                t.problems.len()
            ));
        }
        (Some(k), None) if k > 0 => {
            return Err(format!(
                "--shots {k} needs worked examples: pass --train FILE.jsonl (there is no \
                 train.jsonl next to `{}`)",
                data_path.display()
            ));
        }
        (Some(k), _) => k,
        (None, Some(t)) => 5.min(t.problems.len()),
        (None, None) => {
            note(&format!(
                "no train.jsonl next to `{}` and no --train: 0-shot prompts",
                data_path.display()
            ));
            0
        }
    })
}

/// The evaluation settings of the flags, with `shots`.
fn eval_settings(args: &EvalArgs, shots: usize) -> Result<EvalSettings, String> {
    let defaults = EvalSettings::default();
    let settings = EvalSettings {
        shots,
        chat: match &args.chat {
            Some(c) => ChatMode::parse(c)?,
            None => defaults.chat,
        },
        system: args.system.clone(),
        max_new_tokens: args.max_new_tokens.unwrap_or(defaults.max_new_tokens),
        batch_size: args.batch_size.unwrap_or(defaults.batch_size),
        seed: args.seed.unwrap_or(defaults.seed),
    };
    if settings.batch_size == 0 {
        return Err("--batch-size must be at least 1".to_string());
    }
    if settings.max_new_tokens == 0 {
        return Err("--max-new-tokens must be at least 1".to_string());
    }
    Ok(settings)
}

/// What `mergec eval` prints: a line, or with `--json` an object.
fn summary(
    args: &EvalArgs,
    data_path: &Path,
    train_name: Option<String>,
    job: &EvalJob,
    outcome: &crate::eval::run::JobOutcome,
) -> String {
    let r = &outcome.report;
    let split = job.split;
    let (acc, lo, hi) = (r.accuracy, r.ci_low, r.ci_high);
    let mut scope = split.to_string();
    if let Some(l) = args.limit {
        scope.push_str(&format!(", first {l}"));
    }
    if args.json || args.format == "json" {
        return serde_json::json!({
            "accuracy": acc,
            "ci_low": lo,
            "ci_high": hi,
            "n": r.n,
            "correct": r.correct,
            "model": args.model.display().to_string(),
            "data": data_path.display().to_string(),
            "train": train_name,
            "split": split.to_string(),
            "limit": args.limit,
            "shots": job.settings.shots,
            "shot_indices": r.shots,
            "chat": r.chat,
            "max_new_tokens": job.settings.max_new_tokens,
            "batch_size": job.settings.batch_size,
            "seed": job.settings.seed,
            "cached": outcome.cached,
            "cache_key": outcome.cache_key,
            "out": args.out.as_ref().map(|p| p.display().to_string()),
        })
        .to_string();
    }
    format!(
        "accuracy {:.1}% (95% CI {:.1}-{:.1}) on {} problems [{scope} of {}; {}-shot{}]",
        100.0 * acc,
        100.0 * lo,
        100.0 * hi,
        r.n,
        data_path.display(),
        job.settings.shots,
        if r.chat { ", chat template" } else { "" }
    )
}

/// A bar on stderr when it is a terminal, else hidden.
fn progress_bar(n: usize) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(n as u64);
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} problems eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
