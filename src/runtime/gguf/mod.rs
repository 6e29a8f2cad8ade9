//! GGUF output: a Hugging Face llama directory (config.json, tokenizer files, safetensors
//! shards) as one `.gguf` file that llama.cpp loads, with the names, q/k row order,
//! metadata and tokenizer keys of llama.cpp's `convert_hf_to_gguf.py`. The file is
//! written by candle's GGUF writer (`gguf_file::write`), k-quants by `QTensor::quantize`.
//!
//! Tensors are read one at a time from the memory-mapped shards and converted; candle's
//! writer takes every tensor at once, so the converted tensors (the size of the output
//! file) are held until the file is written.

pub mod meta;
pub mod names;
pub mod tokenizer;

use super::safetensors::Checkpoint;
use crate::cancel::{Cancel, Stop};
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a directory cannot be written as GGUF. Every cause names the file or tensor.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// A file or key the GGUF file needs is absent (config.json, tokenizer.json, a size).
    #[error("{0}")]
    Missing(String),
    /// The model is not one llama.cpp's llama loader runs (architecture, biases, rope
    /// scaling, tokenizer kind, a tensor it has no name for).
    #[error("{0}")]
    Unsupported(String),
    /// A file does not hold what it should (not JSON, ids past the vocabulary, shapes).
    #[error("{0}")]
    Invalid(String),
    /// A shard cannot be read.
    #[error(transparent)]
    Input(#[from] super::safetensors::Error),
    /// Converting or writing failed.
    #[error("{0}")]
    Write(String),
    /// Interrupted or over the time limit.
    #[error("{0}")]
    Stopped(Stop),
}

impl GgufError {
    /// The same error, saying which file it is about.
    fn at(self, path: &Path) -> GgufError {
        let wrap = |m: String| format!("`{}`: {m}", path.display());
        match self {
            GgufError::Missing(m) => GgufError::Missing(wrap(m)),
            GgufError::Unsupported(m) => GgufError::Unsupported(wrap(m)),
            GgufError::Invalid(m) => GgufError::Invalid(wrap(m)),
            other => other,
        }
    }
}

/// The type of the 2-D weights (1-D tensors, the norms, stay f32 as llama.cpp's converter
/// keeps them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufType {
    /// Each weight in the dtype it has in the safetensors (f32, f16 or bf16): lossless.
    AsStored,
    F32,
    F16,
    Bf16,
    /// 4-bit k-quant; weights whose rows are not a multiple of 256 long fall back to
    /// q8_0 (rows a multiple of 32) or f16.
    Q4K,
}

impl GgufType {
    /// `f32`, `f16`, `bf16` or `q4_k` (None: not one of them).
    pub fn parse(s: &str) -> Option<GgufType> {
        Some(match s.to_ascii_lowercase().as_str() {
            "f32" => GgufType::F32,
            "f16" => GgufType::F16,
            "bf16" => GgufType::Bf16,
            "q4_k" | "q4k" => GgufType::Q4K,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            GgufType::AsStored => "as stored",
            GgufType::F32 => "f32",
            GgufType::F16 => "f16",
            GgufType::Bf16 => "bf16",
            GgufType::Q4K => "q4_k",
        }
    }
}

/// What `mergec merge` writes: safetensors shards (the default), or one `model.gguf`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    #[default]
    Safetensors,
    Gguf {
        ty: GgufType,
        /// Keep the safetensors shards next to model.gguf.
        keep_safetensors: bool,
    },
}

impl OutputFormat {
    /// `safetensors`, `gguf` (weights as stored) or `gguf:TYPE` (f32, f16, bf16, q4_k).
    pub fn parse(s: &str, keep_safetensors: bool) -> Result<OutputFormat, String> {
        let bad = || {
            format!(
                "--out-format `{s}`: use safetensors, gguf (weights as merged), or \
                 gguf:f32, gguf:f16, gguf:bf16, gguf:q4_k"
            )
        };
        let format = match s.split_once(':') {
            None if s == "safetensors" => OutputFormat::Safetensors,
            None if s == "gguf" => OutputFormat::Gguf {
                ty: GgufType::AsStored,
                keep_safetensors,
            },
            Some(("gguf", t)) => OutputFormat::Gguf {
                ty: GgufType::parse(t).ok_or_else(bad)?,
                keep_safetensors,
            },
            _ => return Err(bad()),
        };
        if keep_safetensors && format == OutputFormat::Safetensors {
            return Err("--keep-safetensors goes with --out-format gguf".into());
        }
        Ok(format)
    }

    /// As written in mergec.json.
    pub fn describe(&self) -> String {
        match self {
            OutputFormat::Safetensors => "safetensors".into(),
            OutputFormat::Gguf {
                ty: GgufType::AsStored,
                ..
            } => "gguf".into(),
            OutputFormat::Gguf { ty, .. } => format!("gguf:{}", ty.name()),
        }
    }
}

