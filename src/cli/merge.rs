//! `mergec merge`: a program (or a mergekit YAML config) applied to checkpoints.

use crate::config::ConfigJob;
use crate::pipeline::Source;
use crate::runtime::plan::parse_size;
use crate::runtime::safetensors::Dtype;
use crate::runtime::{CANCELLED, FixedParams, MergeJob, OutputFormat, WriteMode};
use crate::types::Const;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// The command line of `mergec merge`.
#[derive(clap::Args, Debug, Clone)]
pub struct MergeArgs {
    /// A .merge file, a stdlib method name (e.g. ties), or a mergekit config (.yml/.yaml).
    pub program: String,
    /// The output directory, as mergekit-yaml takes it (`mergec merge CONFIG OUT`); the
    /// same as --out.
    #[arg(value_name = "OUT")]
    pub out_dir: Option<PathBuf>,
    /// Which merge of the file to use (default: the first).
    #[arg(long)]
    pub merge: Option<String>,
    /// The base (seed) model: a Hugging Face directory, a .safetensors file, or a Hub id
    /// (org/name, org/name@revision) in the local Hugging Face cache.
    #[arg(long)]
    pub base: Option<PathBuf>,
    /// A candidate model (repeat for each, in order): a directory, a file or a cached Hub id.
    #[arg(long = "model")]
    pub models: Vec<PathBuf>,
    /// The output directory (written atomically; or give it after the program).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Parameter override, e.g. --set lambda=0.5 --set weight=[0.3,0.7].
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub sets: Vec<String>,
    /// Output dtype: bf16, f16 or f32 (default: each tensor's dtype in the base).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Merge only tensors whose name matches this regex (the rest are copied from the base), e.g. mlp.
    #[arg(long)]
    pub only: Option<String>,
    /// Seed for random masks (DARE, DELLA, ...).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Largest output shard.
    #[arg(long, default_value = "5GB")]
    pub shard_size: String,
    /// Memory budget for tensors processed at once.
    #[arg(long, default_value = "4GB")]
    pub max_memory: String,
    /// Replace a non-empty --out.
    #[arg(long)]
    pub force: bool,
    /// On a tensor whose shape differs between models: error (default) or base (keep the base's).
    #[arg(long, default_value = "error")]
    pub on_mismatch: String,
    /// Write tensors with NaN or Inf instead of failing.
    #[arg(long)]
    pub allow_nonfinite: bool,
    /// Merge models whose tensors differ from the base's (other layer counts, missing or
    /// extra tensors): the shared ones are merged, the base's others copied. Without it
    /// such inputs are an error naming the first differences.
    #[arg(long, visible_alias = "allow-crimes")]
    pub allow_arch_mismatch: bool,
    /// Copy tokenizer files from this directory instead of the base.
    #[arg(long)]
    pub tokenizer_from: Option<PathBuf>,
    /// No progress bar or summary.
    #[arg(long)]
    pub quiet: bool,
    /// Worker threads, 1 to 1024 (default: all cores).
    #[arg(long, value_parser = parse_threads)]
    pub threads: Option<usize>,
    /// Engine for merged tensors: jit (compiled kernels on the CPU), interp (the
    /// reference interpreter), ref (the kernel reference evaluator), cuda, or emulated
    /// (the GPU path's executor with device memory in host RAM and JIT kernels: for
    /// checking that path without a GPU; slower than jit).
    #[arg(long, default_value = "jit")]
    pub backend: String,
    /// Where to run: cpu, cuda, or auto (with a usable GPU, the faster of the JIT and
    /// CUDA, timed on one tensor of the merge; else the CPU, saying so).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print the summary as JSON on stdout instead of a line on stderr.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
    /// What --out holds: safetensors shards (default), or one model.gguf for llama.cpp
    /// (llama and mistral models with a tokenizer): gguf (each weight in its merged dtype),
    /// gguf:f32, gguf:f16, gguf:bf16 or gguf:q4_k (rows not a multiple of 256 go to q8_0 or
    /// f16). Norms stay f32.
    #[arg(long, default_value = "safetensors", value_name = "FORMAT")]
    pub out_format: String,
    /// How the output is written: direct (to the disk, bypassing the page cache where
    /// the file system allows it: no copy of every byte in the kernel) or buffered
    /// (through the page cache, which then also holds the output for a program that reads
    /// it next). Either way the merge ends with the output on the disk.
    #[arg(long, default_value = "direct", value_parser = ["direct", "buffered"])]
    pub write: String,
    /// With --out-format gguf: keep the safetensors shards next to model.gguf.
    #[arg(long)]
    pub keep_safetensors: bool,
    #[command(flatten)]
    pub mergekit: super::mergekit_flags::MergekitFlags,
}

