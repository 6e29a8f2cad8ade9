//! The llama-family architecture, as in a Hugging Face `config.json`.

use super::Result;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Which Hugging Face family a directory came from; all three share one network here
/// (mistral's sliding window is wider than any prompt we score; qwen2 adds q/k/v biases).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Llama,
    Mistral,
    Qwen2,
}

/// Llama 3 style RoPE frequency scaling (`rope_scaling.rope_type = "llama3"`).
#[derive(Clone, Debug, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3Scaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Biases on the q/k/v projections (qwen2; llama's `attention_bias`).
    pub attention_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

fn get_usize(v: &Value, key: &str) -> Result<usize> {
    v.get(key)
        .and_then(Value::as_u64)
        .map(|x| x as usize)
        .ok_or_else(|| {
            let why = format!("config.json: missing or non-integer `{key}`");
            crate::model::ModelError::Format(why)
        })
}

fn token_ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect(),
        _ => vec![],
    }
}

impl LlamaConfig {
    /// Reads a Hugging Face `config.json` of model_type llama, mistral or qwen2.
    pub fn from_hf_json(text: &str) -> Result<LlamaConfig> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| format!("config.json is not JSON: {e}"))?;
        let model_type = v
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("llama");
        let family = match model_type {
            "llama" => Family::Llama,
            "mistral" => Family::Mistral,
            "qwen2" => Family::Qwen2,
            other => {
                return Err(crate::model::ModelError::Format(format!(
                    "config.json: model_type `{other}` is not supported (llama, mistral and qwen2 are)"
                )));
            }
        };
        let hidden_size = get_usize(&v, "hidden_size")?;
        let num_attention_heads = get_usize(&v, "num_attention_heads")?;
        let num_key_value_heads = match v.get("num_key_value_heads") {
            Some(Value::Null) | None => num_attention_heads,
            Some(_) => get_usize(&v, "num_key_value_heads")?,
        };
        let head_dim = match v.get("head_dim") {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(0) as usize,
            _ => hidden_size / num_attention_heads.max(1),
        };
        if num_attention_heads == 0
            || num_key_value_heads == 0
            || num_attention_heads % num_key_value_heads != 0
            || head_dim == 0
            || head_dim % 2 != 0
        {
            return Err(crate::model::ModelError::Format(format!(
                "config.json: inconsistent attention shape ({num_attention_heads} heads, \
                 {num_key_value_heads} key/value heads, head_dim {head_dim})"
            )));
        }
        let rope_scaling = match v.get("rope_scaling") {
            None | Some(Value::Null) => None,
            Some(s) => {
                let kind = s
                    .get("rope_type")
                    .or_else(|| s.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                match kind {
                    "default" => None,
                    "llama3" => {
                        let f = |k: &str| s.get(k).and_then(Value::as_f64);
                        Some(Llama3Scaling {
                            factor: f("factor").unwrap_or(8.0),
                            low_freq_factor: f("low_freq_factor").unwrap_or(1.0),
                            high_freq_factor: f("high_freq_factor").unwrap_or(4.0),
                            original_max_position_embeddings: s
                                .get("original_max_position_embeddings")
                                .and_then(Value::as_u64)
                                .unwrap_or(8192)
                                as usize,
                        })
                    }
                    other => {
                        return Err(crate::model::ModelError::Format(format!(
                            "config.json: rope_scaling type `{other}` is not supported (llama3 is)"
                        )));
                    }
                }
            }
        };
        Ok(LlamaConfig {
            family,
            vocab_size: get_usize(&v, "vocab_size")?,
            hidden_size,
            intermediate_size: get_usize(&v, "intermediate_size")?,
            num_hidden_layers: get_usize(&v, "num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: v
                .get("rms_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6),
            rope_theta: v
                .get("rope_theta")
                .and_then(Value::as_f64)
                .unwrap_or(10_000.0),
            rope_scaling,
            max_position_embeddings: v
                .get("max_position_embeddings")
                .and_then(Value::as_u64)
                .unwrap_or(4096) as usize,
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            attention_bias: family == Family::Qwen2
                || v.get("attention_bias")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            bos_token_id: token_ids(v.get("bos_token_id")).first().copied(),
            eos_token_ids: token_ids(v.get("eos_token_id")),
        })
    }

    /// A `config.json` that Hugging Face transformers (and [`from_hf_json`]) reads back.
    ///
    /// [`from_hf_json`]: LlamaConfig::from_hf_json
    pub fn to_hf_json(&self) -> String {
        let (arch, model_type) = match self.family {
            Family::Llama => ("LlamaForCausalLM", "llama"),
            Family::Mistral => ("MistralForCausalLM", "mistral"),
            Family::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
        };
        let mut v = json!({
            "architectures": [arch],
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "torch_dtype": "float32",
        });
        if let Some(b) = self.bos_token_id {
            v["bos_token_id"] = json!(b);
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [e] => v["eos_token_id"] = json!(e),
            many => v["eos_token_id"] = json!(many),
        }
        if let Some(s) = &self.rope_scaling {
            v["rope_scaling"] = json!({
                "rope_type": "llama3",
                "factor": s.factor,
                "low_freq_factor": s.low_freq_factor,
                "high_freq_factor": s.high_freq_factor,
                "original_max_position_embeddings": s.original_max_position_embeddings,
            });
        }
        serde_json::to_string_pretty(&v).expect("config serializes")
    }

    /// The inverse frequencies of the rotary embedding, one per pair of head dims.
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let d = self.head_dim;
        (0..d / 2)
            .map(|i| {
                let f = 1.0 / self.rope_theta.powf(2.0 * i as f64 / d as f64);
                let f = match &self.rope_scaling {
                    None => f,
                    Some(s) => {
                        let old = s.original_max_position_embeddings as f64;
                        let low_wavelen = old / s.low_freq_factor;
                        let high_wavelen = old / s.high_freq_factor;
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / s.factor
                        } else {
                            let smooth = (old / wavelen - s.low_freq_factor)
                                / (s.high_freq_factor - s.low_freq_factor);
                            (1.0 - smooth) * f / s.factor + smooth * f
                        }
                    }
                };
                f as f32
            })
            .collect()
    }
}

