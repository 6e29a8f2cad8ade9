//! The archive in the prompt (issue 14 item 4), as FunSearch, OpenEvolve and AlphaEvolve
//! do it: with `archive = K` a prompted generator is shown K of the best programs so far
//! with their dev scores, and asked for a better one. The archive holds one entry per
//! canonical hash (programs that compile to the same graphs are one entry), best first;
//! each prompt's parents are K distinct entries of its best `POOL_FACTOR * K`, sampled
//! by rank (weight 1 / rank) with a seed, and shown worst to best. Each prompt yields
//! `archive_per_prompt` programs, so an iteration sees several parent sets. Only earlier
//! iterations' programs enter the archive, so a resumed iteration sees the same prompts.
//! `archive = 0` (the default) is the paper's plain prompt.
//!
//! A conditioned generator (the `tiny` one with `archive > 0`, see
//! [`super::tiny::TinySpec::conditioned`]) is given one parent per prompt, drawn the
//! same way from the best `POOL_FACTOR * archive` entries, and its prompt is the
//! parent program itself (`""` while the archive is empty: from nothing).
//!
//! Each program records its parents (iteration, index), so the prompt it was written
//! from can be rebuilt ([`prompt_for`]) for the preference pairs of
//! [`super::preferences`].

use super::driver::{At, Event, Outcome, ProgramRecord, Setup};
use super::generator::Generator;
use crate::semantics::mix64;
use crate::semantics::rng::SplitMix64;
use std::collections::HashMap;

/// Parents are drawn from the best `POOL_FACTOR * archive` entries.
pub const POOL_FACTOR: usize = 4;

/// One sampled reply, the prompt it was sampled from and the parents shown in that
/// prompt ((iteration, index); empty: the plain prompt).
#[derive(Clone, Debug)]
pub struct Sampled {
    pub reply: String,
    pub prompt: String,
    pub parents: Vec<At>,
}

/// One archived program.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub program: String,
    pub dev: f64,
    pub canonical: String,
    pub iteration: usize,
    pub index: usize,
}

/// The programs scored before iteration `before`, one per canonical hash, best first
/// (ties: the earliest).
pub fn archive(events: &[Event], before: usize) -> Vec<Entry> {
    let mut by_hash: HashMap<String, Entry> = HashMap::new();
    for e in events {
        let Event::Program(r) = e else { continue };
        let Some(en) = entry(r) else { continue };
        if r.iteration >= before || by_hash.contains_key(en.canonical.as_str()) {
            continue;
        }
        by_hash.insert(en.canonical.clone(), en);
    }
    let mut v: Vec<Entry> = by_hash.into_values().collect();
    sort(&mut v);
    v
}

fn sort(v: &mut [Entry]) {
    v.sort_by(|a, b| {
        b.dev
            .total_cmp(&a.dev)
            .then((a.iteration, a.index).cmp(&(b.iteration, b.index)))
    });
}

/// The archive entry of a scored program.
fn entry(r: &ProgramRecord) -> Option<Entry> {
    let (Some(c), Some(p), Outcome::Scored { dev, .. }) =
        (&r.assessed.canonical, &r.assessed.program, &r.outcome)
    else {
        return None;
    };
    Some(Entry {
        program: p.clone(),
        dev: *dev,
        canonical: c.clone(),
        iteration: r.iteration,
        index: r.index,
    })
}

/// `k` distinct parents from the best `pool` entries of `archive` (best first), sampled
/// without replacement with weight 1 / rank; returned worst to best.
pub fn sample_parents(archive: &[Entry], k: usize, pool: usize, seed: u64) -> Vec<&Entry> {
    let pool = &archive[..archive.len().min(pool)];
    let mut rng = SplitMix64::new(mix64(seed ^ 0x0A4C_817E));
    let mut left: Vec<usize> = (0..pool.len()).collect();
    let mut chosen = vec![];
    while chosen.len() < k && !left.is_empty() {
        let total: f64 = left.iter().map(|&r| 1.0 / (r + 1) as f64).sum();
        let mut x = rng.unit() * total;
        let mut at = left.len() - 1;
        for (j, &r) in left.iter().enumerate() {
            x -= 1.0 / (r + 1) as f64;
            if x < 0.0 {
                at = j;
                break;
            }
        }
        chosen.push(left.remove(at));
    }
    chosen.sort_by(|a, b| b.cmp(a));
    chosen.into_iter().map(|r| &pool[r]).collect()
}

/// The prompt `base` with `parents` (worst to best) and their dev scores.
pub fn prompt_with(base: &str, parents: &[&Entry]) -> String {
    let mut p = format!(
        "{}\n\nPrograms written so far, each with its accuracy on the dev set (higher is \
         better), the best last:\n",
        base.trim_end()
    );
    for (i, e) in parents.iter().enumerate() {
        p.push_str(&format!(
            "\nProgram {} (dev accuracy {:.1}%):\n```merge\n{}\n```\n",
            i + 1,
            100.0 * e.dev,
            e.program.trim_end()
        ));
    }
    p.push_str(
        "\nWrite a new program that scores higher than these: improve on the best, combine \
         their ideas, or try a different idea. Reply with the program in a single ```merge \
         block.",
    );
    p
}

