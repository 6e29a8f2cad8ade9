//! Running a compiled kernel on host memory: checks the buffers against the
//! kernel, passes them to the native code as raw pointers, and splits the units
//! into chunks run in parallel with rayon. Every unit writes its own elements and
//! its own reduction slots, so the bytes are the same for any number of threads.
//! Chunks are sized to a few milliseconds of work (smaller for long kernel bodies),
//! and the cancellation token is polled before each one.

use rayon::prelude::*;

use super::jit::JitKernel;
use crate::cancel::{Cancel, Stop};
use crate::ir::kernel::{BLOCK, Kernel, KernelIo, KernelKind, RedOp, Sink};

/// What the native code reads: arrays of base pointers and argument arrays.
/// Field offsets are `translate::IO_*`.
#[repr(C)]
pub(crate) struct RawIo {
    inputs: *const *const u8,
    stores: *const *mut u8,
    reds: *const *mut f64,
    f32s: *const f32,
    f64s: *const f64,
    u64s: *const u64,
}

// The generated code reads the fields at these offsets.
const _: () = {
    use super::translate::{IO_F32, IO_F64, IO_INPUTS, IO_REDS, IO_STORES, IO_U64};
    use std::mem::offset_of;
    assert!(offset_of!(RawIo, inputs) == IO_INPUTS as usize);
    assert!(offset_of!(RawIo, stores) == IO_STORES as usize);
    assert!(offset_of!(RawIo, reds) == IO_REDS as usize);
    assert!(offset_of!(RawIo, f32s) == IO_F32 as usize);
    assert!(offset_of!(RawIo, f64s) == IO_F64 as usize);
    assert!(offset_of!(RawIo, u64s) == IO_U64 as usize);
};

/// Elements per chunk of work for a body of up to `CHUNK_INSTS` instructions; longer
/// bodies get proportionally fewer (at least one unit), so a chunk stays a few ms.
const CHUNK: usize = 1 << 16;
const CHUNK_INSTS: usize = 64;

/// A `RawIo` shared by the chunks of one launch.
struct Shared<'a>(&'a RawIo);

// SAFETY: the chunks of a launch only read the inputs and arguments, and each
// writes the disjoint store elements and reduction slots of its own units; the
// pointed-to buffers outlive the parallel loop (borrowed by `run`).
unsafe impl Sync for Shared<'_> {}

impl Shared<'_> {
    fn ptr(&self) -> *const RawIo {
        self.0
    }
}

/// Panics unless every buffer of `io` is as large as `k` needs.
fn check(k: &Kernel, io: &KernelIo) {
    let name = &k.name;
    assert_eq!(
        io.inputs.len(),
        k.inputs.len(),
        "kernel {name}: input count"
    );
    for (j, (inp, bytes)) in k.inputs.iter().zip(&io.inputs).enumerate() {
        let need = k.input_len(inp.mode) * inp.dtype.size();
        assert!(
            bytes.len() >= need,
            "kernel {name}: input {j} has {} bytes, needs {need}",
            bytes.len()
        );
    }
    let dts = k.sinks.iter().filter_map(|s| match s {
        Sink::Store { dtype, .. } => Some(*dtype),
        Sink::Reduce { .. } => None,
    });
    assert_eq!(io.stores.len(), k.n_stores(), "kernel {name}: store count");
    for (s, (dt, buf)) in dts.zip(&io.stores).enumerate() {
        let need = k.numel() * dt.size();
        assert!(
            buf.len() >= need,
            "kernel {name}: store {s} has {} bytes, needs {need}",
            buf.len()
        );
    }
    assert_eq!(
        io.reductions.len(),
        k.n_reductions(),
        "kernel {name}: reduction count"
    );
    for r in &io.reductions {
        assert!(
            r.len() >= k.n_units(),
            "kernel {name}: reduction buffer too short"
        );
    }
    let a = io.args;
    assert!(
        a.f32.len() >= k.n_f32 as usize,
        "kernel {name}: f32 arguments"
    );
    assert!(
        a.f64.len() >= k.n_f64 as usize,
        "kernel {name}: f64 arguments"
    );
    assert!(
        a.u64.len() >= k.n_u64 as usize,
        "kernel {name}: u64 arguments"
    );
}

/// Rows of no columns: sums are 0.0, extremes of nothing NaN (as the reference).
fn empty_rows(k: &Kernel, io: &mut KernelIo) {
    let ops = k.sinks.iter().filter_map(|s| match s {
        Sink::Reduce { op, .. } => Some(*op),
        Sink::Store { .. } => None,
    });
    for (op, buf) in ops.zip(io.reductions.iter_mut()) {
        let v = if op == RedOp::Sum { 0.0 } else { f64::NAN };
        buf[..k.rows].fill(v);
    }
}

/// Runs the whole domain of `k` on `io`, polling `cancel` before each chunk (once it
/// fires the chunks left are skipped and the reason returned).
pub(crate) fn run(
    k: &Kernel,
    code: &JitKernel,
    io: &mut KernelIo,
    cancel: &Cancel,
) -> Result<(), Stop> {
    check(k, io);
    let units = k.n_units();
    if units == 0 {
        return Ok(());
    }
    if k.numel() == 0 {
        empty_rows(k, io);
        return Ok(());
    }
    let inputs: Vec<*const u8> = io.inputs.iter().map(|s| s.as_ptr()).collect();
    let stores: Vec<*mut u8> = io.stores.iter_mut().map(|s| s.as_mut_ptr()).collect();
    let reds: Vec<*mut f64> = io.reductions.iter_mut().map(|s| s.as_mut_ptr()).collect();
    let raw = RawIo {
        inputs: inputs.as_ptr(),
        stores: stores.as_ptr(),
        reds: reds.as_ptr(),
        f32s: io.args.f32.as_ptr(),
        f64s: io.args.f64.as_ptr(),
        u64s: io.args.u64.as_ptr(),
    };
    let unit_len = match k.kind {
        KernelKind::Flat => BLOCK,
        KernelKind::Rows => k.cols,
    };
    let elems = CHUNK * CHUNK_INSTS / k.body.len().max(CHUNK_INSTS);
    let per = (elems / unit_len).max(1);
    let chunks = units.div_ceil(per);
    let shared = Shared(&raw);
    let go = |c: usize| -> Result<(), Stop> {
        cancel.check()?;
        let (lo, hi) = (c * per, ((c + 1) * per).min(units));
        // SAFETY: `check` showed every buffer covers the elements and slots of all
        // units; `raw` and the pointer arrays live until the loop ends (the parallel
        // loop returns only after every chunk it started has finished); chunks
        // write disjoint units (see `Shared`).
        unsafe { code.call(shared.ptr(), lo, hi) };
        Ok(())
    };
    if chunks == 1 {
        go(0)
    } else {
        (0..chunks).into_par_iter().try_for_each(go)
    }
}
