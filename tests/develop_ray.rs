//! The `ray:` executor against a real Ray head on loopback (Ray from PyPI in the
//! project's venv): a run's record is the same as the local executor's with 1 and 2
//! jobs in flight; a job whose process is killed is submitted again; a driver killed
//! mid-run re-attaches to its running job on --resume; a head stopped mid-run stops the
//! run, and --resume after a restart finishes with nothing lost or scored twice. Skips
//! (and says why) when Ray cannot be installed.

#[path = "common/develop_run.rs"]
mod develop_run;
#[path = "common/mock_http.rs"]
mod mock_http;
#[path = "common/ray_head.rs"]
mod ray_head;
#[path = "common/tiny_llama.rs"]
mod tiny_llama;
#[path = "common/venv.rs"]
mod venv;

use develop_run::{VALID, develop, family, records};
use ray_head::RayHead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Program `i` of the scripted generator: distinct weights.
fn program(i: u64) -> String {
    VALID.replace("0.3", &format!("0.{}", 21 + i))
}

/// The slow one (4 s: long enough to kill it mid-run) and the one that hangs (a
/// program's own failure: over the time limit, never retried).
const SLOW: u64 = 2;
const HANG: u64 = 4;

fn faults() -> String {
    let first = |i| program(i).lines().next().unwrap().trim().to_string();
    format!("slow:{};hang:{}", first(SLOW), first(HANG))
}

fn server() -> String {
    mock_http::serve(|_, req| {
        let n = req["n"].as_u64().unwrap_or(1);
        let choices: Vec<_> = (0..n)
            .map(|i| serde_json::json!({"text": format!("```merge\n{}\n```", program(i))}))
            .collect();
        (200, serde_json::json!({"choices": choices}).to_string())
    })
}

fn run(dir: &Path, url: &str, extra: &[&str]) -> Command {
    let mut flags = vec![
        "--iterations",
        "1",
        "--programs",
        "6",
        "--repair",
        "false",
        "--time-limit-s",
        "6",
        "--top-test",
        "1",
        "--baseline-grid",
        "[0.5]",
    ];
    flags.extend_from_slice(extra);
    let mut c = develop(dir, url, &flags);
    c.env("MERGEC_CANDIDATE_FAULT", faults());
    c
}

fn ray_flags<'a>(head: &'a RayHead, in_flight: &'a str) -> Vec<String> {
    [
        "--executor",
        &format!("ray:{}", head.url),
        "--max-in-flight",
        in_flight,
        "--ray-unreachable-s",
        "5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn check(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

/// (index, outcome, dev) of the run's programs, in record order.
fn outcomes(dir: &Path) -> Vec<(u64, String, Option<f64>)> {
    records(dir)
        .iter()
        .filter(|r| r["event"] == "program")
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["outcome"].as_str().unwrap().to_string(),
                r["dev"].as_f64(),
            )
        })
        .collect()
}

fn started(dir: &Path, index: u64) -> usize {
    records(dir)
        .iter()
        .filter(|r| r["event"] == "started" && r["index"] == index)
        .count()
}

/// The Ray job id of program `index`'s attempt `attempt` in the run in `dir`.
fn job_id(dir: &Path, index: u64, attempt: usize) -> String {
    let marker = std::fs::read_to_string(dir.join("run/.mergec-run")).unwrap();
    let run = marker.lines().find_map(|l| l.strip_prefix("id ")).unwrap();
    let rec = records(dir)
        .into_iter()
        .find(|r| r["event"] == "program" && r["index"] == index)
        .unwrap();
    let canonical = rec["assessed"]["canonical"].as_str().unwrap();
    format!("mergec-{run}-{}-{attempt}", &canonical[..16])
}

