//! The pretraining corpus of the `tiny` generator, built deterministically from a seed:
//! the stdlib programs, simple mutations of them (changed constants and defaults,
//! swapped reductions and comparisons, renamed merges), short programs composed from the
//! stdlib's building blocks (task vectors, trimming, dropping, sign election, weighted
//! sums; [`compose`]), and programs from the type-directed generator ([`crate::r#gen`]).
//!
//! Every program is printed by the language's pretty-printer (so comments are gone and
//! the layout is uniform), and kept only if it is *usable*: it checks and its first
//! `merge` has a default for every parameter (see [`usable`]).

use crate::semantics::rng::SplitMix64;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// What goes into the corpus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorpusSpec {
    /// Copies of each stdlib program.
    pub stdlib_copies: usize,
    /// Mutated variants per stdlib program (distinct, usable ones; fewer if the
    /// attempts run out).
    pub mutations_per_program: usize,
    /// Programs composed from stdlib building blocks ([`compose`]).
    pub composed: usize,
    /// Programs from the type-directed generator.
    pub generated: usize,
    /// Their sizes (expression nodes) are drawn uniformly from this range.
    pub generated_sizes: (usize, usize),
    /// Programs longer than this many bytes are left out.
    pub max_bytes: usize,
    pub seed: u64,
}

impl Default for CorpusSpec {
    fn default() -> Self {
        CorpusSpec {
            stdlib_copies: 4,
            mutations_per_program: 10,
            composed: 2500,
            generated: 600,
            generated_sizes: (3, 12),
            max_bytes: 1300,
            seed: 0,
        }
    }
}

/// Whether `src` checks and its first `merge` gives every parameter a default (what a
/// generated program needs to be merged as is).
pub fn usable(src: &str) -> bool {
    match crate::types::check_source(src) {
        Ok((_, sigs)) => sigs
            .first()
            .is_some_and(|m| m.params.iter().all(|p| p.default.is_some())),
        Err(_) => false,
    }
}

/// A program in the corpus's layout (the pretty-printer's), if it parses and checks.
pub fn normalize(src: &str) -> Option<String> {
    let (p, _) = crate::types::check_source(src).ok()?;
    Some(crate::syntax::print::source(&p))
}

/// The stdlib programs, normalized, in listing order.
pub fn stdlib_programs() -> Vec<String> {
    crate::stdlib::SOURCES
        .iter()
        .filter_map(|(_, s)| normalize(s))
        .collect()
}

const NAMES: &[&str] = &[
    "merged", "blend", "combo", "mix", "fused", "soup", "joint", "hybrid", "ensemble", "unify",
];
const FLOATS: &[&str] = &[
    "0.1", "0.2", "0.25", "0.3", "0.4", "0.5", "0.6", "0.7", "0.75", "0.8", "0.9", "1.0", "1.5",
    "2.0",
];

/// One random mutation of `src` (normalized program text): each literal decimal
/// number changes with probability 0.25, reductions (`sum`/`mean`, `sum_all`/`mean_all`,
/// `max`/`min`), comparisons (`>=`/`>`, `<=`/`<`) and boolean defaults flip with
/// probability 0.15 each, and the merge is renamed with probability 0.5. The result may
/// not check.
pub fn mutate(src: &str, rng: &mut SplitMix64) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len() + 16);
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let swaps: &[(&str, &str)] = &[
        ("sum_all(", "mean_all("),
        ("mean_all(", "sum_all("),
        ("max_all(", "min_all("),
        ("min_all(", "max_all("),
        ("sum(", "mean("),
        ("mean(", "sum("),
        ("max(", "min("),
        ("min(", "max("),
        (">=", ">"),
        ("<=", "<"),
        ("= true", "= false"),
        ("= false", "= true"),
    ];
    'outer: while i < b.len() {
        let prev_ident = i > 0 && ident(b[i - 1]);
        // A decimal literal (digits '.' digits, no exponent), not part of a name.
        if !prev_ident && b[i].is_ascii_digit() {
            let mut j = i;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j + 1 < b.len() && b[j] == b'.' && b[j + 1].is_ascii_digit() {
                let mut k = j + 1;
                while k < b.len() && b[k].is_ascii_digit() {
                    k += 1;
                }
                let exp = k < b.len() && (b[k] == b'e' || b[k] == b'E');
                if !exp && rng.chance(0.25) {
                    let f: &str = rng.pick::<&str>(FLOATS);
                    out.push_str(f);
                } else {
                    out.push_str(&src[i..k]);
                }
                i = k;
                continue;
            }
            out.push_str(&src[i..j]);
            i = j;
            continue;
        }
        if !prev_ident {
            for (from, to) in swaps {
                if src[i..].starts_with(from) {
                    if rng.chance(0.15) {
                        out.push_str(to);
                    } else {
                        out.push_str(from);
                    }
                    i += from.len();
                    continue 'outer;
                }
            }
        }
        let c = src[i..].chars().next().expect("in bounds");
        out.push(c);
        i += c.len_utf8();
    }
    if rng.chance(0.5) {
        rename_first_merge(&out, rng.pick::<&str>(NAMES))
    } else {
        out
    }
}

