//! Tokenizers: Hugging Face `tokenizer.json` (through the `tokenizers` crate) or the
//! BPE vocabulary stored in a GGUF file, plus special tokens and the chat template
//! (Jinja, rendered with minijinja).

use super::{Result, Role};
use serde_json::{Value, json};
use std::path::Path;

pub struct Tok {
    inner: tokenizers::Tokenizer,
    /// The beginning-of-sequence token's text, if the model has one.
    pub bos_text: Option<String>,
    /// Whether plain prompts start with BOS (the GGUF `add_bos_token`; a
    /// `tokenizer.json`'s own post-processor decides otherwise).
    add_bos: Option<u32>,
    /// Token ids that end a completion.
    pub eos: Vec<u32>,
    pub eos_text: Option<String>,
    chat_template: Option<String>,
}

/// A tokenizer failure: its files, or text it cannot encode or decode.
fn terr(what: &str, e: impl std::fmt::Display) -> super::ModelError {
    super::ModelError::Format(format!("{what}: {e}"))
}

/// The text of a special token entry in `tokenizer_config.json` (a string or
/// `{"content": ...}`).
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

impl Tok {
    /// From a Hugging Face directory: `tokenizer.json`, and `tokenizer_config.json` for
    /// the chat template and special tokens when present.
    pub fn from_hf_dir(dir: &Path, eos_ids: &[u32]) -> Result<Tok> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(crate::model::ModelError::Format(format!(
                "{}: missing; a model directory needs its tokenizer.json",
                path.display()
            )));
        }
        let bytes =
            crate::files::read_bytes(&path, "tokenizer.json", crate::files::limit::TOKENIZER)?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| terr(&path.display().to_string(), e))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: Value = match crate::files::read_text(
            &cfg_path,
            "tokenizer_config.json",
            crate::files::limit::JSON,
        ) {
            Ok(t) => serde_json::from_str(&t)
                .map_err(|e| format!("{}: not JSON: {e}", cfg_path.display()))?,
            Err(_) => Value::Null,
        };
        let chat_template = match cfg.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            // A list of named templates: take "default".
            Some(Value::Array(a)) => a
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
            _ => None,
        };
        let bos_text = token_text(cfg.get("bos_token"));
        let eos_text = token_text(cfg.get("eos_token"));
        let mut eos: Vec<u32> = eos_ids.to_vec();
        if let Some(id) = eos_text.as_deref().and_then(|t| inner.token_to_id(t)) {
            eos.push(id);
        }
        eos.sort_unstable();
        eos.dedup();
        Ok(Tok {
            inner,
            bos_text,
            add_bos: None,
            eos,
            eos_text,
            chat_template,
        })
    }

    /// From GGUF metadata (`tokenizer.ggml.*`): byte-level BPE vocabularies (`gpt2`).
    pub fn from_gguf(md: &std::collections::HashMap<String, GgufValue>) -> Result<Tok> {
        let s = |k: &str| md.get(k).and_then(|v| v.as_str());
        let model = s("tokenizer.ggml.model").unwrap_or("");
        if model != "gpt2" {
            return Err(crate::model::ModelError::Format(format!(
                "GGUF tokenizer `{model}` is not supported (byte-level BPE, `gpt2`, is); \
                 use the model's Hugging Face directory instead"
            )));
        }
        let tokens = md
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.as_strs())
            .ok_or("GGUF: no tokenizer.ggml.tokens")?;
        let merges = md
            .get("tokenizer.ggml.merges")
            .and_then(|v| v.as_strs())
            .ok_or("GGUF: no tokenizer.ggml.merges")?;
        let types = md
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.as_ints())
            .unwrap_or_default();
        let vocab: serde_json::Map<String, Value> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), json!(i)))
            .collect();
        // Control (3) and user-defined (4) tokens are matched whole, before BPE.
        let added: Vec<Value> = tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| matches!(types.get(*i), Some(3) | Some(4)))
            .map(|(i, t)| {
                json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                                "trim_offsets": true, "use_regex": true});
        let pre = match s("tokenizer.ggml.pre").unwrap_or("default") {
            "smollm" => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level]}),
            "llama-bpe" | "llama3" => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex":
                    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
                 "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                 "use_regex": false}]}),
            _ => byte_level,
        };
        let spec = json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": added, "normalizer": null, "pre_tokenizer": pre,
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                        "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges},
        });
        let inner = tokenizers::Tokenizer::from_bytes(spec.to_string().as_bytes())
            .map_err(|e| terr("GGUF tokenizer", e))?;
        let id = |k: &str| md.get(k).and_then(|v| v.as_int()).map(|x| x as u32);
        let text = |id: Option<u32>| id.and_then(|i| tokens.get(i as usize).map(|t| t.to_string()));
        let bos = id("tokenizer.ggml.bos_token_id");
        let eos_id = id("tokenizer.ggml.eos_token_id");
        let add_bos = md
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        Ok(Tok {
            inner,
            bos_text: text(bos),
            add_bos: if add_bos { bos } else { None },
            eos: eos_id.into_iter().collect(),
            eos_text: text(eos_id),
            chat_template: s("tokenizer.chat_template").map(str::to_string),
        })
    }

    /// Token ids of a prompt. Special tokens written in the text (`<|im_start|>`) are
    /// recognised; BOS is added as the tokenizer specifies unless the text starts with it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let has_bos = self
            .bos_text
            .as_deref()
            .is_some_and(|b| !b.is_empty() && text.starts_with(b));
        let enc = self
            .inner
            .encode(text, !has_bos)
            .map_err(|e| terr("tokenizer", e))?;
        let mut ids = enc.get_ids().to_vec();
        if let Some(b) = self.add_bos
            && !has_bos
            && ids.first() != Some(&b)
        {
            ids.insert(0, b);
        }
        Ok(ids)
    }

    /// Text of generated ids (special tokens dropped).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| terr("tokenizer", e))
    }

    /// Token ids of `text` as a continuation: no BOS, nothing added.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| terr("tokenizer", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text each token adds after other text (for guided decoding), by id: the
    /// decoding of an anchor token followed by it, less the anchor's. None for special
    /// tokens, tokens that add nothing, and byte fragments that are not text alone.
    pub fn pieces(&self) -> Vec<Option<String>> {
        let n = self.inner.get_vocab_size(true) as u32;
        let anchor = self.encode_plain("a").ok().and_then(|v| v.first().copied());
        let special: std::collections::HashSet<u32> = self
            .inner
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(&id, _)| id)
            .collect();
        (0..n)
            .map(|id| {
                if special.contains(&id) || self.eos.contains(&id) {
                    return None;
                }
                let text = match anchor {
                    Some(a) => {
                        let both = self.inner.decode(&[a, id], false).ok()?;
                        let alone = self.inner.decode(&[a], false).ok()?;
                        both.strip_prefix(&alone)?.to_string()
                    }
                    None => self.inner.decode(&[id], false).ok()?,
                };
                (!text.is_empty() && !text.contains('\u{FFFD}')).then_some(text)
            })
            .collect()
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// The conversation rendered through the chat template, the assistant's turn opened.
    pub fn chat(&self, turns: &[(Role, String)]) -> Option<Result<String>> {
        let src = self.chat_template.as_deref()?;
        Some(render_chat(
            src,
            turns,
            self.bos_text.as_deref().unwrap_or(""),
            self.eos_text.as_deref().unwrap_or(""),
        ))
    }

    /// The tokenizer's serialized form, for content hashing.
    pub fn fingerprint(&self) -> String {
        self.inner.to_string(false).unwrap_or_default()
            + self.chat_template.as_deref().unwrap_or("")
    }
}

