//! External evaluators: `--evaluator 'command:CMD {model}'` runs CMD through `sh -c`
//! with `{model}` replaced by the model directory (quoted) and `{device}` by this
//! process's `CUDA_VISIBLE_DEVICES` (quoted; empty when unset), e.g. lm-evaluation-harness
//! with vLLM on a GPU cluster, and reads the score from its output: the last line that
//! is a number (a fraction in [0, 1], or a percentage with `%`), else the last JSON
//! object holding `accuracy`, `acc` or `score`.

use super::EvalError;
use crate::runtime::child;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// What `--evaluator` names.
#[derive(Clone, Debug, PartialEq)]
pub enum Evaluator {
    /// A shell command template with `{model}`.
    Command(String),
}

impl Evaluator {
    pub fn parse(s: &str) -> Result<Evaluator, EvalError> {
        match s.split_once(':') {
            Some(("command", cmd)) if cmd.contains("{model}") => {
                Ok(Evaluator::Command(cmd.to_string()))
            }
            Some(("command", _)) => Err(crate::eval::EvalError::Setting(format!(
                "--evaluator `{s}`: the command needs `{{model}}` where the model directory goes"
            ))),
            _ => Err(crate::eval::EvalError::Setting(format!(
                "--evaluator `{s}`: use command:CMD with {{model}}, e.g. 'command:lm_eval --model_args pretrained={{model}} ...'"
            ))),
        }
    }

    /// Runs the evaluator on a model directory; the score as a fraction in [0, 1].
    pub fn score(&self, model: &Path) -> Result<f64, EvalError> {
        self.score_within(model, None)
    }

    /// [`Evaluator::score`], killing the evaluator (and everything it started) when
    /// `limit` runs out. Its stdout and stderr are kept up to their last
    /// [`OUTPUT_CAP`] bytes each, so a flood cannot grow memory.
    pub fn score_within(&self, model: &Path, limit: Option<Duration>) -> Result<f64, EvalError> {
        let Evaluator::Command(template) = self;
        let quoted = child::sh_quote(&model.display().to_string());
        // `{device}`: the GPU this process was given (`devices`, or Ray's placement).
        let device = std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default();
        let cmd = template
            .replace("{model}", &quoted)
            .replace("{device}", &child::sh_quote(&device));
        let mut c = Command::new("sh");
        c.arg("-c").arg(&cmd);
        let out = child::spawn(&mut c, child::Limits::default(), true, OUTPUT_CAP, limit)
            .and_then(|s| s.wait(None))
            .map_err(|e| EvalError::Evaluator(format!("cannot run the evaluator `{cmd}`: {e}")))?;
        let last = || child::last_lines(&out.stderr, 5).unwrap_or_else(|| "(no stderr)".into());
        if out.timed_out {
            let secs = limit.map_or(0.0, |d| d.as_secs_f64());
            return Err(crate::eval::EvalError::Evaluator(format!(
                "the evaluator `{cmd}` ran over the time limit of {secs} s: killed; its last lines:\n{}",
                last()
            )));
        }
        if !out.status.success() {
            return Err(crate::eval::EvalError::Evaluator(format!(
                "the evaluator `{cmd}` failed ({}); its last lines:\n{}",
                out.how(),
                last()
            )));
        }
        parse_score(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| {
            EvalError::Evaluator(format!(
                "the evaluator `{cmd}` printed no score: end its output with a line holding the \
                 accuracy (0.62 or 62%), or a JSON object with \"accuracy\""
            ))
        })
    }
}

/// The most of an evaluator's stdout and of its stderr kept (the last bytes).
pub const OUTPUT_CAP: usize = 64 << 10;

/// The score in an evaluator's output (see the module docs).
pub fn parse_score(out: &str) -> Option<f64> {
    let number = |l: &str| -> Option<f64> {
        let t = l.trim();
        let (t, pct) = match t.strip_suffix('%') {
            Some(p) => (p.trim(), true),
            None => (t, false),
        };
        let x: f64 = t.parse().ok()?;
        let x = if pct { x / 100.0 } else { x };
        (x.is_finite() && (0.0..=1.0).contains(&x)).then_some(x)
    };
    if let Some(last) = out.lines().rev().find(|l| !l.trim().is_empty())
        && let Some(x) = number(last)
    {
        return Some(x);
    }
    for line in out.lines().rev() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
            continue;
        };
        for key in ["accuracy", "acc", "score"] {
            if let Some(x) = v.get(key).and_then(serde_json::Value::as_f64) {
                let x = if x > 1.0 { x / 100.0 } else { x };
                if (0.0..=1.0).contains(&x) {
                    return Some(x);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_read_from_the_last_line_or_json() {
        assert_eq!(parse_score("loading...\n0.625\n"), Some(0.625));
        assert_eq!(parse_score("done\n62.5%\n\n"), Some(0.625));
        assert_eq!(
            parse_score("{\"accuracy\": 0.5, \"n\": 100}\nbye"),
            Some(0.5)
        );
        let pct = parse_score("{\"acc\": 71.9}").expect("a percentage in JSON");
        assert!((pct - 0.719).abs() < 1e-12, "{pct}");
        assert_eq!(parse_score("nothing here"), None);
        assert_eq!(parse_score("7"), None, "not a fraction");
    }

    #[test]
    fn commands_run_with_the_model_quoted() {
        let e = Evaluator::parse("command:test -d {model} && echo 0.75").expect("parses");
        assert_eq!(e.score(Path::new("/tmp")).expect("scores"), 0.75);
        let e = Evaluator::parse("command:echo {model} >/dev/null; exit 3").expect("parses");
        assert!(
            e.score(Path::new("/tmp"))
                .unwrap_err()
                .to_string()
                .contains("failed")
        );
        let e = Evaluator::parse("command:echo {model}").expect("parses");
        assert!(
            e.score(Path::new("/tmp"))
                .unwrap_err()
                .to_string()
                .contains("printed no score")
        );
        assert!(
            Evaluator::parse("command:echo 1")
                .unwrap_err()
                .to_string()
                .contains("{model}")
        );
        assert!(Evaluator::parse("lm_eval").is_err());
    }

    #[test]
    fn evaluators_that_hang_or_flood_end_in_bounded_time_and_memory() {
        let t0 = std::time::Instant::now();
        let e = Evaluator::parse("command:echo {model} >/dev/null; echo working >&2; sleep 600")
            .expect("parses");
        let err = e
            .score_within(Path::new("/tmp"), Some(Duration::from_millis(500)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("over the time limit of 0.5 s") && err.contains("working"),
            "{err}"
        );
        assert!(t0.elapsed() < Duration::from_secs(5));
        // 200 MB on stdout and stderr, then a score: only the tails are kept.
        let e = Evaluator::parse(
            "command:test -d {model} && head -c 200000000 /dev/zero | tr '\\0' x; \
             head -c 200000000 /dev/zero >&2; echo; echo 0.5",
        )
        .expect("parses");
        assert_eq!(
            e.score_within(Path::new("/tmp"), None).expect("scores"),
            0.5
        );
        let e =
            Evaluator::parse("command:echo {model}; echo bad input >&2; exit 3").expect("parses");
        let err = e.score(Path::new("/tmp")).unwrap_err().to_string();
        assert!(
            err.contains("exited with 3") && err.contains("bad input"),
            "{err}"
        );
    }
}
