//! Human-readable summaries of values: type, shape, a few numbers, statistics.

use crate::interp::{Tensor, Value};
use crate::semantics::canonical_sum;
use std::fmt::Write;

/// min, max, mean, L2 norm and count of nonzeros of a tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub min: f32,
    pub max: f32,
    pub mean: f32,
    pub norm: f32,
    pub nonzeros: usize,
    pub nonfinite: usize,
}

pub fn stats(t: &Tensor) -> Stats {
    let n = t.numel();
    let finite = |v: f32| v.is_finite();
    let min = t
        .data
        .iter()
        .copied()
        .filter(|v| finite(*v))
        .fold(f32::INFINITY, f32::min);
    let max = t
        .data
        .iter()
        .copied()
        .filter(|v| finite(*v))
        .fold(f32::NEG_INFINITY, f32::max);
    let sum = canonical_sum(n, |j| t.data[j] as f64);
    let sq = canonical_sum(n, |j| (t.data[j] as f64).powi(2));
    Stats {
        min,
        max,
        mean: if n == 0 {
            f32::NAN
        } else {
            (sum / n as f64) as f32
        },
        norm: sq.sqrt() as f32,
        nonzeros: t.data.iter().filter(|v| **v != 0.0).count(),
        nonfinite: t.data.iter().filter(|v| !v.is_finite()).count(),
    }
}

fn fmt_num(x: f32) -> String {
    if x == 0.0 || (x.abs() >= 1e-3 && x.abs() < 1e5) {
        let s = format!("{x:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "-" {
            "0".into()
        } else {
            s.to_string()
        }
    } else {
        format!("{x:.3e}")
    }
}

/// The first few values of a tensor, row by row for 2-D.
fn preview(t: &Tensor) -> String {
    const ROWS: usize = 4;
    const COLS: usize = 6;
    let row = |vals: &[f32]| {
        let mut parts: Vec<String> = vals.iter().take(COLS).map(|v| fmt_num(*v)).collect();
        if vals.len() > COLS {
            parts.push("...".into());
        }
        format!("[{}]", parts.join(", "))
    };
    match t.shape.len() {
        2 => {
            let cols = t.shape[1].max(1);
            let mut lines: Vec<String> = t
                .data
                .chunks(cols)
                .take(ROWS)
                .map(|r| format!("  {}", row(r)))
                .collect();
            if t.shape[0] > ROWS {
                lines.push(format!("  ... ({} rows)", t.shape[0]));
            }
            lines.join("\n")
        }
        _ => format!("  {}", row(&t.data)),
    }
}

/// min, max, mean, norm and nonzeros on one line (and a count of non-finite values).
pub fn stats_line(t: &Tensor) -> String {
    let s = stats(t);
    let mut line = format!(
        "min {}  max {}  mean {}  norm {}  nonzeros {}/{}",
        fmt_num(s.min),
        fmt_num(s.max),
        fmt_num(s.mean),
        fmt_num(s.norm),
        s.nonzeros,
        t.numel()
    );
    if s.nonfinite > 0 {
        let _ = write!(line, "  NON-FINITE {}", s.nonfinite);
    }
    line
}

fn same_shaped_tensors(xs: &[Value]) -> bool {
    let first = xs.first().and_then(|x| x.as_tensor());
    first.is_some_and(|f| {
        xs.iter().all(|x| {
            x.kind_name() == xs[0].kind_name() && x.as_tensor().is_some_and(|t| t.shape == f.shape)
        })
    })
}

/// A multi-line description: type and shape, values, statistics.
pub fn describe(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Tensor(t) | Value::Mask(t) => {
            let _ = writeln!(
                out,
                "{} {:?} ({} elements)",
                v.kind_name(),
                t.shape,
                t.numel()
            );
            let _ = writeln!(out, "{}", preview(t));
            let _ = write!(out, "  {}", stats_line(t));
        }
        Value::List(xs) if !xs.is_empty() && xs.iter().all(|x| x.as_f32().is_some()) => {
            // Per-model scalars (norms, weights) fit on one line.
            let parts: Vec<String> = xs
                .iter()
                .map(|x| match x {
                    Value::F32(f) => fmt_num(*f),
                    other => other.to_string(),
                })
                .collect();
            let _ = write!(
                out,
                "list of {} {}: [{}]",
                xs.len(),
                xs[0].kind_name(),
                parts.join(", ")
            );
        }
        Value::List(xs) if same_shaped_tensors(xs) => {
            // A model list: one line of statistics per model (index it for values).
            if let Some(t) = xs[0].as_tensor() {
                let _ = write!(
                    out,
                    "list of {} {} {:?} ({} elements each)",
                    xs.len(),
                    xs[0].kind_name(),
                    t.shape,
                    t.numel()
                );
            }
            for (i, x) in xs.iter().enumerate() {
                if let Some(t) = x.as_tensor() {
                    let _ = write!(out, "\n  [{i}] {}", stats_line(t));
                }
            }
        }
        Value::List(xs) => {
            let _ = write!(out, "list of {}", xs.len());
            for (i, x) in xs.iter().enumerate() {
                let d = describe(x);
                let _ = write!(out, "\n[{i}] {}", d.replace('\n', "\n    "));
            }
        }
        Value::F32(x) => {
            let _ = write!(out, "f32 {}", fmt_num(*x));
        }
        other => {
            let _ = write!(out, "{} {other}", other.kind_name());
        }
    }
    out
}
