//! mergekit's spherical methods: slerp.py, nuslerp.py, multislerp.py, karcher.py.

use super::{Rows, dot, norm, sum_of_products};

/// slerp(t, base, other): whole tensors, |dot| > 0.9995 falls back to lerp.
pub fn slerp(t: f64, base: &[f32], other: &[f32]) -> Vec<f32> {
    let t = t as f32;
    let unit = |v: &[f32]| -> Vec<f32> {
        let n = norm(v);
        if n > 1e-8 {
            v.iter().map(|x| x / n).collect()
        } else {
            v.to_vec()
        }
    };
    let d = sum_of_products(&unit(base), &unit(other)).clamp(-1.0, 1.0);
    if d.abs() > 0.9995 {
        return base
            .iter()
            .zip(other)
            .map(|(a, b)| (1.0 - t) * a + t * b)
            .collect();
    }
    let theta = d.acos();
    let s = theta.sin();
    let s0 = ((1.0 - t) * theta).sin() / s;
    let s1 = (t * theta).sin() / s;
    base.iter()
        .zip(other)
        .map(|(a, b)| s0 * a + s1 * b)
        .collect()
}

/// nuslerp() on one pair of fibres (gathered vectors).
fn nuslerp_pair(t: f32, v0: &[f32], v1: &[f32]) -> Vec<f32> {
    let n0 = norm(v0).max(1e-7);
    let n1 = norm(v1).max(1e-7);
    let u0: Vec<f32> = v0.iter().map(|x| x / n0).collect();
    let u1: Vec<f32> = v1.iter().map(|x| x / n1).collect();
    let c = sum_of_products(&u0, &u1).clamp(-1.0, 1.0);
    let theta = c.acos();
    let s = theta.sin();
    // 0.1.5: colinear (or opposite) where 1 - c^2 <= eps^2
    if 1.0 - c * c <= 1e-16 {
        return v0
            .iter()
            .zip(v1)
            .map(|(a, b)| (1.0 - t) * a + t * b)
            .collect();
    }
    let (c0, c1) = (((1.0 - t) * theta).sin(), (t * theta).sin());
    v0.iter()
        .zip(v1)
        .map(|(a, b)| (c0 * a + c1 * b) / s)
        .collect()
}

pub struct NuSlerp {
    pub weight: Vec<f64>,
    pub flatten: bool,
    pub row_wise: bool,
    pub use_base: bool,
}

/// NuSlerpTask.execute: models[0] at t = 0, models[1] at t = 1.
pub fn nuslerp(p: &NuSlerp, base: &[f32], models: &[Vec<f32>], shape: &[usize]) -> Vec<f32> {
    if models.len() == 1 {
        return models[0].clone();
    }
    let (wa, wb) = (p.weight[0] as f32, p.weight[1] as f32);
    let t = if (wa + wb).abs() < 1e-6 {
        0.5
    } else {
        wb / (wa + wb)
    };
    let (v0, v1) = if p.use_base {
        (super::sub(&models[0], base), super::sub(&models[1], base))
    } else {
        (models[0].clone(), models[1].clone())
    };
    let Rows { rows, cols } = Rows::of(shape);
    // Fibres as lists of flat indices.
    let fibres: Vec<Vec<usize>> = if p.flatten || shape.len() == 1 {
        vec![(0..base.len()).collect()]
    } else if p.row_wise {
        (0..cols)
            .map(|c| (0..rows).map(|r| r * cols + c).collect())
            .collect()
    } else {
        (0..rows)
            .map(|r| (0..cols).map(|c| r * cols + c).collect())
            .collect()
    };
    let mut out = vec![0.0f32; base.len()];
    for f in fibres {
        let a: Vec<f32> = f.iter().map(|&i| v0[i]).collect();
        let b: Vec<f32> = f.iter().map(|&i| v1[i]).collect();
        for (&i, v) in f.iter().zip(nuslerp_pair(t, &a, &b)) {
            out[i] = v;
        }
    }
    if p.use_base {
        out = super::add(&out, base);
    }
    out
}

pub struct MultiSlerp {
    pub weight: Vec<f64>,
    pub normalize_weights: bool,
    pub eps: f64,
    pub use_base: bool,
}

