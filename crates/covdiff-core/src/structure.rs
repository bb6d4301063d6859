//! Covariance-structure analysis of a dataset (K-DCT paper, Fig. 1B, 5, 6).
//!
//! For the marginal covariance `Sigma` (`n x n`, `n = C D`, `D = d^2`):
//! - the nearest sum of `k` Kronecker products `colour (C x C) (x) space (D x D)`,
//!   by Van Loan & Pitsianis: the rank-`k` truncation of the rearrangement
//!   `R(Sigma)` (`C^2 x D^2`, row `(c1, c2)` holding block `Sigma_{c1 c2}`);
//! - for the best single product's spatial factor `S`: the nearest
//!   DCT-diagonal matrix `F2^T diag(diag(F2 S F2^T)) F2` (exact, since `F2` is
//!   orthonormal), and the nearest sums of vertical (x) horizontal products;
//! - the K-DCT model `diag(e) + A (x) F2^T diag(lam) F2`, fitted by alternating
//!   the two projections above with `e = max(diag(residual), 0)`;
//! - the rank-`k` eigen-truncation of `Sigma`, for comparison.
//!
//! Errors are normalised squared Frobenius errors `||Sigma - approx||^2 / ||Sigma||^2`.

use crate::data::ImageSet;
use crate::dense::dct2_matrix;
use nalgebra::{DMatrix, DVector};
use serde::Serialize;

/// Rounds of the alternating K-DCT fit.
const FIT_ROUNDS: usize = 60;

/// What the analysis found; matrices for the figure are kept out of the JSON.
#[derive(Clone, Debug, Serialize)]
pub struct StructureFit {
    pub channels: usize,
    pub size: usize,
    pub images: usize,
    /// Error of the best sum of k colour (x) space products, k = 1..=C^2.
    pub kronecker_errors: Vec<f64>,
    /// Error of the rank-k truncation of Sigma, k = 1..=len.
    pub svd_errors: Vec<f64>,
    /// Error of the best sum of k vertical (x) horizontal products for S, k = 1..=len.
    pub spatial_kronecker_errors: Vec<f64>,
    /// Error of the nearest DCT-diagonal matrix to S (relative to ||S||^2).
    pub spatial_dct_error: f64,
    /// Error of the fitted K-DCT model for Sigma.
    pub kdct_error: f64,
    /// K-DCT colour matrix `A = L L^T` (C x C, row-major).
    pub colour: Vec<f64>,
    /// K-DCT spectrum `lam` (d x d, row-major).
    pub lam: Vec<f64>,
    /// Mean of the K-DCT diagonal term `e`.
    pub mean_e: f64,
    #[serde(skip)]
    pub kdct_dense: DMatrix<f64>,
}

/// The marginal covariance of a dataset, `n x n`; `progress` gets the number of images done.
pub fn marginal_covariance(set: &ImageSet, mut progress: impl FnMut(usize)) -> DMatrix<f64> {
    let n = set.dim();
    let count = set.len();
    let mut mean = DVector::<f64>::zeros(n);
    for i in 0..count {
        mean += DVector::from_iterator(n, set.image(i).iter().map(|&x| x as f64));
    }
    mean /= count.max(1) as f64;
    let mut acc = DMatrix::<f64>::zeros(n, n);
    let chunk = 1024;
    for start in (0..count).step_by(chunk) {
        let rows = chunk.min(count - start);
        let x = DMatrix::from_fn(rows, n, |r, c| set.image(start + r)[c] as f64 - mean[c]);
        acc += x.transpose() * &x;
        progress(start + rows);
    }
    acc / (count.max(2) - 1) as f64
}

/// Rearrange `M` (`(p q) x (p q)`, blocks `q x q` indexed by `(a, b)` in `p x p`)
/// to `p^2 x q^2` with row `(a, b)` = `vec(M_ab)`, so that `M = X (x) Y` iff `R(M) = vec(X) vec(Y)^T`.
fn rearrange(m: &DMatrix<f64>, p: usize, q: usize) -> DMatrix<f64> {
    DMatrix::from_fn(p * p, q * q, |row, col| {
        let (a, b) = (row / p, row % p);
        let (i, j) = (col / q, col % q);
        m[(a * q + i, b * q + j)]
    })
}

