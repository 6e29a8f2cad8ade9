//! DPO for the tiny generator: against a frozen reference, with an NLL anchor on the
//! chosen programs. A conditioned generator's pairs are (parent, better child, worse
//! child): each program is scored given its pair's prompt, the parent.

use super::{PAD, Result, TinyGenerator, cerr};
use crate::develop::generator::{LearnReport, Pair};
use crate::model::train::{
    Batch, clipped_grads, dpo_objective, dpo_summary, sequence_logprobs, weights_hash,
};
use crate::semantics::rng::SplitMix64;
use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// DPO settings of [`TinyGenerator::dpo`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DpoSettings {
    /// Strength of the KL anchor to the reference (the paper's 0.01 was for LoRA on a
    /// 7B model).
    pub beta: f64,
    pub lr: f64,
    /// Passes over the pairs.
    pub epochs: usize,
    /// At most this many steps (0: no limit besides `epochs`).
    pub max_steps: usize,
    /// Pairs per step.
    pub batch_pairs: usize,
    pub weight_decay: f64,
    pub clip: f64,
    /// Seed of the pair order ([`Generator::learn`] adds the iteration).
    pub seed: u64,
    /// Weight of the chosen programs' mean per-token negative log-likelihood added to
    /// the DPO loss (as in RPO, Pang et al. 2024): it keeps the chosen programs likely,
    /// so DPO on a few pairs does not push the generator off well-formed programs.
    pub nll: f64,
}

impl Default for DpoSettings {
    fn default() -> Self {
        DpoSettings {
            beta: 0.1,
            lr: 3e-4,
            epochs: 3,
            max_steps: 0,
            batch_pairs: 8,
            weight_decay: 0.0,
            clip: 1.0,
            seed: 0,
            nll: 1.0,
        }
    }
}

impl TinyGenerator {
    /// The DPO loss and mean margin of `pairs` for this policy against `reference`
    /// (e.g. on held-out pairs). Prompts are the parents of a conditioned generator,
    /// ignored by an unconditioned one.
    pub fn evaluate_pairs(&self, reference: &TinyGenerator, pairs: &[Pair]) -> Result<(f64, f64)> {
        if pairs.is_empty() {
            return Ok((0.0, 0.0));
        }
        let (c, r) = sides(pairs);
        let (pc, pr) = (self.logprobs(&c, 16)?, self.logprobs(&r, 16)?);
        let (rc, rr) = (reference.logprobs(&c, 16)?, reference.logprobs(&r, 16)?);
        let lps = (0..pairs.len()).map(|i| (pc[i], pr[i], rc[i], rr[i]));
        Ok(dpo_summary(lps, self.dpo.beta))
    }

    /// DPO on `pairs` against a frozen copy of the current weights, with `s`. Returns
    /// the loss and mean margin at every step; the weights are updated in place.
    pub fn dpo(&mut self, pairs: &[Pair], s: &DpoSettings) -> Result<LearnReport> {
        let t0 = Instant::now();
        if pairs.is_empty() {
            return Ok(LearnReport {
                note: "no pairs: nothing learned".into(),
                ..LearnReport::default()
            });
        }
        let seq = |p: &str, t: &str| self.sequence(p, t);
        let chosen: Vec<(Vec<u32>, usize)> =
            pairs.iter().map(|p| seq(&p.prompt, &p.chosen)).collect();
        let rejected: Vec<(Vec<u32>, usize)> =
            pairs.iter().map(|p| seq(&p.prompt, &p.rejected)).collect();
        // The frozen reference's log-probabilities, once.
        let (c, r) = sides(pairs);
        let ref_c = self.logprobs(&c, 16)?;
        let ref_r = self.logprobs(&r, 16)?;
        let vars = self.vm.all_vars();
        let mut opt = AdamW::new(
            vars.clone(),
            ParamsAdamW {
                lr: s.lr,
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: s.weight_decay,
            },
        )
        .map_err(cerr)?;
        let mut rng = SplitMix64::new(s.seed ^ 0x6470_6f5f_7061_6972);
        let dev = Device::Cpu;
        let mut report = LearnReport::default();
        // `epochs` passes, cut at `max_steps`: a few pairs get a few steps, not dozens of
        // passes that collapse the generator onto them.
        'epochs: for _ in 0..s.epochs.max(1) {
            let mut order: Vec<usize> = (0..pairs.len()).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i + 1));
            }
            for chunk in order.chunks(s.batch_pairs.max(1)) {
                if s.max_steps > 0 && report.steps >= s.max_steps {
                    break 'epochs;
                }
                let k = chunk.len();
                let both = || {
                    chunk
                        .iter()
                        .map(|&i| &chosen[i])
                        .chain(chunk.iter().map(|&i| &rejected[i]))
                };
                let views: Vec<&[u32]> = both().map(|(s, _)| s.as_slice()).collect();
                let from: Vec<usize> = both().map(|(_, f)| *f).collect();
                let b = Batch::new(&views, &from, PAD, &dev)?;
                let lp = sequence_logprobs(&self.model.forward_train(&b.inputs)?, &b)?;
                let pc = lp.narrow(0, 0, k).map_err(cerr)?;
                let pr = lp.narrow(0, k, k).map_err(cerr)?;
                let sel = |v: &[f64]| {
                    let xs: Vec<f32> = chunk.iter().map(|&i| v[i] as f32).collect();
                    Tensor::from_vec(xs, k, &dev).map_err(cerr)
                };
                let tokens: Vec<f32> = chunk
                    .iter()
                    .map(|&i| chosen[i].0.len().saturating_sub(chosen[i].1).max(1) as f32)
                    .collect();
                let (objective, loss, margin) = dpo_objective(
                    &pc,
                    &pr,
                    &sel(&ref_c)?,
                    &sel(&ref_r)?,
                    &tokens,
                    s.beta,
                    s.nll,
                )?;
                let (grads, _) = clipped_grads(&objective, &vars, s.clip)?;
                opt.step(&grads).map_err(cerr)?;
                report.record_step(&loss, &margin)?;
            }
        }
        self.weights = weights_hash(&self.vm)?;
        report.note = format!(
            "DPO on {} pairs: {} steps, beta {}, lr {}, nll {}, {:.1}s",
            pairs.len(),
            report.steps,
            s.beta,
            s.lr,
            s.nll,
            t0.elapsed().as_secs_f64()
        );
        Ok(report)
    }
}

/// (prompt, program) texts.
type Texts<'a> = Vec<(&'a str, &'a str)>;

/// Each pair's (prompt, chosen) and (prompt, rejected).
fn sides(pairs: &[Pair]) -> (Texts<'_>, Texts<'_>) {
    pairs
        .iter()
        .map(|p| {
            (
                (p.prompt.as_str(), p.chosen.as_str()),
                (p.prompt.as_str(), p.rejected.as_str()),
            )
        })
        .unzip()
}
