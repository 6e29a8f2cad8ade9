//! The testbed zoo (docs/zoo.md): the task generator is deterministic and its answers
//! are right, the tokenizer round-trips through the `tokenizers` crate, training lowers
//! the loss deterministically, and a tiny family builds, is cached, and loads for
//! generation.

use mergec::eval::gsm8k::{is_correct, parse_jsonl};
use mergec::semantics::rng::SplitMix64;
use mergec::zoo::tasks::{self, Facts, Kind, Skill};
use mergec::zoo::{self, tokenizer, train};
use std::collections::BTreeSet;

const ALL_KINDS: [Kind; 13] = [
    Kind::PackCount,
    Kind::PackPlus,
    Kind::PriceOne,
    Kind::PricePlus,
    Kind::Times,
    Kind::Share,
    Kind::PackTimes,
    Kind::TimesShare,
    Kind::PackTimesShare,
    Kind::AddPackTimes,
    Kind::PriceTimes,
    Kind::PackPrice,
    Kind::AddPriceTimes,
];

#[test]
fn generated_problems_are_right_and_deterministic() {
    for family in [1, 2] {
        let w = tasks::world(family, 42, 0.5);
        let mut rng = SplitMix64::new(7);
        let mut again = SplitMix64::new(7);
        for i in 0..3000 {
            let kind = ALL_KINDS[i % ALL_KINDS.len()];
            let p = w.problem(&mut rng, kind, Facts::All);
            assert_eq!(p, w.problem(&mut again, kind, Facts::All), "deterministic");
            tasks::verify(&w, &p).unwrap_or_else(|e| panic!("{e}: {p:?}"));
            // The evaluator reads the same answer back from the JSONL record.
            let parsed = parse_jsonl(&p.to_json(), "gen").expect("parses");
            assert_eq!(parsed[0].target, p.answer.to_string());
            assert!(is_correct(&p.solution, &parsed[0].target));
            // Every fact the text uses is listed, within the tables' ranges.
            for f in &p.facts {
                assert!(
                    tasks::all_facts(&w, f.skill()).contains(f),
                    "{f:?} outside its table"
                );
            }
        }
    }
    // Another seed gives other tables.
    assert_ne!(
        tasks::world(1, 42, 0.5).items,
        tasks::world(1, 43, 0.5).items
    );
}

#[test]
fn the_base_sees_only_its_share_of_each_experts_facts() {
    let w = tasks::world(1, 5, 0.5);
    for &s in &w.experts {
        let all = tasks::all_facts(&w, s);
        let known = all.iter().filter(|f| w.base_known.contains(f)).count();
        assert_eq!(known, (all.len() as f64 * 0.5).round() as usize, "{s:?}");
    }
    let mut rng = SplitMix64::new(1);
    for _ in 0..2000 {
        let p = w.problem_of(&mut rng, &w.base_kinds, Facts::Known(None));
        for f in &p.facts {
            assert!(
                f.skill() == Skill::Add || w.base_known.contains(f),
                "base data uses unknown {f:?}"
            );
        }
        let p = w.problem_of(
            &mut rng,
            &w.expert_kinds[1],
            Facts::Known(Some(w.experts[1])),
        );
        assert!(p.facts.iter().all(|f| f.skill() == w.experts[1]
            || f.skill() == Skill::Add
            || w.base_known.contains(f)));
    }
    // Mixed problems need at least two experts' skills.
    for &k in &w.mixed_kinds {
        let p = w.problem(&mut rng, k, Facts::All);
        let skills: BTreeSet<Skill> = p
            .facts
            .iter()
            .map(|f| f.skill())
            .filter(|s| w.experts.contains(s))
            .collect();
        assert!(skills.len() >= 2, "{k:?} needs {skills:?}");
    }
}

#[test]
fn mixed_sets_are_disjoint_and_seeded() {
    let mut spec = zoo::default_spec(1);
    spec.dev = 300;
    spec.test = 500;
    spec.train = 100;
    let w = tasks::world(1, spec.seed, spec.base_known);
    let (dev, test, train) = zoo::mixed_sets(&w, &spec);
    assert_eq!((dev.len(), test.len(), train.len()), (300, 500, 100));
    let qs: BTreeSet<&str> = dev
        .iter()
        .chain(&test)
        .chain(&train)
        .map(|p| p.question.as_str())
        .collect();
    assert_eq!(qs.len(), 900, "no question twice");
    let (dev2, _, _) = zoo::mixed_sets(&w, &spec);
    assert_eq!(dev, dev2);
}

