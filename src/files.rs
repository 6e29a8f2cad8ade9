//! Reading user-supplied files with a bound: every program, config, prompt, index, data
//! set and model file goes through here. A path is stat'ed first and refused unless it is
//! a regular file (or a symlink to one), so a FIFO cannot block and `/dev/zero` cannot
//! be read until memory runs out; it is then opened without blocking, checked again on
//! the open handle (the path may have changed in between), and read up to a limit suited
//! to its kind. Every message names the path.

use std::fs::{File, FileType, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Size limits per kind of file, in bytes.
pub mod limit {
    /// A program file: the language's source limit.
    pub const PROGRAM: u64 = crate::syntax::limits::Limits::DEFAULT.max_source_bytes as u64;
    /// YAML and TOML configs, develop prompts.
    pub const CONFIG: u64 = 1 << 20;
    /// JSON indexes and model configs.
    pub const JSON: u64 = 16 << 20;
    /// tokenizer.json and similar vocabularies.
    pub const TOKENIZER: u64 = 64 << 20;
    /// JSONL data sets and records.
    pub const DATASET: u64 = 1 << 30;
}

/// What a path is, in words: "a FIFO (named pipe)", "a directory", ...
pub fn kind_name(ft: &FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Bytes in words: "512 bytes", "64 KiB", "2.1 GB".
pub fn size_words(n: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    match n {
        _ if n < KIB => format!("{n} bytes"),
        _ if n.is_multiple_of(GIB) => format!("{} GiB", n / GIB),
        _ if n.is_multiple_of(MIB) => format!("{} MiB", n / MIB),
        _ if n.is_multiple_of(KIB) && n < MIB => format!("{} KiB", n / KIB),
        _ if n >= 1_000_000_000 => format!("{:.1} GB", n as f64 / 1e9),
        _ if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.1} KB", n as f64 / 1e3),
    }
}

/// Why a file could not be read or written; every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read `{}`: no such file or directory", .0.display())]
    NotFound(PathBuf),
    #[error("cannot read `{}`: permission denied", .0.display())]
    PermissionDenied(PathBuf),
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A directory, FIFO, device... where `what` must be a regular file (or `expected`).
    #[error("cannot read `{}`: it is {kind}; {what} must be {expected}", path.display())]
    WrongKind {
        path: PathBuf,
        kind: &'static str,
        what: String,
        expected: &'static str,
    },
    #[error("cannot read `{}`: it is {}; {what} may be at most {}", path.display(), size_words(*size), size_words(*limit))]
    TooLarge {
        path: PathBuf,
        what: String,
        size: u64,
        limit: u64,
    },
    #[error("cannot read `{}`: it is not UTF-8 text (invalid byte at offset {offset})", path.display())]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<FileError> for String {
    fn from(e: FileError) -> String {
        e.to_string()
    }
}

type Result<T> = std::result::Result<T, FileError>;

fn io_error(path: &Path, e: std::io::Error) -> FileError {
    let path = path.to_path_buf();
    match e.kind() {
        std::io::ErrorKind::NotFound => FileError::NotFound(path),
        std::io::ErrorKind::PermissionDenied => FileError::PermissionDenied(path),
        _ => FileError::Read { path, source: e },
    }
}

fn wrong_kind(path: &Path, meta: &Metadata, what: &str, expected: &'static str) -> FileError {
    FileError::WrongKind {
        path: path.to_path_buf(),
        kind: kind_name(&meta.file_type()),
        what: what.to_string(),
        expected,
    }
}

/// Refuses anything but a regular file (symlinks are followed).
fn require_regular(path: &Path, meta: &Metadata, what: &str) -> Result<()> {
    if meta.is_file() {
        return Ok(());
    }
    Err(wrong_kind(path, meta, what, "a regular file"))
}

/// Stats `path`, refuses anything but a regular file, opens it without blocking and
/// checks the open handle again. Returns the file and its length.
pub fn open_regular(path: &Path, what: &str) -> Result<(File, u64)> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    require_regular(path, &meta, what)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A path swapped for a FIFO after the stat must not block the open.
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts.open(path).map_err(|e| io_error(path, e))?;
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    require_regular(path, &meta, what)?;
    Ok((file, meta.len()))
}

/// Reads at most `limit` bytes of a regular file; `what` says what the file is for
/// ("a program file"), in messages.
pub fn read_bytes(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path, what)?;
    let too_big = |size: u64| FileError::TooLarge {
        path: path.to_path_buf(),
        what: what.to_string(),
        size,
        limit,
    };
    if len > limit {
        return Err(too_big(len));
    }
    let mut buf = Vec::with_capacity(len as usize);
    // The file may grow after the stat: read one byte past the limit to notice.
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_error(path, e))?;
    if buf.len() as u64 > limit {
        return Err(too_big(buf.len() as u64));
    }
    Ok(buf)
}

