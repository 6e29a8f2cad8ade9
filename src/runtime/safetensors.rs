//! A small, defensive safetensors reader (memory-mapped) and writer.
//!
//! Format: an 8-byte little-endian header length `n`, `n` bytes of JSON
//! (`{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...}`,
//! plus an optional `"__metadata__"` map of strings), then the data section.
//! Every problem with a file is an [`Error`] naming the file and what is wrong;
//! nothing here panics on corrupt input.

use crate::interp::Tensor;
use crate::types::did_you_mean;
use memmap2::Mmap;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

mod header;
mod write;
pub use header::KNOWN_DTYPES;
use header::parse_header;
pub use write::{
    Dtype, HeaderEntry, RawTensor, TensorMap, encode_raw, header_bytes, to_raw, write,
    write_sharded,
};

/// The single-file checkpoint name inside a model directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// The index of a sharded checkpoint inside a model directory.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// Headers larger than this are refused (the reference implementation's limit).
const MAX_HEADER: u64 = 100_000_000;

/// A failure to open or read a checkpoint: the message names the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub message: String,
}

impl Error {
    pub(crate) fn at(path: &Path, what: impl fmt::Display) -> Error {
        Error {
            message: format!("`{}`: {what}", path.display()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// One stored tensor: where it lives and how it is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// As written in the header: "F32", "BF16", "I64", ...
    pub dtype: String,
    pub shape: Vec<usize>,
    shard: usize,
    start: usize,
    end: usize,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Size of the stored data in bytes.
    pub fn nbytes(&self) -> usize {
        self.end - self.start
    }
}

/// One memory-mapped `.safetensors` file.
struct Shard {
    path: PathBuf,
    map: Mmap,
    /// Offset of the data section (8 + header length).
    data_start: usize,
    /// Which file, in which version, was mapped (None where it cannot be told).
    id: Option<FileId>,
}

/// A file and its version as the file system tells them: what a result computed from
/// its bytes (a digest) can be cached under. Rewriting the file changes `ctime`, which
/// no program can set back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileId {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileId {
    /// The identity of the open `file` at `path` (None off Unix).
    fn of(path: &Path, file: &std::fs::File) -> Option<FileId> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let m = file.metadata().ok()?;
            let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
            Some(FileId {
                path: std::fs::canonicalize(path).ok()?,
                dev: m.dev(),
                ino: m.ino(),
                size: m.size(),
                mtime_ns: ns(m.mtime(), m.mtime_nsec()),
                ctime_ns: ns(m.ctime(), m.ctime_nsec()),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = (path, file);
            None
        }
    }
}

/// Where a tensor's stored bytes are: the file and the byte range in it.
pub struct StoredAt<'a> {
    pub file: &'a FileId,
    pub start: u64,
    pub end: u64,
}

/// An opened checkpoint: one file, or the shards of a model directory.
pub struct Checkpoint {
    path: PathBuf,
    shards: Vec<Shard>,
    tensors: BTreeMap<String, TensorInfo>,
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("shards", &self.shards.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl Checkpoint {
    /// Opens a `.safetensors` file, or a directory holding `model.safetensors`
    /// or `model.safetensors.index.json` and its shards.
    pub fn open(path: impl AsRef<Path>) -> Result<Checkpoint> {
        let path = path.as_ref();
        let meta = crate::files::check_model_path(path, "a checkpoint").map_err(|e| Error {
            message: e.to_string(),
        })?;
        let mut ck = Checkpoint {
            path: path.to_path_buf(),
            shards: Vec::new(),
            tensors: BTreeMap::new(),
        };
        if !meta.is_dir() {
            ck.add_shard(path)?;
            return Ok(ck);
        }
        let index = path.join(INDEX_FILE);
        let single = path.join(MODEL_FILE);
        if index.is_file() {
            ck.open_index(&index)?;
        } else if single.is_file() {
            ck.add_shard(&single)?;
        } else {
            return Err(Error::at(path, no_model_message(path)));
        }
        Ok(ck)
    }

    /// The path this checkpoint was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The files read, in the order they were opened.
    pub fn files(&self) -> Vec<&Path> {
        self.shards.iter().map(|s| s.path.as_path()).collect()
    }

    /// Every tensor, sorted by name.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorInfo> {
        self.tensors.values()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// A tensor's description; a missing name suggests the closest one.
    pub fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors.get(name).ok_or_else(|| {
            let hint = did_you_mean(name, self.names()).unwrap_or_else(|| {
                let some: Vec<&str> = self.names().take(3).collect();
                if some.is_empty() {
                    "the checkpoint holds no tensors".into()
                } else {
                    format!("it holds {} tensors, e.g. {}", self.len(), some.join(", "))
                }
            });
            Error::at(&self.path, format!("no tensor `{name}` ({hint})"))
        })
    }

    /// Reads one tensor as f32 (F32, F16 and BF16 are converted; others are refused).
    pub fn read_f32(&self, name: &str) -> Result<Tensor> {
        let info = self.info(name)?;
        let shard = &self.shards[info.shard];
        let Some(dtype) = Dtype::from_header(&info.dtype) else {
            return Err(Error::at(
                &shard.path,
                format!(
                    "tensor `{name}` has dtype {}; only F32, F16 and BF16 can be read as f32",
                    info.dtype
                ),
            ));
        };
        let n = info.numel();
        let bytes = shard
            .map
            .get(shard.data_start + info.start..shard.data_start + info.end)
            .filter(|b| b.len() == n * dtype.size())
            .ok_or_else(|| Error::at(&shard.path, format!("tensor `{name}`: data out of range")))?;
        let data = (0..n).map(|i| dtype.load(bytes, i)).collect();
        Ok(Tensor::new(info.shape.clone(), data))
    }

    /// The stored bytes of a tensor, for copying it unchanged.
    pub fn raw_bytes(&self, name: &str) -> Result<&[u8]> {
        let info = self.info(name)?;
        let shard = &self.shards[info.shard];
        shard
            .map
            .get(shard.data_start + info.start..shard.data_start + info.end)
            .ok_or_else(|| Error::at(&shard.path, format!("tensor `{name}`: data out of range")))
    }

    /// Where tensor `name`'s stored bytes are (None for an unknown name, or a file whose
    /// identity is unknown).
    pub fn stored_at(&self, name: &str) -> Option<StoredAt<'_>> {
        let info = self.tensors.get(name)?;
        let shard = &self.shards[info.shard];
        Some(StoredAt {
            file: shard.id.as_ref()?,
            start: (shard.data_start + info.start) as u64,
            end: (shard.data_start + info.end) as u64,
        })
    }

