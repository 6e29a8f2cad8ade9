//! mergekit's generalized task arithmetic (generalized_task_arithmetic.py and
//! sparsify.py): task_arithmetic, ties, dare_*, breadcrumbs*, della*.

use super::rng::Stream;
use super::{Rows, by_magnitude_desc, py_count, sign, sum_list, sum64};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sparsify {
    None,
    /// ties: the top floor(density * n) magnitudes
    Magnitude,
    /// dare: keep with probability density
    Random,
    /// breadcrumbs: drop floor(gamma * n) largest, keep the next floor(density * n)
    Outliers,
    /// della: rank-dependent keep probabilities per row
    MagPrune,
}

/// Every knob of a GTA merge; per-model values are the decimals a user writes.
#[derive(Clone, Debug)]
pub struct Gta {
    pub sparsify: Sparsify,
    pub consensus: bool,
    pub weight: Vec<f64>,
    pub density: Vec<f64>,
    pub gamma: Vec<f64>,
    pub epsilon: Vec<f64>,
    pub lambda: f64,
    pub normalize: bool,
    pub rescale: bool,
    pub paper_rescale: bool,
}

impl Gta {
    /// mergekit's registry defaults for a method, for `k` models.
    pub fn defaults(method: &str, k: usize) -> Gta {
        let (sparsify, consensus, normalize, rescale) = match method {
            "task_arithmetic" => (Sparsify::None, false, false, false),
            "ties" => (Sparsify::Magnitude, true, true, false),
            "dare_linear" => (Sparsify::Random, false, false, true),
            "dare_ties" => (Sparsify::Random, true, false, true),
            "breadcrumbs" => (Sparsify::Outliers, false, false, false),
            "breadcrumbs_ties" => (Sparsify::Outliers, true, false, false),
            "della" => (Sparsify::MagPrune, true, true, true),
            "della_linear" => (Sparsify::MagPrune, false, false, true),
            other => panic!("not a GTA method: {other}"),
        };
        Gta {
            sparsify,
            consensus,
            weight: vec![1.0; k],
            density: vec![1.0; k],
            gamma: vec![0.01; k],
            epsilon: vec![0.15; k],
            lambda: 1.0,
            normalize,
            rescale,
            paper_rescale: false,
        }
    }
}

/// rescaled_masked_tensor with the L1 norm (eps 1e-7, strict <).
fn l1_rescale(tau: &[f32], kept: Vec<f32>, rescale: bool) -> Vec<f32> {
    if !rescale {
        return kept;
    }
    let before = sum64(&tau.iter().map(|v| v.abs()).collect::<Vec<_>>());
    let after = sum64(&kept.iter().map(|v| v.abs()).collect::<Vec<_>>());
    if before < 1e-7 || after < 1e-7 {
        return kept;
    }
    let f = before / after;
    kept.into_iter().map(|v| v * f).collect()
}

fn apply_mask(tau: &[f32], keep: &[bool]) -> Vec<f32> {
    tau.iter()
        .zip(keep)
        .map(|(&v, &k)| v * if k { 1.0 } else { 0.0 })
        .collect()
}

/// magnitude(): exactly max(1, int(density * n)) largest |tau|; nothing for density <= 0.
fn magnitude(tau: &[f32], density: f64, rescale: bool) -> Vec<f32> {
    if density >= 1.0 {
        return tau.to_vec();
    }
    if density <= 0.0 {
        return vec![0.0; tau.len()];
    }
    let k = py_count(density, tau.len()).max(1);
    let mut keep = vec![false; tau.len()];
    for &i in by_magnitude_desc(tau).iter().take(k) {
        keep[i] = true;
    }
    l1_rescale(tau, apply_mask(tau, &keep), rescale)
}

/// magnitude_outliers(): `order[n_bot : n_bot + target_n]` of the ascending order.
fn outliers(tau: &[f32], density: f64, gamma: f64, rescale: bool) -> Vec<f32> {
    if density >= 1.0 {
        return tau.to_vec();
    }
    let n = tau.len() as i64;
    let target = py_count(density, tau.len()) as i64;
    let n_top = py_count(gamma, tau.len()) as i64;
    let n_bot = (n - target - n_top).max(0) as usize;
    // Ascending order with ties the reverse of the descending one (lower index counts as larger).
    let mut ascending = by_magnitude_desc(tau);
    ascending.reverse();
    let mut keep = vec![false; tau.len()];
    for &i in &ascending[n_bot..(n_bot + target as usize).min(tau.len())] {
        keep[i] = true;
    }
    l1_rescale(tau, apply_mask(tau, &keep), rescale)
}