/// multislerp(); `None` where mergekit raises (cancelling weights, more than two models),
/// except where every model equals the base: mergec gives the base there.
pub fn multislerp(p: &MultiSlerp, base: &[f32], models: &[Vec<f32>]) -> Option<Vec<f32>> {
    if models.len() == 1 {
        return Some(models[0].clone());
    }
    let eps = p.eps as f32;
    let v: Vec<Vec<f32>> = models
        .iter()
        .map(|m| {
            if p.use_base {
                super::sub(m, base)
            } else {
                m.clone()
            }
        })
        .collect();
    let mut w: Vec<f32> = p.weight.iter().map(|&w| w as f32).collect();
    if p.normalize_weights {
        let s = w[1..].iter().fold(w[0], |a, b| a + b);
        w = w.iter().map(|x| x / s).collect();
    }
    let norms: Vec<f32> = v.iter().map(|x| norm(x)).collect();
    let units: Vec<Vec<f32>> = v
        .iter()
        .zip(&norms)
        .map(|(x, &n)| x.iter().map(|e| e / (n + eps)).collect())
        .collect();
    let weighted_sum = |xs: &[Vec<f32>]| -> Vec<f32> {
        let parts: Vec<Vec<f32>> = xs
            .iter()
            .zip(&w)
            .map(|(x, &wi)| super::scale(x, wi))
            .collect();
        super::sum_list(&parts)
    };
    let mean = weighted_sum(&units);
    let mean_norm = norm(&mean);
    let result = if mean_norm < eps {
        if models.len() != 2 {
            return norms.iter().all(|&n| n == 0.0).then(|| {
                let zero = vec![0.0; base.len()];
                if p.use_base {
                    super::add(base, &zero)
                } else {
                    zero
                }
            });
        }
        super::add(&super::scale(&v[0], w[0]), &super::scale(&v[1], w[1]))
    } else {
        let mhat: Vec<f32> = mean.iter().map(|x| x / mean_norm).collect();
        let tangents: Vec<Vec<f32>> = units
            .iter()
            .map(|u| {
                let d = sum_of_products(u, &mhat);
                u.iter().zip(&mhat).map(|(a, m)| a - d * m).collect()
            })
            .collect();
        let tr = weighted_sum(&tangents);
        let tn = norm(&tr) + eps;
        let avg_norm = norms
            .iter()
            .zip(&w)
            .map(|(n, w)| n * w)
            .fold(0.0f32, |a, b| a + b);
        let (c, s) = (tn.cos(), tn.sin() / tn);
        mhat.iter()
            .zip(&tr)
            .map(|(m, t)| (m * c + t * s) * avg_norm)
            .collect()
    };
    Some(if p.use_base {
        super::add(&result, base)
    } else {
        result
    })
}

/// karcher_merge_tensors() with uniform alphas over `points`.
pub fn karcher(points: &[Vec<f32>], max_iter: usize, tol: f64) -> Vec<f32> {
    if points.len() == 1 {
        return points[0].clone();
    }
    let tol = tol as f32;
    let alpha = 1.0 / points.len() as f32;
    let norms: Vec<f32> = points.iter().map(|p| norm(p)).collect();
    let units: Vec<Vec<f32>> = points
        .iter()
        .zip(&norms)
        .map(|(p, &n)| {
            if n == 0.0 {
                vec![0.0; p.len()]
            } else {
                p.iter().map(|x| x / n).collect()
            }
        })
        .collect();
    let valid: Vec<usize> = (0..points.len()).filter(|&i| norms[i] > tol).collect();
    if valid.is_empty() {
        return vec![0.0; points[0].len()];
    }
    let a = 1.0 / valid.len() as f32;
    let mut u = vec![0.0f32; points[0].len()];
    for &i in &valid {
        for (x, y) in u.iter_mut().zip(&units[i]) {
            *x += a * y;
        }
    }
    let nu = norm(&u);
    u = if nu < tol {
        units[valid[0]].clone()
    } else {
        u.iter().map(|x| x / nu).collect()
    };
    for _ in 0..max_iter {
        let mut step = vec![0.0f32; u.len()];
        for &i in &valid {
            let d = dot(&u, &units[i]).clamp(-1.0, 1.0);
            let theta = d.acos();
            if theta < tol {
                continue;
            }
            let f = a * (theta / theta.sin());
            for ((s, ui), x) in step.iter_mut().zip(&units[i]).zip(&u) {
                *s += f * (ui - d * x);
            }
        }
        let sn = norm(&step);
        if sn < tol {
            break;
        }
        let moved: Vec<f32> = u
            .iter()
            .zip(&step)
            .map(|(x, s)| sn.cos() * x + sn.sin() * (s / sn))
            .collect();
        let mn = norm(&moved);
        u = if mn > tol {
            moved.iter().map(|x| x / mn).collect()
        } else {
            moved
        };
    }
    let s: f32 = norms.iter().map(|n| alpha * n).sum::<f32>();
    u.iter().map(|x| s * x).collect()
}
