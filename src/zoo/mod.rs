//! The testbed zoo (evaluation issue, item 5): tiny llama-architecture families trained
//! with candle on the CPU, where merging matters. See docs/zoo.md.
//!
//! A family is a base pretrained on synthetic grade-school problems and experts
//! fine-tuned from it, each on one skill (a small fact table: what a container holds, a
//! times table, sharing); the dev and test sets hold mixed problems that need several
//! skills. Everything is deterministic for a spec, and a directory built from the same
//! spec is not rebuilt.

pub mod score;
pub mod tasks;
pub mod tokenizer;
pub mod train;

pub use crate::model::config::ModelSpec;
use crate::semantics::rng::SplitMix64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tasks::{Facts, Problem, World};
use train::{Example, TrainSpec, Trainer};

/// A zoo model's network configuration: `m` over the zoo's tokenizer.
pub fn network(m: &ModelSpec) -> crate::model::config::LlamaConfig {
    m.llama(tokenizer::vocab_size(), tokenizer::BOS, tokenizer::EOS)
}

mod error;

pub use error::ZooError;

type Result<T> = std::result::Result<T, ZooError>;

/// Bumped whenever the generator or the training code changes what a spec builds.
/// 2: training matmuls in row blocks of at most 512 (the same bits on every machine),
/// and the multi-task reference.
pub const ZOO_VERSION: u32 = 2;

/// Bumped whenever only the dev/test/train sets change: a rebuild rewrites them and
/// keeps the trained models.
pub const DATA_VERSION: u32 = 2;

/// Everything that determines a family's files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FamilySpec {
    /// 1 or 2: which skills (see [`tasks::world`]).
    pub family: u32,
    pub seed: u64,
    /// Fraction of each expert skill's facts the base is pretrained on.
    pub base_known: f64,
    /// Fraction of the base's problems drawn with all facts (so it half-knows the rest).
    pub base_leak: f64,
    pub model: ModelSpec,
    pub base: TrainSpec,
    pub expert: TrainSpec,
    /// Fraction of each expert batch drawn from the base's pretraining mix.
    pub expert_replay: f64,
    /// Fraction of each expert's own problems that are mixed kinds using its skill
    /// (with the other skills' facts limited to what the base knows); the rest are
    /// its single-skill kinds.
    pub expert_mixed: f64,
    /// Per-expert `tune` regexes (in the order of the family's experts), overriding
    /// `expert.tune`: e.g. each expert tuning the MLP of its own layer, so that their
    /// task vectors touch disjoint weights. Empty: every expert uses `expert.tune`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expert_tune: Vec<String>,
    /// Sizes of the mixed dev and test sets and the few-shot pool (`train.jsonl`).
    pub dev: usize,
    pub test: usize,
    pub train: usize,
}

/// The default spec of family 1 or 2.
pub fn default_spec(family: u32) -> FamilySpec {
    let base = TrainSpec {
        steps: 600,
        batch: 32,
        lr: 3e-3,
        warmup: 30,
        min_lr_frac: 0.1,
        optimizer: "adamw".into(),
        beta1: 0.9,
        beta2: 0.99,
        weight_decay: 0.0,
        decay_to_start: false,
        clip: 1.0,
        tune: String::new(),
        question_loss: 0.0,
        density: 1.0,
        mask_batches: 0,
    };
    FamilySpec {
        family,
        seed: 1000 * family as u64 + 7,
        base_known: 0.5,
        base_leak: 0.2,
        model: ModelSpec {
            hidden: 128,
            layers: 4,
            heads: 4,
            kv_heads: 4,
            intermediate: 384,
            max_positions: 1024,
        },
        // Experts differ from the base only in length.
        expert: TrainSpec {
            steps: 100,
            warmup: 10,
            ..base.clone()
        },
        base,
        expert_replay: 0.2,
        expert_mixed: 0.5,
        // Each expert tunes the MLP of its own layer: disjoint task vectors.
        expert_tune: (1..=3).map(|l| format!(r"layers\.{l}\.mlp")).collect(),
        dev: 800,
        test: 1200,
        train: 500,
    }
}

