//! The `ray:` executor: each candidate is one Ray job, submitted through the head's
//! Jobs REST API (`POST /api/jobs/`, `GET /api/jobs/{id}`, `POST /api/jobs/{id}/stop`),
//! running `mergec candidate --supervise` on a worker against the run directory on
//! storage every node sees. Ray schedules and places the jobs; this module only submits,
//! watches and collects them.
//!
//! A job's identity is `mergec-RUN-NAME-ATTEMPT` (the run's id, the candidate's scratch
//! name, the attempt), so a resumed driver finds the jobs of the run it continues: it
//! re-attaches to one still running, collects the result of one that finished (the
//! result file beside its request), and submits again only what was lost. What decides
//! whose fault a failure was is that file: the supervisor writes it for every failure of
//! the program (a non-finite merge, over the time limit, killed for memory), so a job
//! that ended without one was lost to the cluster (node lost, worker killed, stopped)
//! and is submitted again, up to `retries` times.

use super::config::RunConfig;
use super::isolate::{self, Job, JobResult};
use crate::runtime::child::{cut, sh_quote};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The oldest Ray whose Jobs API takes every field we send (`entrypoint_memory`).
const MIN_RAY: (u32, u32) = (2, 8);

/// How long the version probe job may take to be scheduled and run.
const PROBE_WAIT: Duration = Duration::from_secs(300);

/// The head URL of a `ray:` executor setting (None for `local`).
pub fn head_url(executor: &str) -> Result<Option<String>, String> {
    match executor.split_once(':') {
        _ if executor == "local" => Ok(None),
        Some(("ray", url)) if url.starts_with("http://") || url.starts_with("https://") => {
            Ok(Some(url.trim_end_matches('/').to_string()))
        }
        _ => Err(format!(
            "executor must be `local` or `ray:http://HEAD:8265` (the Ray dashboard's address), \
             not `{executor}`"
        )),
    }
}

/// Why a request to the head did not get an answer.
enum Fault {
    /// No connection or no reply: the head is down or unreachable.
    Unreachable(String),
    /// The head answered with an error.
    Refused(String),
}

impl Fault {
    fn text(self) -> String {
        match self {
            Fault::Unreachable(s) | Fault::Refused(s) => s,
        }
    }
}

/// One job's state as the head reports it.
struct Status {
    status: String,
    message: String,
}

impl Status {
    fn terminal(&self) -> bool {
        matches!(self.status.as_str(), "SUCCEEDED" | "FAILED" | "STOPPED")
    }
}

/// A Ray head's Jobs REST API.
pub struct Head {
    url: String,
    agent: ureq::Agent,
    /// `Authorization: Bearer` for a cluster with token authentication (Ray >= 2.52).
    token: Option<String>,
}

/// Ray's token, where Ray's own clients look for it: `RAY_AUTH_TOKEN`, the file at
/// `RAY_AUTH_TOKEN_PATH`, or `~/.ray/auth_token`.
fn ray_token() -> Option<String> {
    let nonempty = |s: String| Some(s.trim().to_string()).filter(|t| !t.is_empty());
    if let Some(t) = std::env::var("RAY_AUTH_TOKEN").ok().and_then(nonempty) {
        return Some(t);
    }
    let path = match std::env::var_os("RAY_AUTH_TOKEN_PATH") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".ray/auth_token"),
    };
    let text = crate::files::read_text(&path, "a Ray token", 64 << 10).ok()?;
    nonempty(text)
}

