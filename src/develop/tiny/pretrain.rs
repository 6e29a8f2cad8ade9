//! Pretraining the tiny generator: AdamW with warmup and cosine decay and gradient
//! clipping over the examples of [`TinySpec::examples`], in length-sorted batches; a
//! conditioned generator's loss counts only the child's tokens.

use super::{PAD, Result, TinyGenerator, TinySpec, TrainSpec, cerr, new_model};
use crate::model::llama::masked_cross_entropy;
use crate::model::train::{Batch, clipped_grads, seeded_init, weights_hash};
use crate::semantics::rng::SplitMix64;
use candle_core::Device;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// How pretraining went.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PretrainReport {
    /// Examples trained on (programs; for a conditioned generator, (parent, child)
    /// pairs, parents of `""` included).
    pub programs: usize,
    pub corpus_bytes: usize,
    pub steps: usize,
    pub seconds: f64,
    /// Mean loss (nats per byte) over the first and the last tenth of the steps.
    pub first_loss: f64,
    pub last_loss: f64,
}

impl TinyGenerator {
    /// Pretrains a generator on `examples` ((parent, program); the parent is ignored by
    /// an unconditioned spec), not cached; see [`Self::pretrained`]. Examples longer
    /// than the model's positions are left out.
    pub fn pretrain(
        spec: &TinySpec,
        examples: &[(String, String)],
        log: &mut dyn FnMut(&str),
    ) -> Result<Self> {
        let t0 = Instant::now();
        let cfg = spec.config();
        let (vm, model) = new_model(&cfg)?;
        let tr = &spec.train;
        seeded_init(&vm, tr.seed, tr.init_std, cfg.num_hidden_layers)?;
        let max_len = spec.model.max_positions;
        let vocab = spec.vocab();
        let (seqs, from): (Vec<Vec<u32>>, Vec<usize>) = examples
            .iter()
            .map(|(parent, p)| spec.encode(&vocab, parent, p))
            .filter(|(s, _)| s.len() <= max_len)
            .unzip();
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
            let starts: Vec<usize> = idx.iter().map(|&i| from[i]).collect();
            let batch = Batch::new(&views, &starts, PAD, &dev)?;
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
            corpus_bytes: examples.iter().map(|(a, b)| a.len() + b.len()).sum(),
            steps: tr.steps,
            seconds: t0.elapsed().as_secs_f64(),
            first_loss: mean(&losses[..tenth.min(losses.len())]),
            last_loss: mean(&losses[losses.len().saturating_sub(tenth)..]),
        };
        let weights = weights_hash(&vm)?;
        Ok(TinyGenerator::new(
            spec.clone(),
            spec.key(examples),
            vm,
            model,
            weights,
            pretrain,
        ))
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
    crate::model::train::warmup_cosine(t.lr, t.min_lr_frac, t.warmup, t.steps, step)
}

#[cfg(test)]
mod tests {
    use super::super::vocab::FIRST_WORD;
    use super::super::{BOS, EOS, Vocab};
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

    #[test]
    fn a_conditioned_sequence_scores_only_the_child() {
        let spec = TinySpec::test_conditioned();
        let v = spec.vocab();
        let (s, from) = spec.encode(&v, "PARENT", "child");
        assert_eq!(s[0], BOS);
        assert_eq!(
            s[from - 1],
            EOS,
            "the parent's end separates it from the child"
        );
        assert_eq!(v.decode(&s[1..from - 1]), "PARENT");
        assert_eq!(v.decode(&s[from..]), "child");
        assert_eq!(*s.last().unwrap(), EOS);
        // From nothing: `BOS EOS child EOS`.
        assert_eq!(
            spec.encode(&v, "", "x"),
            (vec![BOS, EOS, b'x' as u32, EOS], 2)
        );
        // Unconditioned: the parent is ignored.
        let plain = TinySpec::test();
        assert_eq!(
            plain.encode(&v, "PARENT", "x"),
            (vec![BOS, b'x' as u32, EOS], 1)
        );
        // A long parent is cut to half the positions.
        let long = "y".repeat(4 * spec.model.max_positions);
        let (s, from) = spec.encode(&v, &long, "x");
        assert_eq!(from, spec.model.max_positions / 2);
        assert_eq!(s.len(), from + 2);
    }
}