/// [`read_bytes`], then UTF-8.
pub fn read_text(path: &Path, what: &str, limit: u64) -> Result<String> {
    let bytes = read_bytes(path, what, limit)?;
    String::from_utf8(bytes).map_err(|e| FileError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// A model path (`--base`, `--model`, a generator's model) must be a directory or a
/// regular file before anything in it is opened or mapped.
pub fn check_model_path(path: &Path, what: &str) -> Result<Metadata> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    if meta.is_dir() || meta.is_file() {
        return Ok(meta);
    }
    Err(wrong_kind(
        path,
        &meta,
        what,
        "a directory or a regular file",
    ))
}

/// Reads a program file (a regular file, at most the language's source limit), with a
/// message that says what went wrong.
pub fn read_program(path: &str) -> Result<String> {
    read_text(std::path::Path::new(path), "a program file", limit::PROGRAM)
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes a file atomically: a temporary sibling, then a rename over `path` (creating
/// the parent directory if needed), so readers see the old file or the whole new one.
/// A symbolic link's target is replaced, not the link. A device, pipe or socket
/// (`/dev/null`) is written to, never replaced, and so is one of this process's
/// descriptors (`/dev/stdout`, `/dev/fd/N`, `/proc/self/fd/N`), through the descriptor
/// itself: whatever it is open on (a terminal, a pipe, the file a shell redirected it
/// to) gets the bytes where its next write would go.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |source: std::io::Error| FileError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(fd) = own_descriptor(path) {
        return write_descriptor(fd, bytes).map_err(err);
    }
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        return std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
            .map_err(err);
    }
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).ok(),
        _ => None,
    };
    let path = target.as_deref().unwrap_or(path);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let name = path.file_name().ok_or_else(|| {
        err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file name",
        ))
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    // Synced before the rename, so a crash leaves the old file or the whole new one.
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// The descriptor of this process that `path` names: `/dev/stdout`, `/dev/stderr`,
/// `/dev/fd/N`, `/proc/self/fd/N`.
fn own_descriptor(path: &Path) -> Option<i32> {
    let s = path.to_str()?;
    match s {
        "/dev/stdout" => Some(1),
        "/dev/stderr" => Some(2),
        _ => s
            .strip_prefix("/dev/fd/")
            .or_else(|| s.strip_prefix("/proc/self/fd/"))?
            .parse()
            .ok(),
    }
}

/// Writes to descriptor `fd` at its offset (reopening `/dev/stdout` would start a new
/// offset at 0 of a redirected file, and the process's own writes would overwrite it).
fn write_descriptor(fd: i32, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    std::io::stdout().flush()?;
    // SAFETY: dup of a descriptor number; a closed one gives -1 (EBADF), checked below.
    let d = unsafe { libc::dup(fd) };
    if d < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `d` is a fresh descriptor that nothing else owns.
    let mut f = std::fs::File::from(unsafe { std::os::fd::OwnedFd::from_raw_fd(d) });
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn an_atomic_write_writes_into_a_device_or_pipe_and_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write_atomic(&fifo, b"through the pipe").unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
        // A descriptor (here of a file, as `--out /dev/stdout > file` gives): written at its
        // end, the file itself kept.
        let redirected = dir.path().join("redirected.txt");
        let mut f = std::fs::File::create(&redirected).unwrap();
        std::io::Write::write_all(&mut f, b"summary\n").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        write_atomic(Path::new(&format!("/proc/self/fd/{fd}")), b"items\n").unwrap();
        std::io::Write::write_all(&mut f, b"more\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&redirected).unwrap(),
            "summary\nitems\nmore\n"
        );
        let real = dir.path().join("real.jsonl");
        std::fs::write(&real, "old").unwrap();
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
    }

    #[test]
    fn sizes_read_as_words() {
        assert_eq!(size_words(100), "100 bytes");
        assert_eq!(size_words(64 << 10), "64 KiB");
        assert_eq!(size_words(1 << 20), "1 MiB");
        assert_eq!(size_words(2_100_000_000), "2.1 GB");
    }

    #[test]
    fn directories_and_devices_are_refused() {
        let e = read_text(Path::new("/"), "a program file", 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("it is a directory"), "{e}");
        #[cfg(unix)]
        {
            let e = read_text(Path::new("/dev/zero"), "a program file", 10)
                .unwrap_err()
                .to_string();
            assert!(e.contains("a character device"), "{e}");
        }
    }

    #[test]
    fn files_past_the_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.merge");
        std::fs::write(&p, vec![b'a'; 2000]).unwrap();
        let e = read_text(&p, "a program file", 1024).unwrap_err();
        assert!(matches!(e, FileError::TooLarge { size: 2000, .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("may be at most 1 KiB"), "{e}");
        assert_eq!(read_text(&p, "a program file", 2000).unwrap().len(), 2000);
    }
}
