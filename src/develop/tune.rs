//! The final stage's search: the contenders (every stdlib method that takes the family's
//! number of models, and the best discovered programs) and the one search every
//! contender gets, `tune_budget` evaluations on dev each:
//!
//! - point 0 is the program's defaults;
//! - points 1..budget draw every declared `f32` parameter independently: log-uniform in
//!   [d/4, 4d] around a positive default d, the negative of that around a negative one,
//!   uniform in [-1, 1] around 0. Every element of a per-model `[f32]` list is drawn
//!   the same way in [d/2, 2d]: lists set the models' shares, a scalar (`lambda`) the
//!   overall scale, and two wide draws multiplied would mostly miss (a product spanning
//!   [d/16, 16d]).
//!   Two kinds of parameter are known by name, whatever program declares them: the
//!   fractions `density` and `select_topk` (what share of a task vector is kept) are
//!   drawn uniformly in [0.05, 1], and the numerical guards `eps` and `tol` keep their
//!   defaults. `int` and `bool` parameters keep their defaults.
//! - a contender with nothing to search (no parameter drawn) has the defaults only: its
//!   other points would merge the same model again.
//!
//! Draws depend only on the seed, the point, the parameter's name and the element, so
//! two contenders that share a parameter (`lambda` = 1.0, say) try the same values of it
//! (common random numbers: their difference is less noisy). A random search rather than a
//! grid or successive halving: its cost is the same for every contender whatever the
//! number of parameters, and every point is one full dev evaluation, so scores recorded
//! for one budget are the first points of a larger one.

use crate::semantics::{mix64, name_hash};
use crate::types::ty::Ty;
use crate::types::{Const, MergeSig};

/// Parameter overrides of a program (empty: its defaults).
pub type Params = Vec<(String, Const)>;

/// One contender of the final stage.
#[derive(Clone, Debug)]
pub struct Contender {
    /// Shown in the tables: a stdlib method's name or `discovered #k (hash)`.
    pub name: String,
    /// The stem of its record keys.
    pub key: String,
    pub src: String,
    pub stdlib: bool,
}

/// The stdlib methods that take `n` models, as contenders, and the others with the
/// reason (a method that merges the base with one model, given three, is not one).
pub fn stdlib_contenders(n: usize) -> (Vec<Contender>, Vec<String>) {
    let (mut yes, mut no) = (vec![], vec![]);
    for m in crate::stdlib::methods() {
        let name = m.sig.name.clone();
        match crate::stdlib::max_models(&name) {
            Some(k) if n > k => no.push(format!(
                "{name} (merges at most {k} model{} with the base; this family has {n})",
                if k == 1 { "" } else { "s" }
            )),
            _ => yes.push(Contender {
                key: name.clone(),
                name,
                src: m.source.to_string(),
                stdlib: true,
            }),
        }
    }
    (yes, no)
}

/// The merge signature of `src` (its first merge), as the merge runs it.
pub fn signature(src: &str) -> Option<MergeSig> {
    crate::types::check_source(src).ok()?.1.into_iter().next()
}

