//! The `tokenizer.*` GGUF keys from a Hugging Face `tokenizer.json` and
//! `tokenizer_config.json`, as llama.cpp's `convert_hf_to_gguf.py` writes them: byte-level
//! BPE as `gpt2` (tokens, types, merges, the pre-tokenizer's name), sentencepiece-style
//! BPE (`byte_fallback`) as `llama` (tokens, scores, types).

use super::GgufError;
use candle_core::quantized::gguf_file::Value;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::Path;

/// llama.cpp's token types.
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// The tokenizer keys, and notes for the summary (a pre-tokenizer llama.cpp does not name).
pub struct TokenizerMetadata {
    pub keys: Vec<(String, Value)>,
    pub notes: Vec<String>,
}

fn read_json(path: &Path, what: &str, limit: u64) -> Result<Json, GgufError> {
    let text = crate::files::read_text(path, what, limit)
        .map_err(|e| GgufError::Invalid(e.to_string()))?;
    serde_json::from_str(&text)
        .map_err(|e| GgufError::Invalid(format!("`{}`: not JSON: {e}", path.display())))
}

/// Reads `dir`'s tokenizer files; `config` is the model's config.json (special token ids
/// it names are used when tokenizer_config.json has none), `vocab_size` its embedding rows.
pub fn tokenizer_metadata(
    dir: &Path,
    config: &Json,
    vocab_size: usize,
) -> Result<TokenizerMetadata, GgufError> {
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        let why = if dir.join("tokenizer.model").is_file() {
            " (a sentencepiece tokenizer.model alone is not read: a GGUF file is written \
             from tokenizer.json)"
        } else {
            ""
        };
        return Err(GgufError::Missing(format!(
            "`{}` is missing{why}: a GGUF file needs the model's tokenizer (give a directory \
             that has it with --tokenizer-from)",
            path.display()
        )));
    }
    let tok = read_json(&path, "tokenizer.json", crate::files::limit::TOKENIZER)?;
    let cfg_path = dir.join("tokenizer_config.json");
    let tcfg = if cfg_path.is_file() {
        read_json(
            &cfg_path,
            "tokenizer_config.json",
            crate::files::limit::JSON,
        )?
    } else {
        Json::Null
    };
    let at = |e: GgufError| e.at(&path);
    let vocab = Vocab::read(&tok, vocab_size).map_err(at)?;
    let mut md = TokenizerMetadata {
        keys: vec![],
        notes: vec![],
    };
    let model = &tok["model"];
    if model.get("byte_fallback").and_then(Json::as_bool) == Some(true) {
        sentencepiece_keys(&vocab, &tok, &mut md);
    } else {
        bpe_keys(&vocab, &tok, &mut md).map_err(at)?;
    }
    special_keys(&vocab, &tok, &tcfg, config, &mut md);
    chat_template_keys(dir, &tcfg, &mut md)?;
    Ok(md)
}

/// Tokens by id: the BPE vocabulary and the added tokens.
struct Vocab {
    tokens: Vec<String>,
    types: Vec<i32>,
    ids: HashMap<String, u32>,
}

impl Vocab {
    fn read(tok: &Json, vocab_size: usize) -> Result<Vocab, GgufError> {
        let model = &tok["model"];
        let kind = model.get("type").and_then(Json::as_str).unwrap_or("BPE");
        if kind != "BPE" {
            return Err(GgufError::Unsupported(format!(
                "a `{kind}` tokenizer model (GGUF files are written for BPE tokenizers)"
            )));
        }
        let vocab = model
            .get("vocab")
            .and_then(Json::as_object)
            .ok_or_else(|| GgufError::Invalid("no model.vocab".into()))?;
        let mut entries: Vec<(String, u64, i32)> = vocab
            .iter()
            .filter_map(|(t, id)| Some((t.clone(), id.as_u64()?, NORMAL)))
            .collect();
        for a in tok["added_tokens"].as_array().into_iter().flatten() {
            let (Some(id), Some(t)) = (a["id"].as_u64(), a["content"].as_str()) else {
                continue;
            };
            let ty = if a["special"].as_bool() == Some(true) {
                CONTROL
            } else {
                USER_DEFINED
            };
            entries.push((t.to_string(), id, ty));
        }
        let max = entries.iter().map(|e| e.1).max().unwrap_or(0) as usize;
        if max >= vocab_size {
            return Err(GgufError::Invalid(format!(
                "token id {max} is past config.json's vocab_size {vocab_size}"
            )));
        }
        let mut tokens: Vec<Option<String>> = vec![None; vocab_size];
        let mut types = vec![UNUSED; vocab_size];
        for (t, id, ty) in entries {
            // An added token overrides the vocabulary's entry of the same id.
            tokens[id as usize] = Some(t);
            types[id as usize] = ty;
        }
        let tokens: Vec<String> = tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]")))
            .collect();
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        Ok(Vocab { tokens, types, ids })
    }
}

fn strings(xs: impl IntoIterator<Item = String>) -> Value {
    Value::Array(xs.into_iter().map(Value::String).collect())
}

