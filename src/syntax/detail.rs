//! pest's error detail (the tokens a parse expected where it stopped, which the syntax
//! errors list) is one process-wide flag, read when a parse starts. Collecting it about
//! doubles a parse's cost: a 64 KB program took 70-95 ms of the checker's 100 ms bound
//! with it, 28-35 ms without. So sources up to [`DETAIL_BYTES`] (every program a
//! generator writes) are parsed with it, larger ones without (their syntax errors name
//! fewer expected tokens), and parses of the two kinds never overlap: a message must
//! not depend on what another thread was parsing. Parses of one kind run concurrently.

use std::sync::{Condvar, Mutex};

/// The largest source parsed with error detail.
pub const DETAIL_BYTES: usize = 16 * 1024;

/// The flag's value and how many parses are running with it.
static MODE: Mutex<(bool, usize)> = Mutex::new((false, 0));
static CHANGED: Condvar = Condvar::new();

/// Runs `parse` with pest's error detail on for sources up to [`DETAIL_BYTES`] bytes,
/// off for larger ones, while no parse of the other kind runs.
pub fn parse_with_detail_for<T>(src_len: usize, parse: impl FnOnce() -> T) -> T {
    with_detail(src_len <= DETAIL_BYTES, parse)
}

/// Runs `parse` with pest's error detail `on`, while no parse with the other setting
/// runs.
pub fn with_detail<T>(on: bool, parse: impl FnOnce() -> T) -> T {
    {
        let mut mode = MODE.lock().unwrap_or_else(|p| p.into_inner());
        while mode.1 > 0 && mode.0 != on {
            mode = CHANGED.wait(mode).unwrap_or_else(|p| p.into_inner());
        }
        if mode.1 == 0 {
            pest::set_error_detail(on);
            mode.0 = on;
        }
        mode.1 += 1;
    }
    /// Ends this parse's hold on the flag however `parse` ends.
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            let mut mode = MODE.lock().unwrap_or_else(|p| p.into_inner());
            mode.1 -= 1;
            if mode.1 == 0 {
                CHANGED.notify_all();
            }
        }
    }
    let _done = Done;
    parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse::{MergeParser, Rule};
    use pest::Parser;

    /// Whether a parse started now collects error detail: a source cut inside a list,
    /// whose error then knows the tokens expected there.
    fn detail_now() -> bool {
        let src = "fn g(x: Tensor) -> Tensor { return x + sum_all([0.5, 1.5,";
        MergeParser::parse(Rule::program, src)
            .expect_err("cut short")
            .parse_attempts()
            .is_some()
    }

    /// Parses see the setting they asked for from start to end, while other threads
    /// parse with the other one all along.
    #[test]
    fn each_parse_gets_its_own_setting_whatever_other_threads_parse() {
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for i in 0..200 {
                        let on = (i + t) % 2 == 0;
                        let seen = with_detail(on, || {
                            let first = detail_now();
                            std::thread::sleep(std::time::Duration::from_micros(50));
                            (first, detail_now())
                        });
                        assert_eq!(seen, (on, on), "thread {t}, parse {i}");
                    }
                });
            }
        });
        assert!(parse_with_detail_for(DETAIL_BYTES, detail_now));
        assert!(!parse_with_detail_for(DETAIL_BYTES + 1, detail_now));
    }
}
