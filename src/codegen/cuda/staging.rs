//! The order of a staged copy between host memory and a device: pieces of at most
//! `piece` bytes through two page-locked staging buffers used in turn, so that the host
//! side of one piece overlaps the device side of the other. Pure, so that the tests
//! check it on the CPU against a device that runs its copies late (`memory` runs it with
//! cudarc's events and async copies).
//!
//! Upload of piece i: wait until stage i % 2 is idle (its last device copy done), fill
//! it from the host, queue its device copy, mark it busy. Download of piece i: wait until
//! stage i % 2 is idle, queue the device copy into it, mark it busy; then empty the stage
//! of piece i - 1 (waiting for it) into host memory while piece i copies; the last piece
//! is emptied at the end.

use crate::codegen::BackendError;

type Result<T> = std::result::Result<T, BackendError>;

/// A staging buffer as the schedule sees it.
pub trait Stage {
    /// Waits until the device no longer copies from or into it.
    fn idle(&mut self) -> Result<()>;
    /// Marks it busy until the device work queued so far is done.
    fn mark_busy(&mut self) -> Result<()>;
}

/// What a staged copy does to a piece `(offset, len)` of the transfer.
pub struct Sides<'a, S> {
    /// Queues the device side: stage to device (up) or device to stage (down).
    pub device: &'a mut dyn FnMut(&mut S, usize, usize) -> Result<()>,
    /// The host side: host memory to stage (up) or stage to host memory (down).
    pub host: &'a mut dyn FnMut(&mut S, usize, usize) -> Result<()>,
}

/// Copies `total` bytes up (`up`) or down in pieces of `piece` bytes through `stages`.
pub fn staged<S: Stage>(
    stages: &mut [S; 2],
    total: usize,
    piece: usize,
    up: bool,
    sides: Sides<S>,
) -> Result<()> {
    let piece = piece.max(1);
    let mut pending: Option<(usize, usize, usize)> = None;
    for (i, offset) in (0..total).step_by(piece).enumerate() {
        let len = piece.min(total - offset);
        let st = &mut stages[i % 2];
        st.idle()?;
        if up {
            (sides.host)(st, offset, len)?;
        }
        (sides.device)(st, offset, len)?;
        st.mark_busy()?;
        if !up && let Some((j, o, l)) = pending.replace((i, offset, len)) {
            let prev = &mut stages[j % 2];
            prev.idle()?;
            (sides.host)(prev, o, l)?;
        }
    }
    if let Some((j, o, l)) = pending {
        let last = &mut stages[j % 2];
        last.idle()?;
        (sides.host)(last, o, l)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stage on a device that runs queued copies only when made to wait for them
    /// (as late as a real one may).
    #[derive(Default)]
    struct Late {
        bytes: Vec<u8>,
        /// Queued device copies: (up, offset, len).
        queued: Vec<(bool, usize, usize)>,
        busy: bool,
    }

    struct Device {
        mem: Vec<u8>,
    }

    impl Late {
        fn run(&mut self, dev: &mut Device) {
            for (up, offset, len) in self.queued.drain(..) {
                if up {
                    dev.mem[offset..offset + len].copy_from_slice(&self.bytes[..len]);
                } else {
                    self.bytes[..len].copy_from_slice(&dev.mem[offset..offset + len]);
                }
            }
        }
    }

    /// Stages sharing one device; `idle` runs the stage's queued copies.
    struct Pair<'d> {
        late: Late,
        dev: &'d std::cell::RefCell<Device>,
    }

    impl Stage for Pair<'_> {
        fn idle(&mut self) -> Result<()> {
            self.late.run(&mut self.dev.borrow_mut());
            self.late.busy = false;
            Ok(())
        }
        fn mark_busy(&mut self) -> Result<()> {
            self.late.busy = true;
            Ok(())
        }
    }

    fn pair(dev: &std::cell::RefCell<Device>, piece: usize) -> [Pair<'_>; 2] {
        let stage = || Pair {
            late: Late {
                bytes: vec![0; piece],
                ..Late::default()
            },
            dev,
        };
        [stage(), stage()]
    }

    #[test]
    fn uploads_and_downloads_arrive_whole_however_late_the_device_copies() {
        for (total, piece) in [(0, 4), (1, 4), (4, 4), (10, 4), (13, 3), (64, 7), (5, 100)] {
            let data: Vec<u8> = (0..total).map(|i| (i * 7 + 3) as u8).collect();
            let dev = std::cell::RefCell::new(Device {
                mem: vec![0; total],
            });
            let mut stages = pair(&dev, piece);
            let mut device = |s: &mut Pair, offset, len| {
                assert!(!s.late.busy, "a busy stage reused");
                s.late.queued.push((true, offset, len));
                Ok(())
            };
            let mut host = |s: &mut Pair, offset: usize, len: usize| {
                assert!(
                    !s.late.busy && s.late.queued.is_empty(),
                    "host wrote a busy stage"
                );
                s.late.bytes[..len].copy_from_slice(&data[offset..offset + len]);
                Ok(())
            };
            let sides = Sides {
                device: &mut device,
                host: &mut host,
            };
            staged(&mut stages, total, piece, true, sides).unwrap();
            for s in &mut stages {
                s.idle().unwrap();
            }
            assert_eq!(
                dev.borrow().mem,
                data,
                "upload of {total} in pieces of {piece}"
            );

            let mut out = vec![0u8; total];
            let mut stages = pair(&dev, piece);
            let mut device = |s: &mut Pair, offset, len| {
                assert!(!s.late.busy, "a busy stage reused");
                s.late.queued.push((false, offset, len));
                Ok(())
            };
            let mut host = |s: &mut Pair, offset: usize, len: usize| {
                assert!(
                    !s.late.busy && s.late.queued.is_empty(),
                    "host read a busy stage"
                );
                out[offset..offset + len].copy_from_slice(&s.late.bytes[..len]);
                Ok(())
            };
            let sides = Sides {
                device: &mut device,
                host: &mut host,
            };
            staged(&mut stages, total, piece, false, sides).unwrap();
            assert_eq!(out, data, "download of {total} in pieces of {piece}");
        }
    }
}
