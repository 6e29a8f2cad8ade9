//! `local:PATH`: a pretrained llama-family model (a Hugging Face directory or a GGUF
//! file) as the generator, in process, with LoRA adapters trained by DPO.
//!
//! - Sampling: the prompt goes through the model's chat template with the assistant's
//!   reply opened by a ```` ```merge ```` fence; it is run once and its keys and values
//!   are shared by every sampled sequence ([`crate::model::sample::sample_shared`]).
//! - Grammar-guided decoding (optional): every token keeps the program a viable prefix
//!   of the language ([`crate::prefix`], names resolved), and a program ends at
//!   the brace that closes its `merge`.
//! - Learning: DPO on LoRA adapters of the attention and MLP projections, against the
//!   frozen policy at the start of the iteration, plus the chosen programs' NLL (as the
//!   tiny generator). Adapters are saved per iteration in PEFT's layout
//!   (`adapter_model.safetensors`, `adapter_config.json`) and loaded to resume.

use super::dpo::{DpoSettings, train};
use super::generator::{Generator, LearnReport, Pair};
pub use super::guided::program_fit;
use super::guided::program_guide;
use super::tiny::iteration_dir;
use crate::model::LoadedModel;
use crate::model::llama::{Llama, LoraSpec};
use crate::model::peft;
use crate::model::sample::{SampleOptions, sample_shared};
use crate::model::train::{Batch, dpo_objective, dpo_summary, sequence_logprobs, token_logprobs};
use crate::model::{Role, TextModel};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

type Result<T> = std::result::Result<T, String>;

fn cerr(e: candle_core::Error) -> String {
    format!("local generator: {e}")
}

/// What opens the assistant's reply: the model continues inside a merge block.
pub const REPLY_OPEN: &str = "```merge\n";
/// What closes a program (an unguided completion stops at it).
pub const REPLY_CLOSE: &str = "```";

/// Settings of a [`LocalGenerator`].
#[derive(Clone, Debug)]
pub struct LocalSettings {
    /// Grammar-guided decoding.
    pub guided: bool,
    /// With `guided`: draw only from the tokens the loop's grammar allows (llguidance's
    /// mask) instead of drawing and redrawing.
    pub grammar_mask: bool,
    pub top_p: f64,
    /// Sequences decoded together.
    pub batch_size: usize,
    /// At most this many tokens per program.
    pub max_new_tokens: usize,
    pub lora: LoraSpec,
    pub dpo: DpoSettings,
}

impl Default for LocalSettings {
    fn default() -> Self {
        LocalSettings {
            guided: true,
            grammar_mask: true,
            top_p: 0.95,
            batch_size: 16,
            max_new_tokens: 320,
            lora: LoraSpec::new(8, 16.0),
            dpo: DpoSettings {
                beta: 0.1,
                lr: 2e-4,
                epochs: 2,
                max_steps: 0,
                batch_pairs: 1,
                weight_decay: 0.0,
                clip: 1.0,
                seed: 0,
                nll: 1.0,
            },
        }
    }
}

/// Guided-decoding counts of the last [`LocalGenerator::sample_programs`].
#[derive(Clone, Debug, Default)]
pub struct GuideStats {
    pub tokens: usize,
    pub tally: crate::model::guide::Tally,
}

/// A local model generating merge programs.
pub struct LocalGenerator {
    base: LoadedModel,
    /// The base with adapters attached (trainable through `vm`).
    policy: Llama,
    vm: VarMap,
    /// The policy with the adapters folded in, for sampling; rebuilt after learning.
    merged: Option<Llama>,
    pub settings: LocalSettings,
    pieces: Vec<Option<String>>,
    /// Where the current adapters came from (iteration), if any were trained or loaded.
    adapter_iteration: Option<usize>,
    adapter_hash: Option<String>,
    pub last_stats: GuideStats,
    /// The grammar mask, built on first use (`settings.grammar_mask`).
    mask: Option<crate::model::mask::GrammarMask>,
}

