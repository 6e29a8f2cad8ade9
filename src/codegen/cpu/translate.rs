//! The loop nest of a kernel's native function `fn(io, lo, hi)`: units (blocks of a
//! Flat kernel, rows of a Rows kernel), canonical 4096-element blocks, and groups
//! of 8 elements. Element `j` of a canonical block sits in lane `j % 8` of its
//! group, so each sum's four f64x2 accumulators hold exactly the reference's lanes.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{F32, F32X4, F64, F64X2, I16, I64, I64X2};
use cranelift_codegen::ir::{
    AbiParam, Function, InstBuilder, Signature, StackSlot, StackSlotData, StackSlotKind, Value,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};

use super::body::{Scalars, TieBlock, TieCut};
use super::emit::{self, Fb, mem};
use super::plan::KernelInfo;
use crate::ir::kernel::{BLOCK, Dtype, Inst, Kernel, KernelKind, Mode, RedOp};

/// Byte offsets of the fields of `launch::RawIo`.
pub(crate) const IO_INPUTS: i32 = 0;
pub(crate) const IO_STORES: i32 = 8;
pub(crate) const IO_REDS: i32 = 16;
pub(crate) const IO_F32: i32 = 24;
pub(crate) const IO_F64: i32 = 32;
pub(crate) const IO_U64: i32 = 40;

/// The accumulator variables of one reduction.
pub(super) enum Acc {
    /// Four f64x2 lane partials of the current block, and the running total.
    Sum {
        lanes: [Variable; 4],
        total: Variable,
    },
    /// Two f32x4 running extremes.
    Ext { ext: [Variable; 2], max: bool },
}

/// Loop variables and per-group values.
pub(super) struct Vars {
    pub e0: Variable,
    pub m: Variable,
    pub r0: Variable,
    pub c0: Variable,
    pub inp: Vec<Option<[Variable; 2]>>,
    pub ig_row: Option<[Variable; 4]>,
    pub ig_col: Option<[Variable; 4]>,
    pub acc: Vec<Acc>,
}

/// Stack buffers of the masked (partial or row-crossing) group path.
pub(super) struct Slots {
    pub inp: Vec<Option<StackSlot>>,
    pub ig_row: Option<StackSlot>,
    pub ig_col: Option<StackSlot>,
    pub st: Vec<StackSlot>,
}

pub(super) struct Tr<'a, 'f> {
    pub b: Fb<'f>,
    pub k: &'a Kernel,
    pub p: &'a KernelInfo,
    pub sc: Scalars,
    pub in_base: Vec<Option<Value>>,
    pub st_base: Vec<Value>,
    pub rd_base: Vec<Value>,
    /// Inputs of mode One, loaded once.
    pub one: Vec<Option<[Value; 2]>>,
    pub v: Vars,
    pub slots: Slots,
    /// The current canonical block's top-k cuts (set by `group_loop`).
    pub ties: Option<TieBlock>,
}

/// The signature of every kernel function: `extern "C" fn(*const RawIo, u64, u64)`.
pub(crate) fn kernel_signature(cc: CallConv) -> Signature {
    let mut s = Signature::new(cc);
    s.params.extend([AbiParam::new(I64); 3]);
    s
}

/// Builds the function of kernel `k` into `func`.
pub(crate) fn translate(
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    k: &Kernel,
    p: &KernelInfo,
    cc: CallConv,
    cfg: TargetFrontendConfig,
) -> Result<(), String> {
    func.signature = kernel_signature(cc);
    let mut b = FunctionBuilder::new(func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let &[io, lo, hi] = b.block_params(entry) else {
        return Err("bad kernel signature".into());
    };
    let mut t = Tr::new(b, k, p, io, cc);
    match k.kind {
        KernelKind::Flat => t.flat(lo, hi)?,
        KernelKind::Rows => t.rows(lo, hi)?,
    }
    t.b.seal_all_blocks();
    t.b.finalize(cfg);
    Ok(())
}

fn slot(b: &mut Fb, bytes: u32) -> StackSlot {
    b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, bytes, 4))
}

fn helper_sig(cc: CallConv, n: usize) -> Signature {
    let mut s = Signature::new(cc);
    s.params.extend(std::iter::repeat_n(AbiParam::new(F32), n));
    s.returns.push(AbiParam::new(F32));
    s
}

/// Loads 8 consecutive storage elements at `addr`, as f32.
pub(super) fn load_group(b: &mut Fb, dt: Dtype, addr: Value) -> [Value; 2] {
    match dt {
        Dtype::F32 => [0, 16].map(|o| b.ins().load(F32X4, mem(), addr, o)),
        Dtype::BF16 | Dtype::F16 => {
            let raw = b
                .ins()
                .load(cranelift_codegen::ir::types::I16X8, mem(), addr, 0);
            decode(b, dt, raw)
        }
    }
}

