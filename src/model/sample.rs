//! Batched sampling with temperature and nucleus (top-p) truncation, a KV cache, and a
//! seeded deterministic random stream per completion.
//!
//! Works on token ids, so any tokenizer (the built-in byte vocabulary of the develop
//! loop's `tiny` generator, or a [`Tok`] through [`sample_text`]) can use it.
//!
//! Determinism: completion `i` draws its uniforms from its own [`SplitMix64`] stream,
//! seeded from `(seed, i)`, one draw per generated token, so the samples depend on the
//! seed and the prompts only, not on how completions are batched or on the number of
//! threads (candle's CPU matmuls split work across threads by output blocks, never
//! along the reduction, so logits are the same bits for any thread count).
//! Probabilities are computed in f64 from the f32 logits with a fixed summation order.

use super::llama::{KvCache, Llama};
use super::tokenizer::Tok;
use super::{Result, generate::cut_at_stop};
use crate::r#gen::SplitMix64;

/// Settings for [`sample`].
#[derive(Clone, Debug)]
pub struct SampleOptions {
    /// Softmax temperature; `<= 0` decodes greedily (the first largest logit).
    pub temperature: f64,
    /// Nucleus sampling: keep the most probable tokens whose cumulative probability first
    /// reaches `top_p` (`>= 1` keeps all).
    pub top_p: f64,
    /// At most this many new tokens per completion.
    pub max_new_tokens: usize,
    /// Completions decoded together.
    pub batch_size: usize,
    /// Seed of the per-completion random streams.
    pub seed: u64,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 256,
            batch_size: 16,
            seed: 0,
        }
    }
}

/// One sampled completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The new tokens, without the end token.
    pub ids: Vec<u32>,
    /// Whether it ended at an end token or a stop (false: it ran out of tokens).
    pub finished: bool,
}

/// The random stream of completion `index` for `seed`.
pub fn stream(seed: u64, index: usize) -> SplitMix64 {
    let mut s = SplitMix64::new(seed ^ 0x5a17_1e5a_u64.rotate_left(32));
    let a = s.next_u64();
    SplitMix64::new(a ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03))
}

/// Picks a token from `logits` with uniform `u` in `[0, 1)`: temperature, then top-p.
/// Ties in probability are ordered by token id, so the choice is a pure function of
/// the logits and `u`.
pub fn pick_token(logits: &[f32], temperature: f64, top_p: f64, u: f64) -> u32 {
    let argmax = || {
        let mut best = 0;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] || logits[best].is_nan() {
                best = i;
            }
        }
        best as u32
    };
    if temperature <= 0.0 || logits.is_empty() {
        return argmax();
    }
    let max = logits
        .iter()
        .copied()
        .filter(|l| l.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return argmax();
    }
    let mut probs: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let p = if l.is_finite() {
                ((l as f64 - max as f64) / temperature).exp()
            } else {
                0.0
            };
            (i as u32, p)
        })
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    if !(total > 0.0 && total.is_finite()) {
        return argmax();
    }
    // Most probable first, ties by id (a stable sort on ids already in order).
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    let keep = if top_p >= 1.0 {
        probs.len()
    } else {
        let want = top_p.max(0.0) * total;
        let mut acc = 0.0;
        let mut k = 0;
        while k < probs.len() {
            acc += probs[k].1;
            k += 1;
            if acc >= want {
                break;
            }
        }
        k.max(1)
    };
    let kept = &probs[..keep];
    let mass: f64 = kept.iter().map(|p| p.1).sum();
    let target = u * mass;
    let mut acc = 0.0;
    for &(id, p) in kept {
        acc += p;
        if target < acc {
            return id;
        }
    }
    kept.last().map(|p| p.0).unwrap_or(0)
}

fn err(e: candle_core::Error) -> String {
    format!("sample: {e}")
}

struct Seq {
    idx: usize,
    pad: usize,
    pos: usize,
    out: Vec<u32>,
    rng: SplitMix64,
}

/// Samples one completion per prompt (token ids, each non-empty), in order.
///
/// Completions end at a token in `eos`, when `stop` says so (it sees the new tokens so
/// far; the tokens stay in the result), or after `opts.max_new_tokens` tokens. `pad_id`
/// fills the left padding of shorter prompts (it is masked out). For `n` samples of one
/// prompt, pass the prompt `n` times: completion `i` uses stream `(opts.seed, i)`.
pub fn sample(
    model: &Llama,
    prompts: &[Vec<u32>],
    eos: &[u32],
    pad_id: u32,
    opts: &SampleOptions,
    stop: &dyn Fn(&[u32]) -> bool,
) -> Result<Vec<Completion>> {
    let max_pos = model.config().max_position_embeddings.clamp(1, 1 << 15);
    for (i, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            return Err(format!("prompt {i} has no tokens"));
        }
        if p.len() + opts.max_new_tokens > max_pos {
            return Err(format!(
                "prompt {i} has {} tokens; with {} new tokens it exceeds the model's {max_pos} positions",
                p.len(),
                opts.max_new_tokens
            ));
        }
    }
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(prompts[i].len()));
    let mut results: Vec<Option<Completion>> = vec![None; prompts.len()];
    for chunk in order.chunks(opts.batch_size.max(1)) {
        for (idx, c) in sample_batch(model, prompts, chunk, eos, pad_id, opts, stop)? {
            results[idx] = Some(c);
        }
    }
    Ok(results
        .into_iter()
        .map(|c| c.expect("every prompt decoded"))
        .collect())
}

