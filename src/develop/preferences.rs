//! What the generator learns from at the end of an iteration: preference pairs of a
//! better and a worse program for the same prompt.
//!
//! - Plain prompt (the paper's mode): the top `chosen_fraction` of the iteration's
//!   scored programs plus the best `elites` of each earlier iteration, against the bottom
//!   `rejected_fraction` (failed and invalid programs when too few were scored).
//! - Archive mode: programs written from the same parents share a prompt, so pairs are
//!   formed within each parent set, (parents, better child, worse child): the top
//!   `chosen_fraction` of the set's children against its bottom `rejected_fraction`,
//!   children that were not scored (failed, or invalid with a program) below every
//!   scored one. A child that repeats an earlier program counts with that program's
//!   score, so copying a parent is a child like any other.

use super::config::RunConfig;
use super::driver::{At, Event, Outcome, ProgramRecord};
use super::generator::Pair;
use std::collections::BTreeMap;

/// Programs of iteration `t` by dev score, best first (ties by index).
pub fn ranked(events: &[Event], t: usize) -> Vec<&ProgramRecord> {
    let mut v: Vec<&ProgramRecord> = records(events, t)
        .filter(|r| matches!(r.outcome, Outcome::Scored { .. }))
        .collect();
    v.sort_by(|a, b| by_dev(a, b));
    v
}

fn records(events: &[Event], t: usize) -> impl Iterator<Item = &ProgramRecord> {
    events.iter().filter_map(move |e| match e {
        Event::Program(r) if r.iteration == t => Some(r),
        _ => None,
    })
}

/// Best dev first (no score last), ties by index.
fn by_dev(a: &ProgramRecord, b: &ProgramRecord) -> std::cmp::Ordering {
    b.dev()
        .unwrap_or(-1.0)
        .total_cmp(&a.dev().unwrap_or(-1.0))
        .then(a.index.cmp(&b.index))
}

/// The program's text (its reply when no program was found in it).
fn text(p: &ProgramRecord) -> String {
    p.assessed
        .program
        .clone()
        .unwrap_or_else(|| p.reply.clone())
}

/// `ceil(len * f)`, at least 1 and at most `len`.
fn take(len: usize, f: f64) -> usize {
    ((len as f64 * f).ceil() as usize).max(1).min(len)
}

/// Every chosen with every rejected of strictly lower score, for `prompt`.
fn cross(chosen: &[&ProgramRecord], rejected: &[&ProgramRecord], prompt: &str) -> Vec<Pair> {
    let mut pairs = vec![];
    for c in chosen {
        for rj in rejected {
            if c.dev().unwrap_or(-1.0) > rj.dev().unwrap_or(-1.0) {
                pairs.push(Pair {
                    prompt: prompt.to_string(),
                    chosen: text(c),
                    rejected: text(rj),
                });
            }
        }
    }
    pairs
}

/// Iteration `t`'s pairs; `prompt_of(parents)` is the prompt a program written from
/// `parents` was sampled from (`&[]`: the plain prompt).
pub fn preference_pairs(
    cfg: &RunConfig,
    events: &[Event],
    t: usize,
    prompt_of: &dyn Fn(&[At]) -> String,
) -> Vec<Pair> {
    let mut pairs = plain_pairs(cfg, events, t, &prompt_of(&[]));
    let mut sets: BTreeMap<&[At], Vec<&ProgramRecord>> = BTreeMap::new();
    for r in records(events, t) {
        if !r.parents.is_empty() && (r.dev().is_some() || r.assessed.program.is_some()) {
            sets.entry(r.parents.as_slice()).or_default().push(r);
        }
    }
    for (parents, mut kids) in sets {
        kids.sort_by(|a, b| by_dev(a, b));
        let chosen = &kids[..take(kids.len(), cfg.chosen_fraction)];
        let rejected = &kids[kids.len() - take(kids.len(), cfg.rejected_fraction)..];
        pairs.extend(cross(chosen, rejected, &prompt_of(parents)));
    }
    pairs
}

