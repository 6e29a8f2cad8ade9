//! `mergec merge` end to end, through the binary (and once through the library):
//! tiny sharded checkpoints of mixed dtypes in, a Hugging Face directory out whose
//! merged tensors equal the interpreter's, copies equal the base's, and whose
//! layout, side files and provenance are as transformers expects; the flags; and
//! safety: every error is clear and leaves no output, no temporary directory and
//! unmodified inputs (tests/merge_errors.rs; signals and deadlines: tests/cancel.rs).

#[path = "common/ckpt.rs"]
mod ckpt;
#[path = "common/merge_run.rs"]
mod merge_run;

use ckpt::*;
use merge_run::*;
use mergec::runtime::safetensors::{Checkpoint, Dtype, INDEX_FILE, MODEL_FILE, encode_raw};
use std::collections::BTreeSet;
use std::path::Path;

/// How a run was made, to compute what every output tensor must be.
struct Expect<'a> {
    program: &'a str,
    merge: &'a str,
    sets: &'a [&'a str],
    seed: u64,
    dtype: Option<Dtype>,
    only: Option<&'a str>,
    allow_nonfinite: bool,
}

impl<'a> Expect<'a> {
    fn new(merge: &'a str) -> Expect<'a> {
        Expect {
            program: PROGRAM,
            merge,
            sets: &[],
            seed: 0,
            dtype: None,
            only: None,
            allow_nonfinite: false,
        }
    }

    /// (dtype, bytes) of output tensor `name`.
    fn tensor(&self, zoo: &Zoo, name: &str) -> (String, Vec<u8>) {
        if name == I64_BUFFER {
            return ("I64".into(), i64_buffer().bytes);
        }
        let out = self.dtype.unwrap_or(Dtype::BF16);
        let (base, models) = zoo.inputs_of(name);
        let selected = self
            .only
            .is_none_or(|r| regex::Regex::new(r).unwrap().is_match(name));
        let bytes = if selected {
            reference(
                self.program,
                self.merge,
                name,
                &base,
                &models,
                &sets(self.sets),
                self.seed,
                self.allow_nonfinite,
                out,
            )
        } else {
            out.encode_vec(&base.data)
        };
        (out.name().into(), bytes)
    }
}

/// Every tensor of the base name (sorted): the float ones and the I64 buffer.
fn all_names() -> BTreeSet<String> {
    tiny_shapes()
        .into_iter()
        .map(|(n, _)| n)
        .chain([I64_BUFFER.to_string()])
        .collect()
}

/// The output holds exactly the base's tensors, each of the expected dtype, shape and bytes.
fn verify_tensors(zoo: &Zoo, out: &str, e: &Expect) {
    let ck = Checkpoint::open(zoo.path(out)).unwrap();
    let names: BTreeSet<String> = ck.names().map(String::from).collect();
    assert_eq!(names, all_names(), "tensor names");
    assert!(
        !names.contains("lm_head.weight"),
        "tied embeddings gained an lm_head"
    );
    for (name, shape) in tiny_shapes()
        .into_iter()
        .chain([(I64_BUFFER.to_string(), vec![1, I64_LEN])])
    {
        let info = ck.info(&name).unwrap();
        let (dtype, bytes) = e.tensor(zoo, &name);
        assert_eq!(info.shape, shape, "{name}: shape");
        assert_eq!(info.dtype, dtype, "{name}: dtype");
        let got = ck.raw_bytes(&name).unwrap();
        if got != bytes.as_slice() {
            let (g, w) = (decode(&dtype, got), decode(&dtype, &bytes));
            let i = g
                .iter()
                .zip(&w)
                .position(|(a, b)| a.to_bits() != b.to_bits());
            panic!(
                "{name} ({}): output differs from the interpreter at {i:?}: {:?} vs {:?}",
                e.merge,
                i.map(|i| g[i]),
                i.map(|i| w[i])
            );
        }
    }
}

/// Shards named as transformers names them, the index (total_size, a weight_map
/// covering every tensor), or a single `model.safetensors` without an index.
/// Returns the number of shards.
fn verify_layout(dir: &Path) -> usize {
    let files = weight_files(dir);
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let ck = Checkpoint::open(dir).unwrap();
    if names == [MODEL_FILE] {
        upstream_agrees(&files[0]);
        assert!(
            !dir.join(INDEX_FILE).exists(),
            "an index beside a single file"
        );
        return 1;
    }
    let n = names.len();
    let want: Vec<String> = (0..n).map(|i| shard_name(i, n)).collect();
    assert_eq!(names, want, "shard names");
    let index = read_json(&dir.join(INDEX_FILE));
    let map = index["weight_map"].as_object().expect("weight_map");
    let keys: BTreeSet<String> = map.keys().cloned().collect();
    let all: BTreeSet<String> = ck.names().map(String::from).collect();
    assert_eq!(keys, all, "the weight_map covers every tensor");
    let mut total = 0u64;
    for f in &files {
        let len = std::fs::metadata(f).unwrap().len();
        let bytes = std::fs::read(f).unwrap();
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!((8 + header) % 8, 0, "data section aligned");
        total += len - 8 - header;
        upstream_agrees(f);
        let single = Checkpoint::open(f).unwrap();
        let file = f.file_name().unwrap().to_str().unwrap();
        for t in single.names() {
            assert_eq!(map[t], file, "{t} is in {file}");
        }
    }
    assert_eq!(
        index["metadata"]["total_size"].as_u64(),
        Some(total),
        "total_size is the sum of the tensors' bytes"
    );
    n
}

/// The reference `safetensors` crate reads the file, with our reader's tensors and bytes.
fn upstream_agrees(file: &Path) {
    let bytes = std::fs::read(file).unwrap();
    let st = ::safetensors::SafeTensors::deserialize(&bytes)
        .unwrap_or_else(|e| panic!("{}: the safetensors crate refuses it: {e}", file.display()));
    let (_, meta) = ::safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let format = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("format").cloned());
    assert_eq!(
        format.as_deref(),
        Some("pt"),
        "transformers needs format=pt"
    );
    let ours = Checkpoint::open(file).unwrap();
    let mut names: Vec<&str> = st.names();
    names.sort();
    assert_eq!(names, ours.names().collect::<Vec<_>>());
    for name in names {
        let t = st.tensor(name).unwrap();
        let info = ours.info(name).unwrap();
        assert_eq!(format!("{:?}", t.dtype()), info.dtype, "{name}");
        assert_eq!(t.shape(), info.shape.as_slice(), "{name}");
        assert_eq!(t.data(), ours.raw_bytes(name).unwrap(), "{name}");
    }
}

