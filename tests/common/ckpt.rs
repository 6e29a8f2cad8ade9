//! Tiny Hugging Face checkpoints written by the merge tests, the interpreter's
//! reference result for a tensor, running the `mergec` binary, and snapshots of
//! input directories (to prove they were not modified).

#![allow(dead_code)]

use mergec::interp::{Context, Tensor, TensorFacts, run_merge};
use mergec::runtime::safetensors::{Dtype, INDEX_FILE, MODEL_FILE, RawTensor, encode_raw};
use mergec::types::{Const, instantiate_merge};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

/// Layers of the test models (config.json's `num_hidden_layers`).
pub const LAYERS: usize = 2;
/// A non-float buffer that only the base holds (copied unchanged).
pub const I64_BUFFER: &str = "model.rotary_emb.position_ids";
pub const I64_LEN: usize = 16;

/// Tokenizer and config files written into the base and expected, byte for byte, in the output.
pub const SIDE_FILES: &[(&str, &str)] = &[
    (
        "tokenizer.json",
        "{\"version\": \"1.0\", \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}\n",
    ),
    (
        "tokenizer_config.json",
        "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}\n",
    ),
    (
        "special_tokens_map.json",
        "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}\n",
    ),
    (
        "generation_config.json",
        "{\"bos_token_id\": 1, \"eos_token_id\": 2}\n",
    ),
];

/// SplitMix64: test data independent of mergec's own generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn normal(&mut self) -> f32 {
        let u1 = ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64).max(1e-12);
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}

fn name_seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// The names and shapes of the test model: llama-style, tied embeddings (no
/// `lm_head`), 1-D norms, in the order Hugging Face writes them.
pub fn tiny_shapes() -> Vec<(String, Vec<usize>)> {
    let (vocab, h, i, kv) = (37, 16, 24, 8);
    let mut t = vec![("model.embed_tokens.weight".to_string(), vec![vocab, h])];
    for l in 0..LAYERS {
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
            t.push((format!("model.layers.{l}.{n}"), s));
        }
    }
    t.push(("model.norm.weight".to_string(), vec![h]));
    t
}

/// Values of one tensor of variant `model` (0 = the base): norms near 1, weights
/// ~ N(0, 0.02); variants add a delta of a tenth of that.
pub fn values(name: &str, shape: &[usize], model: u32) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let (center, scale) = if name.contains("norm") {
        (1.0, 0.05)
    } else {
        (0.0, 0.02)
    };
    let mut base = Rng::new(name_seed(name));
    let mut delta = Rng::new(name_seed(name) ^ (model as u64 + 1).wrapping_mul(0x1234_5678_9abc));
    (0..n)
        .map(|_| {
            let b = center + scale * base.normal();
            if model == 0 {
                b
            } else {
                b + 0.1 * scale * delta.normal()
            }
        })
        .collect()
}

pub fn raw(name: &str, shape: &[usize], data: &[f32], dtype: Dtype) -> RawTensor {
    RawTensor {
        name: name.to_string(),
        dtype: dtype.name().to_string(),
        shape: shape.to_vec(),
        bytes: dtype.encode_vec(data),
    }
}

/// The I64 buffer of the base: 0, 1, 2, ...
pub fn i64_buffer() -> RawTensor {
    RawTensor {
        name: I64_BUFFER.into(),
        dtype: "I64".into(),
        shape: vec![1, I64_LEN],
        bytes: (0..I64_LEN as i64).flat_map(i64::to_le_bytes).collect(),
    }
}

/// The float tensors of variant `model` stored as `dtype`.
pub fn variant(model: u32, dtype: Dtype) -> Vec<RawTensor> {
    tiny_shapes()
        .iter()
        .map(|(n, s)| raw(n, s, &values(n, s, model), dtype))
        .collect()
}

/// f32 values of stored bytes (F32, F16, BF16).
pub fn decode(dtype: &str, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        "F32" => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        "F16" => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        "BF16" => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => panic!("decode: {other}"),
    }
}

