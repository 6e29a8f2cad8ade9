//! The llama-family network (llama, mistral, qwen2) on candle.
//!
//! Two forward passes share the weights: [`Llama::forward_train`] uses only
//! differentiable candle ops (for training the testbed zoo), and [`Llama::forward_step`]
//! uses candle's fused CPU kernels, a KV cache, left padding and per-sequence positions
//! (for batched generation).

use super::Result;
use super::config::LlamaConfig;
use candle_core::{D, DType, Device, IndexOp, Module, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};

fn err(e: candle_core::Error) -> String {
    format!("model: {e}")
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    gate: Linear,
    up: Linear,
    down: Linear,
    ln_attn: Tensor,
    ln_mlp: Tensor,
}

/// The keys and values of every layer for the sequences being decoded:
/// `(batch, kv_heads, positions, head_dim)` per layer.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// Positions cached so far (0 when empty).
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map(|(k, _)| k.dim(2).unwrap_or(0))
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps only the sequences at `rows` (in that order), e.g. after some finished.
    pub fn retain(&mut self, rows: &[u32]) -> Result<()> {
        let Some(dev) = self
            .layers
            .first()
            .and_then(|l| l.as_ref())
            .map(|(k, _)| k.device().clone())
        else {
            return Ok(());
        };
        let idx = Tensor::new(rows, &dev).map_err(err)?;
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.index_select(&idx, 0).map_err(err)?;
            *v = v.index_select(&idx, 0).map_err(err)?;
        }
        Ok(())
    }
}

pub struct Llama {
    cfg: LlamaConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    /// `(max_positions, head_dim / 2)` cosine and sine tables of the rotary embedding.
    cos: Tensor,
    sin: Tensor,
}

fn linear(vb: &VarBuilder, inp: usize, out: usize, bias: bool, name: &str) -> Result<Linear> {
    let vb = vb.pp(name);
    let init = candle_nn::init::DEFAULT_KAIMING_NORMAL;
    let w = vb.get_with_hints((out, inp), "weight", init).map_err(err)?;
    let b = if bias {
        Some(
            vb.get_with_hints(out, "bias", candle_nn::Init::Const(0.0))
                .map_err(err)?,
        )
    } else {
        None
    };
    Ok(Linear::new(w, b))
}

