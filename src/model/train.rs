//! Training helpers for the llama-family network on candle: deterministic weight
//! initialisation, padded batches of token sequences, per-sequence log-probabilities,
//! and the DPO loss (Rafailov et al., "Direct Preference Optimization", arXiv 2305.18290).

use super::Result;
use crate::semantics::rng::SplitMix64;
use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarMap;
use sha2::{Digest, Sha256};

fn err(e: candle_core::Error) -> super::ModelError {
    super::ModelError::tensor("train")(e)
}

/// The learning rate at `step` (0-based) of `steps`: linear warmup to `lr` over
/// `warmup` steps, then cosine decay to `lr * min_lr_frac` at the last step.
pub fn warmup_cosine(lr: f64, min_lr_frac: f64, warmup: usize, steps: usize, step: usize) -> f64 {
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let span = steps.saturating_sub(warmup).max(1) as f64;
    let x = ((step - warmup) as f64 / span).min(1.0);
    let floor = lr * min_lr_frac;
    floor + (lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * x).cos())
}

/// Sets every variable of `vm` (as created by [`super::llama::Llama::new`]) from
/// `seed` alone: norm weights 1, biases 0, everything else normal with standard
/// deviation `std`, except the projections back into the residual stream (`o_proj`,
/// `down_proj`), scaled by `1/sqrt(2 * layers)` (GPT-2's scheme). Variables are visited
/// in name order, each from its own stream, so the result does not depend on the
/// map's iteration order. (candle's own random initialisation cannot be seeded on the
/// CPU.)
pub fn seeded_init(vm: &VarMap, seed: u64, std: f64, layers: usize) -> Result<()> {
    let data = vm.data().lock().map_err(|_| "train: poisoned var map")?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let resid = std / (2.0 * layers.max(1) as f64).sqrt();
    for name in names {
        let var = &data[name];
        let shape = var.shape().clone();
        let n = shape.elem_count();
        let mut h = Sha256::new();
        h.update(seed.to_le_bytes());
        h.update(name.as_bytes());
        let d = h.finalize();
        let mut rng = SplitMix64::new(u64::from_le_bytes(d[..8].try_into().expect("8 bytes")));
        let values: Vec<f32> = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else if name.ends_with(".bias") {
            vec![0.0; n]
        } else {
            let s = if name.contains("o_proj") || name.contains("down_proj") {
                resid
            } else {
                std
            };
            (0..n).map(|_| (s as f32) * rng.normal()).collect()
        };
        let t = Tensor::from_vec(values, shape, var.device()).map_err(err)?;
        var.set(&t).map_err(err)?;
    }
    Ok(())
}

