//! Supervised child processes: each runs in its own process group with optional
//! resource limits (address space, CPU time) set before exec, its stdout and stderr
//! captured with a bound (the last bytes are kept: a flood cannot grow memory), and a
//! wall-clock deadline after which the whole group is killed. Used for the candidates
//! of `develop` and for external evaluators.

use std::collections::VecDeque;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Resource limits set in the child before it runs (none: inherited).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    /// RLIMIT_AS, bytes.
    pub address_space: Option<u64>,
    /// RLIMIT_CPU, seconds (SIGXCPU when reached).
    pub cpu_s: Option<u64>,
}

/// The last `cap` bytes a pipe delivered, read on a thread.
struct Tail {
    buf: Arc<Mutex<VecDeque<u8>>>,
    done: Receiver<()>,
}

impl Tail {
    fn start(mut pipe: impl Read + Send + 'static, cap: usize) -> Tail {
        let buf = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, done) = channel();
        let keep = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut b = keep.lock().unwrap_or_else(|e| e.into_inner());
                b.extend(&chunk[..n]);
                let over = b.len().saturating_sub(cap);
                b.drain(..over);
            }
            let _ = tx.send(());
        });
        Tail { buf, done }
    }

    /// What was kept, after giving the reader a moment to drain the pipe (a
    /// grandchild that escaped the group may hold it open: then what is there).
    fn take(self) -> Vec<u8> {
        let _ = self.done.recv_timeout(Duration::from_millis(500));
        let mut b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        b.drain(..).collect()
    }
}

/// A running child in its own process group.
pub struct Supervised {
    child: Child,
    started: Instant,
    deadline: Option<Instant>,
    stdout: Option<Tail>,
    stderr: Option<Tail>,
}

