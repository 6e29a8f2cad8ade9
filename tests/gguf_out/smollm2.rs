//! The real model: SmolLM2-135M-Instruct's GGUF (made by llama.cpp's convert_hf_to_gguf.py
//! and quantized to Q4_1) as a Hugging Face directory (dequantized to f32, q/k rows back in
//! Hugging Face's order, its tokenizer as tokenizer.json), merged (`linear` of the model with
//! itself: the same weights), and written with `--out-format gguf:f32`. Every tensor is the
//! original's dequantized values bit for bit (the permutation is llama.cpp's) and every
//! tokenizer key is the original's. With MERGEC_LLAMA_TEST=1 and the `llama-server` venv,
//! llama.cpp itself loads the written files and decodes greedily.

use super::*;

pub fn asset() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    p.is_file().then_some(p)
}

fn strs(v: &gguf_file::Value) -> Vec<String> {
    v.to_vec()
        .expect("array")
        .iter()
        .map(|x| x.to_string().expect("string").clone())
        .collect()
}

/// The Hugging Face directory of a llama GGUF with a `gpt2`/`smollm` tokenizer.
pub fn gguf_to_hf(gguf: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).expect("dir");
    let g = read_gguf(gguf);
    let heads = g.u32("llama.attention.head_count") as usize;
    let kv = g.u32("llama.attention.head_count_kv") as usize;
    let mut ts = HashMap::new();
    for (name, (_, t)) in &g.tensors {
        let hf = hf_name(name).expect("a llama tensor");
        let t = match rope_heads(name, heads, kv) {
            Some(h) => unpermute_qk(t, h).expect("unpermute"),
            None => t.clone(),
        };
        ts.insert(hf, t);
    }
    candle_core::safetensors::save(&ts, dir.join("model.safetensors")).expect("save");
    let config = json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": g.u32("llama.embedding_length"),
        "intermediate_size": g.u32("llama.feed_forward_length"),
        "num_hidden_layers": g.u32("llama.block_count"),
        "num_attention_heads": heads, "num_key_value_heads": kv,
        "head_dim": g.u32("llama.rope.dimension_count"),
        "max_position_embeddings": g.u32("llama.context_length"),
        "rms_norm_eps": g.md("llama.attention.layer_norm_rms_epsilon").to_f32().expect("eps"),
        "rope_theta": g.md("llama.rope.freq_base").to_f32().expect("theta"),
        "vocab_size": g.u32("llama.vocab_size"),
        "tie_word_embeddings": !g.tensors.contains_key("output.weight"),
        "bos_token_id": g.u32("tokenizer.ggml.bos_token_id"),
        "eos_token_id": g.u32("tokenizer.ggml.eos_token_id"),
        "torch_dtype": "float32",
    });
    std::fs::write(dir.join("config.json"), config.to_string()).expect("config");
    let tokens = strs(g.md("tokenizer.ggml.tokens"));
    let types = g.md("tokenizer.ggml.token_type").to_vec().expect("types");
    let added: Vec<Json> = types
        .iter()
        .enumerate()
        .filter(|(_, t)| t.to_i32().ok() == Some(3))
        .map(|(i, _)| {
            json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    assert_eq!(g.str("tokenizer.ggml.pre"), "smollm");
    let vocab: serde_json::Map<String, Json> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                            "trim_offsets": true, "use_regex": true});
    let tok = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": strs(g.md("tokenizer.ggml.merges"))},
    });
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).expect("tokenizer");
    let id = |k: &str| tokens[g.u32(k) as usize].clone();
    let tcfg = json!({
        "bos_token": id("tokenizer.ggml.bos_token_id"),
        "eos_token": id("tokenizer.ggml.eos_token_id"),
        "unk_token": id("tokenizer.ggml.unknown_token_id"),
        "pad_token": id("tokenizer.ggml.padding_token_id"),
        "add_bos_token": false,
        "chat_template": g.str("tokenizer.chat_template"),
    });
    std::fs::write(dir.join("tokenizer_config.json"), tcfg.to_string()).expect("tcfg");
}

/// The keys convert_hf_to_gguf.py wrote that this writer writes too.
const SAME_KEYS: &[&str] = &[
    "general.architecture",
    "llama.block_count",
    "llama.context_length",
    "llama.embedding_length",
    "llama.feed_forward_length",
    "llama.attention.head_count",
    "llama.attention.head_count_kv",
    "llama.rope.freq_base",
    "llama.attention.layer_norm_rms_epsilon",
    "llama.vocab_size",
    "llama.rope.dimension_count",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.chat_template",
    "general.quantization_version",
];

