//! The zoo's character-level tokenizer: one token per printable ASCII character and
//! newline, plus `<pad>`, `<s>` (added before every prompt by the post-processor),
//! `</s>` (ends every answer) and `<unk>`. Written as a Hugging Face `tokenizer.json`
//! through the `tokenizers` crate, so any loader gets the same ids, and decoding gives
//! back the exact text (spaces and newlines included).

use serde_json::json;

pub const PAD: u32 = 0;
pub const BOS: u32 = 1;
pub const EOS: u32 = 2;
pub const UNK: u32 = 3;
const SPECIALS: [&str; 4] = ["<pad>", "<s>", "</s>", "<unk>"];
/// Ids of characters start here.
const FIRST_CHAR: u32 = 4;

/// The characters with their own token: newline and printable ASCII.
fn charset() -> impl Iterator<Item = char> {
    std::iter::once('\n').chain(' '..='~')
}

/// Number of tokens (specials and characters).
pub fn vocab_size() -> usize {
    SPECIALS.len() + charset().count()
}

/// The token of a character (`<unk>` outside the set).
pub fn char_id(c: char) -> u32 {
    match c {
        '\n' => FIRST_CHAR,
        ' '..='~' => FIRST_CHAR + 1 + (c as u32 - ' ' as u32),
        _ => UNK,
    }
}

/// Token ids of plain text (no specials), exactly as the `tokenizer.json` encodes it.
pub fn encode_text(text: &str) -> Vec<u32> {
    text.chars().map(char_id).collect()
}

/// The `tokenizer.json` text, canonicalised by the `tokenizers` crate.
pub fn tokenizer_json() -> Result<String, String> {
    let mut vocab = serde_json::Map::new();
    for (i, s) in SPECIALS.iter().enumerate() {
        vocab.insert(s.to_string(), json!(i));
    }
    for c in charset() {
        vocab.insert(c.to_string(), json!(char_id(c)));
    }
    let added: Vec<_> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let bos = |seq: &str, type_id: u32| {
        json!([{"SpecialToken": {"id": "<s>", "type_id": 0}},
               {"Sequence": {"id": seq, "type_id": type_id}}])
    };
    let mut pair = bos("A", 0);
    pair.as_array_mut()
        .expect("array")
        .push(json!({"Sequence": {"id": "B", "type_id": 1}}));
    let v = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        // Every character is its own piece (newlines too).
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "[\\s\\S]"},
                          "behavior": "Isolated", "invert": false},
        "post_processor": {"type": "TemplateProcessing", "single": bos("A", 0), "pair": pair,
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [BOS], "tokens": ["<s>"]}}},
        "decoder": {"type": "Fuse"},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    });
    let tok: tokenizers::Tokenizer = v
        .to_string()
        .parse()
        .map_err(|e| format!("tokenizer.json: {e}"))?;
    tok.to_string(true)
        .map_err(|e| format!("tokenizer.json: {e}"))
}

/// `tokenizer_config.json`: the special tokens (no chat template: plain prompts).
pub fn tokenizer_config_json() -> String {
    serde_json::to_string_pretty(&json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "model_max_length": 512,
        "clean_up_tokenization_spaces": false,
    }))
    .expect("json")
}

/// `generation_config.json`.
pub fn generation_config_json() -> String {
    serde_json::to_string_pretty(&json!({
        "bos_token_id": BOS, "eos_token_id": EOS, "pad_token_id": PAD,
    }))
    .expect("json")
}
