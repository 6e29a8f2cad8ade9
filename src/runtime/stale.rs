//! Temporaries left behind by a process that could not clean up (kill -9, a SIGBUS
//! from an input truncated while mapped, a power cut): `.NAME.mergec-tmp-PID`
//! directories and `.mergec-old-PID` entries whose PID is no live process. The next
//! run that writes into the same parent directory removes them and says so on stderr.
//! Those of a live process (another merge writing there now) are never touched.

use std::path::{Path, PathBuf};

/// The PID in a temporary's name, if it is one of ours.
pub fn temporary_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let digits = match rest.strip_prefix("mergec-old-") {
        Some(d) => d,
        None => rest.rsplit_once(".mergec-tmp-")?.1,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether process `pid` exists (it may belong to another user).
pub fn process_alive(pid: u32) -> bool {
    use nix::errno::Errno;
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // Signal 0 sends nothing: it only checks that the process exists.
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// Bytes under `p` (not following symbolic links).
fn size_of(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(p)
        .map(|d| d.flatten().map(|e| size_of(&e.path())).sum())
        .unwrap_or(0)
}

/// Removes the stale temporaries in `parent` and reports them in one line on stderr;
/// returns what was removed and its size in bytes.
pub fn remove_stale(parent: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = temporary_pid(&name.to_string_lossy()) else {
            continue;
        };
        if pid == me || process_alive(pid) {
            continue;
        }
        let path = e.path();
        let bytes = size_of(&path);
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        let gone = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if gone.is_ok() {
            removed.push((path, bytes));
        }
    }
    if !removed.is_empty() {
        let list: Vec<String> = removed
            .iter()
            .map(|(p, b)| format!("`{}` ({:.1} MB)", p.display(), *b as f64 / 1e6))
            .collect();
        let what = if removed.len() == 1 {
            "a temporary left by a mergec process that no longer runs"
        } else {
            "temporaries left by mergec processes that no longer run"
        };
        eprintln!("note: removed {what}: {}", list.join(", "));
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_temporaries() {
        assert_eq!(temporary_pid(".out.mergec-tmp-123"), Some(123));
        assert_eq!(temporary_pid(".a.b.mergec-tmp-7"), Some(7));
        assert_eq!(temporary_pid(".mergec-old-42"), Some(42));
        assert_eq!(temporary_pid("out.mergec-tmp-123"), None);
        assert_eq!(temporary_pid(".out.mergec-tmp-"), None);
        assert_eq!(temporary_pid(".out.mergec-tmp-12x"), None);
        assert_eq!(temporary_pid(".config.toml.tmp.12"), None);
    }

    #[test]
    fn this_process_is_alive() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(0));
    }
}
