//! Synthetic checkpoints with real architectures' shapes: a base and fine-tuned
//! variants (base + small seeded deltas), for tests, benchmarks and conformance runs.

use super::safetensors::{Dtype, HeaderEntry, header_bytes};
use crate::semantics::{name_hash, normal_at, stream_key};
use rayon::prelude::*;
use serde_json::json;
use std::io::Write;
use std::path::Path;

/// A llama/mistral-family shape.
#[derive(Clone, Debug)]
pub struct Arch {
    pub vocab: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub layers: usize,
    pub tie_embeddings: bool,
}

impl Arch {
    /// Mistral-7B's shapes with a chosen number of layers.
    pub fn mistral(layers: usize) -> Arch {
        Arch {
            vocab: 32000,
            hidden: 4096,
            intermediate: 14336,
            heads: 32,
            kv_heads: 8,
            layers,
            tie_embeddings: false,
        }
    }
    /// A tiny model for tests (odd sizes on purpose).
    pub fn tiny(layers: usize) -> Arch {
        Arch {
            vocab: 67,
            hidden: 24,
            intermediate: 40,
            heads: 4,
            kv_heads: 2,
            layers,
            tie_embeddings: true,
        }
    }
    pub fn preset(name: &str) -> Option<Arch> {
        let (kind, layers) = name.split_once('-').unwrap_or((name, "2"));
        let layers: usize = layers.trim_end_matches('l').parse().ok()?;
        match kind {
            "mistral" => Some(Arch::mistral(layers)),
            "tiny" => Some(Arch::tiny(layers)),
            _ => None,
        }
    }

    /// Every tensor, in the order Hugging Face writes them, with its shape.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i) = (self.hidden, self.intermediate);
        let kv = h / self.heads * self.kv_heads;
        let mut t = vec![("model.embed_tokens.weight".to_string(), vec![self.vocab, h])];
        for l in 0..self.layers {
            let p = format!("model.layers.{l}");
            for (n, s) in [
                ("input_layernorm.weight", vec![h]),
                ("mlp.down_proj.weight", vec![h, i]),
                ("mlp.gate_proj.weight", vec![i, h]),
                ("mlp.up_proj.weight", vec![i, h]),
                ("post_attention_layernorm.weight", vec![h]),
                ("self_attn.k_proj.weight", vec![kv, h]),
                ("self_attn.o_proj.weight", vec![h, h]),
                ("self_attn.q_proj.weight", vec![h, h]),
                ("self_attn.v_proj.weight", vec![kv, h]),
            ] {
                t.push((format!("{p}.{n}"), s));
            }
        }
        t.push(("model.norm.weight".to_string(), vec![h]));
        if !self.tie_embeddings {
            t.push(("lm_head.weight".to_string(), vec![self.vocab, h]));
        }
        t
    }

    pub fn config_json(&self, dtype: Dtype) -> serde_json::Value {
        json!({
            "architectures": ["MistralForCausalLM"],
            "model_type": "mistral",
            "vocab_size": self.vocab,
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "num_hidden_layers": self.layers,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "hidden_act": "silu",
            "tie_word_embeddings": self.tie_embeddings,
            "torch_dtype": dtype.torch_name(),
            "bos_token_id": 1,
            "eos_token_id": 2,
        })
    }
}

/// The values of one tensor of variant `model` (0 = the base): norms near 1, weights ~N(0, 0.02),
/// variants add a delta of `delta` times the weight scale.
fn values(name: &str, n: usize, seed: u64, model: u32, delta: f32) -> Vec<f32> {
    let norm = name.contains("norm");
    let (center, scale) = if norm { (1.0, 0.05) } else { (0.0, 0.02) };
    let h = name_hash(name);
    let kb = stream_key(seed, h, 0, 0);
    let kd = stream_key(seed, h, model, 1);
    (0..n as u64)
        .into_par_iter()
        .map(|i| {
            let base = center + scale * normal_at(kb, i);
            if model == 0 {
                base
            } else {
                base + delta * scale * normal_at(kd, i)
            }
        })
        .collect()
}

/// Writes variant `model` of `arch` as a model directory: sharded safetensors, index, config.json.
pub fn write_model(
    dir: &Path,
    arch: &Arch,
    dtype: Dtype,
    seed: u64,
    model: u32,
    delta: f32,
    shard_size: u64,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let tensors = arch.tensors();
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut size = 0u64;
    for (i, (_, s)) in tensors.iter().enumerate() {
        let b = (s.iter().product::<usize>() * dtype.size()) as u64;
        if !shards.last().is_some_and(Vec::is_empty) && size + b > shard_size {
            shards.push(Vec::new());
            size = 0;
        }
        size += b;
        shards.last_mut().expect("a shard").push(i);
    }
    let names = super::plan::shard_file_names(shards.len());
    let mut weight_map = serde_json::Map::new();
    for (shard, file) in shards.iter().zip(&names) {
        let entries: Vec<HeaderEntry> = shard
            .iter()
            .map(|&i| HeaderEntry {
                name: &tensors[i].0,
                dtype: dtype.name(),
                shape: &tensors[i].1,
                nbytes: tensors[i].1.iter().product::<usize>() * dtype.size(),
            })
            .collect();
        let path = dir.join(file);
        let io = |e: std::io::Error| format!("cannot write `{}`: {e}", path.display());
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io)?);
        w.write_all(&header_bytes(&entries)).map_err(io)?;
        for &i in shard {
            let (name, shape) = &tensors[i];
            let v = values(name, shape.iter().product(), seed, model, delta);
            w.write_all(&dtype.encode_vec(&v)).map_err(io)?;
            weight_map.insert(name.clone(), json!(file));
        }
        w.flush().map_err(io)?;
    }
    if names.len() > 1 {
        let index = json!({ "metadata": {}, "weight_map": weight_map });
        std::fs::write(dir.join(super::safetensors::INDEX_FILE), index.to_string())
            .map_err(|e| e.to_string())?;
    }
    let config =
        serde_json::to_string_pretty(&arch.config_json(dtype)).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("config.json"), config).map_err(|e| e.to_string())
}
