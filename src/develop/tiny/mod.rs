//! The built-in `tiny` generator (issue 6, items 2 and 7): a small llama-family
//! transformer that writes merge programs, pretrained in process with candle and
//! improved with DPO, so the whole develop loop runs on a laptop CPU.
//!
//! - Vocabulary ([`Vocab`]): token ids 0..=255 are bytes; [`BOS`], [`EOS`] and [`PAD`]
//!   follow, then about 140 word tokens (keywords, the checker's builtin names, common
//!   phrases), which make sequences about three times shorter than bytes and so
//!   pretraining and sampling three times cheaper. A program is `BOS tokens EOS`.
//! - Unconditioned (the default, the paper's plain mode): the model always starts from
//!   `BOS` alone. [`Generator::sample`] ignores its prompt and DPO pairs' prompts are
//!   ignored too (the long develop prompt could not fit such a model anyway); what the
//!   generator learns is carried by its weights.
//! - Conditioned ([`TinySpec::conditioned`], what `develop` uses with `archive > 0`):
//!   the model writes a child from a parent program, as an evolutionary operator. A
//!   sequence is `BOS parent EOS child EOS` (the parent's end marker separates them, as
//!   GPT-2's end-of-text token separates documents; the parent is cut to half the
//!   positions); only the child's tokens are scored. [`Generator::sample`] takes the
//!   parent program as its prompt (`""`: from nothing, `BOS EOS child EOS`), and DPO
//!   pairs are (parent, better child, worse child). Pretrained on every corpus program
//!   from nothing and on (program, mutated program) pairs
//!   ([`super::tiny_corpus::build_pairs`]).
//! - Pretraining ([`TinyGenerator::pretrained`], `pretrain.rs`): AdamW with warmup and
//!   cosine decay, gradient clipping, on the corpus of [`super::tiny_corpus`] (stdlib
//!   programs, their mutations, programs composed from stdlib building blocks,
//!   type-directed random programs). The shipped [`TinySpec`] (hidden 96, 4 layers, 600
//!   steps) takes about 2-3 minutes of one core. Deterministic: the corpus, the weight
//!   initialisation ([`crate::model::train::seeded_init`]) and the batch order all come
//!   from the spec's seeds, and the result does not depend on the thread count. Cached under
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
use super::tiny_corpus::{self, CorpusSpec, PairSpec};
use crate::model::config::LlamaConfig;
use crate::model::llama::Llama;
use crate::model::sample::{SampleOptions, sample};
use crate::model::train::{Batch, copy_vars, sequence_logprobs, weights_hash};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

mod dpo;
mod pretrain;
mod vocab;
pub use crate::develop::dpo::DpoSettings;
pub use pretrain::PretrainReport;
pub use vocab::{BOS, EOS, PAD, Vocab};

/// Version of the model format, corpus layout and training procedure; part of every
/// cache key and of [`Generator::id`].
pub const FORMAT: &str = "tiny-v1";
type Result<T> = std::result::Result<T, String>;

fn cerr(e: candle_core::Error) -> String {
    format!("tiny generator: {e}")
}

