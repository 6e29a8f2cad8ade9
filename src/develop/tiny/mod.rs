//! The built-in `tiny` generator (issue 6, items 2 and 7): a small llama-family
//! transformer that writes merge programs, pretrained in process with candle and
//! improved with DPO, so the whole develop loop runs on a laptop CPU.
//!
//! - Vocabulary ([`Vocab`]): token ids 0..=255 are bytes; [`BOS`], [`EOS`] and [`PAD`]
//!   follow, then about 140 word tokens (keywords, the checker's builtin names, common
//!   phrases), which make sequences about three times shorter than bytes and so
//!   pretraining and sampling three times cheaper. A program is `BOS tokens EOS`.
//! - Unconditioned: the model always starts from `BOS` alone. [`Generator::sample`]
//!   ignores its prompt and DPO pairs' prompts are ignored too (the long develop prompt
//!   could not fit such a model anyway); what the generator learns is carried by its
//!   weights.
//! - Pretraining ([`TinyGenerator::pretrained`]): AdamW with warmup and cosine decay,
//!   gradient clipping, on the corpus of [`super::tiny_corpus`] (stdlib programs, their
//!   mutations, programs composed from stdlib building blocks, type-directed random
//!   programs). The shipped [`TinySpec`] (hidden 96, 4 layers, 600 steps) takes about
//!   2-3 minutes of one core. Deterministic: the corpus, the weight initialisation
//!   ([`crate::model::train::seeded_init`]) and the batch order all come from the spec's
//!   seeds, and the result does not depend on the thread count. Cached under
//!   `<cache>/tiny-generator/<key>/`, where `key` hashes the spec, the corpus and
//!   [`FORMAT`], holding `model.safetensors`, `config.json` (Hugging Face llama) and
//!   `meta.json` (the spec with its word list, the key, the weights' hash, the
//!   pretraining report and the DPO history).
//! - Sampling ([`TinyGenerator::sample_programs`]): [`crate::model::sample`], batched
//!   temperature and top-p (default 0.95) sampling with a KV cache, each completion from
//!   its own seeded stream (the same samples for the same seed whatever the batching or
//!   thread count).
//! - DPO ([`TinyGenerator::dpo`]): the policy against a frozen copy of itself taken when
//!   learning starts (each develop iteration's reference is the generator that wrote
//!   that iteration's programs), loss `-log sigmoid(beta * ((log pi(c) - log ref(c)) -
//!   (log pi(r) - log ref(r))))` with sequence log-probabilities summed over the
//!   program's tokens and its `EOS` (not the `BOS` prompt). [`Generator::learn`] runs
//!   it and saves the weights to the iteration's directory; [`TinyGenerator::load`]
//!   resumes from there.
//!
//! Speed note: candle's CPU thread pool spins while it waits for its workers, which on
//! a machine busier than its cores costs several times the work itself; there,
//! `CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS=1` is much faster (results are the same).

use super::generator::{Generator, LearnReport, Pair};
use super::tiny_corpus::{self, CorpusSpec};
use crate::r#gen::SplitMix64;
use crate::model::config::{Family, LlamaConfig};
use crate::model::llama::{Llama, masked_cross_entropy};
use crate::model::sample::{SampleOptions, sample};
use crate::model::train::{
    Batch, clipped_grads, copy_vars, seeded_init, sequence_logprobs, weights_hash,
};
use candle_core::{DType, Device};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;

mod dpo;
mod vocab;
pub use dpo::DpoSettings;
pub use vocab::{BOS, EOS, PAD, Vocab};

/// Version of the model format, corpus layout and training procedure; part of every
/// cache key and of [`Generator::id`].
pub const FORMAT: &str = "tiny-v1";
type Result<T> = std::result::Result<T, String>;

fn cerr(e: candle_core::Error) -> String {
    format!("tiny generator: {e}")
}

/// The network's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
    /// Longest sequence (`BOS` + program + `EOS`); sampling stops one short of it.
    pub max_positions: usize,
}

/// Pretraining settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSpec {
    pub steps: usize,
    /// Tokens per batch, padding included (batches hold programs of similar length).
    pub batch_tokens: usize,
    pub lr: f64,
    /// The cosine schedule decays to `lr * min_lr_frac`.
    pub min_lr_frac: f64,
    pub warmup: usize,
    pub weight_decay: f64,
    /// Gradient clipping by global norm (0: none).
    pub clip: f64,
    pub init_std: f64,
    pub seed: u64,
}

