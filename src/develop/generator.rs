//! The program generator interface of the develop loop (issue 6, item 2): something that
//! writes merge programs when prompted and learns from preference pairs (DPO).
//!
//! Implementations: [`super::tiny::TinyGenerator`], a built-in small transformer trained
//! in process; the OpenAI-compatible endpoint generator (it exports pairs for external
//! training instead).

use std::path::Path;

/// One preference pair: for `prompt`, `chosen` is preferred to `rejected`. For the
/// TRL-format export these are the JSONL fields of the same names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
}

/// What [`Generator::learn`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LearnReport {
    /// Optimizer steps taken (0 when training happens elsewhere).
    pub steps: usize,
    /// The DPO loss at each step.
    pub losses: Vec<f64>,
    /// The mean chosen-minus-rejected log-ratio margin
    /// `(log pi(c) - log ref(c)) - (log pi(r) - log ref(r))` at each step.
    pub margins: Vec<f64>,
    /// Anything worth recording (where the weights or exports went, timings).
    pub note: String,
}

/// A program generator.
pub trait Generator {
    /// Name and version recorded with every program (e.g. `tiny-v1@<hash>`); changes
    /// when the generator learns.
    fn id(&self) -> String;
    /// `n` completions of `prompt` at `temperature`, deterministic for a seed.
    fn sample(
        &mut self,
        prompt: &str,
        n: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<String>, String>;
    /// Learns from preference pairs (DPO); `dir` is where this iteration's weights or
    /// exports go.
    fn learn(
        &mut self,
        pairs: &[Pair],
        iteration: usize,
        dir: &Path,
    ) -> Result<LearnReport, String>;
}
