//! GSM8K-format problems: JSONL records `{"question": ..., "answer": "... #### N"}`.
//! Answers are compared as numbers after normalising (`$`, thousands commas, units and
//! a trailing period dropped), so "$1,200." and "1200 dollars" both match 1200.

use super::EvalError;
use crate::semantics::rng::SplitMix64;
use regex::Regex;
use std::sync::LazyLock;

/// One problem: the question, the reference solution and its final number.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub question: String,
    /// The worked solution, ending in `#### N`.
    pub solution: String,
    /// The final answer, normalised (see [`normalize_number`]).
    pub target: String,
}

static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\$?\.\d+").expect("number regex"));

/// A number as written (`-$1,234.50`, `.5`, `7.`) in canonical form: no sign for zero,
/// no thousands separators, no trailing zeros after the point (`1234.5`), integers
/// without a point. None if it is not a number.
pub fn normalize_number(s: &str) -> Option<String> {
    let t: String = s
        .trim()
        .trim_end_matches('.')
        .chars()
        .filter(|c| *c != ',' && *c != '$')
        .collect();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.as_str()),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let body = if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    };
    Some(if neg && body != "0" {
        format!("-{body}")
    } else {
        body
    })
}

/// The answer a completion gives: the number after the first `####`, else the last
/// number in the text; normalised.
pub fn extract_answer(text: &str) -> Option<String> {
    if let Some((_, after)) = text.split_once("####")
        && let Some(m) = NUMBER.find(after)
    {
        return normalize_number(m.as_str());
    }
    NUMBER
        .find_iter(text)
        .filter_map(|m| normalize_number(m.as_str()))
        .last()
}

/// Whether a completion's answer equals the target (both normalised).
pub fn is_correct(completion: &str, target: &str) -> bool {
    extract_answer(completion).is_some_and(|a| Some(a) == normalize_number(target))
}

/// Parses GSM8K-format JSONL; errors name the line. `label` names the source.
pub fn parse_jsonl(text: &str, label: &str) -> Result<Vec<Problem>, EvalError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{label}:{}", i + 1);
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| EvalError::Data(format!("{}: not JSON: {e}", at())))?;
        let field = |k: &str| {
            v.get(k).and_then(|x| x.as_str()).map(str::to_string).ok_or_else(|| {
                EvalError::Data(format!("{}: needs a string field `{k}` (GSM8K format: question, answer \"... #### N\")", at()))
            })
        };
        let (question, solution) = (field("question")?, field("answer")?);
        let target = solution
            .rsplit_once("####")
            .and_then(|(_, n)| normalize_number(n))
            .ok_or_else(|| {
                EvalError::Data(format!(
                    "{}: the answer does not end in `#### <number>`",
                    at()
                ))
            })?;
        out.push(Problem {
            question,
            solution,
            target,
        });
    }
    Ok(out)
}

/// Reads a GSM8K-format JSONL file.
pub fn load_jsonl(path: &std::path::Path) -> Result<Vec<Problem>, EvalError> {
    let text = crate::files::read_text(path, "a data set", crate::files::limit::DATASET)?;
    parse_jsonl(&text, &path.display().to_string())
}

/// Which problems to score: the paper's split is the first `n` of a seeded shuffle for
/// development (`dev:N`) and the rest for testing (`test`, or `test:N` after a dev of N).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    All,
    Dev(usize),
    Test(usize),
}

impl Split {
    /// `all`, `dev:N`, `test` (after the default dev of 100) or `test:N`.
    pub fn parse(s: &str) -> Result<Split, EvalError> {
        let num = |n: &str| {
            n.parse::<usize>()
                .map_err(|_| EvalError::Setting(format!("--split `{s}`: `{n}` is not a count")))
        };
        match s.split_once(':') {
            None if s == "all" => Ok(Split::All),
            None if s == "test" => Ok(Split::Test(100)),
            None if s == "dev" => Ok(Split::Dev(100)),
            Some(("dev", n)) => Ok(Split::Dev(num(n)?)),
            Some(("test", n)) => Ok(Split::Test(num(n)?)),
            _ => Err(EvalError::Setting(format!(
                "--split `{s}`: use all, dev:N or test[:N]"
            ))),
        }
    }

    /// Indices of the problems in this split, for a data set of `n` and a shuffle seed.
    pub fn indices(self, n: usize, seed: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = SplitMix64::new(seed);
        for i in (1..n).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        match self {
            Split::All => (0..n).collect(),
            Split::Dev(d) => order.into_iter().take(d).collect(),
            Split::Test(d) => order.into_iter().skip(d).collect(),
        }
    }
}

impl std::fmt::Display for Split {
    /// The canonical text [`Split::parse`] reads back: `all`, `dev:N` or `test:N`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Split::All => write!(f, "all"),
            Split::Dev(n) => write!(f, "dev:{n}"),
            Split::Test(n) => write!(f, "test:{n}"),
        }
    }
}