/// The plain prompt's pairs (none when every program of iteration `t` had parents).
fn plain_pairs(cfg: &RunConfig, events: &[Event], t: usize, prompt: &str) -> Vec<Pair> {
    if records(events, t).all(|r| !r.parents.is_empty()) {
        return vec![];
    }
    let r: Vec<&ProgramRecord> = ranked(events, t)
        .into_iter()
        .filter(|r| r.parents.is_empty())
        .collect();
    let frac = |f: f64| take(r.len(), f);
    let mut chosen: Vec<&ProgramRecord> =
        r.iter().take(frac(cfg.chosen_fraction)).copied().collect();
    for u in 1..t {
        chosen.extend(ranked(events, u).into_iter().take(cfg.elites));
    }
    let mut rejected: Vec<&ProgramRecord> = if r.len() >= 2 {
        r.iter()
            .rev()
            .take(frac(cfg.rejected_fraction))
            .copied()
            .collect()
    } else {
        vec![]
    };
    if rejected.is_empty() {
        rejected = records(events, t)
            .filter(|p| p.parents.is_empty() && p.dev().is_none() && p.assessed.program.is_some())
            .take(frac(cfg.rejected_fraction).max(3))
            .collect();
    }
    cross(&chosen, &rejected, prompt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::develop::candidate::{Assessed, Stage};

    fn rec(t: usize, index: usize, parents: Vec<At>, dev: Option<f64>) -> Event {
        Event::Program(ProgramRecord {
            iteration: t,
            index,
            generator: "g".into(),
            reply: format!("reply {t}.{index}"),
            assessed: Assessed {
                stage: Stage::Valid,
                program: Some(format!("p{t}.{index}")),
                merge: None,
                diagnostics: String::new(),
                canonical: Some(format!("{t}.{index}")),
                interpreted: false,
            },
            repaired: false,
            parents,
            outcome: match dev {
                Some(dev) => Outcome::Scored {
                    dev,
                    correct: 0,
                    n: 1,
                    hits: None,
                },
                None => Outcome::Failed { reason: "x".into() },
            },
            merge_s: 0.0,
            eval_s: 0.0,
        })
    }

    #[test]
    fn archive_children_are_paired_within_their_parent_set() {
        let cfg = RunConfig {
            chosen_fraction: 0.5,
            rejected_fraction: 0.5,
            elites: 1,
            ..RunConfig::default()
        };
        let a = vec![(1, 0)];
        let b = vec![(1, 1)];
        let events = vec![
            rec(1, 0, vec![], Some(0.5)),
            rec(1, 1, vec![], Some(0.4)),
            rec(2, 0, a.clone(), Some(0.6)),
            rec(2, 1, a.clone(), Some(0.3)),
            rec(2, 2, b.clone(), Some(0.2)),
            rec(2, 3, b.clone(), None),
            rec(2, 4, b.clone(), Some(0.9)),
        ];
        let prompt_of = |p: &[At]| format!("{p:?}");
        let pairs = preference_pairs(&cfg, &events, 2, &prompt_of);
        let got: Vec<(&str, &str, &str)> = pairs
            .iter()
            .map(|p| (p.prompt.as_str(), p.chosen.as_str(), p.rejected.as_str()))
            .collect();
        // Set a: best against worst; set b (3 children: 2 chosen, 2 rejected), the failed
        // child last; no plain pairs, as nothing of iteration 2 had the plain prompt.
        assert_eq!(
            got,
            vec![
                ("[(1, 0)]", "p2.0", "p2.1"),
                ("[(1, 1)]", "p2.4", "p2.2"),
                ("[(1, 1)]", "p2.4", "p2.3"),
                ("[(1, 1)]", "p2.2", "p2.3"),
            ]
        );
        // Iteration 1 (the plain prompt, the archive still empty): the plain rule.
        let first = preference_pairs(&cfg, &events, 1, &prompt_of);
        assert_eq!(first.len(), 1);
        assert_eq!(
            (first[0].prompt.as_str(), first[0].chosen.as_str()),
            ("[]", "p1.0")
        );
    }
}
