//! Ctrl-C (SIGINT), SIGTERM and SIGHUP, for the commands that write output
//! directories. The first sets the stop flag ([`crate::cancel::INTERRUPTED`]): the
//! work in progress polls it every few ms, returns "interrupted", and the temporary
//! output is removed as the error unwinds. A second one does not wait: it removes the
//! temporaries being written and exits. Either way the exit code is 128 + the signal
//! (130, 143, 129), as shells report a process killed by it.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::sync::Once;
use std::sync::atomic::{AtomicI32, Ordering};

/// The first signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
static INSTALL: Once = Once::new();

/// A signal's name, for messages.
pub fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "Ctrl-C (SIGINT)",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Handles the three signals from now on (once per process). `note`, if any, is
/// printed on the first (what happens next); `what` names the output in the message
/// of a second, e.g. "nothing was written to `out`".
pub fn install(note: Option<&'static str>, what: String) {
    INSTALL.call_once(|| {
        // Over a file size limit (`ulimit -f`) a write fails with EFBIG, reported as any
        // failed write is, instead of SIGXFSZ killing the process mid-write.
        // SAFETY: setting a signal's disposition to "ignore", before any handler.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("warning: cannot handle Ctrl-C and SIGTERM: {e}");
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    on_signal(sig, note, &what);
                }
            });
        if let Err(e) = spawned {
            eprintln!("warning: cannot handle Ctrl-C and SIGTERM: {e}");
        }
    });
}

fn on_signal(sig: i32, note: Option<&str>, what: &str) {
    crate::cancel::INTERRUPTED.store(true, Ordering::SeqCst);
    let first = RECEIVED
        .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    if first {
        if let Some(n) = note {
            eprintln!("\n{}: {n}", name(sig));
        }
        return;
    }
    // A second signal: leave now, but leave nothing behind.
    crate::runtime::remove_temporaries();
    eprintln!("error: interrupted by {}; {what}", name(sig));
    std::process::exit(128 + sig);
}

/// The first signal received, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The exit code for an interrupted command: 128 + the first signal (130 by default).
pub fn exit_code() -> i32 {
    128 + received().unwrap_or(SIGINT)
}

/// "interrupted by SIGTERM" (or by Ctrl-C), for the final message.
pub fn interrupted_by() -> String {
    format!("interrupted by {}", name(received().unwrap_or(SIGINT)))
}
