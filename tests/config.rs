//! `mergec merge CONFIG.yml`: mergekit-style YAML configs.
//!
//! - every stdlib method that mergekit has: a config and the equivalent command line give
//!   byte-identical shards (several shards; bf16 and f32 inputs);
//! - gradients and filters against hand-computed per-layer values;
//! - errors and the example configs: tests/config_errors.rs.
//!
//! Run with `cargo test --release --test config`.

#[path = "common/config_models.rs"]
mod config_models;

use config_models::*;
use mergec::cli::merge::{MergeArgs, job_from_config, run as cli_run};
use mergec::runtime::safetensors::{Checkpoint, Dtype};
use mergec::runtime::synth::Arch;
use mergec::types::Const;
use std::path::{Path, PathBuf};

/// The equivalent command line: `mergec merge METHOD --base B --model M... --set ...`.
fn run_cli(
    method: &str,
    base: &Path,
    models: &[&Path],
    sets: &[&str],
    out: &Path,
    tweak: impl FnOnce(&mut MergeArgs),
) {
    let mut a = args(method, out);
    a.base = Some(base.to_path_buf());
    a.models = models.iter().map(|m| m.to_path_buf()).collect();
    a.sets = sets.iter().map(|s| s.to_string()).collect();
    tweak(&mut a);
    assert_eq!(cli_run(&a), 0, "command line `{method}` {sets:?} failed");
}

/// The output shards, by file name.
fn shards(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(out)
        .expect("output dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("model") && n.ends_with(".safetensors"))
        .map(|n| {
            let bytes = std::fs::read(out.join(&n)).expect("read shard");
            (n, bytes)
        })
        .collect();
    v.sort();
    v
}

fn assert_same_shards(a: &Path, b: &Path, what: &str) {
    let (x, y) = (shards(a), shards(b));
    assert!(!x.is_empty(), "{what}: no shards in {}", a.display());
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&x), names(&y), "{what}: shard names differ");
    for ((n, p), (_, q)) in x.iter().zip(&y) {
        assert!(
            p == q,
            "{what}: `{n}` differs between the config and the command line"
        );
    }
}

/// A config and a command line that must agree byte for byte.
struct Case {
    name: &'static str,
    yaml: &'static str,
    method: &'static str,
    /// Indices into [base, m1, m2, m3]: the command line's --base and --model list.
    base: usize,
    models: &'static [usize],
    sets: &'static [&'static str],
}

fn check_cases(m: &Models, cases: &[Case], tweak: impl Fn(&mut MergeArgs)) {
    let all: Vec<&Path> = std::iter::once(m.base.as_path())
        .chain(m.models.iter().map(PathBuf::as_path))
        .collect();
    for c in cases {
        let config = m.write_config(&format!("{}.yml", c.name), c.yaml);
        let from_config = m.path(&format!("{}-config", c.name));
        let from_cli = m.path(&format!("{}-cli", c.name));
        run_config(&config, &from_config, &tweak).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let models: Vec<&Path> = c.models.iter().map(|&i| all[i]).collect();
        run_cli(c.method, all[c.base], &models, c.sets, &from_cli, &tweak);
        assert!(
            shards(&from_config).len() > 1,
            "{}: expected several shards",
            c.name
        );
        assert_same_shards(&from_config, &from_cli, c.name);
    }
}

