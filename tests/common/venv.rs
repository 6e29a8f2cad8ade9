//! The project's Python virtualenvs for tests: `scripts/venv.py KIND` makes one if missing
//! (under ~/.cache/mergec/venvs, keyed by what it installs) and prints its python.

use std::path::Path;
use std::process::Command;

/// The python of the `kind` venv (grammar, llama-server, dpo), or why there is none.
pub fn python(kind: &str) -> Result<String, String> {
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/venv.py"))
        .arg(kind)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/venv.py {kind}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