/// A uniform draw in [0, 1) from the search's stream.
fn unit(seed: u64, point: usize, name: &str, element: usize) -> f64 {
    let h =
        mix64(seed ^ mix64(name_hash(name) ^ mix64(((point as u64) << 20) | (element as u64 + 1))));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Fractions of a task vector: drawn in [FRACTION_LOW, 1] whatever their default.
const FRACTIONS: [&str; 2] = ["density", "select_topk"];
const FRACTION_LOW: f64 = 0.05;
/// Numerical guards, never searched.
const GUARDS: [&str; 2] = ["eps", "tol"];

/// One value of parameter `name` around the default `d`, `span` times above or below
/// it (see the module comment).
fn around(name: &str, d: f32, u: f64, span: f64) -> f32 {
    if FRACTIONS.contains(&name) {
        return (FRACTION_LOW + (1.0 - FRACTION_LOW) * u) as f32;
    }
    let d = d as f64;
    let v = if d == 0.0 {
        2.0 * u - 1.0
    } else {
        d * span.powf(2.0 * u - 1.0)
    };
    v as f32
}

/// The `budget` points of a contender with signature `sig` for `n` models; `only`
/// restricts the search to the named parameters (the oracle searches `weight`).
pub fn search_points(
    sig: &MergeSig,
    n: usize,
    budget: usize,
    seed: u64,
    only: Option<&[&str]>,
) -> Vec<Params> {
    let mut points = vec![vec![]];
    for k in 1..budget {
        let mut p = vec![];
        for param in &sig.params {
            if only.is_some_and(|o| !o.contains(&param.name.as_str()))
                || GUARDS.contains(&param.name.as_str())
            {
                continue;
            }
            let name = param.name.as_str();
            match (&param.ty, &param.default) {
                (Ty::F32, Some(Const::F32(d))) => {
                    p.push((
                        param.name.clone(),
                        Const::F32(around(name, *d, unit(seed, k, name, 0), 4.0)),
                    ));
                }
                (Ty::List(e), Some(d)) if **e == Ty::F32 => {
                    let at = |i: usize| match d {
                        Const::F32(x) => Some(*x),
                        Const::List(xs) => match xs.get(i).or(xs.last()) {
                            Some(Const::F32(x)) => Some(*x),
                            _ => None,
                        },
                        _ => None,
                    };
                    let list: Option<Vec<Const>> = (0..n)
                        .map(|i| {
                            at(i).map(|x| Const::F32(around(name, x, unit(seed, k, name, i), 2.0)))
                        })
                        .collect();
                    if let Some(list) = list {
                        p.push((param.name.clone(), Const::List(list)));
                    }
                }
                _ => {}
            }
        }
        if p.is_empty() {
            // Nothing to search: every point would be the defaults.
            break;
        }
        points.push(p);
    }
    points
}

/// The best of a contender's dev scores (accuracy per point; None: failed): the
/// highest, the earliest of equals (the defaults win a tie).
pub fn best_point(dev: &[Option<f64>]) -> Option<usize> {
    let mut best: Option<(f64, usize)> = None;
    for (k, d) in dev.iter().enumerate() {
        if let Some(d) = d
            && best.is_none_or(|b| *d > b.0)
        {
            best = Some((*d, k));
        }
    }
    best.map(|b| b.1)
}

/// A point's parameters, short: `lambda=0.83 weight=[1.2,0.61,2.9]` (`defaults` for none).
pub fn show_point(p: &Params) -> String {
    if p.is_empty() {
        return "defaults".into();
    }
    let v = |c: &Const| match c {
        Const::F32(x) => format!("{x:.2}"),
        other => other.to_string(),
    };
    p.iter()
        .map(|(k, c)| match c {
            Const::List(xs) => {
                let items: Vec<String> = xs.iter().map(v).collect();
                format!("{k}=[{}]", items.join(","))
            }
            c => format!("{k}={}", v(c)),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(name: &str) -> MergeSig {
        signature(crate::stdlib::method(name).unwrap().source).unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_points_and_defaults_come_first() {
        let s = sig("ties");
        let a = search_points(&s, 3, 6, 7, None);
        assert_eq!(a, search_points(&s, 3, 6, 7, None));
        assert_ne!(a, search_points(&s, 3, 6, 8, None));
        assert_eq!(a.len(), 6);
        assert!(a[0].is_empty());
        // A larger budget extends a smaller one.
        assert_eq!(a[..4], search_points(&s, 3, 4, 7, None)[..]);
        for p in &a[1..] {
            // weight, density (lists of 3) and lambda; the bools keep their defaults.
            let names: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(names, ["weight", "density", "lambda"]);
            for (k, c) in p {
                let xs = match c {
                    Const::List(xs) => xs.clone(),
                    c => vec![c.clone()],
                };
                assert!(matches!(c, Const::F32(_)) || xs.len() == 3);
                let range = match (k.as_str(), c) {
                    ("density", _) => 0.05..=1.0,
                    (_, Const::List(_)) => 0.5..=2.0,
                    _ => 0.25..=4.0,
                };
                for x in xs {
                    let Const::F32(x) = x else { panic!("{x:?}") };
                    assert!(range.contains(&x), "{k} {x}");
                }
            }
        }
        // Common random numbers: task arithmetic's lambda takes ties' values.
        let t = search_points(&sig("task_arithmetic"), 3, 6, 7, None);
        let lambda = |p: &Params| p.iter().find(|(k, _)| k == "lambda").unwrap().1.clone();
        assert_eq!(lambda(&t[2]), lambda(&a[2]));
        // Fractions stay fractions; guards and parameterless methods are not searched.
        for p in &a[1..] {
            let Const::List(d) = &p[1].1 else { panic!() };
            assert!(
                d.iter()
                    .all(|x| matches!(x, Const::F32(v) if (0.05..=1.0).contains(v)))
            );
        }
        assert_eq!(search_points(&sig("karcher"), 3, 6, 7, None), vec![vec![]]);
        assert_eq!(search_points(&sig("model_stock"), 3, 6, 7, None).len(), 1);
        let m = search_points(&sig("multislerp"), 3, 3, 7, None);
        assert!(m[1].iter().all(|(k, _)| k == "weight"), "{m:?}");
        // The oracle's search touches only the weights.
        let o = search_points(&sig("task_arithmetic"), 3, 3, 7, Some(&["weight"]));
        assert!(o[1].len() == 1 && o[1][0].0 == "weight");
    }

    #[test]
    fn contenders_follow_the_number_of_models_and_ties_keep_the_earliest() {
        let (yes, no) = stdlib_contenders(3);
        let names: Vec<&str> = yes.iter().map(|c| c.name.as_str()).collect();
        assert!(names.contains(&"ties") && names.contains(&"task_arithmetic"));
        assert!(!names.contains(&"slerp") && !names.contains(&"nuslerp"));
        assert!(no.iter().any(|r| r.starts_with("slerp")), "{no:?}");
        let (yes2, _) = stdlib_contenders(2);
        assert!(yes2.iter().any(|c| c.name == "nuslerp"));
        assert_eq!(
            best_point(&[Some(0.5), None, Some(0.7), Some(0.7)]),
            Some(2)
        );
        assert_eq!(best_point(&[None, None]), None);
        assert_eq!(
            show_point(&vec![
                ("lambda".into(), Const::F32(0.5)),
                (
                    "weight".into(),
                    Const::List(vec![Const::F32(1.0), Const::F32(2.0)])
                )
            ]),
            "lambda=0.50 weight=[1.00,2.00]"
        );
    }
}
