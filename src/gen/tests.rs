//! Unit tests of the generator: determinism, validity at both ranks, size, coverage.

use super::*;

#[test]
fn deterministic_for_a_seed() {
    for seed in 0..20 {
        assert_eq!(generate_source(seed, 40), generate_source(seed, 40));
    }
    assert_ne!(generate_source(1, 40), generate_source(2, 40));
}

#[test]
fn generated_programs_check_at_both_ranks() {
    for size in [1, 5, 20, 60, 150] {
        for seed in 0..300 {
            let src = generate_source(seed, size);
            match crate::types::check_source(&src) {
                Ok((_, sigs)) => {
                    assert_eq!(sigs.len(), 1);
                    assert_eq!(sigs[0].ranks, vec![1, 2], "seed {seed}:\n{src}");
                }
                Err(d) => panic!(
                    "seed {seed} size {size}:\n{src}\n{}",
                    crate::diag::render_all(&d, "gen.merge", &src, false)
                ),
            }
        }
    }
}

#[test]
fn large_programs_stay_within_limits() {
    for seed in 0..20 {
        let src = generate_source(seed, MAX_SIZE);
        if let Err(d) = crate::types::check_source(&src) {
            panic!(
                "seed {seed}:\n{}",
                crate::diag::render_all(&d, "gen.merge", &src, false)
            );
        }
    }
}

#[test]
fn size_is_roughly_honoured() {
    for size in [10, 50, 200, 800] {
        let total: usize = (0..40).map(|s| program_size(&generate(s, size))).sum();
        let mean = total / 40;
        assert!(
            mean >= size / 4 && mean <= size * 4,
            "size {size}: mean {mean}"
        );
    }
}

#[test]
fn printed_source_reparses_to_the_same_tree() {
    for seed in 0..100 {
        let p = generate(seed, 60);
        let src = crate::syntax::print::source(&p);
        let q = crate::syntax::parse_program(&src).expect("parses");
        assert_eq!(
            crate::syntax::print::source(&q),
            src,
            "seed {seed} does not round-trip"
        );
    }
}

#[test]
fn uses_the_builtins_broadly() {
    let mut all = String::new();
    for seed in 0..400 {
        all.push_str(&generate_source(seed, 80));
    }
    let wanted = [
        "sum(",
        "mean(",
        "max(",
        "min(",
        "prod(",
        "count(",
        "softmax(",
        "argmax(",
        "take_max(",
        "sum_all(",
        "norm(",
        "quantile(",
        "topk_mask(",
        "ranks(",
        "axis=-1",
        "axis=0",
        "where(",
        "clamp(",
        "lerp(",
        "bernoulli(",
        "uniform(",
        "stream=",
        "fold(",
        "repeat(",
        "if ",
        "let ",
        "fn h",
        "kind ==",
        "layer",
        "n_layers",
        "dot(",
        "cos(",
        "std(",
        "len(",
        "float(",
        "int(",
        "keepdim=true",
        "init=",
        "not ",
        " and ",
        " or ",
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !all.contains(w))
        .collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
}