pub use crate::model::config::ModelSpec;

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
    /// Set: a conditioned generator (a child from a parent), pretrained on these pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairs: Option<PairSpec>,
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
            pairs: None,
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
            pairs: None,
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

    /// The shipped conditioned generator: the default's network with twice the
    /// positions (a parent and its child), pretrained on every corpus program from
    /// nothing and on two mutated children of each stdlib program, of 60 fresh variants
    /// of each, and of 3,000 fresh composed programs.
    pub fn conditioned() -> Self {
        let mut s = TinySpec::default();
        s.model.max_positions = 1024;
        s.train.steps = 1200;
        s.pairs = Some(PairSpec::default());
        s
    }

    /// [`Self::test`], conditioned.
    pub fn test_conditioned() -> Self {
        let mut s = TinySpec::test();
        s.model.max_positions = 1024;
        s.pairs = Some(PairSpec {
            parents: 100,
            stdlib_variants: 2,
            children: 1,
            ..PairSpec::default()
        });
        s
    }

    /// Whether the generator writes a child from a parent program.
    pub fn is_conditioned(&self) -> bool {
        self.pairs.is_some()
    }

    /// The pretraining examples, (parent, program): the corpus from nothing (parent
    /// `""`), and for a conditioned spec the pairs of
    /// [`tiny_corpus::build_pairs`] as well.
    pub fn examples(&self) -> Vec<(String, String)> {
        let corpus = tiny_corpus::build(&self.corpus);
        match &self.pairs {
            None => corpus.into_iter().map(|p| (String::new(), p)).collect(),
            Some(ps) => tiny_corpus::build_pairs(&corpus, ps, self.corpus.max_bytes),
        }
    }

    /// The tokens of `text` written from `parent`, and the index of its first token
    /// (where scoring starts): `BOS text EOS` from 1 when unconditioned (the parent is
    /// ignored); `BOS parent EOS text EOS` when conditioned, the parent cut to half the
    /// positions. Not cut to the positions.
    pub fn encode(&self, vocab: &Vocab, parent: &str, text: &str) -> (Vec<u32>, usize) {
        if !self.is_conditioned() {
            return (vocab.encode_program(text), 1);
        }
        let mut s = vec![BOS];
        let mut p = vocab.encode(parent);
        p.truncate((self.model.max_positions / 2).saturating_sub(2));
        s.extend(p);
        s.push(EOS);
        let from = s.len();
        s.extend(vocab.encode(text));
        s.push(EOS);
        (s, from)
    }

    /// The token vocabulary.
    pub fn vocab(&self) -> Vocab {
        Vocab::new(&self.words)
    }

    /// The network's configuration (tied embeddings, no biases).
    pub fn config(&self) -> LlamaConfig {
        self.model.llama(self.vocab().size(), BOS, EOS)
    }

    /// The cache key: a hash of [`FORMAT`], the spec and the examples it builds (so a
    /// changed stdlib or random-program generator means a new model).
    pub fn key(&self, examples: &[(String, String)]) -> String {
        let mut h = Sha256::new();
        h.update(FORMAT.as_bytes());
        h.update(
            serde_json::to_string(self)
                .expect("spec serializes")
                .as_bytes(),
        );
        for (parent, p) in examples {
            if !parent.is_empty() {
                h.update((parent.len() as u64 | 1 << 63).to_le_bytes());
                h.update(parent.as_bytes());
            }
            h.update((p.len() as u64).to_le_bytes());
            h.update(p.as_bytes());
        }
        format!("{:x}", h.finalize())[..16].to_string()
    }
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
    /// With `guided`: draw only from the tokens the loop's grammar allows (llguidance).
    pub grammar_mask: bool,
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
    /// A generator with fresh state around `model` (sampling and learning settings at
    /// their defaults).
    fn new(
        spec: TinySpec,
        key: String,
        vm: VarMap,
        model: Llama,
        weights: String,
        pretrain: PretrainReport,
    ) -> Self {
        TinyGenerator {
            vocab: spec.vocab(),
            spec,
            key,
            vm,
            model,
            weights,
            pretrain,
            history: vec![],
            top_p: 0.95,
            batch_size: 32,
            guided: false,
            grammar_mask: true,
            dpo: DpoSettings::default(),
        }
    }

    /// The generator for `spec`, from `<cache>/tiny-generator/<key>/` or, when not there
    /// yet, pretrained now and stored there. `log` hears about progress.
    pub fn pretrained(cache: &Path, spec: &TinySpec, log: &mut dyn FnMut(&str)) -> Result<Self> {
        let examples = spec.examples();
        let key = spec.key(&examples);
        let root = cache.join("tiny-generator");
        let dir = root.join(&key);
        if dir.join("model.safetensors").is_file() && dir.join("meta.json").is_file() {
            log(&format!("tiny generator: cached at {}", dir.display()));
            return Self::load(&dir);
        }
        log(&format!(
            "tiny generator: pretraining on {} {} ({} bytes), {} steps",
            examples.len(),
            if spec.is_conditioned() {
                "examples (parent, program)"
            } else {
                "programs"
            },
            examples
                .iter()
                .map(|(a, b)| a.len() + b.len())
                .sum::<usize>(),
            spec.train.steps
        ));
        let g = Self::pretrain(spec, &examples, log)?;
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
        let key = field("key")?.as_str().unwrap_or_default().to_string();
        let mut g = TinyGenerator::new(spec, key, vm, model, weights, pretrain);
        g.history = history;
        g.top_p = meta.get("top_p").and_then(Value::as_f64).unwrap_or(0.95);
        g.dpo = dpo;
        Ok(g)
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
            grammar_mask: self.grammar_mask,
            dpo: self.dpo.clone(),
        })
    }

    /// `n` programs sampled at `temperature` (top-p [`Self::top_p`]), completion `i`
    /// from stream `(seed, i)`, written from `parent` when the generator is conditioned
    /// (`""`: from nothing; ignored when unconditioned). A program that reaches the
    /// length limit (a conditioned generator's children: half the positions) is
    /// returned cut.
    pub fn sample_programs(
        &self,
        parent: &str,
        n: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<String>> {
        let (mut prompt, from) = self.spec.encode(&self.vocab, parent, "");
        prompt.truncate(from);
        let max_pos = self.spec.model.max_positions;
        let room = if self.spec.is_conditioned() {
            (max_pos / 2).min(max_pos - prompt.len())
        } else {
            max_pos - 1
        };
        let opts = SampleOptions {
            temperature,
            top_p: self.top_p,
            max_new_tokens: room,
            batch_size: self.batch_size,
            seed,
        };
        let prompts = vec![prompt; n];
        let pieces = self.vocab.pieces();
        let mask = match self.grammar_mask && self.guided {
            true => Some(crate::develop::guided::loop_mask(&pieces, &[EOS])?),
            false => None,
        };
        let guide = crate::develop::guided::program_guide(&pieces, mask.as_ref());
        let guide = self.guided.then_some(&guide);
        let out = sample(&self.model, &prompts, &[EOS], PAD, &opts, &|_| false, guide)?;
        Ok(out.iter().map(|c| self.vocab.decode(&c.ids)).collect())
    }

    /// Sequence log-probabilities (natural log, summed over the program's tokens and
    /// `EOS`) of `texts`, each (parent, program), in batches of `batch`.
    pub fn logprobs(&self, texts: &[(&str, &str)], batch: usize) -> Result<Vec<f64>> {
        let seqs: Vec<(Vec<u32>, usize)> = texts.iter().map(|(p, t)| self.sequence(p, t)).collect();
        let mut out = Vec::with_capacity(texts.len());
        for chunk in seqs.chunks(batch.max(1)) {
            let views: Vec<&[u32]> = chunk.iter().map(|(s, _)| s.as_slice()).collect();
            let from: Vec<usize> = chunk.iter().map(|(_, f)| *f).collect();
            let b = Batch::new(&views, &from, PAD, &Device::Cpu)?;
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

    /// [`TinySpec::encode`], cut to the model's positions.
    fn sequence(&self, parent: &str, text: &str) -> (Vec<u32>, usize) {
        let (mut s, from) = self.spec.encode(&self.vocab, parent, text);
        s.truncate(self.spec.model.max_positions);
        (s, from)
    }
}

impl Generator for TinyGenerator {
    fn id(&self) -> String {
        let g = if self.guided { "+guided" } else { "" };
        format!("{FORMAT}@{}{g}", &self.weights[..12])
    }

    /// Unconditioned, the prompt is ignored; conditioned, it is the parent program.
    fn sample(
        &mut self,
        prompt: &str,
        n: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<String>> {
        self.sample_programs(prompt, n, temperature, seed)
    }

    fn conditioned(&self) -> bool {
        self.spec.is_conditioned()
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

/// The default cache directory of the tiny generator: beside the eval cache
/// (`~/.cache/mergec`, or the parent of `MERGEC_CACHE_DIR`), else `runs/cache`.
pub fn default_cache() -> PathBuf {
    crate::eval::run::default_cache_dir()
        .and_then(|d| d.parent().map(|p| p.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("runs/cache"))
}

/// Where [`TinyGenerator::pretrained`] keeps the generator for `spec` under `cache`.
pub fn cache_dir(cache: &Path, spec: &TinySpec) -> PathBuf {
    cache
        .join("tiny-generator")
        .join(spec.key(&spec.examples()))
}
