//! `mergec compile ALGO --models K --emit ir|kernels|clif|cuda`: prints a compiled form.

use crate::interp::TensorFacts;
use crate::pipeline::{Source, Target};
use crate::types::Const;

/// The compiled form `mergec compile` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// The typed tree of the merge for the tensor's rank.
    Typed,
    /// The graph IR before and after the passes.
    Ir,
    /// The fused kernel plan.
    Kernels,
    /// Cranelift IR of each kernel.
    Clif,
    /// CUDA C of the kernels.
    Cuda,
}

/// What `mergec compile` was asked for.
pub struct CompileArgs<'a> {
    pub program: &'a str,
    pub merge: Option<&'a str>,
    pub models: usize,
    pub shape: Vec<usize>,
    pub sets: &'a [String],
    pub emit: Emit,
    pub dtype: &'a str,
    pub tensor: &'a str,
}

/// The text of one emitted form.
pub fn emit(a: &CompileArgs) -> Result<String, String> {
    let color = crate::diag::use_color();
    let source = Source::load(a.program).map_err(|e| e.render(color))?;
    let name = source.merge_name(a.merge).map_err(|e| e.render(color))?;
    if a.models == 0 {
        return Err("--models must be at least 1".into());
    }
    let m = source
        .instantiate(&name, a.shape.len())
        .map_err(|e| e.render(color))?;
    let overrides = a
        .sets
        .iter()
        .map(|s| Const::parse_assignment(s).map_err(|e| format!("--set {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let params = crate::pipeline::params(&m, &overrides, a.models).map_err(|e| e.to_string())?;
    let facts = TensorFacts::from_name(a.tensor, 32);
    let target = Target::uniform(
        &facts,
        &a.shape,
        a.models,
        super::merge::dtype_flag(a.dtype)?,
    );
    let g = crate::pipeline::lower(&m, params, &target).map_err(|e| format!("`{name}`: {e}"))?;
    // The plan as the CPU's JIT runs it, or a device (CUDA C).
    let chunk = match a.emit {
        Emit::Cuda => crate::ir::plan::SELECT_CHUNK,
        _ => crate::codegen::cpu::SELECT_CHUNK,
    };
    let optimise = |g| crate::pipeline::optimise(g, &target, chunk);
    let kernels = |g| -> Vec<_> { optimise(g).kernels().cloned().collect() };
    Ok(match a.emit {
        Emit::Typed => m.body.pretty(&m.var_names),
        Emit::Ir => {
            let before = g.print();
            let after = optimise(g).graph.print();
            format!("{before}\n== after the passes ==\n{after}")
        }
        Emit::Kernels => optimise(g).print(),
        Emit::Clif => {
            let mut out = String::new();
            for k in &kernels(g) {
                out.push_str(&crate::codegen::cpu::clif_text(k)?);
                out.push('\n');
            }
            out
        }
        Emit::Cuda => crate::codegen::cuda::render(&kernels(g)),
    })
}

pub fn run(a: &CompileArgs) -> i32 {
    match emit(a) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
