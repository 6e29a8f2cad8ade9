//! LoRA adapters in PEFT's layout on disk: `adapter_config.json` (what [`LoraSpec`] says:
//! rank, alpha, target modules) and `adapter_model.safetensors` (tensors named
//! `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`). The same files are
//! written by mergec's `local:` generator, by PEFT's `save_pretrained` (TRL's
//! `DPOTrainer`, `scripts/dpo_train.py`) and read by vLLM's LoRA serving.

use super::llama::LoraSpec;
use super::{ModelError, Result};
use serde_json::Value;
use std::path::Path;

/// The adapter's settings file in a PEFT adapter directory.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The adapter's tensors in a PEFT adapter directory.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

fn bad(dir: &Path, what: impl std::fmt::Display) -> ModelError {
    ModelError::Format(format!("{}: {what}", dir.join(CONFIG_FILE).display()))
}

/// The [`LoraSpec`] of the adapter in `dir` (its `adapter_config.json`), or `None` when the
/// directory has no such file. Settings that change what the adapter computes and that
/// mergec does not implement are refused by name rather than ignored: another
/// `peft_type`, DoRA, rsLoRA, QA-LoRA, aLoRA, per-module rank or alpha patterns, layer
/// subsets or replication, trained biases or tokens, modules saved whole, parameter
/// targets, and target modules other than the attention and MLP projections. (Settings
/// of the adapter's initialisation only, such as `init_lora_weights` or `loftq_config`,
/// do not matter once it is trained.)
pub fn read_config(dir: &Path) -> Result<Option<LoraSpec>> {
    let path = dir.join(CONFIG_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = crate::files::read_text(&path, "an adapter config", crate::files::limit::JSON)?;
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(dir, e))?;
    let kind = v.get("peft_type").and_then(Value::as_str).unwrap_or("LORA");
    if !kind.eq_ignore_ascii_case("lora") {
        return Err(bad(
            dir,
            format!("peft_type `{kind}`: only LORA adapters load"),
        ));
    }
    let rank = v
        .get("r")
        .and_then(Value::as_u64)
        .filter(|&r| r > 0)
        .ok_or_else(|| bad(dir, "`r` (the rank) must be a positive integer"))?;
    let alpha = match v.get("lora_alpha") {
        None | Some(Value::Null) => 8.0, // PEFT's default
        Some(a) => a
            .as_f64()
            .ok_or_else(|| bad(dir, "`lora_alpha` must be a number"))?,
    };
    let on = |k: &str| v.get(k).is_some_and(|x| x.as_bool() == Some(true));
    let set = |k: &str| match v.get(k) {
        None | Some(Value::Null) => false,
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Bool(b)) => *b,
        Some(_) => true,
    };
    for (k, present) in [
        ("use_dora", on("use_dora")),
        ("use_rslora", on("use_rslora")),
        ("fan_in_fan_out", on("fan_in_fan_out")),
        ("lora_bias", on("lora_bias")),
        ("rank_pattern", set("rank_pattern")),
        ("alpha_pattern", set("alpha_pattern")),
        ("layers_to_transform", set("layers_to_transform")),
        ("modules_to_save", set("modules_to_save")),
        ("trainable_token_indices", set("trainable_token_indices")),
        ("target_parameters", set("target_parameters")),
        ("layer_replication", set("layer_replication")),
        ("use_qalora", on("use_qalora")),
        ("use_bdlora", set("use_bdlora")),
        ("alora_invocation_tokens", set("alora_invocation_tokens")),
        ("arrow_config", set("arrow_config")),
    ] {
        if present {
            return Err(bad(
                dir,
                format!("`{k}` is set: mergec's LoRA has no such option"),
            ));
        }
    }
    if let Some(b) = v.get("bias").and_then(Value::as_str)
        && b != "none"
    {
        return Err(bad(
            dir,
            format!("bias `{b}`: only `none` (no trained biases)"),
        ));
    }
    let targets = targets(dir, v.get("target_modules"))?;
    Ok(Some(LoraSpec {
        rank: rank as usize,
        alpha,
        targets,
    }))
}

/// `target_modules`: a list of module names (PEFT writes the set it matched), or one
/// name; `all-linear` means every projection. Names may be written as paths
/// (`self_attn.q_proj`): their last part counts.
fn targets(dir: &Path, v: Option<&Value>) -> Result<Vec<String>> {
    let names: Vec<String> = match v {
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(dir, "`target_modules` must be a list of names"))?,
        Some(Value::String(s)) if s == "all-linear" => {
            LoraSpec::ALL.iter().map(|s| s.to_string()).collect()
        }
        Some(Value::String(s)) => vec![s.clone()],
        _ => return Err(bad(dir, "`target_modules` is missing")),
    };
    let mut out: Vec<String> = vec![];
    for n in &names {
        let last = n.rsplit('.').next().unwrap_or(n);
        if !LoraSpec::ALL.contains(&last) {
            return Err(bad(
                dir,
                format!(
                    "target module `{n}`: mergec's adapters go on {} only",
                    LoraSpec::ALL.join(", ")
                ),
            ));
        }
        if !out.iter().any(|o| o == last) {
            out.push(last.to_string());
        }
    }
    if out.is_empty() {
        return Err(bad(dir, "`target_modules` is empty"));
    }
    // The canonical order, so equal settings compare equal.
    out.sort_by_key(|t| LoraSpec::ALL.iter().position(|a| a == t));
    Ok(out)
}

/// The adapter tensors of `dir`'s `adapter_model.safetensors`, as f32 (PEFT saves them in
/// the model's dtype, which may be bf16 or f16).
pub fn read_weights(dir: &Path) -> Result<Vec<(String, candle_core::Tensor)>> {
    let path = dir.join(WEIGHTS_FILE);
    crate::files::check_model_path(&path, "adapter weights")?;
    let map = candle_core::safetensors::load(&path, &candle_core::Device::Cpu)
        .map_err(|e| ModelError::Format(format!("{}: {e}", path.display())))?;
    let mut out = Vec::with_capacity(map.len());
    for (k, t) in map {
        let t = t
            .to_dtype(candle_core::DType::F32)
            .map_err(ModelError::tensor("adapter"))?;
        out.push((k, t));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