impl Llama {
    /// Builds the network from `vb` with Hugging Face tensor names
    /// (`model.embed_tokens.weight`, `model.layers.N.self_attn.q_proj.weight`, ...).
    /// With a `VarMap`-backed builder the weights are created (and trainable).
    pub fn new(vb: VarBuilder, cfg: &LlamaConfig) -> Result<Llama> {
        let h = cfg.hidden_size;
        let hd = cfg.head_dim;
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let m = vb.pp("model");
        let embed_w = m
            .pp("embed_tokens")
            .get_with_hints(
                (cfg.vocab_size, h),
                "weight",
                candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )
            .map_err(err)?;
        let embed = Embedding::new(embed_w.clone(), h);
        let one = candle_nn::Init::Const(1.0);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = m.pp(format!("layers.{i}"));
            let a = l.pp("self_attn");
            let p = l.pp("mlp");
            let b = cfg.attention_bias;
            layers.push(Layer {
                q: linear(&a, h, nh * hd, b, "q_proj")?,
                k: linear(&a, h, nkv * hd, b, "k_proj")?,
                v: linear(&a, h, nkv * hd, b, "v_proj")?,
                o: linear(&a, nh * hd, h, false, "o_proj")?,
                gate: linear(&p, h, cfg.intermediate_size, false, "gate_proj")?,
                up: linear(&p, h, cfg.intermediate_size, false, "up_proj")?,
                down: linear(&p, cfg.intermediate_size, h, false, "down_proj")?,
                ln_attn: l
                    .pp("input_layernorm")
                    .get_with_hints(h, "weight", one)
                    .map_err(err)?,
                ln_mlp: l
                    .pp("post_attention_layernorm")
                    .get_with_hints(h, "weight", one)
                    .map_err(err)?,
            });
        }
        let norm = m.pp("norm").get_with_hints(h, "weight", one).map_err(err)?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::new(embed_w, None)
        } else {
            linear(&vb, h, cfg.vocab_size, false, "lm_head")?
        };
        let dev = vb.device().clone();
        let (cos, sin) = rope_tables(cfg, cfg.max_position_embeddings.clamp(1, 1 << 15), &dev)?;
        Ok(Llama {
            cfg: cfg.clone(),
            embed,
            layers,
            norm,
            lm_head,
            cos,
            sin,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Logits `(batch, time, vocab)` for every position of `tokens` `(batch, time)`,
    /// causal, with differentiable ops only.
    pub fn forward_train(&self, tokens: &Tensor) -> Result<Tensor> {
        self.forward_train_inner(tokens).map_err(err)
    }

    fn forward_train_inner(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let cfg = &self.cfg;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let eps = cfg.rms_norm_eps as f32;
        if t > self.cos.dim(0)? {
            candle_core::bail!(
                "sequence of {t} tokens is longer than the {} positions",
                self.cos.dim(0)?
            );
        }
        let cos = self.cos.narrow(0, 0, t)?.reshape((1, 1, t, hd / 2))?;
        let sin = self.sin.narrow(0, 0, t)?.reshape((1, 1, t, hd / 2))?;
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        let mask = Tensor::from_vec(mask, (1, 1, t, t), tokens.device())?;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut x = self.embed.forward(tokens)?;
        for l in &self.layers {
            let h = candle_nn::ops::rms_norm_slow(&x, &l.ln_attn, eps)?;
            let q = heads(&l.q.forward(&h)?, b, t, nh, hd)?;
            let k = heads(&l.k.forward(&h)?, b, t, nkv, hd)?;
            let v = heads(&l.v.forward(&h)?, b, t, nkv, hd)?;
            let q = rope_diff(&q, &cos, &sin)?;
            let k = repeat_kv(&rope_diff(&k, &cos, &sin)?, nh / nkv)?;
            let v = repeat_kv(&v, nh / nkv)?;
            let att = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax(&att, D::Minus1)?;
            let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, t, nh * hd))?;
            x = (x + l.o.forward(&y)?)?;
            let h = candle_nn::ops::rms_norm_slow(&x, &l.ln_mlp, eps)?;
            let m = (l.gate.forward(&h)?.silu()? * l.up.forward(&h)?)?;
            x = (x + l.down.forward(&m)?)?;
        }
        let x = candle_nn::ops::rms_norm_slow(&x, &self.norm, eps)?;
        self.lm_head.forward(&x)
    }

    /// One inference step: `tokens` `(batch, time)` at `positions` `(batch, time)`
    /// (u32, each sequence's own positions), attending through `mask`
    /// `(batch, 1, time, cached + time)` (0 or -inf) to the cache and themselves.
    /// Appends to `cache` and returns the logits of the last position, `(batch, vocab)`.
    pub fn forward_step(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        self.forward_step_inner(tokens, positions, mask, cache)
            .map_err(err)
    }

    fn forward_step_inner(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        cache: &mut KvCache,
    ) -> candle_core::Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let cfg = &self.cfg;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let eps = cfg.rms_norm_eps as f32;
        let flat = positions.flatten_all()?;
        let cos = self.cos.index_select(&flat, 0)?.reshape((b, t, hd / 2))?;
        let sin = self.sin.index_select(&flat, 0)?.reshape((b, t, hd / 2))?;
        if cache.layers.len() != self.layers.len() {
            cache.layers = (0..self.layers.len()).map(|_| None).collect();
        }
        let scale = 1.0 / (hd as f64).sqrt();
        let mut x = self.embed.forward(tokens)?;
        for (l, slot) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let h = candle_nn::ops::rms_norm(&x, &l.ln_attn, eps)?;
            let q = heads(&l.q.forward(&h)?, b, t, nh, hd)?;
            let k = heads(&l.k.forward(&h)?, b, t, nkv, hd)?;
            let v = heads(&l.v.forward(&h)?, b, t, nkv, hd)?;
            let q = candle_nn::rotary_emb::rope(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope(&k, &cos, &sin)?;
            let (k, v) = match slot.take() {
                None => (k, v),
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            };
            *slot = Some((k.clone(), v.clone()));
            let k = repeat_kv(&k, nh / nkv)?;
            let v = repeat_kv(&v, nh / nkv)?;
            let att = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, t, nh * hd))?;
            x = (x + l.o.forward(&y)?)?;
            let h = candle_nn::ops::rms_norm(&x, &l.ln_mlp, eps)?;
            let m = (l.gate.forward(&h)?.silu()? * l.up.forward(&h)?)?;
            x = (x + l.down.forward(&m)?)?;
        }
        let x = x.i((.., t - 1, ..))?.contiguous()?;
        let x = candle_nn::ops::rms_norm(&x, &self.norm, eps)?;
        self.lm_head.forward(&x)
    }
}

/// `(b, t, n*hd)` to contiguous `(b, n, t, hd)`.
fn heads(x: &Tensor, b: usize, t: usize, n: usize, hd: usize) -> candle_core::Result<Tensor> {
    x.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()
}

/// Grouped-query attention: each key/value head serves `rep` query heads.
fn repeat_kv(x: &Tensor, rep: usize) -> candle_core::Result<Tensor> {
    if rep == 1 {
        return Ok(x.clone());
    }
    let (b, n, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .expand((b, n, rep, t, d))?
        .reshape((b, n * rep, t, d))
}

/// The rotary embedding (rotate-half form, as Hugging Face llama) from differentiable ops.
fn rope_diff(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let a = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let b = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
    Tensor::cat(&[&a, &b], D::Minus1)
}

fn rope_tables(cfg: &LlamaConfig, n: usize, dev: &Device) -> Result<(Tensor, Tensor)> {
    let inv = cfg.rope_inv_freq();
    let half = inv.len();
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    for p in 0..n {
        for f in &inv {
            // The angle in f32, as Hugging Face computes it.
            let a = p as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    let cos = Tensor::from_vec(cos, (n, half), dev).map_err(err)?;
    let sin = Tensor::from_vec(sin, (n, half), dev).map_err(err)?;
    Ok((cos, sin))
}

/// Mean cross-entropy of `logits` `(b, t, v)` against `targets` `(b, t)` u32 over the
/// positions where `weights` `(b, t)` f32 is non-zero (weighted), for training.
pub fn masked_cross_entropy(logits: &Tensor, targets: &Tensor, weights: &Tensor) -> Result<Tensor> {
    (|| {
        let (b, t, v) = logits.dims3()?;
        let lp = candle_nn::ops::log_softmax(&logits.reshape((b * t, v))?, D::Minus1)?;
        let picked = lp
            .gather(&targets.reshape((b * t, 1))?, 1)?
            .reshape((b * t,))?;
        let w = weights.reshape((b * t,))?.to_dtype(DType::F32)?;
        let total = w.sum_all()?;
        (picked * &w)?.sum_all()?.neg()?.broadcast_div(&total)
    })()
    .map_err(err)
}
