//! Device memory: buffers an engine's launches read and write in place, so that a
//! tensor's inputs go up once in their storage dtype, intermediates and selection keys
//! stay where the kernels run, and only results come down (the GPU path).
//!
//! [`DeviceMemory`] is what the executor (`exec::run`) needs of a device; the CUDA engine
//! implements it with cudarc (per-thread streams, reused page-locked staging), and
//! [`Resident`] implements it in host RAM around any CPU engine. `Resident` is the
//! fallback that runs the executor's device path without a GPU: the tests run every
//! program through it on the reference engine (its launches recorded and replayed as
//! CUDA C under the emulation shim) and on the JIT, and compare with the interpreter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::cuda::select::{Pass, host_histogram};
use super::{BackendError, Engine, Launch};
use crate::ir::kernel::{Args, Kernel, KernelIo};
use zerocopy::{FromBytes, IntoBytes};

type Result<T> = std::result::Result<T, BackendError>;

/// A buffer in an engine's device memory: a handle, freed by [`DeviceMemory::free`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DevBuf {
    id: u64,
    len: usize,
}

impl DevBuf {
    /// A handle to buffer `id` of `len` bytes (for memory implementations).
    pub fn new(id: u64, len: usize) -> DevBuf {
        DevBuf { id, len }
    }
    pub fn id(&self) -> u64 {
        self.id
    }
    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// All of it.
    pub fn all(&self) -> DevView<'_> {
        DevView {
            buf: self,
            offset: 0,
            len: self.len,
        }
    }
    /// `len` bytes from `offset`.
    pub fn view(&self, offset: usize, len: usize) -> DevView<'_> {
        debug_assert!(offset + len <= self.len, "a view past its buffer's end");
        DevView {
            buf: self,
            offset,
            len,
        }
    }
}

/// A byte range of a device buffer.
#[derive(Clone, Copy, Debug)]
pub struct DevView<'a> {
    pub buf: &'a DevBuf,
    pub offset: usize,
    pub len: usize,
}

/// What a resident launch reads and writes (as `KernelIo`, in device memory).
pub struct ResidentIo<'a> {
    /// One per kernel input: storage bytes, `input_len(mode)` elements.
    pub inputs: Vec<DevView<'a>>,
    pub args: &'a Args,
    /// One per `Store` sink, in sink order: `numel * dtype.size()` bytes.
    pub stores: Vec<DevView<'a>>,
    /// One per `Reduce` sink: `n_units()` f64.
    pub reductions: Vec<&'a DevBuf>,
}

/// Bytes moved between the host and a device, and the time the copies took.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Transfers {
    pub up_bytes: u64,
    pub up_secs: f64,
    pub down_bytes: u64,
    pub down_secs: f64,
}

impl Transfers {
    /// Host-to-device GB/s, if anything went up.
    pub fn up_gbs(&self) -> Option<f64> {
        (self.up_secs > 0.0).then(|| self.up_bytes as f64 / self.up_secs / 1e9)
    }
    /// Device-to-host GB/s, if anything came down.
    pub fn down_gbs(&self) -> Option<f64> {
        (self.down_secs > 0.0).then(|| self.down_bytes as f64 / self.down_secs / 1e9)
    }
}

/// Memory a device engine's resident launches ([`Launch::launch_resident`]) run on. Work
/// queued by one host thread runs in order; `download` and `histogram` wait for it.
pub trait DeviceMemory: Send + Sync {
    /// Copies host bytes into a new buffer.
    fn upload(&self, bytes: &[u8]) -> Result<DevBuf>;
    /// A new buffer of `len` bytes, its contents unspecified until written.
    fn alloc(&self, len: usize) -> Result<DevBuf>;
    /// Copies a view to the host (`out.len() == v.len`), once the work before it is done.
    fn download(&self, v: DevView, out: &mut [u8]) -> Result<()>;
    fn free(&self, b: DevBuf);
    /// One pass of `kernels/select.cu` over the f32 elements of `x` (indices from 0 at
    /// the view's start): what `host_histogram` computes.
    fn histogram(&self, x: DevView, p: &Pass) -> Result<[u32; 256]>;
    /// What went up and down so far.
    fn transfers(&self) -> Transfers;
}

/// A CPU engine whose launches also run on device memory held in host RAM (the device
/// path without a device; see the module's doc).
pub struct Resident<E> {
    inner: E,
    mem: Arc<HostMemory>,
}