#[test]
fn tokenizer_round_trips_through_the_tokenizers_crate() {
    let json = tokenizer::tokenizer_json().expect("builds");
    let tok: tokenizers::Tokenizer = json.parse().expect("loads");
    assert_eq!(tok.get_vocab_size(true), tokenizer::vocab_size());
    let text = "Question: Ann buys 5 trays of eggs. How many eggs?\nAnswer: 4 eggs per tray.\n\
                5 * 4 = 20.\n#### 20 ~{|}$";
    let enc = tok.encode(text, true).expect("encodes");
    let mut want = vec![tokenizer::BOS];
    want.extend(tokenizer::encode_text(text));
    assert_eq!(
        enc.get_ids(),
        want.as_slice(),
        "BOS, then one token a character"
    );
    assert_eq!(tok.decode(enc.get_ids(), true).expect("decodes"), text);
    // Specials written in text are single tokens; decoding drops them.
    let enc = tok.encode("  #### 7</s>", false).expect("encodes");
    assert_eq!(enc.get_ids().last(), Some(&tokenizer::EOS));
    assert_eq!(
        tok.decode(enc.get_ids(), true).expect("decodes"),
        "  #### 7"
    );
    // Characters outside the set become <unk>.
    let enc = tok.encode("é", false).expect("encodes");
    assert_eq!(enc.get_ids(), &[tokenizer::UNK]);
}

fn tiny_spec(family: u32) -> zoo::FamilySpec {
    let mut s = zoo::default_spec(family);
    s.model = zoo::ModelSpec {
        hidden: 32,
        layers: 2,
        heads: 2,
        kv_heads: 2,
        intermediate: 64,
        max_positions: 192,
    };
    s.base.steps = 6;
    s.base.batch = 4;
    s.base.warmup = 2;
    s.expert.steps = 2;
    s.expert.batch = 4;
    s.expert.warmup = 1;
    s.dev = 20;
    s.test = 30;
    s.train = 10;
    s
}

#[test]
fn training_lowers_the_loss_deterministically() {
    let spec = tiny_spec(1);
    let w = tasks::world(1, 3, 0.5);
    let mut rng = SplitMix64::new(9);
    let data: Vec<train::Example> = (0..16)
        .map(|_| {
            let p = w.problem_of(&mut rng, &w.base_kinds, Facts::All);
            train::example(&p.question, &p.solution)
        })
        .collect();
    let refs: Vec<&train::Example> = data.iter().collect();
    let mut ts = spec.base.clone();
    ts.steps = 25;
    ts.lr = 1e-2;
    ts.warmup = 1;
    let run = || {
        let mut t = train::Trainer::new(&zoo::network(&spec.model), 11).expect("model");
        let tune = regex::Regex::new(".").expect("regex");
        let before = t.loss(&refs, 0.0).expect("loss");
        for _ in 0..ts.steps {
            t.step(&ts, &tune, &refs).expect("step");
        }
        let after = t.loss(&refs, 0.0).expect("loss");
        let w: Vec<Vec<f32>> = t.weights().iter().map(|(_, _, d)| d.to_vec()).collect();
        (before, after, w)
    };
    let (before, after, w1) = run();
    assert!(after < 0.6 * before, "loss {before} -> {after}");
    let (_, _, w2) = run();
    assert!(w1 == w2, "same seed, same bits");
}

#[test]
fn a_tiny_family_builds_caches_and_generates() {
    use mergec::model::{LoadedModel, TextModel};
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = tiny_spec(2);
    let built = zoo::build_family(dir.path(), &spec, false, &mut |_| {}).expect("builds");
    assert!(built.trained);
    let fam = dir.path().join("family2");
    for m in [
        "base",
        "expert-packs",
        "expert-prices",
        "expert-times",
        "multitask",
    ] {
        for f in [
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "model.safetensors",
        ] {
            assert!(fam.join(m).join(f).is_file(), "{m}/{f}");
        }
    }
    let dev = mergec::eval::gsm8k::load_jsonl(&fam.join("dev.jsonl")).expect("dev");
    assert_eq!(dev.len(), 20);
    let stamp = std::fs::metadata(fam.join("base/model.safetensors"))
        .and_then(|m| m.modified())
        .expect("stamp");
    let again = zoo::build_family(dir.path(), &spec, false, &mut |_| {}).expect("cached");
    assert!(!again.trained, "same spec: not rebuilt");
    let stamp2 = std::fs::metadata(fam.join("base/model.safetensors"))
        .and_then(|m| m.modified())
        .expect("stamp");
    assert_eq!(stamp, stamp2);
    // The saved model loads through the inference path and answers something.
    let mut m = LoadedModel::load(&fam.join("expert-times")).expect("loads");
    let outs = m
        .generate(
            &["Question: How many pens are in a box?\nAnswer:".to_string()],
            &zoo::score::gen_options(),
            &mut |_| {},
        )
        .expect("generates");
    assert_eq!(outs.len(), 1);
    let s = zoo::score::score_dir(&fam.join("base"), &dev[..5]).expect("scores");
    assert_eq!(s.total, 5);
}

