//! Covariance-structure analysis of a dataset (K-DCT paper, Fig. 1B, 5, 6).
//!
//! For the marginal covariance `Sigma` (`n x n`, `n = C D`, `D = d^2`):
//! - the nearest sum of `k` Kronecker products `colour (C x C) (x) space (D x D)`,
//!   by Van Loan & Pitsianis: the rank-`k` truncation of the rearrangement
//!   `R(Sigma)` (`C^2 x D^2`, row `(c1, c2)` holding block `Sigma_{c1 c2}`);
//! - for the best single product's spatial factor `S`: the nearest
//!   DCT-diagonal matrix `F2^T diag(diag(F2 S F2^T)) F2` (exact, since `F2` is
//!   orthonormal), and the nearest sums of vertical (x) horizontal products;
//! - the nearest K-DCT model `diag(e) + A (x) F2^T diag(lam) F2` with `e >= 0`,
//!   `A` positive semi-definite and `lam >= 0` ([`nearest_kdct`]): in the DCT
//!   basis only the `C x C` blocks `M_k` of frequency `k` can be matched, so the
//!   fit projects onto the DCT-diagonal set first and then solves each block
//!   (`e`, `A`, `lam`) exactly in turn, which never raises the error;
//! - the rank-`k` eigen-truncation of `Sigma`, for comparison.
//!
//! Errors are normalised squared Frobenius errors `||Sigma - approx||^2 / ||Sigma||^2`.

use crate::data::ImageSet;
use crate::dense::dct2_matrix;
use nalgebra::{DMatrix, DVector};
use serde::Serialize;

/// Most rounds of the K-DCT block-coordinate fit, and its stopping tolerance on the parameters.
const FIT_ROUNDS: usize = 5000;
const FIT_TOL: f64 = 1e-11;

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
pub fn marginal_covariance(set: &ImageSet, progress: impl FnMut(usize)) -> DMatrix<f64> {
    marginal_moments(set, progress).1
}