/// Applies `key=value` overrides (dotted paths into the spec's JSON, e.g.
/// `base.steps=300`, `model.hidden=96`, `expert.tune=mlp`).
pub fn apply_overrides(spec: &FamilySpec, sets: &[String]) -> Result<FamilySpec> {
    let set = |m: String| ZooError::Setting(m);
    let mut v = serde_json::to_value(spec).map_err(|e| set(e.to_string()))?;
    for s in sets {
        let (k, val) = s
            .split_once('=')
            .ok_or_else(|| set(format!("--set `{s}`: use KEY=VALUE")))?;
        let parts: Vec<&str> = k.split('.').collect();
        let (last, path) = parts.split_last().expect("split gives one part");
        let mut slot = &mut v;
        for part in path {
            slot = slot
                .get_mut(*part)
                .ok_or_else(|| set(format!("--set `{s}`: no field `{k}` in the zoo spec")))?;
        }
        let value = match serde_json::from_str(val) {
            Ok(x) => x,
            Err(_) => serde_json::Value::String(val.to_string()),
        };
        // Fields left out at their defaults may be set too; unknown names fail below.
        slot.as_object_mut()
            .ok_or_else(|| set(format!("--set `{s}`: `{k}` is not a field of the zoo spec")))?
            .insert(last.to_string(), value);
    }
    serde_json::from_value(v).map_err(|e| set(format!("--set: {e}")))
}

/// A spec's cache key: the code version and the spec.
pub fn spec_hash(spec: &FamilySpec) -> String {
    let mut h = Sha256::new();
    h.update(format!("zoo v{ZOO_VERSION} data v{DATA_VERSION}\n").as_bytes());
    h.update(
        serde_json::to_string(spec)
            .expect("spec serializes")
            .as_bytes(),
    );
    format!("{:x}", h.finalize())[..16].to_string()
}

/// The directory of a family's multi-task reference model (not an expert: merges and
/// the demo take `expert-*` only).
pub const MULTITASK: &str = "multitask";

/// The directory names of a family's models: `base`, then `expert-<skill>` each, then
/// the multi-task reference.
pub fn model_names(spec: &FamilySpec) -> Vec<String> {
    let w = tasks::world(spec.family, spec.seed, spec.base_known);
    std::iter::once("base".to_string())
        .chain(w.experts.iter().map(|s| format!("expert-{}", s.name())))
        .chain(std::iter::once(MULTITASK.to_string()))
        .collect()
}

/// What building a family did.
pub struct Built {
    pub dir: PathBuf,
    /// False when an up-to-date copy was already there.
    pub trained: bool,
    pub seconds: f64,
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| ZooError::Io(format!("{}: {e}", path.display())))
}

fn jsonl(ps: &[Problem]) -> String {
    ps.iter().map(|p| p.to_json() + "\n").collect()
}

/// The mixed dev, test and few-shot sets: disjoint questions, all facts allowed. One
/// pool of distinct problems is drawn, shuffled and split, so the three sets follow the
/// same distribution (drawing them one after the other would leave the later sets the
/// rarer questions once the common ones are taken).
pub fn mixed_sets(w: &World, spec: &FamilySpec) -> (Vec<Problem>, Vec<Problem>, Vec<Problem>) {
    let mut rng = SplitMix64::new(spec.seed ^ 0xD5E7);
    let want = spec.dev + spec.test + spec.train;
    let mut seen = HashSet::new();
    let mut pool = Vec::with_capacity(want);
    let mut tries = 0;
    while pool.len() < want && tries < 100 * want + 1000 {
        tries += 1;
        let p = w.problem_of(&mut rng, &w.mixed_kinds, Facts::All);
        if seen.insert(p.question.clone()) {
            pool.push(p);
        }
    }
    for i in (1..pool.len()).rev() {
        let j = rng.below(i + 1);
        pool.swap(i, j);
    }
    let mut test = pool.split_off(spec.dev.min(pool.len()));
    let train = test.split_off(spec.test.min(test.len()));
    (pool, test, train)
}

fn world_json(w: &World) -> String {
    let items: Vec<_> = w
        .items
        .iter()
        .map(|i| {
            serde_json::json!({"container": i.container, "thing": i.many,
                               "count": i.count, "price": i.price})
        })
        .collect();
    let known: Vec<String> = w.base_known.iter().map(|f| format!("{f:?}")).collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "experts": w.experts.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "mixed_kinds": w.mixed_kinds.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>(),
        "items": items,
        "base_known_facts": known,
    }))
    .expect("json")
}

