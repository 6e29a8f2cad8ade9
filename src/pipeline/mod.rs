//! The one compile pipeline. Every caller (`mergec merge`, `run`, `compile --emit`,
//! mergekit configs, the loop's candidate assessment, the differential tests) goes
//! through these steps and stops where it needs to:
//!
//! 1. [`Source::load`] / [`Source::check`]: a program's text, parsed and checked;
//! 2. [`Source::merge_name`]: which merge of it runs;
//! 3. [`Source::instantiate`]: that merge checked for a tensor's rank;
//! 4. [`params`]: its parameters resolved for the number of models;
//! 5. [`lower`]: a graph for one tensor's facts and shapes ([`Target`]);
//! 6. [`optimise`]: the graph passes, split into stages and fused into kernels;
//! 7. [`kernels`]: the kernels compiled by an engine (JIT, CUDA or the emulator).
//!
//! [`compile`] runs 5-7, [`run_compiled`] runs them on f32 tensors. Failures are a
//! [`PipelineError`] carrying the diagnostics, rendered once by the caller.

mod cache;
mod error;

pub use cache::{PlanCache, PlanKey};
pub use error::PipelineError;

use crate::codegen::Engine;
use crate::exec::run::{self, Compiled};
use crate::interp::{RuntimeError, Tensor, TensorFacts, Value, check_finite};
use crate::ir::graph::Graph;
use crate::ir::kernel::Dtype;
use crate::ir::lower::{LowerError, LowerInput};
use crate::ir::plan::Plan;
use crate::syntax::ast::Program;
use crate::types::{CheckedMerge, Const, MergeSig};
use zerocopy::IntoBytes;

/// A program that parses and checks, with where it came from.
#[derive(Clone, Debug)]
pub struct Source {
    /// A path, or `stdlib/FILE` for a stdlib method; used in messages and provenance.
    pub label: String,
    pub text: String,
    pub program: Program,
    /// Its merges, in the order they are defined.
    pub sigs: Vec<MergeSig>,
}

impl Source {
    /// Reads and checks a program: a path to a .merge file, or a stdlib method's name.
    pub fn load(spec: &str) -> Result<Source, PipelineError> {
        if std::path::Path::new(spec).exists() || spec.ends_with(".merge") {
            let text = crate::files::read_program(spec)?;
            return Source::check(spec, text);
        }
        match crate::stdlib::method(spec) {
            Some(m) => Ok(Source::stdlib(m)),
            None => {
                let names: Vec<String> = crate::stdlib::methods()
                    .into_iter()
                    .map(|m| m.sig.name)
                    .collect();
                let hint = crate::types::did_you_mean(spec, names.iter().map(String::as_str))
                    .unwrap_or_else(|| "see `mergec methods`".into());
                Err(PipelineError::NotFound {
                    spec: spec.to_string(),
                    hint,
                })
            }
        }
    }

    /// A stdlib method (checked when the stdlib loads).
    pub fn stdlib(m: crate::stdlib::Method) -> Source {
        Source {
            label: format!("stdlib/{}", m.file),
            text: m.source.to_string(),
            program: m.program,
            sigs: vec![m.sig],
        }
    }

    /// Parses and checks program text.
    pub fn check(
        label: impl Into<String>,
        text: impl Into<String>,
    ) -> Result<Source, PipelineError> {
        let (label, text) = (label.into(), text.into());
        match crate::types::check_source(&text) {
            Ok((program, sigs)) => Ok(Source {
                label,
                text,
                program,
                sigs,
            }),
            Err(diagnostics) => Err(PipelineError::DoesNotCheck {
                label,
                text,
                diagnostics,
            }),
        }
    }

    /// The merge to run: `want`, which must be one of the program's, or its first.
    pub fn merge_name(&self, want: Option<&str>) -> Result<String, PipelineError> {
        self.merge(want).map(|s| s.name.clone())
    }

    /// The signature of the merge to run (see [`Source::merge_name`]).
    pub fn merge(&self, want: Option<&str>) -> Result<&MergeSig, PipelineError> {
        let found = match want {
            Some(n) => self.sigs.iter().find(|s| s.name == n),
            None => self.sigs.first(),
        };
        found.ok_or_else(|| match want {
            Some(n) => PipelineError::UnknownMerge {
                label: self.label.clone(),
                name: n.to_string(),
                have: self.sigs.iter().map(|s| s.name.clone()).collect(),
            },
            None => PipelineError::NoMerge {
                label: self.label.clone(),
            },
        })
    }

