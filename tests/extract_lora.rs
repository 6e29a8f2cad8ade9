//! `mergec extract-lora` (issue 18, item 4): a fine-tuned model's task vector as a PEFT
//! LoRA adapter. On a tiny llama whose projections were moved by planted low-rank
//! updates: the adapter at the planted rank recovers every update (and mergec's adapter
//! loader then computes the fine-tuned model's log-probabilities); at a lower rank each
//! tensor keeps exactly the planted energy; the bytes do not depend on --threads; bad
//! inputs fail cleanly and write nothing. With `MERGEC_PEFT_TEST=1` and the `dpo` venv,
//! `scripts/peft_lora_check.py` loads the adapter with PEFT, merges it and compares.

#[path = "common/ckpt.rs"]
mod ckpt;
#[path = "common/tiny_llama.rs"]
mod tiny_llama;
#[path = "common/venv.rs"]
mod venv;

use ckpt::{fails, leftovers, mergec_in, ok, read_json, stderr};
use mergec::develop::local::{LocalGenerator, LocalSettings};
use mergec::runtime::safetensors::{Checkpoint, Dtype, TensorMap, write};
use std::collections::BTreeMap;
use std::path::Path;
use tiny_llama::write_tiny_model;

/// The planted singular values of every changed projection (rank 4).
const SIGMA: [f64; 4] = [0.8, 0.4, 0.2, 0.1];
const PROJ: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];
const PROGRAMS: [&str; 2] = [
    "merge m(base: Tensor, models: [Tensor]) -> Tensor {\n  return base + mean(models - base)\n}",
    "merge r(base: Tensor, models: [Tensor]) -> Tensor {\n  return max(models)\n}",
];

fn weight_name(layer: usize, proj: &str) -> String {
    let group = if proj.ends_with("_proj") && ["gate_proj", "up_proj", "down_proj"].contains(&proj)
    {
        "mlp"
    } else {
        "self_attn"
    };
    format!("model.layers.{layer}.{group}.{proj}.weight")
}

/// `k` orthonormal vectors of length `n` (Gram-Schmidt on seeded normals), f64.
fn orthonormal(n: usize, k: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = ckpt::Rng::new(seed);
    let mut out: Vec<Vec<f64>> = vec![];
    while out.len() < k {
        let mut v: Vec<f64> = (0..n).map(|_| rng.normal() as f64).collect();
        for u in &out {
            let d: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= d * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        v.iter_mut().for_each(|a| *a /= norm);
        out.push(v);
    }
    out
}

/// The planted update of an `rows x cols` weight: `sum_i SIGMA[i] u_i v_i^T`, row-major.
fn planted(rows: usize, cols: usize, seed: u64) -> Vec<f64> {
    let (u, v) = (orthonormal(rows, 4, seed), orthonormal(cols, 4, seed + 1));
    let mut d = vec![0.0; rows * cols];
    for (k, s) in SIGMA.iter().enumerate() {
        for i in 0..rows {
            for j in 0..cols {
                d[i * cols + j] += s * u[k][i] * v[k][j];
            }
        }
    }
    d
}

/// Which tensors the fine-tune moves, and how.
struct Tune {
    /// Projections changed (in every layer unless `only_layer0`).
    projections: &'static [&'static str],
    only_layer0: &'static [&'static str],
    /// Also move the final norm and the embeddings (not LoRA-representable).
    others: bool,
}

const ALL: Tune = Tune {
    projections: &PROJ,
    only_layer0: &[],
    others: false,
};

