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

mod guided;

pub use super::guide::{Fit, Guide};
use super::llama::{KvCache, Llama, OwnCache, Prefix};
use super::mask::{GrammarMask, MaskState};
use super::tokenizer::Tok;
use super::{Result, generate::cut_at_stop};
use crate::semantics::rng::SplitMix64;
use guided::{Pick, guided_pick, push_guided};
use rayon::prelude::*;

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
    pick_from(&nucleus(logits, temperature, top_p), u)
}

/// The token whose share of the candidates' mass covers `u * mass` (walking in order).
pub(super) fn pick_from(kept: &[(u32, f64)], u: f64) -> u32 {
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

/// The candidates [`pick_token`] chooses among, most probable first (ties by id), with
/// unnormalised probabilities: after `temperature`, the smallest set whose mass reaches
/// `top_p`. Greedy (`temperature <= 0`) or degenerate logits give the first largest
/// logit alone.
pub fn nucleus(logits: &[f32], temperature: f64, top_p: f64) -> Vec<(u32, f64)> {
    let argmax = || {
        let mut best = 0;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] || logits[best].is_nan() {
                best = i;
            }
        }
        vec![(best as u32, 1.0)]
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
    if top_p >= 1.0 {
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        return probs;
    }
    let want = top_p.max(0.0) * total;
    // Most probable first, ties by id (a stable sort on ids already in order). Large
    // vocabularies: sort only the tokens above a tiny share of the largest first; when
    // they already reach the mass, the sorted head is the same as a full sort's.
    let cut = |probs: &[(u32, f64)]| {
        let mut acc = 0.0;
        let mut k = 0;
        while k < probs.len() {
            acc += probs[k].1;
            k += 1;
            if acc >= want {
                return Some(k.max(1));
            }
        }
        None
    };
    if probs.len() > 4096 {
        let mut head: Vec<(u32, f64)> = probs.iter().copied().filter(|p| p.1 >= 1e-9).collect();
        head.sort_by(|a, b| b.1.total_cmp(&a.1));
        if let Some(k) = cut(&head) {
            head.truncate(k);
            return head;
        }
    }
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    let keep = cut(&probs).unwrap_or(probs.len()).max(1);
    probs.truncate(keep);
    probs
}

fn err(e: candle_core::Error) -> super::ModelError {
    super::ModelError::tensor("sample")(e)
}

struct Seq {
    idx: usize,
    pos: usize,
    out: Vec<u32>,
    rng: SplitMix64,
    /// The completion's text so far (guided decoding only).
    text: String,
    /// The sequence's own keys and values; entry `own_from + j` holds token `j` (fed
    /// after it was picked).
    cache: OwnCache,
    own_from: usize,
    /// Guided decoding: the text's length after each token, and backtracks left.
    ends: Vec<usize>,
    backtracks: usize,
    /// Where the last dropped line started, and how many times in a row it was.
    dropped: InARow,
    /// Samplings again from where a line went wrong left, and the last place and how
    /// many times in a row from there.
    regroups: usize,
    regrouped: InARow,
    /// Guided decoding: the first token each redo from an error dropped, by the text
    /// length it followed; not drawn there again (see [`guided`]'s `regroup`).
    banned: Vec<(usize, u32)>,
    /// Guided decoding: the picks made from logits so far (forward passes, and redos
    /// that picked from a kept row).
    steps: usize,
    /// Guided decoding: the logits rows of the current line's places, by how many
    /// tokens they followed (at most the guide's `rows`, from `line_first` on): a redo to
    /// one of those places picks from its row, without a forward pass to feed a token
    /// again.
    rows: Vec<(usize, Vec<f32>)>,
    line_first: usize,
    /// Guided decoding: times tokens were dropped (a row from before a drop may not
    /// follow the tokens there now).
    drops: usize,
    /// Guided decoding: the tokens kept if the current line were cut at its last
    /// place where it could have ended (0: none in this line).
    end_at: usize,
    /// Guided decoding: finishing under the guide's closing fit.
    closing: bool,
    /// Guided decoding with a mask: the completion's place in the grammar.
    grammar: Option<MaskState>,
}

/// The last place something happened at (`usize::MAX`: none yet), and how many times
/// in a row it was there.
struct InARow {
    at: usize,
    times: usize,
}

impl Default for InARow {
    fn default() -> Self {
        InARow {
            at: usize::MAX,
            times: 0,
        }
    }
}

