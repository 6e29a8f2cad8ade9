//! `mergec generate`: merge programs sampled from a generator (a local model, or the
//! built-in `tiny`), with valid rates; `--bench`, generation throughput; and
//! `--logprobs`, a local model's log-probabilities of given completions.

use crate::develop::candidate::{Stage, assess};
use crate::develop::generator::Generator;
use crate::develop::local::{LocalGenerator, LocalSettings};
use crate::develop::tiny::{TinyGenerator, TinySpec, default_cache};
use crate::model::sample::{SampleOptions, sample_shared};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// The command line of `mergec generate`.
#[derive(clap::Args, Debug, Clone)]
pub struct GenerateArgs {
    /// `tiny` (the built-in generator), a llama-family model (a Hugging Face directory
    /// or a .gguf file, as `local:PATH` in a develop run), or a server:
    /// `openai:URL` / `openai-chat:URL` (an OpenAI-compatible API base such as
    /// `http://127.0.0.1:8000/v1`).
    pub model: String,
    /// With `openai:`: the model name to ask for (default: the server's first).
    #[arg(long)]
    pub server_model: Option<String>,
    /// With `openai:`: the grammar requests carry: auto (ask the server), gbnf
    /// (llama.cpp's `grammar`), lark (vLLM's `structured_outputs`) or none.
    #[arg(long, default_value = "auto")]
    pub grammar: String,
    /// The prompt (default: the develop loop's prompt for this generator).
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// With `tiny`: write children of this merge program with the conditioned tiny
    /// generator (what a develop run with `archive > 0` uses); the summary then says how
    /// many children compile to the parent itself.
    #[arg(long, conflicts_with = "prompt_file")]
    pub parent: Option<PathBuf>,
    /// Programs to sample.
    #[arg(short, long, default_value_t = 16)]
    pub n: usize,
    /// Sequences decoded together.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Nucleus sampling: draw from the smallest set of tokens whose probability
    /// reaches this.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f64,
    /// At most this many tokens per program (local models and `openai:` servers).
    #[arg(long, default_value_t = 320)]
    pub max_new_tokens: usize,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Grammar-guided decoding: every token keeps the program a viable prefix.
    #[arg(long)]
    pub guided: bool,
    /// With --guided: draw only from the tokens the loop's grammar allows (llguidance's
    /// token mask over `mergec grammar --shape loop`). The default; the flag is kept for
    /// scripts that name it.
    #[arg(long, requires = "guided", conflicts_with = "no_grammar_mask")]
    pub grammar_mask: bool,
    /// With --guided: no token mask; draw from the whole nucleus, check each token and
    /// redraw (mergec's own guidance, as before the mask).
    #[arg(long, requires = "guided")]
    pub no_grammar_mask: bool,
    /// LoRA adapters to load: a directory in PEFT's layout (`adapter_model.safetensors`,
    /// `adapter_config.json`), saved by a develop run's `learn` or by
    /// `scripts/dpo_train.py`. Rank, alpha and target modules come from its config.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Print a JSON summary of the valid rates instead of the programs (the same as
    /// --format json).
    #[arg(long)]
    pub summary: bool,
    /// Output format: text (the programs) or json (the summary of valid rates), as every
    /// command that prints results takes it.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
    /// Throughput instead: for each batch size in `--batches`, that many sequences of
    /// exactly `--new-tokens` tokens (no early end), one JSON line each.
    #[arg(long)]
    pub bench: bool,
    /// With --bench: the batch sizes to measure, comma-separated.
    #[arg(long, default_value = "1,16")]
    pub batches: String,
    /// With --bench: tokens generated per sequence (no early end).
    #[arg(long, default_value_t = 64)]
    pub new_tokens: usize,
    /// Print the exact prompt text the model is given (chat template and the opened
    /// merge block included) and stop: other tools can then tokenize the same text.
    #[arg(long)]
    pub print_prompt: bool,
    /// Instead of sampling: the summed log-probability of given completions under the
    /// model (with `--adapter`'s adapters, unmerged). FILE is JSON lines, each
    /// `{"prompt", "completion"}` or a DPO pair `{"prompt", "chosen", "rejected"}` (a
    /// develop run's `dpo-pairs-iterN.jsonl`); each prints one JSON line: `logprob` (or
    /// `chosen` and `rejected`) and the token counts. The prompt is laid out as for
    /// sampling (`--print-prompt`) and a completion is a program closed by the fence,
    /// unless `--raw`.
    #[arg(long, value_name = "FILE")]
    pub logprobs: Option<PathBuf>,
    /// With `--logprobs`: score the records' texts as written (no chat template, no merge
    /// block, no closing fence): the prompt encoded as a prompt, each completion as its
    /// continuation.
    #[arg(long, requires = "logprobs")]
    pub raw: bool,
}