impl<E: Engine> Resident<E> {
    pub fn new(inner: E) -> Resident<E> {
        Resident {
            inner,
            mem: Arc::new(HostMemory::default()),
        }
    }
    /// Buffers not freed yet (0 once every tensor is done: nothing leaks).
    pub fn live_buffers(&self) -> usize {
        self.mem.bufs.lock().map(|b| b.len()).unwrap_or(usize::MAX)
    }
}

impl<E: Engine> Engine for Resident<E> {
    fn name(&self) -> &'static str {
        match self.inner.name() {
            "ref" => "ref (resident)",
            "jit" => "emulated",
            _ => "resident",
        }
    }
    fn compile(&self, k: &Kernel) -> Result<Box<dyn Launch>> {
        let code = self.inner.compile(k)?;
        Ok(Box::new(ResidentLaunch {
            code,
            mem: self.mem.clone(),
        }))
    }
    fn compile_many(&self, ks: &[Kernel]) -> Result<Vec<Box<dyn Launch>>> {
        let mem = &self.mem;
        let wrap = |code| -> Box<dyn Launch> {
            Box::new(ResidentLaunch {
                code,
                mem: mem.clone(),
            })
        };
        Ok(self.inner.compile_many(ks)?.into_iter().map(wrap).collect())
    }
    fn end_tensor(&self) {
        self.inner.end_tensor()
    }
    fn concurrent_launches(&self) -> bool {
        self.inner.concurrent_launches()
    }
    fn memory(&self) -> Option<Arc<dyn DeviceMemory>> {
        Some(self.mem.clone())
    }
    /// As a GPU engine: two tensors at once.
    fn tensors_in_flight(&self) -> usize {
        2
    }
}

/// Buffers as `u64` words, so that f32 and f64 views are aligned. The map is locked only
/// to look buffers up, never while a kernel runs: a JIT launch runs on the thread pool,
/// and a thread waiting in it may pick up another tensor's work, which needs the map.
#[derive(Default)]
struct HostMemory {
    next: AtomicU64,
    bufs: Mutex<HashMap<u64, Arc<Vec<u64>>>>,
    up: AtomicU64,
    down: AtomicU64,
}

fn poisoned<T>(_: T) -> BackendError {
    BackendError::Device("device memory: a thread panicked while holding it".into())
}

fn missing(id: u64) -> BackendError {
    BackendError::Device(format!("device memory: no buffer {id} (freed?)"))
}

impl HostMemory {
    /// A buffer, held (the map is not locked meanwhile).
    fn get(&self, id: u64) -> Result<Arc<Vec<u64>>> {
        let bufs = self.bufs.lock().map_err(poisoned)?;
        bufs.get(&id).cloned().ok_or_else(|| missing(id))
    }

    fn insert(&self, words: Vec<u64>, len: usize) -> Result<DevBuf> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.bufs
            .lock()
            .map_err(poisoned)?
            .insert(id, Arc::new(words));
        Ok(DevBuf::new(id, len))
    }
}

/// A view's bytes within its buffer's words.
fn bytes_of<'a>(words: &'a [u64], v: &DevView) -> &'a [u8] {
    &words.as_bytes()[v.offset..v.offset + v.len]
}

impl DeviceMemory for HostMemory {
    fn upload(&self, bytes: &[u8]) -> Result<DevBuf> {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        words.as_mut_bytes()[..bytes.len()].copy_from_slice(bytes);
        self.up.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.insert(words, bytes.len())
    }

    fn alloc(&self, len: usize) -> Result<DevBuf> {
        // "Unspecified": a pattern no kernel result is likely to equal by chance.
        self.insert(vec![0xA5A5_A5A5_A5A5_A5A5; len.div_ceil(8)], len)
    }

    fn download(&self, v: DevView, out: &mut [u8]) -> Result<()> {
        let words = self.get(v.buf.id)?;
        out.copy_from_slice(bytes_of(&words, &v));
        self.down.fetch_add(v.len as u64, Ordering::Relaxed);
        Ok(())
    }

    fn free(&self, b: DevBuf) {
        if let Ok(mut bufs) = self.bufs.lock() {
            bufs.remove(&b.id);
        }
    }

    fn histogram(&self, x: DevView, p: &Pass) -> Result<[u32; 256]> {
        let words = self.get(x.buf.id)?;
        let floats = <[f32]>::ref_from_bytes(bytes_of(&words, &x))
            .map_err(|_| BackendError::Device("histogram: not a view of f32".into()))?;
        // The 1 KiB of counts comes back, as on a device.
        self.down.fetch_add(1024, Ordering::Relaxed);
        Ok(host_histogram(floats, p))
    }

