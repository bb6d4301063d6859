//! Pieces of the negative ELBO (docs/maths.md, "Likelihood"): the discretised
//! Gaussian decoder of Ho et al. for 8-bit data, the Gaussian KL against an
//! isotropic posterior by Cholesky, and Lanczos quadrature for the
//! stochastic log-determinant.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// `erfc(x)`, Numerical Recipes' Chebyshev fit (`erfcc`), fractional error < 1.2e-7 everywhere.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// `Phi(z)`, the standard normal CDF, accurate in both tails.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// `-log p(x | mu, std)` of Ho et al.'s discretised Gaussian decoder, in nats, summed over
/// pixels. `x` holds 8-bit values mapped to [-1, 1]; each bin is `x +- 1/255`, and the two
/// edge bins extend to infinity. Probabilities are floored at 1e-300.
pub fn discretized_gaussian_nll(x: &[f64], mu: &[f64], std: &[f64]) -> f64 {
    let h = 1.0 / 255.0;
    let mut nll = 0.0;
    for ((&x, &m), &s) in x.iter().zip(mu).zip(std) {
        let (lo, hi) = ((x - h - m) / s, (x + h - m) / s);
        let p = if x < -1.0 + h {
            normal_cdf(hi)
        } else if x > 1.0 - h {
            normal_cdf(-lo)
        } else if lo > 0.0 {
            // Upper tail: subtract the small survival functions, not CDFs near 1.
            normal_cdf(-lo) - normal_cdf(-hi)
        } else {
            normal_cdf(hi) - normal_cdf(lo)
        };
        nll -= p.max(1e-300).ln();
    }
    nll
}

/// `(delta^T S^-1 delta, logdet S, tr S^-1)`, exactly by Cholesky: the three numbers every
/// Gaussian KL and log-density against `N(., S)` is made of.
pub fn gaussian_moments(delta: &[f64], s: DMatrix<f64>) -> Result<(f64, f64, f64), crate::Error> {
    let n = delta.len();
    let chol = s.cholesky().ok_or(crate::Error::NotPositiveDefinite("step covariance"))?;
    let l = chol.l();
    let logdet = 2.0 * l.diagonal().iter().map(|x| x.ln()).sum::<f64>();
    let linv = l
        .solve_lower_triangular(&DMatrix::identity(n, n))
        .ok_or(crate::Error::NotPositiveDefinite("step covariance"))?;
    let trace_inv = linv.iter().map(|x| x * x).sum::<f64>();
    let w = &linv * DVector::from_column_slice(delta);
    Ok((w.norm_squared(), logdet, trace_inv))
}

/// `KL(N(m_q, v I) || N(m_p, S))` with `delta = m_p - m_q`, exactly by Cholesky:
/// `0.5 (v tr(S^-1) + delta^T S^-1 delta - n + logdet S - n log v)`.
pub fn kl_isotropic_vs(v: f64, delta: &[f64], s: DMatrix<f64>) -> Result<f64, crate::Error> {
    let n = delta.len() as f64;
    let (quad, logdet, trace_inv) = gaussian_moments(delta, s)?;
    Ok(0.5 * (v * trace_inv + quad - n + logdet - n * v.ln()))
}

/// Gauss quadrature from a Lanczos run started at `q_1 = u / |u|`: `u^T f(S) u ~ |u|^2 sum_k tau_k^2 f(theta_k)`,
/// with `theta_k` and `tau_k` the eigenvalues and first eigenvector entries of the tridiagonal
/// `T = tridiag(beta, alpha, beta)`. The recurrence is cut at the first `beta` below
/// `1e-7 max|alpha|` (an invariant subspace: the rule is exact there).
pub fn lanczos_quadrature(norm_sq: f64, alpha: &[f64], beta: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let scale = alpha.iter().fold(0.0f64, |m, a| m.max(a.abs())).max(f64::MIN_POSITIVE);
    let mut m = alpha.len();
    if let Some(k) = beta.iter().take(m.saturating_sub(1)).position(|b| *b < 1e-7 * scale || !b.is_finite()) {
        m = k + 1;
    }
    let mut t = DMatrix::zeros(m, m);
    for k in 0..m {
        t[(k, k)] = alpha[k];
        if k + 1 < m {
            t[(k, k + 1)] = beta[k];
            t[(k + 1, k)] = beta[k];
        }
    }
    let eig = SymmetricEigen::new(t);
    let total: f64 = (0..m).map(|k| eig.eigenvectors[(0, k)].powi(2) * f(eig.eigenvalues[k])).sum();
    norm_sq * total
}