    /// The merge `name` checked for a base tensor of `rank` dimensions.
    pub fn instantiate(&self, name: &str, rank: usize) -> Result<CheckedMerge, PipelineError> {
        crate::types::instantiate_merge(&self.program, name, rank).map_err(|diagnostics| {
            PipelineError::Rank {
                label: self.label.clone(),
                text: self.text.clone(),
                name: name.to_string(),
                rank,
                diagnostics,
            }
        })
    }
}

/// A merge's parameter values: its defaults with `overrides` applied, for `n_models`.
pub fn params(
    m: &CheckedMerge,
    overrides: &[(String, Const)],
    n_models: usize,
) -> Result<Vec<Value>, RuntimeError> {
    crate::interp::resolve_params(m, overrides, n_models)
}

/// What one tensor's merge is compiled for: its facts, the shapes of the base and of
/// each model, their storage dtypes and the output's.
#[derive(Clone, Debug)]
pub struct Target<'a> {
    pub facts: &'a TensorFacts,
    pub shapes: Vec<Vec<usize>>,
    pub in_dtypes: Vec<Dtype>,
    pub out_dtype: Dtype,
}

impl<'a> Target<'a> {
    /// A base and `n_models` models of one shape, all stored (and written) as `dtype`.
    pub fn uniform(
        facts: &'a TensorFacts,
        shape: &[usize],
        n_models: usize,
        dtype: Dtype,
    ) -> Target<'a> {
        Target {
            facts,
            shapes: vec![shape.to_vec(); n_models + 1],
            in_dtypes: vec![dtype; n_models + 1],
            out_dtype: dtype,
        }
    }
}

/// Lowers a merge with its parameter values to a graph for one tensor.
pub fn lower(m: &CheckedMerge, params: Vec<Value>, t: &Target) -> Result<Graph, LowerError> {
    crate::ir::lower::lower(&LowerInput {
        merge: m,
        params,
        facts: t.facts,
        shapes: t.shapes.clone(),
    })
}

/// Runs every graph pass, then splits the graph into stages fused into kernels, for an
/// engine that takes chunked selections' keys `select_chunk` elements at a time
/// ([`Engine::select_chunk`]).
pub fn optimise(g: Graph, t: &Target, select_chunk: usize) -> Plan {
    crate::passes::compile_graph(g, t.out_dtype, &t.in_dtypes, select_chunk)
}

/// Compiles a plan's kernels with an engine.
pub fn kernels(plan: Plan, engine: &dyn Engine) -> Result<Compiled, LowerError> {
    Compiled::new(plan, engine).map_err(|e| LowerError::Unsupported(e.to_string()))
}

/// Lowers, optimises and compiles one merge for one tensor.
pub fn compile(
    m: &CheckedMerge,
    params: Vec<Value>,
    t: &Target,
    engine: &dyn Engine,
) -> Result<Compiled, LowerError> {
    kernels(
        optimise(lower(m, params, t)?, t, engine.select_chunk()),
        engine,
    )
}

/// Compiles and runs one merge on f32 tensors, with the interpreter's checks (the
/// differential tests and small merges use it; `mergec merge` streams storage bytes).
#[allow(clippy::too_many_arguments)]
pub fn run_compiled(
    m: &CheckedMerge,
    base: &Tensor,
    models: &[Tensor],
    overrides: &[(String, Const)],
    seed: u64,
    facts: &TensorFacts,
    engine: &dyn Engine,
    allow_nonfinite: bool,
) -> Result<Tensor, LowerError> {
    if models.is_empty() {
        return Err(RuntimeError::new("no models to merge").into());
    }
    let params = params(m, overrides, models.len())?;
    let mut shapes = vec![base.shape.clone()];
    shapes.extend(models.iter().map(|t| t.shape.clone()));
    let target = Target {
        facts,
        in_dtypes: vec![Dtype::F32; shapes.len()],
        shapes,
        out_dtype: Dtype::F32,
    };
    let c = compile(m, params, &target, engine)?;
    let shape = run::output_shape(&c);
    let mut out = vec![0.0f32; shape.iter().product()];
    let mut tensors = vec![(base.data.as_bytes(), Dtype::F32)];
    tensors.extend(models.iter().map(|t| (t.data.as_bytes(), Dtype::F32)));
    let inp = run::RunInputs {
        tensors,
        seed,
        name: &facts.name,
        cancel: crate::cancel::Cancel::NEVER,
    };
    run::execute(&c, &inp, || out.as_mut_bytes())?;
    let t = Tensor::new(shape, out);
    if !allow_nonfinite {
        check_finite(&t, &facts.name)?;
    }
    Ok(t)
}
