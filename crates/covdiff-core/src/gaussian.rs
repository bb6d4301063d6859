//! Gaussian data with exact ground truth (docs/maths.md, "Gaussian data").
//!
//! The prior is `x_0 ~ N(0, S)` with `S = (P P^T) (x) F2^T diag(sigma2) F2`.
//! In the DCT basis every frequency `k` is an independent `C x C` block
//! `sigma2_k P P^T`, so every conditional below is exact and costs
//! `O(n log d + n C^2)`.

use crate::dct::Dct2d;
use crate::dense;
use nalgebra::{DMatrix, DVector};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// Parameters of a K-DCT covariance in plain Rust: `diag(e) + (L L^T) (x) F2^T diag(lam) F2`.
#[derive(Clone, Debug, PartialEq)]
pub struct KdctParams {
    pub channels: usize,
    pub size: usize,
    /// `C d^2` entries, channel-major.
    pub e: Vec<f64>,
    /// `C x C`, row-major.
    pub l: Vec<f64>,
    /// `d x d`, row-major.
    pub lam: Vec<f64>,
}

impl KdctParams {
    /// The dense `n x n` matrix, built with explicit Kronecker products.
    pub fn to_dense(&self) -> DMatrix<f64> {
        dense::kdct_family(&self.e, &self.l, &self.lam, &dense::dct2_matrix(self.size), self.channels)
    }
}

/// A DCT-diagonal Gaussian prior, grey (`C = 1`) or colour.
pub struct DctGaussian {
    c: usize,
    d: usize,
    /// Colour factor `P` (`C x C`).
    p: DMatrix<f64>,
    /// DCT-domain variances, `d x d` row-major.
    sigma2: Vec<f64>,
    dct: Dct2d,
}

