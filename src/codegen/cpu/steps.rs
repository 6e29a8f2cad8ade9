//! Iterating the groups of 8 elements of one canonical block (`e0`, a variable,
//! to `end`): whole groups on the fast path (contiguous loads, splats), and the
//! rest - the partial last group, or a group that crosses a row boundary in a
//! Flat kernel that reads by row or column - on the masked path.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{Block, InstBuilder, Value};

use super::body::{TieBlock, emit_body};
use super::translate::Tr;
use crate::ir::kernel::KernelKind;

/// Whole groups per iteration of the fast loop (2 measured best: fewer loop and
/// spill instructions per group; 4 gains nothing and compiles slower).
const UNROLL: i64 = 2;

impl Tr<'_, '_> {
    /// Groups of 8 elements from `e0` (a variable) to `end`: `UNROLL` whole groups
    /// per iteration on the fast path, then the rest (under 8 * UNROLL elements)
    /// one masked group at a time.
    /// A kernel that selects runs one of two loops per block: the one that compares
    /// each key with one bound when no cut falls in the block, else the one that tests
    /// each element's index against the cut (see [`TieBlock`]).
    pub(super) fn group_loop(&mut self, end: Value) -> Result<(), String> {
        if self.sc.tie_cuts.is_empty() {
            return self.groups(end);
        }
        let base = self.b.use_var(self.v.e0);
        let (exact, forms) = super::body::tie_block(&mut self.b, &self.sc, base, end);
        let per_block = forms.iter().flat_map(|f| match f {
            TieBlock::Exact { rel, .. } => rel.clone(),
            TieBlock::Whole { over } => over.clone(),
        });
        super::translate::anchor(&mut self.b, per_block.collect::<Vec<_>>().into_iter());
        let (cut_in, whole, join) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        self.b.set_cold_block(cut_in);
        self.b.ins().brif(exact, cut_in, &[], whole, &[]);
        let [exact_form, whole_form] = forms;
        for (block, form) in [(whole, whole_form), (cut_in, exact_form)] {
            self.b.switch_to_block(block);
            self.ties = Some(form);
            self.groups(end)?;
            self.b.ins().jump(join, &[]);
        }
        self.b.switch_to_block(join);
        Ok(())
    }

    /// The groups from `e0` to `end` (see [`Self::group_loop`]).
    fn groups(&mut self, end: Value) -> Result<(), String> {
        if self.p.rc && self.k.kind == KernelKind::Flat {
            return self.row_segments(end);
        }
        let e0 = self.b.use_var(self.v.e0);
        let len = self.b.ins().isub(end, e0);
        let len = self.b.ins().band_imm_s(len, !(8 * UNROLL - 1));
        let wend = self.b.ins().iadd(e0, len);
        self.fast_run(wend, UNROLL)?;
        let (tail, done) = (self.b.create_block(), self.b.create_block());
        self.b.ins().jump(tail, &[]);
        self.b.switch_to_block(tail);
        let e0 = self.b.use_var(self.v.e0);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, e0, end);
        let part = self.b.create_block();
        self.b.set_cold_block(part);
        self.b.ins().brif(more, part, &[], done, &[]);
        self.b.switch_to_block(part);
        self.masked_group(end)?;
        self.step();
        self.b.ins().jump(tail, &[]);
        self.b.switch_to_block(done);
        Ok(())
    }

    /// Whole groups on the fast path while `e0 < wend` (`wend - e0` a multiple of
    /// `8 * unroll`); leaves the builder after the loop.
    fn fast_run(&mut self, wend: Value, unroll: i64) -> Result<(), String> {
        let (head, whole, exit) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(head);
        let e0 = self.b.use_var(self.v.e0);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, e0, wend);
        self.b.ins().brif(more, whole, &[], exit, &[]);
        self.b.switch_to_block(whole);
        for _ in 0..unroll {
            self.fast_loads();
            let g = self.group();
            let vals = emit_body(&mut self.b, self.k, self.p, &self.sc, &g)?;
            self.sinks(&vals, false)?;
            self.step();
        }
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(exit);
        Ok(())
    }

    /// One group of `min(8, end - e0)` elements through the masked path.
    fn masked_group(&mut self, end: Value) -> Result<(), String> {
        let e0 = self.b.use_var(self.v.e0);
        let rem = self.b.ins().isub(end, e0);
        let eight = self.b.ins().iconst(I64, 8);
        let m = self.b.ins().umin(rem, eight);
        self.b.def_var(self.v.m, m);
        self.slow_loads()?;
        let g = self.group();
        let vals = emit_body(&mut self.b, self.k, self.p, &self.sc, &g)?;
        self.sinks(&vals, true)
    }

    /// Moves to the next group: `e0 += 8`, and `c0 += 8` when columns are tracked
    /// (the caller carries a column past the row end into the row).
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

    /// Flat kernels that read by row or column: per row segment, the whole groups
    /// inside the row on the fast path, then the group that crosses into the next
    /// row (or ends the block) masked.
    fn row_segments(&mut self, end: Value) -> Result<(), String> {
        let bl: Vec<Block> = (0..5).map(|_| self.b.create_block()).collect();
        let [head, seg, after, part, done] = bl[..] else {
            return Err("blocks".into());
        };
        self.b.set_cold_block(part);
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(head);
        let e0 = self.b.use_var(self.v.e0);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, e0, end);
        self.b.ins().brif(more, seg, &[], done, &[]);

        self.b.switch_to_block(seg);
        let (rem, in_row) = (self.b.ins().isub(end, e0), self.row_left());
        let len = self.b.ins().umin(rem, in_row);
        let len = self.b.ins().band_imm_s(len, !7);
        let wend = self.b.ins().iadd(e0, len);
        self.fast_run(wend, 1)?;
        self.b.ins().jump(after, &[]);
        // At the row's end: carry into the next row; otherwise a masked group.
        self.b.switch_to_block(after);
        let e0 = self.b.use_var(self.v.e0);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, e0, end);
        let left = self.row_left();
        let mid_row = self.b.ins().icmp_imm_s(IntCC::NotEqual, left, 0);
        let go = self.b.ins().band(more, mid_row);
        self.wrap_columns();
        self.b.ins().brif(go, part, &[], head, &[]);
        self.b.switch_to_block(part);
        self.masked_group(end)?;
        self.step();
        self.wrap_columns();
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(done);
        Ok(())
    }

    /// Columns left in the current row: `cols - c0`.
    fn row_left(&mut self) -> Value {
        let c0 = self.b.use_var(self.v.c0);
        let cols = self.b.ins().iconst(I64, self.k.cols as i64);
        self.b.ins().isub(cols, c0)
    }

    /// Carries whole rows from the column into the row: r0 += c0 / cols, c0 %= cols.
    fn wrap_columns(&mut self) {
        let c0 = self.b.use_var(self.v.c0);
        let cols = self.b.ins().iconst(I64, self.k.cols as i64);
        let dr = self.b.ins().udiv(c0, cols);
        let c1 = self.b.ins().urem(c0, cols);
        let r0 = self.b.use_var(self.v.r0);
        let r1 = self.b.ins().iadd(r0, dr);
        self.b.def_var(self.v.r0, r1);
        self.b.def_var(self.v.c0, c1);
    }
}
