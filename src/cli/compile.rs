//! `mergec compile ALGO --models K --emit ir|kernels|clif|cuda`: prints a compiled form.

use crate::exec::compile::lower_merge;
use crate::interp::{TensorFacts, resolve_params};
use crate::ir::kernel::BufDtype;
use crate::ir::lower::LowerError;
use crate::types::{Const, instantiate_merge};

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

fn dtype(s: &str) -> Result<BufDtype, String> {
    match s {
        "f32" => Ok(BufDtype::F32),
        "f16" => Ok(BufDtype::F16),
        "bf16" => Ok(BufDtype::BF16),
        other => Err(format!("--dtype `{other}`: use bf16, f16 or f32")),
    }
}

/// The text of one emitted form.
pub fn emit(a: &CompileArgs) -> Result<String, String> {
    let (label, text) = super::run::load_program(a.program)?;
    let (program, sigs) = crate::types::check_source(&text).map_err(|d| {
        let rendered = crate::diag::render_all(&d, &label, &text, crate::diag::use_color());
        format!("{label} does not check:\n{}", rendered.trim_end())
    })?;
    let name = match a.merge {
        Some(n) => n.to_string(),
        None => sigs
            .first()
            .map(|s| s.name.clone())
            .ok_or("the program defines no merge")?,
    };
    if a.models == 0 {
        return Err("--models must be at least 1".into());
    }
    let m = instantiate_merge(&program, &name, a.shape.len()).map_err(|d| {
        format!(
            "`{name}` cannot run on a {}-D tensor: {}",
            a.shape.len(),
            d.first().map(|d| d.message.clone()).unwrap_or_default()
        )
    })?;
    let overrides = a
        .sets
        .iter()
        .map(|s| Const::parse_assignment(s).map_err(|e| format!("--set {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let params = resolve_params(&m, &overrides, a.models).map_err(|e| e.to_string())?;
    let facts = TensorFacts::from_name(a.tensor, 32);
    let shapes = vec![a.shape.clone(); a.models + 1];
    let d = dtype(a.dtype)?;
    let typed = m.body.pretty(&m.var_names);
    let g = lower_merge(&m, params, &facts, shapes).map_err(|e| match e {
        LowerError::Runtime(r) => format!("`{name}` fails on this tensor: {r}"),
        LowerError::Unsupported(why) => {
            format!("the compiler declines `{name}`: {why} (the interpreter runs it)")
        }
    })?;
    if a.emit == "typed" {
        return Ok(typed);
    }
    let ir_before = g.print();
    let plan = crate::passes::compile_graph(g, d, &vec![d; a.models + 1]);
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
