//! The develop loop's built-in `tiny` generator: pretraining is deterministic and cached,
//! sampling is seeded (the same programs whatever the thread count or batching), and DPO
//! moves the policy toward the chosen programs' feature on held-out pairs.
//!
//! Fast tests use `TinySpec::test()` (a 2-layer, 32-wide model and a few dozen steps).
//! `shipped_generator_quality` (ignored; `cargo test --release --test tiny_generator --
//! --ignored --nocapture`) pretrains the shipped spec and reports its valid rate and
//! diversity; `develop_runs_with_the_tiny_generator` (ignored, same cache) runs `mergec
//! develop --generator tiny` end to end on tiny random models and resumes it.

use mergec::develop::generator::{Generator, Pair};
use mergec::develop::tiny::{DpoSettings, TinyGenerator, TinySpec};
use mergec::develop::tiny_corpus::{compose, normalize, usable};
#[path = "common/tiny_llama.rs"]
mod tiny_llama;

use mergec::semantics::rng::SplitMix64;
use std::collections::HashSet;
use std::path::Path;

fn quiet(_: &str) {}

fn test_generator(cache: &Path) -> TinyGenerator {
    TinyGenerator::pretrained(cache, &TinySpec::test(), &mut quiet).unwrap()
}

/// Samples used by the thread-count test: parent and child compute them alike.
fn thread_samples(cache: &Path) -> (String, Vec<String>) {
    let mut g = test_generator(cache);
    g.batch_size = 5;
    let s = g.sample("ignored", 10, 1.0, 42).unwrap();
    (g.weights_hash().to_string(), s)
}

/// The child half of `same_samples_with_one_thread` (does nothing unless run by it).
#[test]
fn thread_child() {
    let Ok(out) = std::env::var("TINY_THREAD_CHILD_OUT") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (hash, samples) = thread_samples(dir.path());
    let text = serde_json::to_string(&(hash, samples)).unwrap();
    std::fs::write(out, text).unwrap();
}

#[test]
fn same_samples_with_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("child.json");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "thread_child", "--test-threads=1"])
        .env("RAYON_NUM_THREADS", "1")
        .env("CANDLE_NUM_THREADS", "1")
        .env("TINY_THREAD_CHILD_OUT", &out)
        .status()
        .unwrap();
    assert!(status.success());
    let (child_hash, child): (String, Vec<String>) =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let (hash, samples) = thread_samples(&dir.path().join("cache"));
    assert_eq!(child_hash, hash, "pretraining depends on the thread count");
    assert_eq!(child, samples);
}

#[test]
fn pretraining_is_cached_and_sampling_is_seeded() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = test_generator(dir.path());
    let mut b = test_generator(dir.path());
    assert_eq!(a.id(), b.id());
    assert!(a.id().starts_with("tiny-v1@"));
    let key_dir = mergec::develop::tiny::cache_dir(dir.path(), &TinySpec::test());
    assert!(key_dir.join("model.safetensors").is_file());
    assert!(key_dir.join("config.json").is_file());
    let r = a.pretrain_report();
    assert!(r.last_loss < r.first_loss, "{r:?}");
    // Same seed, same samples, whatever the batching; another seed differs.
    a.batch_size = 3;
    b.batch_size = 16;
    let x = a.sample("", 8, 1.0, 7).unwrap();
    assert_eq!(x, b.sample("a different prompt", 8, 1.0, 7).unwrap());
    assert_ne!(x, a.sample("", 8, 1.0, 8).unwrap());
    // The first samples of a larger request are the same samples.
    assert_eq!(&a.sample("", 12, 1.0, 7).unwrap()[..8], &x[..]);
    // Greedy samples are all the same program.
    let g = a.sample("", 3, 0.0, 1).unwrap();
    assert!(g.iter().all(|s| s == &g[0]));
    // Guided, with llguidance's mask (the default) and without: each completion keeps
    // its own place in the grammar, so the batching still changes nothing.
    for mask in [true, false] {
        for t in [&mut a, &mut b] {
            t.guided = true;
            t.grammar_mask = mask;
        }
        let m = a.sample("", 8, 1.0, 7).unwrap();
        assert_eq!(m, b.sample("", 8, 1.0, 7).unwrap(), "mask {mask}");
    }
}

