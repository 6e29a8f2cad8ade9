//! Decoding steps of sequences of any lengths: each sequence has its own cache of keys
//! and values ([`OwnCache`]), after an optional shared prefix, and attends only to its
//! own entries.
//!
//! A batch is then any set of sequences: one that finishes leaves, a new one takes its
//! slot at once (continuous batching), and a line redone by guided decoding truncates
//! its cache instead of masking it. Every output depends only on its own sequence: the
//! linear maps are [`super::rows::rows_times`]'s fixed-order products, and attention
//! runs one (sequence, head) at a time over the prefix then the own entries, in order,
//! never over another sequence's or a masked entry. So a completion's bits do not
//! depend on the batch size, on its neighbours or on when it joined.

use super::rows::{tile, with_lanes};
use super::*;
use rayon::prelude::*;

/// One sequence's own keys and values, per layer `(len, kv_heads, head_dim)` row-major.
#[derive(Clone, Debug, Default)]
pub struct OwnCache {
    layers: Vec<(Vec<f32>, Vec<f32>)>,
    len: usize,
}

impl OwnCache {
    /// Entries cached (positions fed so far after the prefix).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps only the first `len` entries (a redone line's are dropped).
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let per = |v: &Vec<f32>| v.len() / self.len;
        for (k, v) in &mut self.layers {
            let (pk, pv) = (per(k), per(v));
            k.truncate(len * pk);
            v.truncate(len * pv);
        }
        self.len = len;
    }
}

impl KvCache {
    /// Row `row` of a batched cache `(batch, kv_heads, positions, head_dim)`, from
    /// position `from` on (after its left padding), as that sequence's own cache.
    pub fn own(&self, row: usize, from: usize) -> Result<OwnCache> {
        let mut layers = Vec::with_capacity(self.layers.len());
        let mut len = 0;
        for l in &self.layers {
            let Some((k, v)) = l else {
                return Err("model: a cache layer was never filled".into());
            };
            let take = |t: &Tensor| -> candle_core::Result<Vec<f32>> {
                let n = t.dim(2)?;
                t.i(row)?
                    .narrow(1, from, n - from)?
                    .transpose(0, 1)?
                    .contiguous()?
                    .flatten_all()?
                    .to_vec1()
            };
            len = k.dim(2).map_err(err)? - from;
            layers.push((take(k).map_err(err)?, take(v).map_err(err)?));
        }
        Ok(OwnCache { layers, len })
    }
}

impl Llama {
    /// One decoding step: sequence `r` feeds `tokens[r]` at `positions[r]`, attending to
    /// `prefix` (if any), then to its own `caches[r]`, which the new entry is appended
    /// to. Returns the logits `(batch, vocab)`.
    pub fn step_ragged(
        &self,
        prefix: Option<&Prefix>,
        tokens: &[u32],
        positions: &[usize],
        caches: &mut [&mut OwnCache],
    ) -> Result<Tensor> {
        self.step_ragged_inner(prefix, tokens, positions, caches)
            .map_err(err)
    }

    fn step_ragged_inner(
        &self,
        prefix: Option<&Prefix>,
        tokens: &[u32],
        positions: &[usize],
        caches: &mut [&mut OwnCache],
    ) -> candle_core::Result<Tensor> {
        let b = tokens.len();
        if positions.len() != b || caches.len() != b {
            candle_core::bail!(
                "step_ragged: {b} tokens, {} positions and {} caches",
                positions.len(),
                caches.len()
            );
        }
        let cfg = &self.cfg;
        let (nh, nkv, hd) = self.head_dims();
        let eps = cfg.rms_norm_eps as f32;
        let dev = self.embed.embeddings().device().clone();
        let pos: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
        let pos = Tensor::new(pos.as_slice(), &dev)?;
        let cos = self.cos.index_select(&pos, 0)?.reshape((b, 1, hd / 2))?;
        let sin = self.sin.index_select(&pos, 0)?.reshape((b, 1, hd / 2))?;
        for c in caches.iter_mut() {
            if c.layers.len() != self.layers.len() {
                c.layers = vec![(vec![], vec![]); self.layers.len()];
            }
        }
        let shape = Shape { nh, nkv, hd };
        let mut x = self
            .embed
            .forward(&Tensor::new(tokens, &dev)?.reshape((b, 1))?)?;
        for (i, l) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &l.ln_attn, eps)?;
            let q = heads(&l.q.step(&h)?, b, 1, nh, hd)?;
            let k = heads(&l.k.step(&h)?, b, 1, nkv, hd)?;
            let v = heads(&l.v.step(&h)?, b, 1, nkv, hd)?;
            let q: Vec<f32> = candle_nn::rotary_emb::rope(&q, &cos, &sin)?
                .flatten_all()?
                .to_vec1()?;
            let k: Vec<f32> = candle_nn::rotary_emb::rope(&k, &cos, &sin)?
                .flatten_all()?
                .to_vec1()?;
            let v: Vec<f32> = v.flatten_all()?.to_vec1()?;
            let w = nkv * hd;
            for (r, c) in caches.iter_mut().enumerate() {
                c.layers[i].0.extend_from_slice(&k[r * w..(r + 1) * w]);
                c.layers[i].1.extend_from_slice(&v[r * w..(r + 1) * w]);
            }
            let own: Vec<(&[f32], &[f32])> = caches
                .iter()
                .map(|c| (c.layers[i].0.as_slice(), c.layers[i].1.as_slice()))
                .collect();
            let y = match prefix {
                Some(p) => with_f32(&p.layers[i].0, |pk| {
                    with_f32(&p.layers[i].1, |pv| {
                        Ok(attend(shape, &q, Some((pk, pv)), &own))
                    })
                })?,
                None => attend(shape, &q, None, &own),
            };
            let y = Tensor::from_vec(y, (b, 1, nh * hd), &dev)?;
            x = (x + l.o.step(&y)?)?;
            let h = candle_nn::ops::rms_norm(&x, &l.ln_mlp, eps)?;
            let m = (l.gate.step(&h)?.silu()? * l.up.step(&h)?)?;
            x = (x + l.down.step(&m)?)?;
        }
        for c in caches.iter_mut() {
            c.len += 1;
        }
        let x = x.reshape((b, cfg.hidden_size))?;
        let x = candle_nn::ops::rms_norm(&x, &self.norm, eps)?;
        step_linear(&self.lm_head, &x)
    }
}

