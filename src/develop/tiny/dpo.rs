//! DPO for the tiny generator: against a frozen reference, with an NLL anchor on the
//! chosen programs. A conditioned generator's pairs are (parent, better child, worse
//! child): each program is scored given its pair's prompt, the parent.

use super::{PAD, Result, TinyGenerator, cerr};
use crate::develop::dpo::{DpoSettings, train};
use crate::develop::generator::{LearnReport, Pair};
use crate::model::train::{Batch, dpo_objective, dpo_summary, sequence_logprobs, weights_hash};
use candle_core::{Device, Tensor};
use std::time::Instant;

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
        let dev = Device::Cpu;
        let step = |chunk: &[usize]| {
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
            let (ref_pc, ref_pr) = (sel(&ref_c)?, sel(&ref_r)?);
            let (objective, loss, margin) =
                dpo_objective(&pc, &pr, &ref_pc, &ref_pr, &tokens, s.beta, s.nll)?;
            Ok((objective.backward().map_err(cerr)?, loss, margin))
        };
        // Pairs in one group: steps are plain chunks of the shuffled order.
        let group = vec![0; pairs.len()];
        let mut report = train(self.vm.all_vars(), &group, s, 0x6470_6f5f_7061_6972, step)?;
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