impl Head {
    pub fn new(url: &str, cfg: &RunConfig) -> Head {
        let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::from_secs(10));
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(secs(cfg.http_connect_timeout_s)))
            .timeout_global(Some(secs(cfg.http_timeout_s.min(60.0))))
            .http_status_as_error(false)
            .build()
            .into();
        Head {
            url: url.to_string(),
            agent,
            token: ray_token(),
        }
    }

    /// The JSON reply to a request (None: 404).
    fn call(&self, path: &str, body: Option<&Value>) -> Result<Option<Value>, Fault> {
        let url = format!("{}{path}", self.url);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let sent = match (body, &auth) {
            (Some(b), Some(a)) => self
                .agent
                .post(&url)
                .header("Authorization", a)
                .send_json(b),
            (Some(b), None) => self.agent.post(&url).send_json(b),
            (None, Some(a)) => self.agent.get(&url).header("Authorization", a).call(),
            (None, None) => self.agent.get(&url).call(),
        };
        let mut resp =
            sent.map_err(|e| Fault::Unreachable(format!("the Ray head at {}: {e}", self.url)))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_string()
            .map_err(|e| Fault::Unreachable(format!("{url}: reading the reply: {e}")))?;
        if status == 404 {
            return Ok(None);
        }
        if status == 401 || status == 403 {
            let have = match self.token {
                Some(_) => "the token sent was refused",
                None => "no token was found",
            };
            return Err(Fault::Refused(format!(
                "HTTP {status} from {url}: the cluster asks for a token and {have} (set \
                 RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH, or see `ray get-auth-token`)"
            )));
        }
        if !(200..300).contains(&status) {
            let last = text.trim().lines().last().unwrap_or_default().to_string();
            return Err(Fault::Refused(format!(
                "HTTP {status} from {url}: {}",
                cut(&last, 300)
            )));
        }
        serde_json::from_str(&text).map(Some).map_err(|e| {
            Fault::Refused(format!(
                "{url}: the reply is not JSON ({e}): {}",
                cut(text.trim(), 200)
            ))
        })
    }

    /// The head's Ray version, checked against [`MIN_RAY`].
    fn version(&self) -> Result<String, String> {
        let v = self
            .call("/api/version", None)
            .map_err(|f| match f {
                Fault::Unreachable(e) => format!("{e} (is the head running, with its dashboard?)"),
                Fault::Refused(e) => e,
            })?
            .ok_or_else(|| {
                format!(
                    "{} has no /api/version: not a Ray dashboard (the executor needs \
                     the head's dashboard address, port 8265 by default)",
                    self.url
                )
            })?;
        let ray = v["ray_version"].as_str().unwrap_or_default().to_string();
        let mut parts = ray.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if (major, minor) < MIN_RAY {
            return Err(format!(
                "the Ray head at {} runs Ray `{ray}`; the executor needs Ray {}.{} or newer",
                self.url, MIN_RAY.0, MIN_RAY.1
            ));
        }
        Ok(ray)
    }

    fn submit(&self, id: &str, entrypoint: &str, cfg: &RunConfig) -> Result<(), Fault> {
        let mut body = json!({
            "entrypoint": entrypoint,
            "submission_id": id,
            "entrypoint_num_cpus": cfg.ray_num_cpus,
            "entrypoint_num_gpus": cfg.ray_num_gpus,
            "metadata": {"mergec_run": cfg.run_dir.display().to_string()},
        });
        // The test faults of `mergec candidate` travel to the job as they would to a
        // local child.
        if let Ok(v) = std::env::var("MERGEC_CANDIDATE_FAULT") {
            body["runtime_env"] = json!({"env_vars": {"MERGEC_CANDIDATE_FAULT": v}});
        }
        if cfg.ray_memory_gb > 0.0 {
            body["entrypoint_memory"] = json!((cfg.ray_memory_gb * (1u64 << 30) as f64) as u64);
        }
        match self.call("/api/jobs/", Some(&body))? {
            Some(_) => Ok(()),
            None => Err(Fault::Refused(format!(
                "{}/api/jobs/: not found (not a Ray dashboard?)",
                self.url
            ))),
        }
    }

    fn status(&self, id: &str) -> Result<Option<Status>, Fault> {
        Ok(self
            .call(&format!("/api/jobs/{id}"), None)?
            .map(|v| Status {
                status: v["status"].as_str().unwrap_or_default().to_string(),
                message: v["message"].as_str().unwrap_or_default().to_string(),
            }))
    }

    fn logs(&self, id: &str) -> Result<String, Fault> {
        Ok(self
            .call(&format!("/api/jobs/{id}/logs"), None)?
            .and_then(|v| v["logs"].as_str().map(String::from))
            .unwrap_or_default())
    }

    fn stop(&self, id: &str) {
        let _ = self.call(&format!("/api/jobs/{id}/stop"), Some(&json!({})));
    }
}

