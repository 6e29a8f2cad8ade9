//! `mergec merge CONFIG.yml` on wrong configs, and the shipped examples:
//! - errors (unknown keys and methods, wrong types, slices, a missing base_model, ...) name
//!   the line and leave no output directory;
//! - parameters of other mergekit methods are notes, not errors;
//! - the example configs in examples/configs run against `mergec synth --arch tiny-2` output.
//!
//! Run with `cargo test --release --test config_errors`.

#[path = "common/config_models.rs"]
mod config_models;

use config_models::*;
use mergec::cli::merge::{job_from_config, run as cli_run};
use mergec::runtime::safetensors::Dtype;
use mergec::runtime::synth::{Arch, write_model};
use std::path::Path;

/// Runs a broken config through the CLI entry point (exit 1, nothing written) and the
/// library (the message); returns the message.
fn broken(m: &Models, name: &str, yaml: &str) -> String {
    let c = m.write_config(&format!("{name}.yml"), yaml);
    let out = m.path(&format!("{name}-out"));
    let a = args(&c.display().to_string(), &out);
    assert_eq!(cli_run(&a), 1, "{name}: should fail");
    assert!(!out.exists(), "{name}: left an output directory");
    let err = job_from_config(&a)
        .and_then(|job| mergec::runtime::run(&job).map(|_| ()).map_err(String::from))
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
        ("slices", format!("{ok}slices:\n  - sources: []\n"), 7, &["`sources` is empty"]),
        ("modules", format!("{ok}modules: {{}}\n"), 6, &["`modules` is not supported"]),
        ("no_base", ok.replace("base_model: {base}\n", ""), 1, &["needs a `base_model`"]),
        ("no_weight", ok.replace("weight: 1, ", ""), 4, &["has no `weight`"]),
        ("global_per_model", ok.replace("density: 0.5", "lambda: 0.5"), 5, &["`lambda` is one value for the whole merge"]),
        ("union", format!("{ok}tokenizer_source: union\n"), 6, &["`union`", "not supported"]),
        ("passthrough", ok.replace("ties", "passthrough"), 3, &["`passthrough` takes exactly 1 model"]),
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
