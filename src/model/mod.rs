//! Language models on the CPU with candle (the evaluation issue): one llama-family
//! implementation (llama, mistral, qwen2; Hugging Face directories and llama-family GGUF
//! files) used both to score merged models and to train the testbed zoo.
//!
//! - [`config::LlamaConfig`]: the architecture, read from / written to HF `config.json`.
//! - [`llama::Llama`]: the network. `forward_train` (differentiable, all positions),
//!   `forward_step` (prefill: a KV cache, left padding and per-sequence positions) and
//!   `step_ragged` (decoding: per-sequence caches of any lengths, continuous batching).
//! - [`tokenizer::Tok`]: a `tokenizers` tokenizer plus special tokens and chat template.
//! - [`generate`]: batched greedy decoding with stop strings.
//! - [`sample`]: batched temperature / top-p sampling with seeded per-completion streams.
//! - [`train`]: seeded initialisation, sequence log-probabilities, the DPO loss.
//! - [`LoadedModel`]: a model loaded from a path, implementing [`TextModel`].
//! - [`peft`]: LoRA adapters in PEFT's layout (their config and tensors).

pub mod config;
pub mod generate;
pub mod guide;
pub mod llama;
pub mod load;
pub mod mask;
pub mod peft;
pub mod repro;
pub mod sample;
pub mod tokenizer;
pub mod train;

pub use load::LoadedModel;

/// Makes candle run its element-wise operations on the calling thread (unless
/// `CANDLE_NUM_THREADS` is set). Needed before several threads use candle at once:
/// its element-wise pool is one per process, taken by one caller at a time, and its
/// workers spin while they wait, so concurrent callers would queue behind each other.
/// Matrix products still use each thread's rayon pool. Call it while the process has
/// one thread, before candle runs anything.
pub fn elementwise_on_caller_thread() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: called at the start of a command, before any other thread exists
        // that could read the environment.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
}

mod error;

pub use error::ModelError;

/// Result type of this module.
pub type Result<T> = std::result::Result<T, ModelError>;

/// Settings for greedy generation.
#[derive(Clone, Debug)]
pub struct GenOptions {
    /// At most this many new tokens per prompt.
    pub max_new_tokens: usize,
    /// A completion ends at the first of these strings (which is cut off), or at EOS.
    pub stop: Vec<String>,
    /// Prompts decoded together.
    pub batch_size: usize,
}

/// A chat turn for [`TextModel::chat_prompt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

/// What the evaluator needs from a model.
pub trait TextModel {
    /// Greedy completions, one per prompt, in order. `progress` is called with the
    /// number of prompts finished so far.
    fn generate(
        &mut self,
        prompts: &[String],
        opts: &GenOptions,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<String>>;
    /// The prompt text for a conversation through the model's chat template (ending
    /// with the assistant's turn opened), or None if the model has no template.
    fn chat_prompt(&self, turns: &[(Role, String)]) -> Option<String>;
    /// A hash of the weights, config and tokenizer (hex), for result caching.
    fn content_hash(&self) -> String;
}