const GTA_CASES: &[Case] = &[
    Case {
        name: "task_arithmetic",
        yaml: "merge_method: task_arithmetic\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters: {weight: 0.7, density: 0.5}\n  - model: {m2}\n    parameters: {weight: 0.4}\n  - model: {base}\nparameters:\n  lambda: 0.8\n  normalize: false\n  int8_mask: true\n",
        method: "task_arithmetic",
        base: 0,
        models: &[1, 2],
        sets: &["weight=[0.7,0.4]", "lambda=0.8", "normalize=false"],
    },
    Case {
        name: "ties",
        yaml: "merge_method: ties\nbase_model: {base}\nmodels:\n  - model: {base}\n  - model: {m1}\n    parameters:\n      weight: 0.6\n      density: 0.5\n  - model: {m2}\n    parameters:\n      weight: 0.3\n      density: 0.7\n  - model: {m3}\n    parameters:\n      weight: 0.5\n      density: 0.3\nparameters:\n  normalize: true\n  int8_mask: true\n",
        method: "ties",
        base: 0,
        models: &[1, 2, 3],
        sets: &[
            "weight=[0.6,0.3,0.5]",
            "density=[0.5,0.7,0.3]",
            "normalize=true",
        ],
    },
    Case {
        name: "dare_linear",
        yaml: "merge_method: dare_linear\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters: {weight: 0.5}\n  - model: {m2}\n    parameters: {weight: 0.5}\nparameters: {density: 0.6, rescale: true, lambda: 1.1}\n",
        method: "dare_linear",
        base: 0,
        models: &[1, 2],
        sets: &[
            "weight=[0.5,0.5]",
            "density=0.6",
            "rescale=true",
            "lambda=1.1",
        ],
    },
    Case {
        name: "dare_ties",
        yaml: "merge_method: dare_ties\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters: {weight: 0.5, density: 0.5}\n  - model: {m2}\n    parameters: {weight: 0.8, density: 0.9}\nparameters: {normalize: 1, rescale: 0}\n",
        method: "dare_ties",
        base: 0,
        models: &[1, 2],
        sets: &[
            "weight=[0.5,0.8]",
            "density=[0.5,0.9]",
            "normalize=true",
            "rescale=false",
        ],
    },
    Case {
        name: "breadcrumbs",
        yaml: "merge_method: breadcrumbs\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters: {weight: 1.0, density: 0.8, gamma: 0.05}\n  - model: {m2}\n    parameters: {weight: 0.5, density: 0.7}\nparameters: {gamma: 0.1}\n",
        method: "breadcrumbs",
        base: 0,
        models: &[1, 2],
        sets: &["weight=[1.0,0.5]", "density=[0.8,0.7]", "gamma=[0.05,0.1]"],
    },
    Case {
        name: "breadcrumbs_ties",
        yaml: "merge_method: breadcrumbs_ties\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters: {weight: 1.0}\n  - model: {m2}\n    parameters: {weight: 0.5}\nparameters: {density: 0.9, gamma: 0.02, normalize: true}\n",
        method: "breadcrumbs_ties",
        base: 0,
        models: &[1, 2],
        sets: &[
            "weight=[1.0,0.5]",
            "density=0.9",
            "gamma=0.02",
            "normalize=true",
        ],
    },
    Case {
        name: "della",
        yaml: "merge_method: della\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters: {weight: 0.6, density: 0.5, epsilon: 0.1}\n  - model: {m2}\n    parameters: {weight: 0.4, density: 0.7}\nparameters: {lambda: 0.9, epsilon: 0.2}\n",
        method: "della",
        base: 0,
        models: &[1, 2],
        sets: &[
            "weight=[0.6,0.4]",
            "density=[0.5,0.7]",
            "epsilon=[0.1,0.2]",
            "lambda=0.9",
        ],
    },
    Case {
        name: "della_linear",
        yaml: "merge_method: della_linear\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters: {weight: 0.6}\n  - model: {m2}\n    parameters: {weight: 0.4}\nparameters: {density: 0.6, epsilon: 0.15, paper_rescale: true}\n",
        method: "della_linear",
        base: 0,
        models: &[1, 2],
        sets: &[
            "weight=[0.6,0.4]",
            "density=0.6",
            "epsilon=0.15",
            "paper_rescale=true",
        ],
    },
];

