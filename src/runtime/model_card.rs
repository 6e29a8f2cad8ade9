//! The model card of a merge (`README.md`, with the Hugging Face Hub's YAML header) and,
//! when the merge came from a mergekit config, that config as `mergekit_config.yml`: what
//! people publish with a merged model. The card says what was merged (the method, its
//! program and parameters), from what (each input with its content hash) and how to make
//! it again (the command).

use super::content::ContentHashes;
use super::merge::MergeJob;
use serde_json::Value as Json;
use std::fmt::Write as _;
use std::path::Path;

/// The Hub id of a model in the Hugging Face cache (`.../models--org--name/snapshots/C`),
/// else the path as given.
fn reference(path: &Path) -> String {
    let text = path.display().to_string();
    let parts: Vec<&str> = text.split('/').collect();
    parts
        .windows(2)
        .find_map(|w| {
            let repo = w[0].strip_prefix("models--")?;
            (w[1] == "snapshots").then(|| repo.replacen("--", "/", 1))
        })
        .unwrap_or(text)
}

/// A value for a YAML list item: quoted unless plainly safe.
fn yaml_item(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
        && !s.starts_with(['-', '.']);
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// The longest run of backticks in `text`, plus one, as a code fence that encloses it.
fn fence(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    "`".repeat(longest.max(2) + 1)
}

/// The card's text.
fn card(job: &MergeJob, hashes: &ContentHashes) -> String {
    let inputs: Vec<(String, &Path)> = std::iter::once(("base".to_string(), job.base.as_path()))
        .chain(
            job.models
                .iter()
                .enumerate()
                .map(|(i, m)| (format!("model {}", i + 1), m.as_path())),
        )
        .collect();
    let mut s =
        String::from("---\nlibrary_name: transformers\ntags:\n- mergec\n- merge\nbase_model:\n");
    for (_, p) in &inputs {
        let _ = writeln!(s, "- {}", yaml_item(&reference(p)));
    }
    s.push_str("---\n\n");
    let name = job.out.file_name().map_or_else(
        || "Merged model".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let _ = writeln!(
        s,
        "# {name}\n\nA merge of the models below made with mergec {} using the `{}` merge \
         from `{}`.\n",
        env!("CARGO_PKG_VERSION"),
        job.merge_name,
        job.program.label
    );
    s.push_str("## Inputs\n\n| role | model | content BLAKE3 (tensors read) |\n|---|---|---|\n");
    for (i, (role, p)) in inputs.iter().enumerate() {
        let d = hashes.digest(i);
        let _ = writeln!(
            s,
            "| {role} | `{}` | `{}` ({}) |",
            reference(p),
            d.blake3,
            d.tensors
        );
    }
    let params = job.params.describe();
    s.push_str("\n## Parameters\n\n");
    match params.as_object().filter(|o| !o.is_empty()) {
        Some(o) => {
            s.push_str("| parameter | value |\n|---|---|\n");
            for (k, v) in o {
                let v = v.as_str().map_or_else(|| v.to_string(), String::from);
                let _ = writeln!(s, "| `{k}` | `{}` |", v.replace('|', "\\|"));
            }
        }
        None => s.push_str("The program's defaults.\n"),
    }
    let _ = writeln!(s, "\nSeed: {}.", job.seed);
    if let Some(d) = job.dtype {
        let _ = writeln!(s, "Output dtype: {}.", d.torch_name());
    }
    if let Some(r) = &job.only {
        let _ = writeln!(
            s,
            "Merged tensors: those matching `{}`; the rest are the base's.",
            r.as_str()
        );
    }
    if let Some(cmd) = job.extra.get("command").and_then(Json::as_str) {
        let f = fence(cmd);
        let _ = writeln!(s, "\n## Reproduce\n\n{f}sh\n{cmd}\n{f}");
    }
    if let Some(cfg) = job.extra.get("mergekit_config").and_then(Json::as_str) {
        let f = fence(cfg);
        let _ = writeln!(
            s,
            "\n## Configuration (`mergekit_config.yml`)\n\n{f}yaml\n{}\n{f}",
            cfg.trim_end()
        );
    }
    let text = &job.program.text;
    let f = fence(text);
    let _ = writeln!(
        s,
        "\n## The program (sha256 `{}`)\n\n{f}\n{}\n{f}",
        crate::files::sha256_hex(text.as_bytes()),
        text.trim_end()
    );
    s.push_str("\n`mergec.json` holds the same in machine-readable form.\n");
    s
}

/// Writes `README.md` and, for a config, `mergekit_config.yml` into `out`.
pub fn write(job: &MergeJob, out: &Path, hashes: &ContentHashes) -> Result<(), String> {
    let write = |name: &str, text: &str| {
        std::fs::write(out.join(name), text)
            .map_err(|e| format!("cannot write `{}`: {e}", out.join(name).display()))
    };
    write("README.md", &card(job, hashes))?;
    if let Some(cfg) = job.extra.get("mergekit_config").and_then(Json::as_str) {
        write("mergekit_config.yml", cfg)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_snapshots_are_named_by_their_id_and_fences_enclose_backticks() {
        let p = Path::new("/h/hub/models--mistralai--Mistral-7B-v0.1/snapshots/abc");
        assert_eq!(reference(p), "mistralai/Mistral-7B-v0.1");
        assert_eq!(reference(Path::new("./m1")), "./m1");
        assert_eq!(fence("a ```` b"), "`````");
        assert_eq!(fence("plain"), "```");
        assert_eq!(yaml_item("org/m-1.5"), "org/m-1.5");
        assert_eq!(yaml_item("my model: x"), "\"my model: x\"");
    }
}