/// A k-shot prompt: worked examples, then the question.
pub fn few_shot_prompt(shots: &[Problem], q: &Problem) -> String {
    let mut p = String::new();
    for s in shots {
        p.push_str(&format!(
            "Question: {}\nAnswer: {}\n\n",
            s.question, s.solution
        ));
    }
    p.push_str(&format!("Question: {}\nAnswer:", q.question));
    p
}

/// Accuracy with its 95% Wilson score interval, as fractions.
pub fn accuracy(correct: usize, n: usize) -> (f64, f64, f64) {
    if n == 0 {
        return (0.0, 0.0, 1.0);
    }
    let (k, n) = (correct as f64, n as f64);
    let p = k / n;
    let z = 1.959_963_984_540_054f64;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    // At 0 (or all) correct the bound is exactly 0 (or 1); rounding would leave 1e-17.
    let lo = if correct == 0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let hi = if k == n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    (p, lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_normalise() {
        for (s, want) in [
            ("1,234", Some("1234")),
            ("$1,234.50", Some("1234.5")),
            ("-3", Some("-3")),
            ("-0.0", Some("0")),
            ("007", Some("7")),
            ("7.", Some("7")),
            (".5", Some("0.5")),
            ("12.000", Some("12")),
            ("abc", None),
            ("", None),
            ("1.2.3", None),
        ] {
            assert_eq!(normalize_number(s).as_deref(), want, "{s}");
        }
    }

    #[test]
    fn answers_are_extracted_like_gsm8k() {
        assert_eq!(extract_answer("so 3 + 4 = 7\n#### 7").as_deref(), Some("7"));
        assert_eq!(
            extract_answer("#### $1,200. The end 99").as_deref(),
            Some("1200")
        );
        assert_eq!(
            extract_answer("She pays 5 dollars, then 12 dollars.").as_deref(),
            Some("12")
        );
        assert_eq!(extract_answer("The answer is 50%.").as_deref(), Some("50"));
        assert_eq!(extract_answer("no numbers here"), None);
        assert!(is_correct("It costs $1,200.", "1200"));
        assert!(is_correct("#### 18\n\nQuestion: 25", "18"));
        assert!(!is_correct("the answer is 17", "18"));
        assert!(is_correct("-4 degrees", "-4"));
    }

    #[test]
    fn jsonl_parses_and_errors_name_the_line() {
        let text = "{\"question\": \"2+2?\", \"answer\": \"2+2=4\\n#### 4\"}\n\n\
                    {\"question\": \"Big?\", \"answer\": \"#### 1,000\"}\n";
        let ps = parse_jsonl(text, "d.jsonl").expect("parses");
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[1].target, "1000");
        let e = parse_jsonl("{\"question\": \"x\"}", "d.jsonl")
            .unwrap_err()
            .to_string();
        assert!(e.contains("d.jsonl:1") && e.contains("`answer`"), "{e}");
        let e = parse_jsonl("{\"question\": \"x\", \"answer\": \"no mark\"}", "d.jsonl")
            .unwrap_err()
            .to_string();
        assert!(e.contains("#### <number>"), "{e}");
        let e = parse_jsonl("not json", "d.jsonl").unwrap_err().to_string();
        assert!(e.contains("not JSON"), "{e}");
    }

    #[test]
    fn splits_are_seeded_disjoint_and_cover_everything() {
        let dev = Split::parse("dev:100").expect("dev").indices(1000, 7);
        let test = Split::parse("test").expect("test").indices(1000, 7);
        assert_eq!((dev.len(), test.len()), (100, 900));
        let mut all: Vec<usize> = dev.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(dev, Split::Dev(100).indices(1000, 7), "deterministic");
        assert_ne!(dev, Split::Dev(100).indices(1000, 8), "seeded");
        assert!(Split::parse("train").is_err());
        for s in [Split::All, Split::Dev(7), Split::Test(100)] {
            assert_eq!(Split::parse(&s.to_string()).ok(), Some(s));
        }
        assert!(Split::parse("dev:x").is_err());
    }

    #[test]
    fn prompts_and_intervals() {
        let p = |q: &str, a: &str| Problem {
            question: q.into(),
            solution: a.into(),
            target: "1".into(),
        };
        let prompt = few_shot_prompt(&[p("1+0?", "#### 1")], &p("2-1?", ""));
        assert_eq!(
            prompt,
            "Question: 1+0?\nAnswer: #### 1\n\nQuestion: 2-1?\nAnswer:"
        );
        let (acc, lo, hi) = accuracy(50, 100);
        assert!((acc - 0.5).abs() < 1e-12 && lo < 0.41 && lo > 0.40 && hi > 0.59 && hi < 0.60);
        // 1,000 problems at 50%: about ±3.1 points, the size the testbed needs.
        let (_, lo, hi) = accuracy(500, 1000);
        assert!(hi - lo < 0.065, "{lo} {hi}");
    }
}
