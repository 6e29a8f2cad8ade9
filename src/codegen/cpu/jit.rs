//! Cranelift setup and the native code of one kernel: the JIT module that owns
//! it, and the one place that turns its address into a callable function.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module, default_libcall_names};

use super::launch::RawIo;
use super::plan::KernelInfo;
use super::translate::translate;
use crate::ir::kernel::Kernel;

/// The native function of a kernel: runs units `[lo, hi)`.
type KernelFn = unsafe extern "C" fn(*const RawIo, u64, u64);

/// The host's code generator.
pub(crate) struct Jit {
    isa: OwnedTargetIsa,
}

/// A compiled kernel: its entry point and the memory that holds it.
pub(crate) struct JitKernel {
    f: KernelFn,
    /// Kept to free the code when the kernel is dropped (never used otherwise).
    module: Mutex<Option<JITModule>>,
}

fn describe(e: impl std::fmt::Display) -> String {
    format!("jit: {e}")
}

impl Jit {
    pub(crate) fn new() -> Result<Jit, String> {
        let mut flags = settings::builder();
        for (k, v) in [
            ("opt_level", "speed"),
            ("use_colocated_libcalls", "false"),
            ("is_pic", "false"),
        ] {
            flags.set(k, v).map_err(describe)?;
        }
        let isa = cranelift_native::builder()
            .map_err(describe)?
            .finish(settings::Flags::new(flags))
            .map_err(describe)?;
        Ok(Jit { isa })
    }

    /// Generates and links the native function of `k`. Internal failures (including
    /// panics inside Cranelift) come back as errors.
    pub(crate) fn compile(&self, k: &Kernel, p: &KernelInfo) -> Result<JitKernel, String> {
        match catch_unwind(AssertUnwindSafe(|| self.compile_inner(k, p))) {
            Ok(r) => r,
            Err(_) => Err(format!(
                "jit: code generation for kernel {} panicked",
                k.name
            )),
        }
    }

    /// The Cranelift IR of `k`'s function, as text (`mergec compile --emit clif`).
    pub(crate) fn clif(&self, k: &Kernel, p: &KernelInfo) -> Result<String, String> {
        let module = JITModule::new(JITBuilder::with_isa(
            self.isa.clone(),
            default_libcall_names(),
        ));
        let mut ctx = module.make_context();
        let mut fctx = FunctionBuilderContext::new();
        let cc = self.isa.default_call_conv();
        translate(&mut ctx.func, &mut fctx, k, p, cc, module.target_config())?;
        Ok(ctx.func.display().to_string())
    }

    fn compile_inner(&self, k: &Kernel, p: &KernelInfo) -> Result<JitKernel, String> {
        let mut module = JITModule::new(JITBuilder::with_isa(
            self.isa.clone(),
            default_libcall_names(),
        ));
        let mut ctx = module.make_context();
        let mut fctx = FunctionBuilderContext::new();
        let cc = self.isa.default_call_conv();
        translate(&mut ctx.func, &mut fctx, k, p, cc, module.target_config())?;
        let id = module
            .declare_function("kernel", Linkage::Local, &ctx.func.signature)
            .map_err(describe)?;
        let dump = std::env::var_os("MERGEC_JIT_DUMP").is_some();
        ctx.set_disasm(dump);
        if dump {
            eprintln!("{}", ctx.func.display());
        }
        module
            .define_function(id, &mut ctx)
            .map_err(|e| format!("jit: kernel {}: {e:?}", k.name))?;
        if dump {
            // After compiling, the function is the optimized one (what was lowered).
            eprintln!("; optimized\n{}", ctx.func.display());
        }
        if let Some(code) = ctx.compiled_code().filter(|_| dump) {
            eprintln!("{}", code.vcode.as_deref().unwrap_or(""));
        }
        module.finalize_definitions().map_err(describe)?;
        let code = module.get_finalized_function(id);
        // SAFETY: `code` is the finalized (executable) entry of a function built by
        // `translate` with `kernel_signature`: three i64 parameters, no results, in the
        // host's default C calling convention, which is `KernelFn`. The memory stays
        // mapped while `module` lives, and `JitKernel` owns `module`.
        let f = unsafe { std::mem::transmute::<*const u8, KernelFn>(code) };
        Ok(JitKernel {
            f,
            module: Mutex::new(Some(module)),
        })
    }
}

impl JitKernel {
    /// Runs units `[lo, hi)` of the kernel.
    ///
    /// # Safety
    /// `io` must point to a `RawIo` whose pointers cover every element the kernel
    /// reads and writes for those units (as `launch` checks), and no other thread
    /// may access the memory units `[lo, hi)` write while this runs.
    pub(crate) unsafe fn call(&self, io: *const RawIo, lo: usize, hi: usize) {
        // SAFETY: the caller upholds this function's contract; `self.f` is valid
        // while `self` (and its module) lives.
        unsafe { (self.f)(io, lo as u64, hi as u64) }
    }
}

impl Drop for JitKernel {
    fn drop(&mut self) {
        let module = match self.module.get_mut() {
            Ok(m) => m.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(m) = module {
            // SAFETY: `&mut self` means no call through `self.f` is running, and
            // `self.f` is dropped with `self`, so the code is never run again.
            unsafe { m.free_memory() }
        }
    }
}