#[test]
fn the_multitask_reference_pools_the_experts_steps_and_tunes() {
    let spec = zoo::default_spec(1);
    let t = zoo::multitask_train(&spec, 3);
    assert_eq!(t.steps, 3 * spec.expert.steps);
    let re = regex::Regex::new(&t.tune).expect("regex");
    for l in 0..spec.model.layers {
        let name = format!("model.layers.{l}.mlp.up_proj.weight");
        let tuned_by_an_expert = spec
            .expert_tune
            .iter()
            .any(|x| regex::Regex::new(x).expect("regex").is_match(&name));
        assert_eq!(re.is_match(&name), tuned_by_an_expert, "{name}");
    }
    // An expert that tunes everything makes the union everything.
    let mut all = spec.clone();
    all.expert_tune[1] = ".".into();
    assert_eq!(zoo::multitask_train(&all, 3).tune, "");
    // It is listed with the models but is not an expert.
    let names = zoo::model_names(&spec);
    assert_eq!(names.last().map(String::as_str), Some(zoo::MULTITASK));
    assert!(!zoo::MULTITASK.starts_with("expert-"));
}

/// Hex SHA-256 of a file's bytes, first 16 digits.
fn file_hash(path: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).expect("reads");
    format!("{:x}", Sha256::digest(&bytes))[..16].to_string()
}

/// What the short zoo of [`repro_spec`] gives on x86-64 (see the test below).
// The file hashes changed on 2026-12-04 with no change to the weights: llguidance turns on
// serde_json's `preserve_order` for the whole build, so the safetensors headers list their
// keys in another (still fixed) order; the losses and completions below kept their bits.
const RECORDED: &[(&str, &str)] = &[
    ("base", "2d27e9249228d6fc"),
    ("expert-packs", "b5b864f165d9becb"),
    ("expert-times", "d4f4d3d9c1495057"),
    ("expert-share", "6672fdb2c0017bd2"),
    ("multitask", "ba8ff0af94453ca7"),
    ("base completions", "2a830d304a39cac1"),
    ("base correct", "0"),
    ("base loss", "408426d2"),
    ("multitask completions", "2a830d304a39cac1"),
    ("multitask correct", "0"),
    ("multitask loss", "408303fa"),
];

/// The short zoo: [`tiny_spec`] with 4 layers (each expert tunes its own layer's MLP)
/// and batches of 8, so that the weight gradients' reductions are longer than 512 rows.
fn repro_spec() -> zoo::FamilySpec {
    let mut spec = tiny_spec(1);
    spec.base.batch = 8;
    spec.expert.batch = 8;
    spec.expert.steps = 3;
    spec.model.layers = 4;
    spec
}