/// `src` with its first `merge NAME(` renamed to `name`.
pub fn rename_first_merge(src: &str, name: &str) -> String {
    let mut at = None;
    let mut off = 0;
    for line in src.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("merge ")
            && let Some(paren) = rest.find('(')
        {
            at = Some((off + 6, off + 6 + paren));
            break;
        }
        off += line.len();
    }
    match at {
        Some((a, b)) => format!("{}{name}{}", &src[..a], &src[b..]),
        None => src.to_string(),
    }
}

/// A short merge program composed from the stdlib's building blocks: the task vectors
/// `tau = models - base`; optionally sparsified (top-k by magnitude as in TIES, random
/// drop and rescale as in DARE, top-k with the largest skipped as in breadcrumbs, a
/// quantile threshold, or clipping at a multiple of the standard deviation) and
/// L1-rescaled; optionally weighted per model; combined by a sum, a mean, a TIES sign
/// election (with or without the agreeing-model divisor), the largest magnitude, or a
/// softmax of magnitudes; optionally divided by the summed weights; added to the base,
/// optionally scaled by `lambda`, optionally for MLP tensors only. Parameter defaults
/// vary. The text is not normalized and may (rarely) not check.
pub fn compose(rng: &mut SplitMix64) -> String {
    let mut params: Vec<String> = vec![];
    let mut body: Vec<String> = vec!["let tau = models - base".into()];
    let kept = sparsify(rng, &mut params, &mut body);
    let weighted = rng.chance(0.4);
    let wk = if weighted {
        params.push(format!(
            "weight: [f32] = {}",
            pick(rng, &["0.5", "1.0", "1.0", "2.0"])
        ));
        body.push(format!("let wk = weight * {kept}"));
        "wk".to_string()
    } else {
        kept.to_string()
    };
    combine(rng, &mut body, &wk);
    if weighted && rng.chance(0.3) {
        params.push(format!(
            "normalize: bool = {}",
            pick(rng, &["true", "false"])
        ));
        body.push("let merged = if normalize { mixed / sum(weight) } else { mixed }".into());
    } else {
        body.push("let merged = mixed".into());
    }
    add_to_base(rng, &mut params, &mut body);
    let name = rng.pick(NAMES);
    let mut out = format!("merge {name}(base: Tensor, models: [Tensor]");
    for p in &params {
        out.push_str(", ");
        out.push_str(p);
    }
    out.push_str(") -> Tensor {\n");
    for l in &body {
        out.push_str("    ");
        out.push_str(l);
        out.push('\n');
    }
    out.push_str("}\n");
    out
}

/// One of `xs`, drawn uniformly.
fn pick(rng: &mut SplitMix64, xs: &[&str]) -> String {
    rng.pick(xs).to_string()
}

