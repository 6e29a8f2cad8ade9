//! Isolated candidates: each program of a run is merged and scored by a child process,
//! `mergec candidate --run-dir D --request D/scratch/jobs/<id>/request.json`, under an
//! address-space and a CPU-time limit and a wall-clock kill, so that a candidate that
//! aborts, hangs or is killed for memory fails alone and the driver goes on. The
//! request holds only paths and text (the run's settings are D's `config.toml`), so a
//! cluster executor can run the same command on another machine. The child writes its
//! result atomically beside the request.

use super::config::RunConfig;
use super::driver::{Event, merge_and_score};
use crate::runtime::child::{self, Limits, Supervised};
use crate::types::Const;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What one candidate is asked to do.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Request {
    /// The program text (its first merge runs).
    pub program: String,
    /// Parameter values (JSON numbers, booleans and lists); others take their defaults.
    #[serde(default)]
    pub params: Vec<(String, serde_json::Value)>,
    /// Where the merged model is written.
    pub out: PathBuf,
    #[serde(default)]
    pub problems: Problems,
    /// Threads for the tensor work (0: all cores).
    #[serde(default)]
    pub threads: usize,
    /// The GPU it was given (`devices`; its process runs with `CUDA_VISIBLE_DEVICES`
    /// set to it, which is what `{device}` in evaluator commands becomes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// The problems a candidate is scored on.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(tag = "set", rename_all = "snake_case")]
pub enum Problems {
    /// The run's dev set (`dev`, cut to `dev_limit`).
    #[default]
    Dev,
    /// A GSM8K-format file, its first `limit` problems (0: all).
    File { path: PathBuf, limit: usize },
}

/// What a candidate's process writes to `result.json` beside its request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Reply {
    Scored {
        score: f64,
        /// The score's bits, so that the driver records exactly what was computed.
        score_bits: u64,
        correct: usize,
        n: usize,
        /// Which problems were answered (see [`crate::eval::stats::hits_hex`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hits: Option<String>,
        merge_s: f64,
        eval_s: f64,
    },
    Failed {
        reason: String,
    },
}

/// The result file of a request.
pub fn result_path(request: &Path) -> PathBuf {
    request.with_file_name("result.json")
}

/// A request or result file is small: anything larger is not one.
const MAX_JOB_FILE: u64 = 64 << 20;

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    use std::io::Read;
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let f = std::fs::File::open(path).map_err(|e| at(&e))?;
    if !f.metadata().map_err(|e| at(&e))?.is_file() {
        return Err(at(&"not a regular file"));
    }
    let mut text = String::new();
    f.take(MAX_JOB_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| at(&e))?;
    if text.len() as u64 > MAX_JOB_FILE {
        return Err(at(&format!("larger than {MAX_JOB_FILE} bytes")));
    }
    serde_json::from_str(&text).map_err(|e| at(&e))
}

fn to_const(name: &str, v: &serde_json::Value) -> Result<Const, String> {
    use serde_json::Value as V;
    match v {
        V::Bool(b) => Ok(Const::Bool(*b)),
        V::Number(n) if n.is_i64() => Ok(Const::Int(n.as_i64().unwrap_or_default())),
        V::Number(n) => Ok(Const::F32(n.as_f64().unwrap_or_default() as f32)),
        V::Array(xs) => xs
            .iter()
            .map(|x| to_const(name, x))
            .collect::<Result<_, _>>()
            .map(Const::List),
        _ => Err(format!(
            "parameter `{name}`: {v} is not a number, boolean or list"
        )),
    }
}

/// `mergec candidate`: answers the request at `request` for the run in `run_dir` and
/// writes the result beside it. Exit status 0 when scored, 1 when it failed (the
/// reason is in the result and on stderr), 2 when no result could be written.
pub fn run_candidate(run_dir: &Path, request: &Path) -> i32 {
    let reply = match answer(run_dir, request) {
        Ok((score, correct, n, hits, merge_s, eval_s)) => Reply::Scored {
            score,
            score_bits: score.to_bits(),
            correct,
            n,
            hits,
            merge_s,
            eval_s,
        },
        Err(reason) => Reply::Failed { reason },
    };
    write_reply(request, reply)
}

/// Writes `reply` as the result of `request` (atomically) and returns the candidate's
/// exit status: 0 scored, 1 failed (the reason also on stderr), 2 not written.
fn write_reply(request: &Path, reply: Reply) -> i32 {
    let written = serde_json::to_vec(&reply)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            crate::files::write_atomic(&result_path(request), &text).map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        eprintln!("error: {e}");
        return 2;
    }
    match reply {
        Reply::Scored { .. } => 0,
        Reply::Failed { reason } => {
            eprintln!("error: {reason}");
            1
        }
    }
}

