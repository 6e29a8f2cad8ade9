//! How a merge's output file is written: through a staging buffer, with direct I/O
//! (`O_DIRECT`) where the file system takes it.
//!
//! A buffered `write` copies every output byte into the page cache, and on a
//! virtual machine whose fresh pages are costly that copy took half the CPU time of a
//! task-arithmetic merge (`perf`: `copy_folio_from_iter_atomic`). Direct writes go from
//! the staging buffer to the disk, with no copy in the kernel and no gigabytes of dirty
//! page cache left to flush by the final `fsync`. Where direct I/O is refused (tmpfs on
//! older kernels, a device or pipe, a write the file system will not take), the sink
//! goes on with buffered writes: same bytes, same file.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;

/// File offsets, lengths and buffer addresses of direct writes are multiples of this
/// (the largest logical block size of common devices).
const ALIGN: usize = 4096;

/// Bytes staged before a write: large enough that a write's fixed cost is small,
/// small enough to stay in the cache while being filled.
const STAGE: usize = 8 << 20;

/// How writes reach the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Direct I/O where the file system takes it, else buffered.
    Direct,
    /// Through the page cache.
    Buffered,
}

/// A file written front to back through an aligned staging buffer.
pub struct Sink {
    file: File,
    /// The staging memory; the aligned stage is `buf[start..start + STAGE]`.
    buf: Vec<u8>,
    start: usize,
    /// Bytes staged and not yet written.
    fill: usize,
    direct: bool,
}

impl Sink {
    /// A sink that writes `file` (opened for writing, empty) from its start.
    pub fn new(file: File, mode: WriteMode) -> Sink {
        let direct = mode == WriteMode::Direct && set_direct(&file, true).is_ok();
        let buf = vec![0u8; STAGE + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        Sink {
            file,
            buf,
            start,
            fill: 0,
            direct,
        }
    }

    /// Whether writes currently bypass the page cache.
    #[cfg(test)]
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Appends `bytes`.
    pub fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if !self.direct && bytes.len() >= STAGE {
            // Buffered, a large piece goes to the file as it is, not through the stage.
            self.drain(false)?;
            return self.file.write_all(bytes);
        }
        while !bytes.is_empty() {
            let n = (STAGE - self.fill).min(bytes.len());
            let at = self.start + self.fill;
            self.buf[at..at + n].copy_from_slice(&bytes[..n]);
            self.fill += n;
            bytes = &bytes[n..];
            if self.fill == STAGE {
                self.drain(false)?;
            }
        }
        Ok(())
    }

    /// Writes what is staged, and the file's unaligned tail, and syncs data and metadata
    /// to the disk. Returns the file.
    pub fn finish(mut self) -> io::Result<File> {
        self.drain(true)?;
        self.file.sync_all()?;
        Ok(self.file)
    }

    /// Writes the staged whole blocks (and, at the `end`, the rest), keeping a partial
    /// block staged for the next bytes.
    fn drain(&mut self, end: bool) -> io::Result<()> {
        let whole = if self.direct {
            self.fill / ALIGN * ALIGN
        } else {
            self.fill
        };
        let rest = self.fill - whole;
        self.put(whole)?;
        if rest == 0 {
            return Ok(());
        }
        let from = self.start + whole;
        self.buf.copy_within(from..from + rest, self.start);
        if end {
            // The file's last partial block: direct I/O cannot write it.
            if self.direct {
                set_direct(&self.file, false)?;
                self.direct = false;
            }
            self.put(rest)?;
        }
        Ok(())
    }

    /// Writes the first `n` staged bytes and removes them from the stage (the caller
    /// moves any bytes after them). A direct write the file system refuses is done
    /// again buffered, and the sink stays buffered.
    fn put(&mut self, n: usize) -> io::Result<()> {
        let span = self.start..self.start + n;
        let before = if self.direct {
            self.file.stream_position()?
        } else {
            0
        };
        match self.file.write_all(&self.buf[span.clone()]) {
            Ok(()) => {}
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                set_direct(&self.file, false)?;
                self.direct = false;
                // Part of it may be written: go back to where this write began.
                self.file.seek(SeekFrom::Start(before))?;
                self.file.write_all(&self.buf[span])?;
            }
            Err(e) => return Err(e),
        }
        self.fill -= n;
        Ok(())
    }
}

/// Turns direct I/O on or off for `file`.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this process owns, with integer arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let want = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, want) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    /// Pieces of awkward sizes, across stage boundaries, come out as one file, direct
    /// or buffered, and the file has exactly their length.
    #[test]
    fn pieces_of_any_size_come_out_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let sizes = [
            8 + 1234,
            1,
            ALIGN - 1,
            STAGE + 17,
            3 * ALIGN,
            STAGE - 5,
            999,
        ];
        for mode in [WriteMode::Direct, WriteMode::Buffered] {
            let path = dir.path().join(format!("{mode:?}"));
            let mut sink = Sink::new(File::create(&path).unwrap(), mode);
            if mode == WriteMode::Buffered {
                assert!(!sink.is_direct());
            }
            let mut want = Vec::new();
            for (i, &n) in sizes.iter().enumerate() {
                let b = bytes(n, i as u8);
                sink.write(&b).unwrap();
                want.extend_from_slice(&b);
            }
            sink.finish().unwrap();
            let got = std::fs::read(&path).unwrap();
            assert_eq!(got.len(), want.len(), "{mode:?}");
            assert!(got == want, "{mode:?}: the bytes differ");
        }
    }

    /// A file system without direct I/O (or a file that is not one) gets buffered writes.
    #[test]
    fn without_direct_io_writes_are_buffered() {
        let Ok(file) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
            return;
        };
        let mut sink = Sink::new(file, WriteMode::Direct);
        assert!(!sink.is_direct(), "/dev/null takes direct I/O?");
        sink.write(&bytes(STAGE + 3, 1)).unwrap();
        // (No `finish`: /dev/null cannot be synced.)
        sink.drain(true).unwrap();
        assert_eq!(sink.fill, 0);
    }
}
