//! Plain Rust reference implementations of mergekit 0.1.x merge methods, written
//! from mergekit's Python (see /tmp/mergekit-notes.md) and the stdlib headers,
//! independently of the interpreter. Elementwise arithmetic is f32 like torch's
//! float32; whole-tensor sums accumulate in f64 and round to f32.

#![allow(dead_code)]

pub mod gta;
pub mod misc;
pub mod rng;
pub mod sphere;

/// A tensor's layout as rows of `cols` entries (a 1-D tensor is one row).
#[derive(Clone, Copy, Debug)]
pub struct Rows {
    pub rows: usize,
    pub cols: usize,
}

impl Rows {
    pub fn of(shape: &[usize]) -> Rows {
        match shape {
            [n] => Rows { rows: 1, cols: *n },
            [r, c] => Rows { rows: *r, cols: *c },
            _ => panic!("reference: only 1-D and 2-D tensors"),
        }
    }
}

/// -1, 0 or 1 (0 stays 0, unlike f32::signum).
pub fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Sum of all entries, accumulated in f64.
pub fn sum64(x: &[f32]) -> f32 {
    x.iter().map(|&v| v as f64).sum::<f64>() as f32
}

/// L2 norm of all entries, accumulated in f64.
pub fn norm(x: &[f32]) -> f32 {
    x.iter()
        .map(|&v| (v as f64) * (v as f64))
        .sum::<f64>()
        .sqrt() as f32
}

/// Dot product, accumulated in f64.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| x as f64 * y as f64)
        .sum::<f64>() as f32
}

/// torch's `(a * b).sum()`: products rounded to f32, then summed (in f64 here).
pub fn sum_of_products(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(&x, &y)| (x * y) as f64).sum::<f64>() as f32
}

pub fn sub(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

pub fn scale(a: &[f32], s: f32) -> Vec<f32> {
    a.iter().map(|x| x * s).collect()
}

/// Elementwise sum of several vectors in list order, the first one starting it
/// (like a Python `sum` or torch's sum over a stacked dim 0).
pub fn sum_list(xs: &[Vec<f32>]) -> Vec<f32> {
    let mut acc = xs[0].clone();
    for x in &xs[1..] {
        for (a, v) in acc.iter_mut().zip(x) {
            *a += v;
        }
    }
    acc
}

/// Indices ordered by |x| descending, ties by lower index first.
pub fn by_magnitude_desc(x: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&i, &j| x[j].abs().total_cmp(&x[i].abs()).then(i.cmp(&j)));
    idx
}

/// Python's int(fraction * n) for a fraction the user wrote as a decimal.
pub fn py_count(fraction: f64, n: usize) -> usize {
    let v = fraction * n as f64;
    if v <= 0.0 { 0 } else { v.trunc() as usize }
}
