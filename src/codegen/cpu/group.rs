//! One group of 8 elements: its loads (the fast path of whole, in-row groups, or
//! the masked path through stack buffers) and its sinks (stores, reductions).

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{F32, F32X4, F64X2, I8X16, I16, I32, I32X4, I64, I64X2};
use cranelift_codegen::ir::{InstBuilder, StackSlot, Value};

use super::body::{Group, Vv, to_f32, to_f64};
use super::emit::{self, GOLDEN, mem};
use super::translate::{Acc, Tr, elem_addr, load_group, load_splat, store_group};
use crate::ir::kernel::{Dtype, KernelKind, Mode};

fn scalar_ty(dt: Dtype) -> cranelift_codegen::ir::Type {
    if dt == Dtype::F32 { F32 } else { I16 }
}

impl Tr<'_, '_> {
    /// The group's values, read from the variables both load paths define.
    pub(super) fn group(&mut self) -> Group {
        let e0 = self.b.use_var(self.v.e0);
        let mut inputs = self.one.clone();
        for (j, vars) in self.v.inp.iter().enumerate() {
            if let Some(vs) = vars {
                inputs[j] = Some(vs.map(|v| self.b.use_var(v)));
            }
        }
        let ig_row = self.v.ig_row.map(|vs| vs.map(|v| self.b.use_var(v)));
        let ig_col = self.v.ig_col.map(|vs| vs.map(|v| self.b.use_var(v)));
        Group {
            e0,
            ties: self.ties.clone(),
            inputs,
            ig_row,
            ig_col,
        }
    }

    /// Whole group inside one row: contiguous loads and splats.
    pub(super) fn fast_loads(&mut self) {
        let e0 = self.b.use_var(self.v.e0);
        let (r0, c0) = if self.p.rc {
            (
                Some(self.b.use_var(self.v.r0)),
                Some(self.b.use_var(self.v.c0)),
            )
        } else {
            (None, None)
        };
        for j in 0..self.k.inputs.len() {
            let (Some(vars), Some(base)) = (self.v.inp[j], self.in_base[j]) else {
                continue;
            };
            let inp = self.k.inputs[j];
            let size = inp.dtype.size();
            let vals = match (inp.mode, r0, c0) {
                (Mode::Row, Some(r0), _) => {
                    let a = elem_addr(&mut self.b, base, r0, size);
                    load_splat(&mut self.b, inp.dtype, a)
                }
                (Mode::Col, _, Some(c0)) => {
                    let a = elem_addr(&mut self.b, base, c0, size);
                    load_group(&mut self.b, inp.dtype, a)
                }
                _ => {
                    let a = elem_addr(&mut self.b, base, e0, size);
                    load_group(&mut self.b, inp.dtype, a)
                }
            };
            self.b.def_var(vars[0], vals[0]);
            self.b.def_var(vars[1], vals[1]);
        }
        if let (Some(vars), Some(r0)) = (self.v.ig_row, r0) {
            let s = self.b.ins().imul_imm_s(r0, GOLDEN as i64);
            let s = self.b.ins().splat(I64X2, s);
            vars.into_iter().for_each(|v| self.b.def_var(v, s));
        }
        if let (Some(vars), Some(c0)) = (self.v.ig_col, c0) {
            let s = self.b.ins().imul_imm_s(c0, GOLDEN as i64);
            let s = self.b.ins().splat(I64X2, s);
            for (q, v) in vars.into_iter().enumerate() {
                let l = emit::golden_lanes(&mut self.b, q);
                let x = self.b.ins().iadd(s, l);
                self.b.def_var(v, x);
            }
        }
    }

    fn zero_slot(&mut self, s: StackSlot, bytes: i32) {
        let z = emit::const_i64x2(&mut self.b, [0, 0]);
        let z = emit::cast(&mut self.b, I8X16, z);
        for off in (0..bytes).step_by(16) {
            self.b.ins().stack_store(I64, z, s, off);
        }
    }

    /// A partial or row-crossing group: elements gathered one lane at a time
    /// into stack buffers (unused lanes zero), then loaded as vectors.
    pub(super) fn slow_loads(&mut self) -> Result<(), String> {
        let slots: Vec<StackSlot> = self.slots.inp.iter().flatten().copied().collect();
        slots.iter().for_each(|&s| self.zero_slot(s, 32));
        for s in [self.slots.ig_row, self.slots.ig_col].into_iter().flatten() {
            self.zero_slot(s, 64);
        }
        let zero = self.b.ins().iconst(I64, 0);
        let m = self.b.use_var(self.v.m);
        self.counted(zero, m, 1, &mut |t, lane| {
            t.gather_lane(lane);
            Ok(())
        })?;
        for j in 0..self.k.inputs.len() {
            let (Some(vars), Some(s)) = (self.v.inp[j], self.slots.inp[j]) else {
                continue;
            };
            let a = self.b.ins().stack_addr(I64, s, 0);
            let vals = load_group(&mut self.b, self.k.inputs[j].dtype, a);
            self.b.def_var(vars[0], vals[0]);
            self.b.def_var(vars[1], vals[1]);
        }
        for (vars, s) in [
            (self.v.ig_row, self.slots.ig_row),
            (self.v.ig_col, self.slots.ig_col),
        ] {
            if let (Some(vars), Some(s)) = (vars, s) {
                for (q, v) in vars.into_iter().enumerate() {
                    let x = self.b.ins().stack_load(I64, I64X2, s, 16 * q as i32);
                    self.b.def_var(v, x);
                }
            }
        }
        Ok(())
    }