/// Everything that determines a pretrained tiny generator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TinySpec {
    pub model: ModelSpec,
    pub corpus: CorpusSpec,
    pub train: TrainSpec,
    /// The word tokens ([`Vocab`]); the default is [`Vocab::builtin`]'s.
    pub words: Vec<String>,
}

impl Default for TinySpec {
    /// The shipped generator: hidden 96, 4 layers, about 0.45M parameters, 600 steps of
    /// 2048 tokens (about 4 passes over the corpus); under 3 minutes on one core.
    fn default() -> Self {
        TinySpec {
            model: ModelSpec {
                hidden: 96,
                layers: 4,
                heads: 4,
                kv_heads: 4,
                intermediate: 256,
                max_positions: 512,
            },
            corpus: CorpusSpec::default(),
            words: Vocab::builtin().words,
            train: TrainSpec {
                steps: 600,
                batch_tokens: 2048,
                lr: 5e-3,
                min_lr_frac: 0.1,
                warmup: 30,
                weight_decay: 0.01,
                clip: 1.0,
                init_std: 0.02,
                seed: 0,
            },
        }
    }
}

impl TinySpec {
    /// A very small generator for tests: seconds to pretrain, not a good writer.
    pub fn test() -> Self {
        TinySpec {
            model: ModelSpec {
                hidden: 32,
                layers: 2,
                heads: 2,
                kv_heads: 2,
                intermediate: 64,
                max_positions: 512,
            },
            corpus: CorpusSpec {
                stdlib_copies: 1,
                mutations_per_program: 0,
                composed: 100,
                generated: 200,
                generated_sizes: (3, 10),
                max_bytes: 400,
                seed: 0,
            },
            words: Vocab::builtin().words,
            train: TrainSpec {
                steps: 30,
                batch_tokens: 2048,
                lr: 1e-2,
                min_lr_frac: 0.1,
                warmup: 5,
                weight_decay: 0.0,
                clip: 1.0,
                init_std: 0.02,
                seed: 0,
            },
        }
    }

    /// The token vocabulary.
    pub fn vocab(&self) -> Vocab {
        Vocab::new(&self.words)
    }

    /// The network's configuration (tied embeddings, no biases).
    pub fn config(&self) -> LlamaConfig {
        let m = &self.model;
        LlamaConfig {
            family: Family::Llama,
            vocab_size: self.vocab().size(),
            hidden_size: m.hidden,
            intermediate_size: m.intermediate,
            num_hidden_layers: m.layers,
            num_attention_heads: m.heads,
            num_key_value_heads: m.kv_heads,
            head_dim: m.hidden / m.heads.max(1),
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: m.max_positions,
            tie_word_embeddings: true,
            attention_bias: false,
            bos_token_id: Some(BOS),
            eos_token_ids: vec![EOS],
        }
    }

    /// The cache key: a hash of [`FORMAT`], the spec and the corpus it builds (so a
    /// changed stdlib or random-program generator means a new model).
    pub fn key(&self, corpus: &[String]) -> String {
        let mut h = Sha256::new();
        h.update(FORMAT.as_bytes());
        h.update(
            serde_json::to_string(self)
                .expect("spec serializes")
                .as_bytes(),
        );
        for p in corpus {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p.as_bytes());
        }
        format!("{:x}", h.finalize())[..16].to_string()
    }
}

/// How pretraining went.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PretrainReport {
    pub programs: usize,
    pub corpus_bytes: usize,
    pub steps: usize,
    pub seconds: f64,
    /// Mean loss (nats per byte) over the first and the last tenth of the steps.
    pub first_loss: f64,
    pub last_loss: f64,
}

/// The built-in generator.
pub struct TinyGenerator {
    spec: TinySpec,
    vocab: Vocab,
    /// The pretraining cache key.
    key: String,
    vm: VarMap,
    model: Llama,
    /// Hash of the current weights.
    weights: String,
    /// Pretraining report and DPO history, written to `meta.json`.
    pretrain: PretrainReport,
    history: Vec<Value>,
    /// Nucleus of [`Generator::sample`] (0.95 by default: it cuts the long tail of
    /// unlikely tokens, most of them syntax errors).
    pub top_p: f64,
    /// Completions decoded together.
    pub batch_size: usize,
    /// Grammar-guided decoding (every token keeps the program a viable prefix).
    pub guided: bool,
    /// Settings of [`Generator::learn`].
    pub dpo: DpoSettings,
}

