//! The GPU backend: kernels rendered as CUDA C (`render`, pure and always compiled),
//! compiled with NVRTC and run through cudarc (`device`, feature `cuda` only).
//!
//! The rendered text is also compiled on the host by the tests, under the emulation
//! shim `kernels/shim.h`, so the CUDA code is checked against `ir::reference` without
//! a GPU.
//!
//! Launch geometry (`geometry`), the same for the GPU and the emulator:
//! - kernels without reductions are *pointwise*: one thread per element (256 threads per
//!   block, grid-stride over the domain);
//! - kernels with reductions use *lanes*: one thread per (unit, lane), a unit being a
//!   canonical 4096-element block (Flat) or a row (Rows), lane `l` in `0..8` summing the
//!   unit's elements `j` with `j % 8 == l` sequentially in f64 in increasing `j`. Lane
//!   partials meet in shared memory after `__syncthreads` and lane 0 combines them as
//!   `((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))`; rows longer than 4096 repeat this per
//!   4096-column segment and add the segment values left to right from 0.0. That is the
//!   canonical order of `semantics::canonical_sum`, so sums are bit-exact.

mod render;
pub mod select;
pub mod staging;

#[cfg(feature = "cuda")]
mod device;
#[cfg(feature = "cuda")]
mod memory;

pub use render::{Param, entry_name, params, render};

#[cfg(feature = "cuda")]
pub use device::{CudaEngine, copy_bandwidth_gbs, probe};

use crate::ir::kernel::{BLOCK, Kernel, LANES};

/// Threads per block of a pointwise kernel.
pub const POINT_THREADS: u32 = 256;
/// Most units (canonical blocks or rows) one block of a lanes kernel holds.
pub const MAX_UNITS_PER_BLOCK: u32 = 16;
/// Most blocks a launch asks for; kernels loop over the rest (grid-stride).
pub const MAX_GRID: u64 = 1 << 20;
/// Shared memory a lanes kernel may use for its lane partials.
const LANE_SMEM_BYTES: usize = 32 * 1024;

/// How a kernel's domain is spread over threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// One thread per element (no reductions: any order gives the same results).
    Pointwise,
    /// One thread per (unit, lane); `units_per_block` units per block.
    Lanes { units_per_block: u32 },
}

/// A launch's shape: `grid` blocks of `block` threads (one-dimensional).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub schedule: Schedule,
    pub grid: u32,
    pub block: u32,
}

/// The launch geometry the rendered kernel was written for.
pub fn geometry(k: &Kernel) -> Geometry {
    if k.n_reductions() == 0 {
        let blocks = (k.numel() as u64).div_ceil(POINT_THREADS as u64);
        return Geometry {
            schedule: Schedule::Pointwise,
            grid: blocks.clamp(1, MAX_GRID) as u32,
            block: POINT_THREADS,
        };
    }
    // Each thread parks one 8-byte partial per reduction in shared memory.
    let mut units = MAX_UNITS_PER_BLOCK;
    while units > 1 && k.n_reductions() * (units as usize * LANES) * 8 > LANE_SMEM_BYTES {
        units /= 2;
    }
    let blocks = (k.n_units() as u64).div_ceil(units as u64);
    Geometry {
        schedule: Schedule::Lanes {
            units_per_block: units,
        },
        grid: blocks.clamp(1, MAX_GRID) as u32,
        block: units * LANES as u32,
    }
}

/// Canonical 4096-element segments per unit of a lanes kernel (1 for Flat kernels).
pub fn segments(k: &Kernel) -> usize {
    match k.kind {
        crate::ir::kernel::KernelKind::Flat => 1,
        crate::ir::kernel::KernelKind::Rows => k.cols.div_ceil(BLOCK).max(1),
    }
}

/// The device, or why there is none. Without the `cuda` feature there never is one.
#[cfg(not(feature = "cuda"))]
pub fn probe() -> Result<String, crate::codegen::BackendError> {
    Err(crate::codegen::BackendError::Unavailable(
        "built without the `cuda` feature; rebuild with --features cuda".into(),
    ))
}

/// Device-to-device copy bandwidth; needs the `cuda` feature.
#[cfg(not(feature = "cuda"))]
pub fn copy_bandwidth_gbs() -> Result<f64, crate::codegen::BackendError> {
    probe().map(|_| 0.0)
}

/// The CUDA engine, or why there is none (probed first: never a panic without a driver).
pub fn engine() -> Result<Box<dyn crate::codegen::Engine>, crate::codegen::BackendError> {
    #[cfg(feature = "cuda")]
    {
        probe()?;
        Ok(Box::new(CudaEngine::new()?))
    }
    #[cfg(not(feature = "cuda"))]
    {
        probe().map(|_| unreachable!("probe fails without the feature"))
    }
}