/// A hex SHA-256 of every variable's name, shape and f32 data, in name order.
pub fn weights_hash(vm: &VarMap) -> Result<String> {
    let data = vm.data().lock().map_err(|_| "train: poisoned var map")?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut h = Sha256::new();
    for name in names {
        let t = data[name].as_tensor();
        h.update(name.as_bytes());
        h.update(format!("{:?}", t.dims()).as_bytes());
        let v: Vec<f32> = t
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .map_err(err)?;
        for x in v {
            h.update(x.to_le_bytes());
        }
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Copies every variable of `from` into the same-named variable of `to`.
pub fn copy_vars(from: &VarMap, to: &VarMap) -> Result<()> {
    let src = from.data().lock().map_err(|_| "train: poisoned var map")?;
    let dst = to.data().lock().map_err(|_| "train: poisoned var map")?;
    for (name, var) in dst.iter() {
        let s = src
            .get(name)
            .ok_or_else(|| format!("train: no variable `{name}` to copy"))?;
        var.set(&s.as_tensor().copy().map_err(err)?).map_err(err)?;
    }
    Ok(())
}

/// Sequences as a right-padded training batch: inputs `(b, t)` (all tokens but the
/// last), targets `(b, t)` (all but the first) and weights `(b, t)` f32 that are 1 where
/// a target is scored: from position `from[i]` of sequence `i` on (`from = 1` scores
/// every token after the first), 0 on padding.
pub struct Batch {
    pub inputs: Tensor,
    pub targets: Tensor,
    pub weights: Tensor,
}

impl Batch {
    /// Builds the batch; every sequence needs at least two tokens.
    pub fn new(seqs: &[&[u32]], from: &[usize], pad: u32, dev: &Device) -> Result<Batch> {
        let t = seqs.iter().map(|s| s.len()).max().unwrap_or(1).max(2) - 1;
        let b = seqs.len();
        let mut inp = Vec::with_capacity(b * t);
        let mut tgt = Vec::with_capacity(b * t);
        let mut w = Vec::with_capacity(b * t);
        for (i, s) in seqs.iter().enumerate() {
            if s.len() < 2 {
                return Err("train: a sequence needs at least two tokens".into());
            }
            let start = from.get(i).copied().unwrap_or(1).max(1);
            for j in 0..t {
                inp.push(s.get(j).copied().unwrap_or(pad));
                tgt.push(s.get(j + 1).copied().unwrap_or(pad));
                w.push(if j + 1 < s.len() && j + 1 >= start {
                    1f32
                } else {
                    0.0
                });
            }
        }
        Ok(Batch {
            inputs: Tensor::from_vec(inp, (b, t), dev).map_err(err)?,
            targets: Tensor::from_vec(tgt, (b, t), dev).map_err(err)?,
            weights: Tensor::from_vec(w, (b, t), dev).map_err(err)?,
        })
    }
}

/// Summed log-probabilities `(b,)` of each sequence's scored targets under `logits`
/// `(b, t, v)` (differentiable).
pub fn sequence_logprobs(logits: &Tensor, batch: &Batch) -> Result<Tensor> {
    token_logprobs(logits, batch)?.sum(1).map_err(err)
}

/// Log-probabilities `(b, t)` of each sequence's targets under `logits` `(b, t, v)`, zero
/// where a target is not scored (differentiable).
pub fn token_logprobs(logits: &Tensor, batch: &Batch) -> Result<Tensor> {
    (|| {
        let (b, t, v) = logits.dims3()?;
        let lp = candle_nn::ops::log_softmax(&logits.reshape((b * t, v))?, D::Minus1)?;
        let picked = lp
            .gather(&batch.targets.reshape((b * t, 1))?, 1)?
            .reshape((b, t))?;
        picked * &batch.weights
    })()
    .map_err(err)
}

/// Backpropagates `loss`, scales the gradients of `vars` so their global L2 norm is at
/// most `max_norm` (when `max_norm > 0`), and returns them with the norm before scaling.
pub fn clipped_grads(
    loss: &Tensor,
    vars: &[candle_core::Var],
    max_norm: f64,
) -> Result<(candle_core::backprop::GradStore, f64)> {
    clip_grads(loss.backward().map_err(err)?, vars, max_norm)
}

/// [`clipped_grads`] for gradients already computed.
pub fn clip_grads(
    mut grads: candle_core::backprop::GradStore,
    vars: &[candle_core::Var],
    max_norm: f64,
) -> Result<(candle_core::backprop::GradStore, f64)> {
    let mut sq = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v) {
            sq += g
                .sqr()
                .and_then(|t| t.sum_all())
                .and_then(|t| t.to_scalar::<f32>())
                .map_err(err)? as f64;
        }
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / norm;
        for v in vars {
            if let Some(g) = grads.remove(v) {
                grads.insert(v, (g * scale).map_err(err)?);
            }
        }
    }
    Ok((grads, norm))
}

/// `log(1 + exp(x))`, elementwise and stable: `max(x, 0) + log(1 + exp(-|x|))`.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    (|| x.relu()? + ((x.abs()?.neg()?.exp()? + 1.0)?.log()?))().map_err(err)
}