fn new_model(cfg: &LlamaConfig) -> Result<(VarMap, Llama)> {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let model = Llama::new(vb, cfg)?;
    Ok((vm, model))
}

impl TinyGenerator {
    /// The generator for `spec`, from `<cache>/tiny-generator/<key>/` or, when not there
    /// yet, pretrained now and stored there. `log` hears about progress.
    pub fn pretrained(cache: &Path, spec: &TinySpec, log: &mut dyn FnMut(&str)) -> Result<Self> {
        let corpus = tiny_corpus::build(&spec.corpus);
        let key = spec.key(&corpus);
        let root = cache.join("tiny-generator");
        let dir = root.join(&key);
        if dir.join("model.safetensors").is_file() && dir.join("meta.json").is_file() {
            log(&format!("tiny generator: cached at {}", dir.display()));
            return Self::load(&dir);
        }
        log(&format!(
            "tiny generator: pretraining on {} programs ({} bytes), {} steps",
            corpus.len(),
            corpus.iter().map(String::len).sum::<usize>(),
            spec.train.steps
        ));
        let g = Self::pretrain(spec, &corpus, log)?;
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let tmp = root.join(format!(".{key}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        g.save(&tmp, None)?;
        if std::fs::rename(&tmp, &dir).is_err() {
            // Another process stored it first: use theirs (the same bits).
            let _ = std::fs::remove_dir_all(&tmp);
            if !dir.join("model.safetensors").is_file() {
                return Err(format!("tiny generator: cannot store {}", dir.display()));
            }
        }
        log(&format!("tiny generator: stored at {}", dir.display()));
        Ok(g)
    }

    /// Pretrains a generator on `corpus` (not cached; see [`Self::pretrained`]).
    pub fn pretrain(spec: &TinySpec, corpus: &[String], log: &mut dyn FnMut(&str)) -> Result<Self> {
        let t0 = Instant::now();
        let cfg = spec.config();
        let (vm, model) = new_model(&cfg)?;
        let tr = &spec.train;
        seeded_init(&vm, tr.seed, tr.init_std, cfg.num_hidden_layers)?;
        let max_len = spec.model.max_positions;
        let vocab = spec.vocab();
        let seqs: Vec<Vec<u32>> = corpus
            .iter()
            .map(|p| vocab.encode_program(p))
            .filter(|s| s.len() <= max_len)
            .collect();
        if seqs.is_empty() {
            return Err("tiny generator: empty corpus".into());
        }
        let vars = vm.all_vars();
        let mut opt = AdamW::new(
            vars.clone(),
            ParamsAdamW {
                lr: tr.lr,
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: tr.weight_decay,
            },
        )
        .map_err(cerr)?;
        let mut rng = SplitMix64::new(tr.seed ^ 0x7072_6574_7261_696e);
        let mut batches: Vec<Vec<usize>> = vec![];
        let mut losses = Vec::with_capacity(tr.steps);
        let dev = Device::Cpu;
        for step in 0..tr.steps {
            if batches.is_empty() {
                batches = epoch_batches(&seqs, tr.batch_tokens, &mut rng);
                batches.reverse();
            }
            let idx = batches.pop().expect("an epoch has batches");
            opt.set_learning_rate(lr_at(step, tr));
            let views: Vec<&[u32]> = idx.iter().map(|&i| seqs[i].as_slice()).collect();
            let batch = Batch::new(&views, &[], PAD, &dev)?;
            let logits = model.forward_train(&batch.inputs)?;
            let loss = masked_cross_entropy(&logits, &batch.targets, &batch.weights)?;
            let (grads, _) = clipped_grads(&loss, &vars, tr.clip)?;
            opt.step(&grads).map_err(cerr)?;
            let l = loss.to_scalar::<f32>().map_err(cerr)? as f64;
            losses.push(l);
            if step % 20 == 0 || step + 1 == tr.steps {
                log(&format!(
                    "tiny generator: step {step}/{} loss {l:.3} ({:.0}s)",
                    tr.steps,
                    t0.elapsed().as_secs_f64()
                ));
            }
        }
        let tenth = (losses.len() / 10).max(1);
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
        let pretrain = PretrainReport {
            programs: seqs.len(),
            corpus_bytes: corpus.iter().map(String::len).sum(),
            steps: tr.steps,
            seconds: t0.elapsed().as_secs_f64(),
            first_loss: mean(&losses[..tenth.min(losses.len())]),
            last_loss: mean(&losses[losses.len().saturating_sub(tenth)..]),
        };
        let weights = weights_hash(&vm)?;
        Ok(TinyGenerator {
            key: spec.key(corpus),
            spec: spec.clone(),
            vocab,
            vm,
            model,
            weights,
            pretrain,
            history: vec![],
            top_p: 0.95,
            batch_size: 32,
            guided: false,
            dpo: DpoSettings::default(),
        })
    }

    /// Loads a generator saved by [`Self::pretrained`] or [`Generator::learn`] (its
    /// `model.safetensors`, `config.json` and `meta.json`).
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .map_err(|e| format!("{}: {e}", dir.join(f).display()))
        };
        let meta: Value = serde_json::from_str(&read("meta.json")?)
            .map_err(|e| format!("{}: {e}", dir.join("meta.json").display()))?;
        if meta.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err(format!(
                "{}: not a {FORMAT} generator",
                dir.join("meta.json").display()
            ));
        }
        let field = |k: &str| {
            meta.get(k)
                .cloned()
                .ok_or_else(|| format!("meta.json: no `{k}`"))
        };
        let spec: TinySpec =
            serde_json::from_value(field("spec")?).map_err(|e| format!("meta.json spec: {e}"))?;
        let cfg = LlamaConfig::from_hf_json(&read("config.json")?)?;
        if cfg != spec.config() {
            return Err(format!(
                "{}: config.json does not match meta.json's spec",
                dir.display()
            ));
        }
        let (mut vm, model) = new_model(&cfg)?;
        vm.load(dir.join("model.safetensors")).map_err(cerr)?;
        let weights = weights_hash(&vm)?;
        if let Some(w) = meta.get("weights").and_then(Value::as_str)
            && w != weights
        {
            return Err(format!(
                "{}: the weights do not match meta.json's hash",
                dir.display()
            ));
        }
        let pretrain = serde_json::from_value(field("pretrain")?).unwrap_or_default();
        let history = meta
            .get("history")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let dpo = meta
            .get("dpo")
            .and_then(|d| serde_json::from_value(d.clone()).ok())
            .unwrap_or_default();
        let top_p = meta.get("top_p").and_then(Value::as_f64).unwrap_or(0.95);
        Ok(TinyGenerator {
            key: field("key")?.as_str().unwrap_or_default().to_string(),
            vocab: spec.vocab(),
            spec,
            vm,
            model,
            weights,
            pretrain,
            history,
            top_p,
            batch_size: 32,
            guided: false,
            dpo,
        })
    }

    /// Writes `model.safetensors`, `config.json` and `meta.json` into `dir` (created).
    pub fn save(&self, dir: &Path, iteration: Option<usize>) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        self.vm.save(dir.join("model.safetensors")).map_err(cerr)?;
        let write = |f: &str, text: String| {
            std::fs::write(dir.join(f), text).map_err(|e| format!("{}: {e}", dir.join(f).display()))
        };
        write("config.json", self.spec.config().to_hf_json())?;
        let meta = json!({
            "format": FORMAT,
            "id": self.id(),
            "key": self.key,
            "weights": self.weights,
            "iteration": iteration,
            "spec": self.spec,
            "pretrain": self.pretrain,
            "dpo": self.dpo,
            "top_p": self.top_p,
            "history": self.history,
        });
        write(
            "meta.json",
            serde_json::to_string_pretty(&meta).expect("meta serializes"),
        )
    }

    pub fn spec(&self) -> &TinySpec {
        &self.spec
    }

    /// The pretraining cache key.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn pretrain_report(&self) -> &PretrainReport {
        &self.pretrain
    }

    /// A hex hash of the current weights.
    pub fn weights_hash(&self) -> &str {
        &self.weights
    }

    /// An independent copy (e.g. a frozen reference).
    pub fn try_clone(&self) -> Result<Self> {
        let (vm, model) = new_model(&self.spec.config())?;
        copy_vars(&self.vm, &vm)?;
        Ok(TinyGenerator {
            spec: self.spec.clone(),
            vocab: self.vocab.clone(),
            key: self.key.clone(),
            vm,
            model,
            weights: self.weights.clone(),
            pretrain: self.pretrain.clone(),
            history: self.history.clone(),
            top_p: self.top_p,
            batch_size: self.batch_size,
            guided: self.guided,
            dpo: self.dpo.clone(),
        })
    }

    /// `n` programs sampled at `temperature` (top-p [`Self::top_p`]), completion `i`
    /// from stream `(seed, i)`. A program that reaches the length limit is returned cut.
    pub fn sample_programs(&self, n: usize, temperature: f64, seed: u64) -> Result<Vec<String>> {
        let opts = SampleOptions {
            temperature,
            top_p: self.top_p,
            max_new_tokens: self.spec.model.max_positions - 1,
            batch_size: self.batch_size,
            seed,
        };
        let prompts = vec![vec![BOS]; n];
        let pieces = self.vocab.pieces();
        let guide = crate::develop::guided::program_guide(&pieces);
        let guide = self.guided.then_some(&guide);
        let out = sample(&self.model, &prompts, &[EOS], PAD, &opts, &|_| false, guide)?;
        Ok(out.iter().map(|c| self.vocab.decode(&c.ids)).collect())
    }

    /// Sequence log-probabilities (natural log, summed over the bytes and `EOS`) of
    /// `texts` as whole programs, in batches of `batch`.
    pub fn logprobs(&self, texts: &[&str], batch: usize) -> Result<Vec<f64>> {
        let seqs: Vec<Vec<u32>> = texts.iter().map(|t| self.sequence(t)).collect();
        let mut out = Vec::with_capacity(texts.len());
        for chunk in seqs.chunks(batch.max(1)) {
            let views: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
            let b = Batch::new(&views, &[], PAD, &Device::Cpu)?;
            let lp = sequence_logprobs(&self.model.forward_train(&b.inputs)?, &b)?;
            out.extend(
                lp.to_vec1::<f32>()
                    .map_err(cerr)?
                    .into_iter()
                    .map(f64::from),
            );
        }
        Ok(out)
    }

    /// `BOS text EOS`, cut to the model's positions.
    fn sequence(&self, text: &str) -> Vec<u32> {
        let mut s = self.vocab.encode_program(text);
        s.truncate(self.spec.model.max_positions);
        s
    }
}