/// Shard file names as transformers writes them.
pub fn shard_name(i: usize, n: usize) -> String {
    format!("model-{:05}-of-{n:05}.safetensors", i + 1)
}

/// Writes a model directory: `model.safetensors` when `shards == 1`, else that
/// many shards of consecutive tensors and the index (with `total_size`).
pub fn write_dir(dir: &Path, tensors: &[RawTensor], shards: usize) {
    std::fs::create_dir_all(dir).unwrap();
    if shards == 1 {
        std::fs::write(dir.join(MODEL_FILE), encode_raw(tensors)).unwrap();
        return;
    }
    let per = tensors.len().div_ceil(shards);
    let mut weight_map = serde_json::Map::new();
    let mut total = 0;
    for (i, chunk) in tensors.chunks(per).enumerate() {
        let file = shard_name(i, shards);
        std::fs::write(dir.join(&file), encode_raw(chunk)).unwrap();
        for t in chunk {
            weight_map.insert(t.name.clone(), json!(file));
            total += t.bytes.len();
        }
    }
    assert_eq!(tensors.chunks(per).count(), shards, "shard count");
    let index = json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
    std::fs::write(
        dir.join(INDEX_FILE),
        serde_json::to_string_pretty(&index).unwrap(),
    )
    .unwrap();
}

/// The base's config.json.
pub fn config_json() -> Json {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 37,
        "hidden_size": 16,
        "intermediate_size": 24,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_hidden_layers": LAYERS,
        "tie_word_embeddings": true,
        "torch_dtype": "bfloat16",
    })
}

/// A working directory holding a base and two candidates:
/// - `base`: BF16 in 3 shards with an index, plus an I64 buffer, config.json,
///   tokenizer files and generation_config.json;
/// - `m1`: F16 in 2 shards; `m2`: F32 in a single `model.safetensors`.
pub struct Zoo {
    pub tmp: tempfile::TempDir,
}

pub const BASE_SHARDS: usize = 3;

impl Zoo {
    pub fn new() -> Zoo {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let mut base = variant(0, Dtype::BF16);
        base.insert(10, i64_buffer());
        write_dir(&d.join("base"), &base, BASE_SHARDS);
        std::fs::write(
            d.join("base/config.json"),
            serde_json::to_string_pretty(&config_json()).unwrap(),
        )
        .unwrap();
        for (f, text) in SIDE_FILES {
            std::fs::write(d.join("base").join(f), text).unwrap();
        }
        write_dir(&d.join("m1"), &variant(1, Dtype::F16), 2);
        write_dir(&d.join("m2"), &variant(2, Dtype::F32), 1);
        Zoo { tmp }
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Writes a program file into the working directory.
    pub fn program(&self, file: &str, text: &str) -> String {
        std::fs::write(self.path(file), text).unwrap();
        file.to_string()
    }

    /// Runs `mergec ARGS` in the working directory.
    pub fn mergec(&self, args: &[&str]) -> Output {
        mergec_in(self.dir(), args)
    }

    /// The float values every input holds for `name`, as read (rounded to its dtype).
    pub fn inputs_of(&self, name: &str) -> (Tensor, Vec<Tensor>) {
        let (_, shape) = tiny_shapes().into_iter().find(|(n, _)| n == name).unwrap();
        let read = |m: u32, d: Dtype| {
            Tensor::new(
                shape.clone(),
                decode(d.name(), &d.encode_vec(&values(name, &shape, m))),
            )
        };
        (
            read(0, Dtype::BF16),
            vec![read(1, Dtype::F16), read(2, Dtype::F32)],
        )
    }
}

pub fn mergec_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mergec"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// Runs `mergec ARGS` in `dir`, killing it and failing the test if it has not ended
/// within `limit` (a hang is a bug: every bad input must end quickly).
pub fn mergec_within(dir: &Path, args: &[&str], limit: std::time::Duration) -> Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mergec"))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            b
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`mergec {}` did not end within {limit:?}", args.join(" "));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim_end().to_string()
}