/// Singular values and the leading pair `(u1, v1)` of a matrix with few rows.
fn leading_svd(r: &DMatrix<f64>) -> (Vec<f64>, DVector<f64>, DVector<f64>) {
    let eig = (r * r.transpose()).symmetric_eigen();
    let mut order: Vec<usize> = (0..eig.eigenvalues.len()).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let sv: Vec<f64> = order.iter().map(|&k| eig.eigenvalues[k].max(0.0).sqrt()).collect();
    let u1 = eig.eigenvectors.column(order[0]).into_owned();
    let v1 = if sv[0] > 0.0 { r.transpose() * &u1 / sv[0] } else { DVector::zeros(r.ncols()) };
    (sv, u1, v1)
}

/// `sum_{i >= k} s_i^2 / sum s_i^2` for k = 1..=len.
fn tail_errors(sq: &[f64], len: usize) -> Vec<f64> {
    let total: f64 = sq.iter().sum::<f64>().max(1e-300);
    // abs() also turns a rounding -0.0 into 0.0.
    (1..=len.min(sq.len())).map(|k| (sq[k..].iter().sum::<f64>() / total).max(0.0).abs()).collect()
}

/// Nearest single Kronecker product `A (x) S` (Van Loan-Pitsianis), with `trace(A) >= 0`.
fn nearest_kronecker(m: &DMatrix<f64>, c: usize, dd: usize) -> (DMatrix<f64>, DMatrix<f64>, Vec<f64>) {
    let (sv, u1, v1) = leading_svd(&rearrange(m, c, dd));
    let s1 = sv[0].sqrt();
    let mut a = DMatrix::from_row_slice(c, c, (u1 * s1).as_slice());
    let mut s = DMatrix::from_row_slice(dd, dd, (v1 * s1).as_slice());
    if a.trace() < 0.0 {
        a = -a;
        s = -s;
    }
    (a, s, sv)
}

/// Analyse `sigma` for images with `c` channels of `d x d`; curves run to `max_terms`.
pub fn analyse(sigma: &DMatrix<f64>, c: usize, d: usize, images: usize, max_terms: usize) -> StructureFit {
    let dd = d * d;
    let n = c * dd;
    assert_eq!(sigma.nrows(), n, "covariance must be (C d^2) x (C d^2)");
    let total = sigma.norm_squared().max(1e-300);

    let (a, s, sv) = nearest_kronecker(sigma, c, dd);
    let kronecker_errors = tail_errors(&sv.iter().map(|x| x * x).collect::<Vec<_>>(), c * c);

    let mut ev: Vec<f64> = sigma.clone().symmetric_eigen().eigenvalues.iter().map(|x| x * x).collect();
    ev.sort_by(|x, y| y.total_cmp(x));
    let svd_errors = tail_errors(&ev, max_terms);

    // Spatial factor: vertical (x) horizontal products, and the DCT-diagonal projection.
    let rs = rearrange(&s, d, d);
    let mut ssv: Vec<f64> = rs.singular_values().iter().map(|x| x * x).collect();
    ssv.sort_by(|x, y| y.total_cmp(x));
    let spatial_kronecker_errors = tail_errors(&ssv, max_terms);
    let f2 = dct2_matrix(d);
    let lam_s = (&f2 * &s * f2.transpose()).diagonal();
    let s_norm = s.norm_squared().max(1e-300);
    let spatial_dct_error = (s_norm - lam_s.norm_squared()).max(0.0) / s_norm;

    // K-DCT fit: alternate the Kronecker + DCT projections with the diagonal.
    // The DCT projection follows the Kronecker one, so the error need not fall
    // at every step: run a fixed number of rounds and keep the best.
    let mut e = DVector::<f64>::zeros(n);
    let mut best = (f64::INFINITY, a.clone(), lam_s, e.clone(), DMatrix::<f64>::zeros(n, n));
    let (mut a, mut s) = (a, s);
    for round in 0..FIT_ROUNDS {
        // Round 0's residual is Sigma itself, whose nearest product is already known.
        if round > 0 {
            (a, s, _) = nearest_kronecker(&(sigma - DMatrix::from_diagonal(&e)), c, dd);
        }
        let lam = (&f2 * &s * f2.transpose()).diagonal();
        let model = a.kronecker(&(f2.transpose() * DMatrix::from_diagonal(&lam) * &f2));
        e = (sigma - &model).diagonal().map(|x| x.max(0.0));
        let dense = model + DMatrix::from_diagonal(&e);
        let err = (sigma - &dense).norm_squared() / total;
        if err < best.0 {
            best = (err, a.clone(), lam, e.clone(), dense);
        }
    }
    let (kdct_error, colour, lam, e, kdct_dense) = best;

    StructureFit {
        channels: c,
        size: d,
        images,
        kronecker_errors,
        svd_errors,
        spatial_kronecker_errors,
        spatial_dct_error,
        kdct_error,
        colour: colour.transpose().as_slice().to_vec(),
        lam: lam.as_slice().to_vec(),
        mean_e: e.mean(),
        kdct_dense,
    }
}