/// The same bits on every x86-64 machine (issue 14, item 6): a short family's model
/// files and a few scores are recorded here, so a machine (or a change to training or
/// decoding) that gives other bits fails. Batches of 8 make the weight gradients'
/// reductions longer than 512 rows, where candle's matmul would otherwise pick its
/// summation blocks from the L1 cache size (src/model/repro.rs). If a deliberate
/// change moves these values, bump `zoo::ZOO_VERSION` and record the new ones.
#[test]
fn a_short_zoo_has_the_recorded_bits_and_scores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = repro_spec();
    zoo::build_family(dir.path(), &spec, false, &mut |_| {}).expect("builds");
    let fam = dir.path().join("family1");
    let dev = mergec::eval::gsm8k::load_jsonl(&fam.join("dev.jsonl")).expect("dev");
    let mut got = Vec::new();
    for m in zoo::model_names(&spec) {
        got.push((
            m.clone(),
            file_hash(&fam.join(&m).join("model.safetensors")),
        ));
    }
    for m in ["base", zoo::MULTITASK] {
        let s = zoo::score::score_dir(&fam.join(m), &dev[..8]).expect("scores");
        use sha2::{Digest, Sha256};
        let text = s.completions.join("\u{1}");
        let h = format!("{:x}", Sha256::digest(text.as_bytes()));
        got.push((format!("{m} completions"), h[..16].to_string()));
        got.push((format!("{m} correct"), s.correct.to_string()));
        // The training loss on the same problems, to the bit.
        let t = train::Trainer::load(&fam.join(m)).expect("loads");
        let ex: Vec<train::Example> = dev[..8]
            .iter()
            .map(|p| train::example(&p.question, &p.solution))
            .collect();
        let loss = t.loss(&ex.iter().collect::<Vec<_>>(), 0.0).expect("loss");
        got.push((format!("{m} loss"), format!("{:08x}", loss.to_bits())));
    }
    let want = RECORDED;
    let shown: Vec<String> = got
        .iter()
        .map(|(k, v)| format!("(\"{k}\", \"{v}\"),"))
        .collect();
    let same = got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|((k, v), (wk, wv))| k == wk && v == wv);
    assert!(
        same,
        "the short zoo's bits changed; got:\n{}",
        shown.join("\n")
    );
}

/// A fake `/sys/devices/system/cpu` for two CPUs whose L1 data cache (48K, 12-way) is
/// shared by both, as some hypervisors report it: gemm would see 24K and halve its
/// depth block.
fn fake_cpu_dir(root: &std::path::Path) {
    let caches = [
        ("1", "Data", "48K", "12"),
        ("1", "Instruction", "32K", "8"),
        ("2", "Unified", "1024K", "16"),
        ("3", "Unified", "32768K", "16"),
    ];
    for cpu in 0..2 {
        for (i, (level, kind, size, ways)) in caches.iter().enumerate() {
            let d = root.join(format!("cpu{cpu}/cache/index{i}"));
            std::fs::create_dir_all(&d).expect("mkdir");
            for (f, v) in [
                ("level", *level),
                ("type", *kind),
                ("size", *size),
                ("ways_of_associativity", *ways),
                ("coherency_line_size", "64"),
                ("shared_cpu_list", "0-1"),
            ] {
                std::fs::write(d.join(f), format!("{v}\n")).expect("write");
            }
        }
    }
}

/// The short zoo built by the binary on a machine that reports another cache topology
/// (a user and mount namespace over a fake `/sys/devices/system/cpu`) has the recorded
/// bits too. Before src/model/repro.rs it did not. Skipped where user namespaces are
/// not allowed.
#[test]
fn the_short_zoo_is_the_same_under_another_cache_topology() {
    use std::process::Command;
    let probe = Command::new("unshare").args(["-rm", "true"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: `unshare -rm` is not allowed here");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("cpu");
    fake_cpu_dir(&fake);
    let spec = repro_spec();
    let m = &spec.model;
    let sets = [
        format!("model.hidden={}", m.hidden),
        format!("model.layers={}", m.layers),
        format!("model.heads={}", m.heads),
        format!("model.kv_heads={}", m.kv_heads),
        format!("model.intermediate={}", m.intermediate),
        format!("model.max_positions={}", m.max_positions),
        format!("base.steps={}", spec.base.steps),
        format!("base.batch={}", spec.base.batch),
        format!("base.warmup={}", spec.base.warmup),
        format!("expert.steps={}", spec.expert.steps),
        format!("expert.batch={}", spec.expert.batch),
        format!("expert.warmup={}", spec.expert.warmup),
        format!("dev={}", spec.dev),
        format!("test={}", spec.test),
        format!("train={}", spec.train),
    ];
    let out = dir.path().join("zoo");
    let mut cmd = Command::new("unshare");
    cmd.args(["-rm", "sh", "-c"])
        .arg("mount --bind \"$0\" /sys/devices/system/cpu && exec \"$@\"")
        .arg(&fake)
        .arg(env!("CARGO_BIN_EXE_mergec"))
        .args(["zoo", "--family", "1", "--out"])
        .arg(&out);
    for s in &sets {
        cmd.args(["--set", s]);
    }
    let o = cmd.output().expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (name, want) in RECORDED.iter().take(zoo::model_names(&spec).len()) {
        let got = file_hash(&out.join("family1").join(name).join("model.safetensors"));
        assert_eq!(&got, want, "{name} under another cache topology");
    }
}
