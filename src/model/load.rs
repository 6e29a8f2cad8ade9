//! Loading a model from a Hugging Face directory or a GGUF file.

use super::config::{Family, LlamaConfig};
use super::llama::Llama;
use super::tokenizer::{GgufValue, Tok};
use super::{GenOptions, Result, Role, TextModel};
use crate::runtime::gguf::names as gguf_names;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A model ready to generate: network, tokenizer and a hash of its content.
pub struct LoadedModel {
    pub model: Llama,
    pub tok: Tok,
    pub path: PathBuf,
    hash: String,
}

fn hash_files(files: &[PathBuf], extra: &str) -> Result<String> {
    let mut h = Sha256::new();
    h.update(extra.as_bytes());
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        let (mut r, _) = crate::files::open_regular(f, "a checkpoint file")?;
        loop {
            let n = r
                .read(&mut buf)
                .map_err(|e| format!("{}: {e}", f.display()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(format!("{:x}", h.finalize()))
}

/// The safetensors files of a Hugging Face directory (sharded or not), sorted.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text =
            crate::files::read_text(&index, "a checkpoint index", crate::files::limit::JSON)?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not JSON: {e}", index.display()))?;
        let mut files: Vec<PathBuf> = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| format!("{}: no weight_map", index.display()))?
            .values()
            .filter_map(|f| f.as_str())
            .map(|f| {
                crate::runtime::safetensors::shard_path(dir, f)
                    .map_err(|e| super::ModelError::Format(e.to_string()))
            })
            .collect::<Result<_>>()?;
        files.sort();
        files.dedup();
        return all_regular(files);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(crate::model::ModelError::Format(format!(
            "{}: no .safetensors files (a model directory holds config.json, tokenizer.json \
             and model.safetensors)",
            dir.display()
        )));
    }
    all_regular(files)
}

/// Refuses FIFOs, devices and directories among the weight files before they are mapped.
fn all_regular(files: Vec<PathBuf>) -> Result<Vec<PathBuf>> {
    for f in &files {
        crate::files::open_regular(f, "a safetensors file")?;
    }
    Ok(files)
}

impl LoadedModel {
    /// A Hugging Face directory (config.json, tokenizer.json, *.safetensors) or a
    /// `.gguf` file. Weights are held in f32.
    pub fn load(path: &Path) -> Result<LoadedModel> {
        let meta = crate::files::check_model_path(path, "a model")?;
        if meta.is_dir() {
            Self::load_hf(path)
        } else {
            if path.extension().is_some_and(|e| e == "gguf") {
                Self::load_gguf(path)
            } else {
                Err(crate::model::ModelError::Format(format!(
                    "{}: expected a model directory or a .gguf file",
                    path.display()
                )))
            }
        }
    }