/// Writes the base (a tiny llama, f32) and a fine-tune of it; returns the exact
/// task vector of each changed projection (`model - base` as stored, in f64).
fn write_pair(root: &Path, tune: &Tune) -> BTreeMap<String, Vec<f64>> {
    let (base, model) = (root.join("base"), root.join("model"));
    write_tiny_model(&base, 3, 0.2);
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(base.join(f), model.join(f)).unwrap();
    }
    let ck = Checkpoint::open(&base).unwrap();
    let mut map = TensorMap::new();
    let mut deltas = BTreeMap::new();
    for (i, info) in ck.tensors().enumerate() {
        let t = ck.read_f32(&info.name).unwrap();
        let mut data = t.data.clone();
        let moved = (0..2).flat_map(|l| {
            tune.projections
                .iter()
                .filter(move |p| l == 0 || !tune.only_layer0.contains(p))
                .map(move |p| weight_name(l, p))
        });
        if moved.clone().any(|n| n == info.name) {
            let d = planted(t.shape[0], t.shape[1], 100 + i as u64);
            for (x, dx) in data.iter_mut().zip(&d) {
                *x += *dx as f32;
            }
            let exact = data
                .iter()
                .zip(&t.data)
                .map(|(m, b)| (*m - *b) as f64)
                .collect();
            deltas.insert(info.name.clone(), exact);
        } else if tune.others && (info.name.contains("norm") || info.name.contains("embed")) {
            data.iter_mut().for_each(|x| *x *= 1.01);
        }
        map.insert(info.name.clone(), (t.shape.clone(), data));
    }
    write(model.join("model.safetensors"), &map, Dtype::F32).unwrap();
    deltas
}

/// `scale * B A` of the adapter in `dir` for the weight `name`, row-major f64.
fn adapter_delta(dir: &Path, name: &str) -> Vec<f64> {
    let cfg = read_json(&dir.join("adapter_config.json"));
    let scale = cfg["lora_alpha"].as_f64().unwrap() / cfg["r"].as_f64().unwrap();
    let ck = Checkpoint::open(dir.join("adapter_model.safetensors")).unwrap();
    let key = format!("base_model.model.{}", name.strip_suffix(".weight").unwrap());
    let a = ck.read_f32(&format!("{key}.lora_A.weight")).unwrap();
    let b = ck.read_f32(&format!("{key}.lora_B.weight")).unwrap();
    let (r, cols, rows) = (a.shape[0], a.shape[1], b.shape[0]);
    assert_eq!(b.shape, [rows, r]);
    let mut d = vec![0.0; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            d[i * cols + j] = scale
                * (0..r)
                    .map(|k| b.data[i * r + k] as f64 * a.data[k * cols + j] as f64)
                    .sum::<f64>();
        }
    }
    d
}