type Scores = (f64, usize, usize, Option<String>, f64, f64);

fn answer(run_dir: &Path, request: &Path) -> Result<Scores, String> {
    let req: Request = read_json(request)?;
    let cfg = RunConfig::from_toml(&run_dir.join("config.toml"))?;
    let (path, limit) = match &req.problems {
        Problems::Dev => (cfg.dev.clone(), cfg.dev_limit),
        Problems::File { path, limit } => (path.clone(), *limit),
    };
    let mut problems = crate::eval::gsm8k::load_jsonl(&path)?;
    if limit > 0 {
        problems.truncate(limit);
    }
    let params = req
        .params
        .iter()
        .map(|(k, v)| to_const(k, v).map(|c| (k.clone(), c)))
        .collect::<Result<Vec<_>, _>>()?;
    test_fault(&req.program);
    let work = || {
        merge_and_score(
            &cfg,
            &req.program,
            params,
            &cfg.base,
            &cfg.models,
            &problems,
            &req.out,
        )
    };
    let (acc, correct, hits, merge_s, eval_s) = match req.threads {
        0 => work(),
        t => match rayon::ThreadPoolBuilder::new().num_threads(t).build() {
            Ok(pool) => pool.install(work),
            Err(e) => return Err(format!("cannot start {t} threads: {e}")),
        },
    }?;
    Ok((acc, correct, problems.len(), hits, merge_s, eval_s))
}

