//! `mergec merge CONFIG.yml`: mergekit-style YAML configs.
//!
//! - every stdlib method that mergekit has: a config and the equivalent command line give
//!   byte-identical shards (several shards; bf16 and f32 inputs);
//! - gradients and filters against hand-computed per-layer values;
//! - errors (unknown keys and methods, wrong types, slices, a missing base_model, ...) name
//!   the line and leave no output directory;
//! - the example configs in examples/configs run against `mergec synth --arch tiny-2` output.
//!
//! Run with `cargo test --release --test config`.

use mergec::cli::merge::{MergeArgs, job_from_config, run as cli_run};
use mergec::runtime::safetensors::{Checkpoint, Dtype};
use mergec::runtime::synth::{Arch, write_model};
use mergec::types::Const;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A base and `n` variants in a temporary directory.
struct Models {
    dir: TempDir,
    base: PathBuf,
    models: Vec<PathBuf>,
}

impl Models {
    fn new(arch: &Arch, dtype: Dtype, n: usize, shard_size: u64) -> Models {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("base");
        write_model(&base, arch, dtype, 3, 0, 0.3, shard_size).expect("base");
        let models = (1..=n)
            .map(|m| {
                let p = dir.path().join(format!("model-{m}"));
                write_model(&p, arch, dtype, 3, m as u32, 0.3, shard_size).expect("model");
                p
            })
            .collect();
        Models { dir, base, models }
    }

    /// Bf16, two layers, several input shards.
    fn bf16() -> Models {
        Models::new(&Arch::tiny(2), Dtype::BF16, 3, 6_000)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces {base}, {m1}, {m2}, {m3} in a config.
    fn fill(&self, yaml: &str) -> String {
        let mut s = yaml.replace("{base}", &self.base.display().to_string());
        for (i, m) in self.models.iter().enumerate() {
            s = s.replace(&format!("{{m{}}}", i + 1), &m.display().to_string());
        }
        s
    }

    /// Writes a config (placeholders filled) and returns its path.
    fn write_config(&self, name: &str, yaml: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, self.fill(yaml)).expect("write config");
        p
    }
}

fn args(program: &str, out: &Path) -> MergeArgs {
    MergeArgs {
        program: program.to_string(),
        merge: None,
        base: None,
        models: Vec::new(),
        out: out.to_path_buf(),
        sets: Vec::new(),
        dtype: None,
        only: None,
        seed: 0,
        shard_size: "8KB".into(),
        max_memory: "4GB".into(),
        force: false,
        on_mismatch: "error".into(),
        allow_nonfinite: false,
        tokenizer_from: None,
        quiet: true,
        threads: None,
        backend: "jit".into(),
        device: "cpu".into(),
    }
}

/// Runs a config through the library; errors as the CLI would print them.
fn run_config(config: &Path, out: &Path, tweak: impl FnOnce(&mut MergeArgs)) -> Result<(), String> {
    let mut a = args(&config.display().to_string(), out);
    tweak(&mut a);
    let job = job_from_config(&a)?;
    mergec::runtime::run(&job).map(|_| ())
}

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

/// Reads a tensor of an f32 checkpoint.
fn read(dir: &Path, name: &str) -> Vec<f32> {
    Checkpoint::open(dir)
        .expect("open")
        .read_f32(name)
        .expect("read")
        .data
}

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

/// Runs a broken config through the CLI entry point (exit 1, nothing written) and the
/// library (the message); returns the message.
fn broken(m: &Models, name: &str, yaml: &str) -> String {
    let c = m.write_config(&format!("{name}.yml"), yaml);
    let out = m.path(&format!("{name}-out"));
    let a = args(&c.display().to_string(), &out);
    assert_eq!(cli_run(&a), 1, "{name}: should fail");
    assert!(!out.exists(), "{name}: left an output directory");
    let err = job_from_config(&a)
        .and_then(|job| mergec::runtime::run(&job).map(|_| ()))
        .expect_err("fails");
    assert!(!out.exists());
    err
}

fn assert_names_line(err: &str, line: u32, words: &[&str]) {
    assert!(
        err.contains(&format!("line {line},")),
        "expected line {line}: {err}"
    );
    for w in words {
        assert!(err.contains(w), "expected `{w}` in: {err}");
    }
}