/// The mean (`n`) and marginal covariance (`n x n`, unbiased) of a dataset; `progress` gets the
/// number of images done.
pub fn marginal_moments(set: &ImageSet, mut progress: impl FnMut(usize)) -> (DVector<f64>, DMatrix<f64>) {
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
    (mean, acc / (count.max(2) - 1) as f64)
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

    let (_, s, sv) = nearest_kronecker(sigma, c, dd);
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

    let fit = nearest_kdct(sigma, c, d);
    let (kdct_error, colour, lam, e, kdct_dense) = (fit.error, fit.colour, fit.lam, fit.e, fit.dense);

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

/// The nearest K-DCT matrix to `Sigma` in Frobenius norm (a local optimum for C > 1; the global
/// one for grey images, where the problem is a convex non-negative least squares).
#[derive(Clone, Debug)]
pub struct KdctProjection {
    /// `diag(e)`, `e >= 0`, channel-major.
    pub e: DVector<f64>,
    /// `A`, `C x C`, positive semi-definite with `trace(A) = C`.
    pub colour: DMatrix<f64>,
    /// `lam >= 0` per DCT frequency (`d x d`, row-major).
    pub lam: DVector<f64>,
    /// `||Sigma - model||^2 / ||Sigma||^2`.
    pub error: f64,
    pub dense: DMatrix<f64>,
}

/// The projection of a symmetric matrix onto the positive semi-definite cone (Frobenius-nearest).
fn psd_part(m: &DMatrix<f64>) -> DMatrix<f64> {
    let eig = ((m + m.transpose()) * 0.5).symmetric_eigen();
    &eig.eigenvectors * DMatrix::from_diagonal(&eig.eigenvalues.map(|x| x.max(0.0))) * eig.eigenvectors.transpose()
}

/// Fit `diag(e) + A (x) F2^T diag(lam) F2` to `sigma` (`C d^2` square).
///
/// With `Sigma' = (I (x) F2) Sigma (I (x) F2^T)`, the model's `Sigma'` is `A lam_k` on the blocks
/// `(c1 k, c2 k)` and zero elsewhere, and `diag(e)` adds `(G e_c)_k` to the diagonal blocks, with
/// `G = F2 o F2`. So with `M_k` those blocks of `Sigma' - (I (x) F2) diag(e) (I (x) F2^T)`:
/// - given `e`: `sum_k ||M_k - lam_k A||^2`, so `lam_k = max(<M_k, A>, 0) / ||A||^2` and
///   `A = psd(sum_k lam_k M_k / sum_k lam_k^2)`, each the exact constrained minimiser;
/// - given `(A, lam)`: `e = max(diag(Sigma - A (x) F2^T diag(lam) F2), 0)`, exact as well.
///
/// Each step lowers the error; the first `(A, lam)` is the rank-one truncation of `[vec M_k]_k`.
pub fn nearest_kdct(sigma: &DMatrix<f64>, c: usize, d: usize) -> KdctProjection {
    let dd = d * d;
    let n = c * dd;
    assert_eq!(sigma.nrows(), n, "covariance must be (C d^2) x (C d^2)");
    let f2 = dct2_matrix(d);
    let g = f2.map(|x| x * x);
    // blocks[k][(c1, c2)] = (F2 Sigma_{c1 c2} F2^T)_{kk}.
    let mut blocks = vec![DMatrix::<f64>::zeros(c, c); dd];
    for c1 in 0..c {
        for c2 in 0..c {
            let sb = sigma.view((c1 * dd, c2 * dd), (dd, dd));
            let t = &f2 * sb * f2.transpose();
            for (k, b) in blocks.iter_mut().enumerate() {
                b[(c1, c2)] = t[(k, k)];
            }
        }
    }
    let sdiag = sigma.diagonal();
    let scale = sdiag.amax().max(1e-300);
    let mut e = DVector::<f64>::zeros(n);
    let mut a = DMatrix::<f64>::identity(c, c);
    let mut lam = DVector::<f64>::zeros(dd);
    let mut m = blocks.clone();
    for round in 0..FIT_ROUNDS {
        // M_k with diag(e) taken out, refreshed in place.
        for (mk, bk) in m.iter_mut().zip(&blocks) {
            mk.copy_from(bk);
        }
        for ch in 0..c {
            let ge = &g * e.rows(ch * dd, dd);
            for (k, mk) in m.iter_mut().enumerate() {
                mk[(ch, ch)] -= ge[k];
            }
        }
        if round == 0 {
            // Rank-one start: the leading left singular vector of [vec M_k]_k, as a PSD matrix.
            let r = DMatrix::from_fn(c * c, dd, |i, k| m[k][(i / c, i % c)]);
            let (_, u1, _) = leading_svd(&r);
            let u = DMatrix::from_row_slice(c, c, u1.as_slice());
            let u = if u.trace() < 0.0 { -u } else { u };
            a = psd_part(&u);
            if a.norm() == 0.0 {
                a = DMatrix::identity(c, c);
            }
        }
        let (prev_e, prev_lam) = (e.clone(), lam.clone());
        for _ in 0..2 {
            let a2 = a.norm_squared();
            lam = DVector::from_iterator(dd, m.iter().map(|mk| mk.dot(&a).max(0.0) / a2));
            let l2 = lam.norm_squared();
            if l2 == 0.0 {
                break;
            }
            let target = m.iter().zip(lam.iter()).fold(DMatrix::zeros(c, c), |acc, (mk, l)| acc + mk * *l) / l2;
            let next = psd_part(&target);
            if next.trace() <= 0.0 {
                break;
            }
            a = next;
        }
        // Fix the scale: trace(A) = C, lam carries the rest.
        let s = a.trace() / c as f64;
        if s > 0.0 {
            a /= s;
            lam *= s;
        }
        let glam = g.transpose() * &lam;
        for ch in 0..c {
            for p in 0..dd {
                let i = ch * dd + p;
                e[i] = (sdiag[i] - a[(ch, ch)] * glam[p]).max(0.0);
            }
        }
        if round > 0 && (&e - prev_e).amax().max((&lam - prev_lam).amax()) < FIT_TOL * scale {
            break;
        }
    }
    let spatial = f2.transpose() * DMatrix::from_diagonal(&lam) * &f2;
    let dense = a.kronecker(&spatial) + DMatrix::from_diagonal(&e);
    let error = (sigma - &dense).norm_squared() / sigma.norm_squared().max(1e-300);
    KdctProjection { e, colour: a, lam, error, dense }
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

/// The Frobenius-nearest diagonal matrix to `Sigma`: its diagonal.
pub fn nearest_diagonal(sigma: &DMatrix<f64>) -> DMatrix<f64> {
    DMatrix::from_diagonal(&sigma.diagonal())
}

/// The Frobenius-nearest multiple of the identity to `Sigma`: `(tr Sigma / n) I`.
pub fn nearest_isotropic(sigma: &DMatrix<f64>) -> DMatrix<f64> {
    let n = sigma.nrows();
    DMatrix::identity(n, n) * (sigma.trace() / n.max(1) as f64)
}

/// `||Sigma - M||_F^2 / ||Sigma||_F^2`.
pub fn relative_error(sigma: &DMatrix<f64>, m: &DMatrix<f64>) -> f64 {
    (sigma - m).norm_squared() / sigma.norm_squared().max(1e-300)
}

/// Eigenvalues of a symmetric matrix, largest first.
pub fn spectrum(m: &DMatrix<f64>) -> Vec<f64> {
    let mut ev: Vec<f64> = ((m + m.transpose()) * 0.5).symmetric_eigen().eigenvalues.iter().cloned().collect();
    ev.sort_by(|a, b| b.total_cmp(a));
    ev
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
        // The fitted K-DCT model's error is that of its own dense matrix.
        let want = (&sigma - &fit.kdct_dense).norm_squared() / sigma.norm_squared();
        assert!((fit.kdct_error - want).abs() < 1e-12);
    }

    /// `min ||y - X w||^2` over `w >= 0`, by enumerating every support: some optimum has linearly
    /// independent support columns, where the least-squares solution is unique and feasible.
    fn nnls_by_enumeration(x: &DMatrix<f64>, y: &DVector<f64>) -> f64 {
        let k = x.ncols();
        let mut best = y.norm_squared();
        for mask in 1u32..(1 << k) {
            let cols: Vec<usize> = (0..k).filter(|i| mask >> i & 1 == 1).collect();
            let xs = DMatrix::from_fn(x.nrows(), cols.len(), |r, j| x[(r, cols[j])]);
            let Ok(w) = xs.clone().svd(true, true).solve(y, 1e-12) else { continue };
            if w.iter().all(|&v| v >= -1e-12) {
                best = best.min((y - &xs * w).norm_squared());
            }
        }
        best
    }

    #[test]
    fn nearest_kdct_reaches_the_brute_force_optimum_for_grey_images() {
        // C = 1, d = 2: diag(e) + F2^T diag(lam) F2 with e, lam >= 0 is a non-negative least
        // squares in 8 unknowns, solved here over all 255 supports.
        let d = 2;
        let (dd, f2) = (d * d, dct2_matrix(d));
        for seed in [4, 9, 13] {
            let sigma = spd(dd, seed);
            let mut x = DMatrix::zeros(dd * dd, 2 * dd);
            for p in 0..dd {
                x[(p * dd + p, p)] = 1.0;
            }
            for k in 0..dd {
                let fk = f2.row(k).transpose();
                let outer = &fk * fk.transpose();
                for (i, v) in outer.iter().enumerate() {
                    x[(i, dd + k)] = *v;
                }
            }
            let y = DVector::from_column_slice(sigma.as_slice());
            let want = nnls_by_enumeration(&x, &y) / sigma.norm_squared();
            let fit = nearest_kdct(&sigma, 1, d);
            assert!((fit.error - want).abs() < 1e-7, "seed {seed}: fit {} vs optimum {want}", fit.error);
            assert!(fit.e.iter().chain(fit.lam.iter()).all(|&v| v >= 0.0));
        }
    }

    #[test]
    fn nearest_kdct_keeps_the_colour_factor_psd_and_beats_the_kronecker_then_dct_bound() {
        // A generic colour covariance: A stays PSD, and the fit is at least as good as the old
        // route (nearest Kronecker product, then its spatial factor's DCT projection, e = 0).
        let (c, d) = (3, 3);
        let (dd, n) = (d * d, 3 * d * d);
        for seed in [1, 2] {
            let sigma = spd(n, seed) + DMatrix::identity(n, n);
            let fit = nearest_kdct(&sigma, c, d);
            assert!(fit.colour.clone().symmetric_eigen().eigenvalues.min() >= -1e-10, "A must be PSD");
            assert!((fit.colour.trace() - c as f64).abs() < 1e-9);
            let (a, s, _) = nearest_kronecker(&sigma, c, dd);
            let f2 = dct2_matrix(d);
            let lam = (&f2 * &s * f2.transpose()).diagonal();
            let old = a.kronecker(&(f2.transpose() * DMatrix::from_diagonal(&lam) * &f2));
            let bound = (&sigma - old).norm_squared() / sigma.norm_squared();
            assert!(fit.error <= bound + 1e-12, "seed {seed}: {} vs bound {bound}", fit.error);
        }
    }

    #[test]
    fn marginal_covariance_is_the_sample_covariance() {
        let set = ImageSet { channels: 1, size: 1, pixels: vec![1.0, 3.0, 5.0], labels: None };
        let m = marginal_covariance(&set, |_| {});
        assert!((m[(0, 0)] - 4.0).abs() < 1e-12);
    }

    #[test]
    fn the_diagonal_and_isotropic_projections_are_frobenius_optimal() {
        let a = DMatrix::from_fn(5, 5, |i, j| ((i * 7 + j * 3) % 5) as f64 - 1.5);
        let sigma = &a * a.transpose();
        let (diag, iso) = (nearest_diagonal(&sigma), nearest_isotropic(&sigma));
        // Any other diagonal or multiple of I is farther.
        for k in 0..5 {
            let mut other = diag.clone();
            other[(k, k)] += 0.1;
            assert!(relative_error(&sigma, &other) > relative_error(&sigma, &diag));
        }
        for f in [0.99, 1.01] {
            assert!(relative_error(&sigma, &(&iso * f)) > relative_error(&sigma, &iso));
        }
        let ev = spectrum(&sigma);
        assert!(ev.windows(2).all(|w| w[0] >= w[1]));
        assert!((ev.iter().sum::<f64>() - sigma.trace()).abs() < 1e-9);
    }
}
