//! The llama-family network (llama, mistral, qwen2) on candle.
//!
//! Three forward passes share the weights: [`Llama::forward_train`] uses only
//! differentiable candle ops (for training the testbed zoo); [`Llama::forward_step`]
//! uses candle's fused CPU kernels, a KV cache, left padding and per-sequence positions
//! (prompt prefill); [`Llama::step_ragged`] (`ragged.rs`) decodes one token per
//! sequence, each with its own cache, through fixed-order kernels (`rows.rs`), so a
//! sequence's bits do not depend on its batch.

use super::Result;
use super::config::LlamaConfig;
use super::repro::by_rows;
use candle_core::{D, DType, Device, IndexOp, Module, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder, VarMap};

mod after;
mod ragged;
mod rows;

pub use ragged::OwnCache;

fn err(e: candle_core::Error) -> crate::model::ModelError {
    crate::model::ModelError::tensor("model")(e)
}

/// A projection: a frozen linear map, plus optionally a trainable low-rank (LoRA)
/// update `scale * B A x` (Hu et al. 2021), `A` `(rank, in)`, `B` `(out, rank)`.
#[derive(Clone)]
struct Proj {
    lin: Linear,
    lora: Option<(Linear, Linear, f64)>,
}

impl Proj {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.plus_lora(x, self.lin.forward(x)?)
    }

    /// [`Self::forward`] for the few rows of a decoding step: the frozen map through
    /// [`rows::rows_times`] (no graph: inference only).
    fn step(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.plus_lora(x, step_linear(&self.lin, x)?)
    }

    /// `y` (the frozen map of `x`) plus the adapter's update of `x`, if any.
    fn plus_lora(&self, x: &Tensor, y: Tensor) -> candle_core::Result<Tensor> {
        match &self.lora {
            None => Ok(y),
            Some((a, b, scale)) => y + (b.forward(&a.forward(x)?)? * *scale)?,
        }
    }
}

/// `lin` applied to `x` `(..., in)`: through [`rows::rows_times`] when both are f32 on
/// the CPU with contiguous weights, else through candle's matmul.
fn step_linear(lin: &Linear, x: &Tensor) -> candle_core::Result<Tensor> {
    use candle_core::{CpuStorage, Storage};
    let dims = x.dims().to_vec();
    let Some((&inp, lead)) = dims.split_last() else {
        return lin.forward(x);
    };
    let rows: usize = lead.iter().product();
    if inp == 0 || x.dtype() != DType::F32 || !x.device().is_cpu() {
        return lin.forward(x);
    }
    let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let y = {
        let (storage, layout) = lin.weight().storage_and_layout();
        let (Storage::Cpu(CpuStorage::F32(w)), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        else {
            drop(storage);
            return lin.forward(x);
        };
        if !(b - a).is_multiple_of(inp) {
            drop(storage);
            return lin.forward(x);
        }
        rows::rows_times(&xs, rows, &w[a..b], inp)
    };
    let mut shape = lead.to_vec();
    shape.push(y.len() / rows.max(1));
    let y = Tensor::from_vec(y, shape, x.device())?;
    match lin.bias() {
        Some(bias) => y.broadcast_add(bias),
        None => Ok(y),
    }
}

impl From<Linear> for Proj {
    fn from(lin: Linear) -> Proj {
        Proj { lin, lora: None }
    }
}

/// Where LoRA adapters go and how big they are.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraSpec {
    pub rank: usize,
    /// The update is scaled by `alpha / rank`.
    pub alpha: f64,
    /// Projection names: any of `q_proj k_proj v_proj o_proj gate_proj up_proj down_proj`.
    pub targets: Vec<String>,
}