/// Panics with the command's stderr unless it succeeded.
pub fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "mergec failed ({:?}):\n{}",
        o.status,
        stderr(&o)
    );
    o
}

/// The error message of a failed run (exit 1).
pub fn fails(o: Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit 1, got {:?}; stderr:\n{}",
        o.status,
        stderr(&o)
    );
    let e = stderr(&o);
    assert!(e.starts_with("error: "), "{e}");
    e
}

/// The interpreter's result for one tensor, as the bytes of `out`.
#[allow(clippy::too_many_arguments)]
pub fn reference(
    program: &str,
    merge: &str,
    name: &str,
    base: &Tensor,
    models: &[Tensor],
    overrides: &[(String, Const)],
    seed: u64,
    allow_nonfinite: bool,
    out: Dtype,
) -> Vec<u8> {
    let (p, _) = mergec::check_source(program).unwrap_or_else(|d| panic!("{d:?}"));
    let m = instantiate_merge(&p, merge, base.shape.len()).unwrap_or_else(|d| panic!("{d:?}"));
    let ctx = Context::new(seed, TensorFacts::from_name(name, LAYERS as i64));
    let t = run_merge(&m, base, models, overrides, &ctx, allow_nonfinite)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    out.encode_vec(&t.data)
}

pub fn sets(args: &[&str]) -> Vec<(String, Const)> {
    args.iter()
        .map(|a| Const::parse_assignment(a).unwrap())
        .collect()
}

/// Every file under `dir` (relative path) with its bytes and modification time.
pub type Snapshot = BTreeMap<PathBuf, (Vec<u8>, SystemTime)>;

pub fn snapshot(dir: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                // FIFOs and links of the hostile cases are recorded, never read.
                let bytes = match meta.is_file() {
                    true => std::fs::read(&p).unwrap(),
                    false => format!("{:?}", meta.file_type()).into_bytes(),
                };
                out.insert(rel, (bytes, meta.modified().unwrap()));
            }
        }
    }
    out
}

/// Paths added, removed, or with other bytes or mtime between two snapshots.
pub fn changed_files(before: &Snapshot, after: &Snapshot) -> Vec<PathBuf> {
    let mut paths: Vec<&PathBuf> = before.keys().chain(after.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| before.get(*p) != after.get(*p))
        .cloned()
        .collect()
}

pub fn assert_unchanged(before: &[Snapshot], after: &[Snapshot]) {
    for (b, a) in before.iter().zip(after) {
        let c = changed_files(b, a);
        assert!(c.is_empty(), "files changed: {c:?}");
    }
}

/// Names in `dir` that look like mergec's temporary or replaced directories.
pub fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.contains(".mergec-tmp-") || n.contains(".mergec-old-"))
        .collect()
}

/// What mergec.json's `content_blake3` holds for `dir`'s tensors that `keep` selects:
/// BLAKE3 over their names in order, each followed by a zero byte and the BLAKE3 of its
/// stored bytes.
#[allow(dead_code)]
pub fn content_blake3(dir: &Path, keep: impl Fn(&str) -> bool) -> String {
    let ck = mergec::runtime::safetensors::Checkpoint::open(dir).unwrap();
    let mut names: Vec<&str> = ck.names().filter(|n| keep(n)).collect();
    names.sort();
    let mut h = blake3::Hasher::new();
    for n in names {
        h.update(n.as_bytes());
        h.update(&[0]);
        h.update(blake3::hash(ck.raw_bytes(n).unwrap()).as_bytes());
    }
    h.finalize().to_hex().to_string()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `.safetensors` files of a model directory, sorted.
pub fn weight_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    v.sort();
    v
}

pub fn read_json(path: &Path) -> Json {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Makes a FIFO (named pipe) at `path`: an input that blocks a plain read forever.
pub fn mkfifo(path: &std::path::Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {}", path.display());
}
