//! The run's append-only record: one JSON object per line, each written with a single
//! `write` and synced before the next step starts, so a killed run loses at most the line
//! being written. Opening an existing record reads every complete line back (for
//! `--resume`) and cuts a torn last line off.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct RunLog {
    path: PathBuf,
    file: File,
}

impl RunLog {
    /// Opens (or creates) the record at `path`; returns it and the records already in it.
    pub fn open<T: DeserializeOwned>(path: &Path) -> Result<(RunLog, Vec<T>), String> {
        let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let text = match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
            _ => crate::files::read_bytes(path, "a run record", crate::files::limit::DATASET)?,
        };
        let mut records = vec![];
        let mut good = 0usize;
        let mut off = 0usize;
        for line in text.split_inclusive(|&b| b == b'\n') {
            off += line.len();
            if line.last() != Some(&b'\n') {
                break; // torn: written when the run was killed
            }
            let body = &line[..line.len() - 1];
            if body.iter().all(u8::is_ascii_whitespace) {
                good = off;
                continue;
            }
            match serde_json::from_slice::<T>(body) {
                Ok(r) => {
                    records.push(r);
                    good = off;
                }
                Err(e) => {
                    let line_no = records.len() + 1;
                    return Err(at(&format!(
                        "line {line_no} is not a record of this version of mergec ({e}); \
                         start a new run directory"
                    )));
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| at(&e))?;
        if good < text.len() {
            file.set_len(good as u64).map_err(|e| at(&e))?;
        }
        Ok((
            RunLog {
                path: path.to_path_buf(),
                file,
            },
            records,
        ))
    }

    /// Appends one record and syncs it to disk.
    pub fn append<T: Serialize>(&mut self, rec: &T) -> Result<(), String> {
        let mut line = serde_json::to_vec(rec).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The file that marks a directory as a mergec run (written when the run is created).
pub const RUN_MARKER: &str = ".mergec-run";

/// Checks, before anything is written, that `dir` may hold a run: absent or empty
/// (returns true: [`create_run_dir`] makes and marks it) or already a mergec run (marked;
/// false). Anything else is refused, naming a few of its entries, so no unrelated file
/// is overwritten. `--resume` needs a marked run.
pub fn check_run_dir(dir: &Path, resume: bool) -> Result<bool, String> {
    if dir.as_os_str().is_empty() {
        return Err("run_dir is empty: set `run_dir` in the config or pass --run-dir DIR".into());
    }
    let shown = dir.display();
    if dir.join(RUN_MARKER).is_file() {
        return Ok(false);
    }
    if resume {
        return Err(format!(
            "--resume: `{shown}` is not a mergec run (it has no {RUN_MARKER}); \
             start a new run without --resume"
        ));
    }
    if dir.exists() && !dir.is_dir() {
        return Err(format!("run_dir `{shown}` exists and is not a directory"));
    }
    let mut found: Vec<String> = match std::fs::read_dir(dir) {
        Ok(d) => d
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(format!("run_dir `{shown}`: {e}")),
    };
    if !found.is_empty() {
        found.sort();
        let more = found.len().saturating_sub(5);
        found.truncate(5);
        let mut list = found.join(", ");
        if more > 0 {
            list.push_str(&format!(" and {more} more"));
        }
        return Err(format!(
            "run_dir `{shown}` is not empty and not a mergec run (it holds {list}); \
             choose a new or empty directory (a run started by an older mergec: \
             create {shown}/{RUN_MARKER} to continue it)"
        ));
    }
    Ok(true)
}

/// Creates the run directory `dir` (checked by [`check_run_dir`]) with its marker.
pub fn create_run_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("run_dir `{}`: {e}", dir.display()))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = crate::files::sha256_hex(format!("{nanos} {}", std::process::id()).as_bytes());
    let text = format!(
        "mergec {} run directory\nid {}\n",
        env!("CARGO_PKG_VERSION"),
        &id[..12]
    );
    Ok(crate::files::write_atomic(
        &dir.join(RUN_MARKER),
        text.as_bytes(),
    )?)
}

/// The run's id (12 hex digits): the `id` line of its marker, or for a run made before
/// markers had one, a hash of its directory's canonical path. Names the run's cluster
/// jobs, so that two runs never share one.
pub fn run_id(dir: &Path) -> String {
    let marker = std::fs::read_to_string(dir.join(RUN_MARKER)).unwrap_or_default();
    if let Some(id) = marker.lines().find_map(|l| l.strip_prefix("id ")) {
        return id.trim().to_string();
    }
    let path = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    crate::files::sha256_hex(path.display().to_string().as_bytes())[..12].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_reads_complete_lines_and_cuts_a_torn_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("programs.jsonl");
        {
            let (mut log, old) = RunLog::open::<Vec<u32>>(&p).unwrap();
            assert!(old.is_empty());
            log.append(&vec![1u32]).unwrap();
            log.append(&vec![2u32, 3]).unwrap();
        }
        // A kill in the middle of a write.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"[4, 5").unwrap();
        drop(f);
        let (mut log, old) = RunLog::open::<Vec<u32>>(&p).unwrap();
        assert_eq!(old, vec![vec![1], vec![2, 3]]);
        log.append(&vec![6u32]).unwrap();
        let (_, again) = RunLog::open::<Vec<u32>>(&p).unwrap();
        assert_eq!(again, vec![vec![1], vec![2, 3], vec![6]]);
    }
}
