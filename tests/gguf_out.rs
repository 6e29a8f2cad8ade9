//! `mergec merge --out-format gguf` (issue 18, item 5): one `model.gguf` that llama.cpp
//! loads. Read back with candle's GGUF reader (names, shapes, types, metadata; values equal
//! to the safetensors merge: bit for bit in f32, f16/bf16 rounding exact, q4_k within its
//! error), loaded by mergec's own GGUF loader (the q/k permutation round-trips: same logits),
//! read by llama.cpp's `gguf` Python package (the `gguf` venv), and refused before any work
//! for what it cannot write. With SmolLM2 fetched (scripts/fetch-assets.sh), the real model
//! is turned into a Hugging Face directory, merged, and written back: its tensors and
//! tokenizer keys equal the original's (made by llama.cpp's convert_hf_to_gguf.py).

use candle_core::quantized::{GgmlDType, gguf_file};
use candle_core::{DType, Device, Tensor};
use mergec::model::LoadedModel;
use mergec::model::config::LlamaConfig;
use mergec::runtime::gguf::names::{gguf_name, hf_name, rope_heads, unpermute_qk};
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "common/tiny_llama.rs"]
mod tiny_llama;
#[path = "common/venv.rs"]
mod venv;
use tiny_llama::{CHARS, tiny_config, write_char_model_with};

const TEMPLATE: &str = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}";

/// A base and one fine-tune of the architecture `arch`, with a tokenizer and chat template.
fn family(arch: LlamaConfig) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write_char_model_with(&dir.path().join("base"), 1, 0.5, CHARS, arch.clone());
    write_char_model_with(&dir.path().join("m1"), 2, 0.5, CHARS, arch);
    let cfg = json!({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
                     "chat_template": TEMPLATE});
    std::fs::write(
        dir.path().join("base/tokenizer_config.json"),
        cfg.to_string(),
    )
    .expect("cfg");
    dir
}

fn mergec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mergec"))
        .args(args)
        .output()
        .expect("run mergec")
}

/// `linear` of the base and the fine-tune (0.3, 0.7) into `fam/out`, with `extra` flags.
fn merge(fam: &Path, out: &str, extra: &[&str]) -> Output {
    let p = |n: &str| fam.join(n).display().to_string();
    let mut args = vec![
        "merge".to_string(),
        "linear".into(),
        "--base".into(),
        p("base"),
        "--model".into(),
        p("base"),
        "--model".into(),
        p("m1"),
        "--set".into(),
        "weight=[0.3,0.7]".into(),
        "--out".into(),
        p(out),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    mergec(&refs)
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "mergec failed: {err}");
    err
}

/// The safetensors merge, as f32 tensors by Hugging Face name.
fn safetensors_weights(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
        .expect("safetensors")
        .into_iter()
        .map(|(k, v)| (k, v.to_dtype(DType::F32).expect("f32")))
        .collect()
}

struct Gguf {
    content: gguf_file::Content,
    /// By llama.cpp name: the stored type and the values in llama.cpp's row order.
    tensors: HashMap<String, (GgmlDType, Tensor)>,
}

fn read_gguf(path: &Path) -> Gguf {
    let mut f = std::fs::File::open(path).expect("open gguf");
    let content = gguf_file::Content::read(&mut f).expect("read gguf");
    let mut tensors = HashMap::new();
    for (name, info) in &content.tensor_infos {
        let q = content.tensor(&mut f, name, &Device::Cpu).expect("tensor");
        let t = q.dequantize(&Device::Cpu).expect("dequantize");
        assert_eq!(t.dims(), info.shape.dims(), "{name}");
        tensors.insert(name.clone(), (info.ggml_dtype, t));
    }
    Gguf { content, tensors }
}

