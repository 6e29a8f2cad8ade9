//! Stopping a merge part-way, through the release binary and the library: Ctrl-C,
//! SIGTERM and SIGHUP in the middle of a slow tensor exit 130 / 143 / 129 within a
//! second or two, with no output and no temporary directory; a second Ctrl-C too; a
//! deadline fires inside one tensor on the interpreter and on the JIT; and stale
//! temporaries of dead processes are removed by the next merge, a live one's kept.

#[path = "common/ckpt.rs"]
mod ckpt;
#[path = "common/merge_run.rs"]
mod merge_run;

use ckpt::*;
use merge_run::library_job;
use mergec::runtime::compiled::Backend;
use mergec::runtime::safetensors::Dtype;
use mergec::runtime::synth::{Arch, write_model};
use std::path::Path;
use std::time::{Duration, Instant};

/// 64 rounds of a tanh per element: seconds of work for a few million elements.
const SLOW: &str = "merge slow(base: Tensor, models: [Tensor]) -> Tensor {
    let tau = sum(models - base)
    return repeat(64, base, |acc, i| acc + 0.001 * tanh(tau * acc))
}
";

/// A base and one model of `layers` layers whose MLP weights are 1024 x 4096 (4 M
/// elements each), and the slow program, in `dir`.
fn slow_inputs(dir: &Path, layers: usize) {
    let arch = Arch {
        vocab: 256,
        hidden: 1024,
        intermediate: 4096,
        heads: 8,
        kv_heads: 2,
        layers,
        tie_embeddings: true,
    };
    write_model(&dir.join("base"), &arch, Dtype::BF16, 0, 0, 0.1, 1 << 40).unwrap();
    write_model(&dir.join("m1"), &arch, Dtype::BF16, 0, 1, 0.1, 1 << 40).unwrap();
    std::fs::write(dir.join("slow.merge"), SLOW).unwrap();
}

const SLOW_ARGS: &[&str] = &[
    "merge",
    "slow.merge",
    "--base",
    "base",
    "--model",
    "m1",
    "--out",
    "out",
    "--quiet",
];

/// Starts the slow merge, waits until it writes (its temporary exists) and then
/// `delay`, and sends `signals` 20 ms apart; returns (exit code, stderr, seconds
/// from the first signal to the exit).
fn interrupt(dir: &Path, signals: &[&str], delay: Duration) -> (Option<i32>, String, f64) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mergec"))
        .current_dir(dir)
        .args(SLOW_ARGS)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while leftovers(dir).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "mergec ended before it was interrupted"
        );
        assert!(start.elapsed().as_secs() < 30, "no temporary directory");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(delay);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the merge was too quick"
    );
    let t = Instant::now();
    for s in signals {
        let kill = std::process::Command::new("kill")
            .args([&format!("-{s}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().unwrap();
    let secs = t.elapsed().as_secs_f64();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status.code(), err, secs)
}

#[test]
fn sigint_sigterm_and_sighup_stop_within_two_seconds_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    slow_inputs(dir, 2);
    let before = snapshot(dir);
    for (sig, code, name) in [
        ("INT", 130, "Ctrl-C (SIGINT)"),
        ("TERM", 143, "SIGTERM"),
        ("HUP", 129, "SIGHUP"),
    ] {
        let (status, err, secs) = interrupt(dir, &[sig], Duration::from_secs(1));
        assert_eq!(status, Some(code), "SIG{sig}: {err}");
        assert_eq!(
            err.trim_end(),
            format!("error: interrupted by {name}; nothing was written to `out`"),
            "SIG{sig}"
        );
        assert!(secs < 2.0, "SIG{sig}: {secs:.2} s to stop");
        assert!(!dir.join("out").exists(), "SIG{sig}");
        assert!(leftovers(dir).is_empty(), "SIG{sig}: {:?}", leftovers(dir));
        assert_unchanged(std::slice::from_ref(&before), &[snapshot(dir)]);
    }
}

#[test]
fn a_second_ctrl_c_still_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    slow_inputs(dir, 2);
    let (status, err, secs) = interrupt(dir, &["INT", "INT"], Duration::from_millis(300));
    assert_eq!(status, Some(130), "{err}");
    assert!(err.contains("interrupted by Ctrl-C"), "{err}");
    assert!(secs < 2.0, "{secs:.2} s to stop");
    assert!(!dir.join("out").exists());
    assert!(leftovers(dir).is_empty(), "{:?}", leftovers(dir));
}

/// The slow merge of one 4 M-element tensor, through the library, with a deadline.
fn merge_one_tensor_until(
    dir: &Path,
    backend: Backend,
    limit: Duration,
) -> (mergec::runtime::MergeError, f64) {
    let (base, models) = (dir.join("base"), vec![dir.join("m1")]);
    let mut job = library_job("slow.merge", SLOW, "slow", base, models, dir.join("out"));
    job.only = Some(regex::Regex::new(r"layers\.0\.mlp\.up_proj").unwrap());
    job.shard_size = 1 << 40;
    job.backend = backend;
    let start = Instant::now();
    job.deadline = Some(start + limit);
    let err = mergec::runtime::run(&job).expect_err("the merge beat its deadline");
    (err, start.elapsed().as_secs_f64())
}

#[test]
fn a_deadline_fires_inside_one_tensor_on_the_interpreter_and_the_jit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    slow_inputs(dir, 1);
    for backend in [Backend::Interp, Backend::Jit] {
        let (err, secs) = merge_one_tensor_until(dir, backend, Duration::from_millis(300));
        assert!(
            matches!(
                err,
                mergec::runtime::MergeError::Stopped(mergec::cancel::Stop::OverTime { .. })
            ),
            "{backend:?}: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            "over the time limit of 0.3 s: nothing was written to the output",
            "{backend:?}"
        );
        assert!(secs < 1.0, "{backend:?}: {secs:.2} s for a 0.3 s limit");
        assert!(!dir.join("out").exists());
        assert!(leftovers(dir).is_empty(), "{:?}", leftovers(dir));
    }
}

/// The PID of a process that has ended.
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    c.wait().unwrap();
    c.id()
}

#[test]
fn stale_temporaries_of_dead_processes_are_removed_and_a_live_ones_kept() {
    let zoo = Zoo::new();
    let dead = format!(".old-out.mergec-tmp-{}", dead_pid());
    let old = format!(".mergec-old-{}", dead_pid());
    // This test's own process is alive: its temporary is another merge's work.
    let live = format!(".busy.mergec-tmp-{}", std::process::id());
    for d in [&dead, &live] {
        std::fs::create_dir(zoo.path(d)).unwrap();
        std::fs::write(zoo.path(d).join("model.safetensors"), vec![0u8; 2_000_000]).unwrap();
    }
    std::fs::write(zoo.path(&old), b"x").unwrap();
    zoo.program("algo.merge", SLOW.replace("64", "1").as_str());
    let out = ok(zoo.mergec(&[
        "merge",
        "algo.merge",
        "--base",
        "base",
        "--model",
        "m1",
        "--out",
        "out",
        "--quiet",
    ]));
    let err = stderr(&out);
    assert!(
        !zoo.path(&dead).exists() && !zoo.path(&old).exists(),
        "{err}"
    );
    assert!(zoo.path(&live).join("model.safetensors").exists(), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("note: removed temporaries left by mergec processes that no longer run:")
            && err.contains(&format!("{dead}` (2.0 MB)"))
            && err.contains(&format!("{old}` (0.0 MB)"))
            && !err.contains(&live),
        "{err}"
    );
    assert!(zoo.path("out/config.json").exists());
}
