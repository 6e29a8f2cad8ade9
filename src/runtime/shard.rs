//! Writing one output shard: tensors computed in order, in batches within the memory
//! budget, while a writer thread stores the previous ones through a [`Sink`].

use super::error::MergeError;
use super::merge::{Inputs, MergeJob, produce};
use super::plan::{Action, MergePlan, PlannedTensor};
use super::safetensors::{HeaderEntry, header_bytes};
use super::sink::{Sink, WriteMode};
use crate::types::CheckedMerge;
use indicatif::ProgressBar;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What every shard of a merge is computed from.
pub(super) struct Shards<'a> {
    pub job: &'a MergeJob,
    pub inputs: &'a Inputs,
    pub plan: &'a MergePlan,
    pub checked: &'a HashMap<usize, Arc<CheckedMerge>>,
    pub compiled: Option<&'a super::compiled::CompiledJob>,
}

/// Most bytes (outputs being written plus the next tensors' inputs and outputs) for
/// which computing goes on while the writer stores the previous output.
const OVERLAP_BYTES: u64 = 1 << 30;

/// What the computing side and the writer thread share.
struct Flow {
    /// Output bytes handed to the writer and not yet written.
    in_flight: AtomicU64,
    /// Set when the writer has stopped (done, failed or panicked): nothing more will be
    /// written, so the computing side must not wait for it.
    writer_gone: AtomicBool,
    /// Set when computing failed: the file is abandoned, not flushed and synced (which
    /// would keep a stopped merge writing gigabytes to disk).
    abandoned: AtomicBool,
}

/// Sets `writer_gone` however the writer thread ends.
struct Gone<'a>(&'a AtomicBool);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Memory for one batch beside the outputs the writer has not stored yet.
///
/// Computing overlaps the writing of earlier outputs only while both fit in
/// OVERLAP_BYTES (the inputs' pages and the outputs count toward peak memory). A batch
/// that does not fit starts, its inputs mapped in, once no more is in flight than its
/// outputs will take (memory stays within what computing it holds anyway); its
/// selections run then, and its outputs and temporaries wait for the rest ([`Self::gate`]).
struct Room<'a> {
    flow: &'a Flow,
    cancel: crate::cancel::Cancel,
    /// The batch's input and output bytes.
    need: u64,
    /// Nanoseconds spent in [`Self::gate`].
    gated: AtomicU64,
}