/// Nats per image to bits per dimension.
pub fn bits_per_dim(nats: f64, n: usize) -> f64 {
    nats / (n as f64 * std::f64::consts::LN_2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dense::gaussian_kl;

    #[test]
    fn erfc_matches_tabulated_values() {
        // Reference values from mpmath at 30 digits; the fit promises 1.2e-7 relative.
        let table = [
            (0.0, 1.0),
            (0.5, 0.479_500_122_186_953),
            (1.0, 0.157_299_207_050_285),
            (2.0, 0.004_677_734_981_047_266),
            (-1.0, 1.842_700_792_949_715),
            (5.0, 1.537_459_794_428_035e-12),
        ];
        for (x, want) in table {
            let got = erfc(x);
            assert!(((got - want) / want).abs() < 1.2e-7, "erfc({x}) = {got}, want {want}");
        }
    }

    #[test]
    fn decoder_matches_density_times_bin_width_for_wide_gaussians() {
        // For std >> bin width, P(bin) ~ pdf(x) * 2/255: relative error O((h/std)^2) ~ 1e-4 here.
        let (x, mu, s) = (0.2, -0.1, 0.5);
        let z: f64 = (x - mu) / s;
        let pdf = (-0.5 * z * z).exp() / (s * (2.0 * std::f64::consts::PI).sqrt());
        let want = -(pdf * 2.0 / 255.0).ln();
        let got = discretized_gaussian_nll(&[x], &[mu], &[s]);
        assert!((got - want).abs() < 1e-3 * want.abs(), "{got} vs {want}");
        // Edge bins reach to infinity: a pixel at -1 with the mean far below costs nothing.
        assert!(discretized_gaussian_nll(&[-1.0], &[-3.0], &[0.1]) < 1e-12);
        // A sharp decoder at the right value costs nothing either, in the upper tail too.
        assert!(discretized_gaussian_nll(&[0.6], &[0.6], &[1e-4]) < 1e-6);
        assert!(discretized_gaussian_nll(&[0.6 + 2.0 / 255.0], &[0.6], &[1e-3]).is_finite());
    }

    fn spd(n: usize, seed: u64) -> DMatrix<f64> {
        let mut x = seed as f64;
        let a = DMatrix::from_fn(n, n, |_, _| {
            x = (x * 1.618_033_988_7 + 0.314_159).fract();
            x - 0.5
        });
        &a * a.transpose() + DMatrix::identity(n, n) * 0.05
    }

    #[test]
    fn cholesky_kl_equals_the_dense_formula() {
        let n = 12;
        let s = spd(n, 7);
        let mq: Vec<f64> = (0..n).map(|i| (i as f64 * 0.3).sin()).collect();
        let mp: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).cos()).collect();
        let delta: Vec<f64> = mp.iter().zip(&mq).map(|(p, q)| p - q).collect();
        let v = 0.37;
        let want = gaussian_kl(&mq, &(DMatrix::identity(n, n) * v), &mp, &s);
        let got = kl_isotropic_vs(v, &delta, s).unwrap();
        assert!((got - want).abs() < 1e-9 * want.abs().max(1.0), "{got} vs {want}");
    }

    #[test]
    fn lanczos_quadrature_is_exact_after_n_steps() {
        // Plain Lanczos in f64 on a 10 x 10 SPD matrix: after n steps, u^T f(S) u is exact.
        let n = 10;
        let s = spd(n, 3);
        let u = DVector::from_fn(n, |i, _| if i % 3 == 0 { 1.0 } else { -0.5 });
        let (mut alpha, mut beta) = (Vec::new(), Vec::new());
        let mut q_prev: DVector<f64> = DVector::zeros(n);
        let mut q: DVector<f64> = &u / u.norm();
        let mut b_prev = 0.0;
        for _ in 0..n {
            let mut w = &s * &q - &q_prev * b_prev;
            let a = q.dot(&w);
            w -= &q * a;
            let b = w.norm();
            alpha.push(a);
            beta.push(b);
            q_prev = q;
            q = w / b.max(1e-300);
            b_prev = b;
        }
        let eig = SymmetricEigen::new(s.clone());
        let logm =
            &eig.eigenvectors * DMatrix::from_diagonal(&eig.eigenvalues.map(f64::ln)) * eig.eigenvectors.transpose();
        let want = (u.transpose() * logm * &u)[(0, 0)];
        let got = lanczos_quadrature(u.norm_squared(), &alpha, &beta, f64::ln);
        assert!((got - want).abs() < 1e-8 * want.abs().max(1.0), "{got} vs {want}");
        let want_inv = (u.transpose() * s.cholesky().unwrap().inverse() * &u)[(0, 0)];
        let got_inv = lanczos_quadrature(u.norm_squared(), &alpha, &beta, |x| 1.0 / x);
        assert!((got_inv - want_inv).abs() < 1e-8 * want_inv.abs(), "{got_inv} vs {want_inv}");
    }
}
