//! What `--out` may name, and how the finished output takes its place.
//!
//! mergec builds its output in a temporary sibling of `--out` and renames it into place,
//! so whatever `--out` names now is replaced as a whole. That is only ever allowed for
//! an empty directory, or, under `--force`, a *model directory*: weights, their index,
//! config, tokenizer files, a model card and provenance, and nothing else (what a merge,
//! mergekit or `huggingface-cli download` writes). Everything else is refused before any
//! work, naming what is there: a file, a device such as `/dev/null`, a pipe, a mount
//! point, a directory holding other files or any subdirectory (a home directory, a
//! project). A symbolic link is followed: the output goes where it points. The check runs
//! again just before the output is moved into place, in case the directory changed
//! during the merge; on Linux the move is one atomic exchange (`renameat2`), so there is
//! no moment when `--out` is missing.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// More entries than any model directory holds: refused without reading on.
const MAX_ENTRIES: usize = 4096;

/// Where the output goes, resolved and checked.
#[derive(Debug)]
pub struct OutTarget {
    /// The path to move the output to (a symbolic link's target where `--out` is one).
    pub dest: PathBuf,
    /// Its parent, where the temporary is built.
    pub parent: PathBuf,
    /// Its file name.
    pub name: String,
}

/// Resolves `--out` and checks that what is there may be replaced (see the module doc).
pub fn resolve(given: &Path, force: bool) -> Result<OutTarget, String> {
    let dest = follow_link(given)?;
    let name = dest
        .file_name()
        .ok_or_else(|| format!("--out `{}` must name a directory", given.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(format!(
            "the parent of --out, `{}`, does not exist",
            parent.display()
        ));
    }
    check_existing(given, &dest, &parent, force)?;
    Ok(OutTarget { dest, parent, name })
}

/// `given`, or the target of the symbolic link it is.
fn follow_link(given: &Path) -> Result<PathBuf, String> {
    match std::fs::symlink_metadata(given) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(given).map_err(|_| {
            let to = std::fs::read_link(given).unwrap_or_default();
            format!(
                "--out `{}` is a symbolic link to `{}`, which does not exist",
                given.display(),
                to.display()
            )
        }),
        _ => Ok(given.to_path_buf()),
    }
}

/// Whether something replaceable is at `dest`; an error naming it if it may not be
/// replaced. `given` is the path as the user wrote it, for messages.
pub fn check_existing(
    given: &Path,
    dest: &Path,
    parent: &Path,
    force: bool,
) -> Result<bool, String> {
    let shown = given.display();
    let meta = match std::fs::symlink_metadata(dest) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("--out `{shown}`: {e}")),
    };
    let t = meta.file_type();
    if !t.is_dir() {
        let what = crate::files::kind_name(&t);
        return Err(format!(
            "--out `{shown}` is {what}; mergec writes a model directory there, so choose \
             another --out (--force replaces only a directory of model files)"
        ));
    }
    if std::fs::metadata(parent).is_ok_and(|p| p.dev() != meta.dev()) {
        return Err(format!(
            "--out `{shown}` is a mount point; mergec builds the output beside --out and \
             renames it into place, which cannot replace a mount point: name a directory \
             inside it, e.g. `{}`",
            given.join("merged").display()
        ));
    }
    let (entries, foreign) = scan(dest).map_err(|e| format!("--out `{shown}`: {e}"))?;
    match foreign {
        Some(what) => Err(format!(
            "--out `{shown}` holds {what}, which is not part of a model; --force replaces \
             only a directory of model files (weights, config, tokenizer, model card), so \
             choose another --out, or move it away yourself"
        )),
        None if entries > 0 && !force => Err(format!(
            "--out `{shown}` exists and is not empty; pass --force to replace it"
        )),
        None => Ok(true),
    }
}

/// How many entries `dir` holds, and the first that a model directory would not hold,
/// described (`the directory `src/``, `the file `notes.txt``).
fn scan(dir: &Path) -> std::io::Result<(usize, Option<String>)> {
    let mut names: Vec<(String, bool)> = Vec::new();
    for e in std::fs::read_dir(dir)? {
        if names.len() == MAX_ENTRIES {
            return Ok((
                names.len(),
                Some(format!("more than {MAX_ENTRIES} entries")),
            ));
        }
        let e = e?;
        let is_dir = e.file_type()?.is_dir();
        names.push((e.file_name().to_string_lossy().into_owned(), is_dir));
    }
    // The same answer whatever order the file system lists them in.
    names.sort();
    let foreign = names.iter().find_map(|(n, is_dir)| {
        if *is_dir {
            Some(format!("the directory `{n}/`"))
        } else if !is_model_file(n) {
            Some(format!("the file `{n}`"))
        } else {
            None
        }
    });
    Ok((names.len(), foreign))
}

/// Whether a model directory (a merge's output, mergekit's, a Hub download) holds files
/// of this name.
pub fn is_model_file(name: &str) -> bool {
    use super::output::{CONFIG_FILES, TOKENIZER_FILES};
    // Besides the config and tokenizer files a merge copies: what it writes itself, and
    // what else a model's repository holds.
    const EXACT: &[&str] = &[
        "mergec.json",
        "mergekit_config.yml",
        "README.md",
        "params.json",
        "vocab.txt",
        "LICENSE",
        "LICENSE.txt",
        "LICENSE.md",
        "NOTICE",
        "USE_POLICY.md",
        ".gitattributes",
    ];
    const SUFFIXES: &[&str] = &[
        ".safetensors",
        ".safetensors.index.json",
        ".bin",
        ".bin.index.json",
        ".gguf",
        ".pt",
        ".pth",
        ".model",
        ".tiktoken",
        "_config.json",
    ];
    [EXACT, CONFIG_FILES, TOKENIZER_FILES]
        .iter()
        .any(|list| list.contains(&name))
        || SUFFIXES
            .iter()
            .any(|s| name.ends_with(s) && name.len() > s.len())
}