impl DctGaussian {
    /// `p` is `C x C` row-major; `sigma2` has `d^2` positive entries.
    pub fn new(p: &[f64], c: usize, sigma2: Vec<f64>, d: usize) -> Result<Self, crate::Error> {
        if p.len() != c * c {
            return Err(crate::Error::invalid("Gaussian data", format!("the colour factor must be {c}x{c}")));
        }
        if sigma2.len() != d * d || sigma2.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            let reason = format!("sigma2 must hold {} positive finite values", d * d);
            return Err(crate::Error::invalid("Gaussian data", reason));
        }
        Ok(Self { c, d, p: DMatrix::from_row_slice(c, c, p), sigma2, dct: Dct2d::new(d) })
    }

    /// A natural-image-like power-law spectrum, `sigma2_k = scale / (1 + |k|^2)^power`.
    pub fn power_law(p: &[f64], c: usize, d: usize, scale: f64, power: f64) -> Result<Self, crate::Error> {
        let sigma2 = (0..d * d)
            .map(|i| {
                let (a, b) = ((i / d) as f64, (i % d) as f64);
                scale / (1.0 + a * a + b * b).powf(power)
            })
            .collect();
        Self::new(p, c, sigma2, d)
    }

    pub fn channels(&self) -> usize {
        self.c
    }

    /// The DCT-domain variances `sigma2`, `d x d` row-major.
    pub fn spectrum(&self) -> &[f64] {
        &self.sigma2
    }

    pub fn size(&self) -> usize {
        self.d
    }

    /// `n = C d^2`.
    pub fn dim(&self) -> usize {
        self.c * self.d * self.d
    }

    /// `M = P P^T`.
    pub fn colour(&self) -> DMatrix<f64> {
        &self.p * self.p.transpose()
    }

    /// Apply, per DCT frequency, a `C x C` matrix to the channel vector of `x`.
    fn per_frequency(&self, x: &[f64], block: impl Fn(usize) -> DMatrix<f64>) -> Vec<f64> {
        let (c, dd) = (self.c, self.d * self.d);
        assert_eq!(x.len(), c * dd, "vector must have C d^2 entries");
        let mut y = x.to_vec();
        for plane in y.chunks_exact_mut(dd) {
            self.dct.forward(plane);
        }
        let mut out = vec![0.0; c * dd];
        for k in 0..dd {
            let v = DVector::from_iterator(c, (0..c).map(|ch| y[ch * dd + k]));
            let w = block(k) * v;
            for ch in 0..c {
                out[ch * dd + k] = w[ch];
            }
        }
        for plane in out.chunks_exact_mut(dd) {
            self.dct.inverse(plane);
        }
        out
    }

    /// `Cov[x_t]` block at frequency `k`: `abar sigma2_k M + bbar I`.
    fn marginal_block(&self, k: usize, abar: f64) -> DMatrix<f64> {
        self.colour() * (abar * self.sigma2[k]) + DMatrix::identity(self.c, self.c) * (1.0 - abar)
    }

    /// A draw of `x_0`.
    pub fn sample_x0<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<f64> {
        let z: Vec<f64> = (0..self.dim()).map(|_| StandardNormal.sample(rng)).collect();
        self.per_frequency(&z, |k| &self.p * self.sigma2[k].sqrt())
    }

    /// `E[eps | x_t] = sqrt(bbar) (abar S + bbar I)^-1 x_t`.
    pub fn eps_mean(&self, x_t: &[f64], abar: f64) -> Vec<f64> {
        let sb = (1.0 - abar).sqrt();
        self.per_frequency(x_t, |k| inverse(self.marginal_block(k, abar)) * sb)
    }

    /// `Cov[eps | x_t] = I - bbar (abar S + bbar I)^-1` applied to `v`.
    pub fn eps_cov_apply(&self, v: &[f64], abar: f64) -> Vec<f64> {
        self.per_frequency(v, |k| self.eps_cov_block(k, abar))
    }

    fn eps_cov_block(&self, k: usize, abar: f64) -> DMatrix<f64> {
        let id = DMatrix::identity(self.c, self.c);
        &id - inverse(self.marginal_block(k, abar)) * (1.0 - abar)
    }

    /// `Cov[eps | x_t]` as a dense `n x n` matrix.
    pub fn eps_cov_dense(&self, abar: f64) -> DMatrix<f64> {
        dense::from_operator(self.dim(), |v| self.eps_cov_apply(v, abar))
    }

    /// The prior covariance `S` as a dense matrix.
    pub fn prior_dense(&self) -> DMatrix<f64> {
        dense::from_operator(self.dim(), |v| self.per_frequency(v, |k| self.colour() * self.sigma2[k]))
    }

    /// `Cov[eps | x_t]` in exact K-DCT form, where it has one: grey data, or
    /// colour with `P P^T` of rank one or a multiple of the identity.
    pub fn eps_cov_kdct(&self, abar: f64) -> Option<KdctParams> {
        let (l, gain) = self.kdct_colour()?;
        let (c, dd) = (self.c, self.d * self.d);
        Some(KdctParams {
            channels: c,
            size: self.d,
            e: vec![0.0; c * dd],
            l: l.transpose().as_slice().to_vec(),
            lam: self.sigma2.iter().map(|s| abar * s * gain / (abar * s * gain + 1.0 - abar)).collect(),
        })
    }

    /// `(L, g)` with `Cov[eps | x_t] = (L L^T) (x) F2^T diag(abar sigma2 g / (abar sigma2 g + bbar)) F2`
    /// at every `t`, where there is one: `M = P P^T = g I` gives `L = I`; `M = g u u^T`
    /// (`|u| = 1`, rank one) gives `L = [u 0 ... 0]`. `None` for other colour factors.
    pub fn kdct_colour(&self) -> Option<(DMatrix<f64>, f64)> {
        let c = self.c;
        let m = self.colour();
        let scale = m.trace() / c as f64;
        if (&m - DMatrix::identity(c, c) * scale).abs().max() <= 1e-12 * scale.max(1.0) {
            // Block = (abar s2 m / (abar s2 m + bbar)) I.
            return Some((DMatrix::identity(c, c), scale));
        }
        let eig = m.clone().symmetric_eigen();
        let (imax, &top) = eig.eigenvalues.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
        let rest: f64 = eig.eigenvalues.iter().map(|x| x.abs()).sum::<f64>() - top.abs();
        if rest <= 1e-12 * top.abs() {
            // M = p p^T: block = (p p^T / |p|^2) * abar s2 |p|^2 / (bbar + abar s2 |p|^2).
            let mut l = DMatrix::zeros(c, c);
            l.set_column(0, &eig.eigenvectors.column(imax));
            return Some((l, top));
        }
        None
    }

    /// Exact moments of `q(x_s | x_t)`: `x_s | x_t ~ N(G x_t, V)` per frequency with
    /// `G = sqrt(a) S_s S_t^-1` and `V = S_s - a S_s S_t^-1 S_s`, `S_u = abar_u S + bbar_u I`.
    fn posterior_blocks(&self, k: usize, abar_t: f64, abar_s: f64) -> (DMatrix<f64>, DMatrix<f64>) {
        let a = abar_t / abar_s;
        let ss = self.marginal_block(k, abar_s);
        let st_inv = inverse(self.marginal_block(k, abar_t));
        let g = &ss * &st_inv * a.sqrt();
        let v = &ss - &ss * &st_inv * &ss * a;
        (g, v)
    }

    /// Exact mean of `q(x_s | x_t)`.
    pub fn posterior_mean(&self, x_t: &[f64], abar_t: f64, abar_s: f64) -> Vec<f64> {
        self.per_frequency(x_t, |k| self.posterior_blocks(k, abar_t, abar_s).0)
    }

    /// Exact covariance of `q(x_s | x_t)`, dense.
    pub fn posterior_cov_dense(&self, abar_t: f64, abar_s: f64) -> DMatrix<f64> {
        dense::from_operator(self.dim(), |v| self.per_frequency(v, |k| self.posterior_blocks(k, abar_t, abar_s).1))
    }

    /// An exact draw of `x_s ~ q(x_s | x_t)`.
    pub fn posterior_sample<R: Rng + ?Sized>(&self, x_t: &[f64], abar_t: f64, abar_s: f64, rng: &mut R) -> Vec<f64> {
        let mean = self.posterior_mean(x_t, abar_t, abar_s);
        let z: Vec<f64> = (0..self.dim()).map(|_| StandardNormal.sample(rng)).collect();
        let noise = self.per_frequency(&z, |k| psd_sqrt(self.posterior_blocks(k, abar_t, abar_s).1));
        mean.iter().zip(noise).map(|(m, z)| m + z).collect()
    }
}

