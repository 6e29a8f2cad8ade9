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

use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaModule, CudaSlice, CudaStream, CudaView,
    LaunchConfig, PushKernelArg, sys::CUevent_flags,
};
use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};
use sha2::{Digest, Sha256};

use super::memory::{GpuMemory, missing};
use super::select::{self, Pass};
use super::{Param, geometry, params, render};
use crate::codegen::{
    BackendError, DevBuf, DevView, DeviceMemory, Engine, Launch, ResidentIo, Transfers,
};
use crate::ir::kernel::{Args, Kernel, KernelIo};

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

struct Inner {
    ctx: Arc<CudaContext>,
    description: String,
    /// `--gpu-architecture` for NVRTC, unless NVRTC rejected it once.
    arch: Mutex<Option<String>>,
    /// Loaded modules by the SHA-256 of their source.
    modules: Mutex<HashMap<[u8; 32], Arc<CudaModule>>>,
    /// Buffers, streams and staging (see `memory`).
    mem: GpuMemory,
    select: OnceLock<Result<CudaFunction>>,
    /// Events around the latest kernel launch, for its device time.
    last_kernel: Mutex<Option<(CudaEvent, CudaEvent)>>,
}

/// The GPU engine: renders each kernel as CUDA C, compiles it with NVRTC (cached by
/// source), and runs launches on device 0.
///
/// Its device memory ([`DeviceMemory`]) keeps the merge executor's tensors on the GPU;
/// a launch on host memory (`Launch::launch`) uploads, runs and downloads.
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
            Ok(CudaEngine {
                inner: Arc::new(Inner {
                    mem: GpuMemory::new(ctx.clone()),
                    ctx,
                    description,
                    arch: Mutex::new(Some(format!("--gpu-architecture=compute_{major}{minor}"))),
                    modules: Mutex::new(HashMap::new()),
                    select: OnceLock::new(),
                    last_kernel: Mutex::new(None),
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
        let (start, end) = self.inner.last_kernel.lock().ok()?.take()?;
        end.synchronize().ok()?;
        start.elapsed_ms(&end).ok()
    }

    /// `TopSel` arguments `(t, cut)` selecting the `k` largest |x| (ties: lower index).
    pub fn topk_cut(&self, x: &[f32], k: usize) -> Result<(u64, u64)> {
        self.with_upload(x, &mut |hist| select::topk_cut(x.len(), k, hist))
    }

    /// The element of 0-based `rank` in `f32::total_cmp` order.
    pub fn kth_smallest(&self, x: &[f32], rank: usize) -> Result<f32> {
        self.with_upload(x, &mut |hist| select::kth_smallest(rank, hist))
    }

    /// `semantics::quantile(x, q)`, with the order statistics found on the GPU.
    pub fn quantile(&self, x: &[f32], q: f32) -> Result<f32> {
        self.with_upload(x, &mut |hist| select::quantile(x.len(), q, hist))
    }

    /// Runs a radix selection over `x`, uploaded for it.
    fn with_upload<T>(
        &self,
        x: &[f32],
        f: &mut dyn FnMut(&mut select::Histogram) -> std::result::Result<T, String>,
    ) -> Result<T> {
        let mem = self.inner.as_ref();
        let dev = DeviceMemory::upload(mem, zerocopy::IntoBytes::as_bytes(x))?;
        let r = f(&mut |p: &Pass| mem.histogram(dev.all(), p).map_err(String::from));
        mem.free(dev);
        r.map_err(BackendError::Device)
    }

    /// Bytes moved to and from the device so far, and the copies' device times.
    pub fn transfers(&self) -> Transfers {
        self.inner.mem.transfers()
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

    /// Queues one pass of `kernels/select.cu` over `n` floats from `offset` of `x`.
    fn queue_histogram(
        &self,
        s: &Arc<CudaStream>,
        x: &CudaSlice<u8>,
        (offset, len): (usize, usize),
        p: &Pass,
        hist: &mut CudaSlice<u32>,
    ) -> Result<()> {
        let n = len / 4;
        if n >= 1 << 32 {
            return Err(BackendError::Device(
                "radix select: at most 2^32 - 1 elements".into(),
            ));
        }
        let func = self
            .select
            .get_or_init(|| {
                let module = self.module(&select::source())?;
                module.load_function(select::ENTRY).map_err(err)
            })
            .clone()?;
        let x = x.slice(offset..offset + len);
        let blocks = (n as u64).div_ceil(select::THREADS as u64).clamp(1, 4096) as u32;
        let (n64, kind) = (n as u64, p.kind as u32);
        let mut b = s.launch_builder(&func);
        b.arg(&x).arg(&n64).arg(&kind).arg(&p.tie).arg(&p.prefix);
        b.arg(&p.mask).arg(&p.shift).arg(hist);
        let cfg = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (select::THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the arguments match `mergec_radix_hist`'s parameters in order and type
        // (const float*, u64, then five u32, then u32*); `x` holds `n` floats and `hist`
        // 256 counters; the kernel reads x[0..n) and writes hist[0..256) only.
        unsafe { b.launch(cfg) }.map_err(err)?;
        Ok(())
    }
}

impl DeviceMemory for Inner {
    fn upload(&self, bytes: &[u8]) -> Result<DevBuf> {
        self.mem.upload(bytes)
    }
    fn alloc(&self, len: usize) -> Result<DevBuf> {
        self.mem.alloc(len)
    }
    fn download(&self, v: DevView, out: &mut [u8]) -> Result<()> {
        self.mem.download(v, out)
    }
    fn free(&self, b: DevBuf) {
        self.mem.free(b)
    }
    fn histogram(&self, x: DevView, p: &Pass) -> Result<[u32; 256]> {
        let launch = |s: &Arc<CudaStream>, d: &CudaSlice<u8>, at, p: &Pass, h: &mut _| {
            self.queue_histogram(s, d, at, p, h)
        };
        self.mem.histogram(x, p, &launch)
    }
    fn transfers(&self) -> Transfers {
        self.mem.transfers()
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
        // Folds the tensor's copy times into the totals (its copies are done by now).
        let _ = self.inner.mem.settle();
    }

    fn memory(&self) -> Option<Arc<dyn DeviceMemory>> {
        Some(self.inner.clone())
    }

    fn tensors_in_flight(&self) -> usize {
        2
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
        self.run(io).map_err(|e| self.failed(e))
    }

    fn launch_resident(&self, io: &ResidentIo) -> Result<()> {
        self.queue(io).map_err(|e| self.failed(e))
    }
}

impl CudaLaunch {
    fn failed(&self, e: BackendError) -> BackendError {
        let name = &self.kernel.name;
        BackendError::Device(format!("cuda: kernel `{name}` failed: {e}"))
    }

    /// Checks that the buffers' sizes (bytes; reductions in values) and the arguments fit
    /// the kernel's signature.
    fn fits(
        &self,
        inputs: &[usize],
        stores: &[usize],
        reductions: &[usize],
        args: &Args,
    ) -> Result<()> {
        let k = &self.kernel;
        let sizes = k
            .inputs
            .iter()
            .map(|i| k.input_len(i.mode) * i.dtype.size());
        let store_sizes = k.sinks.iter().filter_map(|s| match s {
            crate::ir::kernel::Sink::Store { dtype, .. } => Some(k.numel() * dtype.size()),
            crate::ir::kernel::Sink::Reduce { .. } => None,
        });
        let ok = inputs.len() == k.inputs.len()
            && inputs.iter().zip(sizes).all(|(&b, n)| b == n)
            && stores.len() == k.n_stores()
            && stores.iter().zip(store_sizes).all(|(&b, n)| b == n)
            && reductions.len() == k.n_reductions()
            && reductions.iter().all(|&r| r == k.n_units())
            && args.f32.len() >= k.n_f32 as usize
            && args.f64.len() >= k.n_f64 as usize
            && args.u64.len() >= k.n_u64 as usize;
        if ok {
            Ok(())
        } else {
            Err(BackendError::Device(
                "the launch's buffers or arguments do not fit the kernel".into(),
            ))
        }
    }

    /// Queues the kernel on the calling thread's stream, on device buffers.
    fn queue(&self, io: &ResidentIo) -> Result<()> {
        let lens = |vs: &[DevView]| vs.iter().map(|v| v.len).collect::<Vec<_>>();
        let reds: Vec<usize> = io.reductions.iter().map(|b| b.len() / 8).collect();
        self.fits(&lens(&io.inputs), &lens(&io.stores), &reds, io.args)?;
        let (k, inner) = (&self.kernel, &self.inner);
        let lane = inner.mem.lane()?;
        let s = &lane.stream;
        let events = inner.mem.with_bufs(|bufs| {
            let view = |v: &DevView| -> Result<CudaView<u8>> {
                let d = bufs.get(&v.buf.id()).ok_or_else(|| missing(v.buf.id()))?;
                Ok(d.slice(v.offset..v.offset + v.len))
            };
            let all = |b: &DevBuf| view(&b.all());
            let inputs = io.inputs.iter().map(view).collect::<Result<Vec<_>>>()?;
            let stores = io.stores.iter().map(view).collect::<Result<Vec<_>>>()?;
            let reds = io
                .reductions
                .iter()
                .map(|b| all(b))
                .collect::<Result<Vec<_>>>()?;
            let mut b = s.launch_builder(&self.func);
            debug_assert!(params(k).windows(2).all(|w| order(w[0]) <= order(w[1])));
            for d in inputs.iter().chain(&stores).chain(&reds) {
                b.arg(d);
            }
            let args = io.args;
            for x in &args.f32[..k.n_f32 as usize] {
                b.arg(x);
            }
            for x in &args.f64[..k.n_f64 as usize] {
                b.arg(x);
            }
            for x in &args.u64[..k.n_u64 as usize] {
                b.arg(x);
            }
            let g = geometry(k);
            let cfg = LaunchConfig {
                grid_dim: (g.grid, 1, 1),
                block_dim: (g.block, 1, 1),
                shared_mem_bytes: 0,
            };
            b.record_kernel_launch(CUevent_flags::CU_EVENT_DEFAULT);
            // SAFETY: the arguments follow `params(k)` (inputs, stores, reductions, f32,
            // f64, u64), the order and C types `render` gave the entry; `fits` checked
            // every view's size, and the kernel indexes only within the domain those
            // sizes cover. Stores and reductions are views of buffers no other launch
            // reads meanwhile (the executor allocates them for this launch).
            unsafe { b.launch(cfg) }.map_err(err)
        })?;
        if let Some(ev) = events {
            *inner.last_kernel.lock().map_err(err)? = Some(ev);
        }
        Ok(())
    }

    /// A launch on host memory: uploads the inputs, runs, downloads the results (`queue`
    /// checks the sizes).
    fn run(&self, io: &mut KernelIo) -> Result<()> {
        let mem: &dyn DeviceMemory = self.inner.as_ref();
        let mut held: Vec<DevBuf> = Vec::new();
        let r = self.run_held(io, mem, &mut held);
        for b in held {
            mem.free(b);
        }
        r
    }

    fn run_held(
        &self,
        io: &mut KernelIo,
        mem: &dyn DeviceMemory,
        held: &mut Vec<DevBuf>,
    ) -> Result<()> {
        let (ni, ns) = (io.inputs.len(), io.stores.len());
        for b in &io.inputs {
            held.push(mem.upload(b)?);
        }
        for b in &io.stores {
            held.push(mem.alloc(b.len())?);
        }
        for r in &io.reductions {
            held.push(mem.alloc(r.len() * 8)?);
        }
        let rio = ResidentIo {
            inputs: held[..ni].iter().map(DevBuf::all).collect(),
            args: io.args,
            stores: held[ni..ni + ns].iter().map(DevBuf::all).collect(),
            reductions: held[ni + ns..].iter().collect(),
        };
        self.queue(&rio)?;
        for (d, host) in held[ni..ni + ns].iter().zip(io.stores.iter_mut()) {
            mem.download(d.all(), host)?;
        }
        for (d, host) in held[ni + ns..].iter().zip(io.reductions.iter_mut()) {
            mem.download(d.all(), zerocopy::IntoBytes::as_mut_bytes(&mut **host))?;
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
