//! The archive in the prompt (issue 14 item 4), as FunSearch, OpenEvolve and AlphaEvolve
//! do it: with `archive = K` a prompted generator is shown K of the best programs so far
//! with their dev scores, and asked for a better one. The archive holds one entry per
//! canonical hash (programs that compile to the same graphs are one entry), best first;
//! each prompt's parents are K distinct entries of its best `POOL_FACTOR * K`, sampled
//! by rank (weight 1 / rank) with a seed, and shown worst to best. Each prompt yields
//! `archive_per_prompt` programs, so an iteration sees several parent sets. Only earlier
//! iterations' programs enter the archive, so a resumed iteration sees the same prompts.
//! `archive = 0` (the default) is the paper's plain prompt.

use super::driver::{Event, Outcome, Setup};
use super::generator::Generator;
use crate::r#gen::SplitMix64;
use crate::interp::semantics::mix64;
use std::collections::HashMap;

/// Parents are drawn from the best `POOL_FACTOR * archive` entries.
pub const POOL_FACTOR: usize = 4;

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
    let mut by_hash: HashMap<&str, Entry> = HashMap::new();
    for e in events {
        let Event::Program(r) = e else { continue };
        let (Some(c), Some(p), Outcome::Scored { dev, .. }) =
            (&r.assessed.canonical, &r.assessed.program, &r.outcome)
        else {
            continue;
        };
        if r.iteration >= before || by_hash.contains_key(c.as_str()) {
            continue;
        }
        by_hash.insert(
            c,
            Entry {
                program: p.clone(),
                dev: *dev,
                canonical: c.clone(),
                iteration: r.iteration,
                index: r.index,
            },
        );
    }
    let mut v: Vec<Entry> = by_hash.into_values().collect();
    v.sort_by(|a, b| {
        b.dev
            .total_cmp(&a.dev)
            .then((a.iteration, a.index).cmp(&(b.iteration, b.index)))
    });
    v
}

/// `k` distinct parents from the best `POOL_FACTOR * k` entries of `archive` (best
/// first), sampled without replacement with weight 1 / rank; returned worst to best.
pub fn sample_parents(archive: &[Entry], k: usize, seed: u64) -> Vec<&Entry> {
    let pool = &archive[..archive.len().min(POOL_FACTOR * k)];
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

/// Iteration `t`'s `n` programs, each with the prompt it was sampled from: one request
/// with the plain prompt when the archive is off or still empty, else one request of
/// `archive_per_prompt` programs per parent set (each set seeded from `seed`).
pub fn sample(
    setup: &Setup,
    generator: &mut dyn Generator,
    events: &[Event],
    t: usize,
    n: usize,
    temperature: f64,
    seed: u64,
) -> Result<Vec<(String, String)>, String> {
    let cfg = &setup.cfg;
    let arch = if cfg.archive > 0 && cfg.prompted() {
        archive(events, t)
    } else {
        vec![]
    };
    if arch.is_empty() {
        let replies = generator.sample(&setup.prompt, n, temperature, seed)?;
        return Ok(replies
            .into_iter()
            .map(|r| (r, setup.prompt.clone()))
            .collect());
    }
    let per = cfg.archive_per_prompt.max(1);
    let mut out = vec![];
    for g in 0..n.div_ceil(per) {
        let m = per.min(n - g * per);
        let s = mix64(seed ^ (g as u64 + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let prompt = prompt_with(&setup.prompt, &sample_parents(&arch, cfg.archive, s));
        for r in generator.sample(&prompt, m, temperature, s)? {
            out.push((r, prompt.clone()));
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
            let p = sample_parents(&a, 3, seed);
            assert_eq!(p, sample_parents(&a, 3, seed));
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
        assert_ne!(sample_parents(&a, 3, 1), sample_parents(&a, 3, 2));
        // A short archive gives what it has.
        assert_eq!(sample_parents(&a[..2], 3, 0).len(), 2);
        let p = prompt_with("BASE", &sample_parents(&a[..2], 3, 0));
        assert!(
            p.starts_with("BASE") && p.contains("dev accuracy 99.0%") && p.contains("merge p1(")
        );
        assert!(
            p.find("merge p1(").unwrap() < p.find("merge p0(").unwrap(),
            "best last"
        );
    }
}