/// Loads one storage element at `addr`, splatted to 8 lanes of f32.
pub(super) fn load_splat(b: &mut Fb, dt: Dtype, addr: Value) -> [Value; 2] {
    let ty = if dt == Dtype::F32 { F32 } else { I16 };
    let x = b.ins().load(ty, mem(), addr, 0);
    let raw = emit::splat_scalar(b, ty, x);
    match dt {
        Dtype::F32 => [raw, raw],
        _ => decode(b, dt, raw),
    }
}

fn decode(b: &mut Fb, dt: Dtype, raw: Value) -> [Value; 2] {
    match dt {
        Dtype::BF16 => emit::bf16_to_f32(b, raw),
        _ => emit::f16_to_f32(b, raw),
    }
}

/// Stores 8 lanes of f32 as storage elements at `addr`.
pub(super) fn store_group(b: &mut Fb, dt: Dtype, x: [Value; 2], addr: Value) {
    match dt {
        Dtype::F32 => {
            b.ins().store(mem(), x[0], addr, 0);
            b.ins().store(mem(), x[1], addr, 16);
        }
        Dtype::BF16 => {
            let raw = emit::f32_to_bf16(b, x);
            b.ins().store(mem(), raw, addr, 0);
        }
        Dtype::F16 => {
            let raw = emit::f32_to_f16(b, x);
            b.ins().store(mem(), raw, addr, 0);
        }
    }
}

/// `base + index * size`.
pub(super) fn elem_addr(b: &mut Fb, base: Value, index: Value, size: usize) -> Value {
    let off = b.ins().imul_imm_s(index, size as i64);
    b.ins().iadd(base, off)
}

impl<'a, 'f> Tr<'a, 'f> {
    fn new(mut b: Fb<'f>, k: &'a Kernel, p: &'a KernelInfo, io: Value, cc: CallConv) -> Self {
        let ld = |b: &mut Fb, base: Value, off: i32| b.ins().load(I64, mem(), base, off);
        let arr_in = ld(&mut b, io, IO_INPUTS);
        let arr_st = ld(&mut b, io, IO_STORES);
        let arr_rd = ld(&mut b, io, IO_REDS);
        let in_base: Vec<Option<Value>> = (0..k.inputs.len())
            .map(|j| p.used_inputs[j].then(|| ld(&mut b, arr_in, 8 * j as i32)))
            .collect();
        let st_base = (0..p.stores.len())
            .map(|s| ld(&mut b, arr_st, 8 * s as i32))
            .collect();
        let rd_base = (0..p.reds.len())
            .map(|s| ld(&mut b, arr_rd, 8 * s as i32))
            .collect();
        let sc = scalars(&mut b, k, io, cc);
        let one = k
            .inputs
            .iter()
            .zip(&in_base)
            .map(|(inp, base)| match (inp.mode, base) {
                (Mode::One, Some(base)) => Some(load_splat(&mut b, inp.dtype, *base)),
                _ => None,
            })
            .collect();
        let v = vars(&mut b, k, p);
        let slots = slots(&mut b, k, p);
        Tr {
            b,
            k,
            p,
            sc,
            in_base,
            st_base,
            rd_base,
            one,
            v,
            slots,
            ties: None,
        }
    }

    fn iconst(&mut self, x: usize) -> Value {
        self.b.ins().iconst(I64, x as i64)
    }

    /// Resets the lane partials of every sum (a new canonical block).
    fn init_lanes(&mut self) {
        for a in &self.v.acc {
            if let Acc::Sum { lanes, .. } = a {
                for &l in lanes {
                    let z = emit::splat_f64(&mut self.b, 0.0);
                    self.b.def_var(l, z);
                }
            }
        }
    }

    /// Resets totals (0.0) and extremes (the identity of max / min).
    fn init_totals(&mut self) {
        for a in &self.v.acc {
            match *a {
                Acc::Sum { total, .. } => {
                    let z = self.b.ins().f64const(0.0);
                    self.b.def_var(total, z);
                }
                Acc::Ext { ext, max } => {
                    let id = if max {
                        f32::NEG_INFINITY
                    } else {
                        f32::INFINITY
                    };
                    for e in ext {
                        let x = emit::splat_f32(&mut self.b, id);
                        self.b.def_var(e, x);
                    }
                }
            }
        }
    }

