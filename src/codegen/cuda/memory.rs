//! Device memory on the GPU (feature `cuda`): the executor's resident buffers
//! (`codegen::DeviceMemory`), with one CUDA stream per host thread and two reused
//! page-locked staging buffers per stream.
//!
//! Each host thread that merges a tensor gets its own stream, so that while one tensor's
//! kernels run, another thread's tensor is copied into staging and uploaded (the merge
//! runs `Engine::tensors_in_flight` tensors at once), and the writer thread writes the
//! one before. Copies go through the staging buffers in pieces of [`STAGE`] bytes,
//! alternating: the host fills one while the device copies out of the other. Buffers are
//! allocated on the stream of the thread that asks, and used by that thread only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use cudarc::driver::{
    CudaContext, CudaEvent, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, PinnedHostSlice,
    result, sys::CUevent_flags,
};

use super::select::Pass;
use super::staging::{self, Sides, Stage};
use crate::codegen::{BackendError, DevBuf, DevView, Transfers};

type Result<T> = std::result::Result<T, BackendError>;

/// Queues a histogram pass on a stream: the buffer, the view's (offset, len), the
/// counters.
pub type QueueHistogram<'a> = dyn Fn(&Arc<CudaStream>, &CudaSlice<u8>, (usize, usize), &Pass, &mut CudaSlice<u32>) -> Result<()>
    + 'a;

/// Bytes per staging buffer (two per stream).
pub const STAGE: usize = 16 << 20;

fn err(e: impl std::fmt::Debug) -> BackendError {
    BackendError::Device(format!("{e:?}"))
}

/// One staging buffer, its stream, and the event after the last copy that used it.
struct Pinned {
    host: PinnedHostSlice<u8>,
    stream: Arc<CudaStream>,
    busy: Option<CudaEvent>,
}

impl Stage for Pinned {
    fn idle(&mut self) -> Result<()> {
        if let Some(e) = self.busy.take() {
            e.synchronize().map_err(err)?;
        }
        Ok(())
    }
    fn mark_busy(&mut self) -> Result<()> {
        self.busy = Some(self.stream.record_event(None).map_err(err)?);
        Ok(())
    }
}

/// A host thread's stream and staging.
pub struct Lane {
    pub stream: Arc<CudaStream>,
    stages: Mutex<Option<[Pinned; 2]>>,
    /// Copies timed by events, folded into the totals by `settle`: (start, end, bytes, up).
    timed: Mutex<Vec<(CudaEvent, CudaEvent, u64, bool)>>,
}

/// The GPU's memory as the executor sees it.
pub struct GpuMemory {
    ctx: Arc<CudaContext>,
    next: AtomicU64,
    /// Shared so that a long copy holds its buffer, not the map.
    bufs: Mutex<HashMap<u64, Arc<CudaSlice<u8>>>>,
    lanes: Mutex<HashMap<ThreadId, Arc<Lane>>>,
    totals: Mutex<Transfers>,
}

impl GpuMemory {
    pub fn new(ctx: Arc<CudaContext>) -> GpuMemory {
        GpuMemory {
            ctx,
            next: AtomicU64::new(0),
            bufs: Mutex::new(HashMap::new()),
            lanes: Mutex::new(HashMap::new()),
            totals: Mutex::new(Transfers::default()),
        }
    }

    /// The calling thread's lane (made on its first call), with the context current on
    /// the thread (the raw copies below need it).
    pub fn lane(&self) -> Result<Arc<Lane>> {
        self.ctx.bind_to_thread().map_err(err)?;
        let me = std::thread::current().id();
        let mut lanes = self.lanes.lock().map_err(err)?;
        if let Some(l) = lanes.get(&me) {
            return Ok(l.clone());
        }
        let lane = Arc::new(Lane {
            stream: self.ctx.new_stream().map_err(err)?,
            stages: Mutex::new(None),
            timed: Mutex::new(Vec::new()),
        });
        lanes.insert(me, lane.clone());
        Ok(lane)
    }

    /// Runs `f` with the buffers (the map stays locked meanwhile: keep it short).
    pub fn with_bufs<T>(
        &self,
        f: impl FnOnce(&HashMap<u64, Arc<CudaSlice<u8>>>) -> Result<T>,
    ) -> Result<T> {
        f(&*self.bufs.lock().map_err(err)?)
    }

