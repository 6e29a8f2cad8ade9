//! Shared helpers for the stdlib tests: test tensors, running a stdlib method
//! through the public API, parameter overrides, and comparisons.

#![allow(dead_code)]

use mergec::interp::{Context, Tensor, TensorFacts, run_merge};
use mergec::types::{CheckedMerge, Const, instantiate_merge};

/// The run seed and tensor name every test merge sees (they key the random masks).
pub const SEED: u64 = 7;
pub const TENSOR: &str = "model.layers.2.mlp.down_proj.weight";

/// Odd sizes, 1-D and 2-D, including single rows and columns.
pub const SHAPES: &[&[usize]] = &[&[1], &[3], &[50], &[783], &[3, 50], &[50, 3], &[1, 783]];

/// Test data: SplitMix64 draws (independent of mergec's generator).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x1234_5678)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-12);
        let u2 = self.uniform();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// What the candidate models look like relative to the base.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// base ~ N(0, 1); task vectors = a shared direction plus per-model noise
    Normal,
    /// every model equals the base (all-zero task vectors)
    ZeroDelta,
    /// base in eighths; task vectors of +-0.25 or 0: equal magnitudes, exact sign ties
    EqualMagnitude,
    /// model m: the base (m % 3 == 0), all zeros (m % 3 == 1), or Normal (m % 3 == 2)
    Mixed,
    /// every model is the base plus the same Normal task vector (identical models)
    SameDelta,
    /// Normal, but model 1 mirrors model 0 through the base (opposite task vectors)
    Opposed,
    /// base ~ 1e-3 N(0, 1), task vectors of model m ~ 1e-9, 1e-4, 1e-6: the small-norm
    /// guards and eps constants in play
    Tiny,
}

pub const KINDS: &[Kind] = &[
    Kind::Normal,
    Kind::ZeroDelta,
    Kind::EqualMagnitude,
    Kind::Mixed,
    Kind::SameDelta,
    Kind::Opposed,
    Kind::Tiny,
];

#[derive(Clone, Debug)]
pub struct Case {
    pub shape: Vec<usize>,
    pub base: Vec<f32>,
    pub models: Vec<Vec<f32>>,
    pub kind: Kind,
    pub label: String,
}

pub fn case(shape: &[usize], k: usize, kind: Kind, seed: u64) -> Case {
    let n: usize = shape.iter().product();
    let mut rng = Rng::new(seed ^ (n as u64) << 8 ^ (k as u64) << 40 ^ kind as u64);
    let scale = if kind == Kind::Tiny { 1e-3 } else { 1.0 };
    let base: Vec<f32> = if kind == Kind::EqualMagnitude {
        (0..n).map(|_| (rng.below(17) as f32 - 8.0) / 8.0).collect()
    } else {
        (0..n).map(|_| scale * rng.normal()).collect()
    };
    let shared: Vec<f32> = (0..n).map(|_| 0.03 * rng.normal()).collect();
    let noisy_scaled = |rng: &mut Rng, delta: f32| -> Vec<f32> {
        (0..n)
            .map(|i| base[i] + delta * (shared[i] + 0.05 * rng.normal()))
            .collect()
    };
    let noisy = |rng: &mut Rng| noisy_scaled(rng, 1.0);
    let same = noisy(&mut rng);
    let mut models: Vec<Vec<f32>> = (0..k)
        .map(|m| match kind {
            Kind::Normal => noisy(&mut rng),
            Kind::ZeroDelta => base.clone(),
            Kind::EqualMagnitude => (0..n)
                .map(|i| base[i] + [0.25, -0.25, 0.0][rng.below(3) as usize])
                .collect(),
            Kind::Mixed => match m % 3 {
                0 => base.clone(),
                1 => vec![0.0; n],
                _ => noisy(&mut rng),
            },
            Kind::SameDelta => same.clone(),
            Kind::Opposed => noisy(&mut rng),
            Kind::Tiny => noisy_scaled(&mut rng, [2e-8, 2e-3, 2e-5][m % 3]),
        })
        .collect();
    if kind == Kind::Opposed && k > 1 {
        models[1] = (0..n).map(|i| base[i] - (models[0][i] - base[i])).collect();
    }
    Case {
        shape: shape.to_vec(),
        base,
        models,
        kind,
        label: format!("{kind:?} shape {shape:?} with {k} model(s)"),
    }
}

/// Every case of the sweep: each shape, 1 to 3 models, each kind.
pub fn all_cases(seed: u64) -> Vec<Case> {
    let mut out = Vec::new();
    for shape in SHAPES {
        for k in 1..=3 {
            for &kind in KINDS {
                out.push(case(shape, k, kind, seed));
            }
        }
    }
    out
}

/// A stdlib method checked for 1-D and 2-D tensors.
pub struct Method {
    pub name: String,
    pub params: Vec<String>,
    by_rank: Vec<CheckedMerge>,
}

