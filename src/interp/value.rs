//! Runtime values of the reference interpreter, and tensor facts.

use crate::diag::{Diagnostic, Span};
use std::fmt;
use std::sync::Arc;

/// A dense row-major f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor { shape, data }
    }
    pub fn numel(&self) -> usize {
        self.data.len()
    }
    pub fn full(shape: &[usize], v: f32) -> Self {
        Tensor::new(shape.to_vec(), vec![v; shape.iter().product()])
    }
}

#[derive(Clone, Debug)]
pub enum Value {
    Int(i64),
    F32(f32),
    Bool(bool),
    Str(Arc<str>),
    Tensor(Arc<Tensor>),
    /// 0.0/1.0 per element.
    Mask(Arc<Tensor>),
    List(Arc<Vec<Value>>),
}

impl Value {
    pub fn tensor(t: Tensor) -> Value {
        Value::Tensor(Arc::new(t))
    }
    pub fn mask(t: Tensor) -> Value {
        Value::Mask(Arc::new(t))
    }
    pub fn list(v: Vec<Value>) -> Value {
        Value::List(Arc::new(v))
    }
    /// The tensor behind a Tensor or Mask.
    pub fn as_tensor(&self) -> Option<&Arc<Tensor>> {
        match self {
            Value::Tensor(t) | Value::Mask(t) => Some(t),
            _ => None,
        }
    }
    /// A scalar as f32 (bools as 0/1).
    pub fn as_f32(&self) -> Option<f32> {
        match self {
            Value::Int(i) => Some(*i as f32),
            Value::F32(x) => Some(*x),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::F32(_) => "f32",
            Value::Bool(_) => "bool",
            Value::Str(_) => "str",
            Value::Tensor(_) => "Tensor",
            Value::Mask(_) => "Mask",
            Value::List(_) => "list",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::F32(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Tensor(t) | Value::Mask(t) => write!(f, "{}{:?}", self.kind_name(), t.shape),
            Value::List(xs) => {
                let parts: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
                write!(f, "[{}]", parts.join(", "))
            }
        }
    }
}

/// A failure while running a checked program: never a panic.
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeError {
    pub message: String,
    pub span: Option<Span>,
    pub hint: Option<String>,
}

impl RuntimeError {
    pub fn new(message: impl Into<String>) -> Self {
        RuntimeError {
            message: message.into(),
            span: None,
            hint: None,
        }
    }
    pub fn at(mut self, span: Span) -> Self {
        self.span.get_or_insert(span);
        self
    }
    pub fn with_hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }
    pub fn to_diagnostic(&self) -> Diagnostic {
        Diagnostic::error(self.span.unwrap_or_default(), self.message.clone())
            .with_hint_opt(self.hint.clone())
    }
}

impl From<crate::cancel::Stop> for RuntimeError {
    fn from(s: crate::cancel::Stop) -> Self {
        RuntimeError::new(s.to_string())
    }
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for RuntimeError {}

/// What a program may ask about the tensor being merged.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorFacts {
    pub name: String,
    pub kind: String,
    pub layer: i64,
    pub n_layers: i64,
}

impl TensorFacts {
    /// Facts read off a Hugging Face tensor name, e.g. `model.layers.3.mlp.up_proj.weight`.
    pub fn from_name(name: &str, n_layers: i64) -> Self {
        TensorFacts {
            name: name.to_string(),
            kind: classify(name).to_string(),
            layer: layer_index(name).unwrap_or(-1),
            n_layers,
        }
    }
}

/// The layer number after `layers.`, `h.`, `blocks.` or `layer.` in a name.
pub fn layer_index(name: &str) -> Option<i64> {
    let parts: Vec<&str> = name.split('.').collect();
    parts.windows(2).find_map(|w| {
        matches!(w[0], "layers" | "h" | "blocks" | "layer" | "block")
            .then(|| w[1].parse::<i64>().ok())
            .flatten()
    })
}

/// attention | mlp | embedding | norm | other, from a tensor's name.
pub fn classify(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    let has = |keys: &[&str]| keys.iter().any(|k| n.contains(k));
    if has(&["norm", "ln_", ".ln", "layernorm"]) {
        "norm"
    } else if has(&[
        "embed",
        "wte",
        "wpe",
        "lm_head",
        "tok_embeddings",
        "output.weight",
    ]) {
        "embedding"
    } else if has(&[
        "attn",
        "attention",
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "qkv",
    ]) {
        "attention"
    } else if has(&[
        "mlp",
        "feed_forward",
        "ffn",
        "gate_proj",
        "up_proj",
        "down_proj",
        "fc1",
        "fc2",
        "w1",
        "w2",
        "w3",
    ]) {
        "mlp"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_from_llama_names() {
        let f = TensorFacts::from_name("model.layers.3.mlp.up_proj.weight", 32);
        assert_eq!((f.kind.as_str(), f.layer), ("mlp", 3));
        assert_eq!(
            classify("model.layers.0.self_attn.q_proj.weight"),
            "attention"
        );
        assert_eq!(classify("model.layers.0.input_layernorm.weight"), "norm");
        assert_eq!(classify("model.embed_tokens.weight"), "embedding");
        assert_eq!(classify("lm_head.weight"), "embedding");
        assert_eq!(layer_index("model.norm.weight"), None);
    }
}