impl Gguf {
    fn md(&self, k: &str) -> &gguf_file::Value {
        self.content
            .metadata
            .get(k)
            .unwrap_or_else(|| panic!("no metadata `{k}`"))
    }
    fn u32(&self, k: &str) -> u32 {
        self.md(k).to_u32().expect(k)
    }
    fn str(&self, k: &str) -> String {
        self.md(k).to_string().expect(k).clone()
    }
    /// A tensor by its Hugging Face name, in Hugging Face's row order.
    fn hf(&self, hf: &str) -> (GgmlDType, Tensor) {
        let g = gguf_name(hf).expect("mapped");
        let (dt, t) = self.tensors.get(&g).unwrap_or_else(|| panic!("no {g}"));
        let heads = self.u32("llama.attention.head_count") as usize;
        let kv = self.u32("llama.attention.head_count_kv") as usize;
        let t = match rope_heads(&g, heads, kv) {
            Some(h) => unpermute_qk(t, h).expect("unpermute"),
            None => t.clone(),
        };
        (*dt, t)
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().and_then(|x| x.to_vec1()).expect("values")
}

fn max_abs(a: &[f32]) -> f32 {
    a.iter().fold(0f32, |m, x| m.max(x.abs()))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// Logits of a fixed sequence from a model loaded by mergec.
fn logits(path: &Path, ids: &[u32]) -> Vec<f32> {
    let m = LoadedModel::load(path).expect("load");
    let x = Tensor::new(ids, &Device::Cpu)
        .and_then(|t| t.unsqueeze(0))
        .expect("ids");
    values(&m.model.forward_train(&x).expect("forward"))
}

#[test]
fn f32_gguf_is_the_safetensors_merge_bit_for_bit_with_metadata_and_same_logits() {
    let fam = family(tiny_config());
    let f = fam.path();
    ok(&merge(f, "st", &["--quiet"]));
    let log = ok(&merge(f, "gg", &["--out-format", "gguf:f32"]));
    println!("{}", log.trim());
    let out = f.join("gg");
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .expect("out")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "README.md",
            "config.json",
            "mergec.json",
            "model.gguf",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
    let g = read_gguf(&out.join("model.gguf"));
    assert_eq!(g.str("general.architecture"), "llama");
    assert_eq!(g.str("general.name"), "gg");
    for (k, v) in [
        ("llama.block_count", 2),
        ("llama.embedding_length", 32),
        ("llama.feed_forward_length", 64),
        ("llama.attention.head_count", 4),
        ("llama.attention.head_count_kv", 2),
        ("llama.context_length", 512),
        ("llama.rope.dimension_count", 8),
        ("llama.vocab_size", 52),
        ("general.file_type", 0),
        ("tokenizer.ggml.bos_token_id", 1),
        ("tokenizer.ggml.eos_token_id", 2),
        ("tokenizer.ggml.padding_token_id", 0),
    ] {
        assert_eq!(g.u32(k), v, "{k}");
    }
    assert_eq!(g.str("tokenizer.ggml.model"), "gpt2");
    assert_eq!(g.str("tokenizer.chat_template"), TEMPLATE);
    let tokens = g.md("tokenizer.ggml.tokens").to_vec().expect("tokens");
    assert_eq!(tokens.len(), 52);
    assert_eq!(tokens[3].to_string().expect("token"), "0");
    // Tied embeddings: no output.weight, as convert_hf_to_gguf.py writes them.
    let st = safetensors_weights(&f.join("st"));
    assert_eq!(g.tensors.len(), st.len());
    assert!(!g.tensors.contains_key("output.weight"));
    for (name, want) in &st {
        let (dt, got) = g.hf(name);
        assert_eq!(dt, GgmlDType::F32, "{name}");
        let (a, b) = (values(&got), values(want));
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name} differs"
        );
    }
    // mergec's GGUF loader undoes the permutation: the same network.
    let ids = [1u32, 5, 9, 3, 17, 22, 8, 30];
    let (a, b) = (
        logits(&f.join("st"), &ids),
        logits(&out.join("model.gguf"), &ids),
    );
    let d = max_abs_diff(&a, &b);
    println!(
        "f32 gguf vs safetensors: {} tensors bit-exact, logits max abs diff {d:e}",
        st.len()
    );
    assert!(d <= 1e-5, "{d}");
}

#[test]
fn f16_and_bf16_round_the_merge_exactly_and_keep_norms_f32() {
    let fam = family(tiny_config());
    let f = fam.path();
    ok(&merge(f, "st", &["--quiet"]));
    let st = safetensors_weights(&f.join("st"));
    for (ty, dtype) in [("f16", GgmlDType::F16), ("bf16", GgmlDType::BF16)] {
        let out = format!("gg-{ty}");
        ok(&merge(
            f,
            &out,
            &["--quiet", "--out-format", &format!("gguf:{ty}")],
        ));
        let g = read_gguf(&f.join(&out).join("model.gguf"));
        assert_eq!(g.u32("general.file_type"), if ty == "f16" { 1 } else { 32 });
        for (name, want) in &st {
            let (dt, got) = g.hf(name);
            let round = |x: f32| match (want.rank(), ty) {
                (1, _) => x,
                (_, "f16") => half::f16::from_f32(x).to_f32(),
                _ => half::bf16::from_f32(x).to_f32(),
            };
            assert_eq!(
                dt,
                if want.rank() == 1 {
                    GgmlDType::F32
                } else {
                    dtype
                }
            );
            let exact = values(want).iter().map(|&x| round(x)).collect::<Vec<_>>();
            assert_eq!(values(&got), exact, "{name} as {ty}");
        }
        println!("gguf:{ty}: {} tensors equal the rounded merge", st.len());
    }
}

