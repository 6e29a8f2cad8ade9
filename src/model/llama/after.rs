//! Training on sequences that continue a shared prompt (the prompt's keys and values
//! computed once, [`Prefix`]): the differentiable forward, the same logits without a
//! graph, and gradients with each layer recomputed in the backward pass.

use super::*;

impl Llama {
    /// Logits `(batch, time, vocab)` for sequences `tokens` `(batch, time)` that continue
    /// `prefix` (positions from `prefix.len()` on; right padding is harmless, since each
    /// position sees only earlier ones), with differentiable ops: for training adapters
    /// on completions of one shared prompt. The prefix is a constant: gradients reach
    /// the weights through the sequences' own positions only.
    pub fn forward_train_after(&self, prefix: &Prefix, tokens: &Tensor) -> Result<Tensor> {
        self.forward_after_inner(prefix, tokens, false).map_err(err)
    }

    /// [`Self::forward_train_after`]'s logits, the same bits, with no gradient: each
    /// layer's output is detached, so only one layer's intermediates are alive at a time
    /// (with trainable adapters, the whole graph would be kept until the logits drop).
    pub fn forward_after(&self, prefix: &Prefix, tokens: &Tensor) -> Result<Tensor> {
        self.forward_after_inner(prefix, tokens, true).map_err(err)
    }

    fn forward_after_inner(
        &self,
        prefix: &Prefix,
        tokens: &Tensor,
        detached: bool,
    ) -> candle_core::Result<Tensor> {
        let ctx = self.after_context(prefix, tokens)?;
        let mut x = self.embed.forward(tokens)?;
        for (l, pkv) in self.layers.iter().zip(&prefix.layers) {
            x = self.layer_after(l, pkv, &x, &ctx)?;
            if detached {
                x = x.detach();
            }
        }
        let logits = self.head_train(&x)?;
        Ok(if detached { logits.detach() } else { logits })
    }

    /// Gradients with respect to `vars` of the scalar `objective` returns for the logits
    /// [`Self::forward_train_after`] gives, with each layer recomputed during the backward
    /// pass (activation checkpointing): the forward keeps only the layers' inputs
    /// `(batch, time, hidden)`, and the backward holds one layer's graph at a time, so
    /// memory no longer grows with the depth times the attention's
    /// `(batch, heads, time, prefix + time)` intermediates. The objective's second value
    /// is passed through (detach any tensors in it: they would keep the head's graph).
    /// Gradients equal plain backpropagation's up to float rounding (the sums over layers
    /// happen in another order).
    pub fn grads_after<R>(
        &self,
        prefix: &Prefix,
        tokens: &Tensor,
        vars: &[candle_core::Var],
        objective: impl FnOnce(&Tensor) -> Result<(Tensor, R)>,
    ) -> Result<(candle_core::backprop::GradStore, R)> {
        use candle_core::Var;
        use candle_core::backprop::GradStore;
        let ctx = self.after_context(prefix, tokens).map_err(err)?;
        // Forward: the layers' inputs, detached (each layer's graph is dropped at once).
        let mut xs = vec![self.embed.forward(tokens).map_err(err)?.detach()];
        for (l, pkv) in self.layers.iter().zip(&prefix.layers) {
            let x = self
                .layer_after(l, pkv, &xs[xs.len() - 1], &ctx)
                .map_err(err)?;
            xs.push(x.detach());
        }
        let mut total = GradStore::default();
        let mut keep = |g: &mut GradStore| -> Result<()> {
            for v in vars {
                if let Some(gv) = g.remove(v) {
                    let gv = match total.remove(v) {
                        Some(t) => (t + gv).map_err(err)?,
                        None => gv,
                    };
                    total.insert(v, gv);
                }
            }
            Ok(())
        };
        // The head and the objective, from the last layer's output as a variable.
        let top = Var::from_tensor(&xs[xs.len() - 1]).map_err(err)?;
        let (obj, extra) = objective(&self.head_train(top.as_tensor()).map_err(err)?)?;
        let mut g = obj.backward().map_err(err)?;
        drop(obj);
        keep(&mut g)?;
        let mut upstream = g.remove(top.as_tensor());
        drop(g);
        // Each layer again, last first: the gradient of `sum(y * dy)` with respect to the
        // layer's input and weights is the backward pass of `y` given `dy`.
        for (i, (l, pkv)) in self.layers.iter().zip(&prefix.layers).enumerate().rev() {
            let Some(dy) = upstream.take() else { break };
            let x = Var::from_tensor(&xs[i]).map_err(err)?;
            let y = self.layer_after(l, pkv, x.as_tensor(), &ctx).map_err(err)?;
            let s = (y * dy).and_then(|t| t.sum_all()).map_err(err)?;
            let mut g = s.backward().map_err(err)?;
            keep(&mut g)?;
            upstream = g.remove(x.as_tensor());
        }
        // The embedding, should it be trained.
        let embedding = self.embed.embeddings().id();
        if let Some(dy) = upstream.filter(|_| vars.iter().any(|v| v.as_tensor().id() == embedding))
        {
            let s = (self.embed.forward(tokens).map_err(err)? * dy)
                .and_then(|t| t.sum_all())
                .map_err(err)?;
            keep(&mut s.backward().map_err(err)?)?;
        }
        Ok((total, extra))
    }