/// How [`safetensors_dir_to_gguf`] writes.
#[derive(Clone, Debug)]
pub struct GgufOptions {
    pub ty: GgufType,
    /// `general.name`.
    pub name: String,
    pub cancel: Cancel,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct GgufSummary {
    pub file: PathBuf,
    pub bytes: u64,
    /// How many tensors of each GGUF type (`F32`, `Q4K`, ...).
    pub types: BTreeMap<String, usize>,
    /// Weights stored in another type than asked (llama.cpp name, type), with why.
    pub fallbacks: Vec<(String, String)>,
    /// Anything else worth saying (a pre-tokenizer llama.cpp does not name).
    pub notes: Vec<String>,
}

/// Hugging Face tensors llama.cpp does not store (recomputed from config.json).
fn skipped(hf: &str) -> bool {
    hf.ends_with(".rotary_emb.inv_freq")
}

/// Refuses tensor names llama.cpp's llama loader has no slot for.
pub fn check_tensor_names<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), GgufError> {
    let unknown: Vec<&str> = names
        .filter(|n| !skipped(n) && names::gguf_name(n).is_none())
        .collect();
    if let Some(first) = unknown.first() {
        return Err(GgufError::Unsupported(format!(
            "tensor `{first}`{} has no llama.cpp llama name (--out-format gguf writes \
             llama-architecture files)",
            if unknown.len() > 1 {
                format!(" (and {} more)", unknown.len() - 1)
            } else {
                String::new()
            }
        )));
    }
    Ok(())
}

/// Checks, before any work, that a merge whose config.json comes from `config_dir` and
/// tokenizer from `tokenizer_dir`, with tensors `names`, can be written as GGUF.
pub fn check_convertible<'a>(
    config_dir: &Path,
    tokenizer_dir: &Path,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), GgufError> {
    let (config, hp) = meta::read_config(config_dir)?;
    tokenizer::tokenizer_metadata(tokenizer_dir, &config, hp.vocab_size as usize)?;
    check_tensor_names(names)
}

/// Writes the llama model in Hugging Face directory `dir` (config.json, tokenizer.json,
/// safetensors) as the GGUF file `out_file`.
pub fn safetensors_dir_to_gguf(
    dir: &Path,
    out_file: &Path,
    opts: &GgufOptions,
) -> Result<GgufSummary, GgufError> {
    let (config, hp) = meta::read_config(dir)?;
    let tok = tokenizer::tokenizer_metadata(dir, &config, hp.vocab_size as usize)?;
    let ck = Checkpoint::open(dir)?;
    check_tensor_names(ck.names())?;
    let mut order: Vec<(String, String)> = ck
        .names()
        .filter(|n| !skipped(n))
        .filter_map(|n| Some((names::gguf_name(n)?, n.to_string())))
        .collect();
    order.sort_by_key(|(g, _)| tensor_order(g));
    let mut tensors = Vec::with_capacity(order.len());
    let mut fallbacks = vec![];
    for (g, hf) in &order {
        opts.cancel.check().map_err(GgufError::Stopped)?;
        let (q, fallback) = convert_tensor(&ck, hf, g, &hp, opts.ty)?;
        ck.release(hf);
        if let Some(why) = fallback {
            fallbacks.push((g.clone(), why));
        }
        tensors.push((g.clone(), q));
    }
    let mut types = BTreeMap::new();
    for (_, q) in &tensors {
        *types.entry(format!("{:?}", q.dtype())).or_insert(0) += 1;
    }
    let file_type = file_type(&tensors);
    let mut md = meta::hparams_metadata(&hp, &opts.name, file_type);
    md.extend(tok.keys);
    write_file(out_file, &md, &tensors)?;
    let bytes = std::fs::metadata(out_file).map(|m| m.len()).unwrap_or(0);
    Ok(GgufSummary {
        file: out_file.to_path_buf(),
        bytes,
        types,
        fallbacks,
        notes: tok.notes,
    })
}

fn write_file(
    out_file: &Path,
    md: &[(String, gguf_file::Value)],
    tensors: &[(String, QTensor)],
) -> Result<(), GgufError> {
    let io = |e: &dyn std::fmt::Display| {
        GgufError::Write(format!("cannot write `{}`: {e}", out_file.display()))
    };
    let file = std::fs::File::create(out_file).map_err(|e| io(&e))?;
    let mut w = std::io::BufWriter::with_capacity(8 << 20, file);
    let md_refs: Vec<(&str, &gguf_file::Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, q)| (k.as_str(), q)).collect();
    gguf_file::write(&mut w, &md_refs, &t_refs).map_err(|e| io(&e))?;
    let file = w.into_inner().map_err(|e| io(&e))?;
    file.sync_all().map_err(|e| io(&e))
}

/// llama.cpp's order: the embedding, the blocks by number, the final norm, the output.
fn tensor_order(g: &str) -> (u8, usize, String) {
    match g {
        "token_embd.weight" => (0, 0, String::new()),
        "output_norm.weight" => (2, 0, String::new()),
        "output.weight" => (3, 0, String::new()),
        _ => {
            let rest = g.strip_prefix("blk.").unwrap_or(g);
            let (n, part) = rest.split_once('.').unwrap_or(("0", rest));
            (1, n.parse().unwrap_or(0), part.to_string())
        }
    }
}