fn push(md: &mut TokenizerMetadata, k: &str, v: Value) {
    md.keys.push((k.to_string(), v));
}

/// Byte-level BPE: `gpt2`, its merges and the pre-tokenizer's llama.cpp name.
fn bpe_keys(v: &Vocab, tok: &Json, md: &mut TokenizerMetadata) -> Result<(), GgufError> {
    let merges = tok["model"]["merges"]
        .as_array()
        .map(|m| m.iter().map(merge_text).collect::<Option<Vec<_>>>())
        .unwrap_or(Some(vec![]))
        .ok_or_else(|| GgufError::Invalid("model.merges: not pairs of tokens".into()))?;
    let pre = pre_name(&tok["pre_tokenizer"]);
    if pre == "default" {
        md.notes.push(
            "the tokenizer's pre-tokenizer is not one llama.cpp names (gpt-2, smollm, \
             llama-bpe): written as `default`, llama.cpp may split text differently"
                .into(),
        );
    }
    push(md, "tokenizer.ggml.model", Value::String("gpt2".into()));
    push(md, "tokenizer.ggml.pre", Value::String(pre.into()));
    push(
        md,
        "tokenizer.ggml.tokens",
        strings(v.tokens.iter().cloned()),
    );
    let types = v.types.iter().map(|&t| Value::I32(t)).collect();
    push(md, "tokenizer.ggml.token_type", Value::Array(types));
    push(md, "tokenizer.ggml.merges", strings(merges));
    Ok(())
}

/// A merge as llama.cpp stores it: `"a b"` (tokenizer.json has strings or pairs).
fn merge_text(m: &Json) -> Option<String> {
    match m {
        Json::String(s) => Some(s.clone()),
        Json::Array(p) if p.len() == 2 => Some(format!("{} {}", p[0].as_str()?, p[1].as_str()?)),
        _ => None,
    }
}

/// The name llama.cpp gives a byte-level pre-tokenizer (`tokenizer.ggml.pre`).
fn pre_name(pre: &Json) -> &'static str {
    let byte_level = |p: &Json, regex: bool| {
        p["type"] == "ByteLevel" && p["use_regex"].as_bool().unwrap_or(true) == regex
    };
    let parts: Vec<&Json> = match pre["type"].as_str() {
        Some("Sequence") => pre["pretokenizers"]
            .as_array()
            .into_iter()
            .flatten()
            .collect(),
        Some(_) => vec![pre],
        None => vec![],
    };
    match parts.as_slice() {
        [b] if byte_level(b, true) => "gpt-2",
        [d, b]
            if d["type"] == "Digits" && d["individual_digits"] == true && byte_level(b, true) =>
        {
            "smollm"
        }
        [s, b]
            if s["type"] == "Split"
                && s["pattern"]["Regex"]
                    .as_str()
                    .is_some_and(|r| r.contains("\\p{N}{1,3}"))
                && byte_level(b, false) =>
        {
            "llama-bpe"
        }
        _ => "default",
    }
}

/// Sentencepiece-style BPE (`byte_fallback`): `llama`, with scores from the vocabulary's
/// order (sentencepiece BPE scores its pieces by rank, which tokenizer.json keeps as ids).
fn sentencepiece_keys(v: &Vocab, tok: &Json, md: &mut TokenizerMetadata) {
    let unk = tok["model"]["unk_token"].as_str();
    let types: Vec<i32> = v
        .tokens
        .iter()
        .zip(&v.types)
        .map(|(t, &ty)| {
            if Some(t.as_str()) == unk {
                UNKNOWN
            } else if ty == NORMAL && is_byte_token(t) {
                BYTE
            } else {
                ty
            }
        })
        .collect();
    let scores = types
        .iter()
        .enumerate()
        .map(|(i, &ty)| Value::F32(if ty == NORMAL { -(i as f32) } else { 0.0 }))
        .collect();
    let types = types.into_iter().map(Value::I32).collect();
    let prefix = tok["pre_tokenizer"]["prepend_scheme"].as_str() != Some("never");
    push(md, "tokenizer.ggml.model", Value::String("llama".into()));
    push(
        md,
        "tokenizer.ggml.tokens",
        strings(v.tokens.iter().cloned()),
    );
    push(md, "tokenizer.ggml.scores", Value::Array(scores));
    push(md, "tokenizer.ggml.token_type", Value::Array(types));
    push(md, "tokenizer.ggml.add_space_prefix", Value::Bool(prefix));
}

/// `<0x0A>`: a sentencepiece byte token.
fn is_byte_token(t: &str) -> bool {
    t.len() == 6 && t.starts_with("<0x") && t.ends_with('>')
}

/// The text of a special-token entry in tokenizer_config.json (a string or `{"content"}`).
fn token_text(v: &Json) -> Option<&str> {
    v.as_str().or_else(|| v["content"].as_str())
}