impl MergeArgs {
    /// The output directory: OUT after the program or --out (one of them, or both equal).
    pub fn out(&self) -> Result<PathBuf, String> {
        match (&self.out_dir, &self.out) {
            (Some(a), Some(b)) if a != b => Err(format!(
                "two output directories: `{}` and --out `{}`; give one",
                a.display(),
                b.display()
            )),
            (Some(a), _) | (None, Some(a)) => Ok(a.clone()),
            (None, None) => {
                Err("give the output directory: `mergec merge PROGRAM OUT ...` or --out OUT".into())
            }
        }
    }

    /// The worker threads: --threads, or mergekit's --num-threads.
    fn threads(&self) -> Option<usize> {
        self.threads.or(self.mergekit.num_threads)
    }
}

/// The backend from --backend and --device.
pub fn choose_backend(
    a: &MergeArgs,
    device: &str,
) -> Result<crate::runtime::compiled::Backend, String> {
    use crate::runtime::compiled::Backend;
    let b = Backend::parse(&a.backend)?;
    match device {
        "cpu" if b == Backend::Cuda => {
            crate::codegen::cuda::probe()
                .map_err(|why| format!("--backend cuda: no usable GPU: {why}"))?;
            Ok(b)
        }
        "cpu" => Ok(b),
        "cuda" => {
            crate::codegen::cuda::probe()
                .map_err(|why| format!("--device cuda: no usable GPU: {why}"))?;
            Ok(Backend::Cuda)
        }
        // With a GPU, the JIT and CUDA race on one tensor and the faster merges.
        "auto" => match crate::codegen::cuda::probe() {
            Ok(_) => Ok(Backend::Fastest(&[Backend::Jit, Backend::Cuda])),
            Err(why) => {
                if !a.quiet {
                    eprintln!("note: no usable GPU ({why}); merging on the CPU");
                }
                Ok(if b == Backend::Cuda { Backend::Jit } else { b })
            }
        },
        other => Err(format!("--device `{other}`: use cpu, cuda or auto")),
    }
}

pub fn is_config(path: &str) -> bool {
    path.ends_with(".yml") || path.ends_with(".yaml")
}

/// The most worker threads `--threads` accepts.
pub const MAX_THREADS: usize = 1024;

pub fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
        _ => Err(format!("give a whole number from 1 to {MAX_THREADS}")),
    }
}

/// Runs `f` on a pool of `threads` workers (the global pool when `None`); a pool that
/// cannot start (threads refused by the system) is an error, not a panic.
pub fn with_threads<T>(
    threads: Option<usize>,
    f: impl FnOnce() -> Result<T, String> + Send,
) -> Result<T, String>
where
    T: Send,
{
    let Some(n) = threads else { return f() };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .map_err(|e| format!("--threads {n}: cannot start the worker threads: {e}"))?;
    pool.install(f)
}

/// A job from a mergekit-style config and the command line's flags.
pub fn job_from_config(a: &MergeArgs) -> Result<MergeJob, String> {
    if a.base.is_some() || !a.models.is_empty() {
        return Err(format!(
            "`{}` already names the models (`base_model`, `models`); drop --base and --model \
             (or edit the config)",
            a.program
        ));
    }
    let options = crate::config::Options {
        merge: a.merge.clone(),
        sets: parse_sets(&a.sets)?,
        dtype: parse_dtype(a.dtype.as_deref())?,
        tokenizer_from: a.tokenizer_from.clone(),
        quiet: a.quiet,
        hub_cache: a.mergekit.transformers_cache.clone(),
    };
    with_flags(a, crate::config::read_config(&a.program, options)?)
}

/// `--set name=value` settings.
fn parse_sets(sets: &[String]) -> Result<Vec<(String, Const)>, String> {
    sets.iter()
        .map(|s| Const::parse_assignment(s).map_err(|e| format!("--set {e}")))
        .collect()
}

