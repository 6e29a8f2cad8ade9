//! `mergec synth`: synthetic checkpoints with real shapes (tests, benchmarks, conformance).

use crate::runtime::plan::parse_size;
use crate::runtime::safetensors::Dtype;
use crate::runtime::synth::{Arch, write_model};
use std::path::Path;

pub fn run(
    arch: &str,
    models: usize,
    out: &Path,
    dtype: &str,
    seed: u64,
    (delta, shard_size): (f32, &str),
    force: bool,
) -> i32 {
    let result = (|| -> Result<(), String> {
        refuse_non_empty(out, force)?;
        let a = Arch::preset(arch)
            .ok_or_else(|| format!("--arch `{arch}`: use mistral-N or tiny-N (N layers)"))?;
        let d = Dtype::parse(dtype)
            .ok_or_else(|| format!("--dtype `{dtype}`: use bf16, f16 or f32"))?;
        let shard = parse_size(shard_size)?;
        write_model(&out.join("base"), &a, d, seed, 0, delta, shard)?;
        for m in 1..=models {
            write_model(
                &out.join(format!("model-{m}")),
                &a,
                d,
                seed,
                m as u32,
                delta,
                shard,
            )?;
        }
        println!(
            "wrote {}/base and {models} variants ({} tensors each)",
            out.display(),
            a.tensors().len()
        );
        Ok(())
    })();
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// A non-empty `out` is someone's files: written into only with --force.
fn refuse_non_empty(out: &Path, force: bool) -> Result<(), String> {
    if force {
        return Ok(());
    }
    match std::fs::read_dir(out) {
        Ok(d) => match d.into_iter().next() {
            Some(_) => Err(format!(
                "--out `{}` is not empty: pass --force to write base/ and model-N/ into it",
                out.display()
            )),
            None => Ok(()),
        },
        Err(e) if e.kind() != std::io::ErrorKind::NotFound && out.exists() => {
            Err(format!("--out `{}`: {e}", out.display()))
        }
        Err(_) => Ok(()),
    }
}