/// Composed programs with a feature (`topk_mask` trimming) or without any trimming.
fn feature_programs(n: usize, seed: u64) -> (Vec<String>, Vec<String>) {
    let mut rng = SplitMix64::new(seed);
    let (mut with, mut without) = (vec![], vec![]);
    let mut seen = HashSet::new();
    while with.len() < n || without.len() < n {
        let Some(p) = normalize(&compose(&mut rng)) else {
            continue;
        };
        if !seen.insert(p.clone()) || !usable(&p) {
            continue;
        }
        if p.contains("topk_mask(abs(tau), density)") {
            if with.len() < n {
                with.push(p);
            }
        } else if !p.contains("let kept") && without.len() < n {
            without.push(p);
        }
    }
    (with, without)
}

fn pairs(chosen: &[String], rejected: &[String]) -> Vec<Pair> {
    chosen
        .iter()
        .zip(rejected)
        .map(|(c, r)| Pair {
            prompt: String::new(),
            chosen: c.clone(),
            rejected: r.clone(),
        })
        .collect()
}

#[test]
fn dpo_raises_the_held_out_margin_and_saves_weights() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = test_generator(&dir.path().join("cache"));
    let (with, without) = feature_programs(36, 11);
    let train = pairs(&with[..24], &without[..24]);
    let held = pairs(&with[24..], &without[24..]);
    let reference = g.try_clone().unwrap();
    let (loss0, margin0) = g.evaluate_pairs(&reference, &held).unwrap();
    assert!((loss0 - std::f64::consts::LN_2).abs() < 1e-6, "{loss0}");
    assert!(margin0.abs() < 1e-6, "{margin0}");
    g.dpo = DpoSettings {
        beta: 0.1,
        lr: 2e-3,
        epochs: 4,
        batch_pairs: 8,
        ..DpoSettings::default()
    };
    let before = g.id();
    let it = dir.path().join("iter-1");
    let report = g.learn(&train, 1, &it).unwrap();
    assert_eq!(report.steps, 12);
    assert_ne!(g.id(), before);
    let (loss1, margin1) = g.evaluate_pairs(&reference, &held).unwrap();
    let first = report.losses[..3].iter().sum::<f64>() / 3.0;
    let last = report.losses[9..].iter().sum::<f64>() / 3.0;
    eprintln!(
        "DPO: train loss {first:.4} -> {last:.4}, margin {:.3} -> {:.3}; \
         held-out loss {loss0:.4} -> {loss1:.4}, margin {margin0:.3} -> {margin1:.3}",
        report.margins[0],
        report.margins.last().unwrap()
    );
    assert!(last < first, "training loss {first} -> {last}");
    assert!(margin1 > 1.0, "held-out margin {margin1}");
    assert!(loss1 < loss0, "held-out loss {loss0} -> {loss1}");
    // The iteration's weights load back: same id, same log-probabilities.
    let saved = mergec::develop::tiny::iteration_dir(&it, 1);
    assert!(report.note.contains(&saved.display().to_string()));
    let loaded = TinyGenerator::load(&saved).unwrap();
    assert_eq!(loaded.id(), g.id());
    let (l2, m2) = loaded.evaluate_pairs(&reference, &held).unwrap();
    assert!((l2 - loss1).abs() < 1e-9 && (m2 - margin1).abs() < 1e-9);
    let meta = std::fs::read_to_string(saved.join("meta.json")).unwrap();
    assert!(meta.contains("\"iteration\": 1"), "{meta}");
    // Resuming: the latest saved iteration up to the last finished one.
    assert!(TinyGenerator::latest(&it, 0).unwrap().is_none());
    assert_eq!(TinyGenerator::latest(&it, 3).unwrap().unwrap().id(), g.id());
    let cache = dir.path().join("cache");
    let spec = TinySpec::test();
    let dpo = DpoSettings {
        max_steps: 5,
        ..DpoSettings::default()
    };
    let mut r = TinyGenerator::for_run(&cache, &spec, &it, 1, dpo.clone(), &mut quiet).unwrap();
    assert_eq!(r.id(), g.id());
    assert_eq!(r.dpo, dpo);
    let fresh = TinyGenerator::for_run(&cache, &spec, &it, 0, dpo, &mut quiet).unwrap();
    assert_eq!(fresh.id(), reference.id());
    // A few pairs get `epochs` passes (3 of one batch), under max_steps (5).
    let rep = r.learn(&train[..3], 2, &it).unwrap();
    assert_eq!(rep.steps, 3);
    assert!(iteration_dir_exists(&it, 2));
}

