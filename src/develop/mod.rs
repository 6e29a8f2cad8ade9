//! The self-develop loop (issue 6), in pieces so far: the generation prompt, program
//! extraction, candidate assessment with canonical hashes, the append-only run record,
//! the [`generator::Generator`] interface and the built-in [`tiny::TinyGenerator`].

pub mod candidate;
pub mod extract;
pub mod generator;
pub mod prompt;
pub mod record;
pub mod tiny;
pub mod tiny_corpus;
