//! The llama architecture's GGUF metadata from a Hugging Face `config.json`, as
//! llama.cpp's `convert_hf_to_gguf.py` writes it.

use super::GgufError;
use candle_core::quantized::gguf_file::Value;
use serde_json::Value as Json;
use std::path::Path;

/// The `architectures` (or `model_type`) values written as GGUF architecture `llama`.
const LLAMA_CLASSES: &[&str] = &["LlamaForCausalLM", "MistralForCausalLM"];
const LLAMA_TYPES: &[&str] = &["llama", "mistral"];

/// What llama.cpp needs to know about a llama-architecture model.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaHparams {
    pub context_length: u32,
    pub hidden: u32,
    pub layers: u32,
    pub feed_forward: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub rope_theta: f32,
    pub rms_eps: f32,
    pub vocab_size: u32,
    /// `rope_scaling` of type `linear`: its factor.
    pub linear_rope_factor: Option<f32>,
}

/// Reads and checks `dir/config.json`.
pub fn read_config(dir: &Path) -> Result<(Json, LlamaHparams), GgufError> {
    let path = dir.join("config.json");
    if !path.is_file() {
        return Err(GgufError::Missing(format!(
            "`{}` is missing: a GGUF file needs the model's config.json (the base model must \
             be a Hugging Face directory)",
            path.display()
        )));
    }
    let text = crate::files::read_text(&path, "config.json", crate::files::limit::JSON)
        .map_err(|e| GgufError::Invalid(e.to_string()))?;
    let v: Json = serde_json::from_str(&text)
        .map_err(|e| GgufError::Invalid(format!("`{}`: not JSON: {e}", path.display())))?;
    let hp = llama_hparams(&v).map_err(|e| e.at(&path))?;
    Ok((v, hp))
}

/// The hyperparameters of a llama or mistral `config.json`; any other architecture,
/// or a llama variant llama.cpp's llama loader does not run, is refused.
pub fn llama_hparams(v: &Json) -> Result<LlamaHparams, GgufError> {
    let class = v
        .get("architectures")
        .and_then(Json::as_array)
        .and_then(|a| a.first())
        .and_then(Json::as_str);
    let model_type = v.get("model_type").and_then(Json::as_str);
    let is_llama = match class {
        Some(c) => LLAMA_CLASSES.contains(&c),
        None => model_type.is_some_and(|t| LLAMA_TYPES.contains(&t)),
    };
    if !is_llama {
        let what = class
            .or(model_type)
            .unwrap_or("(no `architectures` or `model_type`)");
        return Err(GgufError::Unsupported(format!(
            "architecture `{what}`: --out-format gguf writes the llama architecture \
             ({})",
            LLAMA_CLASSES.join(", ")
        )));
    }
    for flag in ["attention_bias", "mlp_bias"] {
        if v.get(flag).and_then(Json::as_bool) == Some(true) {
            return Err(GgufError::Unsupported(format!(
                "`{flag}: true`: llama.cpp's llama files have no bias tensors"
            )));
        }
    }
    let int = |k: &str| -> Result<u32, GgufError> {
        v.get(k)
            .and_then(Json::as_u64)
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| GgufError::Missing(format!("no whole-number `{k}`")))
    };
    let float = |k: &str, default: f64| v.get(k).and_then(Json::as_f64).unwrap_or(default) as f32;
    let hidden = int("hidden_size")?;
    let heads = int("num_attention_heads")?;
    if heads == 0 || hidden % heads != 0 {
        return Err(GgufError::Invalid(format!(
            "hidden_size {hidden} does not split into {heads} attention heads"
        )));
    }
    Ok(LlamaHparams {
        context_length: int("max_position_embeddings").unwrap_or(2048),
        hidden,
        layers: int("num_hidden_layers")?,
        feed_forward: int("intermediate_size")?,
        heads,
        kv_heads: int("num_key_value_heads").unwrap_or(heads),
        head_dim: int("head_dim").unwrap_or(hidden / heads),
        rope_theta: float("rope_theta", 10_000.0),
        rms_eps: float("rms_norm_eps", 1e-6),
        vocab_size: int("vocab_size")?,
        linear_rope_factor: rope_scaling(v.get("rope_scaling"))?,
    })
}