    /// Ends a canonical block: total += ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)).
    fn end_block(&mut self) {
        for i in 0..self.v.acc.len() {
            if let Acc::Sum { lanes, total } = self.v.acc[i] {
                let q = lanes.map(|l| self.b.use_var(l));
                let l: Vec<Value> = (0..8)
                    .map(|j| self.b.ins().extractlane(q[j / 2], (j % 2) as u8))
                    .collect();
                let s01 = self.b.ins().fadd(l[0], l[1]);
                let s23 = self.b.ins().fadd(l[2], l[3]);
                let s45 = self.b.ins().fadd(l[4], l[5]);
                let s67 = self.b.ins().fadd(l[6], l[7]);
                let a = self.b.ins().fadd(s01, s23);
                let c = self.b.ins().fadd(s45, s67);
                let blk = self.b.ins().fadd(a, c);
                let t = self.b.use_var(total);
                let t = self.b.ins().fadd(t, blk);
                self.b.def_var(total, t);
            }
        }
    }

    /// Writes every reduction's value for unit `u`.
    fn write_results(&mut self, u: Value) {
        for i in 0..self.v.acc.len() {
            let val = match self.v.acc[i] {
                Acc::Sum { total, .. } => self.b.use_var(total),
                Acc::Ext { ext, max } => {
                    let [x, y] = ext.map(|e| self.b.use_var(e));
                    let f = |b: &mut Fb, x, y| {
                        if max {
                            b.ins().fmax(x, y)
                        } else {
                            b.ins().fmin(x, y)
                        }
                    };
                    let z = f(&mut self.b, x, y);
                    let l: Vec<Value> = (0..4u8).map(|j| self.b.ins().extractlane(z, j)).collect();
                    let a = f(&mut self.b, l[0], l[1]);
                    let c = f(&mut self.b, l[2], l[3]);
                    let r = f(&mut self.b, a, c);
                    self.b.ins().fpromote(F64, r)
                }
            };
            let addr = elem_addr(&mut self.b, self.rd_base[i], u, 8);
            self.b.ins().store(mem(), val, addr, 0);
        }
    }

    /// A counted loop `var` from `from` while `var < to` (unsigned); `body` runs in
    /// the loop body and must leave the builder in a block that falls back to the head.
    pub(super) fn counted(
        &mut self,
        from: Value,
        to: Value,
        step: i64,
        body: &mut dyn FnMut(&mut Self, Value) -> Result<(), String>,
    ) -> Result<(), String> {
        let var = self.b.declare_var(I64);
        self.b.def_var(var, from);
        let (head, blk, exit) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(head);
        let i = self.b.use_var(var);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, i, to);
        self.b.ins().brif(more, blk, &[], exit, &[]);
        self.b.switch_to_block(blk);
        body(self, i)?;
        let next = self.b.ins().iadd_imm_s(i, step);
        self.b.def_var(var, next);
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(exit);
        Ok(())
    }

    fn flat(&mut self, lo: Value, hi: Value) -> Result<(), String> {
        self.counted(lo, hi, 1, &mut |t, u| {
            let start = t.b.ins().ishl_imm_s(u, BLOCK.trailing_zeros() as i64);
            let n = t.iconst(t.k.numel());
            let end = t.b.ins().iadd_imm_s(start, BLOCK as i64);
            let end = t.b.ins().umin(end, n);
            t.init_totals();
            t.init_lanes();
            t.b.def_var(t.v.e0, start);
            if t.p.rc {
                let cols = t.iconst(t.k.cols);
                let r0 = t.b.ins().udiv(start, cols);
                let c0 = t.b.ins().urem(start, cols);
                t.b.def_var(t.v.r0, r0);
                t.b.def_var(t.v.c0, c0);
            }
            t.group_loop(end)?;
            t.end_block();
            t.write_results(u);
            Ok(())
        })?;
        self.b.ins().return_(&[]);
        Ok(())
    }

    fn rows(&mut self, lo: Value, hi: Value) -> Result<(), String> {
        self.counted(lo, hi, 1, &mut |t, r| {
            t.init_totals();
            t.b.def_var(t.v.r0, r);
            let zero = t.iconst(0);
            let cols = t.iconst(t.k.cols);
            t.counted(zero, cols, BLOCK as i64, &mut |t, cb| {
                t.init_lanes();
                let row0 = t.b.ins().imul_imm_s(r, t.k.cols as i64);
                let e0 = t.b.ins().iadd(row0, cb);
                let lim = t.b.ins().iadd_imm_s(cb, BLOCK as i64);
                let lim = t.b.ins().umin(lim, cols);
                let end = t.b.ins().iadd(row0, lim);
                t.b.def_var(t.v.e0, e0);
                t.b.def_var(t.v.c0, cb);
                t.group_loop(end)?;
                t.end_block();
                Ok(())
            })?;
            t.write_results(r);
            Ok(())
        })?;
        self.b.ins().return_(&[]);
        Ok(())
    }
}

