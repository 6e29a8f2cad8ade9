//! `mergec develop` end to end with a scripted OpenAI-compatible generator on a family
//! of tiny random models: the record, duplicates, invalid programs and the repair round,
//! preference pairs, and resuming a run killed mid-iteration with nothing lost and
//! nothing scored twice.

#[path = "common/develop_run.rs"]
mod develop_run;
#[path = "common/mock_http.rs"]
mod mock_http;
#[path = "common/runaway.rs"]
mod runaway;
#[path = "common/tiny_llama.rs"]
mod tiny_llama;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

use develop_run::{VALID, develop, family, records, server};

#[test]
fn a_run_records_every_program_once_and_learns_from_pairs() {
    let tmp = tempfile::tempdir().unwrap();
    family(tmp.path());
    let url = server();
    let out = develop(tmp.path(), &url, &[]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(tmp.path());
    assert_eq!(recs[0]["event"], "start");
    let progs: Vec<_> = recs.iter().filter(|r| r["event"] == "program").collect();
    assert_eq!(progs.len(), 12);
    let by = |o: &str| progs.iter().filter(|r| r["outcome"] == o).count();
    // Per iteration: 0, 1 and 5 are new programs the first time; 2 duplicates 0; 3 is
    // repaired into a new valid program; 4 has no program.
    assert_eq!(by("invalid"), 2, "{progs:#?}");
    assert!(by("scored") >= 4, "{progs:#?}");
    assert!(by("duplicate") >= 5, "{progs:#?}");
    assert!(progs.iter().any(|r| r["repaired"] == true));
    let no_prog = progs.iter().find(|r| r["index"] == 4).unwrap();
    assert_eq!(no_prog["assessed"]["stage"], "no_program");
    // No compiled program is scored twice.
    let mut scored = HashSet::new();
    for r in progs.iter().filter(|r| r["outcome"] == "scored") {
        assert!(scored.insert(r["assessed"]["canonical"].as_str().unwrap().to_string()));
    }
    let run = tmp.path().join("run");
    for f in [
        "report.md",
        "report.json",
        "dev-scores.png",
        "valid-rate.png",
        "best-so-far.png",
    ] {
        assert!(run.join(f).is_file(), "no {f}");
    }
    if let Ok(keep) = std::env::var("MERGEC_KEEP_RUN") {
        let _ = Command::new("cp").arg("-r").arg(&run).arg(keep).status();
    }
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        report.contains("Table 1") && report.contains("task_arithmetic lambda="),
        "{report}"
    );
    assert!(std::fs::read_dir(run.join("best")).unwrap().count() >= 1);
    assert!(
        recs.iter()
            .any(|r| r["event"] == "score" && r["key"] == "seed test")
    );
    let learned: Vec<_> = recs.iter().filter(|r| r["event"] == "learned").collect();
    assert_eq!(learned.len(), 2);
    assert!(
        tmp.path()
            .join("run/generator/dpo-pairs-iter1.jsonl")
            .is_file()
    );
    // A second run without --resume refuses to touch the record.
    let again = develop(tmp.path(), &url, &[]).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
}

