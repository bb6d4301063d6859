//! Dense reference matrices at small size: the truth every structured
//! operator is tested against. `vec(x)` is channel-major (docs/maths.md).

use crate::dct::dct_matrix;
use nalgebra::{DMatrix, DVector};

/// The matrix of a linear operator on `R^n`, column by column.
pub fn from_operator(n: usize, op: impl Fn(&[f64]) -> Vec<f64>) -> DMatrix<f64> {
    let mut m = DMatrix::zeros(n, n);
    let mut e = vec![0.0; n];
    for j in 0..n {
        e[j] = 1.0;
        let col = op(&e);
        assert_eq!(col.len(), n, "operator changed the dimension");
        for i in 0..n {
            m[(i, j)] = col[i];
        }
        e[j] = 0.0;
    }
    m
}

/// `F (x) F`, the 2D DCT of a channel-major plane as a `d^2 x d^2` matrix.
pub fn dct2_matrix(d: usize) -> DMatrix<f64> {
    let f = DMatrix::from_row_slice(d, d, &dct_matrix(d));
    f.kronecker(&f)
}

/// `A (x) B` for row-major `d x d` factors: the plane transform `X -> A X B^T`.
pub fn separable_matrix(a: &[f64], b: &[f64], d: usize) -> DMatrix<f64> {
    DMatrix::from_row_slice(d, d, a).kronecker(&DMatrix::from_row_slice(d, d, b))
}

/// Dense K-DCT family: `diag(e) + (L L^T) (x) T^T diag(lam) T`, with `T` the
/// `d^2 x d^2` spatial basis (`F (x) F` for K-DCT, `A (x) B` for Free).
/// `l` is `C x C` row-major, `lam` is `d x d` row-major, `e` has `C d^2` entries.
pub fn kdct_family(e: &[f64], l: &[f64], lam: &[f64], basis: &DMatrix<f64>, c: usize) -> DMatrix<f64> {
    let lm = DMatrix::from_row_slice(c, c, l);
    let colour = &lm * lm.transpose();
    let lam = DMatrix::from_diagonal(&DVector::from_column_slice(lam));
    let spatial = basis.transpose() * lam * basis;
    DMatrix::from_diagonal(&DVector::from_column_slice(e)) + colour.kronecker(&spatial)
}

/// Empirical second moment `(1/N) sum x x^T` of samples stored row by row.
pub fn second_moment(samples: &[f64], n: usize) -> DMatrix<f64> {
    let count = samples.len() / n;
    let x = DMatrix::from_row_slice(count, n, samples);
    x.transpose() * &x / count as f64
}

/// `KL(N(m1, S1) || N(m2, S2))`, by Cholesky. The reference for every structured KL.
pub fn gaussian_kl(m1: &[f64], s1: &DMatrix<f64>, m2: &[f64], s2: &DMatrix<f64>) -> f64 {
    let n = m1.len();
    let chol = s2.clone().cholesky().expect("S2 must be positive definite");
    let inv = chol.inverse();
    let dm = DVector::from_column_slice(m2) - DVector::from_column_slice(m1);
    let logdet = |s: &DMatrix<f64>| 2.0 * s.clone().cholesky().expect("SPD").l().diagonal().map(f64::ln).sum();
    0.5 * ((&inv * s1).trace() + dm.dot(&(&inv * &dm)) - n as f64 + logdet(s2) - logdet(s1))
}

/// `log N(x; m, S)`.
pub fn gaussian_log_density(x: &[f64], m: &[f64], s: &DMatrix<f64>) -> f64 {
    let n = x.len() as f64;
    let chol = s.clone().cholesky().expect("S must be positive definite");
    let d = DVector::from_column_slice(x) - DVector::from_column_slice(m);
    let z = chol.l().solve_lower_triangular(&d).expect("triangular solve");
    let logdet = 2.0 * chol.l().diagonal().map(f64::ln).sum();
    -0.5 * (z.norm_squared() + logdet + n * (2.0 * std::f64::consts::PI).ln())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dct::Dct2d;

    #[test]
    fn dct2_matrix_matches_plane_transform() {
        let d = 5;
        let dct = Dct2d::new(d);
        let m = from_operator(d * d, |v| {
            let mut p = v.to_vec();
            dct.forward(&mut p);
            p
        });
        assert!((m - dct2_matrix(d)).abs().max() < 1e-12);
    }
}
