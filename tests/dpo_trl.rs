//! LoRA adapters in PEFT's layout from elsewhere (TRL's `DPOTrainer` through
//! `scripts/dpo_train.py`): `mergec generate --adapter` takes rank, alpha and targets from
//! the adapter's `adapter_config.json` and computes what PEFT computes, refuses settings it
//! does not implement by name, and (with `MERGEC_DPO_TEST=1`, SmolLM2 and the `dpo` venv)
//! `scripts/dpo_check.py` trains with TRL, sees the held-out loss fall, and finds mergec's
//! log-probabilities of the held-out completions within 1e-3 of TRL's.

#[path = "common/venv.rs"]
mod venv;
use candle_core::{Device, Tensor};
use mergec::develop::generator::Generator;
use mergec::develop::local::{LocalGenerator, LocalSettings};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "common/tiny_llama.rs"]
mod tiny_llama;
use tiny_llama::write_char_model;

const CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789 +-*/=()[]{}<>,.:;_|!#\"\n`";
const RANK: usize = 4;
const ALPHA: f64 = 12.0;

/// Deterministic values in ±`scale`.
fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|j| {
            let x = mergec::semantics::mix64(seed ^ (j as u64).wrapping_mul(0x9E37));
            ((x >> 11) as f32 / (1u64 << 53) as f32 - 0.5) * 2.0 * scale
        })
        .collect()
}

/// A PEFT adapter as `save_pretrained` writes one: rank 4 on `v_proj` and `q_proj` (in
/// that order, with PEFT's other keys), both layers; returns its tensors by module path.
fn write_peft_adapter(model_dir: &Path, out: &Path) -> HashMap<String, (Tensor, Tensor)> {
    std::fs::create_dir_all(out).unwrap();
    let base =
        candle_core::safetensors::load(model_dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut tensors = HashMap::new();
    let mut mods = HashMap::new();
    for layer in 0..2 {
        for (k, name) in ["q_proj", "v_proj"].iter().enumerate() {
            let path = format!("model.layers.{layer}.self_attn.{name}");
            let (o, i) = base[&format!("{path}.weight")].dims2().unwrap();
            let seed = (layer * 2 + k) as u64;
            let a = Tensor::from_vec(values(seed, RANK * i, 0.3), (RANK, i), &Device::Cpu);
            let b = Tensor::from_vec(values(seed + 99, o * RANK, 0.3), (o, RANK), &Device::Cpu);
            let (a, b) = (a.unwrap(), b.unwrap());
            tensors.insert(format!("base_model.model.{path}.lora_A.weight"), a.clone());
            tensors.insert(format!("base_model.model.{path}.lora_B.weight"), b.clone());
            mods.insert(path, (a, b));
        }
    }
    candle_core::safetensors::save(&tensors, out.join("adapter_model.safetensors")).unwrap();
    let cfg = serde_json::json!({
        "peft_type": "LORA", "r": RANK, "lora_alpha": ALPHA,
        "target_modules": ["v_proj", "q_proj"], "lora_dropout": 0.0, "bias": "none",
        "task_type": "CAUSAL_LM", "use_dora": false, "use_rslora": false, "fan_in_fan_out": false,
        "rank_pattern": {}, "alpha_pattern": {}, "layers_to_transform": null,
        "modules_to_save": null, "init_lora_weights": true, "loftq_config": {},
        "inference_mode": true, "peft_version": "0.21.2"
    });
    std::fs::write(out.join("adapter_config.json"), cfg.to_string()).unwrap();
    mods
}

/// The model of `dir` with each adapter folded in by hand (`W + alpha/r B A`), to `out`.
fn write_merged(dir: &Path, mods: &HashMap<String, (Tensor, Tensor)>, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(dir.join(f), out.join(f)).unwrap();
    }
    let mut w =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    for (path, (a, b)) in mods {
        let key = format!("{path}.weight");
        let delta = (b.matmul(a).unwrap() * (ALPHA / RANK as f64)).unwrap();
        let merged = (&w[&key] + delta).unwrap();
        w.insert(key, merged);
    }
    candle_core::safetensors::save(&w, out.join("model.safetensors")).unwrap();
}

const PROGRAMS: [&str; 2] = [
    "merge m(base: Tensor, models: [Tensor]) -> Tensor {\n  return base + mean(models - base)\n}",
    "merge r(base: Tensor, models: [Tensor]) -> Tensor {\n  return max(models)\n}",
];