const OTHER_CASES: &[Case] = &[
    Case {
        // mergekit averages an unlisted base_model in, appended last, with the top-level weight.
        name: "linear",
        yaml: "merge_method: linear\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters: {weight: 0.5}\n  - model: {m2}\n    parameters: {weight: 0.3}\nparameters:\n  weight: 0.2\n  normalize: true\n",
        method: "linear",
        base: 0,
        models: &[1, 2, 0],
        sets: &["weight=[0.5,0.3,0.2]", "normalize=true"],
    },
    Case {
        name: "linear_no_base",
        yaml: "merge_method: linear\nmodels:\n  - model: {m1}\n    parameters: {weight: 2}\n  - model: {m2}\n    parameters: {weight: 1}\n",
        method: "linear",
        base: 1,
        models: &[1, 2],
        sets: &["weight=[2,1]"],
    },
    Case {
        name: "sce",
        yaml: "merge_method: sce\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters: {weight: 1.0}\n  - model: {m2}\n  - model: {m3}\nparameters: {select_topk: 0.5, int8_mask: true}\n",
        method: "sce",
        base: 0,
        models: &[1, 2, 3],
        sets: &["select_topk=0.5"],
    },
    Case {
        name: "model_stock",
        yaml: "merge_method: model_stock\nbase_model: {base}\nmodels:\n  - model: {m1}\n  - model: {m2}\n  - model: {m3}\nparameters: {filter_wise: true}\n",
        method: "model_stock",
        base: 0,
        models: &[1, 2, 3],
        sets: &["filter_wise=true"],
    },
    Case {
        name: "nearswap",
        yaml: "merge_method: nearswap\nbase_model: {base}\nmodels:\n  - model: {base}\n  - model: {m1}\nparameters: {t: 0.002}\n",
        method: "nearswap",
        base: 0,
        models: &[1],
        sets: &["t=0.002"],
    },
    Case {
        name: "slerp",
        yaml: "merge_method: slerp\nbase_model: {base}\nmodels:\n  - model: {base}\n  - model: {m2}\nparameters: {t: 0.3}\n",
        method: "slerp",
        base: 0,
        models: &[2],
        sets: &["t=0.3"],
    },
    Case {
        name: "nuslerp",
        yaml: "merge_method: nuslerp\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters: {weight: 0.3}\n  - model: {m2}\n    parameters: {weight: 0.7}\nparameters: {nuslerp_flatten: false, nuslerp_row_wise: true}\n",
        method: "nuslerp",
        base: 0,
        models: &[1, 2],
        sets: &[
            "weight=[0.3,0.7]",
            "nuslerp_flatten=false",
            "nuslerp_row_wise=true",
        ],
    },
    Case {
        name: "nuslerp_no_base",
        yaml: "merge_method: nuslerp\nmodels:\n  - model: {m1}\n    parameters: {weight: 0.3}\n  - model: {m2}\n    parameters: {weight: 0.7}\n",
        method: "nuslerp",
        base: 1,
        models: &[1, 2],
        sets: &["weight=[0.3,0.7]", "use_base=false"],
    },
    Case {
        name: "multislerp",
        yaml: "merge_method: multislerp\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters: {weight: 0.2}\n  - model: {m2}\n    parameters: {weight: 0.3}\n  - model: {m3}\n    parameters: {weight: 0.5}\nparameters: {normalize_weights: false, eps: 1.0e-7}\n",
        method: "multislerp",
        base: 0,
        models: &[1, 2, 3],
        sets: &[
            "weight=[0.2,0.3,0.5]",
            "normalize_weights=false",
            "eps=1e-7",
        ],
    },
    Case {
        name: "multislerp_no_base",
        yaml: "merge_method: multislerp\nmodels:\n  - model: {m1}\n    parameters: {weight: 1}\n  - model: {m2}\n    parameters: {weight: 2}\n",
        method: "multislerp",
        base: 1,
        models: &[1, 2],
        sets: &["weight=[1,2]", "use_base=false"],
    },
    Case {
        // mergekit's karcher takes the base_model as one more point (appended last).
        name: "karcher",
        yaml: "merge_method: karcher\nbase_model: {base}\nmodels:\n  - model: {m1}\n  - model: {m2}\nparameters: {max_iter: 5, tol: 1.0e-6}\n",
        method: "karcher",
        base: 0,
        models: &[1, 2, 0],
        sets: &["max_iter=5", "tol=1e-6"],
    },
];

#[test]
fn gta_family_config_equals_command_line_bf16() {
    let m = Models::bf16();
    check_cases(&m, GTA_CASES, |a| a.seed = 11);
}

#[test]
fn other_methods_config_equals_command_line_bf16() {
    let m = Models::bf16();
    check_cases(&m, OTHER_CASES, |_| {});
}

#[test]
fn every_method_config_equals_command_line_f32() {
    let m = Models::new(&Arch::tiny(3), Dtype::F32, 3, 10_000);
    check_cases(&m, GTA_CASES, |a| a.seed = 5);
    check_cases(&m, OTHER_CASES, |_| {});
}

