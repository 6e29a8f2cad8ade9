//! Analysis before code generation: validates a kernel, types every value (f32 or
//! f64, exactly as the reference evaluator treats it), and finds what the body
//! really uses (live values, inputs, random-index modes).

use crate::ir::kernel::{Dtype, Inst, Kernel, Mode, RedOp, Sink, V};

/// The type a value has in the reference evaluator: f32 values are stored widened
/// and read back with `as f32`; f64 values are read as they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    F32,
    F64,
}

/// What the code generator needs to know about a kernel.
pub(crate) struct KernelInfo {
    pub ty: Vec<Ty>,
    /// Values some sink depends on (the rest are never computed).
    pub live: Vec<bool>,
    /// Inputs read by a live `Load`.
    pub used_inputs: Vec<bool>,
    /// Live `Uniform` draws indexed by row / by column.
    pub uni_row: bool,
    pub uni_col: bool,
    /// Whether a group needs its element's (row, column): some live read is
    /// indexed by row or column.
    pub rc: bool,
    /// (value, dtype) of each store sink, in sink order.
    pub stores: Vec<(V, Dtype)>,
    /// (op, value) of each reduction sink, in sink order.
    pub reds: Vec<(RedOp, V)>,
}

fn operands(inst: &Inst) -> Vec<V> {
    match *inst {
        Inst::Load(_) | Inst::Arg(_) | Inst::Const(_) | Inst::Arg64(_) => vec![],
        Inst::Uniform { .. } => vec![],
        Inst::Un(_, a) | Inst::Widen(a) | Inst::TopSel { x: a, .. } => vec![a],
        Inst::Bin(_, a, b) | Inst::B64(_, a, b) => vec![a, b],
        Inst::Select(c, a, b) => vec![c, a, b],
    }
}

fn check_index(what: &str, i: u32, n: u32) -> Result<(), String> {
    if i < n {
        Ok(())
    } else {
        Err(format!(
            "{what} index {i} out of range (kernel declares {n})"
        ))
    }
}

fn check_inst(k: &Kernel, i: usize, inst: &Inst) -> Result<(), String> {
    for v in operands(inst) {
        if v as usize >= i {
            return Err(format!(
                "instruction {i} uses value {v}, not defined before it"
            ));
        }
    }
    match *inst {
        Inst::Load(j) => check_index("input", j, k.inputs.len().min(u32::MAX as usize) as u32),
        Inst::Arg(j) => check_index("f32 argument", j, k.n_f32),
        Inst::Arg64(j) => check_index("f64 argument", j, k.n_f64),
        Inst::Uniform { key, .. } => check_index("u64 argument", key, k.n_u64),
        Inst::TopSel { t, cut, .. } => {
            check_index("u64 argument", t, k.n_u64)?;
            check_index("u64 argument", cut, k.n_u64)
        }
        _ => Ok(()),
    }
}

fn type_of(inst: &Inst, ty: &[Ty]) -> Ty {
    match *inst {
        Inst::Widen(_) | Inst::Arg64(_) | Inst::B64(..) => Ty::F64,
        Inst::Select(_, a, b) if ty[a as usize] == Ty::F64 || ty[b as usize] == Ty::F64 => Ty::F64,
        _ => Ty::F32,
    }
}

/// Checks sizes: every byte offset the generated code computes fits in an i64.
fn check_sizes(k: &Kernel) -> Result<(), String> {
    let n = k
        .rows
        .checked_mul(k.cols)
        .ok_or_else(|| format!("kernel {}: domain {}x{} overflows", k.name, k.rows, k.cols))?;
    if n.checked_mul(8).is_none_or(|b| b > i64::MAX as usize / 2) {
        return Err(format!("kernel {}: domain too large", k.name));
    }
    Ok(())
}

/// Validates `k` and computes its plan.
pub(crate) fn plan(k: &Kernel) -> Result<KernelInfo, String> {
    check_sizes(k)?;
    let mut ty = Vec::with_capacity(k.body.len());
    for (i, inst) in k.body.iter().enumerate() {
        check_inst(k, i, inst).map_err(|e| format!("kernel {}: {e}", k.name))?;
        ty.push(type_of(inst, &ty));
    }
    let mut live = vec![false; k.body.len()];
    let (mut stores, mut reds) = (vec![], vec![]);
    for sink in &k.sinks {
        let v = match *sink {
            Sink::Store { value, dtype, .. } => {
                stores.push((value, dtype));
                value
            }
            Sink::Reduce { op, value } => {
                reds.push((op, value));
                value
            }
        };
        if v as usize >= k.body.len() {
            return Err(format!("kernel {}: sink reads undefined value {v}", k.name));
        }
        live[v as usize] = true;
    }
    for i in (0..k.body.len()).rev() {
        if live[i] {
            for v in operands(&k.body[i]) {
                live[v as usize] = true;
            }
        }
    }
    let mut p = KernelInfo {
        ty,
        live,
        used_inputs: vec![false; k.inputs.len()],
        uni_row: false,
        uni_col: false,
        rc: false,
        stores,
        reds,
    };
    mark_uses(k, &mut p);
    Ok(p)
}

fn mark_uses(k: &Kernel, p: &mut KernelInfo) {
    for (i, inst) in k.body.iter().enumerate() {
        if !p.live[i] {
            continue;
        }
        match *inst {
            Inst::Load(j) => {
                p.used_inputs[j as usize] = true;
                let mode = k.inputs[j as usize].mode;
                p.rc |= matches!(mode, Mode::Row | Mode::Col);
            }
            Inst::Uniform { mode, .. } => {
                p.uni_row |= mode == Mode::Row;
                p.uni_col |= mode == Mode::Col;
                p.rc |= matches!(mode, Mode::Row | Mode::Col);
            }
            _ => {}
        }
    }
}
