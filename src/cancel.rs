//! Cooperative cancellation: one token, a stop flag (set on Ctrl-C, SIGTERM, SIGHUP)
//! and an optional deadline, that the interpreter (per op and per loop iteration),
//! kernel launches (between chunks of a few ms of work) and selections (per pass)
//! poll. It lives below `interp`, `codegen` and `exec` so that each can take it; the
//! runtime makes it and passes it down. A token that never fires changes no result.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Set when the process is asked to stop (the signal handlers in `cli::signals`).
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Why work stopped early.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stop {
    /// The stop flag was set (Ctrl-C or another signal).
    Interrupted,
    /// The deadline passed; the limit it was set from, in seconds.
    OverTime { limit_s: f64 },
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Interrupted => f.write_str("interrupted"),
            Stop::OverTime { limit_s } => {
                write!(f, "over the time limit of {} s", seconds(*limit_s))
            }
        }
    }
}

/// Seconds for a message: whole when whole, else to the tenth.
fn seconds(s: f64) -> String {
    let tenths = (s * 10.0).round() / 10.0;
    if tenths.fract() == 0.0 {
        format!("{tenths:.0}")
    } else {
        format!("{tenths:.1}")
    }
}

impl std::error::Error for Stop {}

impl From<Stop> for String {
    fn from(s: Stop) -> String {
        s.to_string()
    }
}

/// A stop flag and a deadline, cheap to copy and to poll.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cancel {
    flag: Option<&'static AtomicBool>,
    deadline: Option<(Instant, f64)>,
}

impl Cancel {
    /// A token that never fires.
    pub const NEVER: Cancel = Cancel {
        flag: None,
        deadline: None,
    };

    /// Fires once `flag` is set.
    pub fn on_flag(flag: &'static AtomicBool) -> Cancel {
        Cancel {
            flag: Some(flag),
            deadline: None,
        }
    }

    /// Fires on [`INTERRUPTED`] (what the signal handlers set).
    pub fn on_signal() -> Cancel {
        Cancel::on_flag(&INTERRUPTED)
    }

    /// Also fires at `at`; `limit_s` is the limit it came from, for the message.
    pub fn until(self, at: Instant, limit_s: f64) -> Cancel {
        Cancel {
            deadline: Some((at, limit_s)),
            ..self
        }
    }

    /// `Err` once the flag is set or the deadline has passed (and from then on).
    #[inline]
    pub fn check(&self) -> Result<(), Stop> {
        if self.flag.is_some_and(|f| f.load(Ordering::Relaxed)) {
            return Err(Stop::Interrupted);
        }
        match self.deadline {
            Some((at, limit_s)) if Instant::now() >= at => Err(Stop::OverTime { limit_s }),
            _ => Ok(()),
        }
    }

    /// Whether [`Cancel::check`] fails.
    pub fn fired(&self) -> bool {
        self.check().is_err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_on_the_flag_and_the_deadline() {
        static FLAG: AtomicBool = AtomicBool::new(false);
        let c = Cancel::on_flag(&FLAG);
        assert_eq!(c.check(), Ok(()));
        FLAG.store(true, Ordering::SeqCst);
        assert_eq!(c.check(), Err(Stop::Interrupted));
        let past = Cancel::NEVER.until(Instant::now(), 2.0);
        assert_eq!(past.check(), Err(Stop::OverTime { limit_s: 2.0 }));
        assert_eq!(
            past.check().unwrap_err().to_string(),
            "over the time limit of 2 s"
        );
        let later = Instant::now() + std::time::Duration::from_secs(3600);
        assert!(!Cancel::NEVER.until(later, 3600.0).fired());
        assert_eq!(
            Stop::OverTime { limit_s: 0.25 }.to_string(),
            "over the time limit of 0.3 s"
        );
    }
}