impl LocalGenerator {
    /// Loads the model at `path` (no adapters yet).
    pub fn load(path: &Path, settings: LocalSettings) -> Result<Self> {
        let base = LoadedModel::load(path)?;
        let vm = VarMap::new();
        let mut policy = base.model.clone();
        policy.attach_lora(&settings.lora, &vm, settings.dpo.seed)?;
        let pieces = base.tok.pieces();
        Ok(LocalGenerator {
            base,
            policy,
            vm,
            merged: None,
            settings,
            pieces,
            adapter_iteration: None,
            adapter_hash: None,
            last_stats: GuideStats::default(),
            mask: None,
        })
    }

    /// The generator for a develop run: the model at `path` with the adapters that
    /// [`Generator::learn`] saved under `generator_dir` for the latest of the first
    /// `finished` iterations (resuming), if any.
    pub fn for_run(
        path: &Path,
        settings: LocalSettings,
        generator_dir: &Path,
        finished: usize,
        log: &mut dyn FnMut(&str),
    ) -> Result<Self> {
        let mut g = Self::load(path, settings)?;
        for t in (1..=finished).rev() {
            let d = iteration_dir(generator_dir, t);
            if d.join(peft::WEIGHTS_FILE).is_file() {
                g.load_adapter(&d)?;
                g.adapter_iteration = Some(t);
                log(&format!("local generator: resuming {}", g.id()));
                break;
            }
        }
        Ok(g)
    }

    /// Loads LoRA adapters in PEFT's layout from `dir`: a develop run's
    /// ([`Self::save_adapter`]) or PEFT's `save_pretrained` (`scripts/dpo_train.py`). Their
    /// rank, alpha and targets come from the directory's `adapter_config.json` and replace
    /// the settings' (the settings' are assumed when it has none); every tensor those imply
    /// must be in `adapter_model.safetensors` with its shape, and nothing else.
    pub fn load_adapter(&mut self, dir: &Path) -> Result<()> {
        let spec = peft::read_config(dir)?.unwrap_or_else(|| self.settings.lora.clone());
        let weights = peft::read_weights(dir)?;
        let vm = VarMap::new();
        let mut policy = self.base.model.clone();
        policy.attach_lora(&spec, &vm, self.settings.dpo.seed)?;
        {
            let data = vm.data().lock().map_err(|_| "poisoned var map")?;
            let file = dir.join(peft::WEIGHTS_FILE);
            let at = |m: String| format!("{}: {m}", file.display());
            for (name, t) in &weights {
                let Some(var) = data.get(name) else {
                    return Err(at(format!(
                        "`{name}` is not a LoRA tensor of this model for rank {} on {}",
                        spec.rank,
                        spec.targets.join(", ")
                    )));
                };
                if var.shape() != t.shape() {
                    return Err(at(format!(
                        "`{name}` is {:?}, the model's is {:?}",
                        t.dims(),
                        var.dims()
                    )));
                }
                var.set(t).map_err(cerr)?;
            }
            if let Some(missing) = data.keys().find(|k| !weights.iter().any(|(n, _)| n == *k)) {
                return Err(at(format!(
                    "`{missing}` is missing ({} tensors for rank {} on {})",
                    data.len(),
                    spec.rank,
                    spec.targets.join(", ")
                )));
            }
        }
        self.vm = vm;
        self.policy = policy;
        self.settings.lora = spec;
        self.merged = None;
        self.adapter_hash = Some(crate::model::train::weights_hash(&self.vm)?);
        Ok(())
    }