/// Renders a Jinja chat template as Hugging Face's `apply_chat_template` does.
pub fn render_chat(src: &str, turns: &[(Role, String)], bos: &str, eos: &str) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env.add_filter("trim", |s: String| s.trim().to_string());
    env.add_template("chat", src)
        .map_err(|e| format!("chat template does not parse: {e}"))?;
    let messages: Vec<minijinja::Value> = turns
        .iter()
        .map(|(r, c)| {
            let role = match r {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            minijinja::context! { role => role, content => c }
        })
        .collect();
    let t = env.get_template("chat").map_err(|e| e.to_string())?;
    t.render(minijinja::context! {
        messages => messages,
        add_generation_prompt => true,
        bos_token => bos,
        eos_token => eos,
    })
    .map_err(|e| super::ModelError::Format(format!("chat template failed: {e}")))
}

/// The GGUF metadata values the loader reads, independent of candle's types.
#[derive(Clone, Debug)]
pub enum GgufValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Strs(Vec<String>),
    Ints(Vec<i64>),
    Other,
}

impl GgufValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            GgufValue::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_float(&self) -> Option<f64> {
        match self {
            GgufValue::Float(f) => Some(*f),
            GgufValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            GgufValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_strs(&self) -> Option<Vec<&str>> {
        match self {
            GgufValue::Strs(v) => Some(v.iter().map(String::as_str).collect()),
            _ => None,
        }
    }
    pub fn as_ints(&self) -> Option<Vec<i64>> {
        match self {
            GgufValue::Ints(v) => Some(v.clone()),
            _ => None,
        }
    }
}