/// The shape of a small llama-family network trained here (the tiny generator, the
/// zoo's models): what its [`LlamaConfig`] needs besides the vocabulary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
    /// Longest sequence, special tokens included.
    pub max_positions: usize,
}

impl ModelSpec {
    /// An error unless every reduction of training keeps the same bits on every machine
    /// (widths at most 512: see `model::repro`) and the heads divide evenly.
    pub fn check(&self, vocab_size: usize) -> Result<()> {
        use super::repro::check_depth;
        check_depth("model.hidden", self.hidden)?;
        check_depth("model.intermediate", self.intermediate)?;
        check_depth("the vocabulary", vocab_size)?;
        if self.heads == 0 || self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return Err(crate::model::ModelError::Format(format!(
                "model.heads {} must be a positive multiple of model.kv_heads {}",
                self.heads, self.kv_heads
            )));
        }
        if !self.hidden.is_multiple_of(2 * self.heads) {
            return Err(crate::model::ModelError::Format(format!(
                "model.hidden {} must be a multiple of twice model.heads {} (even head size)",
                self.hidden, self.heads
            )));
        }
        Ok(())
    }

    /// The network's configuration for a vocabulary: tied embeddings, no biases.
    pub fn llama(&self, vocab_size: usize, bos: u32, eos: u32) -> LlamaConfig {
        LlamaConfig {
            family: Family::Llama,
            vocab_size,
            hidden_size: self.hidden,
            intermediate_size: self.intermediate,
            num_hidden_layers: self.layers,
            num_attention_heads: self.heads,
            num_key_value_heads: self.kv_heads,
            head_dim: self.hidden / self.heads.max(1),
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: self.max_positions,
            tie_word_embeddings: true,
            attention_bias: false,
            bos_token_id: Some(bos),
            eos_token_ids: vec![eos],
        }
    }
}
