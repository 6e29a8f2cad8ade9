//! The loop's iterations: sample programs, assess them (with a repair round for
//! prompted generators), merge and score the new ones on dev `jobs` at a time in
//! isolated candidate processes, record every outcome in index order, learn from the
//! preferences, repeat. What an earlier attempt recorded is replayed first, so a
//! resumed run loses nothing and scores nothing twice.

use super::archive::Sampled;
use super::candidate::{Assessed, Stage, assess};
use super::config::RunConfig;
use super::driver::{At, Ended, Event, Outcome, ProgramRecord, Setup, repair_prompt};
use super::generator::{Generator, LearnReport};
use super::preferences::preference_pairs;
use super::record::RunLog;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

fn iteration_seed(seed: u64, t: usize) -> u64 {
    crate::semantics::mix64(seed ^ (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// What earlier attempts of a run recorded.
struct Replay {
    /// Dev scores by canonical hash (None: failed).
    known: HashMap<String, Option<f64>>,
    /// (iteration, index) of the programs recorded.
    done: HashSet<(usize, usize)>,
    finished_iters: HashSet<usize>,
    /// Programs the run stopped on twice: failed, and never run again.
    crashed: HashMap<(usize, usize), String>,
}

fn replay(events: &[Event], local: bool) -> Replay {
    let mut known: HashMap<String, Option<f64>> = HashMap::new();
    let mut done: HashSet<(usize, usize)> = Default::default();
    let mut finished_iters = HashSet::new();
    // The run stopped twice while they ran: failed, and never run again. (A candidate
    // on a cluster cannot take the driver down with it.)
    let crashed = if local {
        super::isolate::unfinished(events)
    } else {
        HashMap::new()
    };
    for c in crashed.values() {
        known.insert(c.clone(), None);
    }
    for e in events.iter() {
        match e {
            Event::Program(r) => {
                done.insert((r.iteration, r.index));
                if let Some(c) = &r.assessed.canonical {
                    match &r.outcome {
                        Outcome::Scored { dev, .. } => {
                            known.insert(c.clone(), Some(*dev));
                        }
                        Outcome::Failed { .. } => {
                            known.insert(c.clone(), None);
                        }
                        _ => {}
                    }
                }
            }
            Event::IterationDone { iteration, .. } => {
                finished_iters.insert(*iteration);
            }
            _ => {}
        }
    }
    Replay {
        known,
        done,
        finished_iters,
        crashed,
    }
}

/// One reply of an iteration, assessed.
struct Pending {
    index: usize,
    parents: Vec<At>,
    reply: String,
    assessed: Assessed,
    repaired: bool,
}

/// The loop's state across iterations.
struct Loop<'a> {
    setup: &'a Setup,
    scratch: PathBuf,
    jobs: usize,
    replay: Replay,
    /// Checkpoints of the best scores so far (see `keep_best`).
    best: Vec<(f64, PathBuf)>,
    /// Set by Ctrl-C or a signal: the run stops at the next safe point.
    stop: &'a AtomicBool,
}

/// Runs (or resumes) the iterations. `log` holds what earlier attempts recorded.
pub fn run_iterations(
    setup: &Setup,
    generator: &mut dyn Generator,
    log: &mut RunLog,
    events: &mut Vec<Event>,
    stop: &AtomicBool,
    say: &mut dyn FnMut(&str),
) -> Result<Ended, String> {
    let cfg = &setup.cfg;
    let scratch = cfg.run_dir.join("scratch");
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let mut lp = Loop {
        setup,
        scratch,
        jobs: super::driver::candidates_at_once(cfg),
        replay: replay(events, cfg.executor == "local"),
        best: vec![],
        stop,
    };
    for t in 1..=cfg.iterations {
        if lp.replay.finished_iters.contains(&t) {
            continue;
        }
        let mut left = budget_left(cfg, events);
        if left == 0 {
            say(&format!(
                "{} programs scored (scored_budget): the run ends",
                cfg.scored_budget
            ));
            break;
        }
        let t0 = Instant::now();
        let temp = cfg.temperature_at(t);
        let seed = iteration_seed(cfg.seed, t);
        say(&format!(
            "iteration {t}/{}: sampling {} programs at temperature {temp:.3}",
            cfg.iterations, cfg.programs
        ));
        let replies =
            super::archive::sample(setup, generator, events, t, cfg.programs, temp, seed)?;
        let Some(pending) = lp.assess_replies(generator, &replies, t, temp, seed)? else {
            return Ok(Ended::Interrupted);
        };
        if lp.score_and_record(&pending, t, &generator.id(), &mut left, log, events)?
            == Ended::Interrupted
        {
            return Ok(Ended::Interrupted);
        }
        learn(setup, generator, t, left, log, events, say)?;
        append(
            log,
            events,
            Event::IterationDone {
                iteration: t,
                seconds: t0.elapsed().as_secs_f64(),
            },
        )?;
    }
    Ok(Ended::Finished)
}

fn append(log: &mut RunLog, events: &mut Vec<Event>, ev: Event) -> Result<(), String> {
    log.append(&ev)?;
    events.push(ev);
    Ok(())
}

impl Loop<'_> {
    /// Assesses every reply of iteration `t` not recorded yet, with its repair round
    /// (None: the run was stopped).
    fn assess_replies(
        &self,
        generator: &mut dyn Generator,
        replies: &[Sampled],
        t: usize,
        temp: f64,
        seed: u64,
    ) -> Result<Option<Vec<Pending>>, String> {
        let cfg = &self.setup.cfg;
        let (n, probes) = (cfg.models.len(), &self.setup.probes);
        let mut pending = vec![];
        for (
            i,
            Sampled {
                reply,
                prompt,
                parents,
            },
        ) in replies.iter().enumerate()
        {
            if self.replay.done.contains(&(t, i)) {
                continue;
            }
            if self.stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let mut p = Pending {
                index: i,
                parents: parents.clone(),
                reply: reply.clone(),
                assessed: assess(reply, n, probes),
                repaired: false,
            };
            let a = &p.assessed;
            if a.stage != Stage::Valid && a.program.is_some() && cfg.repair && cfg.prompted() {
                let prompt = repair_prompt(prompt, a);
                if let Some(fixed) = generator
                    .sample(&prompt, 1, temp, seed ^ (i as u64 + 1))?
                    .pop()
                {
                    let b = assess(&fixed, n, probes);
                    if b.stage == Stage::Valid {
                        p.assessed = b;
                        p.repaired = true;
                        p.reply = fixed;
                    }
                }
            }
            pending.push(p);
        }
        Ok(Some(pending))
    }

    /// Merges and scores the new programs of `pending` group by group, appending every
    /// record in index order after each group (a killed run loses at most the group in
    /// flight).
    fn score_and_record(
        &mut self,
        pending: &[Pending],
        t: usize,
        gen_id: &str,
        left: &mut usize,
        log: &mut RunLog,
        events: &mut Vec<Event>,
    ) -> Result<Ended, String> {
        let mut next = 0;
        while next < pending.len() {
            let (end, fresh) = self.next_group(pending, next, t, left);
            for &k in &fresh {
                let canonical = pending[k].assessed.canonical.clone().unwrap_or_default();
                let index = pending[k].index;
                append(
                    log,
                    events,
                    Event::Started {
                        iteration: t,
                        index,
                        canonical,
                    },
                )?;
            }
            let release = |log: &mut RunLog, events: &mut Vec<Event>| -> Result<(), String> {
                for &k in &fresh {
                    let index = pending[k].index;
                    append(
                        log,
                        events,
                        Event::Released {
                            iteration: t,
                            index,
                        },
                    )?;
                }
                Ok(())
            };
            let results = match self.score_group(pending, &fresh) {
                Ok(r) => r,
                Err(e) => {
                    // The executor was lost, not the candidates: released, they run
                    // again on --resume.
                    release(log, events)?;
                    return Err(e);
                }
            };
            if self.stop.load(Ordering::SeqCst) {
                for (out, _) in &results {
                    let _ = std::fs::remove_dir_all(out);
                }
                release(log, events)?;
                return Ok(Ended::Interrupted);
            }
            let mut by_item: HashMap<usize, CandidateResult> =
                fresh.into_iter().zip(results).collect();
            for (k, p) in pending.iter().enumerate().take(end).skip(next) {
                let (outcome, merge_s, eval_s) = self.outcome(p, t, by_item.remove(&k));
                let rec = ProgramRecord {
                    iteration: t,
                    index: p.index,
                    generator: gen_id.to_string(),
                    reply: p.reply.clone(),
                    assessed: p.assessed.clone(),
                    repaired: p.repaired,
                    parents: p.parents.clone(),
                    outcome,
                    merge_s,
                    eval_s,
                };
                append(log, events, Event::Program(rec))?;
            }
            next = end;
            if *left == 0 {
                break;
            }
        }
        Ok(Ended::Finished)
    }

    /// The next group from `pending[next..]`: the items up to the one holding the
    /// `jobs`-th new canonical program (or the last the budget allows), and which of
    /// them are merged and scored (not known, not scored by an earlier run).
    fn next_group(
        &self,
        pending: &[Pending],
        next: usize,
        t: usize,
        left: &mut usize,
    ) -> (usize, Vec<usize>) {
        let (mut fresh, mut seen, mut end) = (vec![], HashSet::new(), next);
        while end < pending.len() && fresh.len() < self.jobs && *left > 0 {
            let p = &pending[end];
            if let (Stage::Valid, Some(c)) = (&p.assessed.stage, &p.assessed.canonical)
                && !self.replay.known.contains_key(c)
                && !self.replay.crashed.contains_key(&(t, p.index))
                && seen.insert(c.clone())
            {
                *left -= 1;
                if !self.setup.prior.contains_key(c) {
                    fresh.push(end);
                }
            }
            end += 1;
        }
        (end, fresh)
    }

    /// What happened to `p` (with its merge and eval seconds), given its candidate's
    /// result if it was merged and scored in this group; updates what is known.
    fn outcome(
        &mut self,
        p: &Pending,
        t: usize,
        result: Option<CandidateResult>,
    ) -> (Outcome, f64, f64) {
        let cfg = &self.setup.cfg;
        let n = self.setup.dev.len();
        let known = &mut self.replay.known;
        let c = match (&p.assessed.stage, &p.assessed.canonical) {
            _ if self.replay.crashed.contains_key(&(t, p.index)) => {
                let reason = super::isolate::STOPPED_WHILE_RUNNING.into();
                return (Outcome::Failed { reason }, 0.0, 0.0);
            }
            (Stage::Valid, Some(c)) => c,
            _ => return (Outcome::Invalid, 0.0, 0.0),
        };
        let outcome = match result {
            None if !known.contains_key(c) && self.setup.prior.contains_key(c) => {
                let (dev, correct, hits) = self.setup.prior[c].clone();
                known.insert(c.clone(), Some(dev));
                Outcome::Scored {
                    dev,
                    correct,
                    n,
                    hits,
                }
            }
            Some((out, Some(Ok((dev, correct, hits, ms, es))))) => {
                known.insert(c.clone(), Some(dev));
                keep_best(&mut self.best, dev, out, cfg.keep_best);
                return (
                    Outcome::Scored {
                        dev,
                        correct,
                        n,
                        hits,
                    },
                    ms,
                    es,
                );
            }
            Some((out, Some(Err(reason)))) => {
                let _ = std::fs::remove_dir_all(&out);
                known.insert(c.clone(), None);
                Outcome::Failed { reason }
            }
            Some((_, None)) => Outcome::Failed {
                reason: "stopped".into(),
            },
            None => Outcome::Duplicate {
                dev: known.get(c).copied().flatten(),
            },
        };
        (outcome, 0.0, 0.0)
    }

    /// Merges and scores the programs of `pending[k]` for each `k` in `fresh`, `jobs`
    /// at a time, each in its own process (see [`super::isolate`]).
    fn score_group(
        &self,
        pending: &[Pending],
        fresh: &[usize],
    ) -> Result<Vec<CandidateResult>, String> {
        let list: Vec<super::isolate::Job> = fresh
            .iter()
            .map(|&k| {
                let a = &pending[k].assessed;
                let c = a.canonical.as_deref().unwrap_or_default();
                super::isolate::Job {
                    program: a.program.clone().unwrap_or_default(),
                    out: self.scratch.join(&c[..16.min(c.len())]),
                }
            })
            .collect();
        let results = super::isolate::run_candidates(&self.setup.cfg, &list, self.jobs, self.stop)?;
        Ok(list.into_iter().map(|j| j.out).zip(results).collect())
    }
}

/// The end of iteration `t`: the generator learns from its preference pairs (unless
/// `learn` is off or the scored budget is spent), recorded as `Event::Learned`.
fn learn(
    setup: &Setup,
    generator: &mut dyn Generator,
    t: usize,
    left: usize,
    log: &mut RunLog,
    events: &mut Vec<Event>,
    say: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let cfg = &setup.cfg;
    let learning = cfg.learn && left > 0;
    let pairs = if learning {
        let conditioned = generator.conditioned();
        let prompt_of =
            |parents: &[At]| super::archive::prompt_for(setup, conditioned, events, parents);
        preference_pairs(cfg, events, t, &prompt_of)
    } else {
        vec![]
    };
    let learned = if !learning {
        LearnReport {
            note: if cfg.learn {
                "scored_budget reached: no learning".into()
            } else {
                "learn = false: the generator is not trained".into()
            },
            ..Default::default()
        }
    } else {
        say(&format!(
            "iteration {t}: {} preference pairs; learning",
            pairs.len()
        ));
        generator.learn(&pairs, t, &cfg.run_dir.join("generator"))?
    };
    let ev = Event::Learned {
        iteration: t,
        pairs: pairs.len(),
        steps: learned.steps,
        losses: learned.losses,
        margins: learned.margins,
        note: learned.note,
    };
    append(log, events, ev)
}

/// Where a candidate was merged, and its merge-and-score result (None: stopped).
type CandidateResult = (PathBuf, super::isolate::JobResult);

/// Programs the run may still score under `scored_budget` (usize::MAX: no limit).
fn budget_left(cfg: &RunConfig, events: &[Event]) -> usize {
    if cfg.scored_budget == 0 {
        return usize::MAX;
    }
    let scored = events
        .iter()
        .filter(|e| matches!(e, Event::Program(r) if matches!(r.outcome, Outcome::Scored { .. })))
        .count();
    cfg.scored_budget.saturating_sub(scored)
}

/// Keeps the checkpoints of the `k` best scores; deletes the rest.
fn keep_best(best: &mut Vec<(f64, PathBuf)>, score: f64, dir: PathBuf, k: usize) {
    best.push((score, dir));
    best.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (_, d) in best.drain(k.min(best.len())..) {
        let _ = std::fs::remove_dir_all(d);
    }
}