fn sample_batch(
    model: &Llama,
    prompts: &[Vec<u32>],
    chunk: &[usize],
    eos: &[u32],
    pad_id: u32,
    opts: &SampleOptions,
    stop: &dyn Fn(&[u32]) -> bool,
) -> Result<Vec<(usize, Completion)>> {
    let longest = chunk.iter().map(|&i| prompts[i].len()).max().unwrap_or(0);
    let mut seqs: Vec<Seq> = chunk
        .iter()
        .map(|&i| Seq {
            idx: i,
            pad: longest - prompts[i].len(),
            pos: prompts[i].len(),
            out: vec![],
            rng: stream(opts.seed, i),
        })
        .collect();
    let mut finished = Vec::with_capacity(seqs.len());
    if opts.max_new_tokens == 0 {
        return Ok(seqs
            .into_iter()
            .map(|s| {
                (
                    s.idx,
                    Completion {
                        ids: vec![],
                        finished: false,
                    },
                )
            })
            .collect());
    }
    let mut cache = KvCache::default();
    let batch: Vec<&[u32]> = seqs.iter().map(|s| prompts[s.idx].as_slice()).collect();
    let mut logits = super::generate::prefill(model, &batch, pad_id, &mut cache)?;
    loop {
        let rows: Vec<Vec<f32>> = logits.to_vec2().map_err(err)?;
        let before = seqs.len();
        let mut keep = Vec::with_capacity(before);
        let mut still = Vec::with_capacity(before);
        for (row, (mut s, l)) in seqs.drain(..).zip(rows).enumerate() {
            let u = s.rng.unit();
            let t = pick_token(&l, opts.temperature, opts.top_p, u);
            let end = eos.contains(&t);
            if !end {
                s.out.push(t);
                s.pos += 1;
            }
            let stopped = !end && stop(&s.out);
            if end || stopped || s.out.len() >= opts.max_new_tokens {
                finished.push((
                    s.idx,
                    Completion {
                        ids: s.out,
                        finished: end || stopped,
                    },
                ));
            } else {
                keep.push(row as u32);
                still.push(s);
            }
        }
        seqs = still;
        if seqs.is_empty() {
            break;
        }
        if keep.len() != before {
            cache.retain(&keep)?;
        }
        let live: Vec<(u32, usize, usize)> = seqs
            .iter()
            .map(|s| (*s.out.last().expect("a token"), s.pos - 1, s.pad))
            .collect();
        logits = super::generate::decode_step(model, &live, &mut cache)?;
    }
    Ok(finished)
}

/// [`sample`] on text through a tokenizer: completions of `prompts`, in order, cut at
/// the first of `stop` (checked after every token).
pub fn sample_text(
    model: &Llama,
    tok: &Tok,
    prompts: &[String],
    stop: &[String],
    opts: &SampleOptions,
) -> Result<Vec<String>> {
    let encoded = prompts
        .iter()
        .map(|p| tok.encode(p))
        .collect::<Result<Vec<_>>>()?;
    let pad = tok.eos.first().copied().unwrap_or(0);
    let stop_fn = |ids: &[u32]| {
        !stop.is_empty()
            && tok
                .decode(ids)
                .map(|t| cut_at_stop(&t, stop).1)
                .unwrap_or(false)
    };
    let out = sample(model, &encoded, &tok.eos, pad, opts, &stop_fn)?;
    out.iter()
        .map(|c| tok.decode(&c.ids).map(|t| cut_at_stop(&t, stop).0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::pick_token;

    #[test]
    fn greedy_top_p_and_temperature() {
        let l = [0.0f32, 2.0, 1.0, 2.0];
        // Greedy: the first largest.
        assert_eq!(pick_token(&l, 0.0, 1.0, 0.7), 1);
        // A tiny nucleus keeps only the most probable (ties by id).
        assert_eq!(pick_token(&l, 1.0, 0.01, 0.99), 1);
        // Top-p 0.6 keeps ids 1 and 3 (each ~0.39); u splits them evenly.
        assert_eq!(pick_token(&l, 1.0, 0.6, 0.2), 1);
        assert_eq!(pick_token(&l, 1.0, 0.6, 0.8), 3);
        // Full distribution: u near 1 reaches the least probable in sorted order.
        assert_eq!(pick_token(&l, 1.0, 1.0, 0.999_999), 0);
        // Non-finite logits are never picked.
        let m = [f32::NEG_INFINITY, 0.0, f32::NAN];
        for u in [0.0, 0.5, 0.99] {
            assert_eq!(pick_token(&m, 1.0, 1.0, u), 1);
        }
    }
}
