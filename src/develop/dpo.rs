//! The one DPO training loop (Rafailov et al., arXiv 2305.18290, with an NLL anchor as
//! in RPO), shared by the tiny generator (all weights) and a local model (LoRA
//! adapters only). Each policy says how one step's pairs become gradients; the loop
//! owns the optimiser, the seeded pair order, the step limit, clipping and the report.

use super::generator::LearnReport;
use crate::model::train::clip_grads;
use crate::semantics::rng::SplitMix64;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};

/// DPO settings of the tiny generator and of a local model's LoRA adapters.
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

/// What one step gives: the gradients of its objective (before clipping), its DPO loss
/// and its per-pair margins.
pub type StepResult = Result<(GradStore, Tensor, Tensor), String>;

/// Trains `vars` for `s.epochs` passes over `n` pairs (cut at `s.max_steps`). Each
/// pass shuffles the pairs from the seed (`s.seed ^ salt`), orders them by `group`
/// (pairs of one group, e.g. one prompt, share a step) and cuts them into steps of at
/// most `s.batch_pairs`; `step` computes each step's gradients.
pub fn train(
    vars: Vec<Var>,
    group: &[usize],
    s: &DpoSettings,
    salt: u64,
    mut step: impl FnMut(&[usize]) -> StepResult,
) -> Result<LearnReport, String> {
    let e = |e: candle_core::Error| format!("DPO: {e}");
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
    .map_err(e)?;
    let mut rng = SplitMix64::new(s.seed ^ salt);
    let mut report = LearnReport::default();
    // `epochs` passes, cut at `max_steps`: a few pairs get a few steps, not dozens of
    // passes that collapse the generator onto them.
    for _ in 0..s.epochs.max(1) {
        let mut order: Vec<usize> = (0..group.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        for chunk in steps(order, group, s.batch_pairs.max(1)) {
            if s.max_steps > 0 && report.steps >= s.max_steps {
                return Ok(report);
            }
            let (grads, loss, margin) = step(&chunk)?;
            let (grads, _) = clip_grads(grads, &vars, s.clip)?;
            opt.step(&grads).map_err(e)?;
            report.record_step(&loss, &margin)?;
        }
    }
    Ok(report)
}

/// A shuffled order cut into steps: ordered by group (stably), then runs of one group
/// of at most `batch` pairs.
fn steps(mut order: Vec<usize>, group: &[usize], batch: usize) -> Vec<Vec<usize>> {
    order.sort_by_key(|&i| group[i]);
    let mut steps: Vec<Vec<usize>> = vec![];
    for i in order {
        match steps.last_mut() {
            Some(st) if st.len() < batch && group[st[0]] == group[i] => st.push(i),
            _ => steps.push(vec![i]),
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    #[test]
    fn steps_keep_groups_apart_and_the_order_within_them() {
        let group = [1, 0, 1, 0, 1];
        let got = super::steps(vec![4, 3, 2, 1, 0], &group, 2);
        assert_eq!(got, vec![vec![3, 1], vec![4, 2], vec![0]]);
        // One group: plain chunks of the order.
        let got = super::steps(vec![2, 0, 1], &[0, 0, 0], 2);
        assert_eq!(got, vec![vec![2, 0], vec![1]]);
    }
}