/// An architecture wide enough for q4_k (rows of 256) whose MLP down projection (rows of
/// 320) is not: that one falls back to q8_0.
fn wide() -> LlamaConfig {
    LlamaConfig {
        hidden_size: 256,
        intermediate_size: 320,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 64,
        tie_word_embeddings: false,
        ..tiny_config()
    }
}

#[test]
fn q4_k_is_within_its_error_and_falls_back_where_rows_do_not_fit() {
    let fam = family(wide());
    let f = fam.path();
    ok(&merge(f, "st", &["--quiet"]));
    let log = ok(&merge(f, "q4", &["--out-format", "gguf:q4_k"]));
    println!("{}", log.trim());
    assert!(
        log.contains("note: 2 weights stored in another type"),
        "{log}"
    );
    let g = read_gguf(&f.join("q4/model.gguf"));
    assert_eq!(g.u32("general.file_type"), 15);
    assert_eq!(g.u32("general.quantization_version"), 2);
    let st = safetensors_weights(&f.join("st"));
    assert!(g.tensors.contains_key("output.weight"));
    let mut worst = (0f32, String::new());
    for (name, want) in &st {
        let (dt, got) = g.hf(name);
        let expect = match want.rank() {
            1 => GgmlDType::F32,
            _ if name.contains("down_proj") => GgmlDType::Q8_0,
            _ => GgmlDType::Q4K,
        };
        assert_eq!(dt, expect, "{name}");
        let (a, b) = (values(&got), values(want));
        // Relative to the tensor's largest value: 4 bits per weight (16 steps over a block
        // of 32's range, with 6-bit scales and minimums) are within about 1/13 of it;
        // q8_0 within 1/200.
        let rel = max_abs_diff(&a, &b) / max_abs(&b).max(1e-12);
        let bound = match dt {
            GgmlDType::F32 => 0.0,
            GgmlDType::Q8_0 => 0.005,
            _ => 0.1,
        };
        assert!(rel <= bound, "{name} ({dt:?}): relative error {rel}");
        if rel > worst.0 {
            worst = (rel, format!("{name} ({dt:?})"));
        }
    }
    let ids = [1u32, 5, 9, 3, 17, 22, 8, 30];
    let (a, b) = (
        logits(&f.join("st"), &ids),
        logits(&f.join("q4/model.gguf"), &ids),
    );
    println!(
        "gguf:q4_k: worst relative error {:.4} in {}; logits max abs diff {:.4} (max |logit| {:.3})",
        worst.0,
        worst.1,
        max_abs_diff(&a, &b),
        max_abs(&a)
    );
}

#[test]
fn the_mergekit_yaml_path_writes_gguf_too() {
    let fam = family(tiny_config());
    let f = fam.path();
    let yml = f.join("merge.yml");
    let (b, m) = (
        f.join("base").display().to_string(),
        f.join("m1").display().to_string(),
    );
    std::fs::write(
        &yml,
        format!(
            "merge_method: linear\nmodels:\n  - model: {b}\n    parameters: {{weight: 0.3}}\n  \
             - model: {m}\n    parameters: {{weight: 0.7}}\nbase_model: {b}\ndtype: float32\n"
        ),
    )
    .expect("yml");
    let out = f.join("y").display().to_string();
    let yml = yml.display().to_string();
    ok(&mergec(&[
        "merge",
        &yml,
        "--out",
        &out,
        "--out-format",
        "gguf:f16",
        "--keep-safetensors",
        "--quiet",
    ]));
    let g = read_gguf(&f.join("y/model.gguf"));
    assert_eq!(g.u32("general.file_type"), 1);
    assert!(
        f.join("y/model.safetensors").is_file(),
        "--keep-safetensors"
    );
    let prov: Json = serde_json::from_str(
        &std::fs::read_to_string(f.join("y/mergec.json")).expect("provenance"),
    )
    .expect("json");
    assert_eq!(prov["out_format"], "gguf:f16");
}

/// Runs a merge expected to fail: its message, and that nothing was written.
fn refused(f: &Path, extra: &[&str]) -> String {
    let o = merge(f, "bad", extra);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!f.join("bad").exists(), "an output was left: {err}");
    let tmp = std::fs::read_dir(f)
        .expect("dir")
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().contains("mergec-tmp"));
    assert!(!tmp, "a temporary was left: {err}");
    err
}

