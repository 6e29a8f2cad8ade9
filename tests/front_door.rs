//! mergekit's front door: `mergec merge CONFIG OUT` as `mergekit-yaml CONFIG OUT`, with
//! mergekit's flags; Hub ids resolved from a local Hugging Face cache (branches, tags,
//! commits) without downloading; the model card and `mergekit_config.yml` in the output.

#[path = "common/ckpt.rs"]
mod ckpt;

use ckpt::*;
use mergec::runtime::safetensors::Checkpoint;
use std::path::Path;
use std::process::Command;

const CONFIG: &str = "\
merge_method: ties
base_model: base
models:
  - model: m1
    parameters: {density: 0.5, weight: 1.0}
  - model: m2
    parameters: {density: 0.5, weight: 0.5}
dtype: bfloat16
";

/// Every tensor of two outputs, byte for byte.
fn same_tensors(a: &Path, b: &Path) {
    let (a, b) = (Checkpoint::open(a).unwrap(), Checkpoint::open(b).unwrap());
    let names: Vec<&str> = a.names().collect();
    assert_eq!(names, b.names().collect::<Vec<_>>());
    for n in names {
        assert_eq!(a.raw_bytes(n).unwrap(), b.raw_bytes(n).unwrap(), "{n}");
    }
}

#[test]
fn config_then_out_works_as_mergekit_yaml_with_a_card_and_the_config() {
    let zoo = Zoo::new();
    std::fs::write(zoo.path("cfg.yml"), CONFIG).unwrap();
    ok(zoo.mergec(&["merge", "cfg.yml", "out", "--quiet"]));
    ok(zoo.mergec(&["merge", "cfg.yml", "--out", "out2", "--quiet"]));
    same_tensors(&zoo.path("out"), &zoo.path("out2"));
    assert_eq!(
        std::fs::read_to_string(zoo.path("out/mergekit_config.yml")).unwrap(),
        CONFIG
    );
    let card = std::fs::read_to_string(zoo.path("out/README.md")).unwrap();
    let p = read_json(&zoo.path("out/mergec.json"));
    for needle in [
        "---\nlibrary_name: transformers",
        "- base\n- m1\n- m2\n---",
        "`ties` merge",
        "mergec merge cfg.yml out --quiet",
        "merge_method: ties",
        "merge ties(base: Tensor",
    ] {
        assert!(card.contains(needle), "no {needle:?} in the card:\n{card}");
    }
    for (role, input) in [
        ("| base |", &p["inputs"]["base"]),
        ("| model 2 |", &p["inputs"]["models"][1]),
    ] {
        let hash = input["content_blake3"].as_str().unwrap();
        let line = card.lines().find(|l| l.starts_with(role)).unwrap();
        assert!(line.contains(hash), "{line}");
    }
    assert_eq!(p["extra"]["command"], "mergec merge cfg.yml out --quiet");

    // One output directory, not two; none at all is a usage error.
    let o = zoo.mergec(&["merge", "cfg.yml", "o3", "--out", "o4"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("two output directories"));
    let o = zoo.mergec(&["merge", "cfg.yml"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("give the output directory"));

    // --no-write-model-card: no README.md (mergec.json is always written).
    ok(zoo.mergec(&["merge", "cfg.yml", "o5", "--no-write-model-card", "--quiet"]));
    assert!(!zoo.path("o5/README.md").exists() && zoo.path("o5/mergec.json").exists());
}

#[test]
fn mergekit_flags_are_accepted_with_mergecs_meaning_or_refused_in_one_line() {
    let zoo = Zoo::new();
    std::fs::write(zoo.path("cfg.yml"), CONFIG).unwrap();
    // What mergec always does, or the same as its own flags.
    let o = ok(zoo.mergec(&[
        "merge",
        "cfg.yml",
        "out",
        "--copy-tokenizer",
        "--lazy-unpickle",
        "--low-cpu-memory",
        "--clone-tensors",
        "--trust-remote-code",
        "--safe-serialization",
        "--write-model-card",
        "--no-cuda",
        "--allow-crimes",
        "--out-shard-size",
        "1K",
        "--random-seed",
        "7",
        "--num-threads",
        "1",
        "-v",
        "--format",
        "json",
    ]));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(summary["shards"].as_u64().unwrap() > 3, "{summary}");
    assert_eq!(read_json(&zoo.path("out/mergec.json"))["seed"], 7);
    ok(zoo.mergec(&["merge", "cfg.yml", "ref", "--quiet"]));
    same_tensors(&zoo.path("out"), &zoo.path("ref"));
    // Refused, saying what to do.
    for (flag, says) in [
        (&["--no-copy-tokenizer"][..], "always copies the tokenizer"),
        (&["--no-safe-serialization"][..], "safetensors only"),
        (&["--lora-merge-cache", "x"][..], "merge_and_unload"),
        (&["--out-shard-size", "5GB"][..], "K, M or B"),
    ] {
        let mut args = vec!["merge", "cfg.yml", "bad"];
        args.extend(flag);
        let e = fails(zoo.mergec(&args));
        assert!(e.contains(says), "{flag:?}: {e}");
        assert!(!zoo.path("bad").exists());
    }
    // --cuda is --device cuda: here, without a GPU, the same clear error.
    let e = fails(zoo.mergec(&["merge", "cfg.yml", "bad", "--cuda"]));
    assert!(e.contains("--device cuda"), "{e}");
}

/// Puts `model` into a Hugging Face cache at `hub` as `org/NAME` at `commit`, with the
/// branch `main` and the tag `v1` pointing at it, files as symlinks into blobs/.
fn cache_model(hub: &Path, model: &Path, name: &str, commit: &str) {
    let repo = hub.join(format!("models--org--{name}"));
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    for e in std::fs::read_dir(model).unwrap() {
        let e = e.unwrap();
        let blob = repo
            .join("blobs")
            .join(format!("{name}-{}", e.file_name().to_string_lossy()));
        std::fs::copy(e.path(), &blob).unwrap();
        std::os::unix::fs::symlink(&blob, snap.join(e.file_name())).unwrap();
    }
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    std::fs::write(repo.join("refs/v1"), commit).unwrap();
}

#[test]
fn hub_ids_resolve_from_the_local_cache_and_missing_ones_say_how_to_fetch_them() {
    let zoo = Zoo::new();
    let hub = zoo.path("hf/hub");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    for m in ["base", "m1", "m2"] {
        cache_model(&hub, &zoo.path(m), m, commit);
    }
    let cached = CONFIG
        .replace("base_model: base", "base_model: org/base")
        .replace("model: m1", "model: org/m1@v1")
        .replace("model: m2", &format!("model: org/m2@{commit}"));
    std::fs::write(zoo.path("hub.yml"), &cached).unwrap();
    std::fs::write(zoo.path("cfg.yml"), CONFIG).unwrap();
    let run = |args: &[&str], env: (&str, &Path)| {
        Command::new(env!("CARGO_BIN_EXE_mergec"))
            .current_dir(zoo.dir())
            .args(args)
            .env_remove("HF_HUB_CACHE")
            .env(env.0, env.1)
            .output()
            .unwrap()
    };
    ok(run(
        &["merge", "hub.yml", "out", "--quiet"],
        ("HF_HOME", &zoo.path("hf")),
    ));
    ok(zoo.mergec(&["merge", "cfg.yml", "ref", "--quiet"]));
    same_tensors(&zoo.path("out"), &zoo.path("ref"));
    let card = std::fs::read_to_string(zoo.path("out/README.md")).unwrap();
    assert!(card.contains("- org/base\n- org/m1\n- org/m2\n"), "{card}");
    // The command-line form, with HF_HUB_CACHE and then --transformers-cache.
    let flags = [
        "merge", "ties", "o2", "--quiet", "--base", "org/base", "--model", "org/m1",
    ];
    ok(run(&flags, ("HF_HUB_CACHE", &hub)));
    let mut with_flag = flags.to_vec();
    with_flag[2] = "o3";
    let hub_str = hub.display().to_string();
    with_flag.extend(["--transformers-cache", &hub_str]);
    ok(run(&with_flag, ("HOME", &zoo.path("nowhere"))));
    same_tensors(&zoo.path("o2"), &zoo.path("o3"));
    // Not in the cache: where it looked and the command that fetches it.
    let e = fails(run(
        &[
            "merge",
            "ties",
            "o4",
            "--base",
            "org/base",
            "--model",
            "org/absent@v2",
        ],
        ("HF_HUB_CACHE", &hub),
    ));
    assert!(
        e.contains("huggingface-cli download org/absent --revision v2") && e.contains("hf/hub"),
        "{e}"
    );
    let e = fails(run(
        &[
            "merge",
            "ties",
            "o4",
            "--base",
            "org/base",
            "--model",
            "org/m1@v9",
        ],
        ("HF_HUB_CACHE", &hub),
    ));
    assert!(e.contains("not its revision `v9`"), "{e}");
    assert!(!zoo.path("o4").exists());
}
