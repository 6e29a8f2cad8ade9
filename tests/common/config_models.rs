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

/// `mergec merge PROGRAM --out OUT --shard-size 8KB --quiet`, parsed as the command line
/// parses it (so every other flag has its default).
pub fn args(program: &str, out: &Path) -> MergeArgs {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Merge {
        #[command(flatten)]
        args: MergeArgs,
    }
    let out = out.display().to_string();
    Merge::try_parse_from([
        "merge",
        program,
        "--out",
        &out,
        "--shard-size",
        "8KB",
        "--quiet",
    ])
    .expect("the flags parse")
    .args
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