fn inputs_snapshot(zoo: &Zoo) -> Vec<Snapshot> {
    ["base", "m1", "m2"]
        .iter()
        .map(|d| snapshot(&zoo.path(d)))
        .collect()
}

#[test]
fn merged_tensors_equal_the_interpreter_and_the_directory_is_complete() {
    let zoo = Zoo::new();
    let before = inputs_snapshot(&zoo);
    let set = ["weight=[0.3, 0.7]", "lambda=0.9"];
    let o = ok(merge(
        &zoo,
        "wavg",
        "out",
        &["--set", set[0], "--set", set[1], "--seed", "5"],
    ));
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "--quiet prints nothing"
    );
    let e = Expect {
        sets: &set,
        seed: 5,
        ..Expect::new("wavg")
    };
    verify_tensors(&zoo, "out", &e);
    let out = zoo.path("out");
    assert_eq!(verify_layout(&out), 1, "10 KB fits one 5 GB shard");

    // Side files: copied byte for byte; config.json unchanged without --dtype.
    for f in SIDE_FILES.iter().map(|(f, _)| *f).chain(["config.json"]) {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(zoo.path("base").join(f)).unwrap(),
            "{f}"
        );
    }

    // Provenance.
    let p = read_json(&out.join("mergec.json"));
    assert_eq!(p["program"]["text"], PROGRAM);
    assert_eq!(p["program"]["sha256"], sha256_hex(PROGRAM.as_bytes()));
    assert_eq!(p["program"]["source"], "algo.merge");
    assert_eq!(p["merge"], "wavg");
    assert_eq!(p["seed"], 5);
    assert_eq!(p["mergec_version"], env!("CARGO_PKG_VERSION"));
    let params = p["parameters"].as_object().unwrap();
    assert_eq!(params.len(), 2, "{params:?}");
    let shown = |k: &str| params[k].to_string();
    assert!(shown("weight").contains("0.3") && shown("weight").contains("0.7"));
    assert!(shown("lambda").contains("0.9"));
    // Content hashes of the tensors read: every tensor of the base, the merged ones of
    // the models (all but the copied one); equal for equal content, different otherwise.
    let merged: BTreeSet<String> = Checkpoint::open(out.join(MODEL_FILE))
        .unwrap()
        .names()
        .filter(|n| Checkpoint::open(zoo.path("m1")).unwrap().info(n).is_ok())
        .map(String::from)
        .collect();
    assert_eq!(
        p["inputs"]["base"]["content_blake3"],
        content_blake3(&zoo.path("base"), |_| true)
    );
    assert_eq!(p["inputs"]["base"]["path"], "base");
    for (i, m) in ["m1", "m2"].iter().enumerate() {
        let input = &p["inputs"]["models"][i];
        assert_eq!(
            input["content_blake3"],
            content_blake3(&zoo.path(m), |n| merged.contains(n)),
            "{m}"
        );
        assert_eq!(input["tensors_hashed"], 20);
        assert_eq!(input["path"], *m);
        assert!(
            input["files"][0]
                .as_str()
                .unwrap()
                .ends_with(".safetensors")
        );
    }
    assert_ne!(
        p["inputs"]["models"][0]["content_blake3"],
        p["inputs"]["models"][1]["content_blake3"]
    );
    assert_eq!(p["tensors"]["merged"], 20);
    assert_eq!(p["tensors"]["copied"], 1);

    assert_unchanged(&before, &inputs_snapshot(&zoo));
    assert!(leftovers(zoo.dir()).is_empty());

    // Without --quiet: a one-line summary on stderr, nothing on stdout.
    let args: Vec<&str> = ["merge", "algo.merge", "--merge", "wavg"]
        .into_iter()
        .chain(INPUTS.iter().copied())
        .chain(["--out", "out2"])
        .collect();
    let o = ok(zoo.mergec(&args));
    assert!(o.stdout.is_empty());
    let s = stderr(&o);
    assert!(
        s.contains("merged 20 tensors, copied 1 from the base"),
        "{s}"
    );
}

