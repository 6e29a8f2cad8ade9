//! What the `mergec merge` tests share (tests/merge.rs, tests/merge_errors.rs): the test
//! programs, the command line that runs one of them on the test models, and edits of
//! the test models.

#![allow(dead_code)]

use super::ckpt::*;
use mergec::runtime::safetensors::{Dtype, INDEX_FILE, RawTensor, encode_raw};
use std::path::{Path, PathBuf};

/// The programs the tests merge with (not the stdlib's, which evolves on its own).
pub const PROGRAM: &str = "\
merge wavg(base: Tensor, models: [Tensor], weight: [f32] = 1.0, lambda: f32 = 1.0) -> Tensor {
    let tau = models - base
    return base + lambda * sum(weight * tau) / sum(weight)
}
merge dare(base: Tensor, models: [Tensor], density: f32 = 0.5) -> Tensor {
    let tau = models - base
    return base + sum(tau * bernoulli(tau, density)) / density
}
merge rows(base: Tensor, models: [Tensor]) -> Tensor {
    let tau = models - base
    return base + sum(tau - mean(tau, axis=1))
}
merge nan_norms(base: Tensor, models: [Tensor]) -> Tensor {
    let z = base - base
    return if kind == \"norm\" { base + z / z } else { base + sum(models - base) }
}
";

pub const MERGE: &[&str] = &["merge", "algo.merge", "--quiet"];

pub const INPUTS: &[&str] = &["--base", "base", "--model", "m1", "--model", "m2"];

/// `mergec merge algo.merge --quiet --merge NAME --base base --model m1 --model m2 --out OUT EXTRA...`
pub fn merge(zoo: &Zoo, name: &str, out: &str, extra: &[&str]) -> std::process::Output {
    if !zoo.path("algo.merge").exists() {
        zoo.program("algo.merge", PROGRAM);
    }
    let mut args: Vec<&str> = MERGE.to_vec();
    args.extend(["--merge", name]);
    args.extend(INPUTS);
    args.extend(["--out", out]);
    args.extend(extra);
    zoo.mergec(&args)
}

/// Bytes of every weight file and the index of an output, by file name.
pub fn weights(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = weight_files(dir);
    if dir.join(INDEX_FILE).exists() {
        files.push(dir.join(INDEX_FILE));
    }
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// Rewrites m2 (a single F32 file) with `f` applied to its tensors.
pub fn rewrite_m2(zoo: &Zoo, f: impl FnOnce(&mut Vec<RawTensor>)) {
    let mut t = variant(2, Dtype::F32);
    f(&mut t);
    std::fs::write(zoo.path("m2/model.safetensors"), encode_raw(&t)).unwrap();
}

pub const UP1: &str = "model.layers.1.mlp.up_proj.weight";

pub const EMBED: &str = "model.embed_tokens.weight";

/// Sets one weight of UP1 to 70000 in every input: finite in BF16 and F32, past F16's
/// 65504 (m1, F16 otherwise, stores that tensor as F32).
pub fn put_70000(z: &Zoo) {
    let edit = |m: u32, d: Dtype, up: Dtype| -> Vec<RawTensor> {
        variant(m, d)
            .into_iter()
            .map(|t| {
                if t.name != UP1 {
                    return t;
                }
                let mut v = values(UP1, &[24, 16], m);
                v[5] = 70000.0;
                raw(UP1, &[24, 16], &v, up)
            })
            .collect()
    };
    let mut base = edit(0, Dtype::BF16, Dtype::BF16);
    base.insert(10, i64_buffer());
    write_dir(&z.path("base"), &base, BASE_SHARDS);
    write_dir(&z.path("m1"), &edit(1, Dtype::F16, Dtype::F32), 2);
    rewrite_m2(z, |t| *t = edit(2, Dtype::F32, Dtype::F32));
}

/// A merge through the library: merge `name` of `program` (labelled `label`) of `base`
/// and `models` into `out`, at [`mergec::runtime::MergeJob::new`]'s defaults; tests
/// change the fields they are about.
pub fn library_job(
    label: &str,
    program: &str,
    name: &str,
    base: PathBuf,
    models: Vec<PathBuf>,
    out: PathBuf,
) -> mergec::runtime::MergeJob {
    let program = mergec::pipeline::Source::check(label, program).unwrap();
    mergec::runtime::MergeJob::new(program, name, base, models, out)
}