impl Method {
    pub fn new(name: &str) -> Method {
        let m = mergec::stdlib::method(name).unwrap_or_else(|| panic!("no stdlib method {name}"));
        let by_rank = (1..=2)
            .map(|rank| {
                instantiate_merge(&m.program, name, rank)
                    .unwrap_or_else(|d| panic!("{name} for rank {rank}: {d:?}"))
            })
            .collect();
        Method {
            name: name.to_string(),
            params: m.sig.params.iter().map(|p| p.name.clone()).collect(),
            by_rank,
        }
    }

    pub fn has(&self, param: &str) -> bool {
        self.params.iter().any(|p| p == param)
    }

    /// Runs on a case; non-finite results come back as they are.
    pub fn run(&self, c: &Case, overrides: &[(String, Const)]) -> Result<Vec<f32>, String> {
        let t = |d: &Vec<f32>| Tensor::new(c.shape.clone(), d.clone());
        let models: Vec<Tensor> = c.models.iter().map(t).collect();
        let ctx = Context::new(SEED, TensorFacts::from_name(TENSOR, 4));
        let checked = &self.by_rank[c.shape.len() - 1];
        run_merge(checked, &t(&c.base), &models, overrides, &ctx, true)
            .map(|t| t.data)
            .map_err(|e| format!("{}: {e}", self.name))
    }

    /// Runs, keeping only the parameters this method declares.
    pub fn run_with(&self, c: &Case, params: &[(String, Const)]) -> Vec<f32> {
        let own: Vec<(String, Const)> = params
            .iter()
            .filter(|(n, _)| self.has(n))
            .cloned()
            .collect();
        self.run(c, &own)
            .unwrap_or_else(|e| panic!("{} on {}: {e}", self.name, c.label))
    }
}

pub fn f(name: &str, v: f64) -> (String, Const) {
    (name.to_string(), Const::F32(v as f32))
}

pub fn fl(name: &str, vs: &[f64]) -> (String, Const) {
    let list = vs.iter().map(|&v| Const::F32(v as f32)).collect();
    (name.to_string(), Const::List(list))
}

pub fn b(name: &str, v: bool) -> (String, Const) {
    (name.to_string(), Const::Bool(v))
}

pub fn int(name: &str, v: i64) -> (String, Const) {
    (name.to_string(), Const::Int(v))
}

/// The first `k` entries of a per-model pattern, cycling when it is shorter.
pub fn per_model(pattern: &[f64], k: usize) -> Vec<f64> {
    (0..k).map(|i| pattern[i % pattern.len()]).collect()
}

/// Largest |got - want| relative to the reference's largest magnitude; NaN
/// positions must coincide. Returns the relative error.
pub fn rel_error(got: &[f32], want: &[f32], what: &str) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let mut worst = 0.0f32;
    let mut scale = 0.0f32;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.is_nan(),
            w.is_nan(),
            "{what}: element {i} is {g}, reference {w}"
        );
        if w.is_finite() {
            scale = scale.max(w.abs());
        }
        if g.is_finite() && w.is_finite() {
            worst = worst.max((g - w).abs());
        } else if !g.is_nan() {
            assert_eq!(g, w, "{what}: element {i}");
        }
    }
    if worst == 0.0 { 0.0 } else { worst / scale }
}

pub fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) -> f32 {
    let e = rel_error(got, want, what);
    if e > tol {
        let i = got
            .iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs())
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|x| x.0)
            .unwrap_or(0);
        panic!(
            "{what}: relative error {e:e} > {tol:e} (worst at {i}: got {}, want {})",
            got[i], want[i]
        );
    }
    e
}

/// Exactly the same entries left at the base value (the masks agree exactly).
pub fn assert_same_support(got: &[f32], want: &[f32], base: &[f32], what: &str) {
    for i in 0..base.len() {
        assert_eq!(
            got[i] == base[i],
            want[i] == base[i],
            "{what}: element {i} kept/dropped differently (got {}, want {}, base {})",
            got[i],
            want[i],
            base[i]
        );
    }
}

pub type Params = Vec<(String, mergec::types::Const)>;

/// Runs `method` with each parameter setting (given the model count) on every
/// case; `reference` gives the expected tensor, or None where the merge must
/// fail (non-finite output).
pub fn sweep(
    method: &str,
    settings: impl Fn(usize) -> Vec<Params>,
    tol: f32,
    reference: impl Fn(&Case, usize) -> Option<Vec<f32>>,
) {
    let m = Method::new(method);
    let mut worst = 0.0f32;
    let mut runs = 0;
    for c in all_cases(2) {
        for (i, params) in settings(c.models.len()).iter().enumerate() {
            let what = format!("{method} setting {i} on {}", c.label);
            let got = m.run_with(&c, params);
            match reference(&c, i) {
                Some(want) => worst = worst.max(assert_close(&got, &want, tol, &what)),
                None => assert!(got.iter().any(|v| !v.is_finite()), "{what}: must fail"),
            }
            runs += 1;
        }
    }
    eprintln!("{method}: {runs} runs, worst relative error {worst:e}");
}

/// No overrides first, then one setting per row of a grid.
pub fn grid_settings<T: Copy>(grid: &[T], k: usize, f: impl Fn(T, usize) -> Params) -> Vec<Params> {
    let mut out = vec![vec![]];
    out.extend(grid.iter().map(|&g| f(g, k)));
    out
}
