//! Scoring a model directory on GSM8K-format problems in process: zero-shot plain
//! prompts (`Question: ...\nAnswer:`), batched greedy decoding, the number after `####`.

use crate::eval::gsm8k::{self, Problem};
use crate::model::{GenOptions, LoadedModel, TextModel};
use std::path::Path;

/// One model's result on a set of problems.
#[derive(Clone, Debug)]
pub struct Score {
    pub correct: usize,
    pub total: usize,
    /// Per problem: whether it was right.
    pub right: Vec<bool>,
    pub completions: Vec<String>,
    pub seconds: f64,
}

impl Score {
    /// Accuracy and its 95% Wilson interval, as fractions.
    pub fn accuracy(&self) -> (f64, f64, f64) {
        gsm8k::accuracy(self.correct, self.total)
    }
}

/// Generation settings for the zoo's problems: answers are a few short lines.
pub fn gen_options() -> GenOptions {
    GenOptions {
        max_new_tokens: 96,
        stop: vec!["\nQuestion:".to_string()],
        batch_size: 128,
    }
}

/// Scores the model at `dir` on `problems` (load time included in `seconds`).
pub fn score_dir(dir: &Path, problems: &[Problem]) -> Result<Score, String> {
    super::tune_allocator();
    let t0 = std::time::Instant::now();
    let mut m = LoadedModel::load(dir)?;
    let prompts: Vec<String> = problems
        .iter()
        .map(|p| super::train::prompt(&p.question))
        .collect();
    let completions = m.generate(&prompts, &gen_options(), &mut |_| {})?;
    let right: Vec<bool> = completions
        .iter()
        .zip(problems)
        .map(|(c, p)| gsm8k::is_correct(c, &p.target))
        .collect();
    Ok(Score {
        correct: right.iter().filter(|r| **r).count(),
        total: problems.len(),
        right,
        completions,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Research probe: each model's accuracy on `n` problems of every kind the family uses
/// (all facts), and on the mixed kinds split by whether the base knew every fact.
pub fn probe(
    spec: &super::FamilySpec,
    models: &[std::path::PathBuf],
    n: usize,
) -> Result<String, String> {
    use super::tasks::{self, Facts};
    let w = tasks::world(spec.family, spec.seed, spec.base_known);
    let mut kinds: Vec<tasks::Kind> = w.expert_kinds.iter().flatten().copied().collect();
    kinds.extend(&w.mixed_kinds);
    let mut rng = crate::semantics::rng::SplitMix64::new(0x9B0BE);
    let mut sets: Vec<(String, Vec<Problem>)> = Vec::new();
    let to_eval = |ps: Vec<tasks::Problem>| -> Vec<Problem> {
        ps.iter()
            .map(|p| Problem {
                question: p.question.clone(),
                solution: p.solution.clone(),
                target: p.answer.to_string(),
            })
            .collect()
    };
    for &k in &kinds {
        let ps: Vec<_> = (0..n).map(|_| w.problem(&mut rng, k, Facts::All)).collect();
        sets.push((format!("{k:?}"), to_eval(ps)));
    }
    let mixed: Vec<_> = (0..4 * n)
        .map(|_| w.problem_of(&mut rng, &w.mixed_kinds, Facts::All))
        .collect();
    let (known, unknown): (Vec<_>, Vec<_>) = mixed
        .into_iter()
        .partition(|p| p.facts.iter().all(|&f| w.allows(f, Facts::Known(None))));
    sets.push(("mixed-known".into(), to_eval(known)));
    sets.push(("mixed-new".into(), to_eval(unknown)));
    let mut out = format!("{:<28}", "model");
    for (name, ps) in &sets {
        out += &format!(" {:>14}", format!("{name}({})", ps.len()));
    }
    out += "\n";
    for m in models {
        out += &format!("{:<28}", m.display().to_string());
        for (_, ps) in &sets {
            let s = score_dir(m, ps)?;
            out += &format!(
                " {:>14.1}",
                100.0 * s.correct as f64 / s.total.max(1) as f64
            );
        }
        out += "\n";
    }
    Ok(out)
}
