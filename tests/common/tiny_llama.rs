//! Tiny llama models in Hugging Face format with a character tokenizer, for tests of
//! loading, scoring and the self-develop loop.

#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use mergec::model::config::{Family, LlamaConfig};
use mergec::model::llama::Llama;
use std::path::Path;

pub const CHARS: &str = "0123456789 +-*/=#?.:abcdefghijklmnopqrstuvwxyzQA\n";

/// A character-level tokenizer.json over `chars` (ids 0..3 are <pad>, <s>, </s>).
pub fn char_tokenizer_json(chars: &str) -> String {
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["<pad>", "<s>", "</s>"].iter().enumerate() {
        vocab.insert(t.to_string(), serde_json::json!(i));
    }
    for c in chars.chars() {
        let n = vocab.len();
        vocab.insert(c.to_string(), serde_json::json!(n));
    }
    let added: Vec<serde_json::Value> = ["<pad>", "<s>", "</s>"]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            serde_json::json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": []}
    })
    .to_string()
}

/// A tiny llama-family architecture (2 layers, grouped-query attention, tied embeddings).
pub fn tiny_config() -> LlamaConfig {
    LlamaConfig {
        family: Family::Llama,
        vocab_size: 40,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 8,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: None,
        max_position_embeddings: 128,
        tie_word_embeddings: true,
        attention_bias: false,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
    }
}

/// Writes a random tiny llama (weights ~ N(0, `scale`), seeded) with a character
/// tokenizer to `dir`.
pub fn write_tiny_model(dir: &Path, seed: u64, scale: f32) {
    write_char_model(dir, seed, scale, CHARS);
}

/// [`write_tiny_model`] over the characters `chars`.
pub fn write_char_model(dir: &Path, seed: u64, scale: f32, chars: &str) {
    write_char_model_with(dir, seed, scale, chars, tiny_config());
}

/// [`write_char_model`] with the architecture `arch` (its vocabulary size follows `chars`).
pub fn write_char_model_with(dir: &Path, seed: u64, scale: f32, chars: &str, arch: LlamaConfig) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = LlamaConfig {
        vocab_size: 3 + chars.chars().count(),
        max_position_embeddings: 512,
        ..arch
    };
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    Llama::new(vb, &cfg).unwrap();
    let mut vars: Vec<_> = vm
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (_, v)) in vars.iter().enumerate() {
        // Deterministic values from the seed and the tensor's position.
        let n = v.elem_count();
        let vals: Vec<f32> = (0..n)
            .map(|j| {
                let x = mergec::semantics::mix64(seed ^ ((i as u64) << 32) ^ j as u64);
                ((x >> 11) as f32 / (1u64 << 53) as f32 - 0.5) * 2.0 * scale
            })
            .collect();
        v.set(&Tensor::from_vec(vals, v.shape(), &dev).unwrap())
            .unwrap();
    }
    vm.save(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("config.json"), cfg.to_hf_json()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), char_tokenizer_json(chars)).unwrap();
}
