//! Running rendered kernels on a GPU: NVRTC compiles, a module cache, uploads and
//! launches through cudarc (feature `cuda`). This file and the CPU JIT hold the crate's
//! `unsafe`; each block says why it is sound.
//!
//! Nothing here panics without a driver: every entry first checks that libcuda and
//! libnvrtc can be loaded (cudarc panics on its first call otherwise), and device
//! errors come back as `Err`. `Launch::launch` has no error path, so a device failure
//! *during* a launch (out of memory, a lost device) panics with the kernel's name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
    sys::CUevent_flags,
};
use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};
use sha2::{Digest, Sha256};

use super::select::{self, Pass};
use super::{Param, geometry, params, render};
use crate::codegen::{BackendError, Engine, Launch};
use crate::ir::kernel::{Kernel, KernelIo};

type Result<T> = std::result::Result<T, BackendError>;

/// A driver or runtime failure.
fn err(e: impl std::fmt::Debug) -> BackendError {
    BackendError::Device(format!("{e:?}"))
}

/// Checks that the driver and NVRTC libraries load, without calling into them.
fn libraries_present() -> Result<()> {
    // SAFETY: `is_culib_present` only tries to dlopen libcuda under its usual names and
    // closes it again; it calls no CUDA function.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(BackendError::Unavailable(
            "no CUDA driver library (libcuda.so) found".into(),
        ));
    }
    // SAFETY: as above, for libnvrtc.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(BackendError::Unavailable(
            "no NVRTC library (libnvrtc.so) found; add the CUDA toolkit's lib64 directory \
             to LD_LIBRARY_PATH"
                .into(),
        ));
    }
    Ok(())
}

/// Runs `f` after the library check, turning a panic inside cudarc into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    libraries_present()?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        let why = "the CUDA library panicked (see the message above)";
        Err(BackendError::Device(why.into()))
    })
}

fn context() -> Result<Arc<CudaContext>> {
    CudaContext::new(0)
        .map_err(|e| BackendError::Unavailable(format!("no usable CUDA device: {e:?}")))
}

fn describe(ctx: &CudaContext) -> Result<String> {
    let name = ctx.name().map_err(err)?;
    let (major, minor) = ctx.compute_capability().map_err(err)?;
    let mem = ctx.total_mem().map_err(err)? as f64 / (1u64 << 30) as f64;
    Ok(format!("{name} (sm_{major}{minor}, {mem:.1} GiB)"))
}

/// Describes device 0, or says why there is none. Never panics.
pub fn probe() -> Result<String> {
    guarded(|| {
        let ctx = context()?;
        describe(&ctx)
    })
}

/// Device-to-device copy bandwidth in GB/s (bytes read plus bytes written, per second),
/// the best of 5 copies of 1 GiB timed with events.
pub fn copy_bandwidth_gbs() -> Result<f64> {
    guarded(|| {
        let ctx = context()?;
        let stream = ctx.default_stream();
        let n = 1usize << 30;
        let src = stream.alloc_zeros::<u8>(n).map_err(err)?;
        let mut dst = stream.alloc_zeros::<u8>(n).map_err(err)?;
        stream.memcpy_dtod(&src, &mut dst).map_err(err)?;
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let start = stream
                .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(err)?;
            stream.memcpy_dtod(&src, &mut dst).map_err(err)?;
            let end = stream
                .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(err)?;
            best = best.min(start.elapsed_ms(&end).map_err(err)? as f64);
        }
        Ok(2.0 * n as f64 / (best / 1e3) / 1e9)
    })
}

/// Key of an uploaded host slice: the thread that launched, its address and length.
type UploadKey = (ThreadId, usize, usize);

struct Inner {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    description: String,
    /// `--gpu-architecture` for NVRTC, unless NVRTC rejected it once.
    arch: Mutex<Option<String>>,
    /// Loaded modules by the SHA-256 of their source.
    modules: Mutex<HashMap<[u8; 32], Arc<CudaModule>>>,
    /// Device copies of input slices, until the uploading thread's `end_tensor`.
    uploads: Mutex<HashMap<UploadKey, Arc<CudaSlice<u8>>>>,
    select: OnceLock<Result<CudaFunction>>,
    /// Device time of the latest kernel launch, in milliseconds.
    last_kernel_ms: Mutex<Option<f32>>,
}