    /// Writes the adapters to `dir` in PEFT's layout.
    pub fn save_adapter(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let tmp = dir.join(format!("{}.tmp", peft::WEIGHTS_FILE));
        self.vm
            .save(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        let file = dir.join(peft::WEIGHTS_FILE);
        std::fs::rename(&tmp, &file).map_err(|e| format!("{}: {e}", file.display()))?;
        let cfg = json!({
            "peft_type": "LORA",
            "r": self.settings.lora.rank,
            "lora_alpha": self.settings.lora.alpha,
            "target_modules": self.settings.lora.targets,
            "lora_dropout": 0.0,
            "bias": "none",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": self.base.path.display().to_string(),
            "base_content_hash": self.base.content_hash(),
        });
        Ok(crate::files::write_atomic(
            &dir.join(peft::CONFIG_FILE),
            serde_json::to_string_pretty(&cfg).expect("json").as_bytes(),
        )?)
    }

    /// The prompt as the model sees it: chat template (when the model has one) around
    /// `prompt`, then the opened merge block.
    pub fn prompt_text(&self, prompt: &str) -> Result<String> {
        let head = match self.base.chat_prompt(&[(Role::User, prompt.to_string())]) {
            Some(p) => p,
            None => format!("{prompt}\n\n"),
        };
        Ok(format!("{head}{REPLY_OPEN}"))
    }

    pub fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>> {
        Ok(self.base.tok.encode(&self.prompt_text(prompt)?)?)
    }

    /// `n` completions of `prompt` (the text after the opened merge block, without the
    /// closing fence), completion `i` from stream `(seed, i)`.
    pub fn sample_programs(
        &mut self,
        prompt: &str,
        n: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<String>> {
        let ids = self.prompt_ids(prompt)?;
        let opts = SampleOptions {
            temperature,
            top_p: self.settings.top_p,
            max_new_tokens: self.settings.max_new_tokens,
            batch_size: self.settings.batch_size,
            seed,
        };
        let eos = self.base.tok.eos.clone();
        let guided = self.settings.guided;
        if self.merged.is_none() {
            self.merged = Some(self.policy.with_merged_lora()?);
        }
        let model = self.merged.as_ref().expect("just built");
        let tok = &self.base.tok;
        let pieces = &self.pieces;
        if guided && self.settings.grammar_mask && self.mask.is_none() {
            self.mask = Some(super::guided::loop_mask(pieces, &eos)?);
        }
        let guide = program_guide(pieces, self.mask.as_ref());
        let out = if guided {
            sample_shared(model, &ids, n, &eos, &opts, &|_| false, Some(&guide))?
        } else {
            let stop = |ids: &[u32]| {
                // Only the last few tokens can complete the fence.
                let from = ids.len().saturating_sub(4);
                tok.decode(&ids[from..])
                    .map(|t| t.contains(REPLY_CLOSE))
                    .unwrap_or(false)
            };
            sample_shared(model, &ids, n, &eos, &opts, &stop, None)?
        };
        let texts = out
            .iter()
            .map(|c| {
                if guided {
                    Ok(c.ids
                        .iter()
                        .filter_map(|&t| pieces.get(t as usize).cloned().flatten())
                        .collect::<String>())
                } else {
                    tok.decode(&c.ids).map(|t| match t.find(REPLY_CLOSE) {
                        Some(i) => t[..i].to_string(),
                        None => t,
                    })
                }
            })
            .collect::<crate::model::Result<Vec<String>>>()?;
        self.last_stats = GuideStats {
            tokens: out.iter().map(|c| c.ids.len()).sum(),
            tally: guide.counts.tally(),
        };
        if guided {
            let st = &self.last_stats;
            eprintln!(
                "guided: {} tokens from {}; programs closed early (a return forced after the \
                 retries): {} of {n}",
                st.tokens, st.tally, st.tally.closed
            );
        }
        Ok(texts)
    }

    /// Token ids scored for a program: the program, then the closing fence.
    fn completion_ids(&self, program: &str) -> Result<Vec<u32>> {
        let mut text = program.trim_end().to_string();
        text.push('\n');
        text.push_str(REPLY_CLOSE);
        Ok(self.base.tok.encode_plain(&text)?)
    }

    /// Summed log-probabilities of `completions` (token ids) after `prompt` (ids) under
    /// `model`, in batches of `batch` (each token's in f32, their sum in f64). The prompt
    /// but its last token is run once (a constant prefix); each sequence is that last
    /// token then the completion.
    fn logprobs_of(
        model: &Llama,
        prompt: &[u32],
        completions: &[Vec<u32>],
        batch: usize,
    ) -> Result<Vec<f64>> {
        let (head, last) = prompt.split_at(prompt.len().saturating_sub(1));
        let (prefix, _) = model.prefill_prefix(head)?;
        let seqs: Vec<Vec<u32>> = completions
            .iter()
            .map(|c| last.iter().chain(c).copied().collect())
            .collect();
        let mut out = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(batch.max(1)) {
            let views: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
            let b = Batch::new(&views, &[], 0, &Device::Cpu)?;
            let logits = model.forward_after(&prefix, &b.inputs)?;
            // Summed in f64: an f32 sum of hundreds of tokens is off by ~1e-3.
            let lp = token_logprobs(&logits, &b)?
                .to_vec2::<f32>()
                .map_err(cerr)?;
            out.extend(
                lp.iter()
                    .map(|r| r.iter().copied().map(f64::from).sum::<f64>()),
            );
        }
        Ok(out)
    }

    /// Log-probabilities of `programs` as completions of `prompt` under the current
    /// policy.
    pub fn logprobs(&self, prompt: &str, programs: &[&str]) -> Result<Vec<f64>> {
        let (ids, comps) = self.scored_ids(prompt, programs, false)?;
        self.logprobs_ids(&ids, &comps)
    }

    /// Token ids of `prompt` and of `completions` as they are scored: in the generator's
    /// layout ([`Self::prompt_text`] around the prompt, each completion a program closed by
    /// the fence) or, `raw`, the texts as given (the prompt encoded as a prompt, BOS as the
    /// tokenizer says; each completion as a continuation, nothing added).
    pub fn scored_ids(
        &self,
        prompt: &str,
        completions: &[&str],
        raw: bool,
    ) -> Result<(Vec<u32>, Vec<Vec<u32>>)> {
        let ids = if raw {
            self.base.tok.encode(prompt)?
        } else {
            self.prompt_ids(prompt)?
        };
        let comps = completions
            .iter()
            .map(|c| match raw {
                true => Ok(self.base.tok.encode_plain(c)?),
                false => self.completion_ids(c),
            })
            .collect::<Result<Vec<_>>>()?;
        if ids.len() < 2 {
            return Err("local generator: a prompt to score needs at least two tokens".into());
        }
        if comps.iter().any(Vec::is_empty) {
            return Err("local generator: an empty completion has no log-probability".into());
        }
        Ok((ids, comps))
    }

    /// Summed log-probabilities of the completions `comps` after `prompt` (token ids)
    /// under the current policy, its adapters unmerged (`W x + scale B A x`, as PEFT
    /// computes them).
    pub fn logprobs_ids(&self, prompt: &[u32], comps: &[Vec<u32>]) -> Result<Vec<f64>> {
        Self::logprobs_of(&self.policy, prompt, comps, 4)
    }

    /// A frozen copy of the current policy, to be a DPO reference.
    pub fn snapshot(&self) -> Result<Llama> {
        Ok(self.policy.with_merged_lora()?)
    }

    /// The DPO loss and mean chosen-minus-rejected log-ratio margin of `pairs` for the
    /// current policy against `reference` (e.g. a [`Self::snapshot`] before training,
    /// on held-out pairs).
    pub fn evaluate_pairs(&self, reference: &Llama, pairs: &[Pair]) -> Result<(f64, f64)> {
        if pairs.is_empty() {
            return Ok((0.0, 0.0));
        }
        let mut lps = Vec::with_capacity(pairs.len());
        for p in pairs {
            let ids = self.prompt_ids(&p.prompt)?;
            let comps = vec![
                self.completion_ids(&p.chosen)?,
                self.completion_ids(&p.rejected)?,
            ];
            let pi = Self::logprobs_of(&self.policy, &ids, &comps, 2)?;
            let rf = Self::logprobs_of(reference, &ids, &comps, 2)?;
            lps.push((pi[0], pi[1], rf[0], rf[1]));
        }
        Ok(dpo_summary(lps.into_iter(), self.settings.dpo.beta))
    }

    /// DPO on `pairs` (LoRA adapters only) against the policy as it is now; returns the
    /// loss and mean margin of every step.
    pub fn dpo(&mut self, pairs: &[Pair], s: &DpoSettings) -> Result<LearnReport> {
        let t0 = Instant::now();
        if pairs.is_empty() {
            return Ok(LearnReport {
                note: "no pairs: nothing learned".into(),
                ..LearnReport::default()
            });
        }
        let dev = Device::Cpu;
        // Pairs grouped by prompt (the loop has one); each group shares its prefix.
        let mut prompts: Vec<String> = vec![];
        for p in pairs {
            if !prompts.contains(&p.prompt) {
                prompts.push(p.prompt.clone());
            }
        }
        let prompt_ids = prompts
            .iter()
            .map(|p| self.prompt_ids(p))
            .collect::<Result<Vec<_>>>()?;
        let group: Vec<usize> = pairs
            .iter()
            .map(|p| prompts.iter().position(|q| q == &p.prompt).expect("listed"))
            .collect();
        let chosen = pairs
            .iter()
            .map(|p| self.completion_ids(&p.chosen))
            .collect::<Result<Vec<_>>>()?;
        let rejected = pairs
            .iter()
            .map(|p| self.completion_ids(&p.rejected))
            .collect::<Result<Vec<_>>>()?;
        // The frozen reference's log-probabilities, once.
        let mut ref_c = vec![0.0; pairs.len()];
        let mut ref_r = vec![0.0; pairs.len()];
        for (g, ids) in prompt_ids.iter().enumerate() {
            let members: Vec<usize> = (0..pairs.len()).filter(|&i| group[i] == g).collect();
            let c: Vec<Vec<u32>> = members.iter().map(|&i| chosen[i].clone()).collect();
            let r: Vec<Vec<u32>> = members.iter().map(|&i| rejected[i].clone()).collect();
            let lc = Self::logprobs_of(&self.policy, ids, &c, 4)?;
            let lr = Self::logprobs_of(&self.policy, ids, &r, 4)?;
            for (k, &i) in members.iter().enumerate() {
                ref_c[i] = lc[k];
                ref_r[i] = lr[k];
            }
        }
        let vars = self.vm.all_vars();
        let step = |chunk: &[usize]| {
            let ids = &prompt_ids[group[chunk[0]]];
            let (head, last) = ids.split_at(ids.len() - 1);
            let (prefix, _) = self.policy.prefill_prefix(head)?;
            let k = chunk.len();
            let seqs: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&i| &chosen[i])
                .chain(chunk.iter().map(|&i| &rejected[i]))
                .map(|c| last.iter().chain(c).copied().collect())
                .collect();
            let views: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
            let b = Batch::new(&views, &[], 0, &dev)?;
            let sel = |v: &[f64]| {
                let xs: Vec<f32> = chunk.iter().map(|&i| v[i] as f32).collect();
                Tensor::from_vec(xs, k, &dev).map_err(cerr)
            };
            let tokens: Vec<f32> = chunk.iter().map(|&i| chosen[i].len() as f32).collect();
            let (ref_pc, ref_pr) = (sel(&ref_c)?, sel(&ref_r)?);
            // Checkpointed: one layer's attention over the prompt at a time.
            let (grads, (loss, margin)) =
                self.policy
                    .grads_after(&prefix, &b.inputs, &vars, |logits| {
                        let lp = sequence_logprobs(logits, &b)?;
                        let pc = lp.narrow(0, 0, k).map_err(cerr)?;
                        let pr = lp.narrow(0, k, k).map_err(cerr)?;
                        let (objective, loss, margin) =
                            dpo_objective(&pc, &pr, &ref_pc, &ref_pr, &tokens, s.beta, s.nll)?;
                        Ok((objective, (loss.detach(), margin.detach())))
                    })?;
            Ok((grads, loss, margin))
        };
        // Steps take pairs of one prompt.
        let mut report = train(vars.clone(), &group, s, 0x6c6f_7261_5f64_706f, step)?;
        self.merged = None;
        self.adapter_hash = Some(crate::model::train::weights_hash(&self.vm)?);
        report.note = format!(
            "LoRA DPO (rank {}, alpha {}) on {} pairs: {} steps, beta {}, lr {}, nll {}, {:.1}s",
            self.settings.lora.rank,
            self.settings.lora.alpha,
            pairs.len(),
            report.steps,
            s.beta,
            s.lr,
            s.nll,
            t0.elapsed().as_secs_f64()
        );
        Ok(report)
    }

    /// The model's path.
    pub fn path(&self) -> &PathBuf {
        &self.base.path
    }

    /// Trainable adapter parameters.
    pub fn adapter_parameters(&self) -> usize {
        self.vm
            .all_vars()
            .iter()
            .map(|v| v.as_tensor().elem_count())
            .sum()
    }

    /// The dtype the model computes in (always f32 on the CPU).
    pub fn dtype(&self) -> DType {
        DType::F32
    }
}

impl Generator for LocalGenerator {
    fn last_tokens(&self) -> Option<usize> {
        Some(self.last_stats.tokens)
    }