/// DARE's bernoulli(): keep with probability density, then L1 or the paper's 1/density.
fn random(tau: &[f32], density: f64, g: &Gta, stream: &Stream) -> Vec<f32> {
    if density >= 1.0 {
        return tau.to_vec();
    }
    let p = density as f32;
    let keep = stream.keep(&vec![p; tau.len()]);
    let kept = apply_mask(tau, &keep);
    if g.paper_rescale {
        return if p > 0.0 {
            kept.into_iter().map(|v| v / p).collect()
        } else {
            kept
        };
    }
    l1_rescale(tau, kept, g.rescale)
}

/// della_magprune(): per row, rank r (ascending |tau|, ties lower index first)
/// kept with probability density - eps + 2 eps r / (n - 1).
fn magprune(tau: &[f32], density: f64, eps: f64, rows: Rows, g: &Gta, s: &Stream) -> Vec<f32> {
    if density >= 1.0 {
        return tau.to_vec();
    }
    if density <= 0.0 {
        return vec![0.0; tau.len()];
    }
    let (d, e) = (density as f32, eps as f32);
    let mut p = vec![0.0f32; tau.len()];
    for r in 0..rows.rows {
        let row = &tau[r * rows.cols..(r + 1) * rows.cols];
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&i, &j| row[i].abs().total_cmp(&row[j].abs()).then(i.cmp(&j)));
        let denom = (rows.cols.max(2) - 1) as f32;
        for (rank, &i) in order.iter().enumerate() {
            let rank_norm = rank as f32 / denom;
            p[r * rows.cols + i] = (d - e) + rank_norm * 2.0 * e;
        }
    }
    let keep = s.keep(&p);
    if g.paper_rescale {
        return (0..tau.len())
            .map(|i| if keep[i] { tau[i] / p[i] } else { 0.0 })
            .collect();
    }
    l1_rescale(tau, apply_mask(tau, &keep), g.rescale)
}

/// GTATask.execute for one tensor.
pub fn gta(
    g: &Gta,
    base: &[f32],
    models: &[Vec<f32>],
    shape: &[usize],
    seed: u64,
    tensor: &str,
) -> Vec<f32> {
    let rows = Rows::of(shape);
    let deltas: Vec<Vec<f32>> = models
        .iter()
        .enumerate()
        .map(|(m, x)| {
            let tau: Vec<f32> = x.iter().zip(base).map(|(a, b)| a - b).collect();
            let stream = Stream::new(seed, tensor, m, 0);
            match g.sparsify {
                Sparsify::None => tau,
                Sparsify::Magnitude => magnitude(&tau, g.density[m], g.rescale),
                Sparsify::Random => random(&tau, g.density[m], g, &stream),
                Sparsify::Outliers => outliers(&tau, g.density[m], g.gamma[m], g.rescale),
                Sparsify::MagPrune => magprune(&tau, g.density[m], g.epsilon[m], rows, g, &stream),
            }
        })
        .collect();
    let w: Vec<f32> = g.weight.iter().map(|&w| w as f32).collect();
    let wd: Vec<Vec<f32>> = deltas
        .iter()
        .zip(&w)
        .map(|(d, &w)| d.iter().map(|v| v * w).collect())
        .collect();
    let n = base.len();
    let mixed: Vec<f32> = if g.consensus {
        let total = sum_list(&wd);
        let mut out = vec![0.0f32; n];
        for i in 0..n {
            let elected = if total[i] >= 0.0 { 1.0 } else { -1.0 };
            let agree: Vec<f32> = wd
                .iter()
                .map(|x| if sign(x[i]) == elected { 1.0 } else { 0.0 })
                .collect();
            let mut mix = wd[0][i] * agree[0];
            let mut div = w[0] * agree[0];
            for m in 1..wd.len() {
                mix += wd[m][i] * agree[m];
                div += w[m] * agree[m];
            }
            if div == 0.0 {
                div = 1.0;
            }
            out[i] = if g.normalize { mix / div } else { mix };
        }
        out
    } else {
        let total = sum_list(&wd);
        let mut div = w[1..].iter().fold(w[0], |a, b| a + b);
        if div.abs() < 1e-8 {
            div = 1.0;
        }
        if g.normalize {
            total.iter().map(|v| v / div).collect()
        } else {
            total
        }
    };
    let lambda = g.lambda as f32;
    base.iter()
        .zip(&mixed)
        .map(|(b, m)| b + lambda * m)
        .collect()
}