/// A job from command-line flags and a program (a .merge file or a stdlib name).
fn job_from_flags(a: &MergeArgs) -> Result<MergeJob, String> {
    let color = crate::diag::use_color();
    let program = Source::load(&a.program).map_err(|e| e.render(color))?;
    let merge_name = program
        .merge_name(a.merge.as_deref())
        .map_err(|e| e.render(color))?;
    let base = a
        .base
        .as_deref()
        .ok_or("--base is required (the seed model: a directory or .safetensors file)")?;
    if a.models.is_empty() {
        return Err("give at least one --model to merge with the base".into());
    }
    let cache = a.mergekit.transformers_cache.as_deref();
    let resolve =
        |p: &std::path::Path| crate::runtime::hub::model_path(&p.to_string_lossy(), cache);
    let base = resolve(base)?;
    let models = a
        .models
        .iter()
        .map(|m| resolve(m))
        .collect::<Result<Vec<_>, _>>()?;
    // The same parts a config decides, from the flags.
    let parts = ConfigJob {
        program,
        merge_name,
        base,
        models,
        params: Box::new(FixedParams(parse_sets(&a.sets)?)),
        dtype: parse_dtype(a.dtype.as_deref())?,
        tokenizer_from: a.tokenizer_from.clone(),
        extra: serde_json::Value::Null,
        layers: None,
    };
    with_flags(a, parts)
}

/// The job of `c` (what to merge), written where and how the flags say: --out, --only,
/// --seed, the sizes, --force, --on-mismatch, --allow-nonfinite, --quiet and the backend.
fn with_flags(a: &MergeArgs, c: ConfigJob) -> Result<MergeJob, String> {
    let mk = a.mergekit.map()?;
    let shard_size = match mk.shard_size {
        Some(s) => s,
        None => parse_size(&a.shard_size).map_err(|e| format!("--shard-size {e}"))?,
    };
    let mut extra = c.extra;
    record_command(&mut extra, a);
    Ok(MergeJob {
        program: c.program,
        merge_name: c.merge_name,
        base: c.base,
        models: c.models,
        params: c.params,
        dtype: c.dtype,
        tokenizer_from: c.tokenizer_from,
        extra,
        layers: c.layers,
        deadline: None,
        out: a.out()?,
        out_format: OutputFormat::parse(&a.out_format, a.keep_safetensors)?,
        only: parse_only(a.only.as_deref())?,
        seed: mk.seed.unwrap_or(a.seed),
        shard_size,
        max_memory: parse_size(&a.max_memory).map_err(|e| format!("--max-memory {e}"))?,
        force: a.force,
        on_mismatch_base: parse_mismatch(&a.on_mismatch)?,
        allow_arch_mismatch: a.allow_arch_mismatch,
        allow_unread_models: false,
        allow_nonfinite: a.allow_nonfinite,
        quiet: a.quiet,
        backend: choose_backend(a, mk.device.unwrap_or(&a.device))?,
        model_card: mk.model_card,
        write_mode: if a.write == "buffered" {
            WriteMode::Buffered
        } else {
            WriteMode::Direct
        },
    })
}

/// Adds the command line (for the model card and mergec.json) to a job's provenance.
fn record_command(extra: &mut serde_json::Value, a: &MergeArgs) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = if args.first().is_some_and(|w| w == "merge") {
        let words: Vec<String> = args
            .iter()
            .map(|w| crate::runtime::child::sh_word(w))
            .collect();
        format!("mergec {}", words.join(" "))
    } else {
        // Called as a library (tests): the program, not a command line.
        format!(
            "mergec merge {} ...",
            crate::runtime::child::sh_word(&a.program)
        )
    };
    if !extra.is_object() {
        *extra = serde_json::json!({});
    }
    if let Some(o) = extra.as_object_mut() {
        o.insert("command".into(), serde_json::Value::String(command));
    }
}

pub fn parse_dtype(s: Option<&str>) -> Result<Option<Dtype>, String> {
    s.map(dtype_flag).transpose()
}

/// A `--dtype` value (bf16, f16, f32 and their other common names).
pub fn dtype_flag(s: &str) -> Result<Dtype, String> {
    Dtype::parse(s).ok_or_else(|| format!("--dtype `{s}`: use bf16, f16 or f32"))
}

pub fn parse_only(s: Option<&str>) -> Result<Option<regex::Regex>, String> {
    s.map(|r| {
        regex::Regex::new(r)
            .map_err(|e| format!("--only `{r}` is not a valid regular expression: {e}"))
    })
    .transpose()
}

