//! linear.py, sce.py, model_stock.py, nearswap.py, and the Self-Developing
//! paper's Algorithm A.

use super::{Rows, norm, sign, sub, sum_list, sum_of_products};

/// LinearMergeTask over `models` only (the base is not a point here).
pub fn linear(weight: &[f64], normalize: bool, models: &[Vec<f32>]) -> Vec<f32> {
    let w: Vec<f32> = weight.iter().map(|&w| w as f32).collect();
    let parts: Vec<Vec<f32>> = models
        .iter()
        .zip(&w)
        .map(|(m, &wi)| super::scale(m, wi))
        .collect();
    let res = sum_list(&parts);
    if !normalize {
        return res;
    }
    let total = w[1..].iter().fold(w[0], |a, b| a + b);
    res.iter().map(|v| v / total).collect()
}

/// sce_merge(): variance top-k selection, sign election, mean-square weights.
pub fn sce(select_topk: f64, base: &[f32], models: &[Vec<f32>]) -> Vec<f32> {
    let n = base.len();
    let k_models = models.len();
    let mut tvs: Vec<Vec<f32>> = models.iter().map(|m| sub(m, base)).collect();
    if select_topk < 1.0 {
        // Population variance per element, two-pass in f32; exactly 0 where all agree.
        let var: Vec<f32> = (0..n)
            .map(|i| {
                let col: Vec<f32> = tvs.iter().map(|t| t[i]).collect();
                if col.iter().all(|&v| v == col[0]) {
                    return 0.0;
                }
                let mean = col[1..].iter().fold(col[0], |a, b| a + b) / k_models as f32;
                let dev: Vec<f32> = col.iter().map(|v| (v - mean) * (v - mean)).collect();
                dev[1..].iter().fold(dev[0], |a, b| a + b) / k_models as f32
            })
            .collect();
        let nonzero = var.iter().filter(|&&v| v != 0.0).count();
        // torch: int64 tensor * Python float -> float32, then int()
        let k = (nonzero as f32 * select_topk as f32) as usize;
        let mut keep = vec![false; n];
        for &i in super::by_magnitude_desc(&var).iter().take(k) {
            keep[i] = true;
        }
        for t in tvs.iter_mut() {
            for (v, &kp) in t.iter_mut().zip(&keep) {
                *v *= if kp { 1.0 } else { 0.0 };
            }
        }
    }
    let total = sum_list(&tvs);
    let omega: Vec<f32> = tvs
        .iter()
        .map(|t| (t.iter().map(|&v| (v * v) as f64).sum::<f64>() / n as f64) as f32)
        .collect();
    let wsum = omega[1..].iter().fold(omega[0], |a, b| a + b);
    let w: Vec<f32> = if wsum.abs() < 1e-6 {
        vec![1.0 / k_models as f32; k_models]
    } else {
        omega.iter().map(|o| o / wsum).collect()
    };
    (0..n)
        .map(|i| {
            let elected = if total[i] >= 0.0 { 1.0 } else { -1.0 };
            let ew: Vec<f32> = (0..k_models)
                .map(|m| w[m] * if sign(tvs[m][i]) == elected { 1.0 } else { 0.0 })
                .collect();
            let mut merged = tvs[0][i] * ew[0];
            let mut div = ew[0];
            for m in 1..k_models {
                merged += tvs[m][i] * ew[m];
                div += ew[m];
            }
            base[i] + merged / div.max(1e-6)
        })
        .collect()
}

/// ModelStockMergeTask; `None` with fewer than two models (mergekit refuses them).
pub fn model_stock(
    filter_wise: bool,
    base: &[f32],
    models: &[Vec<f32>],
    shape: &[usize],
) -> Option<Vec<f32>> {
    let n_models = models.len();
    if n_models < 2 {
        return None;
    }
    let Rows { rows, cols } = if filter_wise {
        Rows::of(shape)
    } else {
        Rows {
            rows: 1,
            cols: base.len(),
        }
    };
    let offsets: Vec<Vec<f32>> = models.iter().map(|m| sub(m, base)).collect();
    let mut cos_sum = vec![0.0f32; rows];
    let mut pairs = 0;
    for i in 0..n_models {
        for j in i + 1..n_models {
            pairs += 1;
            for (r, c) in cos_sum.iter_mut().enumerate() {
                let a = &offsets[i][r * cols..(r + 1) * cols];
                let b = &offsets[j][r * cols..(r + 1) * cols];
                let cos = sum_of_products(a, b) / (norm(a) * norm(b)).max(1e-6);
                *c += cos.clamp(-1.0, 1.0);
            }
        }
    }
    let n = n_models as f32;
    let avg: Vec<f32> = sum_list(models).iter().map(|v| v / n).collect();
    let mut out = vec![0.0f32; base.len()];
    for (r, &sum) in cos_sum.iter().enumerate() {
        let c = sum / pairs as f32;
        let den = 1.0 + (n - 1.0) * c;
        // 0.1.5: the base where the denominator vanishes
        let t = if den.abs() < 1e-6 { 0.0 } else { n * c / den };
        for i in r * cols..(r + 1) * cols {
            out[i] = t * avg[i] + (1.0 - t) * base[i];
        }
    }
    Some(out)
}

/// nearswap_merge() with the first model.
pub fn nearswap(t: f64, base: &[f32], other: &[f32]) -> Vec<f32> {
    let t = t as f32;
    base.iter()
        .zip(other)
        .map(|(&a, &b)| {
            let w = (t / (a - b).abs().max(1e-6)).clamp(0.0, 1.0);
            w * b + (1.0 - w) * a
        })
        .collect()
}

/// Algorithm A: fold the task vectors, averaging the running merge with each
/// further task vector's row mean (broadcast over the row).
pub fn algorithm_a(base: &[f32], models: &[Vec<f32>], shape: &[usize]) -> Vec<f32> {
    let Rows { rows, cols } = Rows::of(shape);
    let mut acc = sub(&models[0], base);
    for m in &models[1..] {
        let tau = sub(m, base);
        for r in 0..rows {
            let row = &tau[r * cols..(r + 1) * cols];
            let mean = (row.iter().map(|&v| v as f64).sum::<f64>() / cols as f64) as f32;
            for a in &mut acc[r * cols..(r + 1) * cols] {
                *a = (*a + mean) / 2.0;
            }
        }
    }
    super::add(base, &acc)
}