impl GenerateArgs {
    /// Whether guided decoding takes llguidance's token mask (the default).
    fn masked(&self) -> bool {
        self.guided && !self.no_grammar_mask
    }
}

pub fn run(a: &GenerateArgs) -> i32 {
    match run_inner(a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn prompt(a: &GenerateArgs, local: bool) -> Result<String, String> {
    match &a.prompt_file {
        Some(f) => Ok(crate::files::read_text(
            f,
            "a prompt file",
            crate::files::limit::CONFIG,
        )?),
        None if local => Ok(crate::develop::prompt::compact_prompt()),
        None => Ok(crate::develop::prompt::default_prompt()),
    }
}

/// The program of `--parent`, in the corpus's layout when it checks.
fn read_parent(a: &GenerateArgs) -> Result<Option<String>, String> {
    let Some(f) = &a.parent else { return Ok(None) };
    let text = crate::files::read_text(f, "a parent program", crate::files::limit::CONFIG)?;
    Ok(Some(
        crate::develop::tiny_corpus::normalize(&text).unwrap_or(text),
    ))
}

/// The built-in generator (the conditioned one with `--parent`), pretrained if needed.
fn tiny(a: &GenerateArgs, conditioned: bool) -> Result<TinyGenerator, String> {
    let spec = if conditioned {
        TinySpec::conditioned()
    } else {
        TinySpec::default()
    };
    let mut t = TinyGenerator::pretrained(&default_cache(), &spec, &mut |m| eprintln!("{m}"))?;
    t.guided = a.guided;
    t.grammar_mask = a.masked();
    t.top_p = a.top_p;
    t.batch_size = a.batch;
    Ok(t)
}

/// An `openai:` / `openai-chat:` generator, if the model names one.
fn server(a: &GenerateArgs) -> Result<Option<crate::develop::openai::OpenAiGenerator>, String> {
    if !a.model.starts_with("openai") {
        return Ok(None);
    }
    let mut o =
        crate::develop::openai::OpenAiGenerator::from_spec(&a.model, a.server_model.clone())?;
    o.grammar = a.grammar.parse()?;
    o.max_tokens = a.max_new_tokens;
    o.top_p = a.top_p;
    Ok(Some(o))
}

fn run_inner(a: &GenerateArgs) -> Result<(), String> {
    if let Some(o) = server(a)? {
        if a.bench || a.logprobs.is_some() || a.guided || a.adapter.is_some() || a.parent.is_some()
        {
            return Err(
                "with an openai: server, --guided, --adapter, --parent, --bench and --logprobs \
                 do not apply (the server decodes; --grammar guides it)"
                    .into(),
            );
        }
        let prompt = prompt(a, true)?;
        return report(a, Box::new(o), &prompt, None);
    }
    let local = a.model != "tiny";
    if local && a.parent.is_some() {
        return Err(
            "--parent is for the tiny generator; a local model takes its parents in the \
             prompt (--prompt-file, or `archive` in a develop run)"
                .into(),
        );
    }
    let parent = read_parent(a)?;
    let prompt = match &parent {
        Some(p) => p.clone(),
        None => prompt(a, local)?,
    };
    let g: Box<dyn Generator> = if local {
        let settings = LocalSettings {
            guided: a.guided,
            grammar_mask: a.masked(),
            top_p: a.top_p,
            batch_size: a.batch,
            max_new_tokens: a.max_new_tokens,
            ..LocalSettings::default()
        };
        let path = PathBuf::from(a.model.strip_prefix("local:").unwrap_or(&a.model));
        let mut l = LocalGenerator::load(&path, settings)?;
        if let Some(d) = &a.adapter {
            l.load_adapter(d)?;
        }
        if a.print_prompt {
            print!("{}", l.prompt_text(&prompt)?);
            return Ok(());
        }
        if let Some(f) = &a.logprobs {
            return logprobs(f, a.raw, &l);
        }
        if a.bench {
            return bench(a, &l, &prompt);
        }
        Box::new(l)
    } else {
        if a.bench || a.logprobs.is_some() {
            return Err("--bench and --logprobs need a model path".into());
        }
        Box::new(tiny(a, parent.is_some())?)
    };
    report(a, g, &prompt, parent.as_deref())
}

/// Samples `a.n` programs from `g`, prints them (or not, with `--summary`) and the valid
/// rates as one JSON line.
fn report(
    a: &GenerateArgs,
    mut g: Box<dyn Generator>,
    prompt: &str,
    parent: Option<&str>,
) -> Result<(), String> {
    let t0 = Instant::now();
    let replies = g.sample(prompt, a.n, a.temperature, a.seed)?;
    let secs = t0.elapsed().as_secs_f64();
    let probes = crate::develop::candidate::default_probes();
    let parent_hash = parent.and_then(|p| assess(p, 3, &probes).canonical);
    let mut copies = 0;
    let mut counts = [0usize; 4];
    for (i, r) in replies.iter().enumerate() {
        let s = assess(r, 3, &probes);
        if parent_hash.is_some() && s.canonical == parent_hash {
            copies += 1;
        }
        let k = match s.stage {
            Stage::NoProgram => 0,
            Stage::Check => {
                if s.program
                    .as_deref()
                    .is_some_and(|p| crate::syntax::parse_program(p).is_ok())
                {
                    1
                } else {
                    0
                }
            }
            Stage::Instantiate => 2,
            Stage::Valid => 3,
        };
        counts[k] += 1;
        if !(a.summary || a.format == "json") {
            println!("# program {i}: {:?}", s.stage);
            println!("{}", s.program.as_deref().unwrap_or(r.trim()));
            if s.stage != Stage::Valid && !s.diagnostics.is_empty() {
                for l in s.diagnostics.lines().take(6) {
                    println!("#   {l}");
                }
            }
            println!();
        }
    }
    let n = replies.len().max(1) as f64;
    let parsed = counts[1] + counts[2] + counts[3];
    let checked = counts[2] + counts[3];
    println!(
        "{}",
        json!({
            "generator": g.id(),
            "guided": a.guided,
            "grammar_mask": a.masked(),
            "server_grammar": a.model.starts_with("openai").then_some(a.grammar.as_str()),
            "programs": replies.len(),
            "parse_valid": parsed as f64 / n,
            "check_valid": checked as f64 / n,
            "runnable": counts[3] as f64 / n,
            "parent_copies": parent.map(|_| copies as f64 / n),
            "seconds": secs,
            "tokens": g.last_tokens(),
            "tokens_per_s": g.last_tokens().map(|t| t as f64 / secs.max(1e-9)),
            "temperature": a.temperature,
            "seed": a.seed,
        })
    );
    Ok(())
}

/// Tokens per second at each batch size: exactly `new_tokens` per sequence (no end
/// token, no stop), the prompt prefilled once and shared.
fn bench(a: &GenerateArgs, g: &LocalGenerator, prompt: &str) -> Result<(), String> {
    let ids = g.prompt_ids(prompt)?;
    let model = g.snapshot()?;
    let threads = rayon::current_num_threads();
    // Warm-up: a few tokens.
    let warm = SampleOptions {
        temperature: a.temperature,
        top_p: a.top_p,
        max_new_tokens: 4,
        batch_size: 1,
        seed: a.seed,
    };
    sample_shared(&model, &ids, 1, &[], &warm, &|_| false, None)?;
    for b in a.batches.split(',') {
        let b: usize = b
            .trim()
            .parse()
            .map_err(|_| format!("--batches: `{b}` is not a number"))?;
        let opts = SampleOptions {
            max_new_tokens: a.new_tokens,
            batch_size: b,
            ..warm.clone()
        };
        let t0 = Instant::now();
        let (_prefix, _) = model.prefill_prefix(&ids)?;
        let prefill = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let out = sample_shared(&model, &ids, b, &[], &opts, &|_| false, None)?;
        let secs = t0.elapsed().as_secs_f64();
        let tokens: usize = out.iter().map(|c| c.ids.len()).sum();
        println!(
            "{}",
            json!({
                "impl": "mergec",
                "batch": b,
                "new_tokens": a.new_tokens,
                "prompt_tokens": ids.len(),
                "seconds": secs,
                "prefill_seconds": prefill,
                "tokens_per_s": tokens as f64 / secs,
                "decode_tokens_per_s": tokens as f64 / (secs - prefill).max(1e-9),
                "threads": threads,
            })
        );
    }
    Ok(())
}

/// One record of a `--logprobs` file: its prompt and the completions scored, by name.
struct Scored {
    prompt: String,
    completions: Vec<(&'static str, String)>,
}

/// The records of a `--logprobs` file (JSON lines; blank lines skipped).
fn read_scored(file: &std::path::Path) -> Result<Vec<Scored>, String> {
    let text =
        crate::files::read_text(file, "a log-probability file", crate::files::limit::DATASET)?;
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |m: &str| format!("{}:{}: {m}", file.display(), i + 1);
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| at(&e.to_string()))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let prompt = field("prompt").ok_or_else(|| at("no string `prompt`"))?;
        let completions = match (field("completion"), field("chosen"), field("rejected")) {
            (Some(c), None, None) => vec![("logprob", c)],
            (None, Some(c), Some(r)) => vec![("chosen", c), ("rejected", r)],
            _ => {
                return Err(at(
                    "expected a string `completion`, or strings `chosen` and `rejected`",
                ));
            }
        };
        out.push(Scored {
            prompt,
            completions,
        });
    }
    if out.is_empty() {
        return Err(format!("{}: no records", file.display()));
    }
    Ok(out)
}

/// `--logprobs`: one JSON line per record of `file`, records of one prompt scored
/// together (the prompt run once).
fn logprobs(file: &std::path::Path, raw: bool, g: &LocalGenerator) -> Result<(), String> {
    let records = read_scored(file)?;
    let mut lines: Vec<Option<serde_json::Value>> = vec![None; records.len()];
    let mut done = vec![false; records.len()];
    for i in 0..records.len() {
        if done[i] {
            continue;
        }
        let group: Vec<usize> = (i..records.len())
            .filter(|&j| !done[j] && records[j].prompt == records[i].prompt)
            .collect();
        let texts: Vec<&str> = group
            .iter()
            .flat_map(|&j| records[j].completions.iter().map(|(_, c)| c.as_str()))
            .collect();
        let (ids, comps) = g.scored_ids(&records[i].prompt, &texts, raw)?;
        let lps = g.logprobs_ids(&ids, &comps)?;
        let mut k = 0;
        for &j in &group {
            let mut o = serde_json::Map::new();
            o.insert("index".into(), json!(j));
            o.insert("prompt_tokens".into(), json!(ids.len()));
            for (name, _) in &records[j].completions {
                let tokens = match *name {
                    "logprob" => "tokens".to_string(),
                    n => format!("{n}_tokens"),
                };
                o.insert(name.to_string(), json!(lps[k]));
                o.insert(tokens, json!(comps[k].len()));
                k += 1;
            }
            lines[j] = Some(serde_json::Value::Object(o));
            done[j] = true;
        }
    }
    for l in lines.into_iter().flatten() {
        println!("{l}");
    }
    Ok(())
}