/// SmolLM2 as a merged Hugging Face directory and its `gguf:f32` file, under the test
/// target's temporary folder (made once per run of this test binary).
fn merged(work: &Path, original: &Path) -> PathBuf {
    let hf = work.join("hf");
    let _ = std::fs::remove_dir_all(work);
    gguf_to_hf(original, &hf);
    let hfs = hf.display().to_string();
    let out = work.join("merged").display().to_string();
    let o = mergec(&[
        "merge",
        "linear",
        "--base",
        &hfs,
        "--model",
        &hfs,
        "--out",
        &out,
        "--out-format",
        "gguf:f32",
        "--keep-safetensors",
    ]);
    println!("{}", ok(&o).trim());
    work.join("merged")
}

#[test]
fn smollm2_round_trips_through_merge_to_gguf() {
    let Some(original) = asset() else {
        eprintln!("SKIPPED: no SmolLM2 (run scripts/fetch-assets.sh)");
        return;
    };
    let t0 = std::time::Instant::now();
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gguf-smollm2");
    let out = merged(&work, &original);
    let ours = read_gguf(&out.join("model.gguf"));
    let theirs = read_gguf(&original);
    for k in SAME_KEYS {
        let (a, b) = (format!("{:?}", ours.md(k)), format!("{:?}", theirs.md(k)));
        assert!(a == b, "{k}: ours {:.200} theirs {:.200}", a, b);
    }
    assert_eq!(ours.tensors.len(), theirs.tensors.len());
    for (name, (dt, t)) in &ours.tensors {
        let (_, want) = theirs.tensors.get(name).expect("same names");
        assert_eq!(*dt, GgmlDType::F32, "{name}");
        assert_eq!(t.dims(), want.dims(), "{name}");
        assert!(
            values(t) == values(want),
            "{name}: not the original's values"
        );
    }
    let ids = [1u32, 504, 3458, 314, 253, 1345, 30, 198];
    let (a, b) = (
        logits(&original, &ids),
        logits(&out.join("model.gguf"), &ids),
    );
    let d = max_abs_diff(&a, &b);
    println!(
        "smollm2: {} tensors equal the original's bit for bit, {} metadata keys equal, \
         logits max abs diff {d:e}, {:.1} MB, {:.0} s",
        ours.tensors.len(),
        SAME_KEYS.len(),
        std::fs::metadata(out.join("model.gguf")).map_or(0, |m| m.len()) as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(d, 0.0);
    if std::env::var("MERGEC_LLAMA_TEST").as_deref() == Ok("1") {
        llama_cpp_decodes(&original, &out);
    } else {
        eprintln!("llama.cpp check skipped: set MERGEC_LLAMA_TEST=1 (the llama-server venv)");
    }
}

/// llama.cpp (llama-cpp-python) loads the f32, f16 and q4_k files and decodes greedily;
/// the f32 file gives the original Q4_1-dequantized weights, so its text is the original's.
fn llama_cpp_decodes(original: &Path, out: &Path) {
    let py = venv::python("llama-server").expect("the llama-server venv");
    let hf = out.display().to_string();
    let mut files = vec![original.to_path_buf(), out.join("model.gguf")];
    for ty in ["f16", "q4_k"] {
        let dest = out.with_file_name(format!("merged-{ty}"));
        let d = dest.display().to_string();
        let o = mergec(&[
            "merge",
            "linear",
            "--base",
            &hf,
            "--model",
            &hf,
            "--out",
            &d,
            "--force",
            "--out-format",
            &format!("gguf:{ty}"),
            "--quiet",
        ]);
        ok(&o);
        files.push(dest.join("model.gguf"));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gguf_llama_check.py");
    let o = Command::new(&py)
        .arg(script)
        .args(&files)
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&o.stdout);
    println!("{stdout}");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Json = serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("json");
    let texts = v["texts"].as_array().expect("texts");
    assert_eq!(texts[0], texts[1], "f32 file vs original: {v}");
    assert!(
        texts
            .iter()
            .all(|t| t.as_str().is_some_and(|s| !s.trim().is_empty())),
        "{v}"
    );
}