#[test]
fn what_cannot_be_written_as_gguf_is_refused_before_any_work() {
    let fam = family(tiny_config());
    let f = fam.path();
    let e = refused(f, &["--out-format", "onnx"]);
    assert!(
        e.contains("--out-format `onnx`") && e.contains("gguf:q4_k"),
        "{e}"
    );
    let e = refused(f, &["--out-format", "gguf:q3_k"]);
    assert!(e.contains("gguf:q3_k"), "{e}");
    let e = refused(f, &["--keep-safetensors"]);
    assert!(e.contains("--keep-safetensors"), "{e}");
    // Another architecture.
    let cfg = f.join("base/config.json");
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(&cfg, text.replace("LlamaForCausalLM", "Qwen2ForCausalLM")).expect("w");
    let e = refused(f, &["--out-format", "gguf:q4_k"]);
    assert!(
        e.contains("Qwen2ForCausalLM") && e.contains("config.json"),
        "{e}"
    );
    std::fs::write(&cfg, &text).expect("restore");
    // No tokenizer.
    std::fs::rename(f.join("base/tokenizer.json"), f.join("tokenizer.json")).expect("mv");
    let e = refused(f, &["--out-format", "gguf"]);
    assert!(e.contains("tokenizer.json") && e.contains("missing"), "{e}");
    // ... unless --tokenizer-from names one.
    std::fs::create_dir(f.join("tok")).expect("dir");
    std::fs::rename(f.join("tokenizer.json"), f.join("tok/tokenizer.json")).expect("mv");
    let tok = f.join("tok").display().to_string();
    ok(&merge(
        f,
        "ok",
        &["--quiet", "--out-format", "gguf", "--tokenizer-from", &tok],
    ));
    assert!(f.join("ok/model.gguf").is_file());
}

#[test]
fn llama_cpps_gguf_reader_reads_the_file() {
    let py = match venv::python("gguf") {
        Ok(p) => p,
        Err(e) => {
            eprintln!("SKIPPED: no `gguf` venv (gguf and numpy from PyPI): {e}");
            return;
        }
    };
    let fam = family(wide());
    let f = fam.path();
    ok(&merge(f, "q4", &["--quiet", "--out-format", "gguf:q4_k"]));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gguf_dump.py");
    let o = Command::new(&py)
        .arg(script)
        .arg(f.join("q4/model.gguf"))
        .output()
        .expect("python");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "gguf_dump.py: {err}");
    let v: Json = serde_json::from_slice(&o.stdout).expect("json");
    let s = &v["scalars"];
    assert_eq!(s["general.architecture"], "llama");
    assert_eq!(s["llama.embedding_length"], 256);
    assert_eq!(s["llama.attention.head_count_kv"], 2);
    assert_eq!(s["llama.rope.freq_base"], 10000.0);
    assert_eq!(s["tokenizer.ggml.model"], "gpt2");
    assert_eq!(s["tokenizer.chat_template"], TEMPLATE);
    assert_eq!(v["arrays"]["tokenizer.ggml.tokens"]["len"], 52);
    assert_eq!(
        v["arrays"]["tokenizer.ggml.token_type"]["head"],
        json!([3, 3, 3, 1, 1, 1, 1, 1])
    );
    let tensors = v["tensors"].as_array().expect("tensors");
    let find = |n: &str| {
        tensors
            .iter()
            .find(|t| t["name"] == n)
            .unwrap_or_else(|| panic!("no {n} in {tensors:?}"))
    };
    // ggml's shapes: row length first.
    assert_eq!(find("blk.0.attn_q.weight")["shape"], json!([256, 256]));
    assert_eq!(find("blk.0.attn_q.weight")["type"], "Q4_K");
    assert_eq!(find("blk.1.attn_k.weight")["shape"], json!([256, 128]));
    assert_eq!(find("blk.0.ffn_down.weight")["shape"], json!([320, 256]));
    assert_eq!(find("blk.0.ffn_down.weight")["type"], "Q8_0");
    assert_eq!(find("output_norm.weight")["type"], "F32");
    assert_eq!(find("token_embd.weight")["shape"], json!([256, 52]));
    assert_eq!(tensors.len(), 2 * 9 + 3);
    println!(
        "gguf.GGUFReader: version {}, {} tensors, {} metadata keys",
        v["version"],
        tensors.len(),
        s.as_object().map_or(0, |o| o.len()) + v["arrays"].as_object().map_or(0, |o| o.len())
    );
}

#[path = "gguf_out/smollm2.rs"]
mod smollm2;