/// Every stdlib method that mergekit has is covered above.
#[test]
fn the_cases_cover_every_mergekit_method() {
    for spec in mergec::config::METHODS {
        assert!(
            GTA_CASES
                .iter()
                .chain(OTHER_CASES)
                .any(|c| c.method == spec.name),
            "no config test for `{}`",
            spec.name
        );
    }
}

#[test]
fn dtype_and_flags() {
    let m = Models::bf16();
    // dtype: float32 on bf16 inputs is --dtype f32; out_dtype wins over dtype.
    let yaml = "merge_method: task_arithmetic\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters: {weight: 0.5}\ndtype: float16\nout_dtype: float32\n";
    let c = m.write_config("dtype.yml", yaml);
    run_config(&c, &m.path("dtype-config"), |_| {}).expect("config");
    run_cli(
        "task_arithmetic",
        &m.base,
        &[&m.models[0]],
        &["weight=0.5"],
        &m.path("dtype-cli"),
        |a| a.dtype = Some("f32".into()),
    );
    assert_same_shards(&m.path("dtype-config"), &m.path("dtype-cli"), "out_dtype");
    let out = Checkpoint::open(m.path("dtype-config")).expect("open");
    assert!(out.tensors().all(|t| t.dtype == "F32"));
    // --dtype wins over the config; --set overrides a config value; --only applies.
    run_config(&c, &m.path("flags-config"), |a| {
        a.dtype = Some("bf16".into());
        a.sets = vec!["lambda=0.5".into(), "weight=0.25".into()];
        a.only = Some("mlp".into());
    })
    .expect("config with flags");
    run_cli(
        "task_arithmetic",
        &m.base,
        &[&m.models[0]],
        &["weight=0.25", "lambda=0.5"],
        &m.path("flags-cli"),
        |a| {
            a.dtype = Some("bf16".into());
            a.only = Some("mlp".into());
        },
    );
    assert_same_shards(&m.path("flags-config"), &m.path("flags-cli"), "flags");
    // --base / --model with a config are refused.
    let err = run_config(&c, &m.path("refused"), |a| a.base = Some(m.base.clone()))
        .expect_err("--base with a config");
    assert!(err.contains("already names the models"), "{err}");
    assert!(!m.path("refused").exists());
}

#[test]
fn provenance_and_tokenizer_source() {
    let m = Models::bf16();
    std::fs::write(m.models[1].join("tokenizer.json"), "{\"from\": \"m2\"}").expect("tok");
    std::fs::write(m.base.join("tokenizer.json"), "{\"from\": \"base\"}").expect("tok");
    let yaml = "merge_method: ties\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters: {weight: 1}\ntokenizer_source: {m2}\n";
    let c = m.write_config("tok.yml", yaml);
    let out = m.path("tok-out");
    run_config(&c, &out, |_| {}).expect("config");
    let tok = std::fs::read_to_string(out.join("tokenizer.json")).expect("tokenizer copied");
    assert!(tok.contains("m2"), "{tok}");
    let prov: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("mergec.json")).expect("json"))
            .expect("parse");
    let text = prov["extra"]["mergekit_config"]
        .as_str()
        .expect("config text");
    assert_eq!(text, m.fill(yaml));
    assert_eq!(prov["extra"]["config_path"], c.display().to_string());
    assert_eq!(prov["merge"], "ties");
    // tokenizer_source: base copies the base's.
    let c2 = m.write_config("tok2.yml", &yaml.replace("{m2}", "base"));
    run_config(&c2, &m.path("tok2-out"), |_| {}).expect("config");
    let tok = std::fs::read_to_string(m.path("tok2-out").join("tokenizer.json")).expect("tok");
    assert!(tok.contains("base"));
}

// ---- gradients and filters ----

/// task_arithmetic of one model: base + lambda * (w * (m - base)), in f32.
fn expect_ta(base: &[f32], m: &[f32], w: f64, lambda: f64) -> Vec<f32> {
    let (w, l) = (w as f32, lambda as f32);
    base.iter()
        .zip(m)
        .map(|(b, x)| b + l * (w * (x - b)))
        .collect()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len());
    let err = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(err <= 1e-6, "{what}: max error {err}");
}