/// For tests only: `MERGEC_CANDIDATE_FAULT="KIND:TEXT;KIND:TEXT"` makes a candidate
/// whose program contains TEXT fault as KIND: `abort`, `exit` (status 3, no result),
/// `kill` (SIGKILL, as the OOM killer does), `hang`, `oom` (a 1 TiB allocation),
/// `cpu` (spins until the CPU limit) or `slow` (waits 4 s, then runs as usual).
fn test_fault(program: &str) {
    let Ok(spec) = std::env::var("MERGEC_CANDIDATE_FAULT") else {
        return;
    };
    for item in spec.split(';') {
        let Some((kind, text)) = item.split_once(':') else {
            continue;
        };
        if text.is_empty() || !program.contains(text) {
            continue;
        }
        eprintln!("MERGEC_CANDIDATE_FAULT: {kind}");
        match kind {
            "slow" => {
                std::thread::sleep(Duration::from_secs(4));
                return;
            }
            "abort" => std::process::abort(),
            "exit" => std::process::exit(3),
            "kill" => {
                let _ = Command::new("kill")
                    .args(["-KILL", &std::process::id().to_string()])
                    .status();
            }
            "oom" => {
                let v = vec![1u8; 1 << 40];
                eprintln!("{}", v[v.len() - 1]);
            }
            "cpu" => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            _ => {}
        }
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// The bytes of the tensors of the checkpoint at `path` (None when it cannot be read).
pub fn checkpoint_bytes(path: &Path) -> Option<u64> {
    crate::runtime::safetensors::Checkpoint::open(path)
        .ok()
        .map(|c| c.tensors().map(|t| t.nbytes() as u64).sum())
}

impl RunConfig {
    /// Range checks of the isolation and HTTP settings.
    pub fn validate_isolation(&self) -> Result<(), String> {
        let within = |key: &str, v: f64, lo: f64, hi: f64, zero: bool| {
            if v.is_finite() && ((zero && v == 0.0) || (lo..=hi).contains(&v)) {
                Ok(())
            } else {
                let or0 = if zero { "0 (automatic) or " } else { "" };
                Err(format!("{key} must be {or0}within {lo}..{hi}, not {v}"))
            }
        };
        within(
            "candidate_memory_gb",
            self.candidate_memory_gb,
            0.25,
            1048576.0,
            true,
        )?;
        within("candidate_cpu_s", self.candidate_cpu_s, 1.0, 1e8, true)?;
        within(
            "http_connect_timeout_s",
            self.http_connect_timeout_s,
            0.001,
            3600.0,
            false,
        )?;
        within(
            "http_timeout_s",
            self.http_timeout_s,
            0.001,
            604800.0,
            false,
        )?;
        if !(1..=4096).contains(&self.http_max_reply_mb) {
            return Err(format!(
                "http_max_reply_mb must be within 1..4096, not {}",
                self.http_max_reply_mb
            ));
        }
        Ok(())
    }

    /// The limits of a candidate's process running on `threads` threads.
    pub fn candidate_limits(&self, threads: usize) -> Limits {
        let gib = (1u64 << 30) as f64;
        let address_space = if self.candidate_memory_gb > 0.0 {
            (self.candidate_memory_gb * gib) as u64
        } else {
            // The inputs mapped, the output written and loaded for scoring, and room
            // for the code, threads and the merge's working memory.
            let base = checkpoint_bytes(&self.base).unwrap_or(1 << 30);
            (8u64 << 30).saturating_add(base.saturating_mul(self.models.len() as u64 + 5))
        };
        let cpu_s = if self.candidate_cpu_s > 0.0 {
            Some(self.candidate_cpu_s.ceil() as u64)
        } else if self.time_limit_s > 0.0 {
            Some((self.time_limit_s * threads.max(1) as f64 + 60.0).ceil() as u64)
        } else {
            None
        };
        Limits {
            address_space: Some(address_space),
            cpu_s,
        }
    }

    /// When the driver kills a candidate: the time limit and a grace for the
    /// candidate's own (cooperative) limit to report first.
    pub fn candidate_kill_after(&self) -> Option<Duration> {
        (self.time_limit_s > 0.0).then_some(())?;
        let grace = (2.0 + 0.1 * self.time_limit_s).min(60.0);
        Duration::try_from_secs_f64(self.time_limit_s + grace).ok()
    }
}

/// One candidate for [`run_candidates`]: its program and where it is merged.
pub struct Job {
    pub program: String,
    pub out: PathBuf,
}

/// A candidate's outcome as the driver records it: (dev, correct, hits, merge s, eval s),
/// or why it failed.
pub type Scored = Result<(f64, usize, Option<String>, f64, f64), String>;

/// The result of a candidate run by the driver; None when the run was stopped before it
/// finished.
pub type JobResult = Option<Scored>;

/// Merges and scores `list`, `jobs` at a time, with the run's executor: child processes
/// of this one (`local`) or jobs on a Ray cluster (`ray:`). A set `stop` stops the
/// running ones and starts no more. An error only when the executor itself is lost
/// (the Ray head stayed unreachable).
pub fn run_candidates(
    cfg: &RunConfig,
    list: &[Job],
    jobs: usize,
    stop: &AtomicBool,
) -> Result<Vec<JobResult>, String> {
    match super::ray::head_url(&cfg.executor)? {
        Some(url) => super::ray::run_candidates(cfg, &url, list, jobs, stop),
        None => Ok(run_local(cfg, list, jobs, stop)),
    }
}

/// [`run_candidates`] in child processes, each on its share of the cores, or one per
/// device of `devices`.
fn run_local(cfg: &RunConfig, list: &[Job], jobs: usize, stop: &AtomicBool) -> Vec<JobResult> {
    let mut workers = jobs.min(list.len()).max(1);
    if !cfg.devices.is_empty() {
        workers = workers.min(cfg.devices.len());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if workers <= 1 {
        0
    } else {
        (cores / workers).max(1)
    };
    let limits = cfg.candidate_limits(if threads == 0 { cores } else { threads });
    let mut results: Vec<JobResult> = list.iter().map(|_| None).collect();
    let mut free: Vec<u32> = cfg.devices.iter().rev().copied().collect();
    let mut running: Vec<(usize, PathBuf, Option<u32>, Supervised)> = vec![];
    let mut next = 0;
    loop {
        while running.len() < workers && next < list.len() && !stop.load(Ordering::SeqCst) {
            let dir = job_dir(cfg, &list[next].out);
            let device = free.pop();
            match start(cfg, &list[next], &dir, threads, device, limits) {
                Ok(s) => running.push((next, dir, device, s)),
                Err(e) => {
                    free.extend(device);
                    results[next] = Some(Err(e));
                }
            }
            next += 1;
        }
        let mut k = 0;
        while k < running.len() {
            match running[k].3.poll(Some(stop)) {
                Ok(None) => k += 1,
                ended => {
                    let (i, dir, device, _) = running.remove(k);
                    free.extend(device);
                    results[i] = match ended {
                        Ok(Some(f)) if f.stopped => None,
                        Ok(Some(f)) => Some(judge(cfg, &dir, &f, limits)),
                        Err(e) => Some(Err(format!("waiting for the candidate: {e}"))),
                        Ok(None) => None,
                    };
                    if !matches!(results[i], Some(Ok(_))) {
                        remove_merge(&list[i].out);
                    }
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
        if running.is_empty() && (next >= list.len() || stop.load(Ordering::SeqCst)) {
            return results;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The scratch directory of the candidate merged to `out`: its request and result.
pub fn job_dir(cfg: &RunConfig, out: &Path) -> PathBuf {
    let name = out.file_name().unwrap_or_default();
    cfg.run_dir.join("scratch/jobs").join(name)
}

/// Writes `job`'s request into `dir` (made anew) and returns its path.
pub fn write_request(
    job: &Job,
    dir: &Path,
    threads: usize,
    device: Option<u32>,
) -> Result<PathBuf, String> {
    let _ = std::fs::remove_dir_all(dir);
    let req = Request {
        program: job.program.clone(),
        params: vec![],
        out: job.out.clone(),
        problems: Problems::Dev,
        threads,
        device: device.map(|d| d.to_string()),
    };
    let text = serde_json::to_vec_pretty(&req).map_err(|e| e.to_string())?;
    let path = dir.join("request.json");
    crate::files::write_atomic(&path, &text)?;
    Ok(path)
}

/// The request at `path`.
pub fn read_request(path: &Path) -> Result<Request, String> {
    read_json(path)
}

/// The result written in the job directory `dir`, as the driver records it.
pub fn read_reply(dir: &Path) -> Scored {
    match read_json::<Reply>(&result_path(&dir.join("request.json")))? {
        Reply::Scored {
            score_bits,
            correct,
            hits,
            merge_s,
            eval_s,
            ..
        } => Ok((f64::from_bits(score_bits), correct, hits, merge_s, eval_s)),
        Reply::Failed { reason } => Err(reason),
    }
}

/// Writes the request and starts `mergec candidate` on it.
fn start(
    cfg: &RunConfig,
    job: &Job,
    dir: &Path,
    threads: usize,
    device: Option<u32>,
    limits: Limits,
) -> Result<Supervised, String> {
    let path = write_request(job, dir, threads, device)?;
    spawn_candidate(cfg, &cfg.run_dir, &path, device, limits)
}

/// Starts `mergec candidate` on the request at `request`, under `limits`.
fn spawn_candidate(
    cfg: &RunConfig,
    run_dir: &Path,
    request: &Path,
    device: Option<u32>,
    limits: Limits,
) -> Result<Supervised, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot start the candidate: no path to mergec: {e}"))?;
    let mut c = Command::new(exe);
    c.arg("candidate")
        .arg("--run-dir")
        .arg(run_dir)
        .arg("--request")
        .arg(request);
    if let Some(d) = device {
        c.env("CUDA_VISIBLE_DEVICES", d.to_string());
    }
    child::spawn(&mut c, limits, false, 8 << 10, cfg.candidate_kill_after())
        .map_err(|e| format!("cannot start the candidate process: {e}"))
}

/// `mergec candidate --supervise`: what the local executor does for one candidate, on
/// the machine this runs on (a cluster worker): runs the candidate in a child process
/// under the run's limits and writes the result, the failure of the program included
/// (killed for memory, over the time limit). Exit status 0 when scored, 1 when the
/// program failed, 2 when stopped or no result could be written: a job that ends
/// without a result was lost to the cluster, not failed by its program.
pub fn supervise(run_dir: &Path, request: &Path) -> i32 {
    let fail = |e: &str| {
        eprintln!("error: {e}");
        2
    };
    let cfg = match RunConfig::from_toml(&run_dir.join("config.toml")) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let req = match read_request(request) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let limits = cfg.candidate_limits(if req.threads == 0 { cores } else { req.threads });
    let result = result_path(request);
    let _ = std::fs::remove_file(&result);
    let stop = &crate::runtime::CANCELLED;
    let finished = spawn_candidate(&cfg, run_dir, request, None, limits)
        .and_then(|s| s.wait(Some(stop)).map_err(|e| e.to_string()));
    let f = match finished {
        Ok(f) if f.stopped || stop.load(Ordering::SeqCst) => return fail("stopped"),
        Ok(f) => f,
        Err(e) => return fail(&e),
    };
    let dir = request.parent().unwrap_or(Path::new("."));
    match judge(&cfg, dir, &f, limits) {
        Ok(_) => 0,
        Err(_) if result.exists() => 1,
        Err(reason) => write_reply(request, Reply::Failed { reason }),
    }
}

/// The candidate's result: its result file, or what its end says.
fn judge(cfg: &RunConfig, dir: &Path, f: &child::Finished, limits: Limits) -> Scored {
    if result_path(&dir.join("request.json")).exists() {
        return read_reply(dir);
    }
    let last = f
        .last_stderr_line()
        .map(|l| format!(": {l}"))
        .unwrap_or_default();
    if f.timed_out {
        return Err(format!(
            "over the time limit of {} s (time_limit_s): killed after {:.1} s{last}",
            cfg.time_limit_s, f.seconds
        ));
    }
    use std::os::unix::process::ExitStatusExt;
    if f.status.signal() == Some(libc::SIGXCPU) {
        return Err(format!(
            "over the CPU time limit of {} s (candidate_cpu_s): killed by SIGXCPU after {:.1} s",
            limits.cpu_s.unwrap_or_default(),
            f.seconds
        ));
    }
    Err(format!("{} without a result{last}", f.how()))
}

/// Removes a failed candidate's merge output and any temporary directory it left.
pub fn remove_merge(out: &Path) {
    let _ = std::fs::remove_dir_all(out);
    let (Some(parent), Some(name)) = (out.parent(), out.file_name()) else {
        return;
    };
    let prefix = format!(".{}.mergec-tmp-", name.to_string_lossy());
    if let Ok(entries) = std::fs::read_dir(parent) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Programs recorded as started with no result and no clean interruption after, in
/// two attempts of the run: the run stopped twice while they ran (crash, kill, power
/// loss), so they may be what stops it. (iteration, index) -> canonical hash. A program
/// the run stopped on once runs again on `--resume`: a kill of the run, a preempted job
/// or a lost machine is not the candidate's fault, and its result must not be lost.
pub fn unfinished(events: &[Event]) -> HashMap<(usize, usize), String> {
    // (iteration, index) -> (canonical, starts that neither ended nor were released).
    let mut open: HashMap<(usize, usize), (String, usize)> = HashMap::new();
    for e in events {
        match e {
            Event::Started {
                iteration,
                index,
                canonical,
            } => {
                let o = open
                    .entry((*iteration, *index))
                    .or_insert((canonical.clone(), 0));
                o.1 += 1;
            }
            Event::Program(r) => {
                open.remove(&(r.iteration, r.index));
            }
            Event::Released { iteration, index } => {
                if let Some(o) = open.get_mut(&(*iteration, *index)) {
                    o.1 = o.1.saturating_sub(1);
                }
            }
            _ => {}
        }
    }
    open.into_iter()
        .filter(|(_, (_, n))| *n >= 2)
        .map(|(k, (c, _))| (k, c))
        .collect()
}

/// The reason recorded for an [`unfinished`] program.
pub const STOPPED_WHILE_RUNNING: &str = "the run stopped twice while this candidate ran (a \
     crash, a kill or an out-of-memory kill of the whole run); it is not run again";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_range_checked_and_limits_derived() {
        let mut c = RunConfig::default();
        assert!(c.validate_isolation().is_ok());
        for (key, v) in [("candidate_memory_gb", f64::NAN), ("http_timeout_s", 0.0)] {
            let mut d = c.clone();
            match key {
                "candidate_memory_gb" => d.candidate_memory_gb = v,
                _ => d.http_timeout_s = v,
            }
            let e = d.validate_isolation().unwrap_err();
            assert!(e.contains(key), "{e}");
        }
        // time_limit_s itself is range-checked with the other floats (RunConfig::validate).
        c.time_limit_s = 30.0;
        c.candidate_memory_gb = 2.0;
        let l = c.candidate_limits(4);
        assert_eq!(l.address_space, Some(2 << 30));
        assert_eq!(l.cpu_s, Some(180));
        assert_eq!(c.candidate_kill_after(), Some(Duration::from_secs(35)));
        c.time_limit_s = 0.0;
        assert_eq!(c.candidate_limits(4).cpu_s, None);
        assert_eq!(c.candidate_kill_after(), None);
    }

    #[test]
    fn parameters_travel_as_json() {
        let v = serde_json::json!([1, 0.5, true]);
        assert_eq!(
            to_const("p", &v).unwrap(),
            Const::List(vec![Const::Int(1), Const::F32(0.5), Const::Bool(true)])
        );
        assert!(
            to_const("p", &serde_json::json!("x"))
                .unwrap_err()
                .contains("`p`")
        );
    }

    #[test]
    fn a_program_the_run_stopped_on_twice_is_unfinished_once_is_not() {
        let started = |index| Event::Started {
            iteration: 1,
            index,
            canonical: format!("c{index}"),
        };
        let released = |index| Event::Released {
            iteration: 1,
            index,
        };
        // 0: died with the run once; 1: twice; 2: twice, but one of them released
        // (Ctrl-C); 3: three times.
        let events = vec![
            started(0),
            started(1),
            started(2),
            started(3),
            started(1),
            started(2),
            released(2),
            started(3),
            started(3),
        ];
        let u = unfinished(&events);
        let mut keys: Vec<_> = u.keys().map(|k| k.1).collect();
        keys.sort();
        assert_eq!(keys, vec![1, 3]);
        assert_eq!(u[&(1, 1)], "c1");
    }
}