/// Waits until a `--supervise` process runs the slow program; returns its pid.
fn supervisor_of_slow(dir: &Path) -> u32 {
    let slow = program(SLOW);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(120) {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmd
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if !args.iter().any(|a| a == "--supervise") {
                continue;
            }
            let Some(k) = args.iter().position(|a| a == "--request") else {
                continue;
            };
            let req = PathBuf::from(&args[k + 1]);
            if req.starts_with(dir)
                && std::fs::read_to_string(&req).is_ok_and(|t| {
                    serde_json::from_str::<serde_json::Value>(&t)
                        .is_ok_and(|v| v["program"] == slow.as_str())
                })
            {
                return pid;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the slow program's job never started");
}

fn kill(pid: u32, signal: &str) {
    assert!(
        Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn ray_runs_record_what_local_runs_do_and_survive_lost_jobs_drivers_and_heads() {
    let head = match RayHead::start(2) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("SKIPPED: no Ray head: {e}");
            return;
        }
    };
    let url = server();
    let fresh = || {
        let d = tempfile::tempdir().unwrap();
        family(d.path());
        d
    };

    // Workers that run another mergec, or none: an error before anything runs.
    let d = fresh();
    let other = d.path().join("other-mergec");
    std::fs::write(&other, "#!/bin/sh\necho mergec 9.9.9\n").unwrap();
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for (mergec, says) in [
        (other.display().to_string(), "version mismatch"),
        ("/nonexistent/mergec".to_string(), "cannot run mergec"),
    ] {
        let mut flags = ray_flags(&head, "1");
        flags.extend(["--ray-mergec".to_string(), mergec]);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let out = run(d.path(), &url, &flags).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!d.path().join("run").exists());
    }

    // The reference: the local executor, one candidate at a time.
    let local = fresh();
    let t0 = Instant::now();
    check(&run(local.path(), &url, &["--jobs", "1"]).output().unwrap());
    let local_s = t0.elapsed().as_secs_f64();
    let want = outcomes(local.path());
    assert!(
        want.iter().filter(|o| o.1 == "scored").count() >= 4,
        "{want:?}"
    );
    assert!(want.iter().any(|o| o.0 == HANG && o.1 == "failed"));

    // Ray with 1 and 2 candidates in flight: the same record.
    for in_flight in ["1", "2"] {
        let d = fresh();
        let t0 = Instant::now();
        let flags = ray_flags(&head, in_flight);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let stderr = check(&run(d.path(), &url, &flags).output().unwrap());
        eprintln!(
            "max_in_flight {in_flight}: {:.1} s through Ray, {local_s:.1} s locally",
            t0.elapsed().as_secs_f64()
        );
        assert!(stderr.contains("its workers run mergec"), "{stderr}");
        assert_eq!(outcomes(d.path()), want, "max_in_flight {in_flight}");
        // The hung program failed on its own: not submitted again.
        assert!(!stderr.contains("submitting it again"), "{stderr}");
        assert_eq!(head.job_status(&job_id(d.path(), HANG, 1)), None);
        assert_eq!(
            head.job_status(&job_id(d.path(), HANG, 0)).as_deref(),
            Some("FAILED")
        );
    }

    // A job's process killed mid-run (a lost worker): submitted again, scored as before.
    let d = fresh();
    let flags = ray_flags(&head, "1");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let child = run(d.path(), &url, &flags)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    kill(supervisor_of_slow(d.path()), "-KILL");
    let stderr = check(&child.wait_with_output().unwrap());
    assert_eq!(
        stderr.matches("submitting it again (1 of 2)").count(),
        1,
        "{stderr}"
    );
    assert_eq!(outcomes(d.path()), want);
    assert_eq!(
        head.job_status(&job_id(d.path(), SLOW, 0)).as_deref(),
        Some("FAILED")
    );
    assert_eq!(
        head.job_status(&job_id(d.path(), SLOW, 1)).as_deref(),
        Some("SUCCEEDED")
    );

    // The driver killed while the slow job runs: --resume re-attaches to that job (no
    // second attempt) and the record is the same.
    let d = fresh();
    let mut child = run(d.path(), &url, &flags)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    supervisor_of_slow(d.path());
    child.kill().unwrap();
    child.wait().unwrap();
    let mut resumed = flags.clone();
    resumed.push("--resume");
    let stderr = check(&run(d.path(), &url, &resumed).output().unwrap());
    assert!(!stderr.contains("submitting it again"), "{stderr}");
    assert_eq!(outcomes(d.path()), want);
    assert_eq!(head.job_status(&job_id(d.path(), SLOW, 1)), None);
    assert_eq!(started(d.path(), SLOW), 2);

    // The head stopped while the slow job runs: the run stops with a clear error;
    // after a restart, --resume finishes with the same record, each program recorded
    // once and those scored before the stop not run again.
    let d = fresh();
    let child = run(d.path(), &url, &flags)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    supervisor_of_slow(d.path());
    head.down();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("Ray head") && stderr.contains("--resume"),
        "{stderr}"
    );
    let before: Vec<u64> = outcomes(d.path()).iter().map(|o| o.0).collect();
    assert_eq!(before, (0..SLOW).collect::<Vec<_>>());
    head.up().unwrap();
    check(&run(d.path(), &url, &resumed).output().unwrap());
    assert_eq!(outcomes(d.path()), want);
    for (i, outcome, _) in &want {
        if outcome == "scored" || outcome == "failed" {
            let expect = if *i == SLOW { 2 } else { 1 };
            assert_eq!(started(d.path(), *i), expect, "program {i}");
        }
    }
}

/// A head nothing answers at: a clear error naming it, before anything is written.
#[test]
fn an_unreachable_head_stops_the_run_before_it_starts() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let head = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let d = tempfile::tempdir().unwrap();
    family(d.path());
    let executor = format!("ray:{head}");
    let out = run(d.path(), "http://127.0.0.1:9", &["--executor", &executor])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&head) && stderr.contains("dashboard"),
        "{stderr}"
    );
    assert!(!d.path().join("run").exists());
}