    fn id(&self) -> String {
        let name = self
            .base
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let base = format!("local:{name}@{}", &self.base.content_hash()[..12]);
        match (&self.adapter_hash, self.settings.guided) {
            (Some(h), g) => format!(
                "{base}+lora{}@{}{}",
                self.settings.lora.rank,
                &h[..12],
                if g { "+guided" } else { "" }
            ),
            (None, true) => format!("{base}+guided"),
            (None, false) => base,
        }
    }

    fn sample(
        &mut self,
        prompt: &str,
        n: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<String>> {
        let programs = self.sample_programs(prompt, n, temperature, seed)?;
        // Replies as a chat model would write them, for the extractor.
        Ok(programs
            .into_iter()
            .map(|p| format!("{REPLY_OPEN}{}\n{REPLY_CLOSE}\n", p.trim_end()))
            .collect())
    }

    /// LoRA DPO with the settings' DPO (seed + iteration); the adapters then go to
    /// `dir/iteration-<t>` in PEFT's layout.
    fn learn(&mut self, pairs: &[Pair], iteration: usize, dir: &Path) -> Result<LearnReport> {
        let mut s = self.settings.dpo.clone();
        s.seed = s.seed.wrapping_add(iteration as u64);
        // Every fifth pair is held out (with 5 or more) to measure what DPO did on pairs
        // it did not train on.
        let mut train = vec![];
        let mut held = vec![];
        for (i, p) in pairs.iter().enumerate() {
            if pairs.len() >= 5 && i % 5 == 4 {
                held.push(p.clone());
            } else {
                train.push(p.clone());
            }
        }
        let reference = (!held.is_empty()).then(|| self.snapshot()).transpose()?;
        let before = match &reference {
            Some(r) => Some(self.evaluate_pairs(r, &held)?),
            None => None,
        };
        let mut report = self.dpo(&train, &s)?;
        if let (Some(r), Some((l0, m0))) = (&reference, before) {
            let (l1, m1) = self.evaluate_pairs(r, &held)?;
            report.note = format!(
                "{}; {} held-out pairs: loss {l0:.4} -> {l1:.4}, margin {m0:.3} -> {m1:.3}",
                report.note,
                held.len()
            );
        }
        self.adapter_iteration = Some(iteration);
        // The generator now has (possibly untrained) adapters, as a resumed run that
        // loads them will: the same id either way.
        self.adapter_hash = Some(crate::model::train::weights_hash(&self.vm)?);
        let to = iteration_dir(dir, iteration);
        self.save_adapter(&to)?;
        report.note = format!("{}; adapters saved to {}", report.note, to.display());
        Ok(report)
    }
}