/// How a supervised child ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// Killed by the parent at its deadline.
    pub timed_out: bool,
    /// Killed by the parent because the caller stopped.
    pub stopped: bool,
    pub seconds: f64,
    /// The last bytes of its output (when captured).
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Starts `cmd` in a new process group under `limits`, capturing stdout (when
/// `capture_stdout`, else discarded) and stderr, each up to its last `cap` bytes, and to
/// be killed after `time_limit` (none: no limit).
pub fn spawn(
    cmd: &mut Command,
    limits: Limits,
    capture_stdout: bool,
    cap: usize,
    time_limit: Option<Duration>,
) -> std::io::Result<Supervised> {
    cmd.stdin(Stdio::null())
        .stdout(if capture_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: between fork and exec only async-signal-safe calls run here (prctl,
    // setrlimit), on values copied into the closure.
    unsafe {
        cmd.pre_exec(move || set_limits(limits));
    }
    let mut child = cmd.spawn()?;
    let started = Instant::now();
    let stdout = child.stdout.take().map(|p| Tail::start(p, cap));
    let stderr = child.stderr.take().map(|p| Tail::start(p, cap));
    Ok(Supervised {
        child,
        started,
        deadline: time_limit.and_then(|d| started.checked_add(d)),
        stdout,
        stderr,
    })
}

/// In the child before exec: dies with its parent (a driver killed with -9 takes its
/// candidates with it), then the limits.
fn set_limits(l: Limits) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only; async-signal-safe.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    let set = |what, v: u64| {
        let r = libc::rlimit {
            rlim_cur: v as libc::rlim_t,
            rlim_max: v as libc::rlim_t,
        };
        // SAFETY: setrlimit reads the struct it is given; async-signal-safe.
        if unsafe { libc::setrlimit(what, &r) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    if let Some(b) = l.address_space {
        set(libc::RLIMIT_AS, b)?;
    }
    if let Some(s) = l.cpu_s {
        // The soft limit sends SIGXCPU; the hard one, a second later, SIGKILL.
        let r = libc::rlimit {
            rlim_cur: s as libc::rlim_t,
            rlim_max: s.saturating_add(1) as libc::rlim_t,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_CPU, &r) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Supervised {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Kills the child's whole process group.
    fn kill_group(&mut self) {
        if let Ok(pgid) = i32::try_from(self.child.id()) {
            // SAFETY: kill has no memory effects; a negative pid names the group the
            // child leads (it was started with process_group(0)).
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
    }

    /// Whether it has ended (killing it first when past its deadline or when `stop`
    /// is set): then how.
    pub fn poll(&mut self, stop: Option<&AtomicBool>) -> std::io::Result<Option<Finished>> {
        let (mut timed_out, mut stopped) = (false, false);
        let status = match self.child.try_wait()? {
            Some(s) => s,
            None if self.deadline.is_some_and(|d| Instant::now() >= d) => {
                timed_out = true;
                self.kill_group();
                self.child.wait()?
            }
            None if stop.is_some_and(|s| s.load(Ordering::SeqCst)) => {
                stopped = true;
                self.kill_group();
                self.child.wait()?
            }
            None => return Ok(None),
        };
        // Whatever the leader left in its group (a shell's children) goes with it.
        self.kill_group();
        Ok(Some(Finished {
            status,
            timed_out,
            stopped,
            seconds: self.started.elapsed().as_secs_f64(),
            stdout: self.stdout.take().map(Tail::take).unwrap_or_default(),
            stderr: self.stderr.take().map(Tail::take).unwrap_or_default(),
        }))
    }

    /// Waits for it to end (see [`Supervised::poll`]).
    pub fn wait(mut self, stop: Option<&AtomicBool>) -> std::io::Result<Finished> {
        loop {
            if let Some(f) = self.poll(stop)? {
                return Ok(f);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill_group();
            let _ = self.child.wait();
        }
    }
}

/// A signal's name, with what it usually means for a child.
pub fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGKILL => "SIGKILL (out of memory?)".into(),
        libc::SIGABRT => "SIGABRT (abort)".into(),
        libc::SIGXCPU => "SIGXCPU (over the CPU time limit)".into(),
        libc::SIGSEGV => "SIGSEGV (crash)".into(),
        libc::SIGBUS => "SIGBUS (a mapped file changed or memory ran out)".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGILL => "SIGILL (crash)".into(),
        libc::SIGFPE => "SIGFPE (crash)".into(),
        s => format!("signal {s}"),
    }
}

impl Finished {
    /// "exited with 3", "killed by SIGKILL (out of memory?)", ... and the time.
    pub fn how(&self) -> String {
        match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exited with {c} after {:.1} s", self.seconds),
            (None, Some(s)) => format!("killed by {} after {:.1} s", signal_name(s), self.seconds),
            _ => format!("ended ({}) after {:.1} s", self.status, self.seconds),
        }
    }

    /// The last line of its stderr that says something (not part of a backtrace; at
    /// most 300 bytes), if any.
    pub fn last_stderr_line(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.stderr);
        let noise = |l: &str| {
            let t = l.trim();
            t.is_empty()
                || t.starts_with("note: ")
                || t.starts_with("stack backtrace:")
                || t.starts_with("at ")
                || t.split_once(": ")
                    .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
        };
        text.lines()
            .rev()
            .find(|l| !noise(l))
            .map(|l| cut(l.trim(), 300))
    }
}

/// The last `n` non-empty lines of `bytes` (lossy UTF-8), each cut at 300 bytes.
pub fn last_lines(bytes: &[u8], n: usize) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines: Vec<String> = text
        .lines()
        .rev()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .map(|l| cut(l.trim_end(), 300))
        .collect();
    lines.reverse();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// `s` as one word of a POSIX shell command line (single-quoted).
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `s` as one word of a command line for people to read: as it is when the shell would
/// read it back unchanged, else single-quoted.
pub fn sh_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c));
    if plain { s.to_string() } else { sh_quote(s) }
}

/// `s` cut to at most `max` bytes on a character boundary, with `...` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floods_are_bounded_and_hangs_are_killed_with_their_group() {
        let mut c = Command::new("sh");
        c.args(["-c", "yes flood | head -c 5000000; echo end >&2; sleep 600"]);
        let t0 = Instant::now();
        let f = spawn(
            &mut c,
            Limits::default(),
            true,
            4096,
            Some(Duration::from_secs(1)),
        )
        .expect("spawns")
        .wait(None)
        .expect("waits");
        assert!(f.timed_out);
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        assert_eq!(f.stdout.len(), 4096);
        assert_eq!(f.last_stderr_line().as_deref(), Some("end"));
        assert!(f.how().contains("SIGKILL"), "{}", f.how());
        let mut c = Command::new("sh");
        c.args([
            "-c",
            "echo 'memory allocation of 8 bytes failed' >&2; echo 'stack backtrace:' >&2; \
             echo '   0: f' >&2; echo '      at src/x.rs:1' >&2; echo 'note: more' >&2; exit 2",
        ]);
        let f = spawn(&mut c, Limits::default(), false, 4096, None)
            .expect("spawns")
            .wait(None)
            .expect("waits");
        assert_eq!(
            f.last_stderr_line().as_deref(),
            Some("memory allocation of 8 bytes failed")
        );
        assert_eq!(f.how().split(" after").next(), Some("exited with 2"));
    }

    #[test]
    fn limits_apply_in_the_child() {
        let mut c = Command::new("sh");
        c.args(["-c", "ulimit -v; ulimit -t"]);
        let l = Limits {
            address_space: Some(1 << 30),
            cpu_s: Some(7),
        };
        let f = spawn(&mut c, l, true, 4096, None)
            .expect("spawns")
            .wait(None)
            .expect("waits");
        assert_eq!(String::from_utf8_lossy(&f.stdout), "1048576\n7\n");
        assert_eq!(cut("aé", 2), "a...");
    }
}