#[test]
fn only_mlp_merges_mlp_weights_and_copies_the_rest_byte_for_byte() {
    let zoo = Zoo::new();
    ok(merge(&zoo, "wavg", "out", &["--only", "mlp"]));
    verify_tensors(
        &zoo,
        "out",
        &Expect {
            only: Some("mlp"),
            ..Expect::new("wavg")
        },
    );
    // The copies are the base's stored bytes.
    let base = Checkpoint::open(zoo.path("base")).unwrap();
    let out = Checkpoint::open(zoo.path("out")).unwrap();
    let mut copied = 0;
    for name in all_names().iter().filter(|n| !n.contains("mlp")) {
        assert_eq!(
            out.raw_bytes(name).unwrap(),
            base.raw_bytes(name).unwrap(),
            "{name}"
        );
        copied += 1;
    }
    assert_eq!(copied, 21 - 6);
    let p = read_json(&zoo.path("out/mergec.json"));
    assert_eq!(p["only"], "mlp");
    assert_eq!(p["tensors"]["merged"], 6);
    assert_eq!(p["tensors"]["copied_not_selected"], 15);
}

#[test]
fn dtype_sets_every_float_tensor_and_torch_dtype() {
    let zoo = Zoo::new();
    for (flag, dtype, torch) in [
        ("f32", Dtype::F32, "float32"),
        ("bf16", Dtype::BF16, "bfloat16"),
        ("f16", Dtype::F16, "float16"),
    ] {
        let out = format!("out-{flag}");
        ok(merge(
            &zoo,
            "wavg",
            &out,
            &["--dtype", flag, "--only", "mlp"],
        ));
        verify_tensors(
            &zoo,
            &out,
            &Expect {
                dtype: Some(dtype),
                only: Some("mlp"),
                ..Expect::new("wavg")
            },
        );
        let config = read_json(&zoo.path(&out).join("config.json"));
        assert_eq!(config["torch_dtype"], torch, "{flag}");
        // Everything else in config.json is kept.
        let mut want = config_json();
        want["torch_dtype"] = torch.into();
        assert_eq!(config, want);
        let p = read_json(&zoo.path(&out).join("mergec.json"));
        assert_eq!(p["dtype"], torch);
    }
}

