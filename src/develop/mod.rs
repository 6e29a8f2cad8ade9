//! The self-develop loop (issue 6), in pieces so far: the generation prompt, program
//! extraction, candidate assessment with canonical hashes, and the append-only run record.

pub mod candidate;
pub mod config;
pub mod driver;
pub mod extract;
pub mod generator;
pub mod openai;
pub mod plots;
pub mod prompt;
pub mod record;
pub mod report;