/// BOS, EOS, UNK and padding ids (from tokenizer_config.json's texts, else config.json's
/// ids) and whether BOS / EOS are added.
fn special_keys(v: &Vocab, tok: &Json, tcfg: &Json, config: &Json, md: &mut TokenizerMetadata) {
    let mut bos_text = None;
    for (key, text_key, id_key) in [
        ("bos", "bos_token", "bos_token_id"),
        ("eos", "eos_token", "eos_token_id"),
        ("unknown", "unk_token", "unk_token_id"),
        ("padding", "pad_token", "pad_token_id"),
    ] {
        let from_text = token_text(&tcfg[text_key]).and_then(|t| v.ids.get(t).copied());
        let from_config = match &config[id_key] {
            Json::Array(a) => a.first().and_then(Json::as_u64),
            x => x.as_u64(),
        };
        let id = from_text.or(from_config.and_then(|x| u32::try_from(x).ok()));
        if let Some(id) = id.filter(|&i| (i as usize) < v.tokens.len()) {
            push(
                md,
                &format!("tokenizer.ggml.{key}_token_id"),
                Value::U32(id),
            );
            if key == "bos" {
                bos_text = Some(v.tokens[id as usize].clone());
            }
        }
    }
    // Whether BOS is added: tokenizer_config.json says, else tokenizer.json's template.
    let add_bos = tcfg["add_bos_token"].as_bool().unwrap_or_else(|| {
        let first = &tok["post_processor"]["single"][0]["SpecialToken"]["id"];
        bos_text.is_some() && first.as_str() == bos_text.as_deref()
    });
    push(md, "tokenizer.ggml.add_bos_token", Value::Bool(add_bos));
    if let Some(b) = tcfg["add_eos_token"].as_bool() {
        push(md, "tokenizer.ggml.add_eos_token", Value::Bool(b));
    }
}

/// `tokenizer.chat_template` (and `.NAME` for named extra templates), from
/// tokenizer_config.json or `chat_template.jinja`.
fn chat_template_keys(
    dir: &Path,
    tcfg: &Json,
    md: &mut TokenizerMetadata,
) -> Result<(), GgufError> {
    match &tcfg["chat_template"] {
        Json::String(s) => push(md, "tokenizer.chat_template", Value::String(s.clone())),
        Json::Array(list) => {
            for t in list {
                let (Some(name), Some(text)) = (t["name"].as_str(), t["template"].as_str()) else {
                    continue;
                };
                let key = if name == "default" {
                    "tokenizer.chat_template".to_string()
                } else {
                    format!("tokenizer.chat_template.{name}")
                };
                push(md, &key, Value::String(text.to_string()));
            }
        }
        _ => {
            let jinja = dir.join("chat_template.jinja");
            if jinja.is_file() {
                let text =
                    crate::files::read_text(&jinja, "a chat template", crate::files::limit::JSON)
                        .map_err(|e| GgufError::Invalid(e.to_string()))?;
                push(md, "tokenizer.chat_template", Value::String(text));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pre_tokenizers_get_llama_cpps_names() {
        let bl = json!({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true});
        assert_eq!(pre_name(&bl), "gpt-2");
        let smol = json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, bl]});
        assert_eq!(pre_name(&smol), "smollm");
        assert_eq!(pre_name(&Json::Null), "default");
    }

    #[test]
    fn the_vocabulary_is_padded_and_typed() {
        let tok = json!({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2},
                                   "merges": [["a", "b"]]},
                         "added_tokens": [{"id": 3, "content": "<s>", "special": true}]});
        let v = Vocab::read(&tok, 6).expect("vocab");
        assert_eq!(v.tokens, ["a", "b", "ab", "<s>", "[PAD4]", "[PAD5]"]);
        assert_eq!(v.types, [1, 1, 1, 3, 5, 5]);
        assert!(Vocab::read(&tok, 3).is_err());
        assert_eq!(merge_text(&json!(["a", "b"])).as_deref(), Some("a b"));
    }

    #[test]
    fn sentencepiece_style_bpe_is_written_as_llama_with_scores_and_byte_tokens() {
        let tok = json!({"model": {"type": "BPE", "byte_fallback": true, "unk_token": "<unk>",
                                   "vocab": {"<unk>": 0, "<s>": 1, "<0x0A>": 2, "\u{2581}a": 3}},
                         "added_tokens": [{"id": 1, "content": "<s>", "special": true}],
                         "pre_tokenizer": {"type": "Metaspace", "prepend_scheme": "first"}});
        let v = Vocab::read(&tok, 4).expect("vocab");
        let mut md = TokenizerMetadata {
            keys: vec![],
            notes: vec![],
        };
        sentencepiece_keys(&v, &tok, &mut md);
        let get = |k: &str| {
            md.keys
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| format!("{v:?}"))
                .unwrap_or_default()
        };
        assert_eq!(get("tokenizer.ggml.model"), "String(\"llama\")");
        assert_eq!(
            get("tokenizer.ggml.token_type"),
            "Array([I32(2), I32(3), I32(6), I32(1)])"
        );
        assert!(get("tokenizer.ggml.scores").ends_with("F32(-3.0)])"));
        assert_eq!(get("tokenizer.ggml.add_space_prefix"), "Bool(true)");
    }
}