/// Trains `t` for `spec.steps` on batches from `draw`, logging the loss.
fn run_training(
    t: &mut Trainer,
    spec: &TrainSpec,
    mut draw: impl FnMut() -> Example,
    label: &str,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let tune = regex::Regex::new(if spec.tune.is_empty() {
        "."
    } else {
        &spec.tune
    })
    .map_err(|e| ZooError::Setting(format!("tune regex: {e}")))?;
    let t0 = std::time::Instant::now();
    if spec.density < 1.0 {
        let batches: Vec<Vec<Example>> = (0..spec.mask_batches.max(1))
            .map(|_| (0..spec.batch).map(|_| draw()).collect())
            .collect();
        let refs: Vec<Vec<&Example>> = batches.iter().map(|b| b.iter().collect()).collect();
        t.select_mask(spec.density, &tune, &refs, spec.question_loss)?;
    }
    let mut acc = 0f32;
    let mut k = 0;
    for step in 0..spec.steps {
        let batch: Vec<Example> = (0..spec.batch).map(|_| draw()).collect();
        let refs: Vec<&Example> = batch.iter().collect();
        let loss = t.step(spec, &tune, &refs)?;
        if !loss.is_finite() {
            return Err(ZooError::Diverged {
                label: label.to_string(),
                loss,
                step,
            });
        }
        acc += loss;
        k += 1;
        if (step + 1) % 50 == 0 || step + 1 == spec.steps {
            log(&format!(
                "{label}: step {:>4}/{}  loss {:.4}  ({:.1}s)",
                step + 1,
                spec.steps,
                acc / k as f32,
                t0.elapsed().as_secs_f64()
            ));
            acc = 0.0;
            k = 0;
        }
    }
    Ok(())
}

fn problem_example(p: &Problem) -> Example {
    train::example(&p.question, &p.solution)
}

/// Keeps freed memory in the process (glibc): training allocates and frees tensors of a
/// few MB every op, and returning each to the kernel costs page faults (a third of a
/// step's time).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // Safety: mallopt only changes glibc's allocation thresholds.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}