/// The three views of Fig. 1B for a covariance: pixels along the vertical
/// midline (all channels), along the horizontal midline (all channels), and
/// the first channel in full. Each is `(size, row-major values)`.
pub fn figure_views(m: &DMatrix<f64>, c: usize, d: usize) -> [(usize, Vec<f64>); 3] {
    let dd = d * d;
    let mid = d / 2;
    let pick = |idx: Vec<usize>| {
        let k = idx.len();
        let v = (0..k * k).map(|p| m[(idx[p / k], idx[p % k])]).collect();
        (k, v)
    };
    let vertical = (0..c).flat_map(|ch| (0..d).map(move |i| ch * dd + i * d + mid)).collect();
    let horizontal = (0..c).flat_map(|ch| (0..d).map(move |j| ch * dd + mid * d + j)).collect();
    [pick(vertical), pick(horizontal), pick((0..dd).collect())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gaussian::KdctParams;

    fn spd(n: usize, seed: u64) -> DMatrix<f64> {
        use rand::{rngs::StdRng, RngExt, SeedableRng};
        let mut rng = StdRng::seed_from_u64(seed);
        let x = DMatrix::from_fn(n, n, |_, _| rng.random_range(-1.0..1.0));
        &x * x.transpose()
    }

    #[test]
    fn exact_kdct_covariance_is_recovered() {
        // Sigma = diag(e) + A (x) F2^T diag(lam) F2 with A SPD: every error is ~0.
        let (c, d) = (3, 4);
        let a = spd(c, 1);
        let l = a.clone().cholesky().unwrap().l();
        let p = KdctParams {
            channels: c,
            size: d,
            e: vec![0.05; c * d * d],
            l: l.transpose().as_slice().to_vec(),
            lam: (0..d * d).map(|k| 1.0 / (1.0 + k as f64)).collect(),
        };
        let fit = analyse(&p.to_dense(), c, d, 0, 10);
        assert!(fit.kdct_error < 1e-6, "{}", fit.kdct_error);
        assert!((fit.mean_e - 0.05).abs() < 1e-3, "{}", fit.mean_e);

        // Without the diagonal term the single Kronecker product and the DCT are exact.
        let p0 = KdctParams { e: vec![0.0; c * d * d], ..p };
        let fit = analyse(&p0.to_dense(), c, d, 0, 10);
        assert!(fit.kronecker_errors[0] < 1e-12 && fit.spatial_dct_error < 1e-12);
    }

    #[test]
    fn errors_match_dense_projections() {
        // A generic SPD matrix: errors must equal the residuals of explicit projections.
        let (c, d) = (2, 3);
        let n = c * d * d;
        let sigma = spd(n, 4);
        let fit = analyse(&sigma, c, d, 0, n);
        let (a, s, _) = nearest_kronecker(&sigma, c, d * d);
        let direct = (&sigma - a.kronecker(&s)).norm_squared() / sigma.norm_squared();
        assert!((fit.kronecker_errors[0] - direct).abs() < 1e-9);
        assert!(fit.kronecker_errors.windows(2).all(|w| w[1] <= w[0] + 1e-12));
        assert!(fit.kronecker_errors[c * c - 1] < 1e-12, "C^2 terms are exact");
        // Rank-k eigen-truncation error, recomputed.
        let eig = sigma.clone().symmetric_eigen();
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by(|&x, &y| eig.eigenvalues[y].abs().total_cmp(&eig.eigenvalues[x].abs()));
        let k = 3;
        let mut approx = DMatrix::zeros(n, n);
        for &i in &idx[..k] {
            let v = eig.eigenvectors.column(i);
            approx += v * v.transpose() * eig.eigenvalues[i];
        }
        let want = (&sigma - approx).norm_squared() / sigma.norm_squared();
        assert!((fit.svd_errors[k - 1] - want).abs() < 1e-9);
        // The K-DCT model is at least as good as its diagonal-free start.
        assert!(fit.kdct_error <= 1.0 && fit.kdct_error >= 0.0);
    }

    #[test]
    fn marginal_covariance_is_the_sample_covariance() {
        let set = ImageSet { channels: 1, size: 1, pixels: vec![1.0, 3.0, 5.0], labels: None };
        let m = marginal_covariance(&set, |_| {});
        assert!((m[(0, 0)] - 4.0).abs() < 1e-12);
    }
}
