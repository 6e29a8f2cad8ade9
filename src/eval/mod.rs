//! Evaluation of merged models (the evaluation issue): GSM8K-format data, answer
//! extraction and scoring, splits, few-shot prompts and accuracy intervals
//! ([`gsm8k`]); in-process evaluation through a [`crate::model::TextModel`] with a
//! result cache ([`run`]); and external evaluators such as lm-evaluation-harness
//! ([`external`]). See docs/eval.md.

mod error;
pub mod external;
pub mod gsm8k;
pub mod run;
pub mod stats;

pub use error::EvalError;