    /// The (row, column) of element `e`.
    fn row_col(&mut self, e: Value, lane: Value) -> (Value, Value) {
        if self.k.kind == KernelKind::Rows {
            let r0 = self.b.use_var(self.v.r0);
            let c0 = self.b.use_var(self.v.c0);
            (r0, self.b.ins().iadd(c0, lane))
        } else {
            let cols = self.b.ins().iconst(I64, self.k.cols as i64);
            (self.b.ins().udiv(e, cols), self.b.ins().urem(e, cols))
        }
    }

    fn gather_lane(&mut self, lane: Value) {
        let e0 = self.b.use_var(self.v.e0);
        let e = self.b.ins().iadd(e0, lane);
        let (r, c) = if self.p.rc {
            self.row_col(e, lane)
        } else {
            (e, e)
        };
        for j in 0..self.k.inputs.len() {
            let (Some(s), Some(base)) = (self.slots.inp[j], self.in_base[j]) else {
                continue;
            };
            let inp = self.k.inputs[j];
            let size = inp.dtype.size();
            let idx = match inp.mode {
                Mode::Row => r,
                Mode::Col => c,
                _ => e,
            };
            let src = elem_addr(&mut self.b, base, idx, size);
            let x = self.b.ins().load(scalar_ty(inp.dtype), mem(), src, 0);
            let sa = self.b.ins().stack_addr(I64, s, 0);
            let dst = elem_addr(&mut self.b, sa, lane, size);
            self.b.ins().store(mem(), x, dst, 0);
        }
        for (s, idx) in [(self.slots.ig_row, r), (self.slots.ig_col, c)] {
            if let Some(s) = s {
                let x = self.b.ins().imul_imm_s(idx, GOLDEN as i64);
                let sa = self.b.ins().stack_addr(I64, s, 0);
                let dst = elem_addr(&mut self.b, sa, lane, 8);
                self.b.ins().store(mem(), x, dst, 0);
            }
        }
    }

    /// Stores and reductions of one group; `part`: only the first `m` lanes count.
    pub(super) fn sinks(&mut self, vals: &[Option<Vv>], part: bool) -> Result<(), String> {
        let get = |v: u32| vals[v as usize].ok_or_else(|| format!("sink value {v} not computed"));
        let e0 = self.b.use_var(self.v.e0);
        for s in 0..self.p.stores.len() {
            let (v, dt) = self.p.stores[s];
            let x = to_f32(&mut self.b, get(v)?);
            let addr = if part {
                self.b.ins().stack_addr(I64, self.slots.st[s], 0)
            } else {
                elem_addr(&mut self.b, self.st_base[s], e0, dt.size())
            };
            store_group(&mut self.b, dt, x, addr);
        }
        let m = part.then(|| self.b.use_var(self.v.m));
        if let (Some(m), false) = (m, self.p.stores.is_empty()) {
            let zero = self.b.ins().iconst(I64, 0);
            self.counted(zero, m, 1, &mut |t, lane| {
                t.scatter_lane(e0, lane);
                Ok(())
            })?;
        }
        for i in 0..self.p.reds.len() {
            let v = get(self.p.reds[i].1)?;
            self.accumulate(i, v, m);
        }
        Ok(())
    }

    /// Copies lane `lane` of every staged store to its buffer.
    fn scatter_lane(&mut self, e0: Value, lane: Value) {
        let e = self.b.ins().iadd(e0, lane);
        for s in 0..self.p.stores.len() {
            let dt = self.p.stores[s].1;
            let sa = self.b.ins().stack_addr(I64, self.slots.st[s], 0);
            let src = elem_addr(&mut self.b, sa, lane, dt.size());
            let ty = if dt == Dtype::F32 { I32 } else { I16 };
            let x = self.b.ins().load(ty, mem(), src, 0);
            let dst = elem_addr(&mut self.b, self.st_base[s], e, dt.size());
            self.b.ins().store(mem(), x, dst, 0);
        }
    }

    /// Adds a group's value to reduction `i`; with `m`, lanes >= m are left alone.
    fn accumulate(&mut self, i: usize, v: Vv, m: Option<Value>) {
        match self.v.acc[i] {
            Acc::Sum { lanes, .. } => {
                let x = to_f64(&mut self.b, v);
                for q in 0..4 {
                    let old = self.b.use_var(lanes[q]);
                    let mut new = self.b.ins().fadd(old, x[q]);
                    if let Some(m) = m {
                        let iota = emit::const_i64x2(&mut self.b, [2 * q as u64, 2 * q as u64 + 1]);
                        let mm = self.b.ins().splat(I64X2, m);
                        let mask = self.b.ins().icmp(IntCC::SignedLessThan, iota, mm);
                        let mask = emit::cast(&mut self.b, F64X2, mask);
                        new = self.b.ins().bitselect(mask, new, old);
                    }
                    self.b.def_var(lanes[q], new);
                }
            }
            Acc::Ext { ext, max } => {
                let x = to_f32(&mut self.b, v);
                for h in 0..2 {
                    let old = self.b.use_var(ext[h]);
                    let mut new = if max {
                        self.b.ins().fmax(old, x[h])
                    } else {
                        self.b.ins().fmin(old, x[h])
                    };
                    if let Some(m) = m {
                        let l = 4 * h as u32;
                        let iota = emit::const_i32x4(&mut self.b, [l, l + 1, l + 2, l + 3]);
                        let m32 = self.b.ins().ireduce(I32, m);
                        let mm = self.b.ins().splat(I32X4, m32);
                        let mask = self.b.ins().icmp(IntCC::SignedLessThan, iota, mm);
                        let mask = emit::cast(&mut self.b, F32X4, mask);
                        new = self.b.ins().bitselect(mask, new, old);
                    }
                    self.b.def_var(ext[h], new);
                }
            }
        }
    }
}