/// Builds one family into `out/family<N>` unless an up-to-date build is there
/// (same spec and zoo version in its `manifest.json`) or `force`.
pub fn build_family(
    out: &Path,
    spec: &FamilySpec,
    force: bool,
    log: &mut dyn FnMut(&str),
) -> Result<Built> {
    tune_allocator();
    spec.model.check(tokenizer::vocab_size())?;
    let t0 = std::time::Instant::now();
    let dir = out.join(format!("family{}", spec.family));
    let hash = spec_hash(spec);
    let names = model_names(spec);
    if !force && is_current(&dir, &hash, &names) {
        return Ok(Built {
            dir,
            trained: false,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    // A stale manifest must not vouch for a half-built directory; models whose own
    // training key still matches are kept (unless `force`).
    let _ = std::fs::remove_file(dir.join("manifest.json"));
    std::fs::create_dir_all(&dir).map_err(|e| ZooError::Io(format!("{}: {e}", dir.display())))?;
    let keep = if force {
        None
    } else {
        Some(cfg_fingerprint(spec))
    };
    let w = tasks::world(spec.family, spec.seed, spec.base_known);
    write(&dir.join("world.json"), &world_json(&w))?;
    let (dev, test, train) = mixed_sets(&w, spec);
    write(&dir.join("dev.jsonl"), &jsonl(&dev))?;
    write(&dir.join("test.jsonl"), &jsonl(&test))?;
    write(&dir.join("train.jsonl"), &jsonl(&train))?;

    let cfg = network(&spec.model);
    let base_key = json_hash(&serde_json::json!({
        "v": ZOO_VERSION, "family": spec.family, "seed": spec.seed,
        "base_known": spec.base_known, "model": spec.model, "train": spec.base,
        "leak": spec.base_leak,
    }));
    let mut timings = Vec::new();
    let base = match reuse(&dir.join("base"), &base_key, keep.as_deref()) {
        Some(t) => t,
        None => {
            let mut base = Trainer::new(&cfg, spec.seed)?;
            let mut rng = SplitMix64::new(spec.seed ^ 0xBA5E);
            run_training(
                &mut base,
                &spec.base,
                || {
                    let which = if spec.base_leak > 0.0 && rng.chance(spec.base_leak) {
                        Facts::All
                    } else {
                        Facts::Known(None)
                    };
                    problem_example(&w.problem_of(&mut rng, &w.base_kinds, which))
                },
                &format!("family{} base", spec.family),
                log,
            )?;
            save_model(&base, &dir.join("base"), &base_key)?;
            timings.push(("base".to_string(), t0.elapsed().as_secs_f64()));
            base
        }
    };
    train_experts(
        &dir,
        spec,
        &w,
        &base,
        &base_key,
        keep.as_deref(),
        &mut timings,
        log,
    )?;
    train_multitask(
        &dir,
        spec,
        &w,
        &base,
        &base_key,
        keep.as_deref(),
        &mut timings,
        log,
    )?;
    let seconds = t0.elapsed().as_secs_f64();
    let manifest = serde_json::json!({
        "zoo_version": ZOO_VERSION,
        "spec_hash": hash,
        "spec": spec,
        "models": names,
        "multitask": {"dir": MULTITASK, "train": multitask_train(spec, w.experts.len()),
                      "note": "reference, not an expert: fine-tuned on all experts' data pooled"},
        "data": {"dev": dev.len(), "test": test.len(), "train": train.len()},
        "train_seconds": timings.iter().map(|(n, s)| (n.clone(), serde_json::json!((s * 10.0).round() / 10.0))).collect::<serde_json::Map<_, _>>(),
        "build_seconds": (seconds * 10.0).round() / 10.0,
    });
    write(
        &dir.join("manifest.json"),
        &serde_json::to_string_pretty(&manifest).expect("json"),
    )?;
    Ok(Built {
        dir,
        trained: true,
        seconds,
    })
}

/// An expert's training settings: `spec.expert` with its own `expert_tune` if set.
fn expert_train(spec: &FamilySpec, e: usize) -> TrainSpec {
    let mut train = spec.expert.clone();
    if let Some(t) = spec.expert_tune.get(e).filter(|t| !t.is_empty()) {
        train.tune = t.clone();
    }
    train
}

/// One training problem of expert `e` (skill `skill`): with probability
/// `expert_replay` a base problem, else one of its own (mixed with `expert_mixed`).
fn expert_problem(w: &World, spec: &FamilySpec, e: usize, rng: &mut SplitMix64) -> Problem {
    let skill = w.experts[e];
    if rng.chance(spec.expert_replay) {
        return w.problem_of(rng, &w.base_kinds, Facts::Known(None));
    }
    let mixed = w.mixed_kinds_with(skill);
    let kinds = if !mixed.is_empty() && rng.chance(spec.expert_mixed) {
        &mixed
    } else {
        &w.expert_kinds[e]
    };
    w.problem_of(rng, kinds, Facts::Known(Some(skill)))
}

/// Fine-tunes each expert from the base (kept when its key matches).
#[allow(clippy::too_many_arguments)]
fn train_experts(
    dir: &Path,
    spec: &FamilySpec,
    w: &World,
    base: &Trainer,
    base_key: &str,
    keep: Option<&str>,
    timings: &mut Vec<(String, f64)>,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    for (e, skill) in w.experts.iter().enumerate() {
        let t1 = std::time::Instant::now();
        let name = format!("expert-{}", skill.name());
        let train = expert_train(spec, e);
        let key = json_hash(&serde_json::json!({
            "base": base_key, "skill": skill.name(), "train": train,
            "replay": spec.expert_replay, "mixed": spec.expert_mixed,
        }));
        if reuse(&dir.join(&name), &key, keep).is_some() {
            continue;
        }
        let mut t = Trainer::fork(base)?;
        let mut rng = SplitMix64::new(spec.seed ^ ((0xE0 + e as u64) * 0x1_0001));
        run_training(
            &mut t,
            &train,
            || problem_example(&expert_problem(w, spec, e, &mut rng)),
            &format!("family{} {name}", spec.family),
            log,
        )?;
        save_model(&t, &dir.join(&name), &key)?;
        timings.push((name, t1.elapsed().as_secs_f64()));
    }
    Ok(())
}

/// The multi-task reference (`multitask/`, the usual ceiling of merging): fine-tuned
/// from the base on all the experts' data pooled (each example is drawn as a
/// uniformly chosen expert draws its own), for as many steps as the experts together,
/// tuning the union of what they tune, with the experts' other settings.
pub fn multitask_train(spec: &FamilySpec, experts: usize) -> TrainSpec {
    let tunes: Vec<String> = (0..experts).map(|e| expert_train(spec, e).tune).collect();
    let mut train = spec.expert.clone();
    train.steps = spec.expert.steps * experts;
    train.tune = if tunes.iter().any(|t| t.is_empty() || t == ".") {
        String::new()
    } else {
        let mut seen = HashSet::new();
        let parts: Vec<String> = tunes
            .iter()
            .filter(|t| seen.insert(t.as_str()))
            .map(|t| format!("(?:{t})"))
            .collect();
        parts.join("|")
    };
    train
}

#[allow(clippy::too_many_arguments)]
fn train_multitask(
    dir: &Path,
    spec: &FamilySpec,
    w: &World,
    base: &Trainer,
    base_key: &str,
    keep: Option<&str>,
    timings: &mut Vec<(String, f64)>,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let t1 = std::time::Instant::now();
    let n = w.experts.len();
    let train = multitask_train(spec, n);
    let skills: Vec<&str> = w.experts.iter().map(|s| s.name()).collect();
    let key = json_hash(&serde_json::json!({
        "base": base_key, "multitask": skills, "train": train,
        "replay": spec.expert_replay, "mixed": spec.expert_mixed,
    }));
    if reuse(&dir.join(MULTITASK), &key, keep).is_some() {
        return Ok(());
    }
    let mut t = Trainer::fork(base)?;
    let mut rng = SplitMix64::new(spec.seed ^ 0x3017_0000_0001);
    run_training(
        &mut t,
        &train,
        || {
            let e = rng.below(n);
            problem_example(&expert_problem(w, spec, e, &mut rng))
        },
        &format!("family{} {MULTITASK}", spec.family),
        log,
    )?;
    save_model(&t, &dir.join(MULTITASK), &key)?;
    timings.push((MULTITASK.to_string(), t1.elapsed().as_secs_f64()));
    Ok(())
}

/// What must match for a saved model to be reused besides its key (nothing yet: the
/// key covers the spec); `None` disables reuse.
fn cfg_fingerprint(spec: &FamilySpec) -> String {
    spec_hash(spec)
}

fn json_hash(v: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    h.update(v.to_string().as_bytes());
    format!("{:x}", h.finalize())[..16].to_string()
}

/// Saves a model with its training key (`zoo-key.txt`), written last.
fn save_model(t: &Trainer, dir: &Path, key: &str) -> Result<()> {
    let _ = std::fs::remove_file(dir.join("zoo-key.txt"));
    t.save(dir)?;
    write(&dir.join("zoo-key.txt"), key)
}

/// The model saved at `dir` if it was trained under `key` (and reuse is allowed).
fn reuse(dir: &Path, key: &str, keep: Option<&str>) -> Option<Trainer> {
    keep?;
    let saved = std::fs::read_to_string(dir.join("zoo-key.txt")).ok()?;
    if saved.trim() != key {
        return None;
    }
    Trainer::load(dir).ok()
}

/// Whether `dir` holds a complete build of the spec with this hash.
fn is_current(dir: &Path, hash: &str, names: &[String]) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("manifest.json")) else {
        return false;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    v.get("spec_hash").and_then(|h| h.as_str()) == Some(hash)
        && v.get("zoo_version").and_then(|h| h.as_u64()) == Some(ZOO_VERSION as u64)
        && ["dev.jsonl", "test.jsonl", "train.jsonl"]
            .iter()
            .all(|f| dir.join(f).is_file())
        && names.iter().all(|n| {
            ["config.json", "tokenizer.json", "model.safetensors"]
                .iter()
                .all(|f| dir.join(n).join(f).is_file())
        })
}