#[test]
fn a_killed_run_resumes_with_nothing_lost_and_nothing_scored_twice() {
    let tmp = tempfile::tempdir().unwrap();
    family(tmp.path());
    let url = server();
    // The reference: one uninterrupted run.
    let reference = tempfile::tempdir().unwrap();
    family(reference.path());
    assert!(
        develop(reference.path(), &url, &[])
            .status()
            .unwrap()
            .success()
    );
    let mut child = develop(tmp.path(), &url, &[])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rec = tmp.path().join("run/programs.jsonl");
    let t0 = std::time::Instant::now();
    loop {
        let n = std::fs::read_to_string(&rec)
            .map(|t| t.matches("\"event\":\"program\"").count())
            .unwrap_or(0);
        if n >= 3 || t0.elapsed().as_secs() > 60 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL, mid-iteration
    child.wait().unwrap();
    let before = records(tmp.path()).len();
    assert!(
        before < records(reference.path()).len(),
        "the kill came too late to test anything"
    );
    let out = develop(tmp.path(), &url, &["--resume"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = records(tmp.path());
    let mut seen = HashMap::new();
    for r in recs.iter().filter(|r| r["event"] == "program") {
        let key = (
            r["iteration"].as_u64().unwrap(),
            r["index"].as_u64().unwrap(),
        );
        assert!(
            seen.insert(key, r.clone()).is_none(),
            "{key:?} recorded twice"
        );
    }
    assert_eq!(seen.len(), 12);
    let scored: Vec<_> = recs
        .iter()
        .filter(|r| r["outcome"] == "scored")
        .map(|r| r["assessed"]["canonical"].as_str().unwrap())
        .collect();
    assert_eq!(
        scored.len(),
        scored.iter().collect::<HashSet<_>>().len(),
        "a program scored twice"
    );
    // Same outcomes as the uninterrupted run.
    let outcome = |v: &[serde_json::Value]| {
        let mut o: Vec<(u64, u64, String)> = v
            .iter()
            .filter(|r| r["event"] == "program")
            .map(|r| {
                (
                    r["iteration"].as_u64().unwrap(),
                    r["index"].as_u64().unwrap(),
                    r["outcome"].to_string(),
                )
            })
            .collect();
        o.sort();
        o
    };
    assert_eq!(outcome(&recs), outcome(&records(reference.path())));
}

/// (iteration, index) -> (outcome, dev score) of a run's programs.
fn outcomes(dir: &Path) -> Vec<(u64, u64, String, Option<f64>)> {
    records(dir)
        .iter()
        .filter(|r| r["event"] == "program")
        .map(|r| {
            let dev = r["dev"].as_f64();
            (
                r["iteration"].as_u64().unwrap(),
                r["index"].as_u64().unwrap(),
                r["outcome"].as_str().unwrap().to_string(),
                dev,
            )
        })
        .collect()
}

/// A fresh family and a finished `mergec develop` run on it with `extra` flags.
fn finished_run(url: &str, extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    family(dir.path());
    let out = develop(dir.path(), url, extra).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

#[test]
fn candidates_scored_in_parallel_match_one_at_a_time_and_a_time_limit_fails_them() {
    let url = server();
    let serial = finished_run(&url, &["--jobs", "1"]);
    let parallel = finished_run(&url, &["--jobs", "3"]);
    let (a, b) = (outcomes(serial.path()), outcomes(parallel.path()));
    assert_eq!(a, b);
    assert!(a.iter().any(|o| o.2 == "scored"));

    // Over the time limit: every runnable program fails with the reason, nothing is
    // scored, and the run still ends with its report.
    let slow = finished_run(&url, &["--time-limit-s", "0.000001"]);
    let recs = records(slow.path());
    let failed: Vec<_> = recs.iter().filter(|r| r["outcome"] == "failed").collect();
    assert!(!failed.is_empty());
    assert!(recs.iter().all(|r| r["outcome"] != "scored"));
    for r in failed {
        assert!(
            r["reason"]
                .as_str()
                .unwrap()
                .contains("over the time limit"),
            "{r}"
        );
    }
    assert!(slow.path().join("run/report.md").is_file());
}

/// The loop with SmolLM2 in process (`local:`, guided) on the tiny family: programs are
/// generated, assessed and scored, the iteration's adapters are saved, and a resumed run
/// continues from them. Needs the assets of `scripts/fetch-assets.sh`.
#[test]
fn a_local_guided_generator_runs_the_loop_and_resumes_from_its_adapters() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.is_file() {
        eprintln!("SKIPPED: no SmolLM2 (run scripts/fetch-assets.sh)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    family(dir.path());
    let generator = format!("local:{}", model.display());
    let run = |iterations: &str, resume: bool| {
        let mut flags = vec![
            "--guided",
            "true",
            "--temperature",
            "0.6",
            "--repair",
            "false",
            "--iterations",
            iterations,
            "--programs",
            "4",
            "--generator-batch",
            "4",
            "--dpo-steps",
            "1",
            "--top-test",
            "1",
            "--chosen-fraction",
            "0.5",
            "--rejected-fraction",
            "0.5",
        ];
        if resume {
            flags.push("--resume");
        }
        let mut c = develop(dir.path(), &generator, &flags);
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    run("2", false);
    let recs = records(dir.path());
    let programs: Vec<_> = recs.iter().filter(|r| r["event"] == "program").collect();
    assert_eq!(programs.len(), 8);
    assert!(
        programs
            .iter()
            .all(|r| r["generator"].as_str().unwrap().contains("+guided")),
        "{:?}",
        programs[0]
    );
    assert!(
        programs.iter().any(|r| r["assessed"]["stage"] == "valid"),
        "no valid program: {programs:?}"
    );
    let adapters = dir.path().join("run/generator/iteration-1");
    assert!(adapters.join("adapter_model.safetensors").is_file());
    assert!(adapters.join("adapter_config.json").is_file());
    let second = |recs: &[serde_json::Value]| -> Vec<(String, String)> {
        recs.iter()
            .filter(|r| r["event"] == "program" && r["iteration"] == 2)
            .map(|r| (r["generator"].to_string(), r["reply"].to_string()))
            .collect()
    };
    let want = second(&recs);
    assert!(want[0].0.contains("+lora8@"), "{:?}", want[0]);
    // As if killed right after iteration 1: the resumed run takes the saved adapters
    // and samples the same second iteration.
    let text = std::fs::read_to_string(dir.path().join("run/programs.jsonl")).unwrap();
    let cut = text
        .lines()
        .position(|l| l.contains("\"iteration_done\"") && l.contains("\"iteration\":1"))
        .expect("iteration 1 done");
    let kept: String = text
        .lines()
        .take(cut + 1)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("run/programs.jsonl"), kept).unwrap();
    let log = run("2", true);
    assert!(log.contains("local generator: resuming"), "{log}");
    assert_eq!(second(&records(dir.path())), want);
}

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
    out
}

#[test]
fn a_run_dir_that_is_not_a_mergec_run_is_refused_and_left_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    family(dir.path());
    let run = dir.path().join("run");
    // (files put in the run dir, extra flags, part of the message)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: [Case; 4] = [
        (
            &[
                ("notes.txt", "mine\n"),
                ("config.toml", "x = 1\n"),
                ("report.md", "# mine\n"),
            ],
            &[],
            "is not empty and not a mergec run (it holds config.toml, notes.txt, report.md)",
        ),
        (
            &[("programs.jsonl", "{\"not\": \"ours\"}")],
            &[],
            "(it holds programs.jsonl)",
        ),
        (
            &[("programs.jsonl", "{\"not\": \"ours\"}")],
            &["--resume"],
            "--resume: ",
        ),
        (
            &[],
            &["--resume"],
            "is not a mergec run (it has no .mergec-run)",
        ),
    ];
    for (put, extra, expect) in cases {
        let _ = std::fs::remove_dir_all(&run);
        std::fs::create_dir(&run).unwrap();
        for (f, text) in put {
            std::fs::write(run.join(f), text).unwrap();
        }
        let before = files(dir.path());
        let out = develop(dir.path(), "http://127.0.0.1:9", extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.starts_with("error: ") && err.contains(expect), "{err}");
        assert_eq!(files(dir.path()), before, "{put:?}: files changed");
    }
    // `run_dir = ""` in the config would put the run in the working directory.
    std::fs::write(dir.path().join("run.toml"), "run_dir = \"\"\n").unwrap();
    let before = files(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_mergec"))
        .args(["develop", "--config", "run.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim_end(),
        "error: run_dir is empty: set `run_dir` in the config or pass --run-dir DIR"
    );
    assert_eq!(files(dir.path()), before);
}

/// Programs that differ in their weight, so each is its own candidate; `w` picks one.
fn weighted(w: &str) -> String {
    VALID.replace("0.3", w)
}

/// The fault cases: (reply index, program, MERGEC_CANDIDATE_FAULT kind or "" for a
/// genuine fault, what the recorded reason says).
fn fault_cases() -> Vec<(u64, String, &'static str, &'static str)> {
    vec![
        (1, weighted("0.61"), "abort", "SIGABRT"),
        (2, weighted("0.62"), "exit", "exited with 3"),
        (3, weighted("0.63"), "kill", "SIGKILL (out of memory?)"),
        (
            4,
            weighted("0.64"),
            "oom",
            "memory allocation of 1099511627776 bytes failed",
        ),
        (
            5,
            weighted("0.65"),
            "hang",
            "over the time limit of 4 s (time_limit_s): killed",
        ),
    ]
}

/// The two runaway programs of the hardening issue (reply index, program, what the
/// checker says): the cost bound rejects both, so they are recorded as invalid and
/// never reach a candidate process.
fn runaway_cases() -> Vec<(u64, String, &'static str)> {
    vec![
        (6, runaway::nested_repeats(), "program too expensive"),
        (8, runaway::doubling_helpers(), "program too large: `f12`"),
    ]
}

/// A server whose replies are valid programs 0 and 7, the fault cases between, and
/// the runaway programs.
fn fault_server() -> String {
    mock_http::serve(|_, req| {
        let n = req["n"].as_u64().unwrap_or(1);
        let cases = fault_cases();
        let choices: Vec<_> = (0..n)
            .map(|i| {
                let runaway = runaway_cases().into_iter().find(|c| c.0 == i);
                let text = match (cases.iter().find(|c| c.0 == i), runaway) {
                    (Some(c), _) => c.1.clone(),
                    (None, Some(r)) => r.1,
                    (None, None) => weighted(&format!("0.{}", 2 + i)),
                };
                serde_json::json!({"text": format!("```merge\n{text}\n```")})
            })
            .collect();
        (200, serde_json::json!({"choices": choices}).to_string())
    })
}

/// MERGEC_CANDIDATE_FAULT for the injected cases.
fn fault_spec() -> String {
    fault_cases()
        .iter()
        .filter(|c| !c.2.is_empty())
        .map(|c| format!("{}:{}", c.2, c.1.lines().next().unwrap().trim()))
        .collect::<Vec<_>>()
        .join(";")
}

fn fault_run(dir: &Path, url: &str, faults: bool, extra: &[&str]) -> Command {
    let mut flags: Vec<&str> = vec![];
    for (flag, value) in [
        ("--iterations", "1"),
        ("--programs", "9"),
        // No repair round: the runaway programs stay as written (and recorded invalid).
        ("--repair", "false"),
        ("--time-limit-s", "4"),
        ("--jobs", "2"),
        ("--top-test", "1"),
        ("--baseline-grid", "[0.5]"),
    ] {
        if !extra.contains(&flag) {
            flags.extend([flag, value]);
        }
    }
    flags.extend_from_slice(extra);
    let mut c = develop(dir, url, &flags);
    if faults {
        c.env("MERGEC_CANDIDATE_FAULT", fault_spec());
    }
    c
}

#[test]
fn candidates_that_crash_hang_or_run_out_of_memory_fail_alone_and_the_rest_score_as_before() {
    let url = fault_server();
    let dir = tempfile::tempdir().unwrap();
    family(dir.path());
    let t0 = std::time::Instant::now();
    let out = fault_run(dir.path(), &url, true, &[]).output().unwrap();
    let took = t0.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(took < 90.0, "took {took} s");
    let recs = records(dir.path());
    let program = |i: u64| {
        recs.iter()
            .find(|r| r["event"] == "program" && r["index"] == i)
            .unwrap()
    };
    for (i, _, kind, want) in fault_cases() {
        let r = program(i);
        assert_eq!(r["outcome"], "failed", "{kind} {r}");
        let reason = r["reason"].as_str().unwrap();
        assert!(reason.contains(want), "{kind}: {reason}");
        eprintln!("{kind}: {reason}");
    }
    for (i, _, want) in runaway_cases() {
        let r = program(i);
        assert_eq!(r["outcome"], "invalid", "{r}");
        let said = r["assessed"]["diagnostics"].as_str().unwrap();
        assert!(said.contains(want), "{said}");
    }
    // Every candidate was recorded as started before it ran; the runaways never ran.
    let started = recs.iter().filter(|r| r["event"] == "started").count();
    assert_eq!(started, 7);
    // The valid ones score exactly as in a run without faults, and as in process.
    let reference = tempfile::tempdir().unwrap();
    family(reference.path());
    let ok = fault_run(reference.path(), &url, false, &[])
        .output()
        .unwrap();
    assert!(ok.status.success());
    let theirs = records(reference.path());
    for i in [0u64, 7] {
        let mine = program(i);
        let other = theirs
            .iter()
            .find(|r| r["event"] == "program" && r["index"] == i)
            .unwrap();
        assert_eq!(mine["outcome"], "scored");
        assert_eq!(
            (&mine["dev"], &mine["correct"]),
            (&other["dev"], &other["correct"])
        );
    }
    let cfg =
        mergec::develop::config::RunConfig::from_toml(&dir.path().join("run/config.toml")).unwrap();
    let setup = mergec::develop::driver::Setup::new(&cfg).unwrap();
    let (acc, correct, _, _, _) = mergec::develop::driver::merge_and_score(
        &cfg,
        &weighted("0.2"),
        vec![],
        &cfg.base,
        &cfg.models,
        &setup.dev,
        &dir.path().join("in-process"),
    )
    .unwrap();
    assert_eq!(program(0)["dev"].as_f64().unwrap().to_bits(), acc.to_bits());
    assert_eq!(program(0)["correct"].as_u64().unwrap(), correct as u64);
    // Nothing is left in the scratch directory by the failed ones.
    let jobs = dir.path().join("run/scratch/jobs");
    assert!(!jobs.exists() || std::fs::read_dir(&jobs).unwrap().count() == 0);
}

/// Waits (at most 2 minutes) until the record holds `n` `started` events of program
/// `index`.
fn wait_started(dir: &Path, index: u64, n: usize) {
    let rec = dir.join("run/programs.jsonl");
    let t0 = std::time::Instant::now();
    while t0.elapsed().as_secs() < 120 {
        let text = std::fs::read_to_string(&rec).unwrap_or_default();
        let started = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .is_ok_and(|r| r["event"] == "started" && r["index"] == index)
            })
            .count();
        if started >= n {
            std::thread::sleep(std::time::Duration::from_millis(300));
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("program {index} never started {n} times");
}

/// Processes whose command line mentions `what`.
fn processes_with(what: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(what))
        })
        .count()
}

/// Starts the fault run (program 5 hangs), waits until program 5 has started `n` times
/// in all, sends `signal` to the driver and returns its exit status once no candidate
/// outlives it.
fn stop_while_running(dir: &Path, url: &str, spec: &str, signal: &str, n: usize) -> i32 {
    let resume: &[&str] = if n > 1 { &["--resume"] } else { &[] };
    let mut flags = vec!["--jobs", "1"];
    flags.extend_from_slice(resume);
    let mut child = fault_run(dir, url, false, &flags)
        .env("MERGEC_CANDIDATE_FAULT", spec)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_started(dir, 5, n);
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    let run_dir = dir.join("run").display().to_string();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        processes_with(&run_dir),
        0,
        "{signal}: a candidate outlived the driver"
    );
    status.code().unwrap_or(-1)
}