    /// Drops a tensor's pages from this process: `madvise(MADV_DONTNEED)` over the page-aligned
    /// range its stored bytes cover. Pages of a mapped input stay resident once touched and
    /// count toward the process's RSS (and its peak, VmHWM) until the map goes; a merge calls
    /// this when it has finished with a tensor so that its peak stays near one working set,
    /// not the sum of the inputs. A later read faults the bytes in again (from the page cache
    /// or the file), unchanged. Nothing happens for an unknown name, an empty tensor, or
    /// where madvise is unavailable (off Unix).
    ///
    /// Contract: call it only when no slice of this tensor's bytes (from
    /// [`Checkpoint::raw_bytes`]) is alive and no read of it is under way, i.e. after its
    /// data have been copied or converted. The first and last pages may be shared with the
    /// neighbouring tensors and are dropped too; they come back on their next read.
    pub fn release(&self, name: &str) {
        #[cfg(unix)]
        if let Some(info) = self.tensors.get(name)
            && info.end > info.start
        {
            let shard = &self.shards[info.shard];
            // In bounds: `parse_entry` checked `end` against the data section. memmap2 rounds
            // the offset down to a page boundary and the kernel rounds the length up.
            let (offset, len) = (shard.data_start + info.start, info.end - info.start);
            // SAFETY: the map is read-only and file-backed (memmap2 maps it MAP_SHARED,
            // PROT_READ), so no page in it was ever written: DONTNEED only drops this
            // process's mappings of cached file pages, and any later access re-reads the same
            // bytes from the file. The contract above (no live slice of the range) keeps
            // callers from depending even on that.
            let dropped = unsafe {
                shard
                    .map
                    .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len)
            };
            // Advisory: failing only leaves the pages resident.
            debug_assert!(dropped.is_ok(), "madvise(DONTNEED): {dropped:?}");
        }
        #[cfg(not(unix))]
        let _ = name;
    }