    fn transfers(&self) -> Transfers {
        Transfers {
            up_bytes: self.up.load(Ordering::Relaxed),
            down_bytes: self.down.load(Ordering::Relaxed),
            ..Transfers::default()
        }
    }
}

struct ResidentLaunch {
    code: Box<dyn Launch>,
    mem: Arc<HostMemory>,
}

impl Launch for ResidentLaunch {
    fn launch(&self, io: &mut KernelIo) {
        self.code.launch(io)
    }

    /// Takes the written buffers out of memory while the CPU code runs on them (holding
    /// the ones it reads), then puts them back.
    fn launch_resident(&self, io: &ResidentIo) -> Result<()> {
        let mem = &self.mem;
        let mut inputs = HashMap::new();
        for v in &io.inputs {
            inputs.insert(v.buf.id, mem.get(v.buf.id)?);
        }
        let mut written: Vec<(u64, Vec<u64>)> = Vec::new();
        let ids = io.stores.iter().map(|v| v.buf.id);
        let mut result = Ok(());
        {
            let mut bufs = mem.bufs.lock().map_err(poisoned)?;
            for id in ids.chain(io.reductions.iter().map(|b| b.id)) {
                if written.iter().any(|(w, _)| *w == id) {
                    continue;
                }
                let Some(words) = bufs.remove(&id) else {
                    result = Err(missing(id));
                    break;
                };
                match Arc::try_unwrap(words) {
                    Ok(w) => written.push((id, w)),
                    Err(shared) => {
                        bufs.insert(id, shared);
                        result = Err(BackendError::Device(
                            "a launch reads a buffer it also writes".into(),
                        ));
                        break;
                    }
                }
            }
        }
        if result.is_ok() {
            result = run_on(&inputs, &mut written, io, self.code.as_ref());
        }
        let mut bufs = mem.bufs.lock().map_err(poisoned)?;
        bufs.extend(written.into_iter().map(|(id, w)| (id, Arc::new(w))));
        result
    }
}

/// Runs `code` with its inputs read from `inputs` and its outputs in `written`.
fn run_on(
    bufs: &HashMap<u64, Arc<Vec<u64>>>,
    written: &mut [(u64, Vec<u64>)],
    io: &ResidentIo,
    code: &dyn Launch,
) -> Result<()> {
    let inputs = io
        .inputs
        .iter()
        .map(|v| match bufs.get(&v.buf.id) {
            Some(w) => Ok(bytes_of(w, v)),
            None => Err(BackendError::Device(
                "a launch reads a buffer it also writes".into(),
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    // Split `written` into disjoint byte ranges, in the order of stores then reductions.
    let regions: Vec<(u64, usize, usize)> = io
        .stores
        .iter()
        .map(|v| (v.buf.id, v.offset, v.len))
        .chain(io.reductions.iter().map(|b| (b.id, 0, b.len)))
        .collect();
    let order: Vec<usize> = {
        let mut o: Vec<usize> = (0..regions.len()).collect();
        o.sort_by_key(|&i| (regions[i].0, regions[i].1));
        o
    };
    let mut slots: Vec<Option<&mut [u8]>> = (0..regions.len()).map(|_| None).collect();
    let mut pieces: HashMap<u64, &mut [u8]> = written
        .iter_mut()
        .map(|(id, w)| (*id, w.as_mut_bytes()))
        .collect();
    let mut at: HashMap<u64, usize> = HashMap::new();
    for i in order {
        let (id, offset, len) = regions[i];
        let rest = pieces.remove(&id).ok_or_else(|| missing(id))?;
        let from = at.get(&id).copied().unwrap_or(0);
        let overlap = || BackendError::Device("a launch's outputs overlap".into());
        let skip = offset.checked_sub(from).ok_or_else(overlap)?;
        let (_, rest) = rest.split_at_mut(skip);
        let (mine, rest) = rest.split_at_mut(len);
        slots[i] = Some(mine);
        pieces.insert(id, rest);
        at.insert(id, offset + len);
    }
    let n_stores = io.stores.len();
    let mut slots = slots.into_iter().map(|s| s.expect("every region placed"));
    let stores: Vec<&mut [u8]> = slots.by_ref().take(n_stores).collect();
    let reductions = slots
        .map(|b| {
            <[f64]>::mut_from_bytes(b)
                .map_err(|_| BackendError::Device("a reduction buffer is not f64".into()))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut kio = KernelIo {
        inputs,
        args: io.args,
        stores,
        reductions,
    };
    code.try_launch(&mut kio)
}