/// The GPU engine: renders each kernel as CUDA C, compiles it with NVRTC (cached by
/// source), and runs launches on device 0.
///
/// Input slices are uploaded once per (thread, address, length) and reused until that
/// thread calls `end_tensor`: a caller must not change an input's bytes in between.
pub struct CudaEngine {
    inner: Arc<Inner>,
}

impl CudaEngine {
    /// Opens device 0, or says why it cannot. Never panics.
    pub fn new() -> Result<CudaEngine> {
        guarded(|| {
            let ctx = context()?;
            let description = describe(&ctx)?;
            let (major, minor) = ctx.compute_capability().map_err(err)?;
            let stream = ctx.default_stream();
            Ok(CudaEngine {
                inner: Arc::new(Inner {
                    ctx,
                    stream,
                    description,
                    arch: Mutex::new(Some(format!("--gpu-architecture=compute_{major}{minor}"))),
                    modules: Mutex::new(HashMap::new()),
                    uploads: Mutex::new(HashMap::new()),
                    select: OnceLock::new(),
                    last_kernel_ms: Mutex::new(None),
                }),
            })
        })
    }

    /// The device, in words.
    pub fn device(&self) -> &str {
        &self.inner.description
    }

    /// Compiles (or finds in the cache) a translation unit and loads it.
    pub fn module(&self, src: &str) -> Result<Arc<CudaModule>> {
        self.inner.module(src)
    }

    /// Compiles several kernels with one NVRTC call (one translation unit).
    pub fn compile_all(&self, ks: &[Kernel]) -> Result<Vec<Box<dyn Launch>>> {
        let module = self.inner.module(&render(ks))?;
        ks.iter()
            .enumerate()
            .map(|(i, k)| self.launcher(&module, i, k))
            .collect()
    }

    /// Runs kernel `index` of a CUDA translation unit written for `ks` by `render`, possibly
    /// edited by hand (to try a variant of the prelude, say).
    pub fn compile_source(&self, src: &str, index: usize, k: &Kernel) -> Result<Box<dyn Launch>> {
        let module = self.inner.module(src)?;
        self.launcher(&module, index, k)
    }

    fn launcher(
        &self,
        module: &Arc<CudaModule>,
        index: usize,
        k: &Kernel,
    ) -> Result<Box<dyn Launch>> {
        let func = module
            .load_function(&super::entry_name(index, &k.name))
            .map_err(err)?;
        Ok(Box::new(CudaLaunch {
            inner: self.inner.clone(),
            func,
            kernel: k.clone(),
        }))
    }

    /// Device time of the latest kernel launch (not its copies), in milliseconds.
    pub fn last_kernel_ms(&self) -> Option<f32> {
        self.inner.last_kernel_ms.lock().ok().and_then(|t| *t)
    }

    /// `TopSel` arguments `(t, cut)` selecting the `k` largest |x| (ties: lower index).
    pub fn topk_cut(&self, x: &[f32], k: usize) -> Result<(u64, u64)> {
        let dev = self.upload_f32(x)?;
        let mut hist = |p: &Pass| Ok(self.histogram(&dev, x.len(), p)?);
        select::topk_cut(x.len(), k, &mut hist).map_err(BackendError::Device)
    }

    /// The element of 0-based `rank` in `f32::total_cmp` order.
    pub fn kth_smallest(&self, x: &[f32], rank: usize) -> Result<f32> {
        let dev = self.upload_f32(x)?;
        let mut hist = |p: &Pass| Ok(self.histogram(&dev, x.len(), p)?);
        select::kth_smallest(rank, &mut hist).map_err(BackendError::Device)
    }

    /// `semantics::quantile(x, q)`, with the order statistics found on the GPU.
    pub fn quantile(&self, x: &[f32], q: f32) -> Result<f32> {
        let dev = self.upload_f32(x)?;
        let mut hist = |p: &Pass| Ok(self.histogram(&dev, x.len(), p)?);
        select::quantile(x.len(), q, &mut hist).map_err(BackendError::Device)
    }

    fn upload_f32(&self, x: &[f32]) -> Result<CudaSlice<f32>> {
        if x.len() >= 1 << 32 {
            return Err(BackendError::Device(
                "radix select: at most 2^32 - 1 elements".into(),
            ));
        }
        self.inner.stream.clone_htod(x).map_err(err)
    }