/// `rope_scaling`: none, `default`, or `linear` (its factor); others need tensors or
/// keys this writer does not make.
fn rope_scaling(v: Option<&Json>) -> Result<Option<f32>, GgufError> {
    let Some(o) = v.and_then(Json::as_object) else {
        return Ok(None);
    };
    let kind = o
        .get("rope_type")
        .or_else(|| o.get("type"))
        .and_then(Json::as_str)
        .unwrap_or("default");
    match kind {
        "default" => Ok(None),
        "linear" => Ok(o.get("factor").and_then(Json::as_f64).map(|f| f as f32)),
        other => Err(GgufError::Unsupported(format!(
            "rope_scaling `{other}` (only none and `linear` are written to GGUF)"
        ))),
    }
}

/// The `general.*` and `llama.*` keys.
pub fn hparams_metadata(h: &LlamaHparams, name: &str, file_type: u32) -> Vec<(String, Value)> {
    let mut md = vec![
        ("general.architecture", Value::String("llama".into())),
        ("general.type", Value::String("model".into())),
        ("general.name", Value::String(name.into())),
        ("llama.context_length", Value::U32(h.context_length)),
        ("llama.embedding_length", Value::U32(h.hidden)),
        ("llama.block_count", Value::U32(h.layers)),
        ("llama.feed_forward_length", Value::U32(h.feed_forward)),
        ("llama.attention.head_count", Value::U32(h.heads)),
        ("llama.attention.head_count_kv", Value::U32(h.kv_heads)),
        ("llama.rope.freq_base", Value::F32(h.rope_theta)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(h.rms_eps),
        ),
        ("general.file_type", Value::U32(file_type)),
        ("llama.vocab_size", Value::U32(h.vocab_size)),
        ("llama.rope.dimension_count", Value::U32(h.head_dim)),
    ];
    if h.head_dim != h.hidden / h.heads {
        md.push(("llama.attention.key_length", Value::U32(h.head_dim)));
        md.push(("llama.attention.value_length", Value::U32(h.head_dim)));
    }
    if let Some(f) = h.linear_rope_factor {
        md.push(("llama.rope.scaling.type", Value::String("linear".into())));
        md.push(("llama.rope.scaling.factor", Value::F32(f)));
    }
    md.push(("general.quantization_version", Value::U32(2)));
    md.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn llama() -> Json {
        json!({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
               "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
               "intermediate_size": 128, "vocab_size": 50, "rope_theta": 100000.0,
               "rms_norm_eps": 1e-5, "max_position_embeddings": 512})
    }

    #[test]
    fn a_llama_config_gives_its_hyperparameters() {
        let h = llama_hparams(&llama()).expect("llama");
        assert_eq!((h.hidden, h.heads, h.kv_heads, h.head_dim), (64, 4, 2, 16));
        assert_eq!((h.rope_theta, h.context_length), (100000.0, 512));
        let md = hparams_metadata(&h, "m", 1);
        assert!(md.iter().any(|(k, _)| k == "llama.rope.dimension_count"));
        assert!(!md.iter().any(|(k, _)| k == "llama.attention.key_length"));
    }

    #[test]
    fn other_architectures_and_variants_are_refused_by_name() {
        let mut q = llama();
        q["architectures"] = json!(["Qwen2ForCausalLM"]);
        let e = llama_hparams(&q).expect_err("qwen2").to_string();
        assert!(e.contains("Qwen2ForCausalLM"), "{e}");
        let mut r = llama();
        r["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0});
        let e = llama_hparams(&r).expect_err("llama3 rope").to_string();
        assert!(e.contains("llama3"), "{e}");
        let mut m = llama();
        if let Some(o) = m.as_object_mut() {
            o.remove("intermediate_size");
        }
        let e = llama_hparams(&m).expect_err("missing").to_string();
        assert!(e.contains("intermediate_size"), "{e}");
    }
}