/// The prompt of a program written from `parents` (each an archive entry): the
/// plain prompt when there are none, the best parent's program for a conditioned
/// generator, else the plain prompt with the parents and their scores.
fn prompt_of(setup: &Setup, conditioned: bool, parents: &[&Entry]) -> String {
    match (parents.last(), conditioned) {
        (None, true) => String::new(),
        (None, false) => setup.prompt.clone(),
        (Some(best), true) => best.program.clone(),
        (Some(_), false) => prompt_with(&setup.prompt, parents),
    }
}

/// The prompt the programs written from `parents` ((iteration, index) of recorded
/// programs, worst to best) were sampled from, rebuilt from `events`.
pub fn prompt_for(setup: &Setup, conditioned: bool, events: &[Event], parents: &[At]) -> String {
    let found: Vec<Entry> = parents
        .iter()
        .filter_map(|&(i, k)| {
            events.iter().find_map(|e| match e {
                Event::Program(r) if r.iteration == i && r.index == k => entry(r),
                _ => None,
            })
        })
        .collect();
    prompt_of(setup, conditioned, &found.iter().collect::<Vec<_>>())
}

/// Iteration `t`'s `n` programs, each with the prompt it was sampled from: one request
/// with the plain prompt when the archive is off or still empty, else one request of
/// `archive_per_prompt` programs per parent set (each set seeded from `seed`; a
/// conditioned generator's set is one parent).
pub fn sample(
    setup: &Setup,
    generator: &mut dyn Generator,
    events: &[Event],
    t: usize,
    n: usize,
    temperature: f64,
    seed: u64,
) -> Result<Vec<Sampled>, String> {
    let cfg = &setup.cfg;
    let conditioned = generator.conditioned();
    let arch = if cfg.archive > 0 && (cfg.prompted() || conditioned) {
        archive(events, t)
    } else {
        vec![]
    };
    if arch.is_empty() {
        let prompt = prompt_of(setup, conditioned, &[]);
        let replies = generator.sample(&prompt, n, temperature, seed)?;
        return Ok(replies
            .into_iter()
            .map(|reply| Sampled {
                reply,
                prompt: prompt.clone(),
                parents: vec![],
            })
            .collect());
    }
    let per = cfg.archive_per_prompt.max(1);
    let k = if conditioned { 1 } else { cfg.archive };
    let mut out = vec![];
    for g in 0..n.div_ceil(per) {
        let m = per.min(n - g * per);
        let s = mix64(seed ^ (g as u64 + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let parents = sample_parents(&arch, k, POOL_FACTOR * cfg.archive, s);
        let prompt = prompt_of(setup, conditioned, &parents);
        let at: Vec<At> = parents.iter().map(|e| (e.iteration, e.index)).collect();
        for reply in generator.sample(&prompt, m, temperature, s)? {
            out.push(Sampled {
                reply,
                prompt: prompt.clone(),
                parents: at.clone(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry {
                program: format!(
                    "merge p{i}(base: Tensor, models: [Tensor]) -> Tensor {{ return base }}"
                ),
                dev: 1.0 - i as f64 / 100.0,
                canonical: format!("{i:064x}"),
                iteration: 1,
                index: i,
            })
            .collect()
    }

    #[test]
    fn parents_are_distinct_seeded_from_the_best_and_biased_to_the_top() {
        let a = entries(30);
        let mut top = 0;
        let mut bottom = 0;
        for seed in 0..400 {
            let p = sample_parents(&a, 3, 12, seed);
            assert_eq!(p, sample_parents(&a, 3, 12, seed));
            assert_eq!(p.len(), 3);
            let mut hashes: Vec<&str> = p.iter().map(|e| e.canonical.as_str()).collect();
            hashes.dedup();
            assert_eq!(hashes.len(), 3);
            // Worst to best, all from the pool of the best 12.
            assert!(p.windows(2).all(|w| w[0].dev <= w[1].dev));
            assert!(p.iter().all(|e| e.index < POOL_FACTOR * 3));
            top += p.iter().filter(|e| e.index == 0).count();
            bottom += p.iter().filter(|e| e.index == 11).count();
        }
        assert!(
            top > 2 * bottom,
            "rank 1 chosen {top} times, rank 12 {bottom}"
        );
        assert_ne!(sample_parents(&a, 3, 12, 1), sample_parents(&a, 3, 12, 2));
        // A short archive gives what it has.
        assert_eq!(sample_parents(&a[..2], 3, 12, 0).len(), 2);
        let p = prompt_with("BASE", &sample_parents(&a[..2], 3, 12, 0));
        assert!(
            p.starts_with("BASE") && p.contains("dev accuracy 99.0%") && p.contains("merge p1(")
        );
        assert!(
            p.find("merge p1(").unwrap() < p.find("merge p0(").unwrap(),
            "best last"
        );
    }
}
