//! Greedy decoding of text prompts, and the two forward steps of batched decoding with
//! a KV cache that [`super::sample`]'s one decoding loop drives.
//!
//! Prompts are sorted by length and decoded `batch_size` at a time, left-padded: each
//! sequence has its own positions and a mask that hides its padding. Finished sequences
//! (EOS, a stop string, or the token limit) leave the batch and the cache.

use super::llama::{KvCache, Llama};
use super::sample::SampleOptions;
use super::tokenizer::Tok;
use super::{GenOptions, Result};
use candle_core::{Device, Tensor};

fn err(e: candle_core::Error) -> super::ModelError {
    super::ModelError::tensor("generate")(e)
}

/// The text before the first stop string, and whether one was found.
pub fn cut_at_stop(text: &str, stop: &[String]) -> (String, bool) {
    let first = stop
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min();
    match first {
        Some(i) => (text[..i].to_string(), true),
        None => (text.to_string(), false),
    }
}

/// Greedy completions of `prompts`, in order, through the one decoding loop
/// ([`super::sample::sample`] at temperature 0), reporting the number done after each
/// batch.
pub fn generate(
    model: &Llama,
    tok: &Tok,
    prompts: &[String],
    opts: &GenOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<String>> {
    let max_pos = model.config().max_position_embeddings.clamp(1, 1 << 15);
    let mut encoded = Vec::with_capacity(prompts.len());
    for (i, p) in prompts.iter().enumerate() {
        let ids = tok.encode(p)?;
        if ids.is_empty() {
            return Err(crate::model::ModelError::Request(format!(
                "prompt {i} is empty after tokenization"
            )));
        }
        if ids.len() + opts.max_new_tokens > max_pos {
            return Err(crate::model::ModelError::Request(format!(
                "prompt {i} has {} tokens; with {} new tokens it exceeds the model's {max_pos} positions",
                ids.len(),
                opts.max_new_tokens
            )));
        }
        encoded.push(ids);
    }
    let greedy = SampleOptions {
        temperature: 0.0,
        top_p: 1.0,
        max_new_tokens: opts.max_new_tokens,
        batch_size: opts.batch_size.max(1),
        seed: 0,
    };
    let stop = |ids: &[u32]| {
        !opts.stop.is_empty()
            && tok
                .decode(ids)
                .map(|t| cut_at_stop(&t, &opts.stop).1)
                .unwrap_or(false)
    };
    let pad = tok.eos.first().copied().unwrap_or(0);
    // Longest first, ties in input order: batches hold similar lengths (as `sample`
    // orders them, so each chunk below is one of its batches).
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].len()));
    let mut results = vec![String::new(); prompts.len()];
    let mut done = 0;
    for chunk in order.chunks(greedy.batch_size) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| encoded[i].clone()).collect();
        let out = super::sample::sample(model, &batch, &tok.eos, pad, &greedy, &stop, None)?;
        for (&i, c) in chunk.iter().zip(out) {
            results[i] = cut_at_stop(&tok.decode(&c.ids)?, &opts.stop).0;
        }
        done += chunk.len();
        progress(done);
    }
    Ok(results)
}

/// Prefill for batched decoding: `prompts` left-padded with `pad_id` to the longest,
/// each sequence with its own positions and a mask hiding its padding (padding rows see
/// themselves only, so no row is fully masked). Fills `cache`; returns the logits of the
/// last position, `(batch, vocab)`.
pub(crate) fn prefill(
    model: &Llama,
    prompts: &[&[u32]],
    pad_id: u32,
    cache: &mut KvCache,
) -> Result<Tensor> {
    let dev = Device::Cpu;
    let b = prompts.len();
    let longest = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
    let mut toks = Vec::with_capacity(b * longest);
    let mut pos = Vec::with_capacity(b * longest);
    let mut mask = Vec::with_capacity(b * longest * longest);
    for p in prompts {
        let pad = longest - p.len();
        toks.extend(std::iter::repeat_n(pad_id, pad));
        toks.extend(p.iter());
        pos.extend((0..longest).map(|j| j.saturating_sub(pad) as u32));
        for i in 0..longest {
            mask.extend((0..longest).map(|j| {
                if j == i || (j <= i && j >= pad) {
                    0f32
                } else {
                    f32::NEG_INFINITY
                }
            }));
        }
    }
    model.forward_step(
        &Tensor::from_vec(toks, (b, longest), &dev).map_err(err)?,
        &Tensor::from_vec(pos, (b, longest), &dev).map_err(err)?,
        &Tensor::from_vec(mask, (b, 1, longest, longest), &dev).map_err(err)?,
        cache,
    )
}
