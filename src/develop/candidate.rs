//! From a generated text to a runnable candidate: extract the program, parse, check,
//! instantiate for the run's tensors, lower and compile. Nothing generated is ever run
//! except through the compiler (or the interpreter, which has the same semantics).
//!
//! Valid programs get a *canonical hash*: the hash of their compiled graphs for the run's
//! representative tensors, so programs that differ only in names, formatting, comments or
//! dead code are evaluated once.

use super::extract::extract_program;
use crate::interp::TensorFacts;
use crate::ir::kernel::Dtype;
use crate::ir::lower::LowerError;
use crate::pipeline::{PipelineError, Source, Target};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How far a generated text got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// No program found in the text.
    NoProgram,
    /// It does not parse or does not check (diagnostics say why).
    Check,
    /// It checks, but cannot run on the run's tensors: no usable merge, a parameter
    /// without a default, or an error known before reading data.
    Instantiate,
    /// Ready to merge.
    Valid,
}

/// A tensor the candidates will see: its name (for tensor facts) and shape.
#[derive(Clone, Debug)]
pub struct ProbeTensor {
    pub name: String,
    pub shape: Vec<usize>,
}

/// The result of assessing one generated text.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Assessed {
    pub stage: Stage,
    /// The extracted program.
    pub program: Option<String>,
    /// The merge that will run (the first one defined).
    pub merge: Option<String>,
    /// Diagnostics or the reason it cannot run (plain text), empty when valid.
    pub diagnostics: String,
    /// Hex hash of the compiled graphs (valid programs only).
    pub canonical: Option<String>,
    /// Whether the compiler declined it (it then runs in the interpreter).
    pub interpreted: bool,
}

impl Assessed {
    fn fail(stage: Stage, program: Option<String>, diagnostics: String) -> Assessed {
        Assessed {
            stage,
            program,
            merge: None,
            diagnostics,
            canonical: None,
            interpreted: false,
        }
    }
}

/// Assesses `reply` for merges of `n_models` candidates on the `probes` tensors.
pub fn assess(reply: &str, n_models: usize, probes: &[ProbeTensor]) -> Assessed {
    let Some(src) = extract_program(reply) else {
        return Assessed::fail(
            Stage::NoProgram,
            None,
            "no program found: reply with one program in a ```merge block".into(),
        );
    };
    assess_program(&src, n_models, probes)
}

/// Assesses program text (already extracted).
pub fn assess_program(src: &str, n_models: usize, probes: &[ProbeTensor]) -> Assessed {
    let prog = Some(src.to_string());
    // Diagnostics as plain text against the name the prompts use.
    let shown = |e: &PipelineError| {
        let text = crate::diag::render_all(e.diagnostics(), "program.merge", src, false);
        text.trim_end().to_string()
    };
    let source = match Source::check("program.merge", src) {
        Ok(s) => s,
        Err(e) => return Assessed::fail(Stage::Check, prog, shown(&e)),
    };
    let Ok(name) = source.merge_name(None) else {
        return Assessed::fail(
            Stage::Instantiate,
            prog,
            "the program defines no `merge`".into(),
        );
    };
    let mut h = Sha256::new();
    let mut interpreted = false;
    for p in probes {
        let at = |why: String| format!("`{name}` on {} {:?}: {why}", p.name, p.shape);
        let m = match source.instantiate(&name, p.shape.len()) {
            Ok(m) => m,
            Err(e) => return Assessed::fail(Stage::Instantiate, prog, at(shown(&e))),
        };
        let params = match crate::pipeline::params(&m, &[], n_models) {
            Ok(p) => p,
            Err(e) => return Assessed::fail(Stage::Instantiate, prog, at(e.to_string())),
        };
        let facts = TensorFacts::from_name(&p.name, 32);
        let target = Target::uniform(&facts, &p.shape, n_models, Dtype::F32);
        match crate::pipeline::lower(&m, params, &target) {
            Ok(g) => {
                let plan = crate::pipeline::optimise(g, &target, crate::ir::plan::SELECT_CHUNK);
                h.update(plan.graph.print().as_bytes());
            }
            Err(LowerError::Unsupported(_)) => {
                // The interpreter runs it; its typed form stands for the graph.
                interpreted = true;
                h.update(m.body.pretty(&m.var_names).as_bytes());
            }
            Err(LowerError::Runtime(r)) => {
                return Assessed::fail(Stage::Instantiate, prog, at(format!("fails: {r}")));
            }
        }
    }
    Assessed {
        stage: Stage::Valid,
        program: prog,
        merge: Some(name),
        diagnostics: String::new(),
        canonical: Some(format!("{:x}", h.finalize())),
        interpreted,
    }
}

/// Probe tensors of the testbed's shapes (MLP up and down projections), for assessing
/// programs without a checkpoint at hand.
pub fn default_probes() -> Vec<ProbeTensor> {
    vec![
        ProbeTensor {
            name: "model.layers.1.mlp.up_proj.weight".into(),
            shape: vec![512, 128],
        },
        ProbeTensor {
            name: "model.layers.1.mlp.down_proj.weight".into(),
            shape: vec![128, 512],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probes() -> Vec<ProbeTensor> {
        vec![ProbeTensor {
            name: "model.layers.0.mlp.up_proj.weight".into(),
            shape: vec![8, 4],
        }]
    }

    #[test]
    fn stages_and_canonical_hashes() {
        let a = "merge a(base: Tensor, models: [Tensor], w: f32 = 0.5) -> Tensor {\n  return base + w * sum(models - base)\n}";
        // Same computation, other names, comments and a dead binding.
        let b = "# mine\nmerge zz(b: Tensor, ms: [Tensor], scale: f32 = 0.5) -> Tensor {\n  let unused = b * 2.0\n  return b + scale * sum(ms - b)\n}";
        let c = "merge c(base: Tensor, models: [Tensor]) -> Tensor {\n  return base + 0.4 * sum(models - base)\n}";
        let ra = assess_program(a, 3, &probes());
        let rb = assess_program(b, 3, &probes());
        let rc = assess_program(c, 3, &probes());
        assert_eq!(ra.stage, Stage::Valid, "{}", ra.diagnostics);
        assert_eq!(rb.stage, Stage::Valid, "{}", rb.diagnostics);
        assert_eq!(ra.canonical, rb.canonical);
        assert_ne!(ra.canonical, rc.canonical);
        let bad = assess_program(
            "merge x(base: Tensor) -> Tensor { return base + }",
            3,
            &probes(),
        );
        assert_eq!(bad.stage, Stage::Check);
        assert!(!bad.diagnostics.is_empty());
        let nodefault = assess_program(
            "merge x(base: Tensor, models: [Tensor], k: f32) -> Tensor { return base * k }",
            3,
            &probes(),
        );
        assert_eq!(nodefault.stage, Stage::Instantiate, "{nodefault:?}");
        assert_eq!(assess("nothing", 3, &probes()).stage, Stage::NoProgram);
    }
}