impl<'a> Room<'a> {
    /// Waits until the batch may start; None if the writer stopped meanwhile.
    fn wait(
        flow: &'a Flow,
        inputs: &'a Inputs,
        plan: &MergePlan,
        batch: &[usize],
    ) -> Result<Option<Room<'a>>, MergeError> {
        let tensors = || batch.iter().map(|&ti| &plan.tensors[ti]);
        let need = tensors().map(|t| tensor_bytes(inputs, t)).sum();
        let outputs: u64 = tensors().map(|t| t.out_bytes as u64).sum();
        let room = Room::new(flow, inputs.cancel, need);
        if !room.until(|f| f <= outputs)? {
            return Ok(None);
        }
        if !room.fits(flow.in_flight.load(Ordering::SeqCst)) {
            // Map the inputs in while the writer finishes.
            tensors().collect::<Vec<_>>().par_iter().for_each(|t| {
                let sources = inputs.sources(t);
                sources.par_iter().for_each(|(c, name)| c.prefetch(name));
            });
        }
        Ok(Some(room))
    }

    fn new(flow: &'a Flow, cancel: crate::cancel::Cancel, need: u64) -> Room<'a> {
        Room {
            flow,
            cancel,
            need,
            gated: AtomicU64::new(0),
        }
    }

    fn fits(&self, in_flight: u64) -> bool {
        in_flight == 0 || in_flight + self.need <= OVERLAP_BYTES
    }

    /// Waits until the batch fits beside what is in flight (or the writer stopped, or
    /// the merge was stopped: the caller finds out).
    fn gate(&self) {
        let t = std::time::Instant::now();
        let _ = self.until(|f| self.fits(f));
        let ns = t.elapsed().as_nanos() as u64;
        self.gated.fetch_add(ns, Ordering::SeqCst);
    }

    /// Waits until `ok(bytes in flight)` or it fits; false if the writer stopped first.
    fn until(&self, ok: impl Fn(u64) -> bool) -> Result<bool, MergeError> {
        loop {
            let f = self.flow.in_flight.load(Ordering::SeqCst);
            if ok(f) || self.fits(f) {
                return Ok(true);
            }
            if self.flow.writer_gone.load(Ordering::SeqCst) {
                return Ok(false);
            }
            self.cancel.check().map_err(MergeError::Stopped)?;
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

impl Shards<'_> {
    /// Writes one shard: header, then tensors in order. Returns the bytes written.
    pub fn write(
        &self,
        shard: &[usize],
        path: &std::path::Path,
        bar: &ProgressBar,
    ) -> Result<u64, MergeError> {
        let entries: Vec<HeaderEntry> = shard
            .iter()
            .map(|&i| {
                let t = &self.plan.tensors[i];
                HeaderEntry {
                    name: &t.name,
                    dtype: &t.out_dtype,
                    shape: &t.shape,
                    nbytes: t.out_bytes,
                }
            })
            .collect();
        let file = std::fs::File::create(path)
            .map_err(|e| MergeError::Output(format!("cannot create `{}`: {e}", path.display())))?;
        let header = header_bytes(&entries);
        // Shards made into a GGUF file are read back at once: keep them cached.
        let mode = match self.job.out_format {
            super::OutputFormat::Safetensors => self.job.write_mode,
            super::OutputFormat::Gguf { .. } => WriteMode::Buffered,
        };
        // A writer thread stores the outputs while the next tensors are computed. The
        // queue is bounded by bytes (`Flow::in_flight`, OVERLAP_BYTES), not by count: a
        // small tensor does not wait for the writer to finish a large one.
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let flow = Flow {
            in_flight: AtomicU64::new(0),
            writer_gone: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
        };
        let flow = &flow;
        let compiled = self.compiled;
        // As many direct writes at once as the merge has threads (up to 4).
        let lanes = rayon::current_num_threads().clamp(1, 4);
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || -> Result<u64, MergeError> {
                let _gone = Gone(&flow.writer_gone);
                let io = |e: std::io::Error| {
                    MergeError::Output(format!("cannot write `{}`: {e}", path.display()))
                };
                let mut w = Sink::new(file, mode, lanes);
                w.write(&header).map_err(io)?;
                let mut total = header.len() as u64;
                for bytes in rx {
                    if flow.abandoned.load(Ordering::SeqCst) {
                        // Computing failed: what is queued is not written.
                        break;
                    }
                    w.write(&bytes).map_err(io)?;
                    total += bytes.len() as u64;
                    bar.inc(bytes.len() as u64);
                    flow.in_flight
                        .fetch_sub(bytes.len() as u64, Ordering::SeqCst);
                    if let Some(c) = compiled {
                        c.recycle(bytes);
                    }
                }
                if flow.abandoned.load(Ordering::SeqCst) {
                    return Ok(total);
                }
                w.finish().map_err(io)?;
                Ok(total)
            });
            let produced = self.produce_all(shard, &tx, flow);
            if produced.is_err() {
                flow.abandoned.store(true, Ordering::SeqCst);
            }
            drop(tx);
            let written = writer.join().unwrap_or_else(|_| {
                let why = format!("the writer of `{}` failed", path.display());
                Err(MergeError::Output(why))
            });
            // A failed writer's error comes first: it is why computing stopped.
            let written = written?;
            produced?;
            Ok(written)
        })
    }

    /// Computes a shard's tensors in order, in batches within the memory budget, and
    /// hands each to the writer.
    fn produce_all(
        &self,
        shard: &[usize],
        tx: &std::sync::mpsc::Sender<Vec<u8>>,
        flow: &Flow,
    ) -> Result<(), MergeError> {
        let (job, inputs, plan) = (self.job, self.inputs, self.plan);
        let k = inputs.models.len();
        let mut i = 0;
        while i < shard.len() {
            // A batch: consecutive tensors whose working memory fits the budget (at least
            // one). Compiled kernels on the CPU use every core themselves: one tensor at a
            // time; a device engine takes two, so one's uploads overlap the other's kernels.
            let mut end = i;
            let mut mem = 0u64;
            let in_flight = self.compiled.map_or(usize::MAX, |c| c.tensors_in_flight());
            while end < shard.len()
                && (end == i
                    || (end - i < in_flight
                        && mem + working_bytes(&plan.tensors[shard[end]], k) <= job.max_memory))
            {
                mem += working_bytes(&plan.tensors[shard[end]], k);
                end += 1;
            }
            let batch = &shard[i..end];
            let t_wait = std::time::Instant::now();
            let Some(room) = Room::wait(flow, inputs, plan, batch)? else {
                // The writer failed: its error is reported.
                return Ok(());
            };
            let t_batch = std::time::Instant::now();
            let gate = || room.gate();
            let results: Vec<Result<Vec<u8>, MergeError>> = batch
                .par_iter()
                .map(|&ti| {
                    let t = &plan.tensors[ti];
                    let r = produce(job, inputs, plan, self.checked, self.compiled, t, &gate);
                    if r.is_ok() {
                        hash_inputs(inputs, t);
                    }
                    // Nothing of this tensor's inputs is borrowed any more: drop their
                    // pages from this process (they stay in the page cache), so peak
                    // memory is one tensor's worth, not the checkpoints'.
                    let sources = inputs.sources(t);
                    sources.par_iter().for_each(|(c, name)| c.release(name));
                    r
                })
                .collect();
            if std::env::var("MERGEC_DEBUG").is_ok_and(|v| v.split(',').any(|p| p == "time")) {
                let gated = room.gated.load(Ordering::SeqCst) as f64 * 1e-9;
                eprintln!(
                    "batch of {}: waited {:.3} s for the writer, then {gated:.3} s after its \
                     selections; produce {:.3} s",
                    end - i,
                    (t_batch - t_wait).as_secs_f64(),
                    t_batch.elapsed().as_secs_f64()
                );
            }
            for (r, &ti) in results.into_iter().zip(&shard[i..end]) {
                let bytes = r?;
                debug_assert_eq!(bytes.len(), plan.tensors[ti].out_bytes);
                flow.in_flight
                    .fetch_add(bytes.len() as u64, Ordering::SeqCst);
                if tx.send(bytes).is_err() {
                    // The writer stopped: its error is reported.
                    return Ok(());
                }
            }
            i = end;
        }
        Ok(())
    }
}

