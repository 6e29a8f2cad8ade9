//! Iterating the groups of 8 elements of one canonical block (`e0`, a variable,
//! to `end`): whole groups on the fast path, then the partial last group masked.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{Block, InstBuilder, Value};

use super::body::emit_body;
use super::translate::Tr;
use crate::ir::kernel::KernelKind;

/// Whole groups per iteration of the fast loop (2 measured best: fewer loop and
/// spill instructions per group; 4 gains nothing and compiles slower).
const UNROLL: i64 = 2;

impl Tr<'_, '_> {
    /// Groups of 8 elements from `e0` (a variable) to `end`: `UNROLL` whole groups
    /// per iteration on the fast path, then the rest (under 8 * UNROLL elements)
    /// one masked group at a time.
    pub(super) fn group_loop(&mut self, end: Value) -> Result<(), String> {
        if self.p.rc && self.k.kind == KernelKind::Flat {
            return self.general_loop(end);
        }
        let unroll = UNROLL;
        let (head, whole, tail, part, done) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        self.b.set_cold_block(part);
        let e0 = self.b.use_var(self.v.e0);
        let len = self.b.ins().isub(end, e0);
        let len = self.b.ins().band_imm_s(len, !(8 * unroll - 1));
        let wend = self.b.ins().iadd(e0, len);
        self.b.ins().jump(head, &[]);

        self.b.switch_to_block(head);
        let e0 = self.b.use_var(self.v.e0);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, e0, wend);
        self.b.ins().brif(more, whole, &[], tail, &[]);
        self.b.switch_to_block(whole);
        for _ in 0..unroll {
            self.fast_loads();
            let g = self.group();
            let vals = emit_body(&mut self.b, self.k, self.p, &self.sc, &g)?;
            self.sinks(&vals, false)?;
            self.step();
        }
        self.b.ins().jump(head, &[]);

        self.b.switch_to_block(tail);
        let e0 = self.b.use_var(self.v.e0);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, e0, end);
        self.b.ins().brif(more, part, &[], done, &[]);
        self.b.switch_to_block(part);
        let rem = self.b.ins().isub(end, e0);
        let eight = self.b.ins().iconst(I64, 8);
        let m = self.b.ins().umin(rem, eight);
        self.b.def_var(self.v.m, m);
        self.slow_loads()?;
        let g = self.group();
        let vals = emit_body(&mut self.b, self.k, self.p, &self.sc, &g)?;
        self.sinks(&vals, true)?;
        self.step();
        self.b.ins().jump(tail, &[]);
        self.b.switch_to_block(done);
        Ok(())
    }

    /// Moves to the next group (within a row: Rows kernels, or no row/column reads).
    fn step(&mut self) {
        let e0 = self.b.use_var(self.v.e0);
        let e1 = self.b.ins().iadd_imm_s(e0, 8);
        self.b.def_var(self.v.e0, e1);
        if self.p.rc {
            let c0 = self.b.use_var(self.v.c0);
            let c1 = self.b.ins().iadd_imm_s(c0, 8);
            self.b.def_var(self.v.c0, c1);
        }
    }

    /// Groups of 8 elements, for Flat kernels that read by row or column: a group
    /// may cross a row boundary, so each group picks the fast or masked path.
    fn general_loop(&mut self, end: Value) -> Result<(), String> {
        let bl: Vec<Block> = (0..8).map(|_| self.b.create_block()).collect();
        let [head, pre, fast, slow, body, full, part, done] = bl[..] else {
            return Err("blocks".into());
        };
        self.b.set_cold_block(slow);
        self.b.set_cold_block(part);
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(head);
        let e0 = self.b.use_var(self.v.e0);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, e0, end);
        self.b.ins().brif(more, pre, &[], done, &[]);

        self.b.switch_to_block(pre);
        let rem = self.b.ins().isub(end, e0);
        let eight = self.b.ins().iconst(I64, 8);
        let m = self.b.ins().umin(rem, eight);
        self.b.def_var(self.v.m, m);
        let whole = self.b.ins().icmp_imm_s(IntCC::Equal, m, 8);
        let c0 = self.b.use_var(self.v.c0);
        let c8 = self.b.ins().iadd_imm_s(c0, 8);
        let cols = self.k.cols as i64;
        let fits = (self.b.ins()).icmp_imm_s(IntCC::UnsignedLessThanOrEqual, c8, cols);
        let ok = self.b.ins().band(whole, fits);
        self.b.ins().brif(ok, fast, &[], slow, &[]);

        self.b.switch_to_block(fast);
        self.fast_loads();
        self.b.ins().jump(body, &[]);
        self.b.switch_to_block(slow);
        self.slow_loads()?;
        self.b.ins().jump(body, &[]);

        self.b.switch_to_block(body);
        let g = self.group();
        let vals = emit_body(&mut self.b, self.k, self.p, &self.sc, &g)?;
        let m = self.b.use_var(self.v.m);
        let is8 = self.b.ins().icmp_imm_s(IntCC::Equal, m, 8);
        self.b.ins().brif(is8, full, &[], part, &[]);
        self.b.switch_to_block(full);
        self.sinks(&vals, false)?;
        self.advance(head);
        self.b.switch_to_block(part);
        self.sinks(&vals, true)?;
        self.advance(head);
        self.b.switch_to_block(done);
        Ok(())
    }

    /// Moves to the next group and jumps back to `head`.
    pub(super) fn advance(&mut self, head: Block) {
        let e0 = self.b.use_var(self.v.e0);
        let e1 = self.b.ins().iadd_imm_s(e0, 8);
        self.b.def_var(self.v.e0, e1);
        if !self.p.rc {
            self.b.ins().jump(head, &[]);
            return;
        }
        let c0 = self.b.use_var(self.v.c0);
        let c1 = self.b.ins().iadd_imm_s(c0, 8);
        self.b.def_var(self.v.c0, c1);
        if self.k.kind == KernelKind::Rows {
            self.b.ins().jump(head, &[]);
            return;
        }
        // Flat: carry whole rows from the column into the row.
        let wrap = self.b.create_block();
        let over =
            self.b
                .ins()
                .icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, c1, self.k.cols as i64);
        self.b.ins().brif(over, wrap, &[], head, &[]);
        self.b.switch_to_block(wrap);
        let cols = self.b.ins().iconst(I64, self.k.cols as i64);
        let dr = self.b.ins().udiv(c1, cols);
        let c2 = self.b.ins().urem(c1, cols);
        let r0 = self.b.use_var(self.v.r0);
        let r1 = self.b.ins().iadd(r0, dr);
        self.b.def_var(self.v.r0, r1);
        self.b.def_var(self.v.c0, c2);
        self.b.ins().jump(head, &[]);
    }
}
