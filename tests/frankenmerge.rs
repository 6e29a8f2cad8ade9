//! Frankenmerges: mergekit's `slices:` (layer ranges of one or several models stacked
//! into a deeper or shallower model) with `merge_method: passthrough`, or merged per
//! slice with another method.
//!
//! - passthrough: every output tensor is byte-equal to the source it comes from, layers
//!   renumbered in output order, embeddings from the first slice's model and the final
//!   norm from the last slice's (as mergekit), config.json's `num_hidden_layers` and
//!   `layer_types` following the layers, the slices recorded in mergec.json;
//! - a per-slice slerp (a `t` gradient over the slice) against the command line's slerp;
//! - a slice merged over different layers of two models (linear);
//! - errors: a range beyond a model's layers, sources of unequal lengths, an unknown
//!   model, passthrough over two sources, `models` and `slices` together.
//!
//! Run with `cargo test --release --test frankenmerge`.

#[path = "common/config_models.rs"]
mod config_models;

use config_models::*;
use mergec::cli::merge::run as cli_run;
use mergec::runtime::safetensors::Checkpoint;
use serde_json::Value as Json;
use std::path::Path;

/// The tensor names of one layer of the synthetic models (after `model.layers.N`).
fn layer_tensors(dir: &Path, layer: usize) -> Vec<String> {
    let prefix = format!("model.layers.{layer}.");
    Checkpoint::open(dir)
        .expect("open")
        .names()
        .filter_map(|n| n.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

fn raw(dir: &Path, name: &str) -> Vec<u8> {
    Checkpoint::open(dir)
        .expect("open")
        .raw_bytes(name)
        .expect("tensor")
        .to_vec()
}

fn json(path: &Path) -> Json {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read json")).expect("json")
}

/// Adds `layer_types` to a model's config.json.
fn set_layer_types(dir: &Path, types: &[&str]) {
    let path = dir.join("config.json");
    let mut c = json(&path);
    c["layer_types"] = serde_json::json!(types);
    std::fs::write(&path, c.to_string()).expect("write config.json");
}

const STACK: &str = "\
slices:
  - sources:
      - model: {m1}
        layer_range: [0, 2]
  - sources:
      - model: {m2}
        layer_range: [1, 2]
merge_method: passthrough
dtype: bfloat16
";

#[test]
fn passthrough_stacks_layers_byte_for_byte() {
    let m = Models::bf16();
    set_layer_types(&m.models[0], &["full_attention", "sliding_attention"]);
    set_layer_types(&m.models[1], &["sliding_attention", "full_attention"]);
    let cfg = m.write_config("stack.yml", STACK);
    let out = m.path("out");
    run_config(&cfg, &out, |_| {}).expect("passthrough merge");
    let (a, b) = (&m.models[0], &m.models[1]);
    // Output layer i comes from (model, layer).
    let origins = [(a, 0), (a, 1), (b, 1)];
    let names = layer_tensors(a, 0);
    assert!(names.len() >= 9, "{names:?}");
    for (i, (from, l)) in origins.iter().enumerate() {
        for n in &names {
            assert_eq!(
                raw(&out, &format!("model.layers.{i}.{n}")),
                raw(from, &format!("model.layers.{l}.{n}")),
                "output layer {i} `{n}`"
            );
        }
    }
    let ck = Checkpoint::open(&out).expect("output");
    assert!(ck.info("model.layers.3.mlp.up_proj.weight").is_err());
    let layers = ck.names().filter(|n| n.contains(".layers.")).count();
    assert_eq!(layers, 3 * names.len());
    // As mergekit: the embeddings from the first slice, the final norm from the last.
    let embed = "model.embed_tokens.weight";
    assert_eq!(raw(&out, embed), raw(a, embed));
    assert_eq!(raw(&out, "model.norm.weight"), raw(b, "model.norm.weight"));
    let config = json(&out.join("config.json"));
    assert_eq!(config["num_hidden_layers"], 3);
    assert_eq!(
        config["layer_types"],
        serde_json::json!(["full_attention", "sliding_attention", "full_attention"])
    );
    let prov = json(&out.join("mergec.json"));
    let slices = prov["extra"]["slices"].as_array().expect("slices recorded");
    assert_eq!(slices.len(), 2);
    assert_eq!(slices[1]["output_layers"], serde_json::json!([2, 3]));
    assert_eq!(
        slices[1]["sources"][0]["layer_range"],
        serde_json::json!([1, 2])
    );
}

#[test]
fn a_shallower_model_and_the_base_models_config() {
    let m = Models::bf16();
    let cfg = m.write_config(
        "one.yml",
        "slices:\n  - sources:\n      - model: {m2}\n        layer_range: [1, 2]\n\
         merge_method: passthrough\nbase_model: {base}\n",
    );
    let out = m.path("out");
    run_config(&cfg, &out, |_| {}).expect("merge");
    let n = "model.layers.0.self_attn.q_proj.weight";
    assert_eq!(
        raw(&out, n),
        raw(&m.models[1], "model.layers.1.self_attn.q_proj.weight")
    );
    // base_model gives config.json; the tensors outside the layers come from the slices.
    let config = json(&out.join("config.json"));
    assert_eq!(config["num_hidden_layers"], 1);
    let e = "model.embed_tokens.weight";
    assert_eq!(raw(&out, e), raw(&m.models[1], e));
}

#[test]
fn per_slice_slerp_follows_its_gradient() {
    let m = Models::bf16();
    let cfg = m.write_config(
        "slerp.yml",
        "\
slices:
  - sources:
      - model: {base}
        layer_range: [0, 2]
      - model: {m1}
        layer_range: [0, 2]
    parameters:
      t: [0.2, 0.8]
  - sources:
      - model: {base}
        layer_range: [1, 2]
merge_method: slerp
base_model: {base}
",
    );
    let out = m.path("out");
    run_config(&cfg, &out, |_| {}).expect("slerp slices");
    // Layer 0 of the slice is at t = 0.2 of the gradient, layer 1 at 0.8; the tensors
    // outside the layers at t = 0 (the embeddings, of the first slice).
    let reference = |t: &str| {
        let dir = m.path(&format!("ref-{t}"));
        let mut a = args("slerp", &dir);
        a.base = Some(m.base.clone());
        a.models = vec![m.models[0].clone()];
        a.sets = vec![format!("t={t}")];
        // The interpreter, as merged slices run (the compiled backends agree with it).
        a.backend = "interp".into();
        assert_eq!(cli_run(&a), 0);
        dir
    };
    let (r2, r8) = (reference("0.2"), reference("0.8"));
    for n in layer_tensors(&m.base, 0) {
        let (l0, l1) = (format!("model.layers.0.{n}"), format!("model.layers.1.{n}"));
        assert_eq!(raw(&out, &l0), raw(&r2, &l0), "{l0}");
        assert_eq!(raw(&out, &l1), raw(&r8, &l1), "{l1}");
        let l2 = format!("model.layers.2.{n}");
        assert_eq!(
            raw(&out, &l2),
            raw(&m.base, &l1),
            "{l2}: a copy of the base's layer 1"
        );
    }
    let e = "model.embed_tokens.weight";
    assert_eq!(raw(&out, e), raw(&r2, e));
    assert_eq!(json(&out.join("config.json"))["num_hidden_layers"], 3);
}

#[test]
fn a_slice_merges_different_layers_of_two_models() {
    let m = Models::bf16();
    let cfg = m.write_config(
        "linear.yml",
        "\
slices:
  - sources:
      - model: {m1}
        layer_range: [0, 1]
      - model: {m2}
        layer_range: [1, 2]
merge_method: linear
parameters:
  weight: 0.5
dtype: float32
",
    );
    let out = m.path("out");
    run_config(&cfg, &out, |_| {}).expect("linear slice");
    for n in layer_tensors(&m.base, 0) {
        let got = read(&out, &format!("model.layers.0.{n}"));
        let a = read(&m.models[0], &format!("model.layers.0.{n}"));
        let b = read(&m.models[1], &format!("model.layers.1.{n}"));
        for ((g, x), y) in got.iter().zip(&a).zip(&b) {
            assert!(
                (g - (x + y) / 2.0).abs() <= 1e-6 * (1.0 + g.abs()),
                "{n}: {g} {x} {y}"
            );
        }
    }
    assert_eq!(json(&out.join("config.json"))["num_hidden_layers"], 1);
}

fn error(m: &Models, yaml: &str) -> String {
    let cfg = m.write_config("bad.yml", yaml);
    let e = run_config(&cfg, &m.path("out"), |_| {}).expect_err("an error");
    assert!(!m.path("out").exists(), "nothing written");
    e
}

#[test]
fn errors_name_the_slice_the_model_and_what_to_do() {
    let m = Models::bf16();
    let beyond = error(&m, &STACK.replace("[1, 2]", "[1, 3]"));
    assert!(
        beyond.contains("slice 2") && beyond.contains("model-2") && beyond.contains("2 layers"),
        "{beyond}"
    );
    let unequal = error(
        &m,
        "slices:\n  - sources:\n      - model: {base}\n        layer_range: [0, 2]\n\
         \x20     - model: {m1}\n        layer_range: [0, 1]\nmerge_method: slerp\n\
         base_model: {base}\nparameters: {t: 0.5}\n",
    );
    assert!(
        unequal.contains("slice 1") && unequal.contains("as many layers"),
        "{unequal}"
    );
    let unknown = error(&m, &STACK.replace("{m2}", "no-such-model"));
    assert!(
        unknown.contains("line 6") && unknown.contains("`no-such-model` is not a local path"),
        "{unknown}"
    );
    let two = error(
        &m,
        "slices:\n  - sources:\n      - model: {m1}\n        layer_range: [0, 2]\n\
         \x20     - model: {m2}\n        layer_range: [0, 2]\nmerge_method: passthrough\n",
    );
    assert!(two.contains("slice 1") && two.contains("one"), "{two}");
    let empty = error(&m, &STACK.replace("[1, 2]", "[2, 2]"));
    assert!(
        empty.contains("line 7") && empty.contains("is empty"),
        "{empty}"
    );
    let both = error(&m, &format!("{STACK}models:\n  - model: {{m1}}\n"));
    assert!(both.contains("not both"), "{both}");
    let no_base = error(
        &m,
        "slices:\n  - sources:\n      - model: {m1}\n        layer_range: [0, 2]\n\
         \x20     - model: {m2}\n        layer_range: [0, 2]\nmerge_method: slerp\n\
         base_model: {base}\nparameters: {t: 0.5}\n",
    );
    assert!(
        no_base.contains("slice 1") && no_base.contains("not one of its sources"),
        "{no_base}"
    );
}