/// `f` on the f32 values of contiguous `t` in place (a copy otherwise).
fn with_f32<T>(
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<T>,
) -> candle_core::Result<T> {
    use candle_core::{CpuStorage, Storage};
    {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            return f(&v[a..b]);
        }
    }
    f(&t.flatten_all()?.to_vec1::<f32>()?)
}

/// Heads of the attention.
#[derive(Clone, Copy)]
struct Shape {
    nh: usize,
    nkv: usize,
    hd: usize,
}

/// Attention of one step: `q` `(batch, heads, head_dim)`; the prefix's keys and
/// values `(kv_heads, p, head_dim)`, all visible; each row's own keys and values
/// `(len, kv_heads, head_dim)`. Returns `(batch, heads * head_dim)`. Each (row, head)
/// is computed alone: scores in order (prefix, then own entries), their maximum, the
/// exponentials summed in order, and the values weighted in that order.
fn attend(
    s: Shape,
    q: &[f32],
    prefix: Option<(&[f32], &[f32])>,
    own: &[(&[f32], &[f32])],
) -> Vec<f32> {
    let Shape { nh, nkv, hd } = s;
    let mut y = vec![0f32; own.len() * nh * hd];
    y.par_chunks_mut(hd).enumerate().for_each(|(rh, out)| {
        let (r, h) = (rh / nh, rh % nh);
        with_lanes(Head {
            s,
            q: &q[rh * hd..(rh + 1) * hd],
            g: h / (nh / nkv),
            prefix,
            own: own[r],
            out,
        });
    });
    y
}

/// One (row, head) of [`attend`], compiled for AVX2 where the CPU has it ([`with_lanes`]).
struct Head<'a> {
    s: Shape,
    q: &'a [f32],
    /// The key/value head this query head reads.
    g: usize,
    prefix: Option<(&'a [f32], &'a [f32])>,
    own: (&'a [f32], &'a [f32]),
    out: &'a mut [f32],
}

impl pulp::WithSimd for Head<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Head {
            s,
            q,
            g,
            prefix,
            own,
            out,
        } = self;
        let (nkv, hd) = (s.nkv, s.hd);
        let scale = 1.0 / (hd as f32).sqrt();
        let p = prefix.map_or(0, |(pk, _)| pk.len() / (nkv * hd));
        let len = own.0.len() / (nkv * hd);
        let pkey = |j: usize| {
            let pk = prefix.expect("a prefix").0;
            &pk[(g * p + j) * hd..][..hd]
        };
        let pval = |j: usize| {
            let pv = prefix.expect("a prefix").1;
            &pv[(g * p + j) * hd..][..hd]
        };
        let okey = |j: usize| &own.0[(j * nkv + g) * hd..][..hd];
        let oval = |j: usize| &own.1[(j * nkv + g) * hd..][..hd];
        let mut scores = Vec::with_capacity(p + len);
        for j in 0..p {
            scores.push(tile(simd, [q], [pkey(j)])[0][0] * scale);
        }
        for j in 0..len {
            scores.push(tile(simd, [q], [okey(j)])[0][0] * scale);
        }
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        out.fill(0.0);
        for (j, sc) in scores.iter().enumerate() {
            let e = (sc - max).exp();
            sum += e;
            let v = if j < p { pval(j) } else { oval(j - p) };
            for (o, vd) in out.iter_mut().zip(v) {
                *o = e.mul_add(*vd, *o);
            }
        }
        for o in out.iter_mut() {
            *o /= sum;
        }
    }
}