fn inverse(m: DMatrix<f64>) -> DMatrix<f64> {
    m.try_inverse().expect("abar S + bbar I is positive definite for 0 <= abar < 1")
}

/// Symmetric square root of a PSD matrix (eigenvalues clipped at 0).
fn psd_sqrt(m: DMatrix<f64>) -> DMatrix<f64> {
    let eig = m.symmetric_eigen();
    let s = eig.eigenvalues.map(|x| x.max(0.0).sqrt());
    &eig.eigenvectors * DMatrix::from_diagonal(&s) * eig.eigenvectors.transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{Linear, Schedule};
    use crate::skip_step::SkipStep;
    use rand::{rngs::StdRng, SeedableRng};

    fn grey() -> DctGaussian {
        DctGaussian::power_law(&[1.0], 1, 3, 2.0, 1.0).unwrap()
    }

    fn colour() -> DctGaussian {
        let p = [0.9, 0.1, 0.0, 0.3, 0.8, 0.2, 0.1, 0.4, 0.7];
        DctGaussian::power_law(&p, 3, 2, 1.5, 0.8).unwrap()
    }

    /// Brute force: draw (x0, eps) jointly and compare E[eps x_t^T] and Cov[eps | x_t]
    /// through the linear-Gaussian identities. For a jointly Gaussian pair,
    /// E[eps|x_t] = K x_t with K = Cov(eps, x_t) Cov(x_t)^-1, and Cov[eps|x_t] = I - K Cov(x_t, eps).
    fn brute_force(g: &DctGaussian, abar: f64, n: usize, seed: u64) -> (DMatrix<f64>, DMatrix<f64>) {
        let dim = g.dim();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut xx = DMatrix::zeros(dim, dim);
        let mut ex = DMatrix::zeros(dim, dim);
        for _ in 0..n {
            let x0 = DVector::from_vec(g.sample_x0(&mut rng));
            let eps = DVector::from_iterator(dim, (0..dim).map(|_| StandardNormal.sample(&mut rng)));
            let xt = x0 * abar.sqrt() + &eps * (1.0 - abar).sqrt();
            xx += &xt * xt.transpose();
            ex += &eps * xt.transpose();
        }
        xx /= n as f64;
        ex /= n as f64;
        let k = &ex * xx.try_inverse().unwrap();
        let cov = DMatrix::identity(dim, dim) - &k * ex.transpose();
        (k, cov)
    }

    #[test]
    fn gaussian_truth_matches_monte_carlo() {
        for (g, seed) in [(grey(), 1), (colour(), 2)] {
            let abar = 0.6;
            let n = 200_000;
            let (k_mc, cov_mc) = brute_force(&g, abar, n, seed);
            let k_exact = dense::from_operator(g.dim(), |v| g.eps_mean(v, abar));
            let cov_exact = g.eps_cov_dense(abar);
            // Entries are O(1); the MC error of a moment over 2e5 draws is ~ 1/sqrt(n) = 0.0022,
            // amplified by Cov(x_t)^-1 (condition number <= 1/bbar = 2.5): allow 0.02.
            assert!((&k_mc - &k_exact).abs().max() < 0.02, "mean map\n{k_mc}\n{k_exact}");
            assert!((&cov_mc - &cov_exact).abs().max() < 0.02, "cov\n{cov_mc}\n{cov_exact}");
        }
    }

    #[test]
    fn exact_formulas_match_dense_linear_algebra() {
        // Cov[eps|x_t] = I - bbar (abar S + bbar I)^-1 with S built densely.
        for g in [grey(), colour()] {
            let abar = 0.3;
            let s = g.prior_dense();
            let n = g.dim();
            let marg = &s * abar + DMatrix::identity(n, n) * (1.0 - abar);
            let want = DMatrix::identity(n, n) - marg.clone().try_inverse().unwrap() * (1.0 - abar);
            assert!((g.eps_cov_dense(abar) - want).abs().max() < 1e-12);
            // And S itself is (P P^T) (x) F2^T diag(sigma2) F2.
            let f2 = dense::dct2_matrix(g.size());
            let sp = f2.transpose() * DMatrix::from_diagonal(&DVector::from_vec(g.sigma2.clone())) * &f2;
            assert!((g.colour().kronecker(&sp) - s).abs().max() < 1e-12);
        }
    }

    #[test]
    fn kdct_form_is_exact_for_grey_and_rank_one_colour() {
        let g = grey();
        let k = g.eps_cov_kdct(0.4).expect("grey is exactly K-DCT");
        assert!((k.to_dense() - g.eps_cov_dense(0.4)).abs().max() < 1e-12);

        let rank1 = DctGaussian::power_law(&[0.6, 0.0, 0.0, 0.3, 0.0, 0.0, 0.5, 0.0, 0.0], 3, 2, 1.0, 1.0).unwrap();
        let k = rank1.eps_cov_kdct(0.7).expect("rank-one colour is exactly K-DCT");
        assert!((k.to_dense() - rank1.eps_cov_dense(0.7)).abs().max() < 1e-12);

        let iso = DctGaussian::power_law(&[0.5, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.5], 3, 2, 1.0, 1.0).unwrap();
        let k = iso.eps_cov_kdct(0.2).expect("isotropic colour is exactly K-DCT");
        assert!((k.to_dense() - iso.eps_cov_dense(0.2)).abs().max() < 1e-12);

        assert!(colour().eps_cov_kdct(0.5).is_none(), "full-rank P P^T is not K-DCT");
    }

    #[test]
    fn skip_step_sampler_with_exact_moments_is_the_exact_posterior() {
        // mu_s and btilde I + kappa E_t (docs/maths.md) equal the exact q(x_s | x_t), for any gap.
        let table = Linear::default().table();
        for g in [grey(), colour()] {
            for (t, s) in [(1000, 0), (800, 300), (20, 19)] {
                let st = SkipStep::new(&table, t, s);
                let n = g.dim();
                let (cx, ce) = st.mean_from_eps();
                let mean_map = dense::from_operator(n, |v| {
                    let eps = g.eps_mean(v, st.abar_t);
                    v.iter().zip(eps).map(|(x, e)| cx * x + ce * e).collect()
                });
                let exact_map = dense::from_operator(n, |v| g.posterior_mean(v, st.abar_t, st.abar_s));
                assert!((&mean_map - &exact_map).abs().max() < 1e-9, "mean t={t} s={s}");
                let sigma = DMatrix::identity(n, n) * st.btilde + g.eps_cov_dense(st.abar_t) * st.kappa;
                let exact = g.posterior_cov_dense(st.abar_t, st.abar_s);
                assert!((&sigma - &exact).abs().max() < 1e-9, "cov t={t} s={s}");
            }
        }
    }

    #[test]
    fn posterior_samples_have_the_exact_covariance() {
        let g = colour();
        let (abar_t, abar_s) = (0.2, 0.7);
        let x_t = vec![0.3; g.dim()];
        let mut rng = StdRng::seed_from_u64(5);
        let n = 50_000;
        let mean = g.posterior_mean(&x_t, abar_t, abar_s);
        let mut samples = Vec::with_capacity(n * g.dim());
        for _ in 0..n {
            let s = g.posterior_sample(&x_t, abar_t, abar_s, &mut rng);
            samples.extend(s.iter().zip(&mean).map(|(a, b)| a - b));
        }
        let emp = dense::second_moment(&samples, g.dim());
        // Variances are below 1; MC standard error < sqrt(2/n) = 0.0063; allow 5 of them.
        let exact = g.posterior_cov_dense(abar_t, abar_s);
        assert!((emp - exact).abs().max() < 0.032);
    }
}