/// `general.file_type` (llama.cpp's `llama_ftype`) from the 2-D weights' types.
fn file_type(tensors: &[(String, QTensor)]) -> u32 {
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for (_, q) in tensors.iter().filter(|(_, q)| q.shape().rank() == 2) {
        let ft = match q.dtype() {
            GgmlDType::F32 => 0,
            GgmlDType::F16 => 1,
            GgmlDType::BF16 => 32,
            GgmlDType::Q8_0 => 7,
            // MOSTLY_Q4_K_M: llama.cpp's name for files of mostly q4_k.
            _ => 15,
        };
        *counts.entry(ft).or_insert(0) += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(ft, n)| (n, ft == 15))
        .map_or(0, |(ft, _)| ft)
}

/// The GGUF type of one tensor, and why it is not the one asked for (if it is not).
fn choose_type(shape: &[usize], stored: &str, ty: GgufType) -> (GgmlDType, Option<String>) {
    if shape.len() != 2 {
        return (GgmlDType::F32, None);
    }
    let row = shape[1];
    match ty {
        GgufType::F32 => (GgmlDType::F32, None),
        GgufType::F16 => (GgmlDType::F16, None),
        GgufType::Bf16 => (GgmlDType::BF16, None),
        GgufType::AsStored => (
            match stored {
                "F16" => GgmlDType::F16,
                "BF16" => GgmlDType::BF16,
                _ => GgmlDType::F32,
            },
            None,
        ),
        GgufType::Q4K if row.is_multiple_of(256) => (GgmlDType::Q4K, None),
        GgufType::Q4K => {
            let to = if row.is_multiple_of(32) {
                GgmlDType::Q8_0
            } else {
                GgmlDType::F16
            };
            let why = format!("{to:?}: rows of {row} are not a multiple of q4_k's 256");
            (to, Some(why))
        }
    }
}

/// One tensor read from the shards, its q/k rows put in llama.cpp's order, converted.
fn convert_tensor(
    ck: &Checkpoint,
    hf: &str,
    g: &str,
    hp: &meta::LlamaHparams,
    ty: GgufType,
) -> Result<(QTensor, Option<String>), GgufError> {
    let info = ck.info(hf)?;
    if info.shape.is_empty() || info.shape.len() > 2 {
        return Err(GgufError::Invalid(format!(
            "tensor `{hf}` has shape {:?}; llama weights are 1-D or 2-D",
            info.shape
        )));
    }
    let (want, fallback) = choose_type(&info.shape, &info.dtype, ty);
    let t = ck.read_f32(hf)?;
    let fail = |e: candle_core::Error| GgufError::Write(format!("tensor `{hf}`: {e}"));
    let mut x = Tensor::from_vec(t.data, t.shape, &Device::Cpu).map_err(fail)?;
    if let Some(h) = names::rope_heads(g, hp.heads as usize, hp.kv_heads as usize) {
        x = names::permute_qk(&x, h).map_err(fail)?;
    }
    let q = QTensor::quantize(&x, want).map_err(fail)?;
    Ok((q, fallback))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_fall_back_where_rows_do_not_fit_q4_k() {
        assert_eq!(choose_type(&[8], "F16", GgufType::Q4K).0, GgmlDType::F32);
        assert_eq!(
            choose_type(&[8, 512], "F32", GgufType::Q4K),
            (GgmlDType::Q4K, None)
        );
        assert_eq!(
            choose_type(&[8, 576], "F32", GgufType::Q4K).0,
            GgmlDType::Q8_0
        );
        assert_eq!(
            choose_type(&[8, 40], "F32", GgufType::Q4K).0,
            GgmlDType::F16
        );
        assert_eq!(
            choose_type(&[8, 40], "BF16", GgufType::AsStored).0,
            GgmlDType::BF16
        );
        assert_eq!(GgufType::parse("Q4_K"), Some(GgufType::Q4K));
        assert_eq!(GgufType::parse("q8"), None);
        let f = OutputFormat::parse("gguf:q4_k", false).expect("format");
        assert_eq!(f.describe(), "gguf:q4_k");
        assert_eq!(
            OutputFormat::parse("gguf", true).map(|f| f.describe()),
            Ok("gguf".into())
        );
        assert!(OutputFormat::parse("gguf:q8_0", false).is_err());
        assert!(OutputFormat::parse("onnx", false).is_err());
        assert!(OutputFormat::parse("safetensors", true).is_err());
    }

    #[test]
    fn tensors_are_in_llama_cpps_order() {
        let mut v = vec![
            "output.weight",
            "blk.10.attn_q.weight",
            "output_norm.weight",
            "blk.2.attn_q.weight",
            "token_embd.weight",
        ];
        v.sort_by_key(|g| tensor_order(g));
        assert_eq!(
            v,
            [
                "token_embd.weight",
                "blk.2.attn_q.weight",
                "blk.10.attn_q.weight",
                "output_norm.weight",
                "output.weight"
            ]
        );
    }
}