    /// Keeps a slice (of at least one byte) as a buffer of `len` bytes.
    fn insert(&self, slice: CudaSlice<u8>, len: usize) -> Result<DevBuf> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.bufs.lock().map_err(err)?.insert(id, Arc::new(slice));
        Ok(DevBuf::new(id, len))
    }

    /// Copies `total` bytes through the lane's staging (see `staging`), timed by events.
    fn staged(&self, lane: &Lane, total: usize, up: bool, sides: Sides<Pinned>) -> Result<()> {
        let mut stages = lane.stages.lock().map_err(err)?;
        if stages.is_none() {
            let stage = || -> Result<Pinned> {
                // SAFETY: page-locked host memory that the schedule writes (uploads) or
                // has the device fill (downloads) before it reads it.
                let host = unsafe { self.ctx.alloc_pinned_with_flags::<u8>(STAGE, 0) };
                Ok(Pinned {
                    host: host.map_err(err)?,
                    stream: lane.stream.clone(),
                    busy: None,
                })
            };
            *stages = Some([stage()?, stage()?]);
        }
        let stages = stages.as_mut().expect("made above");
        let s = &lane.stream;
        let timing = Some(CUevent_flags::CU_EVENT_DEFAULT);
        let start = s.record_event(timing).map_err(err)?;
        staging::staged(stages, total, STAGE, up, sides)?;
        let end = s.record_event(timing).map_err(err)?;
        let mut timed = lane.timed.lock().map_err(err)?;
        timed.push((start, end, total as u64, up));
        Ok(())
    }

    /// A buffer, held (the map is not locked meanwhile).
    fn get(&self, b: &DevBuf) -> Result<Arc<CudaSlice<u8>>> {
        let bufs = self.bufs.lock().map_err(err)?;
        bufs.get(&b.id()).cloned().ok_or_else(|| missing(b.id()))
    }

    /// Waits for the calling thread's copies and adds their bytes and device times to
    /// the totals.
    pub fn settle(&self) -> Result<()> {
        let lane = self.lane()?;
        self.settle_lane(&lane)
    }

    fn settle_lane(&self, lane: &Lane) -> Result<()> {
        let done: Vec<_> = std::mem::take(&mut *lane.timed.lock().map_err(err)?);
        let mut totals = self.totals.lock().map_err(err)?;
        for (start, end, bytes, up) in done {
            end.synchronize().map_err(err)?;
            let secs = start.elapsed_ms(&end).map_err(err)? as f64 / 1e3;
            if up {
                totals.up_bytes += bytes;
                totals.up_secs += secs;
            } else {
                totals.down_bytes += bytes;
                totals.down_secs += secs;
            }
        }
        Ok(())
    }

    pub fn upload(&self, bytes: &[u8]) -> Result<DevBuf> {
        let lane = self.lane()?;
        let s = lane.stream.clone();
        // SAFETY: every byte is written by the copies below before any kernel reads it.
        let mut dev = unsafe { s.alloc::<u8>(bytes.len().max(1)) }.map_err(err)?;
        let mut copy = |st: &mut Pinned, offset: usize, len: usize| {
            let src = st.host.as_slice().map_err(err)?;
            let mut dst = dev.slice_mut(offset..offset + len);
            let (ptr, _record) = dst.device_ptr_mut(&s);
            // SAFETY: `src` is page-locked and stays untouched until the event recorded
            // after this copy (`Stage::busy`) completes; `dst` holds `len` bytes.
            unsafe { result::memcpy_htod_async(ptr, &src[..len], s.cu_stream()) }.map_err(err)
        };
        let mut host = |st: &mut Pinned, offset: usize, len: usize| {
            let stage = st.host.as_mut_slice().map_err(err)?;
            stage[..len].copy_from_slice(&bytes[offset..offset + len]);
            Ok(())
        };
        let sides = Sides {
            device: &mut copy,
            host: &mut host,
        };
        self.staged(&lane, bytes.len(), true, sides)?;
        self.insert(dev, bytes.len())
    }

    pub fn alloc(&self, len: usize) -> Result<DevBuf> {
        let lane = self.lane()?;
        // SAFETY: the executor writes a buffer (a kernel's store or reduction) before it
        // reads it.
        let dev = unsafe { lane.stream.alloc::<u8>(len.max(1)) }.map_err(err)?;
        self.insert(dev, len)
    }

    pub fn download(&self, v: DevView, out: &mut [u8]) -> Result<()> {
        if out.len() != v.len {
            return Err(BackendError::Device("download: sizes differ".into()));
        }
        let lane = self.lane()?;
        let s = lane.stream.clone();
        let dev = self.get(v.buf)?;
        let mut copy = |st: &mut Pinned, offset: usize, len: usize| {
            let src = dev.slice(v.offset + offset..v.offset + offset + len);
            let (ptr, _record) = src.device_ptr(&s);
            let dst = st.host.as_mut_slice().map_err(err)?;
            // SAFETY: the stage is not read before the event after this copy completes.
            unsafe { result::memcpy_dtoh_async(&mut dst[..len], ptr, s.cu_stream()) }.map_err(err)
        };
        let mut host = |st: &mut Pinned, offset: usize, len: usize| {
            let stage = st.host.as_slice().map_err(err)?;
            out[offset..offset + len].copy_from_slice(&stage[..len]);
            Ok(())
        };
        let sides = Sides {
            device: &mut copy,
            host: &mut host,
        };
        self.staged(&lane, v.len, false, sides)
    }

    pub fn free(&self, b: DevBuf) {
        if let Ok(mut bufs) = self.bufs.lock() {
            bufs.remove(&b.id());
        }
    }

    /// Every thread's copies so far.
    pub fn transfers(&self) -> Transfers {
        let lanes: Vec<Arc<Lane>> = match self.lanes.lock() {
            Ok(l) => l.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        for lane in lanes {
            let _ = self.settle_lane(&lane);
        }
        self.totals.lock().map(|t| *t).unwrap_or_default()
    }

    /// One histogram pass over a view with `launch` (which queues `kernels/select.cu`
    /// on the stream, given the view and the counters).
    pub fn histogram(&self, x: DevView, p: &Pass, launch: &QueueHistogram) -> Result<[u32; 256]> {
        let lane = self.lane()?;
        let s = &lane.stream;
        let mut hist = s.alloc_zeros::<u32>(256).map_err(err)?;
        {
            let dev = self.get(x.buf)?;
            launch(s, &dev, (x.offset, x.len), p, &mut hist)?;
        }
        let mut out = [0u32; 256];
        s.memcpy_dtoh(&hist, &mut out).map_err(err)?;
        s.synchronize().map_err(err)?;
        Ok(out)
    }
}

pub fn missing(id: u64) -> BackendError {
    BackendError::Device(format!("device memory: no buffer {id} (freed?)"))
}
