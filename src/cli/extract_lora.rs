//! `mergec extract-lora`: a fine-tuned model's task vector as a PEFT LoRA adapter
//! (truncated SVD of each projection's difference from the base).

use crate::runtime::CANCELLED;
use crate::runtime::lora::{ExtractJob, ExtractSummary, SvdMethod, extract, median_energy};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

/// The command line of `mergec extract-lora`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExtractLoraArgs {
    /// The base model: a Hugging Face directory or a .safetensors file.
    #[arg(long)]
    pub base: PathBuf,
    /// The fine-tuned model (same architecture as the base).
    #[arg(long)]
    pub model: PathBuf,
    /// The adapter's rank r (at most the smaller side of every projection); lora_alpha
    /// is r, so PEFT's scale alpha/r is 1.
    #[arg(long)]
    pub rank: usize,
    /// The adapter directory to write (atomically): adapter_config.json,
    /// adapter_model.safetensors and mergec.json (per-tensor energies).
    #[arg(long)]
    pub out: PathBuf,
    /// The adapter's dtype: bf16, f16 or f32 (default: the base projections' dtype).
    #[arg(long)]
    pub dtype: Option<String>,
    /// The SVD: auto (exact for small matrices, randomized otherwise), exact (faer's
    /// full thin SVD of every matrix), or randomized (range finder with 10 extra
    /// columns and 2 power iterations, fixed seed).
    #[arg(long, default_value = "auto", value_parser = ["auto", "exact", "randomized"])]
    pub svd: String,
    /// Replace a non-empty --out.
    #[arg(long)]
    pub force: bool,
    /// Output format of the per-tensor table on stdout: text, or json (one array).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
    /// Worker threads, 1 to 1024 (default: all cores); the adapter is the same for any
    /// number.
    #[arg(long, value_parser = super::merge::parse_threads)]
    pub threads: Option<usize>,
    /// No table, notes or summary (errors only).
    #[arg(long)]
    pub quiet: bool,
}

fn job(a: &ExtractLoraArgs) -> Result<ExtractJob, String> {
    Ok(ExtractJob {
        base: a.base.clone(),
        model: a.model.clone(),
        out: a.out.clone(),
        rank: a.rank,
        dtype: super::merge::parse_dtype(a.dtype.as_deref())?,
        svd: SvdMethod::parse(&a.svd).ok_or_else(|| format!("--svd `{}`", a.svd))?,
        force: a.force,
    })
}

/// Runs the command; returns the exit code (130, 143 or 129 when interrupted).
pub fn run(a: &ExtractLoraArgs) -> i32 {
    let nothing = format!("nothing was written to `{}`", a.out.display());
    super::signals::install(None, nothing.clone());
    let result = job(a).and_then(|j| super::merge::with_threads(a.threads, || Ok(extract(&j)?)));
    match result {
        Ok(s) => {
            if !a.quiet {
                report(a, &s);
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

/// The table on stdout (text or JSON), the notes and the summary on stderr.
fn report(a: &ExtractLoraArgs, s: &ExtractSummary) {
    if a.format == "json" {
        match serde_json::to_string_pretty(&s.tensors) {
            Ok(t) => println!("{t}"),
            Err(e) => eprintln!("warning: cannot print the table: {e}"),
        }
    } else {
        println!("{:>10}  {:>10}  tensor", "energy", "norm");
        for t in &s.tensors {
            let note = if t.unchanged { "  (unchanged)" } else { "" };
            println!("{:>10.6}  {:>10.4e}  {}{note}", t.energy, t.norm, t.tensor);
        }
    }
    if !s.unchanged_modules.is_empty() {
        eprintln!(
            "note: {} equal the base in every layer: left out of target_modules",
            s.unchanged_modules.join(", ")
        );
    }
    if !s.skipped.is_empty() {
        eprintln!("note: {}", skipped_note(&s.skipped));
    }
    let changed: Vec<_> = s.tensors.iter().filter(|t| !t.unchanged).collect();
    let min = changed
        .iter()
        .min_by(|x, y| x.energy.total_cmp(&y.energy))
        .map(|t| format!("{:.4} ({})", t.energy, t.tensor))
        .unwrap_or_else(|| "-".into());
    eprintln!(
        "extracted a rank-{} LoRA of {} tensors ({}; {} unchanged) into `{}` ({}, {}) \
         in {:.1} s; energy kept: min {min}, median {:.4}",
        a.rank,
        s.tensors.len(),
        s.targets.join(", "),
        s.tensors.len() - changed.len(),
        a.out.display(),
        s.dtype.name(),
        size(s.bytes_written),
        s.seconds,
        median_energy(&s.tensors),
    );
}

/// Bytes as kB below a megabyte, else MB.
fn size(bytes: u64) -> String {
    if bytes < 1_000_000 {
        format!("{:.1} kB", bytes as f64 / 1e3)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

/// "3 other tensors differ and are not in the adapter (embedding: 1, norm: 2): `a`, ..."
fn skipped_note(skipped: &[crate::runtime::lora::Skipped]) -> String {
    let mut kinds: Vec<(&str, usize)> = vec![];
    for s in skipped {
        match kinds.iter_mut().find(|(k, _)| *k == s.kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((s.kind, 1)),
        }
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    let names: Vec<String> = skipped
        .iter()
        .take(4)
        .map(|s| format!("`{}`", s.name))
        .collect();
    let more = if skipped.len() > 4 { ", ..." } else { "" };
    format!(
        "{} other tensor{} differ{} from the base but LoRA covers only the projections, so \
         the adapter leaves {} out ({}): {}{more}",
        skipped.len(),
        if skipped.len() == 1 { "" } else { "s" },
        if skipped.len() == 1 { "s" } else { "" },
        if skipped.len() == 1 { "it" } else { "them" },
        kinds.join(", "),
        names.join(", ")
    )
}