fn interp(s: &[f64], t: f64) -> f64 {
    let last = s.len() - 1;
    let scaled = t * last as f64;
    let i0 = scaled as usize;
    let i1 = (i0 + 1).min(last);
    let frac = scaled - i0 as f64;
    (1.0 - frac) * s[i0] + frac * s[i1]
}

#[test]
fn gradients_over_layers_by_hand() {
    // Five layers: t = 0, 0.25, 0.5, 0.75, 1; outside the layers t = 0.
    let m = Models::new(&Arch::tiny(5), Dtype::F32, 1, 1 << 30);
    let yaml = "merge_method: task_arithmetic\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters:\n      weight: [0.2, 1.0, 0.4]\nparameters:\n  lambda: [1.0, 2.0]\n";
    let c = m.write_config("grad.yml", yaml);
    let out = m.path("grad-out");
    run_config(&c, &out, |_| {}).expect("config");
    let by_hand = [
        (0, 0.2, 1.0),
        (1, 0.6, 1.25),
        (2, 1.0, 1.5),
        (3, 0.7, 1.75),
        (4, 0.4, 2.0),
    ];
    for (layer, w, lambda) in by_hand {
        let t = layer as f64 / 4.0;
        assert!((interp(&[0.2, 1.0, 0.4], t) - w).abs() < 1e-12);
        assert!((interp(&[1.0, 2.0], t) - lambda).abs() < 1e-12);
        for leaf in [
            "mlp.up_proj.weight",
            "self_attn.q_proj.weight",
            "input_layernorm.weight",
        ] {
            let name = format!("model.layers.{layer}.{leaf}");
            let want = expect_ta(
                &read(&m.base, &name),
                &read(&m.models[0], &name),
                interp(&[0.2, 1.0, 0.4], t),
                interp(&[1.0, 2.0], t),
            );
            assert_close(&read(&out, &name), &want, &name);
        }
    }
    for name in ["model.embed_tokens.weight", "model.norm.weight"] {
        let want = expect_ta(&read(&m.base, name), &read(&m.models[0], name), 0.2, 1.0);
        assert_close(&read(&out, name), &want, name);
    }
    // The resolved values themselves, per tensor.
    let mut a = args(&c.display().to_string(), &m.path("unused"));
    a.quiet = true;
    let job = job_from_config(&a).expect("job");
    let p = job
        .params
        .params_for("model.layers.1.mlp.up_proj.weight", 1, 5)
        .expect("params");
    assert!(
        p.contains(&(
            "weight".into(),
            Const::List(vec![Const::F32(0.6f64 as f32)])
        )),
        "{p:?}"
    );
    assert!(p.contains(&("lambda".into(), Const::F32(1.25))), "{p:?}");
    let p = job
        .params
        .params_for("model.layers.0.mlp.up_proj.weight", 0, 1)
        .expect("params");
    assert!(
        p.contains(&("lambda".into(), Const::F32(2.0))),
        "one layer: t = 1: {p:?}"
    );
}

#[test]
fn filters_and_precedence_by_hand() {
    let m = Models::new(&Arch::tiny(3), Dtype::F32, 2, 1 << 30);
    // Model 1: mlp by gradient, self_attn fixed, the rest falls through to the top level.
    // Model 2: only its own catch-all; the top-level filter list is never asked.
    let yaml = "merge_method: task_arithmetic\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters:\n      weight:\n        - filter: mlp\n          value: [0.0, 1.0]\n        - filter: self_attn\n          value: 0.25\n  - model: {m2}\n    parameters:\n      weight: 0.1\nparameters:\n  weight:\n    - filter: norm\n      value: 0.5\n    - filter: '*'\n      value: 0.75\n";
    let c = m.write_config("filters.yml", yaml);
    let out = m.path("filters-out");
    run_config(&c, &out, |_| {}).expect("config");
    let w1 = |name: &str, t: f64| -> f64 {
        if name.contains("mlp") {
            t
        } else if name.contains("self_attn") {
            0.25
        } else if name.contains("norm") {
            0.5
        } else {
            0.75
        }
    };
    let ck = Checkpoint::open(&m.base).expect("open");
    let names: Vec<String> = ck.names().map(str::to_string).collect();
    for name in &names {
        let layer = mergec::interp::layer_index(name).unwrap_or(-1);
        let t = mergec::config::layer_t(layer, 3);
        let (b, x1, x2) = (
            read(&m.base, name),
            read(&m.models[0], name),
            read(&m.models[1], name),
        );
        let (wa, wb) = (w1(name, t) as f32, 0.1f32);
        // The program: base + lambda * sum(weight * (models - base)) / 1.
        let want: Vec<f32> = (0..b.len())
            .map(|i| b[i] + 1.0 * ((wa * (x1[i] - b[i]) + wb * (x2[i] - b[i])) / 1.0))
            .collect();
        assert_close(&read(&out, name), &want, name);
    }
}