/// [`compose`]'s optional sparsification of `tau` (TIES's top-k, DARE's drop and
/// rescale, breadcrumbs, a quantile threshold or clipping), optionally L1-rescaled: the
/// parameters and `let`s it needs, and the name of the variable it leaves.
fn sparsify(
    rng: &mut SplitMix64,
    params: &mut Vec<String>,
    body: &mut Vec<String>,
) -> &'static str {
    let mut kept = "tau";
    match rng.below(7) {
        0 | 1 => {}
        2 => {
            params.push(format!(
                "density: f32 = {}",
                pick(rng, &["0.1", "0.2", "0.3", "0.5", "0.7"])
            ));
            body.push("let kept = tau * topk_mask(abs(tau), density)".into());
            kept = "kept";
        }
        3 => {
            params.push(format!(
                "density: f32 = {}",
                pick(rng, &["0.1", "0.3", "0.5", "0.7", "0.9"])
            ));
            body.push("let kept = tau * bernoulli(tau, density) / density".into());
            kept = "kept";
        }
        4 => {
            params.push(format!(
                "density: f32 = {}",
                pick(rng, &["0.2", "0.3", "0.5", "0.7"])
            ));
            params.push(format!(
                "gamma: f32 = {}",
                pick(rng, &["0.01", "0.02", "0.05", "0.1"])
            ));
            body.push("let kept = tau * topk_mask(abs(tau), density, skip=gamma)".into());
            kept = "kept";
        }
        5 => {
            params.push(format!(
                "q: f32 = {}",
                pick(rng, &["0.5", "0.7", "0.8", "0.9"])
            ));
            body.push("let kept = where(abs(tau) >= quantile(abs(tau), q), tau, 0.0)".into());
            kept = "kept";
        }
        _ => {
            params.push(format!(
                "width: f32 = {}",
                pick(rng, &["1.0", "2.0", "3.0"])
            ));
            body.push("let s = std(tau)".into());
            body.push("let kept = clamp(tau, -width * s, width * s)".into());
            kept = "kept";
        }
    }
    if kept == "kept" && rng.chance(0.3) {
        body.push("let scaled = kept * (sum_all(abs(tau)) / max(sum_all(abs(kept)), 1e-8))".into());
        kept = "scaled";
    }
    kept
}

/// [`compose`]'s combination of the (weighted) task vectors `wk` into `mixed`: a sum, a
/// mean, a TIES sign election (with or without the divisor), the largest magnitude, or a
/// softmax of magnitudes.
fn combine(rng: &mut SplitMix64, body: &mut Vec<String>, wk: &str) {
    match rng.below(7) {
        0 | 1 => body.push(format!("let mixed = sum({wk})")),
        2 => body.push(format!("let mixed = mean({wk})")),
        3 => {
            body.push(format!("let elected = where(sum({wk}) >= 0.0, 1.0, -1.0)"));
            body.push(format!("let agree = sign({wk}) == elected"));
            body.push(format!(
                "let mixed = sum({wk} * agree) / max(count(agree), 1.0)"
            ));
        }
        4 => {
            body.push(format!("let elected = where(sum({wk}) >= 0.0, 1.0, -1.0)"));
            body.push(format!("let agree = sign({wk}) == elected"));
            body.push(format!("let mixed = sum({wk} * agree)"));
        }
        5 => body.push(format!("let mixed = take_max(abs({wk}), {wk})")),
        _ => body.push(format!("let mixed = sum(softmax(abs({wk})) * {wk})")),
    }
}

/// [`compose`]'s return: `merged` added to the base, optionally scaled by `lambda`,
/// optionally for MLP tensors only.
fn add_to_base(rng: &mut SplitMix64, params: &mut Vec<String>, body: &mut Vec<String>) {
    let update = if rng.chance(0.7) {
        params.push(format!(
            "lambda: f32 = {}",
            pick(rng, &["0.5", "0.8", "1.0", "1.0", "1.2", "1.5"])
        ));
        "base + lambda * merged"
    } else {
        "base + merged"
    };
    if rng.chance(0.1) {
        body.push(format!(
            "return if kind == \"mlp\" {{ {update} }} else {{ base }}"
        ));
    } else {
        body.push(format!("return {update}"));
    }
}