/// The `mergec` the workers run, as a shell word.
fn worker_mergec(cfg: &RunConfig) -> Result<String, String> {
    if !cfg.ray_mergec.is_empty() {
        return Ok(sh_quote(&cfg.ray_mergec));
    }
    let exe = std::env::current_exe().map_err(|e| format!("no path to this mergec: {e}"))?;
    Ok(sh_quote(&exe.display().to_string()))
}

/// A job's command: from the driver's working directory (relative paths in the run's
/// settings mean the same on every node of a shared file system), then `args`.
fn entrypoint(cfg: &RunConfig, args: &str) -> Result<String, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("the working directory: {e}"))?;
    Ok(format!(
        "cd {} && exec {} {args}",
        sh_quote(&cwd.display().to_string()),
        worker_mergec(cfg)?
    ))
}

/// Checks, before anything runs, that the head answers, runs a Ray we can use, and
/// that its workers run this version of mergec (a probe job runs `mergec --version`).
/// Returns a line for the log.
pub fn check_head(cfg: &RunConfig, url: &str) -> Result<String, String> {
    let head = Head::new(url, cfg);
    let ray = head.version()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!("mergec-probe-{nanos:x}-{}", std::process::id());
    let cmd = entrypoint(cfg, "--version")?;
    head.submit(&id, &cmd, cfg).map_err(Fault::text)?;
    let t0 = Instant::now();
    let st = loop {
        match head.status(&id).map_err(Fault::text)? {
            Some(s) if s.terminal() => break s,
            _ if t0.elapsed() > PROBE_WAIT => {
                head.stop(&id);
                return Err(format!(
                    "the Ray cluster at {url} did not run a probe job in {} s (no free CPU?)",
                    PROBE_WAIT.as_secs()
                ));
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let logs = head.logs(&id).map_err(Fault::text)?;
    let ours = format!("mergec {}", env!("CARGO_PKG_VERSION"));
    let theirs = logs
        .lines()
        .find(|l| l.starts_with("mergec "))
        .map(str::trim);
    match theirs {
        Some(v) if v == ours => Ok(format!(
            "executor: Ray {ray} at {url}; its workers run {ours}"
        )),
        Some(v) => Err(format!(
            "version mismatch: the workers of the Ray cluster at {url} run `{v}`, this driver \
             is `{ours}`; install the same mergec on every node (or set ray_mergec)"
        )),
        None => Err(format!(
            "the workers of the Ray cluster at {url} cannot run mergec (`{cmd}` ended {}: {})",
            st.status,
            cut(st.message.trim(), 400)
        )),
    }
}

/// One candidate on the cluster.
struct Flight {
    /// Its index in the list.
    i: usize,
    dir: PathBuf,
    /// The attempt number of the job in flight (the id's last part).
    attempt: usize,
    /// Attempts lost to the cluster so far.
    lost: usize,
    /// Since when the head has not answered about it.
    unreachable: Option<Instant>,
    /// When it was submitted or found (for the note on jobs that wait long to start).
    since: Instant,
}

/// A job waiting this long to start gets a note: the cluster may lack what it asks.
const PENDING_NOTE: Duration = Duration::from_secs(120);

/// Runs `list` on the Ray cluster at `url`, `in_flight` at a time; the results are in
/// list order. A set `stop` stops the jobs in flight (their results are None). An error
/// when the head stayed unreachable for `ray_unreachable_s`: the run stops, and
/// `--resume` re-attaches once the head is back.
pub fn run_candidates(
    cfg: &RunConfig,
    url: &str,
    list: &[Job],
    in_flight: usize,
    stop: &AtomicBool,
) -> Result<Vec<JobResult>, String> {
    let head = Head::new(url, cfg);
    let run = super::record::run_id(&cfg.run_dir);
    let threads = cfg.ray_num_cpus.ceil().max(1.0) as usize;
    let job_id = |dir: &Path, attempt: usize| format!("mergec-{run}-{}-{attempt}", dir_name(dir));
    let mut results: Vec<JobResult> = list.iter().map(|_| None).collect();
    let mut flying: Vec<Flight> = vec![];
    let mut next = 0;
    let patience = Duration::try_from_secs_f64(cfg.ray_unreachable_s).unwrap_or(Duration::MAX);
    loop {
        if stop.load(Ordering::SeqCst) {
            for f in &flying {
                head.stop(&job_id(&f.dir, f.attempt));
            }
            return Ok(results);
        }
        while flying.len() < in_flight.max(1) && next < list.len() {
            let dir = isolate::job_dir(cfg, &list[next].out);
            match attach(&head, cfg, &list[next], &dir, threads, &job_id) {
                Ok(Attached::Done(r)) => {
                    results[next] = Some(finish(r, &list[next], &dir));
                }
                Ok(Attached::Flying { attempt, lost }) => flying.push(Flight {
                    i: next,
                    dir,
                    attempt,
                    lost,
                    unreachable: None,
                    since: Instant::now(),
                }),
                Err(Fault::Unreachable(e)) => return Err(unreachable_error(&e)),
                Err(Fault::Refused(e)) => results[next] = Some(Err(e)),
            }
            next += 1;
        }
        if flying.is_empty() && next >= list.len() {
            return Ok(results);
        }
        std::thread::sleep(Duration::from_millis(250));
        let mut k = 0;
        while k < flying.len() {
            let f = &mut flying[k];
            let id = job_id(&f.dir, f.attempt);
            let st = match head.status(&id) {
                Err(Fault::Unreachable(e)) => {
                    let since = *f.unreachable.get_or_insert_with(Instant::now);
                    if since.elapsed() > patience {
                        return Err(unreachable_error(&e));
                    }
                    k += 1;
                    continue;
                }
                Err(Fault::Refused(e)) => return Err(e),
                // The head does not know it (restarted): lost with the old head.
                Ok(None) => Status {
                    status: "LOST".into(),
                    message: "the head no longer knows the job (restarted?)".into(),
                },
                Ok(Some(s)) if !s.terminal() => {
                    f.unreachable = None;
                    if s.status == "PENDING" && f.since.elapsed() > PENDING_NOTE {
                        f.since = Instant::now();
                        eprintln!(
                            "note: Ray job {id} has waited over {} s to start ({}); does the \
                             cluster have ray_num_cpus = {}, ray_num_gpus = {} free? (`ray status`)",
                            PENDING_NOTE.as_secs(),
                            last_line(&s.message),
                            cfg.ray_num_cpus,
                            cfg.ray_num_gpus
                        );
                    }
                    k += 1;
                    continue;
                }
                Ok(Some(s)) => s,
            };
            let job = &list[f.i];
            match ended(&head, cfg, job, f, &st, &job_id)? {
                Some(r) => {
                    results[f.i] = Some(finish(r, job, &f.dir));
                    flying.remove(k);
                }
                None => k += 1,
            }
        }
    }
}

/// A job of `f` ended with status `st`: its reply if the candidate is done (its result,
/// or lost `retries` + 1 times), or None when it was submitted again.
fn ended(
    head: &Head,
    cfg: &RunConfig,
    job: &Job,
    f: &mut Flight,
    st: &Status,
    job_id: &dyn Fn(&Path, usize) -> String,
) -> Result<Option<Reply>, String> {
    if let Some(r) = read_result(&f.dir, job) {
        return Ok(Some(r));
    }
    f.lost += 1;
    let why = format!("{}: {}", st.status, last_line(&st.message));
    if f.lost > cfg.retries {
        return Ok(Some(Err(format!(
            "lost on the Ray cluster {} times (retries = {}); last: {why}",
            f.lost, cfg.retries
        ))));
    }
    eprintln!(
        "candidate {}: Ray job {} lost ({why}); submitting it again ({} of {})",
        dir_name(&f.dir),
        job_id(&f.dir, f.attempt),
        f.lost,
        cfg.retries
    );
    f.attempt += 1;
    f.unreachable = None;
    f.since = Instant::now();
    let cmd = candidate_command(cfg, &f.dir)?;
    match head.submit(&job_id(&f.dir, f.attempt), &cmd, cfg) {
        Ok(()) => Ok(None),
        Err(Fault::Unreachable(e)) => Err(unreachable_error(&e)),
        Err(Fault::Refused(e)) => Ok(Some(Err(e))),
    }
}

fn unreachable_error(e: &str) -> String {
    format!(
        "{e}; the run stops here with everything scored so far recorded: continue with \
         --resume once the head is back (jobs still running are re-attached, finished \
         ones collected)"
    )
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

fn last_line(s: &str) -> String {
    let line = s
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    cut(line.trim(), 300)
}

type Reply = isolate::Scored;

/// What a candidate's job directory says when it is picked up.
enum Attached {
    /// A result is there (a job of an earlier driver finished).
    Done(Reply),
    /// A job is in flight (found running, or submitted now).
    Flying { attempt: usize, lost: usize },
}

/// Finds the candidate's jobs from an earlier driver of the run: re-attaches to one
/// still running, collects a finished one's result, or submits the next attempt.
fn attach(
    head: &Head,
    cfg: &RunConfig,
    job: &Job,
    dir: &Path,
    threads: usize,
    job_id: &dyn Fn(&Path, usize) -> String,
) -> Result<Attached, Fault> {
    let (mut attempt, mut lost) = (0, 0);
    while attempt < 64 {
        match head.status(&job_id(dir, attempt))? {
            None => break,
            Some(s) if !s.terminal() => return Ok(Attached::Flying { attempt, lost }),
            Some(s) => {
                // A stop asked by an interrupted driver is not the cluster's loss, nor a
                // job that succeeded (its result was collected by an earlier driver that
                // died before recording it).
                lost += usize::from(s.status == "FAILED");
                attempt += 1;
            }
        }
    }
    if let Some(r) = read_result(dir, job) {
        return Ok(Attached::Done(r));
    }
    if lost > cfg.retries {
        return Ok(Attached::Done(Err(format!(
            "lost on the Ray cluster {lost} times (retries = {})",
            cfg.retries
        ))));
    }
    isolate::write_request(job, dir, threads, None).map_err(Fault::Refused)?;
    let cmd = candidate_command(cfg, dir).map_err(Fault::Refused)?;
    head.submit(&job_id(dir, attempt), &cmd, cfg)?;
    Ok(Attached::Flying { attempt, lost })
}

fn candidate_command(cfg: &RunConfig, dir: &Path) -> Result<String, String> {
    let abs = |p: &Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    entrypoint(
        cfg,
        &format!(
            "candidate --run-dir {} --request {} --supervise",
            sh_quote(&abs(&cfg.run_dir)),
            sh_quote(&abs(&dir.join("request.json")))
        ),
    )
}

/// The result in `dir`, if its request is the one for `job` (not a stale one).
fn read_result(dir: &Path, job: &Job) -> Option<Reply> {
    let req = isolate::read_request(&dir.join("request.json")).ok()?;
    if req.program != job.program || req.out != job.out {
        return None;
    }
    let result = isolate::result_path(&dir.join("request.json"));
    result.exists().then(|| isolate::read_reply(dir))
}

/// A candidate's end: its merge removed if it failed, its job directory removed.
fn finish(r: Reply, job: &Job, dir: &Path) -> Reply {
    if r.is_err() {
        isolate::remove_merge(&job.out);
    }
    let _ = std::fs::remove_dir_all(dir);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executor_settings_parse() {
        assert_eq!(head_url("local").unwrap(), None);
        assert_eq!(
            head_url("ray:http://10.0.0.1:8265/").unwrap().as_deref(),
            Some("http://10.0.0.1:8265")
        );
        for bad in ["ray", "ray:10.0.0.1:8265", "slurm:x", ""] {
            assert!(head_url(bad).unwrap_err().contains("executor"), "{bad}");
        }
    }

    #[test]
    fn an_unreachable_head_is_a_clear_error() {
        // A port nothing listens on.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let cfg = RunConfig {
            http_connect_timeout_s: 2.0,
            ..RunConfig::default()
        };
        let e = check_head(&cfg, &url).unwrap_err();
        assert!(e.contains(&url) && e.contains("head"), "{e}");
    }
}
