//! The final stage's scores, memoised by key: each is recorded in the run's record
//! (`Event::Score`, with which problems were answered) as it is made, so a resumed run
//! finds it and scores nothing twice.

use super::config::RunConfig;
use super::driver::{Event, merge_and_score, parallel_map, resolve_jobs, score_model};
use super::record::RunLog;
use super::report::Acc;
use super::tune::Params;
use crate::eval::gsm8k::Problem;
use crate::eval::stats::hits_from_hex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct Scorer<'a> {
    pub cfg: &'a RunConfig,
    log: &'a mut RunLog,
    memo: HashMap<String, Acc>,
    /// Which problems each score in `memo` answered (where known), in problem order.
    hits: HashMap<String, Vec<bool>>,
    /// Programs whose merge failed in [`Scorer::prefetch`], with the reason.
    failed: HashMap<String, String>,
    scratch: PathBuf,
    pub say: &'a mut dyn FnMut(&str),
}

/// One scoring: a model directory, or a program merged on a family.
pub struct Job<'p> {
    pub key: String,
    pub what: JobKind,
    pub problems: &'p [Problem],
}

pub enum JobKind {
    Model(PathBuf),
    Program {
        src: String,
        params: Params,
        base: PathBuf,
        models: Vec<PathBuf>,
    },
}

impl<'a> Scorer<'a> {
    /// A scorer that knows the scores `events` recorded.
    pub fn new(
        cfg: &'a RunConfig,
        log: &'a mut RunLog,
        events: &[Event],
        say: &'a mut dyn FnMut(&str),
    ) -> Scorer<'a> {
        let mut s = Scorer {
            cfg,
            log,
            memo: HashMap::new(),
            hits: HashMap::new(),
            failed: HashMap::new(),
            scratch: cfg.run_dir.join("scratch"),
            say,
        };
        for e in events {
            if let Event::Score {
                key,
                accuracy,
                correct,
                n,
                hits,
            } = e
            {
                s.remember(key, (*accuracy, *correct, hits.clone()), *n);
            }
        }
        s
    }

    fn remember(&mut self, key: &str, (accuracy, correct, hits): Score, n: usize) -> Acc {
        let a = Acc {
            accuracy,
            correct,
            n,
        };
        self.memo.insert(key.to_string(), a);
        match hits.and_then(|h| hits_from_hex(&h, n).ok()) {
            Some(h) => self.hits.insert(key.to_string(), h),
            None => self.hits.remove(key),
        };
        a
    }

    fn record(&mut self, key: &str, score: Score, n: usize) -> Result<Acc, String> {
        self.log.append(&Event::Score {
            key: key.to_string(),
            accuracy: score.0,
            correct: score.1,
            n,
            hits: score.2.clone(),
        })?;
        Ok(self.remember(key, score, n))
    }

    /// The score recorded under `key`.
    pub fn get(&self, key: &str) -> Option<Acc> {
        self.memo.get(key).copied()
    }

    /// Why the merge recorded under `key` failed in this process (None: it did not, or
    /// it has not run).
    pub fn failure(&self, key: &str) -> Option<&str> {
        self.failed.get(key).map(String::as_str)
    }

    /// The score under `key` as the record holds it.
    pub fn event(&self, key: &str) -> Option<Event> {
        let a = self.get(key)?;
        Some(Event::Score {
            key: key.to_string(),
            accuracy: a.accuracy,
            correct: a.correct,
            n: a.n,
            hits: self.hits(key).map(crate::eval::stats::hits_hex),
        })
    }

    /// Which problems the score under `key` answered (None: not scored, or unknown).
    pub fn hits(&self, key: &str) -> Option<&[bool]> {
        self.hits.get(key).map(Vec::as_slice)
    }

    /// Scores the jobs not scored yet, `jobs` at a time, and records them in order; the
    /// calls of [`Scorer::model`] and [`Scorer::get`] that follow find them. A program
    /// whose merge fails is remembered as failed (not recorded: a resumed run tries it
    /// again); a model that cannot be scored stops the stage.
    pub fn prefetch(&mut self, jobs: Vec<Job>) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        let todo: Vec<(usize, Job)> = jobs
            .into_iter()
            .filter(|j| {
                !self.memo.contains_key(&j.key)
                    && !self.failed.contains_key(&j.key)
                    && seen.insert(j.key.clone())
            })
            .enumerate()
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        (self.say)(&format!("scoring {} models and merges", todo.len()));
        // In groups of twice the workers, each recorded before the next starts: a killed
        // run loses at most one group.
        let workers = resolve_jobs(self.cfg);
        for group in todo.chunks(2 * workers) {
            self.score_group(group, workers)?;
        }
        Ok(())
    }

    fn score_group(&mut self, todo: &[(usize, Job)], workers: usize) -> Result<(), String> {
        let (cfg, scratch) = (self.cfg, &self.scratch);
        let results = parallel_map(todo, workers, |(i, j)| match &j.what {
            JobKind::Model(dir) => score_model(cfg, dir, j.problems),
            JobKind::Program {
                src,
                params,
                base,
                models,
            } => {
                let out = scratch.join(format!("final-{i}"));
                let r = merge_and_score(cfg, src, params.clone(), base, models, j.problems, &out);
                let _ = std::fs::remove_dir_all(&out);
                r.map(|(acc, correct, hits, ..)| (acc, correct, hits))
            }
        });
        if crate::runtime::CANCELLED.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        for ((_, j), r) in todo.iter().zip(results) {
            match (r, &j.what) {
                (Ok(score), _) => {
                    self.record(&j.key, score, j.problems.len())?;
                }
                (Err(e), JobKind::Program { .. }) => {
                    (self.say)(&failure_line(&self.failed, &j.key, &e));
                    self.failed.insert(j.key.clone(), e);
                }
                (Err(e), JobKind::Model(dir)) => {
                    return Err(format!("{}: {e}", dir.display()));
                }
            }
        }
        Ok(())
    }

    /// A model directory's score (memoised under `key`).
    pub fn model(&mut self, key: &str, dir: &Path, problems: &[Problem]) -> Result<Acc, String> {
        if let Some(a) = self.get(key) {
            return Ok(a);
        }
        (self.say)(&format!("scoring {key}"));
        let score = score_model(self.cfg, dir, problems)?;
        self.record(key, score, problems.len())
    }
}

/// (accuracy, correct, hits as hex).
type Score = (f64, usize, Option<String>);

/// What is said of a program `key` whose merge failed with `e`, given the failures so far:
/// the error, or, when an earlier one failed the same way (a method that fails at every
/// point of its search), that one's name instead of the error and its hints again.
fn failure_line(failed: &HashMap<String, String>, key: &str, e: &str) -> String {
    let same = failed.iter().filter(|(_, v)| *v == e).map(|(k, _)| k);
    match same.min() {
        Some(first) => format!("{key}: failed as {first}"),
        None => format!("{key}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::failure_line;
    use std::collections::HashMap;

    #[test]
    fn a_failure_said_before_is_named_not_repeated() {
        let e = "merge: 3 non-finite values\nhint: guard with max(x, 1e-8)";
        let mut failed = HashMap::new();
        assert_eq!(
            failure_line(&failed, "dev m point 0", e),
            format!("dev m point 0: {e}")
        );
        failed.insert("dev m point 0".to_string(), e.to_string());
        failed.insert("dev m point 1".to_string(), e.to_string());
        assert_eq!(
            failure_line(&failed, "dev m point 2", e),
            "dev m point 2: failed as dev m point 0"
        );
        assert_eq!(
            failure_line(&failed, "dev n point 0", "other"),
            "dev n point 0: other"
        );
    }
}