/// Puts the finished directory `tmp` at `dest`. When `dest` exists it is exchanged with
/// `tmp` in one step where the file system can (Linux `renameat2`), so `dest` is never
/// missing, and what was there is then at `tmp`, for the caller to remove; elsewhere it is
/// moved to `old` first. Returns where the replaced directory now is, if there was one.
pub fn move_into_place(
    tmp: &Path,
    dest: &Path,
    old: &Path,
    replace: bool,
) -> std::io::Result<Option<PathBuf>> {
    if !replace {
        std::fs::rename(tmp, dest)?;
        return Ok(None);
    }
    match exchange(tmp, dest) {
        Ok(()) => return Ok(Some(tmp.to_path_buf())),
        Err(e) if !exchange_unsupported(&e) => return Err(e),
        Err(_) => {}
    }
    std::fs::rename(dest, old)?;
    if let Err(e) = std::fs::rename(tmp, dest) {
        // Put the old one back: a failed move loses nothing.
        let _ = std::fs::rename(old, dest);
        return Err(e);
    }
    Ok(Some(old.to_path_buf()))
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: two NUL-terminated paths that live across the call; no memory is shared.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// The file system or kernel cannot exchange: fall back to two renames.
fn exchange_unsupported(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Unsupported
        || matches!(
            e.raw_os_error(),
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn model_files_are_recognised_and_nothing_else() {
        for n in [
            "model.safetensors",
            "model-00001-of-00003.safetensors",
            "model.safetensors.index.json",
            "pytorch_model.bin",
            "model.gguf",
            "tokenizer.model",
            "tokenizer_config.json",
            "generation_config.json",
            "adapter_config.json",
            "adapter_model.safetensors",
            "README.md",
            "mergec.json",
        ] {
            assert!(is_model_file(n), "{n}");
        }
        for n in [
            "notes.txt",
            "main.py",
            ".bashrc",
            "taxes.pdf",
            ".safetensors",
            "package.json",
        ] {
            assert!(!is_model_file(n), "{n}");
        }
    }

    #[test]
    fn only_empty_or_model_directories_may_be_replaced() {
        let d = dir();
        let p = d.path();
        let check = |name: &str, force| check_existing(Path::new(name), &p.join(name), p, force);
        assert_eq!(check("missing", false), Ok(false));
        std::fs::create_dir(p.join("empty")).unwrap();
        assert_eq!(check("empty", false), Ok(true));
        std::fs::create_dir(p.join("model")).unwrap();
        std::fs::write(p.join("model/model.safetensors"), "x").unwrap();
        std::fs::write(p.join("model/config.json"), "{}").unwrap();
        assert!(check("model", false).unwrap_err().contains("pass --force"));
        assert_eq!(check("model", true), Ok(true));
        std::fs::write(p.join("model/notes.txt"), "mine").unwrap();
        let e = check("model", true).unwrap_err();
        assert!(
            e.contains("the file `notes.txt`") && e.contains("not part of a model"),
            "{e}"
        );
        std::fs::remove_file(p.join("model/notes.txt")).unwrap();
        std::fs::create_dir(p.join("model/.cache")).unwrap();
        let e = check("model", true).unwrap_err();
        assert!(e.contains("the directory `.cache/`"), "{e}");
        std::fs::write(p.join("file"), "x").unwrap();
        let e = check("file", true).unwrap_err();
        assert!(e.contains("is a regular file"), "{e}");
        let e = check_existing(
            Path::new("/dev/null"),
            Path::new("/dev/null"),
            Path::new("/dev"),
            true,
        )
        .unwrap_err();
        assert!(e.contains("a character device"), "{e}");
    }

    #[test]
    fn a_link_is_followed_and_a_dangling_one_refused() {
        let d = dir();
        let p = d.path();
        std::fs::create_dir(p.join("real")).unwrap();
        std::os::unix::fs::symlink(p.join("real"), p.join("link")).unwrap();
        let t = resolve(&p.join("link"), false).unwrap();
        assert_eq!(t.dest, p.join("real").canonicalize().unwrap());
        std::os::unix::fs::symlink(p.join("nowhere"), p.join("dangling")).unwrap();
        let e = resolve(&p.join("dangling"), true).unwrap_err();
        assert!(e.contains("does not exist") && e.contains("nowhere"), "{e}");
    }

    #[test]
    fn the_move_replaces_in_one_step_and_hands_back_the_old() {
        let d = dir();
        let p = d.path();
        for (name, content) in [("new", "new"), ("dest", "old")] {
            std::fs::create_dir(p.join(name)).unwrap();
            std::fs::write(p.join(name).join("config.json"), content).unwrap();
        }
        let old = move_into_place(&p.join("new"), &p.join("dest"), &p.join("aside"), true)
            .unwrap()
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(p.join("dest/config.json")).unwrap(),
            "new"
        );
        assert_eq!(
            std::fs::read_to_string(old.join("config.json")).unwrap(),
            "old"
        );
        let none = move_into_place(&p.join("dest"), &p.join("fresh"), &p.join("aside"), false);
        assert_eq!(none.unwrap(), None);
        assert!(p.join("fresh/config.json").is_file());
    }
}