/// One epoch's batches: the sequences shuffled, sorted by length within windows of 64
/// (so batches need little padding), cut into batches of at most `budget` padded tokens,
/// and the batches shuffled.
fn epoch_batches(seqs: &[Vec<u32>], budget: usize, rng: &mut SplitMix64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut batches = vec![];
    for window in order.chunks(64) {
        let mut w = window.to_vec();
        w.sort_by_key(|&i| (seqs[i].len(), i));
        let mut cur: Vec<usize> = vec![];
        for i in w {
            let longest = cur
                .iter()
                .map(|&j| seqs[j].len())
                .max()
                .unwrap_or(0)
                .max(seqs[i].len());
            if !cur.is_empty() && longest * (cur.len() + 1) > budget {
                batches.push(std::mem::take(&mut cur));
            }
            cur.push(i);
        }
        if !cur.is_empty() {
            batches.push(cur);
        }
    }
    for i in (1..batches.len()).rev() {
        batches.swap(i, rng.below(i + 1));
    }
    batches
}

/// Linear warmup, then cosine decay to `lr * min_lr_frac` at the last step.
fn lr_at(step: usize, t: &TrainSpec) -> f64 {
    if step < t.warmup {
        return t.lr * (step + 1) as f64 / t.warmup as f64;
    }
    let span = t.steps.saturating_sub(t.warmup).max(1) as f64;
    let x = ((step - t.warmup) as f64 / span).min(1.0);
    let min = t.lr * t.min_lr_frac;
    min + (t.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * x).cos())
}