/// The corpus for `spec`: usable, normalized programs in a fixed order (stdlib copies,
/// then mutations, composed programs, generated programs). All but the stdlib copies are
/// distinct from each other and from the stdlib.
pub fn build(spec: &CorpusSpec) -> Vec<String> {
    let mut out = Vec::new();
    let fits = |s: &str| s.len() <= spec.max_bytes;
    let stdlib: Vec<String> = stdlib_programs().into_iter().filter(|s| fits(s)).collect();
    let mut seen: HashSet<String> = stdlib.iter().cloned().collect();
    for _ in 0..spec.stdlib_copies {
        out.extend(stdlib.iter().cloned());
    }
    let mut rng = SplitMix64::new(spec.seed ^ 0x7469_6e79_636f_7270);
    for s in &stdlib {
        let mut kept = 0;
        let mut tries = 0;
        while kept < spec.mutations_per_program && tries < spec.mutations_per_program * 4 {
            tries += 1;
            let m = mutate(s, &mut rng);
            if fits(&m) && !seen.contains(&m) && usable(&m) {
                seen.insert(m.clone());
                out.push(m);
                kept += 1;
            }
        }
    }
    let mut kept = 0;
    let mut tries = 0;
    while kept < spec.composed && tries < spec.composed * 20 {
        tries += 1;
        let Some(s) = normalize(&compose(&mut rng)) else {
            continue;
        };
        if fits(&s) && !seen.contains(&s) && usable(&s) {
            seen.insert(s.clone());
            out.push(s);
            kept += 1;
        }
    }
    let (lo, hi) = spec.generated_sizes;
    let mut kept = 0;
    let mut seed = rng.next_u64();
    let mut tries = 0;
    while kept < spec.generated && tries < spec.generated * 3 {
        tries += 1;
        seed = seed.wrapping_add(1);
        let size = lo + rng.below(hi.saturating_sub(lo) + 1);
        let s = crate::r#gen::generate_source(seed, size);
        let s = if rng.chance(0.5) {
            rename_first_merge(&s, rng.pick::<&str>(NAMES))
        } else {
            s
        };
        if fits(&s) && !seen.contains(&s) && usable(&s) {
            seen.insert(s.clone());
            out.push(s);
            kept += 1;
        }
    }
    out
}

/// How a conditioned generator's pretraining pairs are made (see [`build_pairs`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairSpec {
    /// Fresh composed programs used as parents, none of them in the corpus: their
    /// children can only be predicted by reading the parent.
    pub parents: usize,
    /// Fresh variants of each stdlib program (mutations not in the corpus) used as
    /// parents: long parents with helper functions, so that reading a parent works at
    /// every position, not only for short composed programs.
    pub stdlib_variants: usize,
    /// Children per parent.
    pub children: usize,
    /// A child is 1 to `max_rounds` rounds of [`mutate`] away from its parent (drawn
    /// uniformly).
    pub max_rounds: usize,
    pub seed: u64,
}

impl Default for PairSpec {
    fn default() -> Self {
        PairSpec {
            parents: 3000,
            stdlib_variants: 60,
            children: 2,
            max_rounds: 3,
            seed: 0,
        }
    }
}

/// `src` with its first merge's name blanked, to compare programs up to that name.
fn unnamed(src: &str) -> String {
    rename_first_merge(src, "_")
}