    /// Maps a tensor's pages in one call (MADV_POPULATE_READ) instead of one page fault
    /// at a time while a kernel reads it. Advisory: failures only mean later faults.
    pub fn prefetch(&self, name: &str) {
        #[cfg(target_os = "linux")]
        if let Some(info) = self.tensors.get(name)
            && info.end > info.start
        {
            let shard = &self.shards[info.shard];
            let (offset, len) = (shard.data_start + info.start, info.end - info.start);
            let _ = shard
                .map
                .advise_range(memmap2::Advice::PopulateRead, offset, len);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = name;
    }

    /// Maps one file and adds its tensors.
    fn add_shard(&mut self, path: &Path) -> Result<usize> {
        let (file, len) =
            crate::files::open_regular(path, "a safetensors file").map_err(|e| Error {
                message: e.to_string(),
            })?;
        if len < 8 {
            return Err(Error::at(
                path,
                format!(
                    "truncated file: {len} bytes, too short for a safetensors header \
                     (an 8-byte length, then JSON)"
                ),
            ));
        }
        // SAFETY: the map is only read. If another process truncates the file while
        // it is mapped, reads may fault; that is the usual contract of mapped
        // checkpoints (the reference implementation maps them the same way).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::at(path, io_what(&e)))?;
        let (data_start, infos) = parse_header(path, &map)?;
        let shard = self.shards.len();
        for mut info in infos {
            info.shard = shard;
            if let Some(prev) = self.tensors.get(&info.name) {
                let other = &self.shards[prev.shard].path;
                return Err(Error::at(
                    path,
                    format!(
                        "tensor `{}` is also stored in `{}`",
                        info.name,
                        other.display()
                    ),
                ));
            }
            self.tensors.insert(info.name.clone(), info);
        }
        self.shards.push(Shard {
            path: path.to_path_buf(),
            id: FileId::of(path, &file),
            map,
            data_start,
        });
        Ok(shard)
    }

    /// Opens every shard named in `model.safetensors.index.json` and checks the map.
    fn open_index(&mut self, index: &Path) -> Result<()> {
        let text = crate::files::read_text(index, "a checkpoint index", crate::files::limit::JSON)
            .map_err(|e| Error {
                message: e.to_string(),
            })?;
        let json: Json = serde_json::from_str(&text)
            .map_err(|e| Error::at(index, format!("bad index JSON: {e}")))?;
        let Some(map) = json.get("weight_map").and_then(Json::as_object) else {
            return Err(Error::at(
                index,
                "bad index JSON: no `weight_map` object (tensor name -> shard file)",
            ));
        };
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut opened: BTreeMap<&str, usize> = BTreeMap::new();
        for (name, file) in map {
            let Some(file) = file.as_str() else {
                return Err(Error::at(
                    index,
                    format!("bad index JSON: the shard of `{name}` is not a file name"),
                ));
            };
            let shard = match opened.get(file) {
                Some(&s) => s,
                None => {
                    let p = shard_path(dir, file)?;
                    // Present but not a regular file (a FIFO): add_shard names its kind.
                    if !p.exists() {
                        return Err(Error::at(
                            index,
                            format!("shard `{file}` (listed for `{name}`) is missing"),
                        ));
                    }
                    let s = self.add_shard(&p)?;
                    opened.insert(file, s);
                    s
                }
            };
            if self.tensors.get(name).map(|t| t.shard) != Some(shard) {
                return Err(Error::at(
                    index,
                    format!("the index puts `{name}` in `{file}`, but that shard does not hold it"),
                ));
            }
        }
        Ok(())
    }
}

/// The path of a shard named in an index: a plain relative name that stays inside the
/// model directory `dir` (no `..`, no absolute path, no symlink leading out of it, except
/// from a Hugging Face cache snapshot `models--ORG--NAME/snapshots/C/` into that repo's
/// `blobs/`, which is how the cache stores every file).
pub fn shard_path(dir: &Path, name: &str) -> Result<PathBuf> {
    use std::path::Component;
    let index = dir.join(INDEX_FILE);
    let plain = !name.is_empty()
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(Error::at(
            &index,
            format!(
                "shard `{name}` is not a plain file name inside the model directory \
                 (no `..`, `.` or absolute paths)"
            ),
        ));
    }
    let path = dir.join(name);
    // A symlink may still lead out: compare the resolved paths (a missing shard is
    // reported by the caller).
    if let (Ok(real_dir), Ok(real)) = (dir.canonicalize(), path.canonicalize())
        && !real.starts_with(&real_dir)
        && !hub_cache_blobs(&real_dir).is_some_and(|blobs| real.starts_with(blobs))
    {
        return Err(Error::at(
            &index,
            format!("shard `{name}` is a link that leads outside the model directory"),
        ));
    }
    Ok(path)
}

/// `models--ORG--NAME/blobs` when `dir` is a snapshot `models--ORG--NAME/snapshots/C`.
fn hub_cache_blobs(dir: &Path) -> Option<PathBuf> {
    let snapshots = dir.parent()?;
    let repo = snapshots.parent()?;
    let is_repo = repo
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("models--"));
    (snapshots.file_name()? == "snapshots" && is_repo).then(|| repo.join("blobs"))
}

fn io_what(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => format!("cannot read: {e}"),
    }
}

fn no_model_message(dir: &Path) -> String {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    found.sort();
    let mut msg = format!("a model directory needs `{MODEL_FILE}` or `{INDEX_FILE}`");
    if !found.is_empty() {
        msg.push_str(&format!(
            "; it has {} (open one of those files directly)",
            found.join(", ")
        ));
    }
    msg
}