impl Generator for TinyGenerator {
    fn id(&self) -> String {
        let g = if self.guided { "+guided" } else { "" };
        format!("{FORMAT}@{}{g}", &self.weights[..12])
    }

    /// The prompt is ignored: the tiny generator is unconditioned.
    fn sample(
        &mut self,
        _prompt: &str,
        n: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<String>> {
        self.sample_programs(n, temperature, seed)
    }

    /// DPO with [`TinyGenerator::dpo`] settings (seed + iteration), then the weights go
    /// to `dir` (`model.safetensors`, `config.json`, `meta.json`), loadable with
    /// [`TinyGenerator::load`].
    fn learn(&mut self, pairs: &[Pair], iteration: usize, dir: &Path) -> Result<LearnReport> {
        let mut s = self.dpo.clone();
        s.seed = s.seed.wrapping_add(iteration as u64);
        let before = self.id();
        let mut report = self.dpo(pairs, &s)?;
        self.history.push(json!({
            "iteration": iteration,
            "from": before,
            "to": self.id(),
            "pairs": pairs.len(),
            "steps": report.steps,
            "first_loss": report.losses.first(),
            "last_loss": report.losses.last(),
            "last_margin": report.margins.last(),
        }));
        let to = iteration_dir(dir, iteration);
        self.save(&to, Some(iteration))?;
        report.note = format!("{}; saved to {}", report.note, to.display());
        Ok(report)
    }
}

/// Where [`Generator::learn`] saves iteration `t`'s weights: `<dir>/iteration-<t>`.
pub fn iteration_dir(dir: &Path, t: usize) -> PathBuf {
    dir.join(format!("iteration-{t}"))
}

impl TinyGenerator {
    /// The generator saved by [`Generator::learn`] under `dir` for the latest iteration
    /// up to `up_to` (None when there is none): what a resumed run continues from, with
    /// `up_to` the last iteration the run finished (a later one may have been saved
    /// before the run was killed; it is ignored, so the iteration is redone exactly).
    pub fn latest(dir: &Path, up_to: usize) -> Result<Option<Self>> {
        for t in (1..=up_to).rev() {
            let d = iteration_dir(dir, t);
            if d.join("model.safetensors").is_file() {
                return Self::load(&d).map(Some);
            }
        }
        Ok(None)
    }