#[test]
fn a_peft_adapter_of_its_own_rank_and_targets_loads_and_computes_what_peft_does() {
    let root = tempfile::tempdir().unwrap();
    let (model, adapter, merged) = (
        root.path().join("model"),
        root.path().join("adapter"),
        root.path().join("merged"),
    );
    write_char_model(&model, 5, 0.2, CHARS);
    let mods = write_peft_adapter(&model, &adapter);
    write_merged(&model, &mods, &merged);
    // The run's settings (rank 8, every projection) do not describe the adapter: its
    // config does.
    let mut g = LocalGenerator::load(&model, LocalSettings::default()).unwrap();
    let before = g.logprobs("write a merge", &PROGRAMS).unwrap();
    g.load_adapter(&adapter).unwrap();
    assert_eq!(g.settings.lora.rank, RANK);
    assert_eq!(g.settings.lora.alpha, ALPHA);
    assert_eq!(g.settings.lora.targets, ["q_proj", "v_proj"]);
    assert!(g.id().contains("+lora4@"), "{}", g.id());
    assert_eq!(
        g.adapter_parameters(),
        2 * (RANK * 32 + 32 * RANK + RANK * 32 + 16 * RANK)
    );
    let with = g.logprobs("write a merge", &PROGRAMS).unwrap();
    let m = LocalGenerator::load(&merged, LocalSettings::default()).unwrap();
    let want = m.logprobs("write a merge", &PROGRAMS).unwrap();
    for i in 0..PROGRAMS.len() {
        assert!((with[i] - before[i]).abs() > 0.1, "{with:?} {before:?}");
        assert!((with[i] - want[i]).abs() < 1e-3, "{with:?} {want:?}");
    }
    // Saved by mergec and loaded again: the same function.
    let again = root.path().join("again");
    g.save_adapter(&again).unwrap();
    let mut h = LocalGenerator::load(&model, LocalSettings::default()).unwrap();
    h.load_adapter(&again).unwrap();
    assert_eq!(h.logprobs("write a merge", &PROGRAMS).unwrap(), with);
}

/// `load_adapter`'s error for the adapter of `write_peft_adapter` with its config edited.
fn load_error(edit: impl Fn(&mut serde_json::Value), drop_tensor: bool) -> String {
    let root = tempfile::tempdir().unwrap();
    let (model, adapter) = (root.path().join("model"), root.path().join("adapter"));
    write_char_model(&model, 5, 0.2, CHARS);
    write_peft_adapter(&model, &adapter);
    let f = adapter.join("adapter_config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&f, cfg.to_string()).unwrap();
    if drop_tensor {
        let w = adapter.join("adapter_model.safetensors");
        let mut t = candle_core::safetensors::load(&w, &Device::Cpu).unwrap();
        t.remove("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight");
        candle_core::safetensors::save(&t, &w).unwrap();
    }
    let mut g = LocalGenerator::load(&model, LocalSettings::default()).unwrap();
    g.load_adapter(&adapter).unwrap_err()
}

/// An edit of an adapter's config.
type Edit = Box<dyn Fn(&mut serde_json::Value)>;

#[test]
fn adapter_settings_mergec_does_not_implement_are_refused_by_name() {
    let cases: Vec<(Edit, bool, &str)> = vec![
        (Box::new(|c| c["use_dora"] = true.into()), false, "use_dora"),
        (
            Box::new(|c| c["use_rslora"] = true.into()),
            false,
            "use_rslora",
        ),
        (
            Box::new(|c| c["target_modules"] = serde_json::json!(["q_proj", "lm_head"])),
            false,
            "target module `lm_head`",
        ),
        (
            Box::new(|c| c["rank_pattern"] = serde_json::json!({"q_proj": 8})),
            false,
            "rank_pattern",
        ),
        (
            Box::new(|c| c["peft_type"] = "IA3".into()),
            false,
            "peft_type `IA3`",
        ),
        (Box::new(|c| c["r"] = 8.into()), false, "the model's is"),
        (
            Box::new(|c| c["target_modules"] = serde_json::json!(["q_proj"])),
            false,
            "is not a LoRA tensor",
        ),
        (Box::new(|_| {}), true, "is missing"),
    ];
    for (edit, drop, want) in cases {
        let e = load_error(edit, drop);
        assert!(e.contains(want), "want `{want}` in: {e}");
    }
}

fn smollm2() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    p.is_file().then_some(p)
}

/// TRL's DPO on SmolLM2-135M for 8 steps (CPU, about 7 minutes on 2 cores) against mergec:
/// `MERGEC_DPO_TEST=1 cargo test --release --test dpo_trl -- --nocapture`.
#[test]
fn trl_dpo_lowers_the_held_out_loss_and_mergec_matches_its_log_probabilities() {
    if std::env::var("MERGEC_DPO_TEST").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set MERGEC_DPO_TEST=1 to train with TRL (about 7 minutes on 2 cores, \
             and the dpo venv: scripts/venv.py dpo)"
        );
        return;
    }
    let Some(model) = smollm2() else {
        eprintln!("skipped: assets/smollm2 not fetched (scripts/fetch-assets.sh)");
        return;
    };
    let py = match venv::python("dpo") {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipped: the dpo venv could not be made: {e}");
            return;
        }
    };
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dpo-check");
    let t0 = std::time::Instant::now();
    let out = Command::new(&py)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dpo_check.py"))
        .args(["--mergec", env!("CARGO_BIN_EXE_mergec"), "--model"])
        .arg(&model)
        .arg("--work")
        .arg(&work)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for l in stdout.lines().filter(|l| l.starts_with("dpo_check:")) {
        println!("{l}");
    }
    println!("dpo_trl: {:.0} s", t0.elapsed().as_secs_f64());
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("summary.json")).unwrap()).unwrap();
    let held = summary["heldout_loss"].as_array().unwrap();
    let loss = |i: usize| held[i][1].as_f64().unwrap();
    assert!(loss(held.len() - 1) < loss(0), "{held:?}");
    assert!(summary["max_abs_diff_trl"].as_f64().unwrap() <= 1e-3);
}