#[test]
fn a_candidate_running_when_the_run_dies_runs_again_once_and_fails_when_it_dies_twice() {
    let url = fault_server();
    let hang = weighted("0.65");
    let spec = format!("hang:{}", hang.lines().next().unwrap().trim());
    // Killed twice while program 5 runs: failed, never run a third time. Ctrl-C once:
    // released, and run again (to a score) on --resume.
    for (signal, kills) in [("-KILL", 2), ("-INT", 1)] {
        let dir = tempfile::tempdir().unwrap();
        family(dir.path());
        for n in 1..=kills {
            let code = stop_while_running(dir.path(), &url, &spec, signal, n);
            if signal == "-INT" {
                assert_eq!(code, 130);
            }
        }
        // Resumed without the fault: the program would now score.
        let out = fault_run(dir.path(), &url, false, &["--jobs", "1", "--resume"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let recs = records(dir.path());
        let started = recs
            .iter()
            .filter(|r| r["event"] == "started" && r["index"] == 5)
            .count();
        let r = recs
            .iter()
            .find(|r| r["event"] == "program" && r["index"] == 5)
            .unwrap();
        if signal == "-INT" {
            assert_eq!(started, 2, "{signal}");
            assert_eq!(r["outcome"], "scored", "{signal}: {r}");
            assert!(
                recs.iter()
                    .any(|r| r["event"] == "released" && r["index"] == 5)
            );
        } else {
            assert_eq!(started, 2, "{signal}: run a third time");
            assert_eq!(r["outcome"], "failed", "{r}");
            assert!(
                r["reason"]
                    .as_str()
                    .unwrap()
                    .contains("the run stopped twice while")
            );
        }
    }
}

/// `devices = [3, 5]`: one candidate per device at a time, each with
/// `CUDA_VISIBLE_DEVICES` set to its device, which `{device}` in the evaluator command
/// names; both devices are used.
#[test]
fn local_devices_run_one_candidate_per_gpu_with_its_device() {
    let url = server();
    let dir = tempfile::tempdir().unwrap();
    family(dir.path());
    let log = dir.path().join("devices.log");
    let evaluator = format!(
        "command:test -d {{model}}; printf '%s|%s\\n' \"$CUDA_VISIBLE_DEVICES\" {{device}} >> {}; \
         test -z \"$CUDA_VISIBLE_DEVICES\" || sleep 0.5; echo 0.5",
        log.display()
    );
    let out = develop(
        dir.path(),
        &url,
        &[
            "--evaluator",
            &evaluator,
            "--devices",
            "3,5",
            "--iterations",
            "1",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    // The candidates' evaluations (the final stage runs in this process, on no device).
    let on_device: Vec<&str> = text.lines().filter(|l| *l != "|").collect();
    assert!(on_device.len() >= 2, "{text}");
    assert!(
        on_device.iter().all(|l| *l == "3|3" || *l == "5|5"),
        "{text}"
    );
    assert!(
        on_device.contains(&"3|3") && on_device.contains(&"5|5"),
        "{text}"
    );
}