#[test]
fn errors_name_the_line() {
    let m = Models::new(&Arch::tiny(2), Dtype::BF16, 2, 1 << 30);
    let ok = "merge_method: ties\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters: {weight: 1, density: 0.5}\n";
    let cases: &[(&str, String, u32, &[&str])] = &[
        ("top", ok.replace("models:", "mdoels:"), 3, &["unknown key `mdoels`", "did you mean `models`?"]),
        ("nested", ok.replace("    parameters:", "    paramters:"), 5, &["unknown key `paramters`", "did you mean `parameters`?"]),
        ("param", ok.replace("density: 0.5", "densty: 0.5"), 5, &["unknown parameter `densty`", "did you mean `density`?"]),
        ("cond", format!("{ok}parameters:\n  lambda:\n    - filtr: mlp\n      value: 1\n"), 8, &["unknown key `filtr`", "did you mean `filter`?"]),
        ("method", ok.replace("ties", "tie"), 1, &["unknown merge_method `tie`", "did you mean `ties`?"]),
        ("type", ok.replace("density: 0.5", "density: abc"), 5, &["wrong value type", "`density`", "abc"]),
        ("bool", format!("{ok}parameters:\n  normalize: 0.5\n"), 7, &["`normalize`", "true or false"]),
        ("slices", format!("{ok}slices:\n  - sources: []\n"), 6, &["`slices` is not supported"]),
        ("modules", format!("{ok}modules: {{}}\n"), 6, &["`modules` is not supported"]),
        ("no_base", ok.replace("base_model: {base}\n", ""), 1, &["needs a `base_model`"]),
        ("no_weight", ok.replace("weight: 1, ", ""), 4, &["has no `weight`"]),
        ("global_per_model", ok.replace("density: 0.5", "lambda: 0.5"), 5, &["`lambda` is one value for the whole merge"]),
        ("union", format!("{ok}tokenizer_source: union\n"), 6, &["`union`", "not supported"]),
        ("passthrough", ok.replace("ties", "passthrough"), 1, &["not in mergec's stdlib"]),
        ("missing_model", ok.replace("{m1}", "no/such/model"), 4, &["not a local model"]),
        ("dtype", format!("{ok}dtype: int64\n"), 6, &["dtype `int64`"]),
        ("yaml", format!("{ok}parameters: [1,\n"), 6, &["not valid YAML"]),
        ("bare_cond", format!("{ok}parameters:\n  lambda: {{filter: mlp, value: 1}}\n"), 7, &["entry of a list"]),
        ("slerp_two", "merge_method: slerp\nbase_model: {base}\nmodels:\n  - model: {m1}\n  - model: {m2}\nparameters: {t: 0.5}\n".into(), 3, &["exactly 1 model"]),
        ("dup", format!("{ok}  - model: {{m1}}\n    parameters: {{weight: 1}}\n"), 6, &["listed twice", "line 4"]),
        ("use_base", "merge_method: nuslerp\nmodels:\n  - model: {m1}\n    parameters: {weight: 1}\n  - model: {m2}\n    parameters: {weight: 1}\nparameters: {use_base: true}\n".into(), 7, &["`use_base` follows from the config"]),
    ];
    for (name, yaml, line, words) in cases {
        let err = broken(&m, name, yaml);
        assert_names_line(&err, *line, words);
    }
}

#[test]
fn ignored_parameters_are_notes_not_errors() {
    let m = Models::bf16();
    // `weight` is no parameter of sce (mergekit ignores it); int8_mask changes nothing.
    let yaml = "merge_method: sce\nbase_model: {base}\nmodels:\n  - model: {m1}\n    parameters: {weight: 0.3}\n  - model: {m2}\nparameters: {int8_mask: true}\n";
    let c = m.write_config("notes.yml", yaml);
    let job = job_from_config(&args(&c.display().to_string(), &m.path("o"))).expect("job");
    let notes = job.extra["notes"].as_array().expect("notes");
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0]
            .as_str()
            .is_some_and(|n| n.contains("line 5") && n.contains("`weight`"))
    );
    assert!(
        notes[1]
            .as_str()
            .is_some_and(|n| n.contains("line 7") && n.contains("int8_mask"))
    );
}

// ---- the example configs ----

#[test]
fn example_configs_run_on_synth_output() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().expect("tempdir");
    // As `mergec synth --arch tiny-2 --out /tmp/x` writes them: base, model-1..3, bf16.
    let x = tmp.path().join("x");
    let arch = Arch::preset("tiny-2").expect("preset");
    write_model(
        &x.join("base"),
        &arch,
        Dtype::BF16,
        0,
        0,
        0.1,
        2_000_000_000,
    )
    .expect("base");
    for i in 1..=3u32 {
        write_model(
            &x.join(format!("model-{i}")),
            &arch,
            Dtype::BF16,
            0,
            i,
            0.1,
            2_000_000_000,
        )
        .expect("model");
    }
    // The configs sit in examples/configs/ and name programs relative to it.
    let configs = tmp.path().join("examples/configs");
    std::fs::create_dir_all(&configs).expect("dir");
    for e in std::fs::read_dir(root.join("examples"))
        .expect("examples")
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "merge") {
            std::fs::copy(e.path(), tmp.path().join("examples").join(e.file_name())).expect("copy");
        }
    }
    let mut ran = 0;
    for e in std::fs::read_dir(root.join("examples/configs"))
        .expect("examples/configs")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".yml") {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).expect("read");
        let text = text.replace("/tmp/x/", &format!("{}/", x.display()));
        let path = configs.join(&name);
        std::fs::write(&path, text).expect("write");
        let out = tmp.path().join(format!("out-{name}"));
        run_config(&path, &out, |_| {}).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out.join("mergec.json").is_file());
        ran += 1;
    }
    assert!(
        ran >= 3,
        "expected at least three example configs, ran {ran}"
    );
}