#[test]
fn a_filter_that_leaves_a_required_weight_unset_fails_before_writing() {
    let m = Models::new(&Arch::tiny(2), Dtype::F32, 1, 1 << 30);
    let yaml = "merge_method: ties\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters:\n      weight:\n        - filter: mlp\n          value: 1.0\n";
    let c = m.write_config("gap.yml", yaml);
    let out = m.path("gap-out");
    let err = run_config(&c, &out, |_| {}).expect_err("weight missing for non-mlp tensors");
    assert!(
        err.contains("no value of `weight`") && err.contains("line 7"),
        "{err}"
    );
    assert!(!out.exists());
}

// ---- custom programs and stdlib methods mergekit lacks ----

#[test]
fn a_merge_program_by_path() {
    let m = Models::bf16();
    let prog = "merge scaled(base: Tensor, models: [Tensor], weight: [f32] = 1.0, strength: f32) -> Tensor {\n    return base + strength * sum(weight * (models - base))\n}\n";
    std::fs::create_dir_all(m.path("progs")).expect("dir");
    std::fs::write(m.path("progs/scaled.merge"), prog).expect("write");
    std::fs::create_dir_all(m.path("cfg")).expect("dir");
    let yaml = "merge_method: ../progs/scaled.merge\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters: {weight: 0.5}\n  - model: {m2}\n    parameters: {weight: 0.25}\nparameters: {strength: 0.8}\n";
    let c = m.write_config("cfg/custom.yml", yaml);
    run_config(&c, &m.path("custom-config"), |_| {}).expect("config");
    let prog_path = m.path("progs/scaled.merge").display().to_string();
    run_cli(
        &prog_path,
        &m.base,
        &[&m.models[0], &m.models[1]],
        &["weight=[0.5,0.25]", "strength=0.8"],
        &m.path("custom-cli"),
        |_| {},
    );
    assert_same_shards(&m.path("custom-config"), &m.path("custom-cli"), "custom");
    // A parameter without a default is required; mergekit names are not the program's.
    let c = m.write_config(
        "cfg/nostrength.yml",
        &yaml.replace("parameters: {strength: 0.8}\n", ""),
    );
    let err = run_config(&c, &m.path("x1"), |_| {}).expect_err("strength required");
    assert!(
        err.contains("needs `strength`") && err.contains("line 1"),
        "{err}"
    );
    let c = m.write_config(
        "cfg/lambda.yml",
        &yaml.replace("strength: 0.8", "strength: 0.8, lambda: 2"),
    );
    let err = run_config(&c, &m.path("x2"), |_| {}).expect_err("no lambda");
    assert!(
        err.contains("unknown parameter `lambda`") && err.contains("line 8"),
        "{err}"
    );
    // algorithm_a: a stdlib method mergekit lacks, mapped like a program.
    let c = m.write_config("alg.yml", "merge_method: algorithm_a\nbase_model: {base}\nmodels:\n  - model: {m1}\n  - model: {m2}\n");
    run_config(&c, &m.path("alg-config"), |_| {}).expect("algorithm_a");
    run_cli(
        "algorithm_a",
        &m.base,
        &[&m.models[0], &m.models[1]],
        &[],
        &m.path("alg-cli"),
        |_| {},
    );
    assert_same_shards(&m.path("alg-config"), &m.path("alg-cli"), "algorithm_a");
}

// ---- errors: each names the line and leaves nothing at --out ----
