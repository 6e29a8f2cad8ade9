//! Training the zoo's models with candle on the CPU: seeded initialisation, batches of
//! tokenized problems with the loss on the answers, AdamW or SGD on plain `f32` buffers
//! (deterministic: the same seed gives the same bits), and saving in Hugging Face format.

use super::tokenizer;
use crate::model::ModelError;
use crate::model::config::LlamaConfig;
use crate::model::llama::{Llama, masked_cross_entropy};
use crate::semantics::rng::SplitMix64;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Training is model work: its errors are the model layer's.
type Result<T> = crate::model::Result<T>;

fn cerr(e: candle_core::Error) -> ModelError {
    ModelError::tensor("zoo training")(e)
}

/// One training run's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    pub steps: usize,
    pub batch: usize,
    /// Peak learning rate (after `warmup` linear steps), then cosine down to
    /// `lr * min_lr_frac`.
    pub lr: f64,
    pub warmup: usize,
    pub min_lr_frac: f64,
    /// `adamw` or `sgd` (with momentum `beta1`).
    pub optimizer: String,
    pub beta1: f64,
    pub beta2: f64,
    /// Decoupled weight decay, toward zero (or toward the starting weights with
    /// `decay_to_start`).
    pub weight_decay: f64,
    pub decay_to_start: bool,
    /// Gradient clipping by global norm (0: none).
    pub clip: f64,
    /// Only tensors whose name matches this regex are trained ("" or ".": all).
    pub tune: String,
    /// Loss weight of the question's tokens (the answer's weigh 1).
    pub question_loss: f32,
    /// Sparse fine-tuning: only this fraction of each tuned tensor's elements changes,
    /// those with the largest gradient magnitude summed over `mask_batches` batches
    /// before training (1: dense).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub density: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mask_batches: usize,
}

fn one() -> f64 {
    1.0
}

fn is_one(x: &f64) -> bool {
    *x == 1.0
}

fn is_zero(x: &usize) -> bool {
    *x == 0
}

/// A tokenized example: `<s>Question: ...\nAnswer:` then ` solution</s>`.
pub struct Example {
    pub tokens: Vec<u32>,
    /// Index of the first answer token (after `Answer:`).
    pub answer_start: usize,
}

/// The prompt of a problem, as the evaluator writes it (zero-shot).
pub fn prompt(question: &str) -> String {
    format!("Question: {question}\nAnswer:")
}

pub fn example(question: &str, solution: &str) -> Example {
    let mut tokens = vec![tokenizer::BOS];
    tokens.extend(tokenizer::encode_text(&prompt(question)));
    let answer_start = tokens.len();
    tokens.extend(tokenizer::encode_text(&format!(" {solution}")));
    tokens.push(tokenizer::EOS);
    Example {
        tokens,
        answer_start,
    }
}

struct Param {
    name: String,
    var: Var,
    shape: Vec<usize>,
    data: Vec<f32>,
    start: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    /// Elements that may change (sparse fine-tuning); empty: all.
    mask: Vec<bool>,
}

/// A model being trained: the network over a `VarMap`, and the optimizer's state.
pub struct Trainer {
    pub cfg: LlamaConfig,
    pub model: Llama,
    params: Vec<Param>,
    step: usize,
}