#[test]
fn the_seed_changes_dare_masks_and_the_same_seed_gives_the_same_bytes() {
    let zoo = Zoo::new();
    for (out, seed) in [("a", "1"), ("b", "1"), ("c", "2")] {
        ok(merge(
            &zoo,
            "dare",
            out,
            &["--seed", seed, "--only", "proj"],
        ));
    }
    for (out, seed) in [("a", 1), ("c", 2)] {
        verify_tensors(
            &zoo,
            out,
            &Expect {
                seed,
                only: Some("proj"),
                ..Expect::new("dare")
            },
        );
    }
    assert_eq!(weights(&zoo.path("a")), weights(&zoo.path("b")));
    let (a, c) = (
        Checkpoint::open(zoo.path("a")).unwrap(),
        Checkpoint::open(zoo.path("c")).unwrap(),
    );
    for name in all_names() {
        let same = a.raw_bytes(&name).unwrap() == c.raw_bytes(&name).unwrap();
        assert_eq!(same, !name.contains("proj"), "{name}: seed 1 vs 2");
    }
}

/// Nor does the GPU path's executor (`--backend emulated`: tensors resident in device
/// memory held in host RAM, two tensors at once).
#[test]
fn threads_max_memory_and_the_device_path_do_not_change_the_bytes() {
    let zoo = Zoo::new();
    let runs: [(&str, &[&str]); 4] = [
        ("t1", &["--threads", "1", "--max-memory", "1"]),
        ("t2", &["--threads", "2", "--max-memory", "1GB"]),
        ("t2s", &["--threads", "2", "--max-memory", "5KB"]),
        ("emu", &["--threads", "2", "--backend", "emulated"]),
    ];
    for (out, flags) in runs {
        ok(merge(&zoo, "dare", out, flags));
    }
    verify_tensors(&zoo, "t1", &Expect::new("dare"));
    let want = weights(&zoo.path("t1"));
    for out in ["t2", "t2s", "emu"] {
        assert_eq!(weights(&zoo.path(out)), want, "{out}");
    }
}

#[test]
fn shard_size_splits_the_output_as_transformers_does() {
    let zoo = Zoo::new();
    ok(merge(&zoo, "wavg", "one", &[]));
    ok(merge(&zoo, "wavg", "many", &["--shard-size", "2KB"]));
    let n = verify_layout(&zoo.path("many"));
    assert!(n >= 4, "{n} shards");
    verify_tensors(&zoo, "many", &Expect::new("wavg"));
    for f in weight_files(&zoo.path("many")) {
        let ck = Checkpoint::open(&f).unwrap();
        let data: usize = ck.tensors().map(|t| t.nbytes()).sum();
        assert!(
            data <= 2000 || ck.len() == 1,
            "{}: {data} bytes",
            f.display()
        );
    }
    let (one, many) = (
        Checkpoint::open(zoo.path("one")).unwrap(),
        Checkpoint::open(zoo.path("many")).unwrap(),
    );
    for name in all_names() {
        assert_eq!(
            one.raw_bytes(&name).unwrap(),
            many.raw_bytes(&name).unwrap()
        );
    }
}

#[test]
fn a_stdlib_method_by_name_equals_the_interpreter() {
    let zoo = Zoo::new();
    let args: Vec<&str> = [
        "merge",
        "ties",
        "--quiet",
        "--set",
        "density=0.5",
        "--out",
        "out",
    ]
    .into_iter()
    .chain(INPUTS.iter().copied())
    .collect();
    ok(zoo.mergec(&args));
    let m = mergec::stdlib::method("ties").unwrap();
    verify_tensors(
        &zoo,
        "out",
        &Expect {
            program: m.source,
            merge: "ties",
            sets: &["density=0.5"],
            ..Expect::new("ties")
        },
    );
    let p = read_json(&zoo.path("out/mergec.json"));
    assert_eq!(p["program"]["text"], m.source);
    assert_eq!(p["program"]["source"], "stdlib/ties.merge");
}

