//! mergekit-yaml's flags on `mergec merge`, so that a mergekit command line works as it is:
//! each is accepted with mergec's meaning (`--cuda` is `--device cuda`, `--out-shard-size`
//! is `--shard-size` in mergekit's units), accepted as what mergec always does
//! (`--lazy-unpickle`: mergec reads safetensors memory-mapped), or refused with one line
//! that says what to use instead.

use std::path::PathBuf;

/// mergekit-yaml's flags (mergekit 0.1.5's `MergeOptions`).
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "mergekit-yaml's flags (accepted with mergec's meaning)")]
pub struct MergekitFlags {
    /// Merge on the GPU: the same as --device cuda.
    #[arg(long)]
    pub cuda: bool,
    /// Merge on the CPU: the same as --device cpu (mergec's default).
    #[arg(long)]
    pub no_cuda: bool,
    /// Read inputs straight to the GPU: the same as --device cuda.
    #[arg(long)]
    pub read_to_gpu: bool,
    /// mergekit's several-GPU merge: mergec uses one GPU per merge, as --device cuda.
    #[arg(long)]
    pub multi_gpu: bool,
    /// mergekit's all-on-GPU mode: the same as --device cuda.
    #[arg(long)]
    pub gpu_rich: bool,
    /// Copy the tokenizer into the output: what mergec always does (--tokenizer-from picks
    /// the directory).
    #[arg(long)]
    pub copy_tokenizer: bool,
    /// Not supported: mergec always copies the tokenizer files (delete them afterwards).
    #[arg(long)]
    pub no_copy_tokenizer: bool,
    /// Largest output shard in mergekit's units: a count of bytes with K, M or B
    /// (thousand, million, billion), e.g. 5B. Overrides --shard-size.
    #[arg(long, value_name = "SIZE")]
    pub out_shard_size: Option<String>,
    /// Load pickled weights lazily: nothing to do, mergec reads safetensors memory-mapped
    /// (pickled .bin checkpoints are not read at all).
    #[arg(long)]
    pub lazy_unpickle: bool,
    /// Save host memory: what mergec always does (one tensor at a time; --max-memory).
    #[arg(long)]
    pub low_cpu_memory: bool,
    /// Copy tensors before writing: nothing to do, mergec's outputs never alias its inputs.
    #[arg(long)]
    pub clone_tensors: bool,
    /// Trust the models' custom code: nothing to do, mergec runs no model code.
    #[arg(long)]
    pub trust_remote_code: bool,
    /// Seed for random masks: the same as --seed.
    #[arg(long, value_name = "N")]
    pub random_seed: Option<u64>,
    /// Worker threads: the same as --threads.
    #[arg(long, value_name = "N")]
    pub num_threads: Option<usize>,
    /// The Hugging Face cache in which Hub ids (org/name, org/name@revision) are looked up
    /// (default: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub).
    #[arg(long, value_name = "DIR")]
    pub transformers_cache: Option<PathBuf>,
    /// Write a model card (README.md): mergec's default.
    #[arg(long)]
    pub write_model_card: bool,
    /// Write no model card (README.md) into the output.
    #[arg(long)]
    pub no_write_model_card: bool,
    /// Write safetensors: what mergec always does.
    #[arg(long)]
    pub safe_serialization: bool,
    /// Not supported: mergec writes safetensors only (pickled .bin files can run code).
    #[arg(long)]
    pub no_safe_serialization: bool,
    /// Not supported: LoRA references (`model+lora`) are not read; merge the adapter into its
    /// model first (PEFT's merge_and_unload).
    #[arg(long, value_name = "DIR")]
    pub lora_merge_cache: Option<PathBuf>,
    /// More output: mergec prints its progress and summary unless --quiet.
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

/// What the mergekit flags change in mergec's own settings.
#[derive(Debug, Default)]
pub struct Mapped {
    /// `Some("cuda")` / `Some("cpu")` from --cuda, --no-cuda and the GPU flags.
    pub device: Option<&'static str>,
    pub shard_size: Option<u64>,
    pub seed: Option<u64>,
    pub threads: Option<usize>,
    pub model_card: bool,
}

impl MergekitFlags {
    /// mergec's settings from these flags, or the one-line error for a flag mergec does
    /// not support.
    pub fn map(&self) -> Result<Mapped, String> {
        let refused = [
            (
                self.no_copy_tokenizer,
                "--no-copy-tokenizer: mergec always copies the tokenizer files; \
                 delete them from the output if unwanted",
            ),
            (
                self.no_safe_serialization,
                "--no-safe-serialization: mergec writes safetensors only",
            ),
            (
                self.lora_merge_cache.is_some(),
                "--lora-merge-cache: LoRA references (`model+lora`) are not supported; merge \
                 the adapter into its model first (PEFT's merge_and_unload)",
            ),
            (self.cuda && self.no_cuda, "--cuda and --no-cuda: give one"),
        ];
        if let Some((_, why)) = refused.iter().find(|(on, _)| *on) {
            return Err(why.to_string());
        }
        let gpu = self.cuda || self.read_to_gpu || self.multi_gpu || self.gpu_rich;
        let device = match (gpu, self.no_cuda) {
            (true, _) => Some("cuda"),
            (false, true) => Some("cpu"),
            _ => None,
        };
        let shard_size = self
            .out_shard_size
            .as_deref()
            .map(parse_kmb)
            .transpose()
            .map_err(|e| format!("--out-shard-size {e}"))?;
        if self.num_threads == Some(0) {
            return Err("--num-threads 0: give a whole number from 1".into());
        }
        Ok(Mapped {
            device,
            shard_size,
            seed: self.random_seed,
            threads: self.num_threads,
            model_card: !self.no_write_model_card,
        })
    }
}

/// mergekit's sizes: a number with an optional K, M or B (thousand, million, billion).
pub fn parse_kmb(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1e3),
        Some('M') => (&t[..t.len() - 1], 1e6),
        Some('B') => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: give a number with K, M or B, e.g. 5B"))?;
    let v = n * mult;
    if !(v >= 1.0 && v.is_finite()) {
        return Err(format!("`{s}` must be at least one byte"));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmb_sizes_as_mergekit_reads_them() {
        assert_eq!(parse_kmb("5B"), Ok(5_000_000_000));
        assert_eq!(parse_kmb("500M"), Ok(500_000_000));
        assert_eq!(parse_kmb("1.5k"), Ok(1500));
        assert_eq!(parse_kmb("100"), Ok(100));
        assert!(parse_kmb("5GB").is_err());
        assert!(parse_kmb("0").is_err());
    }
}
