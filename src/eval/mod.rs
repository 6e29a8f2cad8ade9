//! Evaluation of merged models (the evaluation issue). So far: GSM8K-format data,
//! answer extraction and scoring, splits, few-shot prompts and accuracy intervals.
//! Inference (candle) and the testbed zoo come next.

pub mod external;
pub mod gsm8k;