impl InARow {
    /// Counts a time at `at`: how many times in a row it is now.
    fn count(&mut self, at: usize) -> usize {
        self.times = if self.at == at { self.times + 1 } else { 1 };
        self.at = at;
        self.times
    }
}

impl Seq {
    /// Guided decoding: keeps only the first `keep` tokens (at least one) and the text
    /// they make.
    fn keep_only(&mut self, keep: usize) {
        self.pos -= self.out.len() - keep;
        self.out.truncate(keep);
        self.ends.truncate(keep);
        self.text.truncate(self.ends[keep - 1]);
        self.end_at = 0;
        let len = self.text.len();
        self.banned.retain(|&(at, _)| at <= len);
        self.rows.retain(|r| r.0 <= keep);
        self.line_first = self.line_first.min(keep);
        self.drops += 1;
    }

    /// Guided decoding: keeps `row`, the logits that followed the first `after`
    /// tokens, if that place is still in the current line and fewer than `max` are
    /// kept (else it goes).
    fn keep_row(&mut self, after: usize, row: Vec<f32>, max: usize) {
        let here = self.line_first <= after && after <= self.out.len();
        if here && self.rows.len() < max && self.rows.last().is_none_or(|r| r.0 < after) {
            self.rows.push((after, row));
        }
    }

    /// Guided decoding: whether the row after the first `after` tokens is kept.
    fn has_row(&self, after: usize) -> bool {
        self.rows.iter().any(|r| r.0 == after)
    }

    /// Guided decoding: the kept row after all the tokens so far, taken out.
    fn take_row(&mut self) -> Option<Vec<f32>> {
        if self.rows.last()?.0 != self.out.len() {
            return None;
        }
        self.rows.pop().map(|r| r.1)
    }

    /// Guided decoding: a new line starts after the tokens so far; the rows before it go.
    fn new_line(&mut self) {
        self.line_first = self.out.len();
        let first = self.line_first;
        self.rows.retain(|r| r.0 >= first);
    }

    /// The completion as it stands, ended before it finished.
    fn unfinished(self) -> Next {
        Next::Done(
            self.idx,
            Completion {
                ids: self.out,
                finished: false,
            },
        )
    }

    /// Completion `idx` (random stream `(opts.seed, idx)`) at position `pos`, after its
    /// own `cache` (its prompt, or nothing after a shared prefix).
    fn new(
        idx: usize,
        pos: usize,
        cache: OwnCache,
        opts: &SampleOptions,
        guide: Option<&Guide>,
    ) -> Seq {
        Seq {
            idx,
            pos,
            out: vec![],
            rng: stream(opts.seed, idx),
            text: String::new(),
            ends: vec![],
            own_from: cache.len(),
            cache,
            backtracks: guide.map_or(0, |g| g.backtracks),
            dropped: InARow::default(),
            regroups: guide.map_or(0, |g| g.regroups),
            regrouped: InARow::default(),
            banned: Vec::new(),
            end_at: 0,
            steps: 0,
            rows: Vec::new(),
            line_first: 0,
            drops: 0,
            closing: false,
            grammar: guide.and_then(|g| g.mask).map(GrammarMask::start),
        }
    }
}

