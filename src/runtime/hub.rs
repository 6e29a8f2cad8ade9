//! Hugging Face Hub model ids (`org/name`, `org/name@revision`) resolved from the local
//! Hugging Face cache, as transformers and mergekit find them, without downloading:
//! `HUB/models--org--name/refs/REVISION` holds the commit, `snapshots/COMMIT/` the files.
//! The cache is `--transformers-cache` when given, else `HF_HUB_CACHE`, else `HF_HOME/hub`,
//! else `XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.

use std::path::{Path, PathBuf};

/// The revision a reference without `@` names.
const DEFAULT_REVISION: &str = "main";

/// The Hub cache directory to look in (`explicit` first).
pub fn cache_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = var("HF_HUB_CACHE") {
        return p;
    }
    if let Some(p) = var("HF_HOME") {
        return p.join("hub");
    }
    let cache = var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("huggingface").join("hub")
}

/// `(repo, revision)` when `s` has the shape of a Hub model id: `org/name` or `name`
/// (letters, digits, `-`, `_`, `.`; not starting with `.` or `-`), then optionally
/// `@revision`. Local paths such as `./m`, `/x/y` or `a/b/c` are not ids.
pub fn parse_id(s: &str) -> Option<(&str, &str)> {
    let (repo, rev) = match s.split_once('@') {
        Some((r, v)) if !v.is_empty() => (r, v),
        Some(_) => return None,
        None => (s, DEFAULT_REVISION),
    };
    let parts: Vec<&str> = repo.split('/').collect();
    let ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with(['.', '-'])
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (parts.len() <= 2 && parts.iter().all(|p| ok(p))).then_some((repo, rev))
}

/// The snapshot directory of Hub id `reference` in the cache, or an error that says where
/// it looked and the command that downloads it.
pub fn resolve(reference: &str, cache: Option<&Path>) -> Result<PathBuf, String> {
    let (repo, rev) = parse_id(reference)
        .ok_or_else(|| format!("`{reference}` is neither a local path nor a Hub model id"))?;
    let hub = cache_dir(cache);
    let dir = hub.join(format!("models--{}", repo.replace('/', "--")));
    let snapshot = snapshot_of(&dir, rev);
    let found = snapshot.as_ref().filter(|s| s.is_dir());
    let Some(snap) = found else {
        let revision = if rev == DEFAULT_REVISION {
            String::new()
        } else {
            format!(" --revision {rev}")
        };
        let missing = if dir.is_dir() {
            format!("the cache has `{repo}` but not its revision `{rev}`")
        } else {
            format!("it is not in the Hugging Face cache (`{}`)", hub.display())
        };
        return Err(format!(
            "`{reference}` is not a local path, and {missing}; mergec does not download: \
             fetch it with\n  huggingface-cli download {repo}{revision} \
             --include '*.safetensors' '*.json' '*.txt' '*.model' '*.jinja'\n\
             (HF_HOME, HF_HUB_CACHE or --transformers-cache say where the cache is)"
        ));
    };
    let has_weights = std::fs::read_dir(snap).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.ends_with(".safetensors") || n.ends_with(".safetensors.index.json")
        })
    });
    if !has_weights {
        return Err(format!(
            "`{reference}` is in the Hugging Face cache (`{}`) without safetensors weights \
             (mergec reads safetensors only); fetch them with\n  huggingface-cli download \
             {repo} --include '*.safetensors' '*.json'",
            snap.display()
        ));
    }
    Ok(snap.clone())
}

/// `dir/snapshots/COMMIT` for revision `rev`: a commit hash itself, or the commit that
/// `dir/refs/REV` (a branch, a tag, `refs/pr/N`) holds.
fn snapshot_of(dir: &Path, rev: &str) -> Option<PathBuf> {
    let snapshots = dir.join("snapshots");
    if rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit()) {
        return Some(snapshots.join(rev));
    }
    let refs = dir.join("refs").join(rev);
    let commit = crate::files::read_text(&refs, "a Hub cache ref", 256).ok()?;
    let commit = commit.trim();
    (!commit.is_empty() && !commit.contains(['/', '.'])).then(|| snapshots.join(commit))
}

/// A model reference as a path: an existing path as it is, else a Hub id from the cache.
/// A reference that is neither keeps the local path's usual "not found" error unless it
/// has the shape of a Hub id.
pub fn model_path(reference: &str, cache: Option<&Path>) -> Result<PathBuf, String> {
    let p = PathBuf::from(reference);
    if p.exists() || parse_id(reference).is_none() {
        return Ok(p);
    }
    resolve(reference, cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_paths() {
        assert_eq!(
            parse_id("mistralai/Mistral-7B-v0.1"),
            Some(("mistralai/Mistral-7B-v0.1", "main"))
        );
        assert_eq!(parse_id("org/m@v1.0"), Some(("org/m", "v1.0")));
        assert_eq!(parse_id("gpt2"), Some(("gpt2", "main")));
        for p in [
            "./m",
            "/abs/m",
            "a/b/c",
            "../m",
            "org/",
            "org/m@",
            "m.safetensors/.x",
        ] {
            assert_eq!(parse_id(p), None, "{p}");
        }
    }

    #[test]
    fn a_cached_model_resolves_by_branch_tag_and_commit() {
        let t = tempfile::tempdir().expect("tmp");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let repo = t.path().join("models--org--m");
        std::fs::create_dir_all(repo.join("snapshots").join(commit)).expect("mkdir");
        std::fs::write(
            repo.join("snapshots")
                .join(commit)
                .join("model.safetensors"),
            b"",
        )
        .expect("write");
        std::fs::create_dir_all(repo.join("refs")).expect("mkdir");
        std::fs::write(repo.join("refs/main"), commit).expect("write");
        std::fs::write(repo.join("refs/v1"), format!("{commit}\n")).expect("write");
        let snap = repo.join("snapshots").join(commit);
        for r in ["org/m", "org/m@v1", &format!("org/m@{commit}")] {
            assert_eq!(resolve(r, Some(t.path())), Ok(snap.clone()), "{r}");
        }
        let e = resolve("org/m@v2", Some(t.path())).expect_err("no v2");
        assert!(
            e.contains("revision `v2`") && e.contains("--revision v2"),
            "{e}"
        );
        let e = resolve("org/other", Some(t.path())).expect_err("not cached");
        assert!(e.contains("huggingface-cli download org/other"), "{e}");
    }
}