impl Trainer {
    /// A fresh model with seeded weights: embeddings and projections N(0, 0.02) (output
    /// projections scaled by 1/sqrt(2 layers)), norms 1.
    pub fn new(cfg: &LlamaConfig, seed: u64) -> Result<Trainer> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let model = Llama::new(vb, cfg)?;
        let mut vars: Vec<(String, Var)> = vm
            .data()
            .lock()
            .map_err(|_| ModelError::Format("zoo training: poisoned lock".into()))?
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut params = Vec::with_capacity(vars.len());
        for (i, (name, var)) in vars.into_iter().enumerate() {
            let shape = var.dims().to_vec();
            let n: usize = shape.iter().product();
            let mut rng =
                SplitMix64::new(seed ^ (0xA5A5_0000 + i as u64).wrapping_mul(0x9E37_79B9));
            let data: Vec<f32> = if name.ends_with("norm.weight") {
                vec![1.0; n]
            } else {
                let std = if name.contains("o_proj") || name.contains("down_proj") {
                    0.02 / (2.0 * cfg.num_hidden_layers as f32).sqrt()
                } else {
                    0.02
                };
                (0..n).map(|_| rng.normal() * std).collect()
            };
            let p = Param {
                name,
                var,
                shape,
                start: data.clone(),
                m: vec![0.0; n],
                v: vec![0.0; n],
                mask: Vec::new(),
                data,
            };
            p.var
                .set(&Tensor::from_slice(&p.data, p.shape.as_slice(), &Device::Cpu).map_err(cerr)?)
                .map_err(cerr)?;
            params.push(p);
        }
        Ok(Trainer {
            cfg: cfg.clone(),
            model,
            params,
            step: 0,
        })
    }

    /// A copy of `other`'s weights with a fresh optimizer (for fine-tuning).
    pub fn fork(other: &Trainer) -> Result<Trainer> {
        let mut t = Trainer::new(&other.cfg, 0)?;
        for (p, o) in t.params.iter_mut().zip(&other.params) {
            p.data.clone_from(&o.data);
            p.start.clone_from(&o.data);
            p.var
                .set(&Tensor::from_slice(&p.data, p.shape.as_slice(), &Device::Cpu).map_err(cerr)?)
                .map_err(cerr)?;
        }
        Ok(t)
    }

    /// A model saved by [`Trainer::save`], with a fresh optimizer.
    pub fn load(dir: &Path) -> Result<Trainer> {
        let text = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let cfg = LlamaConfig::from_hf_json(&text)?;
        let mut t = Trainer::new(&cfg, 0)?;
        let file = dir.join("model.safetensors");
        let tensors = candle_core::safetensors::load(&file, &Device::Cpu)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        for p in &mut t.params {
            let x = tensors
                .get(&p.name)
                .ok_or_else(|| format!("{}: no tensor {}", file.display(), p.name))?;
            p.data = x
                .flatten_all()
                .and_then(|x| x.to_vec1::<f32>())
                .map_err(cerr)?;
            if p.data.len() != p.m.len() {
                return Err(ModelError::Format(format!(
                    "{}: {} has the wrong shape",
                    file.display(),
                    p.name
                )));
            }
            p.start.clone_from(&p.data);
            p.var
                .set(&Tensor::from_slice(&p.data, p.shape.as_slice(), &Device::Cpu).map_err(cerr)?)
                .map_err(cerr)?;
        }
        Ok(t)
    }

    /// Weights by name, for saving and tests.
    pub fn weights(&self) -> Vec<(&str, &[usize], &[f32])> {
        self.params
            .iter()
            .map(|p| (p.name.as_str(), p.shape.as_slice(), p.data.as_slice()))
            .collect()
    }

    /// Mean loss of a batch, without training.
    pub fn loss(&self, batch: &[&Example], question_loss: f32) -> Result<f32> {
        let (inp, tgt, w) = tensors(batch, question_loss)?;
        let logits = self.model.forward_train(&inp)?;
        masked_cross_entropy(&logits, &tgt, &w)?
            .to_scalar::<f32>()
            .map_err(cerr)
    }

    /// One optimizer step on a batch; returns the loss before the step.
    pub fn step(
        &mut self,
        spec: &TrainSpec,
        tune: &regex::Regex,
        batch: &[&Example],
    ) -> Result<f32> {
        let (inp, tgt, w) = tensors(batch, spec.question_loss)?;
        let logits = self.model.forward_train(&inp)?;
        let loss = masked_cross_entropy(&logits, &tgt, &w)?;
        let grads = loss.backward().map_err(cerr)?;
        let loss = loss.to_scalar::<f32>().map_err(cerr)?;
        let mut gs: Vec<Option<Vec<f32>>> = Vec::with_capacity(self.params.len());
        let mut sq = 0f64;
        for p in &self.params {
            let g = match grads.get(p.var.as_tensor()) {
                Some(g) if tune.is_match(&p.name) => {
                    let g = g
                        .flatten_all()
                        .and_then(|g| g.to_vec1::<f32>())
                        .map_err(cerr)?;
                    sq += g.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>();
                    Some(g)
                }
                _ => None,
            };
            gs.push(g);
        }
        let norm = sq.sqrt();
        let scale = if spec.clip > 0.0 && norm > spec.clip {
            (spec.clip / norm) as f32
        } else {
            1.0
        };
        self.step += 1;
        let lr = lr_at(spec, self.step - 1) as f32;
        let t = self.step as i32;
        let (b1, b2) = (spec.beta1 as f32, spec.beta2 as f32);
        let wd = spec.weight_decay as f32;
        let adam = spec.optimizer == "adamw";
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        for (p, g) in self.params.iter_mut().zip(gs) {
            let Some(g) = g else { continue };
            let decay = !p.name.ends_with("norm.weight");
            let sparse = !p.mask.is_empty();
            for (i, &gi) in g.iter().enumerate() {
                if sparse && !p.mask[i] {
                    continue;
                }
                let gi = gi * scale;
                let upd = if adam {
                    p.m[i] = b1 * p.m[i] + (1.0 - b1) * gi;
                    p.v[i] = b2 * p.v[i] + (1.0 - b2) * gi * gi;
                    (p.m[i] / c1) / ((p.v[i] / c2).sqrt() + 1e-8)
                } else {
                    p.m[i] = b1 * p.m[i] + gi;
                    p.m[i]
                };
                let anchor = if spec.decay_to_start { p.start[i] } else { 0.0 };
                let dec = if decay {
                    wd * (p.data[i] - anchor)
                } else {
                    0.0
                };
                p.data[i] -= lr * (upd + dec);
            }
            p.var
                .set(&Tensor::from_slice(&p.data, p.shape.as_slice(), &Device::Cpu).map_err(cerr)?)
                .map_err(cerr)?;
        }
        Ok(loss)
    }

    /// Chooses the elements sparse fine-tuning may change: per tuned tensor, the
    /// `density` fraction with the largest summed gradient magnitude over `batches`.
    pub fn select_mask(
        &mut self,
        density: f64,
        tune: &regex::Regex,
        batches: &[Vec<&Example>],
        question_loss: f32,
    ) -> Result<()> {
        let mut acc: Vec<Vec<f32>> = self
            .params
            .iter()
            .map(|p| vec![0.0; p.data.len()])
            .collect();
        for b in batches {
            let (inp, tgt, w) = tensors(b, question_loss)?;
            let logits = self.model.forward_train(&inp)?;
            let loss = masked_cross_entropy(&logits, &tgt, &w)?;
            let grads = loss.backward().map_err(cerr)?;
            for (p, a) in self.params.iter().zip(acc.iter_mut()) {
                if let Some(g) = grads.get(p.var.as_tensor()) {
                    let g = g
                        .flatten_all()
                        .and_then(|g| g.to_vec1::<f32>())
                        .map_err(cerr)?;
                    for (x, y) in a.iter_mut().zip(g) {
                        *x += y.abs();
                    }
                }
            }
        }
        for (p, a) in self.params.iter_mut().zip(acc) {
            if !tune.is_match(&p.name) {
                continue;
            }
            let k = ((a.len() as f64 * density).ceil() as usize).clamp(1, a.len());
            let mut sorted = a.clone();
            sorted.sort_by(|x, y| y.total_cmp(x));
            let cut = sorted[k - 1];
            let mut left = k;
            p.mask = a
                .iter()
                .map(|&x| {
                    let keep = x > cut || (x == cut && left > 0);
                    if keep {
                        left = left.saturating_sub(1);
                    }
                    keep
                })
                .collect();
        }
        Ok(())
    }

    /// Writes `model.safetensors` (f32, names sorted), `config.json` and the tokenizer
    /// files into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let w =
            |name: &str, text: &str| crate::files::write_atomic(&dir.join(name), text.as_bytes());
        w("config.json", &self.cfg.to_hf_json())?;
        w(
            "generation_config.json",
            &tokenizer::generation_config_json(),
        )?;
        w("tokenizer.json", &tokenizer::tokenizer_json()?)?;
        w("tokenizer_config.json", &tokenizer::tokenizer_config_json())?;
        write_safetensors(&dir.join("model.safetensors"), &self.weights())
    }
}