/// Scalar arguments, loaded (and splatted) once per call; helper signatures.
fn scalars(b: &mut Fb, k: &Kernel, io: Value, cc: CallConv) -> Scalars {
    let base = |b: &mut Fb, off| b.ins().load(I64, mem(), io, off);
    let p32 = base(b, IO_F32);
    let p64 = base(b, IO_F64);
    let pu = base(b, IO_U64);
    let f32 = (0..k.n_f32)
        .map(|j| {
            let x = b.ins().load(F32, mem(), p32, 4 * j as i32);
            b.ins().splat(F32X4, x)
        })
        .collect();
    let f64 = (0..k.n_f64)
        .map(|j| {
            let x = b.ins().load(F64, mem(), p64, 8 * j as i32);
            b.ins().splat(F64X2, x)
        })
        .collect();
    let u64: Vec<Value> = (0..k.n_u64)
        .map(|j| b.ins().load(I64, mem(), pu, 8 * j as i32))
        .collect();
    let mut thresholds = vec![None; u64.len()];
    for inst in &k.body {
        if let Inst::TopSel { t, .. } = *inst
            && thresholds[t as usize].is_none()
        {
            thresholds[t as usize] = Some(super::body::threshold(b, u64[t as usize]));
        }
    }
    let mut tie_cuts: Vec<TieCut> = Vec::new();
    for inst in &k.body {
        if let Inst::TopSel { t, cut, .. } = *inst
            && !tie_cuts.iter().any(|c| c.t == t && c.cut == cut)
            && let Some(th) = thresholds[t as usize]
        {
            let zero = b.ins().iconst(I64, 0);
            let eff = b.ins().select(th.ties, u64[cut as usize], zero);
            tie_cuts.push(TieCut { t, cut, eff });
        }
    }
    let keys = thresholds.iter().flatten().map(|t| t.key);
    anchor(b, keys.chain(tie_cuts.iter().map(|c| c.eff)));
    let sig_un = b.import_signature(helper_sig(cc, 1));
    let sig_bin = b.import_signature(helper_sig(cc, 2));
    Scalars {
        f32,
        f64,
        u64,
        thresholds,
        tie_cuts,
        sig_un,
        sig_bin,
    }
}

/// Makes `values` computed once, in the entry block. Cranelift places a pure value
/// where it is first used, hoisted out of loops only as far as its arguments allow,
/// and it rematerializes constants (and operations with a constant operand) in each
/// block that uses them; a value built from constants, like a top-k threshold's
/// canonical form, was therefore computed again in every group of the inner loop
/// (about 15 scalar instructions per threshold per 8 elements). Storing each value to
/// a stack slot here is a use in the entry block: it is elaborated there, and the
/// loops' uses find it. Each value has its own place in the slot: Cranelift drops a
/// store that a later one to the same address overwrites.
pub(super) fn anchor(b: &mut Fb, values: impl Iterator<Item = Value>) {
    let values: Vec<Value> = values.collect();
    let s = slot(b, 16 * values.len() as u32);
    for (i, v) in values.into_iter().enumerate() {
        b.ins().stack_store(I64, v, s, 16 * i as i32);
    }
}

fn vars(b: &mut Fb, k: &Kernel, p: &KernelInfo) -> Vars {
    let mut var = |t| b.declare_var(t);
    let (e0, m, r0, c0) = (var(I64), var(I64), var(I64), var(I64));
    let inp = k
        .inputs
        .iter()
        .zip(&p.used_inputs)
        .map(|(inp, &used)| (used && inp.mode != Mode::One).then(|| [var(F32X4), var(F32X4)]))
        .collect();
    let ig_row = p.uni_row.then(|| [(); 4].map(|_| var(I64X2)));
    let ig_col = p.uni_col.then(|| [(); 4].map(|_| var(I64X2)));
    let acc = p
        .reds
        .iter()
        .map(|&(op, _)| match op {
            RedOp::Sum => Acc::Sum {
                lanes: [(); 4].map(|_| var(F64X2)),
                total: var(F64),
            },
            RedOp::Max | RedOp::Min => Acc::Ext {
                ext: [var(F32X4), var(F32X4)],
                max: op == RedOp::Max,
            },
        })
        .collect();
    Vars {
        e0,
        m,
        r0,
        c0,
        inp,
        ig_row,
        ig_col,
        acc,
    }
}

fn slots(b: &mut Fb, k: &Kernel, p: &KernelInfo) -> Slots {
    let inp = k
        .inputs
        .iter()
        .zip(&p.used_inputs)
        .map(|(inp, &used)| (used && inp.mode != Mode::One).then(|| slot(b, 32)))
        .collect();
    let ig_row = p.uni_row.then(|| slot(b, 64));
    let ig_col = p.uni_col.then(|| slot(b, 64));
    let st = p.stores.iter().map(|_| slot(b, 32)).collect();
    Slots {
        inp,
        ig_row,
        ig_col,
        st,
    }
}