    /// One pass of `kernels/select.cu` over a device buffer.
    pub fn histogram(&self, x: &CudaSlice<f32>, n: usize, p: &Pass) -> Result<[u32; 256]> {
        let inner = &self.inner;
        let func = inner
            .select
            .get_or_init(|| {
                let module = inner.module(&select::source())?;
                module.load_function(select::ENTRY).map_err(err)
            })
            .clone()?;
        let s = &inner.stream;
        let mut hist = s.alloc_zeros::<u32>(256).map_err(err)?;
        let blocks = (n as u64).div_ceil(select::THREADS as u64).clamp(1, 4096) as u32;
        let (n64, kind) = (n as u64, p.kind as u32);
        let mut b = s.launch_builder(&func);
        b.arg(x).arg(&n64).arg(&kind).arg(&p.tie).arg(&p.prefix);
        b.arg(&p.mask).arg(&p.shift).arg(&mut hist);
        let cfg = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (select::THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the arguments match `mergec_radix_hist`'s parameters in order and type
        // (const float*, u64, then five u32, then u32*); `x` holds `n` floats and `hist`
        // 256 counters; the kernel reads x[0..n) and writes hist[0..256) only.
        unsafe { b.launch(cfg) }.map_err(err)?;
        let mut out = [0u32; 256];
        s.memcpy_dtoh(&hist, &mut out).map_err(err)?;
        s.synchronize().map_err(err)?;
        Ok(out)
    }
}

impl Inner {
    fn module(&self, src: &str) -> Result<Arc<CudaModule>> {
        let key: [u8; 32] = Sha256::digest(src.as_bytes()).into();
        if let Some(m) = self.modules.lock().map_err(err)?.get(&key) {
            return Ok(m.clone());
        }
        let ptx = self.compile(src)?;
        let module = self.ctx.load_module(ptx).map_err(err)?;
        self.modules
            .lock()
            .map_err(err)?
            .insert(key, module.clone());
        Ok(module)
    }

    /// NVRTC with IEEE semantics: no FMA contraction, precise division and square root,
    /// subnormals kept. Retries without `--gpu-architecture` if NVRTC does not know it.
    fn compile(&self, src: &str) -> Result<cudarc::nvrtc::Ptx> {
        if src.contains('\0') {
            return Err(BackendError::Compile("CUDA source holds a NUL byte".into()));
        }
        let arch = self.arch.lock().map_err(err)?.clone();
        let opts = |arch: Option<String>| CompileOptions {
            ftz: Some(false),
            prec_sqrt: Some(true),
            prec_div: Some(true),
            fmad: Some(false),
            options: arch.into_iter().collect(),
            ..Default::default()
        };
        match compile_ptx_with_opts(src, opts(arch.clone())) {
            Ok(ptx) => Ok(ptx),
            Err(first) if arch.is_some() => {
                let ptx = compile_ptx_with_opts(src, opts(None)).map_err(|e| {
                    let why = format!("NVRTC: {first}\nthen without the architecture: {e}");
                    BackendError::Compile(why)
                })?;
                *self.arch.lock().map_err(err)? = None;
                Ok(ptx)
            }
            Err(e) => Err(BackendError::Compile(format!("NVRTC: {e}"))),
        }
    }

    fn upload(&self, bytes: &[u8]) -> Result<Arc<CudaSlice<u8>>> {
        let key = (
            std::thread::current().id(),
            bytes.as_ptr() as usize,
            bytes.len(),
        );
        if let Some(d) = self.uploads.lock().map_err(err)?.get(&key) {
            return Ok(d.clone());
        }
        let d = Arc::new(self.stream.clone_htod(bytes).map_err(err)?);
        self.uploads.lock().map_err(err)?.insert(key, d.clone());
        Ok(d)
    }
}

impl Engine for CudaEngine {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn compile(&self, k: &Kernel) -> Result<Box<dyn Launch>> {
        let module = self.inner.module(&render(std::slice::from_ref(k)))?;
        self.launcher(&module, 0, k)
    }

    fn compile_many(&self, ks: &[Kernel]) -> Result<Vec<Box<dyn Launch>>> {
        self.compile_all(ks)
    }

    fn end_tensor(&self) {
        let me = std::thread::current().id();
        if let Ok(mut uploads) = self.inner.uploads.lock() {
            uploads.retain(|key, _| key.0 != me);
        }
    }
}

struct CudaLaunch {
    inner: Arc<Inner>,
    func: CudaFunction,
    kernel: Kernel,
}

impl Launch for CudaLaunch {
    fn launch(&self, io: &mut KernelIo) {
        if let Err(e) = self.try_launch(io) {
            panic!("{e}");
        }
    }

