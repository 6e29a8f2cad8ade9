//! External evaluators: `--evaluator 'command:CMD {model}'` runs CMD through `sh -c`
//! with `{model}` replaced by the model directory (quoted), e.g. lm-evaluation-harness
//! with vLLM on a GPU cluster, and reads the score from its output: the last line that
//! is a number (a fraction in [0, 1], or a percentage with `%`), else the last JSON
//! object holding `accuracy`, `acc` or `score`.

use std::path::Path;
use std::process::Command;

/// What `--evaluator` names.
#[derive(Clone, Debug, PartialEq)]
pub enum Evaluator {
    /// A shell command template with `{model}`.
    Command(String),
}

impl Evaluator {
    pub fn parse(s: &str) -> Result<Evaluator, String> {
        match s.split_once(':') {
            Some(("command", cmd)) if cmd.contains("{model}") => {
                Ok(Evaluator::Command(cmd.to_string()))
            }
            Some(("command", _)) => Err(format!(
                "--evaluator `{s}`: the command needs `{{model}}` where the model directory goes"
            )),
            _ => Err(format!(
                "--evaluator `{s}`: use command:CMD with {{model}}, e.g. 'command:lm_eval --model_args pretrained={{model}} ...'"
            )),
        }
    }

    /// Runs the evaluator on a model directory; the score as a fraction in [0, 1].
    pub fn score(&self, model: &Path) -> Result<f64, String> {
        let Evaluator::Command(template) = self;
        let quoted = format!("'{}'", model.display().to_string().replace('\'', r"'\''"));
        let cmd = template.replace("{model}", &quoted);
        let out = Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .output()
            .map_err(|e| format!("cannot run the evaluator `{cmd}`: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(5).collect();
            return Err(format!(
                "the evaluator `{cmd}` failed ({}); its last lines:\n{}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        parse_score(&stdout).ok_or_else(|| {
            format!(
                "the evaluator `{cmd}` printed no score: end its output with a line holding the \
                 accuracy (0.62 or 62%), or a JSON object with \"accuracy\""
            )
        })
    }
}

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
        assert!(e.score(Path::new("/tmp")).unwrap_err().contains("failed"));
        let e = Evaluator::parse("command:echo {model}").expect("parses");
        assert!(
            e.score(Path::new("/tmp"))
                .unwrap_err()
                .contains("printed no score")
        );
        assert!(
            Evaluator::parse("command:echo 1")
                .unwrap_err()
                .contains("{model}")
        );
        assert!(Evaluator::parse("lm_eval").is_err());
    }
}
