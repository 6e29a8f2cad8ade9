//! The `openai:` generator against a real OpenAI-compatible server on loopback:
//! llama-cpp-python's server (from PyPI, built by `scripts/venv.py llama-server`) serving
//! SmolLM2-135M (assets/, from scripts/fetch-assets.sh), with and without the GBNF form of
//! the loop's grammar in each request.
//!
//! Opt-in (`MERGEC_LLAMA_SERVER_TEST=1`): the first run compiles llama.cpp (minutes on 2
//! cores) and sampling on the CPU takes a few minutes more. Without it the test says so
//! and passes.

#[path = "common/venv.rs"]
mod venv;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn start(py: &str, model: &Path, port: u16, log: &Path) -> Server {
    let out = std::fs::File::create(log).expect("server log");
    let child = Command::new(py)
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--n_ctx", "4096", "--verbose", "false"])
        .stdout(Stdio::from(out.try_clone().expect("log")))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("start llama_cpp.server");
    let server = Server(child);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(120) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!(
        "llama_cpp.server did not listen within 120 s; see {}",
        log.display()
    );
}

/// `mergec generate openai:... --summary` with `grammar`; the summary line and stderr.
fn generate(url: &str, grammar: &str, n: usize) -> (serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mergec"))
        .args(["generate", &format!("openai:{url}"), "-n", &n.to_string()])
        .args([
            "--temperature",
            "0.6",
            "--max-new-tokens",
            "320",
            "--summary",
        ])
        .args(["--grammar", grammar])
        .output()
        .expect("run mergec");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "mergec generate failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().expect("a summary line");
    (serde_json::from_str(line).expect("json summary"), stderr)
}

#[test]
fn a_real_server_decodes_with_the_loops_grammar() {
    if std::env::var_os("MERGEC_LLAMA_SERVER_TEST").is_none() {
        eprintln!(
            "SKIP: set MERGEC_LLAMA_SERVER_TEST=1 to build llama-cpp-python's server and \
             sample SmolLM2 through it (minutes)"
        );
        return;
    }
    let model = root().join("assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(model.is_file(), "run scripts/fetch-assets.sh first");
    let py = venv::python("llama-server").expect("the llama-server venv");
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.log");
    let _server = start(&py, &model, port, &log);
    let url = format!("http://127.0.0.1:{port}/v1");
    let n = 12;
    let (plain, _) = generate(&url, "none", n);
    let (guided, stderr) = generate(&url, "auto", n);
    println!("without a grammar: {plain}\nwith the GBNF grammar (auto): {guided}");
    assert!(
        stderr.contains("gets grammar `gbnf`"),
        "auto should pick GBNF for llama-cpp-python: {stderr}"
    );
    let rate = |v: &serde_json::Value| v["parse_valid"].as_f64().expect("rate");
    // Replies can still run out of tokens (the grammar bounds statements, not their
    // length) or use names out of scope (the loop's repair round fixes those).
    assert!(
        rate(&guided) >= 0.75,
        "with the grammar nearly every reply should parse: {guided}"
    );
    assert!(rate(&guided) > rate(&plain), "{plain} vs {guided}");
}
