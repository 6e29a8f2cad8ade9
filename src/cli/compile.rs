//! `mergec compile ALGO --models K --emit ir|kernels|clif|cuda`: prints a compiled form.

use crate::interp::TensorFacts;
use crate::pipeline::{Source, Target};
use crate::types::Const;

/// What `mergec compile` was asked for.
pub struct CompileArgs<'a> {
    pub program: &'a str,
    pub merge: Option<&'a str>,
    pub models: usize,
    pub shape: Vec<usize>,
    pub sets: &'a [String],
    pub emit: &'a str,
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
    let typed = m.body.pretty(&m.var_names);
    let g = crate::pipeline::lower(&m, params, &target).map_err(|e| format!("`{name}`: {e}"))?;
    if a.emit == "typed" {
        return Ok(typed);
    }
    let ir_before = g.print();
    let plan = crate::pipeline::optimise(g, &target);
    let kernels: Vec<_> = plan.kernels().cloned().collect();
    Ok(match a.emit {
        "ir" => format!(
            "{ir_before}\n== after the passes ==\n{}",
            plan.graph.print()
        ),
        "kernels" => plan.print(),
        "clif" => {
            let mut out = String::new();
            for k in &kernels {
                out.push_str(&crate::codegen::cpu::clif_text(k)?);
                out.push('\n');
            }
            out
        }
        "cuda" => crate::codegen::cuda::render(&kernels),
        other => {
            return Err(format!(
                "--emit `{other}`: use typed, ir, kernels, clif or cuda"
            ));
        }
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
