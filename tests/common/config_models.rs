//! What the config tests share (tests/config.rs, tests/config_errors.rs): synthetic
//! models in a temporary directory, configs written beside them, and running a config
//! through the library as the command line does.

#![allow(dead_code)]

use mergec::cli::merge::{MergeArgs, job_from_config};
use mergec::runtime::safetensors::{Checkpoint, Dtype};
use mergec::runtime::synth::{Arch, write_model};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A base and `n` variants in a temporary directory.
pub struct Models {
    pub dir: TempDir,
    pub base: PathBuf,
    pub models: Vec<PathBuf>,
}

impl Models {
    pub fn new(arch: &Arch, dtype: Dtype, n: usize, shard_size: u64) -> Models {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("base");
        write_model(&base, arch, dtype, 3, 0, 0.3, shard_size).expect("base");
        let models = (1..=n)
            .map(|m| {
                let p = dir.path().join(format!("model-{m}"));
                write_model(&p, arch, dtype, 3, m as u32, 0.3, shard_size).expect("model");
                p
            })
            .collect();
        Models { dir, base, models }
    }

    /// Bf16, two layers, several input shards.
    pub fn bf16() -> Models {
        Models::new(&Arch::tiny(2), Dtype::BF16, 3, 6_000)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces {base}, {m1}, {m2}, {m3} in a config.
    pub fn fill(&self, yaml: &str) -> String {
        let mut s = yaml.replace("{base}", &self.base.display().to_string());
        for (i, m) in self.models.iter().enumerate() {
            s = s.replace(&format!("{{m{}}}", i + 1), &m.display().to_string());
        }
        s
    }

    /// Writes a config (placeholders filled) and returns its path.
    pub fn write_config(&self, name: &str, yaml: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, self.fill(yaml)).expect("write config");
        p
    }
}

pub fn args(program: &str, out: &Path) -> MergeArgs {
    MergeArgs {
        program: program.to_string(),
        merge: None,
        base: None,
        models: Vec::new(),
        out: out.to_path_buf(),
        sets: Vec::new(),
        dtype: None,
        only: None,
        seed: 0,
        shard_size: "8KB".into(),
        max_memory: "4GB".into(),
        force: false,
        on_mismatch: "error".into(),
        allow_nonfinite: false,
        tokenizer_from: None,
        quiet: true,
        threads: None,
        backend: "jit".into(),
        device: "cpu".into(),
        out_format: "safetensors".into(),
        keep_safetensors: false,
    }
}

/// Runs a config through the library; errors as the CLI would print them.
pub fn run_config(
    config: &Path,
    out: &Path,
    tweak: impl FnOnce(&mut MergeArgs),
) -> Result<(), String> {
    let mut a = args(&config.display().to_string(), out);
    tweak(&mut a);
    let job = job_from_config(&a)?;
    mergec::runtime::run(&job).map(|_| ()).map_err(String::from)
}

/// Reads a tensor of an f32 checkpoint.
pub fn read(dir: &Path, name: &str) -> Vec<f32> {
    Checkpoint::open(dir)
        .expect("open")
        .read_f32(name)
        .expect("read")
        .data
}