#[test]
fn a_conditioned_generator_writes_children_of_its_parent_and_learns_per_parent() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TinySpec::test_conditioned();
    let mut g = TinyGenerator::pretrained(dir.path(), &spec, &mut quiet).unwrap();
    assert!(g.conditioned() && !test_generator(dir.path()).conditioned());
    let (a, b) = (
        mergec::develop::tiny::cache_dir(dir.path(), &spec),
        mergec::develop::tiny::cache_dir(dir.path(), &TinySpec::test()),
    );
    assert!(a.is_dir() && b.is_dir() && a != b, "its own cache entry");
    let r = g.pretrain_report();
    assert!(r.last_loss < r.first_loss, "{r:?}");
    let (with, without) = feature_programs(36, 11);
    // Seeded; the parent is the prompt, and it matters.
    let kids = g.sample(&with[0], 6, 1.0, 3).unwrap();
    assert_eq!(kids, g.sample(&with[0], 6, 1.0, 3).unwrap());
    assert_ne!(kids, g.sample(&without[0], 6, 1.0, 3).unwrap());
    let child = with[1].as_str();
    let lp = g
        .logprobs(&[(&with[0], child), (&without[0], child)], 2)
        .unwrap();
    assert_ne!(
        lp[0], lp[1],
        "the child's probability depends on its parent"
    );
    let plain = test_generator(dir.path());
    let lp = plain
        .logprobs(&[(&with[0], child), (&without[0], child)], 2)
        .unwrap();
    assert_eq!(
        lp[0], lp[1],
        "an unconditioned generator ignores the parent"
    );
    // DPO on (parent, better child, worse child) raises the held-out margin.
    let triples = |r: std::ops::Range<usize>| -> Vec<Pair> {
        r.map(|i| Pair {
            prompt: without[35 - i].clone(),
            chosen: with[i].clone(),
            rejected: without[i].clone(),
        })
        .collect()
    };
    let (train, held) = (triples(0..24), triples(24..36));
    let reference = g.try_clone().unwrap();
    g.dpo = DpoSettings {
        lr: 2e-3,
        epochs: 4,
        ..DpoSettings::default()
    };
    let (_, margin0) = g.evaluate_pairs(&reference, &held).unwrap();
    g.learn(&train, 1, &dir.path().join("it")).unwrap();
    let (_, margin1) = g.evaluate_pairs(&reference, &held).unwrap();
    assert!(
        margin1 > margin0 + 1.0,
        "held-out margin {margin0} -> {margin1}"
    );
    // Saved and loaded, it is still conditioned.
    let loaded = TinyGenerator::load(&mergec::develop::tiny::iteration_dir(
        &dir.path().join("it"),
        1,
    ))
    .unwrap();
    assert!(loaded.conditioned() && loaded.id() == g.id());
}

