//! Truncated SVD of one task vector with faer: exact (faer's thin SVD) for small
//! matrices, randomized for large ones (Halko, Martinsson and Tropp 2011: a Gaussian
//! range finder with `k = rank + OVERSAMPLE` columns, `POWER_ITERS` power iterations
//! re-orthonormalised by QR, then the thin SVD of the small `k x in` projection).
//!
//! Everything runs sequentially in f32 (faer without its rayon feature), and the
//! random test matrix comes from a seed and the tensor's name, so a tensor's result
//! does not depend on how many tensors are computed at once.

use crate::cancel::{Cancel, Stop};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};

/// Extra columns of the range finder beyond the rank.
pub const OVERSAMPLE: usize = 10;
/// Power iterations of the range finder (each one pass over `D^T` and one over `D`).
pub const POWER_ITERS: usize = 2;
/// Below this many rows or columns the exact SVD is cheap: always used.
const EXACT_BELOW: usize = 256;

/// Which SVD to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SvdMethod {
    /// Exact for small matrices (a side under 256, or a rank near the smaller side),
    /// randomized otherwise.
    Auto,
    /// faer's thin SVD of the whole matrix.
    Exact,
    /// The randomized range finder, then a small exact SVD.
    Randomized,
}

impl SvdMethod {
    pub fn parse(s: &str) -> Option<SvdMethod> {
        match s {
            "auto" => Some(SvdMethod::Auto),
            "exact" => Some(SvdMethod::Exact),
            "randomized" => Some(SvdMethod::Randomized),
            _ => None,
        }
    }

    /// Whether an `m x n` matrix at this rank is done exactly.
    pub fn is_exact(self, m: usize, n: usize, rank: usize) -> bool {
        let small = m.min(n);
        match self {
            SvdMethod::Exact => true,
            SvdMethod::Randomized => rank + OVERSAMPLE >= small,
            SvdMethod::Auto => small < EXACT_BELOW || 2 * (rank + OVERSAMPLE) >= small,
        }
    }
}

/// The top singular triplets of a matrix: `u` is `m x r`, `v` is `n x r`, `s` descending.
pub struct Truncated {
    pub u: Mat<f32>,
    pub s: Vec<f32>,
    pub v: Mat<f32>,
    /// Whether the exact SVD was used.
    pub exact: bool,
}

/// Why an SVD failed.
#[derive(Debug)]
pub enum SvdFailure {
    Stopped(Stop),
    /// faer's SVD did not converge (only on pathological input).
    NoConvergence,
}

/// The rank-`rank` truncated SVD of `d` (`m x n`, `rank <= min(m, n)`); `seed` keys the
/// randomized method's test matrix.
pub fn truncated_svd(
    d: MatRef<'_, f32>,
    rank: usize,
    method: SvdMethod,
    seed: u64,
    cancel: &Cancel,
) -> Result<Truncated, SvdFailure> {
    let (m, n) = d.shape();
    debug_assert!((1..=m.min(n)).contains(&rank));
    if method.is_exact(m, n, rank) {
        let svd = d.thin_svd().map_err(|_| SvdFailure::NoConvergence)?;
        return Ok(Truncated {
            u: svd.U().get(.., ..rank).to_owned(),
            s: (0..rank).map(|i| svd.S()[i]).collect(),
            v: svd.V().get(.., ..rank).to_owned(),
            exact: true,
        });
    }
    let k = (rank + OVERSAMPLE).min(m.min(n));
    let q = range_finder(d, k, seed, cancel)?;
    cancel.check().map_err(SvdFailure::Stopped)?;
    // The small projection Q^T D (k x n) and its exact SVD: D ~ Q Ub S V^T.
    let mut small = Mat::<f32>::zeros(k, n);
    matmul(&mut small, Accum::Replace, q.transpose(), d, 1.0, Par::Seq);
    let svd = small.thin_svd().map_err(|_| SvdFailure::NoConvergence)?;
    let mut u = Mat::<f32>::zeros(m, rank);
    matmul(
        &mut u,
        Accum::Replace,
        &q,
        svd.U().get(.., ..rank),
        1.0,
        Par::Seq,
    );
    Ok(Truncated {
        u,
        s: (0..rank).map(|i| svd.S()[i]).collect(),
        v: svd.V().get(.., ..rank).to_owned(),
        exact: false,
    })
}

/// An orthonormal `m x k` basis approximating the range of `d`'s top `k` directions.
fn range_finder(
    d: MatRef<'_, f32>,
    k: usize,
    seed: u64,
    cancel: &Cancel,
) -> Result<Mat<f32>, SvdFailure> {
    let (m, n) = d.shape();
    let mut rng = crate::semantics::rng::SplitMix64::new(seed);
    // Column-major fill: the draw order is fixed by (n, k) alone.
    let mut omega = Mat::<f32>::zeros(n, k);
    for j in 0..k {
        for i in 0..n {
            omega[(i, j)] = rng.normal();
        }
    }
    let mut y = Mat::<f32>::zeros(m, k);
    matmul(&mut y, Accum::Replace, d, &omega, 1.0, Par::Seq);
    let mut q = orthonormal(y.as_ref());
    let mut z = Mat::<f32>::zeros(n, k);
    for _ in 0..POWER_ITERS {
        cancel.check().map_err(SvdFailure::Stopped)?;
        matmul(&mut z, Accum::Replace, d.transpose(), &q, 1.0, Par::Seq);
        let qz = orthonormal(z.as_ref());
        matmul(&mut y, Accum::Replace, d, &qz, 1.0, Par::Seq);
        q = orthonormal(y.as_ref());
    }
    Ok(q)
}

/// The thin Q of a Householder QR (`rows x cols`, orthonormal columns).
pub fn orthonormal(a: MatRef<'_, f32>) -> Mat<f32> {
    a.qr().compute_thin_Q()
}

#[cfg(test)]
mod tests {
    /// faer picks its kernels through pulp's run-time dispatch. With pulp's `x86-v4`
    /// feature anywhere in the build (cargo unifies a crate's features) that dispatch
    /// takes AVX-512 on CPUs that have it, and the adapters' bits there differ from
    /// every other machine's: it must stop at AVX2's eight lanes.
    #[test]
    fn factorisations_stop_at_avx2() {
        struct Lanes;
        impl pulp::WithSimd for Lanes {
            type Output = usize;
            fn with_simd<S: pulp::Simd>(self, _: S) -> usize {
                S::F32_LANES
            }
        }
        assert!(pulp::Arch::new().dispatch(Lanes) <= 8);
    }
}