/// Samples one completion per prompt (token ids, each non-empty), in order.
///
/// Completions end at a token in `eos`, when `stop` says so (it sees the new tokens so
/// far; the tokens stay in the result), or after `opts.max_new_tokens` tokens. `pad_id`
/// fills the left padding of shorter prompts (it is masked out). For `n` samples of one
/// prompt, pass the prompt `n` times (completion `i` uses stream `(opts.seed, i)`), or
/// better use [`sample_shared`]. With a `guide`, only fitting tokens are emitted.
pub fn sample(
    model: &Llama,
    prompts: &[Vec<u32>],
    eos: &[u32],
    pad_id: u32,
    opts: &SampleOptions,
    stop: &(dyn Fn(&[u32]) -> bool + Sync),
    guide: Option<&Guide>,
) -> Result<Vec<Completion>> {
    let max_pos = model.config().max_position_embeddings.clamp(1, 1 << 15);
    for (i, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            return Err(crate::model::ModelError::Request(format!(
                "prompt {i} has no tokens"
            )));
        }
        if p.len() + opts.max_new_tokens > max_pos {
            return Err(crate::model::ModelError::Request(format!(
                "prompt {i} has {} tokens; with {} new tokens it exceeds the model's {max_pos} positions",
                p.len(),
                opts.max_new_tokens
            )));
        }
    }
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(prompts[i].len()));
    let mut results: Vec<Option<Completion>> = vec![None; prompts.len()];
    for chunk in order.chunks(opts.batch_size.max(1)) {
        if opts.max_new_tokens == 0 {
            for &i in chunk {
                results[i] = Some(Completion {
                    ids: vec![],
                    finished: false,
                });
            }
            continue;
        }
        let longest = chunk.iter().map(|&i| prompts[i].len()).max().unwrap_or(0);
        let mut cache = KvCache::default();
        let batch: Vec<&[u32]> = chunk.iter().map(|&i| prompts[i].as_slice()).collect();
        let first = super::generate::prefill(model, &batch, pad_id, &mut cache)?;
        let rows: Vec<Vec<f32>> = first.to_vec2().map_err(err)?;
        let mut work = Vec::with_capacity(chunk.len());
        for ((r, &i), l) in chunk.iter().enumerate().zip(rows) {
            let own = cache.own(r, longest - prompts[i].len())?;
            work.push((Seq::new(i, prompts[i].len(), own, opts, guide), l));
        }
        drop(cache);
        let at = Decoding {
            model,
            prefix: None,
            slots: chunk.len(),
            eos,
            opts,
            stop,
            guide,
        };
        for (idx, c) in decode(&at, work, &mut || None)? {
            results[idx] = Some(c);
        }
    }
    Ok(results
        .into_iter()
        .map(|c| c.expect("every prompt decoded"))
        .collect())
}

/// `n` completions of one prompt, completion `i` from stream `(opts.seed, i)`: the
/// prompt is run once and its keys and values are shared by every sequence (never
/// copied per sequence), in batches of `opts.batch_size`. Otherwise as [`sample`].
pub fn sample_shared(
    model: &Llama,
    prompt: &[u32],
    n: usize,
    eos: &[u32],
    opts: &SampleOptions,
    stop: &(dyn Fn(&[u32]) -> bool + Sync),
    guide: Option<&Guide>,
) -> Result<Vec<Completion>> {
    let max_pos = model.config().max_position_embeddings.clamp(1, 1 << 15);
    if prompt.is_empty() {
        return Err("the prompt has no tokens".into());
    }
    if prompt.len() + opts.max_new_tokens > max_pos {
        return Err(crate::model::ModelError::Request(format!(
            "the prompt has {} tokens; with {} new tokens it exceeds the model's {max_pos} positions",
            prompt.len(),
            opts.max_new_tokens
        )));
    }
    if n == 0 {
        return Ok(vec![]);
    }
    if opts.max_new_tokens == 0 {
        return Ok(vec![
            Completion {
                ids: vec![],
                finished: false
            };
            n
        ]);
    }
    let (prefix, last) = model.prefill_prefix(prompt)?;
    let last: Vec<f32> = last.flatten_all().and_then(|t| t.to_vec1()).map_err(err)?;
    // Every completion starts from the prompt's last logits and takes the first free
    // slot: at most `batch_size` decode at once, a finished one's slot is refilled at
    // once (continuous batching).
    let mut next = 0..n;
    let mut fresh = || {
        next.next().map(|i| {
            let s = Seq::new(i, prompt.len(), OwnCache::default(), opts, guide);
            (s, last.clone())
        })
    };
    let at = Decoding {
        model,
        prefix: Some(&prefix),
        slots: opts.batch_size.max(1),
        eos,
        opts,
        stop,
        guide,
    };
    let mut done = decode(&at, vec![], &mut fresh)?;
    done.sort_by_key(|d| d.0);
    Ok(done.into_iter().map(|d| d.1).collect())
}

/// One decoding step of `seqs` (after `prefix`, if any): each feeds its last token.
/// Returns the next logits `(batch, vocab)`.
fn step(model: &Llama, prefix: Option<&Prefix>, seqs: &mut [Seq]) -> Result<candle_core::Tensor> {
    let toks: Vec<u32> = seqs
        .iter()
        .map(|s| *s.out.last().expect("a token"))
        .collect();
    let pos: Vec<usize> = seqs.iter().map(|s| s.pos - 1).collect();
    let mut caches: Vec<&mut OwnCache> = seqs.iter_mut().map(|s| &mut s.cache).collect();
    model.step_ragged(prefix, &toks, &pos, &mut caches)
}

