//! The executor on an engine with device memory (`Engine::memory`, the GPU): a tensor's
//! inputs go up once, in their storage dtype; kernels store intermediates and selection
//! keys into device buffers that the next launches read in place; top-k cut points and
//! quantiles are found by histogram passes over those buffers (`kernels/select.cu`), so
//! only 1 KiB of counts per pass comes back; the result comes down once, in the output
//! dtype. Host work that needs a tensor (ranks, a row reduction the kernels did not
//! finish, a top-k mask as a value) downloads it, and a host result a launch reads goes
//! up: the same values either way, so results are the host path's, bit for bit.

use super::{Buf, HVal, State, chunk_input, key_code, mask_from_cuts};
use crate::codegen::cuda::select as radix;
use crate::codegen::{BackendError, DevBuf, DevView, DeviceMemory, ResidentIo};
use crate::exec::select::TopkCut;
use crate::exec::topk::Request;
use crate::ir::graph::NodeId;
use crate::ir::kernel::Sink;
use crate::ir::plan::{Launch, Select, Source, StoreTarget};
use zerocopy::IntoBytes;

type Result<T> = std::result::Result<T, BackendError>;

/// Device buffers freed when dropped unless taken (an error path leaks nothing).
struct Owned<'m> {
    mem: &'m dyn DeviceMemory,
    bufs: Vec<DevBuf>,
}

impl<'m> Owned<'m> {
    fn alloc(mem: &'m dyn DeviceMemory, sizes: impl IntoIterator<Item = usize>) -> Result<Self> {
        let mut o = Owned {
            mem,
            bufs: Vec::new(),
        };
        for len in sizes {
            o.bufs.push(mem.alloc(len)?);
        }
        Ok(o)
    }
    fn take(mut self) -> Vec<DevBuf> {
        std::mem::take(&mut self.bufs)
    }
}

impl Drop for Owned<'_> {
    fn drop(&mut self) {
        for b in self.bufs.drain(..) {
            self.mem.free(b);
        }
    }
}

impl Drop for State<'_> {
    fn drop(&mut self) {
        let Some(mem) = self.mem else { return };
        let inputs = self.inputs_dev.iter_mut().filter_map(Option::take);
        let buffers = self.buffers.values_mut().filter_map(|b| b.dev.take());
        for b in inputs.chain(buffers).collect::<Vec<_>>() {
            mem.free(b);
        }
    }
}

