//! What a backend can fail with, by cause: the caller decides per variant (fall back to
//! the interpreter, report the device, stop).

use crate::cancel::Stop;

#[derive(Clone, Debug, thiserror::Error)]
pub enum BackendError {
    /// The engine cannot run here: no driver or device, no code generator for this CPU.
    #[error("{0}")]
    Unavailable(String),
    /// A kernel did not compile (Cranelift, NVRTC): the engine declines it.
    #[error("{0}")]
    Compile(String),
    /// The device or its driver failed (out of memory, a lost device, a failed launch).
    #[error("{0}")]
    Device(String),
    /// The run was interrupted or ran over its time limit.
    #[error(transparent)]
    Stopped(#[from] Stop),
}

impl From<BackendError> for String {
    fn from(e: BackendError) -> String {
        e.to_string()
    }
}
