//! Running compiled merges: the host side of the kernel plan, and the selection
//! library (top-k cut points, quantiles, ranks) it calls between stages.

pub mod compile;
pub mod run;
pub mod select;
pub mod topk;

use crate::codegen::Engine;
use crate::interp::{RuntimeError, Tensor, TensorFacts, check_finite, resolve_params};
use crate::ir::kernel::BufDtype;
use crate::ir::lower::LowerError;
use crate::types::{CheckedMerge, Const};
use zerocopy::IntoBytes;

/// Compiles and runs one merge on f32 tensors, with the interpreter's checks (the
/// differential tests and small merges use it; `mergec merge` streams storage bytes).
#[allow(clippy::too_many_arguments)]
pub fn run_merge_compiled(
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
    let params = resolve_params(m, overrides, models.len())?;
    let mut shapes = vec![base.shape.clone()];
    shapes.extend(models.iter().map(|t| t.shape.clone()));
    let dtypes = vec![BufDtype::F32; shapes.len()];
    let c = compile::compile_merge(m, params, facts, shapes, &dtypes, BufDtype::F32, engine)?;
    let shape = run::output_shape(&c);
    let mut out = vec![0.0f32; shape.iter().product()];
    let mut tensors = vec![(base.data.as_bytes(), BufDtype::F32)];
    tensors.extend(models.iter().map(|t| (t.data.as_bytes(), BufDtype::F32)));
    let inp = run::RunInputs {
        tensors,
        seed,
        name: &facts.name,
        cancel: crate::cancel::Cancel::NEVER,
    };
    run::execute(&c, &inp, out.as_mut_bytes())?;
    let t = Tensor::new(shape, out);
    if !allow_nonfinite {
        check_finite(&t, &facts.name)?;
    }
    Ok(t)
}