#[test]
fn bare_safetensors_files_are_inputs_too() {
    let zoo = Zoo::new();
    let mut base = variant(0, Dtype::BF16);
    base.push(i64_buffer());
    std::fs::write(zoo.path("base.safetensors"), encode_raw(&base)).unwrap();
    std::fs::write(
        zoo.path("m1.safetensors"),
        encode_raw(&variant(1, Dtype::F16)),
    )
    .unwrap();
    zoo.program("algo.merge", PROGRAM);
    ok(zoo.mergec(&[
        "merge",
        "algo.merge",
        "--quiet",
        "--base",
        "base.safetensors",
        "--model",
        "m1.safetensors",
        "--model",
        "m2/model.safetensors",
        "--out",
        "out",
    ]));
    verify_tensors(&zoo, "out", &Expect::new("wavg"));
    assert_eq!(verify_layout(&zoo.path("out")), 1);
    let files: BTreeSet<String> = std::fs::read_dir(zoo.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let want: BTreeSet<String> = ["model.safetensors", "mergec.json", "README.md"]
        .map(String::from)
        .into();
    assert_eq!(
        files, want,
        "no side files without a base directory (the card is the merge's own)"
    );
}

#[test]
fn tokenizer_from_copies_tokenizer_files_from_another_directory() {
    let zoo = Zoo::new();
    std::fs::create_dir(zoo.path("tok")).unwrap();
    std::fs::write(zoo.path("tok/tokenizer.json"), "{\"other\": true}").unwrap();
    ok(merge(&zoo, "wavg", "out", &["--tokenizer-from", "tok"]));
    let read = |p: &str| std::fs::read_to_string(zoo.path(p)).unwrap();
    assert_eq!(read("out/tokenizer.json"), "{\"other\": true}");
    assert_eq!(read("out/config.json"), read("base/config.json"));
    assert_eq!(
        read("out/generation_config.json"),
        read("base/generation_config.json")
    );
}

#[test]
fn a_tensor_missing_from_one_model_is_an_error_or_copied_from_the_base_when_allowed() {
    let zoo = Zoo::new();
    rewrite_m2(&zoo, |t| t.retain(|t| t.name != UP1));
    let e = fails(merge(&zoo, "wavg", "out", &[]));
    assert!(
        e.contains("architecture") && e.contains("model 2") && e.contains(UP1),
        "{e}"
    );
    assert!(e.contains("--allow-arch-mismatch"), "{e}");
    assert!(!zoo.path("out").exists());
    let o = ok(merge(&zoo, "wavg", "out", &["--allow-crimes"]));
    let note = String::from_utf8_lossy(&o.stderr);
    assert!(note.contains("1 of the base's tensors missing"), "{note}");
    let base = Checkpoint::open(zoo.path("base")).unwrap();
    let out = Checkpoint::open(zoo.path("out")).unwrap();
    assert_eq!(out.raw_bytes(UP1).unwrap(), base.raw_bytes(UP1).unwrap());
    let e = Expect::new("wavg");
    for name in all_names().iter().filter(|n| *n != UP1) {
        assert_eq!(
            out.raw_bytes(name).unwrap(),
            e.tensor(&zoo, name).1,
            "{name}"
        );
    }
    let p = read_json(&zoo.path("out/mergec.json"));
    // The I64 buffer is missing from the models too.
    assert_eq!(p["tensors"]["copied_missing_in_a_model"], 2);
}

#[test]
fn on_mismatch_base_keeps_the_base_tensor() {
    let zoo = Zoo::new();
    rewrite_m2(&zoo, |t| {
        t[0] = raw(EMBED, &[40, 16], &values(EMBED, &[40, 16], 2), Dtype::F32);
    });
    assert!(fails(merge(&zoo, "wavg", "out", &[])).contains(EMBED));
    ok(merge(&zoo, "wavg", "out", &["--on-mismatch", "base"]));
    let base = Checkpoint::open(zoo.path("base")).unwrap();
    let out = Checkpoint::open(zoo.path("out")).unwrap();
    assert_eq!(
        out.raw_bytes(EMBED).unwrap(),
        base.raw_bytes(EMBED).unwrap()
    );
    let e = Expect::new("wavg");
    for name in all_names().iter().filter(|n| *n != EMBED) {
        assert_eq!(
            out.raw_bytes(name).unwrap(),
            e.tensor(&zoo, name).1,
            "{name}"
        );
    }
    let p = read_json(&zoo.path("out/mergec.json"));
    assert_eq!(p["tensors"]["copied_shape_mismatch"], 1);
}

#[test]
fn a_two_d_only_program_runs_on_the_tensors_only_selects() {
    let zoo = Zoo::new();
    ok(merge(&zoo, "rows", "out", &["--only", "proj"]));
    verify_tensors(
        &zoo,
        "out",
        &Expect {
            only: Some("proj"),
            ..Expect::new("rows")
        },
    );
}

#[test]
fn allow_nonfinite_writes_nan() {
    let zoo = Zoo::new();
    ok(merge(&zoo, "nan_norms", "out", &["--allow-nonfinite"]));
    let e = Expect {
        allow_nonfinite: true,
        ..Expect::new("nan_norms")
    };
    verify_tensors(&zoo, "out", &e);
    let out = Checkpoint::open(zoo.path("out")).unwrap();
    let norm = out.read_f32("model.norm.weight").unwrap();
    assert!(norm.data.iter().all(|x| x.is_nan()));
}

#[test]
fn f16_overflow_is_a_non_finite_result() {
    let zoo = Zoo::new();
    put_70000(&zoo);
    // Merged (all of it) and copied (--only elsewhere) into F16.
    for only in [None, Some("self_attn")] {
        let mut flags = vec!["--dtype", "f16"];
        flags.extend(only.map(|o| ["--only", o]).into_iter().flatten());
        let e = fails(merge(&zoo, "wavg", "out", &flags));
        assert!(e.contains(UP1) && e.contains("F16"), "{only:?}: {e}");
        assert!(!zoo.path("out").exists() && leftovers(zoo.dir()).is_empty());
        flags.push("--allow-nonfinite");
        ok(merge(&zoo, "wavg", "out", &flags));
        let t = Checkpoint::open(zoo.path("out"))
            .unwrap()
            .read_f32(UP1)
            .unwrap();
        assert_eq!(t.data[5], f32::INFINITY, "{only:?}");
        std::fs::remove_dir_all(zoo.path("out")).unwrap();
    }
    // BF16 and F32 hold it.
    ok(merge(&zoo, "wavg", "out", &[]));
}

#[test]
fn an_existing_out_is_refused_without_force_and_replaced_with_it() {
    let zoo = Zoo::new();
    std::fs::create_dir(zoo.path("out")).unwrap();
    std::fs::write(zoo.path("out/keep.txt"), "precious").unwrap();
    zoo.program("algo.merge", PROGRAM);
    let before = snapshot(zoo.dir());
    let e = fails(merge(&zoo, "wavg", "out", &[]));
    assert!(e.contains("--force"), "{e}");
    assert_unchanged(&[before], &[snapshot(zoo.dir())]);
    assert!(leftovers(zoo.dir()).is_empty());

    // --force replaces only a model directory: with someone's file beside, nothing changes.
    std::fs::write(zoo.path("out/model.safetensors"), "an old merge").unwrap();
    let before = snapshot(zoo.dir());
    let e = fails(merge(&zoo, "wavg", "out", &["--force"]));
    assert!(e.contains("`keep.txt`"), "{e}");
    assert!(e.contains("not part of a model"), "{e}");
    assert_unchanged(&[before], &[snapshot(zoo.dir())]);
    std::fs::remove_file(zoo.path("out/keep.txt")).unwrap();
    ok(merge(&zoo, "wavg", "out", &["--force"]));
    verify_tensors(&zoo, "out", &Expect::new("wavg"));
    assert!(leftovers(zoo.dir()).is_empty());
    // A failed --force run leaves the previous output alone.
    let before = snapshot(zoo.dir());
    fails(merge(&zoo, "nan_norms", "out", &["--force"]));
    assert_unchanged(&[before], &[snapshot(zoo.dir())]);
    assert!(leftovers(zoo.dir()).is_empty());

    // An empty directory is not refused.
    std::fs::create_dir(zoo.path("empty")).unwrap();
    ok(merge(&zoo, "wavg", "empty", &[]));
    verify_tensors(&zoo, "empty", &Expect::new("wavg"));
}

#[test]
fn the_library_gives_the_same_bytes_as_the_binary() {
    let zoo = Zoo::new();
    ok(merge(
        &zoo,
        "dare",
        "cli",
        &["--seed", "3", "--set", "density=0.25"],
    ));
    let (base, models) = (zoo.path("base"), vec![zoo.path("m1"), zoo.path("m2")]);
    let mut job = library_job("algo.merge", PROGRAM, "dare", base, models, zoo.path("lib"));
    job.params = Box::new(mergec::runtime::FixedParams(sets(&["density=0.25"])));
    job.seed = 3;
    let s = mergec::runtime::run(&job).unwrap();
    assert_eq!((s.merged, s.copied, s.shards), (20, 1, 1));
    assert_eq!(weights(&zoo.path("lib")), weights(&zoo.path("cli")));
    assert!(s.notes.is_empty(), "{:?}", s.notes);

    // Engines raced (what `--device auto` does with a GPU): the winner runs the merge,
    // the summary names it and what the race measured, and the bytes are the same.
    use mergec::runtime::compiled::Backend;
    job.backend = Backend::Fastest(&[Backend::Ref, Backend::Jit]);
    job.out = zoo.path("raced");
    let s = mergec::runtime::run(&job).unwrap();
    assert_eq!(weights(&zoo.path("raced")), weights(&zoo.path("cli")));
    assert!(["ref", "jit"].contains(&s.backend), "{}", s.backend);
    let [note] = &s.notes[..] else {
        panic!("{:?}", s.notes)
    };
    assert!(note.starts_with("note: engines raced on `"), "{note}");
    assert!(note.contains(" ref ") && note.contains(" jit "), "{note}");
    assert!(
        note.ends_with(&format!("; {} runs the merge", s.backend)),
        "{note}"
    );
}

/// Digests of inputs are remembered across merges (under XDG_CACHE_HOME): a second
/// merge of the same files reports the cached ones, and a file rewritten in place, same
/// size and inode, is hashed again, never reported by its old digest.
#[test]
fn input_digests_are_cached_until_the_file_changes() {
    let zoo = Zoo::new();
    zoo.program("algo.merge", PROGRAM);
    let cache = zoo.path("cache");
    let run = |out: &str| {
        let mut args: Vec<&str> = MERGE.to_vec();
        args.extend(["--merge", "wavg"]);
        args.extend(INPUTS);
        args.extend(["--out", out]);
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_mergec"))
            .current_dir(zoo.dir())
            .args(&args)
            .env("XDG_CACHE_HOME", &cache)
            .env_remove("MERGEC_DIGEST_CACHE")
            .output()
            .unwrap();
        ok(o);
        read_json(&zoo.path(out).join("mergec.json"))["inputs"]["models"][0]["content_blake3"]
            .clone()
    };
    // Files changed in the last 2 seconds are not cached (their ctime could repeat).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let first = run("out1");
    let files: Vec<_> = std::fs::read_dir(cache.join("mergec/digests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let inputs: usize = ["base", "m1", "m2"]
        .iter()
        .map(|d| {
            std::fs::read_dir(zoo.path(d))
                .unwrap()
                .filter(|e| {
                    let p = e.as_ref().unwrap().path();
                    p.extension().is_some_and(|x| x == "safetensors")
                })
                .count()
        })
        .sum();
    assert_eq!(
        files.len(),
        inputs,
        "one cache file per input file: {files:?}"
    );
    // The second merge reports what the cache holds: swap in another digest to see it.
    let m1 = std::fs::canonicalize(zoo.path("m1")).unwrap();
    let fake = "ab".repeat(32);
    let mut poisoned = 0;
    for f in &files {
        let mut j = read_json(f);
        if !Path::new(j["file"]["path"].as_str().unwrap()).starts_with(&m1) {
            continue;
        }
        for (_, v) in j["tensors"].as_object_mut().unwrap() {
            v[2] = fake.clone().into();
            poisoned += 1;
        }
        std::fs::write(f, j.to_string()).unwrap();
    }
    assert!(poisoned > 0);
    assert_ne!(run("out2"), first, "the cached digests were not used");
    // Rewritten in place: new bytes, same length and inode. Hashed again.
    for e in std::fs::read_dir(zoo.path("m1")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "safetensors") {
            let mut bytes = std::fs::read(&path).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            std::fs::write(&path, &bytes).unwrap();
        }
    }
    let merged: BTreeSet<String> = Checkpoint::open(zoo.path("out1").join(MODEL_FILE))
        .unwrap()
        .names()
        .filter(|n| Checkpoint::open(zoo.path("m1")).unwrap().info(n).is_ok())
        .map(String::from)
        .collect();
    let expect = content_blake3(&zoo.path("m1"), |n| merged.contains(n));
    let third = run("out3");
    assert_eq!(third, expect);
    assert_ne!(third, first);
}