fn parse_mismatch(s: &str) -> Result<bool, String> {
    match s {
        "error" => Ok(false),
        "base" => Ok(true),
        other => Err(format!(
            "--on-mismatch `{other}`: use `error` (default) or `base`"
        )),
    }
}

/// The summary of a merge written as GGUF: types, fallbacks and notes.
fn report_gguf(s: &crate::runtime::MergeSummary, g: &crate::runtime::GgufSummary, out: &Path) {
    let types: Vec<String> = g.types.iter().map(|(t, n)| format!("{n} {t}")).collect();
    eprintln!(
        "merged {} tensors, copied {} from the base, into `{}` ({:.1} MB; tensors: {}) in {:.1} s",
        s.merged,
        s.copied,
        out.join(g.file.file_name().unwrap_or_default()).display(),
        g.bytes as f64 / 1e6,
        types.join(", "),
        s.seconds
    );
    if let Some((first, why)) = g.fallbacks.first() {
        eprintln!(
            "note: {} weight{} stored in another type than asked, e.g. `{first}` as {why}",
            g.fallbacks.len(),
            if g.fallbacks.len() == 1 { "" } else { "s" },
        );
    }
    for n in &g.notes {
        eprintln!("note: {n}");
    }
}

/// Runs the command; returns the exit code (130, 143 or 129 when interrupted by
/// Ctrl-C, SIGTERM or SIGHUP).
pub fn run(a: &MergeArgs) -> i32 {
    let out = match a.out() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let nothing = format!("nothing was written to `{}`", out.display());
    super::signals::install(None, nothing.clone());
    let job = if is_config(&a.program) {
        job_from_config(a)
    } else {
        job_from_flags(a)
    };
    let result = job.and_then(|job| with_threads(a.threads(), || Ok(crate::runtime::run(&job)?)));
    match result {
        Ok(s) => {
            for n in &s.notes {
                eprintln!("{n}");
            }
            if a.format == "json" {
                println!("{}", summary_json(&s, &out));
            } else if let (false, Some(g)) = (a.quiet, &s.gguf) {
                report_gguf(&s, g, &out);
            } else if !a.quiet {
                eprintln!(
                    "merged {} tensors, copied {} from the base, into {} shard{} ({:.1} MB) at `{}` in {:.1} s ({})",
                    s.merged,
                    s.copied,
                    s.shards,
                    if s.shards == 1 { "" } else { "s" },
                    s.bytes_written as f64 / 1e6,
                    out.display(),
                    s.seconds,
                    engine_line(&s)
                );
            }
            0
        }
        Err(_) if CANCELLED.load(Ordering::Relaxed) => {
            eprintln!("error: {}; {nothing}", super::signals::interrupted_by());
            super::signals::exit_code()
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            1
        }
    }
}

/// Which engine ran, on how many threads, and how fast the inputs went through it.
fn engine_line(s: &crate::runtime::MergeSummary) -> String {
    let threads = match s.threads {
        1 => "1 thread".to_string(),
        n => format!("{n} threads"),
    };
    let gbps = s.bytes_read as f64 / 1e9 / s.seconds.max(1e-9);
    let mut line = format!(
        "{} on {threads}: read {:.2} GB at {gbps:.2} GB/s",
        s.backend,
        s.bytes_read as f64 / 1e9
    );
    if let Some(t) = &s.transfers {
        let rate = |r: Option<f64>| r.map_or(String::new(), |r| format!(" at {r:.1} GB/s"));
        line += &format!(
            "; to the device {:.2} GB{}, back {:.2} GB{}",
            t.up_bytes as f64 / 1e9,
            rate(t.up_gbs()),
            t.down_bytes as f64 / 1e9,
            rate(t.down_gbs())
        );
    }
    line
}

/// The summary of `--format json`.
fn summary_json(s: &crate::runtime::MergeSummary, out: &std::path::Path) -> serde_json::Value {
    serde_json::json!({
        "out": out.display().to_string(),
        "merged": s.merged,
        "copied": s.copied,
        "shards": s.shards,
        "bytes_written": s.bytes_written,
        "bytes_read": s.bytes_read,
        "seconds": s.seconds,
        "backend": s.backend,
        "threads": s.threads,
        "transfers": s.transfers.map(|t| serde_json::json!({
            "to_device_bytes": t.up_bytes,
            "to_device_gbps": t.up_gbs(),
            "to_host_bytes": t.down_bytes,
            "to_host_gbps": t.down_gbs(),
        })),
        "notes": s.notes,
    })
}