    /// The generator for a develop run: the one [`Generator::learn`] saved under
    /// `generator_dir` for the latest of the first `finished` iterations (resuming), else
    /// the pretrained one for `spec` from `cache` (pretraining it if needed); with `dpo`
    /// as its learning settings.
    pub fn for_run(
        cache: &Path,
        spec: &TinySpec,
        generator_dir: &Path,
        finished: usize,
        dpo: DpoSettings,
        log: &mut dyn FnMut(&str),
    ) -> Result<Self> {
        let mut g = match Self::latest(generator_dir, finished)? {
            Some(g) => {
                log(&format!("tiny generator: resuming {}", g.id()));
                g
            }
            None => Self::pretrained(cache, spec, log)?,
        };
        g.dpo = dpo;
        Ok(g)
    }
}

/// Where [`TinyGenerator::pretrained`] keeps the generator for `spec` under `cache`.
pub fn cache_dir(cache: &Path, spec: &TinySpec) -> PathBuf {
    let corpus = tiny_corpus::build(&spec.corpus);
    cache.join("tiny-generator").join(spec.key(&corpus))
}

#[cfg(test)]
mod tests {
    use super::vocab::FIRST_WORD;
    use super::*;

    #[test]
    fn bytes_round_trip_and_schedule() {
        let v = Vocab::builtin();
        let text = "merge m(base: Tensor, models: [Tensor]) -> Tensor {\n    return sum_all(base) \u{e9}\n}\n";
        let s = v.encode_program(text);
        assert_eq!(s.first(), Some(&BOS));
        assert_eq!(s.last(), Some(&EOS));
        assert!(s.len() < text.len() / 2, "{} tokens", s.len());
        assert_eq!(v.decode(&s), text);
        assert!(v.size().is_multiple_of(8) && v.size() >= FIRST_WORD as usize + v.words().len());
        let t = TinySpec::default().train;
        assert!(lr_at(0, &t) < t.lr / 10.0);
        assert!((lr_at(t.warmup, &t) - t.lr).abs() < 1e-12);
        assert!((lr_at(t.steps - 1, &t) - t.lr * t.min_lr_frac).abs() < t.lr * 0.01);
    }

    #[test]
    fn batches_cover_every_sequence_once_within_budget() {
        let seqs: Vec<Vec<u32>> = (0..300).map(|i| vec![0; 2 + (i * 7) % 90]).collect();
        let mut rng = SplitMix64::new(3);
        let b = epoch_batches(&seqs, 400, &mut rng);
        let mut all: Vec<usize> = b.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..300).collect::<Vec<_>>());
        for x in &b {
            let longest = x.iter().map(|&i| seqs[i].len()).max().unwrap();
            assert!(x.len() == 1 || longest * x.len() <= 400);
        }
    }
}