/// What [`decode`] runs: the model (after `prefix`, if any), at most `slots` sequences
/// at once, and how tokens are picked and completions end.
struct Decoding<'a> {
    model: &'a Llama,
    prefix: Option<&'a Prefix>,
    slots: usize,
    eos: &'a [u32],
    opts: &'a SampleOptions,
    stop: &'a (dyn Fn(&[u32]) -> bool + Sync),
    guide: Option<&'a Guide<'a>>,
}

/// What one logits row does to a sequence.
// A completion's state moves through here once per pick; boxing it would allocate
// once per pick instead.
#[allow(clippy::large_enum_variant)]
enum Next {
    Live(Seq),
    Done(usize, Completion),
}

/// The one decoding loop: picks each live sequence's next token from its logits row,
/// lets finished sequences go, fills free slots (at most `at.slots` live) with sequences
/// from `fresh` (each with its first logits row), and steps the live ones. Every
/// sequence has its own cache and random stream, so its tokens do not depend on its
/// neighbours or on when it joined.
fn decode(
    at: &Decoding,
    mut work: Vec<(Seq, Vec<f32>)>,
    fresh: &mut dyn FnMut() -> Option<(Seq, Vec<f32>)>,
) -> Result<Vec<(usize, Completion)>> {
    let mut finished = Vec::new();
    loop {
        let mut live = Vec::with_capacity(at.slots);
        let mut take = |next: Next, live: &mut Vec<Seq>| match next {
            Next::Live(s) => live.push(s),
            Next::Done(i, c) => finished.push((i, c)),
        };
        // Each sequence's pick (guided: its checks and mask) on its own: in parallel.
        let picked: Vec<Next> = std::mem::take(&mut work)
            .into_par_iter()
            .map(|(s, l)| advance(s, l, at))
            .collect();
        for next in picked {
            take(next, &mut live);
        }
        while live.len() < at.slots {
            match fresh() {
                Some((s, l)) => take(advance(s, l, at), &mut live),
                None => break,
            }
        }
        if live.is_empty() {
            break;
        }
        let rows: Vec<Vec<f32>> = step(at.model, at.prefix, &mut live)?
            .to_vec2()
            .map_err(err)?;
        work = live.into_iter().zip(rows).collect();
    }
    Ok(finished)
}

/// Sequence `s` given its logits row `l`: its next token picked (or, guided, its line
/// cut or redone), and whether it is now done.
fn advance(mut s: Seq, l: Vec<f32>, at: &Decoding) -> Next {
    let (eos, opts, stop, guide) = (at.eos, at.opts, at.stop, at.guide);
    let (t, whole) = match guide {
        None => (
            pick_token(&l, opts.temperature, opts.top_p, s.rng.unit()),
            false,
        ),
        Some(g) => {
            let (mut row, mut fresh) = (l, true);
            loop {
                let (after, drops) = (s.out.len(), s.drops);
                let pick = guided_pick(&mut s, g, &row, eos, opts, fresh);
                if s.drops == drops {
                    s.keep_row(after, row, g.rows);
                }
                match pick {
                    Pick::Token(t, whole) => break (t, whole),
                    Pick::Again => match s.take_row() {
                        // Redone to a place whose logits are kept: pick again from them.
                        Some(r) => (row, fresh) = (r, false),
                        None => return Next::Live(s),
                    },
                    Pick::Unfinished => return s.unfinished(),
                }
            }
        }
    };
    let end = eos.contains(&t);
    if !end {
        if let Some(g) = s.grammar.as_mut()
            && !g.consume(t)
        {
            // Cannot happen for a token the mask allowed; end unfinished.
            return s.unfinished();
        }
        match guide {
            Some(g) => push_guided(&mut s, g, t),
            None => {
                s.out.push(t);
                s.pos += 1;
            }
        }
    }
    let stopped = !end && (whole || stop(&s.out));
    if end || stopped || s.out.len() >= opts.max_new_tokens {
        Next::Done(
            s.idx,
            Completion {
                ids: s.out,
                finished: end || stopped,
            },
        )
    } else {
        Next::Live(s)
    }
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
    let out = sample(model, &encoded, &tok.eos, pad, opts, &stop_fn, None)?;
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