    /// Rotary tables, causal mask and sizes for sequences `tokens` that continue `prefix`.
    fn after_context(&self, prefix: &Prefix, tokens: &Tensor) -> candle_core::Result<AfterContext> {
        let (b, t) = tokens.dims2()?;
        let hd = self.cfg.head_dim;
        let p = prefix.len();
        if p + t > self.cos.dim(0)? {
            candle_core::bail!(
                "{} positions are more than the model's {}",
                p + t,
                self.cos.dim(0)?
            );
        }
        let cos = self.cos.narrow(0, p, t)?.reshape((1, 1, t, hd / 2))?;
        let sin = self.sin.narrow(0, p, t)?.reshape((1, 1, t, hd / 2))?;
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        let mask = Tensor::from_vec(mask, (1, 1, t, t), tokens.device())?;
        Ok(AfterContext {
            b,
            t,
            cos,
            sin,
            mask,
        })
    }

    /// One decoder layer, differentiable, for sequences that continue a prefix whose
    /// keys and values for this layer are `pkv`.
    fn layer_after(
        &self,
        l: &Layer,
        pkv: &(Tensor, Tensor),
        x: &Tensor,
        c: &AfterContext,
    ) -> candle_core::Result<Tensor> {
        let cfg = &self.cfg;
        let (nh, nkv, hd) = self.head_dims();
        let (b, t) = (c.b, c.t);
        let eps = cfg.rms_norm_eps as f32;
        let scale = 1.0 / (hd as f64).sqrt();
        let h = candle_nn::ops::rms_norm_slow(x, &l.ln_attn, eps)?;
        let q = heads(&l.q.forward(&h)?, b, t, nh, hd)?;
        let k = heads(&l.k.forward(&h)?, b, t, nkv, hd)?;
        let v = heads(&l.v.forward(&h)?, b, t, nkv, hd)?;
        let q = rope_diff(&q, &c.cos, &c.sin)?;
        let k = rope_diff(&k, &c.cos, &c.sin)?;
        let y = attend_after_prefix(&q, &k, &v, pkv, &c.mask, scale, false)?;
        let y = y.transpose(1, 2)?.reshape((b, t, nh * hd))?;
        let x = (x + l.o.forward(&y)?)?;
        let h = candle_nn::ops::rms_norm_slow(&x, &l.ln_mlp, eps)?;
        let m = (l.gate.forward(&h)?.silu()? * l.up.forward(&h)?)?;
        x + l.down.forward(&m)?
    }
}

/// What every layer of [`Llama::forward_train_after`] shares.
struct AfterContext {
    b: usize,
    t: usize,
    cos: Tensor,
    sin: Tensor,
    mask: Tensor,
}