/// The pretraining examples of a conditioned generator, as (parent, child): every
/// program of `corpus` once from nothing (parent `""`), then for each parent (the
/// stdlib programs, `spec.stdlib_variants` fresh variants of each, then `spec.parents`
/// fresh composed programs; no fresh one is in the corpus) up to `spec.children` distinct usable children of at most `max_bytes` that
/// differ from it in more than the merge's name (each 1 to `max_rounds` rounds of
/// [`mutate`] away). Deterministic for the corpus and the spec.
pub fn build_pairs(corpus: &[String], spec: &PairSpec, max_bytes: usize) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        corpus.iter().map(|p| (String::new(), p.clone())).collect();
    let mut rng = SplitMix64::new(spec.seed ^ 0x7061_6972_735f_6b69);
    let mut seen: HashSet<String> = corpus.iter().cloned().collect();
    let stdlib: Vec<String> = stdlib_programs()
        .into_iter()
        .filter(|s| s.len() <= max_bytes)
        .collect();
    let mut parents = stdlib.clone();
    for p in &stdlib {
        let (mut kept, mut tries) = (0, 0);
        while kept < spec.stdlib_variants && tries < spec.stdlib_variants * 6 {
            tries += 1;
            let mut c = p.clone();
            for _ in 0..1 + rng.below(spec.max_rounds.max(1)) {
                c = mutate(&c, &mut rng);
            }
            if c.len() <= max_bytes && !seen.contains(&c) && usable(&c) {
                seen.insert(c.clone());
                parents.push(c);
                kept += 1;
            }
        }
    }
    let mut tries = 0;
    let want = parents.len() + spec.parents;
    while parents.len() < want && tries < spec.parents * 20 {
        tries += 1;
        let Some(s) = normalize(&compose(&mut rng)) else {
            continue;
        };
        if s.len() <= max_bytes && !seen.contains(&s) && usable(&s) {
            seen.insert(s.clone());
            parents.push(s);
        }
    }
    for p in &parents {
        let base = unnamed(p);
        let mut kids: HashSet<String> = HashSet::new();
        let mut tries = 0;
        while kids.len() < spec.children && tries < spec.children * 6 {
            tries += 1;
            let rounds = 1 + rng.below(spec.max_rounds.max(1));
            let mut c = p.clone();
            for _ in 0..rounds {
                c = mutate(&c, &mut rng);
            }
            if c.len() <= max_bytes && unnamed(&c) != base && !kids.contains(&c) && usable(&c) {
                kids.insert(c.clone());
                out.push((p.clone(), c));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdlib_normalizes_and_mutations_mostly_check() {
        let std = stdlib_programs();
        assert_eq!(std.len(), crate::stdlib::SOURCES.len());
        assert!(std.iter().all(|s| usable(s) && !s.contains('#')));
        let mut rng = SplitMix64::new(1);
        let ties = std.iter().find(|s| s.contains("merge ties(")).unwrap();
        let muts: Vec<String> = (0..40).map(|_| mutate(ties, &mut rng)).collect();
        let ok = muts.iter().filter(|m| usable(m)).count();
        assert!(ok >= 20, "{ok}/40 mutations usable");
        assert!(muts.iter().any(|m| m != ties));
        assert_eq!(
            rename_first_merge("fn f() -> f32 {\n}\nmerge ties(base", "blend"),
            "fn f() -> f32 {\n}\nmerge blend(base"
        );
    }

    #[test]
    fn composed_programs_check() {
        let mut rng = SplitMix64::new(5);
        let all: Vec<String> = (0..200).map(|_| compose(&mut rng)).collect();
        let bad: Vec<&String> = all.iter().filter(|s| !usable(s)).collect();
        assert!(
            bad.len() <= 4,
            "{} of 200 do not check, e.g.\n{}",
            bad.len(),
            bad[0]
        );
        let distinct: HashSet<&String> = all.iter().collect();
        assert!(distinct.len() >= 150, "{}", distinct.len());
    }

    #[test]
    fn the_corpus_is_deterministic_and_usable() {
        let spec = CorpusSpec {
            stdlib_copies: 1,
            mutations_per_program: 2,
            composed: 10,
            generated: 20,
            ..CorpusSpec::default()
        };
        let a = build(&spec);
        assert_eq!(a, build(&spec));
        assert!(a.len() >= 40, "{}", a.len());
        assert!(a.iter().all(|s| usable(s) && s.len() <= spec.max_bytes));
    }

    #[test]
    fn pairs_hold_every_program_from_nothing_and_children_that_differ() {
        let spec = CorpusSpec {
            stdlib_copies: 1,
            mutations_per_program: 1,
            composed: 20,
            generated: 10,
            ..CorpusSpec::default()
        };
        let corpus = build(&spec);
        let ps = PairSpec {
            parents: 30,
            stdlib_variants: 1,
            ..PairSpec::default()
        };
        let pairs = build_pairs(&corpus, &ps, spec.max_bytes);
        assert_eq!(pairs, build_pairs(&corpus, &ps, spec.max_bytes));
        let scratch: Vec<&String> = pairs
            .iter()
            .filter(|(p, _)| p.is_empty())
            .map(|(_, c)| c)
            .collect();
        assert_eq!(scratch, corpus.iter().collect::<Vec<_>>());
        let kids: Vec<&(String, String)> = pairs.iter().filter(|(p, _)| !p.is_empty()).collect();
        let parents: HashSet<&String> = kids.iter().map(|(p, _)| p).collect();
        let stdlib = stdlib_programs();
        assert!(
            parents.len() >= 30 + 2 * stdlib.len() - 4,
            "{} parents",
            parents.len()
        );
        assert!(
            kids.len() >= 2 * parents.len() - 4,
            "{} children",
            kids.len()
        );
        for (p, c) in kids {
            assert!(stdlib.contains(p) || !corpus.contains(p), "fresh parents");
            assert!(usable(c) && c.len() <= spec.max_bytes);
            assert_ne!(unnamed(p), unnamed(c));
        }
    }
}