/// The base with the adapter `adapter` folded in (`W + scale B A` in f64), as `folded/`.
fn write_folded(root: &Path, adapter: &str) -> std::path::PathBuf {
    let (base, out) = (root.join("base"), root.join("folded"));
    std::fs::create_dir_all(&out).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(base.join(f), out.join(f)).unwrap();
    }
    let ck = Checkpoint::open(&base).unwrap();
    let mut map = TensorMap::new();
    for info in ck.tensors() {
        let mut t = ck.read_f32(&info.name).unwrap();
        if PROJ
            .iter()
            .any(|p| info.name.ends_with(&format!("{p}.weight")))
        {
            let d = adapter_delta(&root.join(adapter), &info.name);
            t.data = t
                .data
                .iter()
                .zip(&d)
                .map(|(w, x)| (*w as f64 + x) as f32)
                .collect();
        }
        map.insert(info.name.clone(), (t.shape, t.data));
    }
    write(out.join("model.safetensors"), &map, Dtype::F32).unwrap();
    out
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn extract(root: &Path, out: &str, rank: usize, extra: &[&str]) -> serde_json::Value {
    let r = rank.to_string();
    let mut args = vec![
        "extract-lora",
        "--base",
        "base",
        "--model",
        "model",
        "--rank",
        &r,
        "--out",
        out,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let o = ok(mergec_in(root, &args));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn the_planted_rank_recovers_every_update_and_a_lower_rank_keeps_the_planted_energy() {
    let root = tempfile::tempdir().unwrap();
    let deltas = write_pair(root.path(), &ALL);
    assert_eq!(deltas.len(), 14);
    for svd in ["auto", "randomized"] {
        let out = format!("full-{svd}");
        let table = extract(root.path(), &out, 4, &["--svd", svd]);
        let rows = table.as_array().unwrap();
        assert_eq!(rows.len(), 14);
        let dir = root.path().join(&out);
        for row in rows {
            let name = row["tensor"].as_str().unwrap();
            let got = adapter_delta(&dir, name);
            let want = &deltas[name];
            let err = max_abs_diff(&got, want);
            assert!(err < 1e-5 * SIGMA[0], "{svd} {name}: max abs err {err}");
            let e = row["energy"].as_f64().unwrap();
            assert!((e - 1.0).abs() < 1e-5, "{svd} {name}: energy {e}");
            let method = row["svd"].as_str().unwrap();
            // Tiny matrices: auto is exact; randomized is used where rank + 10 < min side.
            let small = row["shape"][0]
                .as_u64()
                .unwrap()
                .min(row["shape"][1].as_u64().unwrap());
            let want_method = if svd == "randomized" && small > 14 {
                "randomized"
            } else {
                "exact"
            };
            assert_eq!(method, want_method, "{name}");
        }
        let cfg = read_json(&dir.join("adapter_config.json"));
        assert_eq!(cfg["r"], 4);
        assert_eq!(cfg["lora_alpha"], 4);
        assert_eq!(cfg["peft_type"], "LORA");
        assert_eq!(cfg["task_type"], "CAUSAL_LM");
        assert_eq!(cfg["target_modules"], serde_json::json!(PROJ));
        assert!(
            cfg["base_model_name_or_path"]
                .as_str()
                .unwrap()
                .ends_with("base")
        );
    }
    // Rank 2 keeps (0.8^2 + 0.4^2) / (sum of all four squares) of each update.
    let want = (SIGMA[0].powi(2) + SIGMA[1].powi(2)) / SIGMA.iter().map(|s| s * s).sum::<f64>();
    for svd in ["exact", "randomized"] {
        let out = format!("half-{svd}");
        let table = extract(root.path(), &out, 2, &["--svd", svd]);
        for row in table.as_array().unwrap() {
            let e = row["energy"].as_f64().unwrap();
            assert!(
                (e - want).abs() < 1e-5,
                "{svd} {}: {e} vs {want}",
                row["tensor"]
            );
            assert!((row["sigma_first"].as_f64().unwrap() - SIGMA[0]).abs() < 1e-5);
            assert!((row["sigma_last"].as_f64().unwrap() - SIGMA[1]).abs() < 1e-5);
        }
        let dir = root.path().join(&out);
        let ck = Checkpoint::open(dir.join("adapter_model.safetensors")).unwrap();
        let a = ck
            .info("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight")
            .unwrap();
        assert_eq!(a.shape, [2, 64]);
        assert_eq!(a.dtype, "F32", "the base's dtype");
    }
}

#[test]
fn the_adapter_loads_in_mergec_and_computes_the_fine_tuned_models_log_probabilities() {
    let root = tempfile::tempdir().unwrap();
    write_pair(root.path(), &ALL);
    extract(root.path(), "adapter", 4, &[]);
    let p = root.path();
    let mut g = LocalGenerator::load(&p.join("base"), LocalSettings::default()).unwrap();
    let before = g.logprobs("write a merge", &PROGRAMS).unwrap();
    g.load_adapter(&p.join("adapter")).unwrap();
    assert_eq!(g.settings.lora.rank, 4);
    assert_eq!(g.settings.lora.targets, PROJ);
    let with = g.logprobs("write a merge", &PROGRAMS).unwrap();
    let tuned = LocalGenerator::load(&p.join("model"), LocalSettings::default()).unwrap();
    let want = tuned.logprobs("write a merge", &PROGRAMS).unwrap();
    // What PEFT computes: the base with `W + scale B A` folded in (f64, here).
    let recon = write_folded(p, "adapter");
    let folded = LocalGenerator::load(&recon, LocalSettings::default()).unwrap();
    let fold = folded.logprobs("write a merge", &PROGRAMS).unwrap();
    println!("log-probs: base {before:?}, adapter {with:?}, folded {fold:?}, fine-tuned {want:?}");
    for i in 0..PROGRAMS.len() {
        // The fine-tune moves the log-probabilities by ~0.01; the adapter reproduces them
        // to ~1e-6 (the SVD's f32 rounding).
        assert!((want[i] - before[i]).abs() > 5e-3, "{want:?} {before:?}");
        assert!((with[i] - fold[i]).abs() < 1e-5, "{with:?} vs {fold:?}");
        assert!((with[i] - want[i]).abs() < 1e-5, "{with:?} vs {want:?}");
    }
    // The same through the command line: `mergec generate --adapter --logprobs --raw`.
    let recs = p.join("recs.jsonl");
    std::fs::write(
        &recs,
        "{\"prompt\": \"12+3=\", \"completion\": \"15\"}\n{\"prompt\": \"ab\", \"completion\": \"cd\"}\n",
    )
    .unwrap();
    let lp = |model: &str, adapter: Option<&str>| -> Vec<f64> {
        let mut args = vec!["generate", model, "--logprobs", "recs.jsonl", "--raw"];
        if let Some(a) = adapter {
            args.extend(["--adapter", a]);
        }
        let o = ok(mergec_in(p, &args));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["logprob"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    let (cli, tuned_cli) = (lp("base", Some("adapter")), lp("model", None));
    assert_eq!(cli.len(), 2);
    for (a, b) in cli.iter().zip(&tuned_cli) {
        assert!((a - b).abs() < 1e-5, "{cli:?} vs {tuned_cli:?}");
    }
}

#[test]
fn unchanged_tensors_and_other_differences_are_reported_not_written() {
    let root = tempfile::tempdir().unwrap();
    // o_proj never moves; q_proj only in layer 0; a norm and the embeddings move too.
    let tune = Tune {
        projections: &[
            "q_proj",
            "k_proj",
            "v_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        only_layer0: &["q_proj"],
        others: true,
    };
    write_pair(root.path(), &tune);
    let o = ok(mergec_in(
        root.path(),
        &[
            "extract-lora",
            "--base",
            "base",
            "--model",
            "model",
            "--rank",
            "3",
            "--out",
            "a",
        ],
    ));
    let e = stderr(&o);
    assert!(e.contains("o_proj equal the base in every layer"), "{e}");
    assert!(e.contains("embedding: 1"), "{e}");
    assert!(e.contains("norm: 5"), "{e}");
    assert!(e.contains("energy kept: min"), "{e}");
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("model.layers.1.self_attn.q_proj.weight"))
        .unwrap();
    assert!(line.trim_start().starts_with("1.000000"), "{line}");
    assert!(line.ends_with("(unchanged)"), "{line}");
    assert!(!text.contains("NaN"), "{text}");
    let dir = root.path().join("a");
    let cfg = read_json(&dir.join("adapter_config.json"));
    assert_eq!(
        cfg["target_modules"],
        serde_json::json!([
            "q_proj",
            "k_proj",
            "v_proj",
            "gate_proj",
            "up_proj",
            "down_proj"
        ])
    );
    let ck = Checkpoint::open(dir.join("adapter_model.safetensors")).unwrap();
    assert_eq!(ck.len(), 2 * 2 * 6);
    let zero = ck
        .read_f32("base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight")
        .unwrap();
    assert!(zero.data.iter().all(|x| *x == 0.0));
    let prov = read_json(&dir.join("mergec.json"));
    assert_eq!(prov["unchanged_modules"], serde_json::json!(["o_proj"]));
    assert_eq!(prov["skipped"].as_array().unwrap().len(), 6);
    // mergec loads it (every layer of every target module is there).
    let mut g = LocalGenerator::load(&root.path().join("base"), LocalSettings::default()).unwrap();
    g.load_adapter(&dir).unwrap();
    // --dtype bf16: the same tensors, stored as BF16.
    ok(mergec_in(
        root.path(),
        &[
            "extract-lora",
            "--base",
            "base",
            "--model",
            "model",
            "--rank",
            "3",
            "--out",
            "b",
            "--dtype",
            "bf16",
            "--quiet",
        ],
    ));
    let b = Checkpoint::open(root.path().join("b/adapter_model.safetensors")).unwrap();
    assert!(b.tensors().all(|t| t.dtype == "BF16"));
}

#[test]
fn the_adapter_is_the_same_bytes_for_any_thread_count() {
    let root = tempfile::tempdir().unwrap();
    write_pair(root.path(), &ALL);
    for svd in ["auto", "randomized"] {
        let mut files = vec![];
        for threads in ["1", "2", "3"] {
            let out = format!("t{threads}-{svd}");
            extract(root.path(), &out, 3, &["--threads", threads, "--svd", svd]);
            files.push(
                std::fs::read(root.path().join(&out).join("adapter_model.safetensors")).unwrap(),
            );
        }
        assert!(files.iter().all(|f| *f == files[0]), "{svd}");
    }
}

/// A failed run: exit 1, the expected words, nothing at `out` and no temporaries.
/// The arguments as `&str`s.
fn strs(a: &[String]) -> Vec<&str> {
    a.iter().map(String::as_str).collect()
}

fn refused(root: &Path, args: &[&str], expect: &[&str]) {
    let e = fails(mergec_in(root, args));
    for s in expect {
        assert!(e.contains(s), "`{}`: no {s:?} in\n{e}", args.join(" "));
    }
    assert!(!e.contains("panicked"), "{e}");
    assert!(leftovers(root).is_empty(), "{:?}", leftovers(root));
}

#[test]
fn bad_inputs_fail_cleanly_and_write_nothing() {
    let root = tempfile::tempdir().unwrap();
    let p = root.path();
    write_pair(p, &ALL);
    let args = |model: &str, rank: &str, out: &str| -> Vec<String> {
        [
            "extract-lora",
            "--base",
            "base",
            "--model",
            model,
            "--rank",
            rank,
            "--out",
            out,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |a: Vec<String>, expect: &[&str]| {
        refused(p, &strs(&a), expect);
        assert!(!p.join("out").exists());
    };
    run(args("model", "0", "out"), &["--rank must be at least 1"]);
    run(args("nowhere", "2", "out"), &["nowhere"]);
    run(
        args("model", "17", "out"),
        &[
            "--rank 17 is larger than",
            "k_proj",
            "16 x 32",
            "use --rank 16 or less",
        ],
    );
    run(args("model", "2", "base/adapter"), &["overlaps the input"]);
    // A fine-tune of another shape.
    let other = p.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let ck = Checkpoint::open(p.join("model")).unwrap();
    let mut map = TensorMap::new();
    for t in ck.tensors() {
        let mut x = ck.read_f32(&t.name).unwrap();
        if t.name == "model.layers.1.mlp.up_proj.weight" {
            x.shape = vec![32, 64];
        }
        if t.name != "model.layers.0.input_layernorm.weight" {
            map.insert(t.name.clone(), (x.shape, x.data));
        }
    }
    write(other.join("model.safetensors"), &map, Dtype::F32).unwrap();
    run(
        args("other", "2", "out"),
        &[
            "1 tensor of --base",
            "`model.layers.0.input_layernorm.weight`",
            "not in --model",
        ],
    );
    map.insert(
        "model.layers.0.input_layernorm.weight".into(),
        (vec![32], vec![1.0; 32]),
    );
    write(other.join("model.safetensors"), &map, Dtype::F32).unwrap();
    run(
        args("other", "2", "out"),
        &[
            "1 tensor has another shape in --model",
            "`model.layers.1.mlp.up_proj.weight` is [64, 32] in --base, [32, 64] in --model",
        ],
    );
    // A corrupt file.
    let bad = p.join("bad.safetensors");
    std::fs::write(&bad, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    run(args("bad.safetensors", "2", "out"), &["bad.safetensors"]);
    // A non-empty --out is kept as it was.
    std::fs::create_dir_all(p.join("taken")).unwrap();
    std::fs::write(p.join("taken/notes.txt"), "mine").unwrap();
    run(args("model", "2", "taken"), &["`notes.txt`", "--force"]);
    assert_eq!(
        std::fs::read_to_string(p.join("taken/notes.txt")).unwrap(),
        "mine"
    );
    // ... and with --force too: notes.txt is not part of a model.
    let mut force = args("model", "2", "taken");
    force.extend(["--force", "--quiet"].map(String::from));
    run(force.clone(), &["`notes.txt`", "not part of a model"]);
    assert!(p.join("taken/notes.txt").is_file());
    // A previous adapter is replaced with --force.
    std::fs::remove_file(p.join("taken/notes.txt")).unwrap();
    std::fs::write(p.join("taken/adapter_model.safetensors"), "old").unwrap();
    ok(mergec_in(p, &strs(&force)));
    assert!(p.join("taken/adapter_config.json").is_file());
    // The model equal to the base: nothing to extract.
    std::fs::create_dir_all(p.join("copy")).unwrap();
    std::fs::copy(
        p.join("base/model.safetensors"),
        p.join("copy/model.safetensors"),
    )
    .unwrap();
    run(args("copy", "2", "same"), &["no task vector"]);
    assert!(!p.join("same").exists());
    // Usage errors are clap's: exit 2 (no --rank, a negative one, an unknown --svd).
    let mut no_rank = args("model", "2", "x");
    no_rank.drain(5..7); // "--rank", "2"
    let mut bad_svd = args("model", "2", "x");
    bad_svd.extend(["--svd", "fast"].map(String::from));
    for bad in [no_rank, args("model", "-1", "x"), bad_svd] {
        let bad = strs(&bad);
        let o = mergec_in(p, &bad);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    }
}

/// PEFT itself: `MERGEC_PEFT_TEST=1 cargo test --release --test extract_lora -- --nocapture`
/// (needs the `dpo` venv: `python3 scripts/venv.py dpo`).
#[test]
fn peft_loads_merges_and_matches_the_fine_tuned_weights() {
    if std::env::var("MERGEC_PEFT_TEST").as_deref() != Ok("1") {
        eprintln!("skipped: set MERGEC_PEFT_TEST=1 to check the adapter with PEFT (the dpo venv)");
        return;
    }
    let py = match venv::python("dpo") {
        Ok(p) => p,
        Err(e) => panic!("MERGEC_PEFT_TEST=1 but the dpo venv could not be made: {e}"),
    };
    let root = tempfile::tempdir().unwrap();
    let p = root.path();
    write_pair(p, &ALL);
    extract(p, "full", 4, &[]);
    extract(p, "half", 2, &["--dtype", "bf16"]);
    for (adapter, full) in [("full", true), ("half", false)] {
        let mut cmd = std::process::Command::new(&py);
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peft_lora_check.py"))
            .args(["--base", "base", "--adapter", adapter, "--model", "model"])
            .current_dir(p);
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        for l in text.lines() {
            println!("{adapter}: {l}");
        }
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = text.lines().last().unwrap();
        let s: serde_json::Value = serde_json::from_str(last).unwrap();
        assert!(
            s["max_abs_diff_merged_vs_formula"].as_f64().unwrap() < 1e-6,
            "{s}"
        );
        assert_eq!(s["untouched_differ"].as_u64().unwrap(), 0, "{s}");
        if full {
            assert!(
                s["max_abs_diff_merged_vs_model"].as_f64().unwrap() < 1e-5,
                "{s}"
            );
        }
    }
}

// ---- the SVD itself (mergec::runtime::lora::svd) on larger matrices ----

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use mergec::cancel::Cancel;
use mergec::runtime::lora::svd::{SvdMethod, Truncated, orthonormal as qr_basis, truncated_svd};

/// `m x n` of rank `r` with singular values `sigma` (orthonormal factors from QR).
fn planted_mat(m: usize, n: usize, sigma: &[f32], seed: u64) -> Mat<f32> {
    let mut rng = mergec::semantics::rng::SplitMix64::new(seed);
    let r = sigma.len();
    let g = Mat::<f32>::from_fn(m, r, |_, _| rng.normal());
    let h = Mat::<f32>::from_fn(n, r, |_, _| rng.normal());
    let (u, v) = (qr_basis(g.as_ref()), qr_basis(h.as_ref()));
    let us = Mat::<f32>::from_fn(m, r, |i, j| u[(i, j)] * sigma[j]);
    let mut d = Mat::<f32>::zeros(m, n);
    matmul(&mut d, Accum::Replace, &us, v.transpose(), 1.0, Par::Seq);
    d
}

fn rel_err(d: &Mat<f32>, t: &Truncated) -> f64 {
    let (m, n) = d.shape();
    let us = Mat::<f32>::from_fn(m, t.s.len(), |i, j| t.u[(i, j)] * t.s[j]);
    let mut rec = Mat::<f32>::zeros(m, n);
    matmul(
        &mut rec,
        Accum::Replace,
        &us,
        t.v.transpose(),
        1.0,
        Par::Seq,
    );
    let (mut num, mut den) = (0f64, 0f64);
    for j in 0..n {
        for i in 0..m {
            num += ((rec[(i, j)] - d[(i, j)]) as f64).powi(2);
            den += (d[(i, j)] as f64).powi(2);
        }
    }
    (num / den).sqrt()
}

#[test]
fn both_methods_recover_an_exact_low_rank_matrix() {
    let sigma = [5.0, 3.0, 2.0, 1.0, 0.5, 0.25];
    let d = planted_mat(300, 520, &sigma, 1);
    for method in [SvdMethod::Exact, SvdMethod::Randomized] {
        let t = truncated_svd(d.as_ref(), 6, method, 9, &Cancel::NEVER).unwrap();
        assert_eq!(t.exact, method == SvdMethod::Exact);
        assert!(rel_err(&d, &t) < 1e-5, "{method:?}: {}", rel_err(&d, &t));
        for (a, b) in t.s.iter().zip(sigma) {
            assert!((a - b).abs() < 1e-4 * sigma[0], "{:?} {sigma:?}", t.s);
        }
    }
}

#[test]
fn randomized_matches_exact_on_a_decaying_spectrum() {
    // Full rank with geometric decay: the top 8 carry most of the energy.
    let sigma: Vec<f32> = (0..200).map(|i| 0.7f32.powi(i)).collect();
    let d = planted_mat(400, 300, &sigma, 2);
    let ex = truncated_svd(d.as_ref(), 8, SvdMethod::Exact, 0, &Cancel::NEVER).unwrap();
    let ra = truncated_svd(d.as_ref(), 8, SvdMethod::Randomized, 0, &Cancel::NEVER).unwrap();
    for (a, b) in ex.s.iter().zip(&ra.s) {
        assert!((a - b).abs() < 1e-5, "{:?} {:?}", ex.s, ra.s);
    }
    // The same seed gives the same bits.
    let again = truncated_svd(d.as_ref(), 8, SvdMethod::Randomized, 0, &Cancel::NEVER).unwrap();
    assert_eq!(ra.s, again.s);
    assert_eq!(ra.u, again.u);
}

#[test]
fn auto_is_exact_for_small_matrices_and_near_full_ranks() {
    assert!(SvdMethod::Auto.is_exact(64, 4096, 8));
    assert!(SvdMethod::Auto.is_exact(1024, 4096, 520));
    assert!(!SvdMethod::Auto.is_exact(1024, 4096, 16));
    assert!(SvdMethod::Randomized.is_exact(20, 30, 12));
}