/// The DPO loss, mean over pairs: `-log sigmoid(beta * margin)` with
/// `margin = (pi_c - ref_c) - (pi_r - ref_r)`, from the policy's (differentiable) and
/// the reference's (constant) sequence log-probabilities, all `(n,)`. Returns the loss
/// and the margins (detached).
pub fn dpo_loss(
    pi_chosen: &Tensor,
    pi_rejected: &Tensor,
    ref_chosen: &Tensor,
    ref_rejected: &Tensor,
    beta: f64,
) -> Result<(Tensor, Tensor)> {
    let margin = (|| (pi_chosen - ref_chosen.detach())? - (pi_rejected - ref_rejected.detach())?)()
        .map_err(err)?;
    let loss = softplus(&(margin.clone() * (-beta)).map_err(err)?)?
        .mean_all()
        .map_err(err)?;
    Ok((loss, margin.detach()))
}

/// The mean DPO loss and mean margin of pairs from plain log-probabilities (policy
/// chosen, policy rejected, reference chosen, reference rejected per pair), e.g. to
/// evaluate held-out pairs: `-log sigmoid(beta m)` with `m` as in [`dpo_loss`].
pub fn dpo_summary(lps: impl Iterator<Item = (f64, f64, f64, f64)>, beta: f64) -> (f64, f64) {
    let (mut loss, mut margin, mut n) = (0.0, 0.0, 0usize);
    for (pc, pr, rc, rr) in lps {
        let m = (pc - rc) - (pr - rr);
        margin += m;
        // -log sigmoid(beta m) = softplus(-beta m)
        let z = -beta * m;
        loss += z.max(0.0) + (-z.abs()).exp().ln_1p();
        n += 1;
    }
    if n == 0 {
        return (0.0, 0.0);
    }
    (loss / n as f64, margin / n as f64)
}

/// The objective of one DPO step on `k` pairs: [`dpo_loss`], plus `nll` times the
/// chosen sequences' mean per-token negative log-likelihood (sequence `i` scores
/// `chosen_tokens[i]` tokens) when `nll > 0` (as in RPO). Returns the objective, the
/// DPO loss and the margins (detached).
pub fn dpo_objective(
    pc: &Tensor,
    pr: &Tensor,
    ref_c: &Tensor,
    ref_r: &Tensor,
    chosen_tokens: &[f32],
    beta: f64,
    nll: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (loss, margin) = dpo_loss(pc, pr, ref_c, ref_r, beta)?;
    if nll <= 0.0 {
        return Ok((loss.clone(), loss, margin));
    }
    let tokens =
        Tensor::from_vec(chosen_tokens.to_vec(), chosen_tokens.len(), pc.device()).map_err(err)?;
    let penalty = (pc / tokens)
        .and_then(|x| x.mean_all())
        .and_then(|x| x * (-nll))
        .map_err(err)?;
    Ok(((&loss + penalty).map_err(err)?, loss, margin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpo_loss_is_log2_at_zero_margin_and_falls_with_it() {
        let dev = Device::Cpu;
        let t = |v: &[f32]| Tensor::new(v, &dev).unwrap();
        let (l, m) = dpo_loss(&t(&[-3.0]), &t(&[-5.0]), &t(&[-3.0]), &t(&[-5.0]), 0.1).unwrap();
        let l = l.to_scalar::<f32>().unwrap();
        assert!((l - std::f32::consts::LN_2).abs() < 1e-6, "{l}");
        assert_eq!(m.to_vec1::<f32>().unwrap(), vec![0.0]);
        let (l, m) = dpo_loss(&t(&[-2.0]), &t(&[-6.0]), &t(&[-3.0]), &t(&[-5.0]), 0.1).unwrap();
        let l = l.to_scalar::<f32>().unwrap();
        let want = (1.0f32 + (-0.2f32).exp()).ln();
        assert!((l - want).abs() < 1e-6, "{l} vs {want}");
        assert_eq!(m.to_vec1::<f32>().unwrap(), vec![2.0]);
        // Large margins stay finite.
        let (l, _) = dpo_loss(&t(&[0.0]), &t(&[-1e4]), &t(&[0.0]), &t(&[0.0]), 1.0).unwrap();
        assert!(l.to_scalar::<f32>().unwrap().abs() < 1e-6);
    }
}
