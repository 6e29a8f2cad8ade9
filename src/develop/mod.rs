//! The self-develop loop (issue 6): the generation prompt, program extraction, candidate
//! assessment with canonical hashes, the append-only run record, the driver and the end
//! of run report, the [`generator::Generator`] interface with the built-in
//! [`tiny::TinyGenerator`] and the `openai:URL` client.

pub mod archive;
pub mod candidate;
pub mod config;
pub mod controls;
pub mod dpo;
pub mod driver;
pub mod extract;
pub mod final_stage;
pub mod generator;
pub mod guided;
pub mod isolate;
pub mod iteration;
pub mod local;
pub mod openai;
pub mod plots;
pub mod preferences;
pub mod prompt;
pub mod random;
pub mod ray;
pub mod record;
pub mod report;
pub mod run;
pub mod scores;
pub mod tiny;
pub mod tiny_corpus;
pub mod tune;