fn iteration_dir_exists(dir: &Path, t: usize) -> bool {
    mergec::develop::tiny::iteration_dir(dir, t)
        .join("model.safetensors")
        .is_file()
}

/// The shipped generator's quality: valid rate and diversity of 200 samples at
/// temperatures 1.0 and 1.2 (top-p 1.0 and the default 0.95), then one round of DPO
/// with the default settings preferring valid programs that trim with `topk_mask` to
/// invalid ones and ones without it, and the same figures after. Slow: pretrains the
/// shipped spec unless cached under `TINY_CACHE` (default `target/tiny-cache`).
#[test]
#[ignore]
fn shipped_generator_quality() {
    let cache = std::env::var("TINY_CACHE").unwrap_or_else(|_| "target/tiny-cache".into());
    let t = std::time::Instant::now();
    let mut g = TinyGenerator::pretrained(Path::new(&cache), &TinySpec::default(), &mut |m| {
        eprintln!("{m}")
    })
    .unwrap();
    eprintln!(
        "{} ready in {:.0}s: {:?}",
        g.id(),
        t.elapsed().as_secs_f64(),
        g.pretrain_report()
    );
    let feature = "topk_mask(";
    let report = |g: &mut TinyGenerator, seed: u64| {
        let mut valid_at_1 = 0;
        for top_p in [1.0, 0.95] {
            g.top_p = top_p;
            for temp in [1.0, 1.2] {
                let t = std::time::Instant::now();
                let s = g.sample("", 200, temp, seed).unwrap();
                let valid: Vec<&String> = s.iter().filter(|p| usable(p)).collect();
                let distinct: HashSet<&String> = s.iter().collect();
                let distinct_valid: HashSet<&&String> = valid.iter().collect();
                let with = valid.iter().filter(|p| p.contains(feature)).count();
                eprintln!(
                    "top-p {top_p} T {temp}: valid {}/200, distinct {}, distinct valid {}, \
                     valid with {feature} {with} ({:.1}s)",
                    valid.len(),
                    distinct.len(),
                    distinct_valid.len(),
                    t.elapsed().as_secs_f64()
                );
                if temp == 1.0 && top_p == 0.95 {
                    valid_at_1 = valid.len();
                }
            }
        }
        valid_at_1
    };
    let valid = report(&mut g, 1);
    assert!(valid >= 100, "valid {valid}/200");
    // One DPO round on the generator's own samples.
    g.top_p = 0.95;
    let s = g.sample("", 200, 1.0, 2).unwrap();
    let good: Vec<&String> = s
        .iter()
        .filter(|p| usable(p) && p.contains(feature))
        .collect();
    let bad: Vec<&String> = s
        .iter()
        .filter(|p| !usable(p) || !p.contains(feature))
        .collect();
    let n = good.len().min(bad.len()).min(24);
    let pairs: Vec<Pair> = (0..n)
        .map(|i| Pair {
            prompt: String::new(),
            chosen: good[i].clone(),
            rejected: bad[i].clone(),
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let r = g.learn(&pairs, 1, dir.path()).unwrap();
    eprintln!(
        "DPO on {n} pairs: {} steps in {:.1}s, loss {:.3} -> {:.3}, margin {:.2} -> {:.2}",
        r.steps,
        t.elapsed().as_secs_f64(),
        r.losses[0],
        r.losses.last().unwrap(),
        r.margins[0],
        r.margins.last().unwrap()
    );
    report(&mut g, 1);
}

/// `mergec develop --generator tiny` on a family of tiny random models: the shipped
/// generator (cached under `TINY_CACHE`, default `target/tiny-cache`, else pretrained)
/// writes programs, learns after each iteration, and a resumed run continues from the
/// saved weights. Slow without the cache.
#[test]
#[ignore]
fn develop_runs_with_the_tiny_generator() {
    let cache = std::env::var("TINY_CACHE").unwrap_or_else(|_| "target/tiny-cache".into());
    let cache = std::fs::canonicalize(".").unwrap().join(cache);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    tiny_llama::write_tiny_model(&dir.join("base"), 1, 0.3);
    tiny_llama::write_tiny_model(&dir.join("m1"), 2, 0.3);
    tiny_llama::write_tiny_model(&dir.join("m2"), 3, 0.3);
    let mut data = String::new();
    for i in 0..6 {
        data.push_str(
            &serde_json::json!({"question": format!("what is {i}+1?"),
                "answer": format!("{i}+1={}\n#### {}", i + 1, i + 1)})
            .to_string(),
        );
        data.push('\n');
    }
    std::fs::write(dir.join("dev.jsonl"), &data).unwrap();
    std::fs::write(dir.join("test.jsonl"), &data).unwrap();
    let run = |iterations: &str, resume: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_mergec"));
        // The tiny generator is cached next to the eval cache.
        c.env("MERGEC_CACHE_DIR", cache.join("eval"))
            .arg("develop")
            .args(["--generator", "tiny"])
            .arg("--base")
            .arg(dir.join("base"))
            .arg("--models")
            .arg(format!(
                "{},{}",
                dir.join("m1").display(),
                dir.join("m2").display()
            ))
            .arg("--dev")
            .arg(dir.join("dev.jsonl"))
            .arg("--test")
            .arg(dir.join("test.jsonl"))
            .arg("--run-dir")
            .arg(dir.join("run"))
            .args(["--iterations", iterations, "--programs", "16"])
            .args(["--max-new-tokens", "4", "--tensors", "mlp"])
            .args(["--chosen-fraction", "0.25", "--rejected-fraction", "0.25"])
            .args(["--dpo-steps", "4"]);
        if resume {
            c.arg("--resume");
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        err
    };
    let err = run("2", false);
    let records = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("run/programs.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let recs = records();
    let progs: Vec<_> = recs.iter().filter(|r| r["event"] == "program").collect();
    assert_eq!(progs.len(), 32);
    let id_of = |t: u64| {
        let ids: HashSet<&str> = progs
            .iter()
            .filter(|r| r["iteration"] == t)
            .map(|r| r["generator"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 1, "{ids:?}");
        ids.into_iter().next().unwrap().to_string()
    };
    for t in [1, 2] {
        let valid = progs
            .iter()
            .filter(|r| r["iteration"] == t && r["assessed"]["stage"] == "valid")
            .count();
        eprintln!("iteration {t}: {valid}/16 valid, generator {}", id_of(t));
        assert!(valid >= 4, "{valid}/16 valid\n{err}");
    }
    let learned: Vec<_> = recs.iter().filter(|r| r["event"] == "learned").collect();
    assert_eq!(learned.len(), 2);
    // (Random models often score all alike, and then there are no pairs.)
    for l in &learned {
        let pairs = l["pairs"].as_u64().unwrap();
        assert_eq!(l["steps"], if pairs > 0 { 4 } else { 0 }, "{l}");
        eprintln!("learned: {}", l["note"]);
    }
    // Iteration 2 sampled from the weights iteration 1's learning saved.
    let saved = |t: usize| {
        TinyGenerator::load(&mergec::develop::tiny::iteration_dir(
            &dir.join("run/generator"),
            t,
        ))
        .unwrap()
        .id()
    };
    assert!(id_of(1).starts_with("tiny-v1@"));
    if learned[0]["pairs"].as_u64().unwrap() > 0 {
        assert_ne!(id_of(1), saved(1));
    }
    assert_eq!(id_of(2), saved(1));
    // A resumed (finished) run continues from iteration 2's weights and adds nothing.
    let err = run("2", true);
    assert!(
        err.contains(&format!("tiny generator: resuming {}", saved(2))),
        "{err}"
    );
    let n = records().iter().filter(|r| r["event"] == "program").count();
    assert_eq!(n, 32);
}
