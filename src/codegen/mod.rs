//! Backends for the kernel form: each turns a `Kernel` into something that runs it.
//! The reference evaluator (`ir::reference`) defines what they must compute.

pub mod cpu;
pub mod cuda;
mod error;
mod resident;

pub use error::BackendError;
pub use resident::{DevBuf, DevView, DeviceMemory, Resident, ResidentIo, Transfers};

use crate::cancel::Cancel;
use crate::ir::kernel::{Kernel, KernelIo};

/// A kernel ready to run on host memory.
pub trait Launch: Send + Sync {
    /// Runs the whole domain, filling every store and reduction of `io`.
    fn launch(&self, io: &mut KernelIo);
    /// As `launch`, but a device failure (out of memory, a lost device) is an error, not
    /// a panic. CPU engines cannot fail once compiled.
    fn try_launch(&self, io: &mut KernelIo) -> Result<(), BackendError> {
        self.launch(io);
        Ok(())
    }
    /// As `try_launch`, stopping once `cancel` fires (the stores are then partial and
    /// the reason is the error). Engines that cannot stop inside a launch poll before it.
    fn launch_until(&self, io: &mut KernelIo, cancel: &Cancel) -> Result<(), BackendError> {
        cancel.check()?;
        self.try_launch(io)
    }
    /// Runs the whole domain on buffers in the engine's [`DeviceMemory`] (engines that
    /// have one): the inputs and stores are views of device buffers, each reduction a
    /// buffer of `n_units()` f64. The work may still be queued when this returns; the
    /// memory's next download or histogram waits for it.
    fn launch_resident(&self, io: &ResidentIo) -> Result<(), BackendError> {
        let _ = io;
        Err(BackendError::Unavailable(
            "this engine has no device memory".into(),
        ))
    }
}

/// A backend: compiles kernels for one target.
pub trait Engine: Send + Sync {
    fn name(&self) -> &'static str;
    fn compile(&self, k: &Kernel) -> Result<Box<dyn Launch>, BackendError>;
    /// Compiles several kernels (a device engine compiles them as one module).
    fn compile_many(&self, ks: &[Kernel]) -> Result<Vec<Box<dyn Launch>>, BackendError> {
        ks.iter().map(|k| self.compile(k)).collect()
    }
    /// Called after the last launch of one tensor (device engines drop cached uploads).
    fn end_tensor(&self) {}
    /// Whether launches may run from several host threads at once (the CPU engines; a
    /// device engine's launches queue on one stream and are made one at a time).
    fn concurrent_launches(&self) -> bool {
        false
    }
    /// Elements per chunk of a chunked top-k selection's keys (each chunk's keys are
    /// computed, then scanned, by one thread).
    fn select_chunk(&self) -> usize {
        crate::ir::plan::SELECT_CHUNK
    }
    /// The engine's device memory, if its launches run there: the executor then keeps a
    /// tensor's inputs, intermediates and selection keys in it, and moves only results
    /// (and the few values host work needs) back.
    fn memory(&self) -> Option<std::sync::Arc<dyn DeviceMemory>> {
        None
    }
    /// How many tensors the merge may run at once on this engine (a device engine: two,
    /// so that one tensor's uploads overlap the other's kernels).
    fn tensors_in_flight(&self) -> usize {
        1
    }
}

/// The sequential reference evaluator as an engine (slow; the semantics).
pub struct RefEngine;

struct RefLaunch(Kernel);

impl Launch for RefLaunch {
    fn launch(&self, io: &mut KernelIo) {
        crate::ir::reference::run(&self.0, io);
    }
}

impl Engine for RefEngine {
    fn name(&self) -> &'static str {
        "ref"
    }
    fn concurrent_launches(&self) -> bool {
        true
    }
    fn compile(&self, k: &Kernel) -> Result<Box<dyn Launch>, BackendError> {
        Ok(Box::new(RefLaunch(k.clone())))
    }
}