    fn load_hf(dir: &Path) -> Result<LoadedModel> {
        let cfg_path = dir.join("config.json");
        let cfg_text =
            crate::files::read_text(&cfg_path, "config.json", crate::files::limit::JSON)?;
        let cfg =
            LlamaConfig::from_hf_json(&cfg_text).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut eos = cfg.eos_token_ids.clone();
        if let Ok(g) = crate::files::read_text(
            &dir.join("generation_config.json"),
            "generation_config.json",
            crate::files::limit::JSON,
        ) && let Ok(v) = serde_json::from_str::<serde_json::Value>(&g)
        {
            match v.get("eos_token_id") {
                Some(serde_json::Value::Number(n)) => eos.extend(n.as_u64().map(|x| x as u32)),
                Some(serde_json::Value::Array(a)) => {
                    eos.extend(a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32))
                }
                _ => {}
            }
        }
        let tok = Tok::from_hf_dir(dir, &eos)?;
        let files = safetensors_files(dir)?;
        // Safety: the files are mapped read-only; mergec never writes a file it reads.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu) }
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let model = Llama::new(vb, &cfg).map_err(|e| format!("{}: {e}", dir.display()))?;
        let hash = hash_files(&files, &(cfg_text + &tok.fingerprint()))?;
        Ok(LoadedModel {
            model,
            tok,
            path: dir.to_path_buf(),
            hash,
        })
    }

    fn load_gguf(path: &Path) -> Result<LoadedModel> {
        use candle_core::quantized::gguf_file;
        let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let mut f = std::fs::File::open(path).map_err(|e| at(&e))?;
        let content = gguf_file::Content::read(&mut f).map_err(|e| at(&e))?;
        let md: HashMap<String, GgufValue> = content
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), gguf_value(v)))
            .collect();
        let arch = md
            .get("general.architecture")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if arch != "llama" {
            return Err(crate::model::ModelError::Format(at(&format!(
                "GGUF architecture `{arch}` is not supported (llama-family files are)"
            ))));
        }
        let int = |k: &str| {
            md.get(&format!("llama.{k}"))
                .and_then(|v| v.as_int())
                .map(|x| x as usize)
                .ok_or_else(|| at(&format!("GGUF metadata has no llama.{k}")))
        };
        let tok = Tok::from_gguf(&md).map_err(|e| at(&e))?;
        let hidden = int("embedding_length")?;
        let heads = int("attention.head_count")?;
        let kv_heads = int("attention.head_count_kv").unwrap_or(heads);
        let tied = !content.tensor_infos.contains_key("output.weight");
        let cfg = LlamaConfig {
            family: Family::Llama,
            vocab_size: tok.vocab_size(),
            hidden_size: hidden,
            intermediate_size: int("feed_forward_length")?,
            num_hidden_layers: int("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim: int("rope.dimension_count").unwrap_or(hidden / heads),
            rms_norm_eps: md
                .get("llama.attention.layer_norm_rms_epsilon")
                .and_then(|v| v.as_float())
                .unwrap_or(1e-5),
            rope_theta: md
                .get("llama.rope.freq_base")
                .and_then(|v| v.as_float())
                .unwrap_or(10_000.0),
            rope_scaling: None,
            max_position_embeddings: int("context_length").unwrap_or(4096),
            tie_word_embeddings: tied,
            attention_bias: false,
            bos_token_id: md
                .get("tokenizer.ggml.bos_token_id")
                .and_then(|v| v.as_int())
                .map(|x| x as u32),
            eos_token_ids: tok.eos.clone(),
        };
        let dev = Device::Cpu;
        let mut ts = HashMap::new();
        let mut names: Vec<&String> = content.tensor_infos.keys().collect();
        names.sort();
        for name in names {
            let Some(hf) = gguf_names::hf_name(name) else {
                continue;
            };
            let q = content.tensor(&mut f, name, &dev).map_err(|e| at(&e))?;
            let mut t = q.dequantize(&dev).map_err(|e| at(&e))?;
            // llama.cpp stores q/k rows interleaved per head for its rotary layout.
            if let Some(h) = gguf_names::rope_heads(name, heads, kv_heads) {
                t = gguf_names::unpermute_qk(&t, h).map_err(|e| at(&e))?;
            }
            ts.insert(hf, t);
        }
        let vb = VarBuilder::from_tensors(ts, DType::F32, &dev);
        let model = Llama::new(vb, &cfg).map_err(|e| at(&e))?;
        let hash = hash_files(&[path.to_path_buf()], "gguf")?;
        Ok(LoadedModel {
            model,
            tok,
            path: path.to_path_buf(),
            hash,
        })
    }
}

fn gguf_value(v: &candle_core::quantized::gguf_file::Value) -> GgufValue {
    use candle_core::quantized::gguf_file::Value as V;
    match v {
        V::U8(x) => GgufValue::Int(*x as i64),
        V::I8(x) => GgufValue::Int(*x as i64),
        V::U16(x) => GgufValue::Int(*x as i64),
        V::I16(x) => GgufValue::Int(*x as i64),
        V::U32(x) => GgufValue::Int(*x as i64),
        V::I32(x) => GgufValue::Int(*x as i64),
        V::U64(x) => GgufValue::Int(*x as i64),
        V::I64(x) => GgufValue::Int(*x),
        V::F32(x) => GgufValue::Float(*x as f64),
        V::F64(x) => GgufValue::Float(*x),
        V::Bool(b) => GgufValue::Bool(*b),
        V::String(s) => GgufValue::Str(s.clone()),
        V::Array(a) => {
            if a.iter().all(|x| matches!(x, V::String(_))) {
                GgufValue::Strs(
                    a.iter()
                        .filter_map(|x| x.to_string().ok().cloned())
                        .collect(),
                )
            } else if let Some(ints) = a
                .iter()
                .map(|x| x.to_i64().ok().or_else(|| x.to_i32().ok().map(i64::from)))
                .collect::<Option<Vec<i64>>>()
            {
                GgufValue::Ints(ints)
            } else {
                GgufValue::Other
            }
        }
    }
}

impl TextModel for LoadedModel {
    fn generate(
        &mut self,
        prompts: &[String],
        opts: &GenOptions,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<String>> {
        super::generate::generate(&self.model, &self.tok, prompts, opts, progress)
    }

    fn chat_prompt(&self, turns: &[(Role, String)]) -> Option<String> {
        // A template that fails to render is treated as absent (plain prompts).
        self.tok.chat(turns).and_then(|r| r.ok())
    }

    fn content_hash(&self) -> String {
        self.hash.clone()
    }
}