impl LoraSpec {
    /// All attention and MLP projections (the ones `extract-lora` writes adapters for).
    pub const ALL: [&'static str; 7] = crate::runtime::lora::TARGETS;

    pub fn new(rank: usize, alpha: f64) -> LoraSpec {
        LoraSpec {
            rank,
            alpha,
            targets: Self::ALL.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// The keys and values of a prompt shared by every sequence of a batch (batch 1,
/// detached from any gradient): `(1, kv_heads, positions, head_dim)` per layer.
pub struct Prefix {
    layers: Vec<(Tensor, Tensor)>,
}

impl Prefix {
    /// Positions in the prefix.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .map(|(k, _)| k.dim(2).unwrap_or(0))
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone)]
struct Layer {
    q: Proj,
    k: Proj,
    v: Proj,
    o: Proj,
    gate: Proj,
    up: Proj,
    down: Proj,
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

#[derive(Clone)]
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
                q: linear(&a, h, nh * hd, b, "q_proj")?.into(),
                k: linear(&a, h, nkv * hd, b, "k_proj")?.into(),
                v: linear(&a, h, nkv * hd, b, "v_proj")?.into(),
                o: linear(&a, nh * hd, h, false, "o_proj")?.into(),
                gate: linear(&p, h, cfg.intermediate_size, false, "gate_proj")?.into(),
                up: linear(&p, h, cfg.intermediate_size, false, "up_proj")?.into(),
                down: linear(&p, cfg.intermediate_size, h, false, "down_proj")?.into(),
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

    /// Query heads, key/value heads and the head size.
    fn head_dims(&self) -> (usize, usize, usize) {
        let c = &self.cfg;
        (c.num_attention_heads, c.num_key_value_heads, c.head_dim)
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Adds LoRA adapters as trainable variables of `vm` (PEFT names, e.g.
    /// `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`): `A` seeded
    /// uniform in `±1/sqrt(in)`, `B` zero, so the network's output is unchanged until
    /// trained. Variables already in `vm` (e.g. loaded adapters) are kept.
    pub fn attach_lora(&mut self, spec: &LoraSpec, vm: &VarMap, seed: u64) -> Result<()> {
        if spec.rank == 0 {
            return Err("LoRA rank must be at least 1".into());
        }
        for t in &spec.targets {
            if !LoraSpec::ALL.contains(&t.as_str()) {
                return Err(crate::model::ModelError::Request(format!(
                    "LoRA target `{t}`: use any of {}",
                    LoraSpec::ALL.join(", ")
                )));
            }
        }
        let dev = self.embed.embeddings().device().clone();
        let vb = VarBuilder::from_varmap(vm, DType::F32, &dev);
        let scale = spec.alpha / spec.rank as f64;
        for (i, l) in self.layers.iter_mut().enumerate() {
            for (name, proj) in [
                ("q_proj", &mut l.q),
                ("k_proj", &mut l.k),
                ("v_proj", &mut l.v),
                ("o_proj", &mut l.o),
                ("gate_proj", &mut l.gate),
                ("up_proj", &mut l.up),
                ("down_proj", &mut l.down),
            ] {
                if !spec.targets.iter().any(|t| t == name) {
                    continue;
                }
                let group = match name {
                    "gate_proj" | "up_proj" | "down_proj" => "mlp",
                    _ => "self_attn",
                };
                let (out, inp) = proj.lin.weight().dims2().map_err(err)?;
                let key = format!("base_model.model.model.layers.{i}.{group}.{name}");
                let fresh = !vm
                    .data()
                    .lock()
                    .map_err(|_| "poisoned var map")?
                    .contains_key(&format!("{key}.lora_A.weight"));
                let pv = vb.pp(&key);
                let a = pv
                    .get_with_hints(
                        (spec.rank, inp),
                        "lora_A.weight",
                        candle_nn::Init::Const(0.0),
                    )
                    .map_err(err)?;
                let b = pv
                    .get_with_hints(
                        (out, spec.rank),
                        "lora_B.weight",
                        candle_nn::Init::Const(0.0),
                    )
                    .map_err(err)?;
                if fresh {
                    let mut h = crate::semantics::rng::SplitMix64::new(
                        seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                            ^ (name.len() as u64 * 0x1000_0001),
                    );
                    for c in name.bytes() {
                        h = crate::semantics::rng::SplitMix64::new(h.next_u64() ^ c as u64);
                    }
                    let bound = 1.0 / (inp as f64).sqrt();
                    let vals: Vec<f32> = (0..spec.rank * inp)
                        .map(|_| ((h.unit() * 2.0 - 1.0) * bound) as f32)
                        .collect();
                    let data = vm.data().lock().map_err(|_| "poisoned var map")?;
                    data[&format!("{key}.lora_A.weight")]
                        .set(&Tensor::from_vec(vals, (spec.rank, inp), &dev).map_err(err)?)
                        .map_err(err)?;
                }
                proj.lora = Some((Linear::new(a, None), Linear::new(b, None), scale));
            }
        }
        Ok(())
    }

    /// This network with every LoRA update folded into its weights (`W + scale B A`):
    /// the same function, cheaper to run, with nothing trainable.
    pub fn with_merged_lora(&self) -> Result<Llama> {
        let mut m = self.clone();
        for l in &mut m.layers {
            for proj in [
                &mut l.q,
                &mut l.k,
                &mut l.v,
                &mut l.o,
                &mut l.gate,
                &mut l.up,
                &mut l.down,
            ] {
                if let Some((a, b, scale)) = proj.lora.take() {
                    let delta =
                        (b.weight().matmul(a.weight()).map_err(err)? * scale).map_err(err)?;
                    let w = (proj.lin.weight().detach() + delta.detach()).map_err(err)?;
                    proj.lin = Linear::new(w, proj.lin.bias().cloned());
                }
            }
        }
        Ok(m)
    }

    /// Runs one prompt (no padding) and returns its keys and values, to be shared by
    /// every sequence that continues it, and the logits of its last position `(1, vocab)`.
    pub fn prefill_prefix(&self, tokens: &[u32]) -> Result<(Prefix, Tensor)> {
        let t = tokens.len();
        if t == 0 {
            return Err("model: an empty prompt".into());
        }
        let dev = self.embed.embeddings().device().clone();
        let toks = Tensor::new(tokens, &dev)
            .and_then(|x| x.unsqueeze(0))
            .map_err(err)?;
        let pos: Vec<u32> = (0..t as u32).collect();
        let pos = Tensor::new(pos.as_slice(), &dev)
            .and_then(|x| x.unsqueeze(0))
            .map_err(err)?;
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        let mask = Tensor::from_vec(mask, (1, 1, t, t), &dev).map_err(err)?;
        let mut cache = KvCache::default();
        let logits = self.forward_step(&toks, &pos, &mask, &mut cache)?;
        let layers = cache
            .layers
            .into_iter()
            .map(|l| {
                let (k, v) = l.expect("every layer cached");
                (k.detach(), v.detach())
            })
            .collect();
        Ok((Prefix { layers }, logits.detach()))
    }

    /// Logits `(batch, time, vocab)` for every position of `tokens` `(batch, time)`,
    /// causal, with differentiable ops only.
    pub fn forward_train(&self, tokens: &Tensor) -> Result<Tensor> {
        self.forward_train_inner(tokens).map_err(err)
    }

    fn forward_train_inner(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let cfg = &self.cfg;
        let (nh, nkv, hd) = self.head_dims();
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
        // Row blocks keep the weight gradients' bits machine-independent (repro.rs).
        let lin = |p: &Proj, x: &Tensor| by_rows(x, |x| p.forward(x));
        let mut x = self.embed.forward(tokens)?;
        for l in &self.layers {
            let h = candle_nn::ops::rms_norm_slow(&x, &l.ln_attn, eps)?;
            let q = heads(&lin(&l.q, &h)?, b, t, nh, hd)?;
            let k = heads(&lin(&l.k, &h)?, b, t, nkv, hd)?;
            let v = heads(&lin(&l.v, &h)?, b, t, nkv, hd)?;
            let q = rope_diff(&q, &cos, &sin)?;
            let k = repeat_kv(&rope_diff(&k, &cos, &sin)?, nh / nkv)?;
            let v = repeat_kv(&v, nh / nkv)?;
            let att = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax(&att, D::Minus1)?;
            let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, t, nh * hd))?;
            x = (x + lin(&l.o, &y)?)?;
            let h = candle_nn::ops::rms_norm_slow(&x, &l.ln_mlp, eps)?;
            let m = (lin(&l.gate, &h)?.silu()? * lin(&l.up, &h)?)?;
            x = (x + lin(&l.down, &m)?)?;
        }
        let x = candle_nn::ops::rms_norm_slow(&x, &self.norm, eps)?;
        by_rows(&x, |x| self.lm_head.forward(x))
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
        self.forward_step_inner(tokens, positions, mask, None, cache)
            .map_err(err)
    }

    /// [`Self::forward_step`] for sequences that all continue `prefix`: they attend to
    /// it (without copying it per sequence) and, through `mask`
    /// `(batch, 1, time, cached + time)`, to their own cache and themselves.
    pub fn forward_step_shared(
        &self,
        prefix: &Prefix,
        tokens: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        self.forward_step_inner(tokens, positions, mask, Some(prefix), cache)
            .map_err(err)
    }

    /// The final norm and the language-model head, differentiable.
    fn head_train(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let eps = self.cfg.rms_norm_eps as f32;
        let x = candle_nn::ops::rms_norm_slow(x, &self.norm, eps)?;
        self.lm_head.forward(&x)
    }

    fn forward_step_inner(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        prefix: Option<&Prefix>,
        cache: &mut KvCache,
    ) -> candle_core::Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let cfg = &self.cfg;
        let (nh, nkv, hd) = self.head_dims();
        let eps = cfg.rms_norm_eps as f32;
        let flat = positions.flatten_all()?;
        let cos = self.cos.index_select(&flat, 0)?.reshape((b, t, hd / 2))?;
        let sin = self.sin.index_select(&flat, 0)?.reshape((b, t, hd / 2))?;
        if cache.layers.len() != self.layers.len() {
            cache.layers = (0..self.layers.len()).map(|_| None).collect();
        }
        let scale = 1.0 / (hd as f64).sqrt();
        let mut x = self.embed.forward(tokens)?;
        for (i, (l, slot)) in self.layers.iter().zip(cache.layers.iter_mut()).enumerate() {
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
            let y = if let Some(prefix) = prefix {
                attend_after_prefix(&q, &k, &v, &prefix.layers[i], mask, scale, true)?
            } else {
                let k = repeat_kv(&k, nh / nkv)?;
                let v = repeat_kv(&v, nh / nkv)?;
                let att = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
                let att = candle_nn::ops::softmax_last_dim(&att)?;
                att.matmul(&v)?
            };
            let y = y.transpose(1, 2)?.reshape((b, t, nh * hd))?;
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

/// Attention of queries `q` `(b, nh, t, hd)` over a shared prefix's keys and values
/// `pkv` (batch 1, `(1, nkv, p, hd)`, all visible) and each sequence's own `k`, `v`
/// `(b, nkv, s, hd)` (through `mask` `(b or 1, 1, t, s)`). One softmax over both parts.
/// The prefix is never copied per sequence: each key/value head multiplies the queries
/// of every sequence and every query head it serves in one matrix product.
fn attend_after_prefix(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    pkv: &(Tensor, Tensor),
    mask: &Tensor,
    scale: f64,
    fused: bool,
) -> candle_core::Result<Tensor> {
    let (b, nh, t, hd) = q.dims4()?;
    let nkv = k.dim(1)?;
    let rep = nh / nkv;
    let (pk, pv) = pkv;
    let p = pk.dim(2)?;
    // (b, nkv, rep, t, hd) -> (nkv, b*rep*t, hd)
    let qg = q
        .reshape((b, nkv, rep, t, hd))?
        .permute((1, 0, 2, 3, 4))?
        .contiguous()?
        .reshape((nkv, b * rep * t, hd))?;
    let sp = (qg.matmul(&pk.squeeze(0)?.t()?)? * scale)?
        .reshape((nkv, b, rep, t, p))?
        .permute((1, 0, 2, 3, 4))?
        .reshape((b, nh, t, p))?;
    let so = (q.matmul(&repeat_kv(k, rep)?.t()?)? * scale)?.broadcast_add(mask)?;
    let s = Tensor::cat(&[&sp, &so], 3)?;
    let att = if fused {
        candle_nn::ops::softmax_last_dim(&s)?
    } else {
        candle_nn::ops::softmax(&s, D::Minus1)?
    };
    let own = att.dim(3)? - p;
    let ap = att
        .narrow(3, 0, p)?
        .reshape((b, nkv, rep, t, p))?
        .permute((1, 0, 2, 3, 4))?
        .contiguous()?
        .reshape((nkv, b * rep * t, p))?;
    let yp = ap
        .matmul(&pv.squeeze(0)?.contiguous()?)?
        .reshape((nkv, b, rep, t, hd))?
        .permute((1, 0, 2, 3, 4))?
        .reshape((b, nh, t, hd))?;
    let yo = att
        .narrow(3, p, own)?
        .contiguous()?
        .matmul(&repeat_kv(v, rep)?)?;
    yp + yo
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
