//! Matmuls whose bits do not depend on the machine's caches (issue 14, item 6).
//!
//! candle's CPU matmul is the `gemm` crate's, which splits the reduction (depth `k`)
//! into blocks of `kc` and accumulates them one after another, so `kc` sets the order
//! of the additions. `kc` is `k` when `k <= 512`; above that it is derived from the L1
//! data cache that `/sys/devices/system/cpu/*/cache` reports, divided by the number of
//! logical CPUs sharing it: 48 KiB, 12-way gives 1,024, the same cache shared by two
//! hyperthreads 512. Two machines of one kind whose hypervisors report the cache
//! topology differently therefore train different bits (verified by running one binary
//! under a mount namespace with another `/sys/devices/system/cpu`: the zoo's weight
//! gradients, with `k` = batch x time rows, changed; L2 and L3 sizes changed nothing).
//!
//! The fix keeps every reduction of the zoo's training at most [`MAX_DEPTH`] long:
//! linear maps are applied to at most that many rows at a time, so each weight
//! gradient is a fixed-order sum of per-block products of depth <= 512; widths and
//! sequence lengths are checked against it where the zoo builds ([`check_depth`]).

use candle_core::{Result, Tensor};

/// The longest reduction whose summation order `gemm` fixes on every machine.
pub const MAX_DEPTH: usize = 512;

/// `f` (a linear map on the last dimension) applied to `x` `(..., in)` in blocks of at
/// most [`MAX_DEPTH`] rows, concatenated: the same values, and in the backward pass a
/// weight gradient summed block by block in a fixed order.
pub fn by_rows(x: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let Some((&inp, lead)) = dims.split_last() else {
        return f(x);
    };
    let rows: usize = lead.iter().product();
    if rows <= MAX_DEPTH {
        return f(x);
    }
    let flat = x.reshape((rows, inp))?;
    let mut parts = Vec::with_capacity(rows.div_ceil(MAX_DEPTH));
    let mut r = 0;
    while r < rows {
        let n = MAX_DEPTH.min(rows - r);
        parts.push(f(&flat.narrow(0, r, n)?)?);
        r += n;
    }
    let y = Tensor::cat(&parts, 0)?;
    let out = y.dim(1)?;
    let mut shape = lead.to_vec();
    shape.push(out);
    y.reshape(shape)
}

/// An error unless a reduction of `depth` (`what`) keeps the same bits on every
/// machine.
pub fn check_depth(what: &str, depth: usize) -> std::result::Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "{what} is {depth}: training is reproducible across machines only up to \
             {MAX_DEPTH} (the matmul's depth block; see src/model/repro.rs)"
        ));
    }
    Ok(())
}