    fn try_launch(&self, io: &mut KernelIo) -> Result<()> {
        self.run(io).map_err(|e| {
            BackendError::Device(format!("cuda: kernel `{}` failed: {e}", self.kernel.name))
        })
    }
}

impl CudaLaunch {
    /// Checks that `io` has the buffers and arguments the kernel's signature needs.
    fn check(&self, io: &KernelIo) -> Result<()> {
        let k = &self.kernel;
        let sizes = k
            .inputs
            .iter()
            .map(|i| k.input_len(i.mode) * i.dtype.size());
        let ok = io.inputs.len() == k.inputs.len()
            && io.inputs.iter().zip(sizes).all(|(b, n)| b.len() == n)
            && io.stores.len() == k.n_stores()
            && io.reductions.len() == k.n_reductions()
            && io.reductions.iter().all(|r| r.len() == k.n_units())
            && io.args.f32.len() >= k.n_f32 as usize
            && io.args.f64.len() >= k.n_f64 as usize
            && io.args.u64.len() >= k.n_u64 as usize;
        let store_sizes = k.sinks.iter().filter_map(|s| match s {
            crate::ir::kernel::Sink::Store { dtype, .. } => Some(k.numel() * dtype.size()),
            crate::ir::kernel::Sink::Reduce { .. } => None,
        });
        if ok && io.stores.iter().zip(store_sizes).all(|(b, n)| b.len() == n) {
            Ok(())
        } else {
            Err(BackendError::Device(
                "the launch's buffers or arguments do not fit the kernel".into(),
            ))
        }
    }

    fn run(&self, io: &mut KernelIo) -> Result<()> {
        self.check(io)?;
        let (k, inner) = (&self.kernel, &self.inner);
        let s = &inner.stream;
        let inputs = io
            .inputs
            .iter()
            .map(|b| inner.upload(b))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        // SAFETY (both allocations): uninitialised device memory that is never read
        // before the kernel writes it: the kernel stores every element of the domain into
        // every store buffer and one value per unit into every reduction buffer.
        let mut stores = io
            .stores
            .iter()
            .map(|b| unsafe { s.alloc::<u8>(b.len()) })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(err)?;
        let mut reds = (0..k.n_reductions())
            .map(|_| unsafe { s.alloc::<f64>(k.n_units()) })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(err)?;
        let mut b = s.launch_builder(&self.func);
        debug_assert!(params(k).windows(2).all(|w| order(w[0]) <= order(w[1])));
        for d in &inputs {
            b.arg(d.as_ref());
        }
        for d in stores.iter_mut() {
            b.arg(d);
        }
        for d in reds.iter_mut() {
            b.arg(d);
        }
        for x in &io.args.f32[..k.n_f32 as usize] {
            b.arg(x);
        }
        for x in &io.args.f64[..k.n_f64 as usize] {
            b.arg(x);
        }
        for x in &io.args.u64[..k.n_u64 as usize] {
            b.arg(x);
        }
        let g = geometry(k);
        let cfg = LaunchConfig {
            grid_dim: (g.grid, 1, 1),
            block_dim: (g.block, 1, 1),
            shared_mem_bytes: 0,
        };
        b.record_kernel_launch(CUevent_flags::CU_EVENT_DEFAULT);
        // SAFETY: the arguments follow `params(k)` (inputs, stores, reductions, f32, f64,
        // u64), the order and C types `render` gave the entry; `check` verified every
        // buffer's size, and the kernel indexes only within the domain those sizes cover.
        let events = unsafe { b.launch(cfg) }.map_err(err)?;
        for (d, host) in stores.iter().zip(io.stores.iter_mut()) {
            s.memcpy_dtoh(d, &mut **host).map_err(err)?;
        }
        for (d, host) in reds.iter().zip(io.reductions.iter_mut()) {
            s.memcpy_dtoh(d, &mut **host).map_err(err)?;
        }
        s.synchronize().map_err(err)?;
        if let Some((start, end)) = events {
            let ms = start.elapsed_ms(&end).map_err(err)?;
            *inner.last_kernel_ms.lock().map_err(err)? = Some(ms);
        }
        Ok(())
    }
}

/// Rank of a parameter kind in the entry's signature.
fn order(p: Param) -> u8 {
    match p {
        Param::Input(_) => 0,
        Param::Store(_) => 1,
        Param::Reduction(_) => 2,
        Param::F32(_) => 3,
        Param::F64(_) => 4,
        Param::U64(_) => 5,
    }
}