/// The learning rate at `step` (0-based): linear warmup, then cosine to the floor.
pub fn lr_at(spec: &TrainSpec, step: usize) -> f64 {
    crate::model::train::warmup_cosine(spec.lr, spec.min_lr_frac, spec.warmup, spec.steps, step)
}

/// Inputs, next-token targets and loss weights of a batch, right-padded.
fn tensors(batch: &[&Example], question_loss: f32) -> Result<(Tensor, Tensor, Tensor)> {
    let t = batch.iter().map(|e| e.tokens.len()).max().unwrap_or(1) - 1;
    crate::model::repro::check_depth("a training example's length in tokens", t)?;
    let b = batch.len();
    let mut inp = vec![tokenizer::PAD; b * t];
    let mut tgt = vec![tokenizer::PAD; b * t];
    let mut w = vec![0f32; b * t];
    for (r, e) in batch.iter().enumerate() {
        let n = e.tokens.len() - 1;
        inp[r * t..r * t + n].copy_from_slice(&e.tokens[..n]);
        tgt[r * t..r * t + n].copy_from_slice(&e.tokens[1..]);
        for j in 0..n {
            // Position j predicts token j + 1.
            w[r * t + j] = if j + 1 >= e.answer_start {
                1.0
            } else {
                question_loss
            };
        }
    }
    let dev = &Device::Cpu;
    Ok((
        Tensor::from_vec(inp, (b, t), dev).map_err(cerr)?,
        Tensor::from_vec(tgt, (b, t), dev).map_err(cerr)?,
        Tensor::from_vec(w, (b, t), dev).map_err(cerr)?,
    ))
}

/// A safetensors file of f32 tensors, with `format: pt` metadata (as transformers writes).
pub fn write_safetensors(path: &Path, tensors: &[(&str, &[usize], &[f32])]) -> Result<()> {
    let mut sorted: Vec<_> = tensors.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut off = 0usize;
    for (name, shape, data) in &sorted {
        let n = data.len() * 4;
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [off, off + n]}),
        );
        off += n;
    }
    let mut h = serde_json::Value::Object(header).to_string().into_bytes();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + off);
    out.extend((h.len() as u64).to_le_bytes());
    out.extend(h);
    for (_, _, data) in &sorted {
        for x in *data {
            out.extend(x.to_le_bytes());
        }
    }
    Ok(crate::files::write_atomic(path, &out)?)
}