impl<'a> State<'a> {
    fn memory(&self) -> &'a dyn DeviceMemory {
        self.mem.expect("the resident path runs with device memory")
    }

    /// Makes sure a node's buffer has a host copy (downloading it).
    pub(super) fn fetch_host(&mut self, n: NodeId) -> Result<()> {
        let Some(mem) = self.mem else { return Ok(()) };
        let b = self
            .buffers
            .get_mut(&n)
            .expect("executor: a buffer for host work");
        if b.host.is_none() {
            let dev = b.dev.as_ref().expect("a buffer lives somewhere");
            let mut v = vec![0f32; dev.len() / 4];
            mem.download(dev.all(), v.as_mut_bytes())?;
            b.host = Some(v);
        }
        Ok(())
    }

    /// Makes sure what a launch loads is in device memory (uploading it).
    fn ensure_device(&mut self, s: &Source) -> Result<()> {
        let mem = self.memory();
        match *s {
            Source::Input(i) => {
                let i = i as usize;
                if self.inputs_dev[i].is_none() {
                    self.inputs_dev[i] = Some(mem.upload(self.inp.tensors[i].0)?);
                }
            }
            Source::Buffer(n) => {
                let b = self
                    .buffers
                    .get_mut(&n)
                    .expect("executor: a buffer to load");
                if b.dev.is_none() {
                    let host = b.host.as_ref().expect("a buffer lives somewhere");
                    b.dev = Some(mem.upload(host.as_bytes())?);
                }
            }
        }
        Ok(())
    }

    /// The device copy of a load (after `ensure_device`).
    fn device(&self, s: &Source) -> &DevBuf {
        match *s {
            Source::Input(i) => self.inputs_dev[i as usize].as_ref(),
            Source::Buffer(n) => self.buffers.get(&n).and_then(|b| b.dev.as_ref()),
        }
        .expect("uploaded before the launch")
    }

    /// A buffer that lives only on the device, if the tensor is resident.
    fn resident(&self, n: NodeId) -> Option<&DevBuf> {
        self.mem?;
        let b = self.buffers.get(&n)?;
        b.host.is_none().then_some(b.dev.as_ref()).flatten()
    }

    /// `quantile(x, q)` by histogram passes, if `x` lives on the device.
    pub(super) fn quantile_resident(&self, x: NodeId, q: f32) -> Option<Result<f32>> {
        let dev = self.resident(x)?;
        let mem = self.memory();
        let mut hist = |p: &radix::Pass| mem.histogram(dev.all(), p).map_err(String::from);
        Some(radix::quantile(dev.len() / 4, q, &mut hist).map_err(BackendError::Device))
    }

    /// The cuts taking the first `counts` of `x`'s top-k order, if `x` lives on the device.
    pub(super) fn cuts_resident(
        &self,
        x: NodeId,
        counts: [usize; 2],
    ) -> Option<Result<[TopkCut; 2]>> {
        let dev = self.resident(x)?;
        let cut = |count| topk_cut(self.memory(), dev.all(), count);
        Some(cut(counts[0]).and_then(|a| Ok([a, cut(counts[1])?])))
    }

    /// A chunked selection's cut points: each chunk's keys are stored into one buffer per
    /// key, of the tensor's size, on the device; the cuts come from histogram passes
    /// over those buffers.
    pub(super) fn select_resident(
        &mut self,
        si: usize,
        j: usize,
        sel: &Select,
        ok: &[NodeId],
        requests: &[Request],
    ) -> Result<()> {
        let mem = self.memory();
        let l = &sel.launch;
        let cols = l.kernel.cols;
        let n = sel.rows * cols;
        for s in &l.loads {
            self.ensure_device(s)?;
        }
        let keys = Owned::alloc(mem, sel.keys.iter().map(|_| n * 4))?;
        let args = self.args(l);
        for c in 0..sel.rows.div_ceil(sel.chunk_rows) {
            self.inp.cancel.check()?;
            let r0 = c * sel.chunk_rows;
            let r1 = (r0 + sel.chunk_rows).min(sel.rows);
            let inputs = (l.loads.iter().zip(&l.kernel.inputs))
                .map(|(src, ki)| {
                    let d = self.device(src);
                    let (at, len) = chunk_input(ki, cols, r0, r1, d.len());
                    d.view(at, len)
                })
                .collect();
            let stores = (keys.bufs.iter())
                .map(|b| b.view(r0 * cols * 4, (r1 - r0) * cols * 4))
                .collect();
            let io = ResidentIo {
                inputs,
                args: &args,
                stores,
                reductions: Vec::new(),
            };
            key_code(self.c, si, j, sel, r1 - r0).launch_resident(&io)?;
        }
        let g = &self.c.plan.graph;
        for (i, &t) in ok.iter().enumerate() {
            let key = &keys.bufs[requests[2 * i].key];
            let c = [
                topk_cut(mem, key.all(), requests[2 * i].count)?,
                topk_cut(mem, key.all(), requests[2 * i + 1].count)?,
            ];
            self.host[t as usize] = Some(Ok(HVal::Cuts(c)));
            if self.c.plan.mask_buffers.contains(&t) {
                debug_assert_eq!(sel.keys[requests[2 * i].key], g.node(t).args[0]);
                let mut x = vec![0f32; n];
                mem.download(key.all(), x.as_mut_bytes())?;
                self.put_buffer(t, Some(Buf::host(mask_from_cuts(&x, &c, 0))));
            }
        }
        Ok(())
    }

    /// Runs one launch on device buffers: loads uploaded if they are not there yet,
    /// stores kept there (the output downloaded), reductions brought back.
    pub(super) fn launch_resident(
        &mut self,
        si: usize,
        li: usize,
        l: &Launch,
        out: &mut Option<&mut [u8]>,
    ) -> Result<()> {
        let mem = self.memory();
        let k = &l.kernel;
        for s in &l.loads {
            self.ensure_device(s)?;
        }
        let store_sizes = k.sinks.iter().filter_map(|s| match s {
            Sink::Store { dtype, .. } => Some(k.numel() * dtype.size()),
            Sink::Reduce { .. } => None,
        });
        let stores = Owned::alloc(mem, store_sizes)?;
        let reds = Owned::alloc(mem, l.reductions.iter().map(|_| k.n_units() * 8))?;
        let args = self.args(l);
        let io = ResidentIo {
            inputs: l.loads.iter().map(|s| self.device(s).all()).collect(),
            args: &args,
            stores: stores.bufs.iter().map(DevBuf::all).collect(),
            reductions: reds.bufs.iter().collect(),
        };
        self.inp.cancel.check()?;
        self.c.code[si][li].launch_resident(&io)?;
        drop(io);
        let mut partials = Vec::new();
        for (&r, b) in l.reductions.iter().zip(&reds.bufs) {
            let mut p = vec![0f64; k.n_units()];
            mem.download(b.all(), p.as_mut_bytes())?;
            partials.push((r, p));
        }
        for (s, b) in l.stores.iter().zip(stores.take()) {
            match s {
                StoreTarget::Buffer(n) => {
                    let dev = Buf {
                        host: None,
                        dev: Some(b),
                    };
                    self.put_buffer(*n, Some(dev));
                }
                StoreTarget::Output => {
                    let slot = out.take().expect("executor: the output is stored once");
                    let r = mem.download(b.all(), slot);
                    mem.free(b);
                    r?;
                }
            }
        }
        self.partials.extend(partials);
        Ok(())
    }
}

/// The cut taking the first `count` elements of a device buffer's top-k order (as
/// `select::topk_cut`: the same elements, found by histogram passes).
fn topk_cut(mem: &dyn DeviceMemory, x: DevView, count: usize) -> Result<TopkCut> {
    if count == 0 {
        return Ok(TopkCut {
            t: u32::MAX,
            cut: 0,
        });
    }
    let mut hist = |p: &radix::Pass| mem.histogram(x, p).map_err(String::from);
    let (t, cut) = radix::topk_cut(x.len / 4, count, &mut hist).map_err(BackendError::Device)?;
    Ok(TopkCut { t: t as u32, cut })
}