/// Memory one tensor needs while merged: inputs, output and the interpreter's temporaries.
fn working_bytes(t: &PlannedTensor, k: usize) -> u64 {
    let n = t.shape.iter().product::<usize>() as u64;
    match t.action {
        Action::Merge => n * 4 * (2 * k as u64 + 4),
        Action::Copy => t.out_bytes as u64,
    }
}

/// A tensor's input bytes (base and models) and output bytes.
fn tensor_bytes(inputs: &Inputs, t: &PlannedTensor) -> u64 {
    let input = |(c, name): (&super::safetensors::Checkpoint, &str)| {
        c.info(name).map_or(0, |i| i.nbytes() as u64)
    };
    inputs.sources(t).into_iter().map(input).sum::<u64>() + t.out_bytes as u64
}

/// Records the digests of what `t` read (the base's tensor; the models' when merged)
/// while its pages are still mapped in.
fn hash_inputs(inputs: &Inputs, t: &PlannedTensor) {
    let all = inputs.all();
    let read: Vec<(usize, &str)> = match &t.source {
        Some(r) => r
            .sources()
            .into_iter()
            .map(|s| (s.input, s.name.as_str()))
            .collect(),
        None if t.action == Action::Merge => (0..all.len()).map(|i| (i, t.name.as_str())).collect(),
        None => vec![(0, t.name.as_str())],
    };
    for (i, name) in read {
        if let Ok(b) = all[i].raw_bytes(name) {
            inputs.hashes.add(i, name, b, all[i].stored_at(name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Flow, OVERLAP_BYTES, Room};
    use crate::cancel::Cancel;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    const MB: u64 = 1 << 20;

    fn flow(in_flight: u64) -> Flow {
        Flow {
            in_flight: AtomicU64::new(in_flight),
            writer_gone: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
        }
    }

    /// A batch that does not fit beside the outputs the writer holds waits at the gate
    /// until the writer has stored enough of them; one larger than the budget waits for
    /// all of them, then runs alone.
    #[test]
    fn the_gate_opens_once_the_batch_fits_beside_what_is_in_flight() {
        let f = flow(300 * MB);
        let room = Room::new(&f, Cancel::NEVER, 900 * MB);
        assert!(!room.fits(300 * MB) && room.fits(OVERLAP_BYTES - 900 * MB) && room.fits(0));
        let alone = Room::new(&f, Cancel::NEVER, OVERLAP_BYTES + MB);
        assert!(!alone.fits(1) && alone.fits(0));
        let t = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                f.in_flight.store(100 * MB, Ordering::SeqCst);
            });
            room.gate();
        });
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(room.gated.load(Ordering::SeqCst) >= 50_000_000);
        // Open now: no wait.
        assert!(room.until(|_| false).unwrap());
    }

    /// Neither a stopped writer nor a stopped merge leaves the computing side waiting.
    #[test]
    fn a_stopped_writer_or_merge_ends_the_wait() {
        let f = flow(900 * MB);
        let room = Room::new(&f, Cancel::NEVER, 900 * MB);
        f.writer_gone.store(true, Ordering::SeqCst);
        assert!(!room.until(|_| false).unwrap());
        room.gate();
        static STOPPED: AtomicBool = AtomicBool::new(true);
        let f = flow(900 * MB);
        let room = Room::new(&f, Cancel::on_flag(&STOPPED), 900 * MB);
        assert!(room.until(|_| false).is_err());
        room.gate();
    }
}
