//! Gaussian free field noise (docs/maths.md, "Non-isotropic noise").
//!
//! `g = Re(IFFT2(w * FFT2(z)))`, scaled to unit variance per pixel, with
//! `w_k = |k|^(-gamma)` on the signed FFT frequencies `k = (k_y, k_x)`.
//! At `k = 0` the weight is undefined; we give it the weight of `|k| = 1`
//! (that is, 1), so that the field keeps a mean component and `Sigma` stays
//! invertible, which NI-DDPM's `Sigma^-1/2` needs.
//!
//! Because `w` is even in `k`, `Re(IFFT2(w * FFT2(z)))` for complex `z`
//! equals the same filter applied to `Re(z)`; we therefore draw a real
//! standard normal `z` (same law after normalisation, half the draws).
//! The covariance is circulant: `Sigma = U^H diag(lam) U` with `U` the
//! unitary DFT and `lam_k = N w_k^2 / sum_j w_j^2`, so `diag(Sigma) = 1`.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use rustfft::{num_complex::Complex64, Fft, FftPlanner};
use std::sync::Arc;

/// A GFF on `d x d` planes with power `gamma`.
pub struct Gff {
    d: usize,
    gamma: f64,
    /// Eigenvalues of `Sigma` per FFT frequency, row-major `d x d`.
    lam: Vec<f64>,
    fwd: Arc<dyn Fft<f64>>,
    inv: Arc<dyn Fft<f64>>,
}

impl Gff {
    pub fn new(d: usize, gamma: f64) -> Result<Self, crate::Error> {
        if d == 0 {
            return Err(crate::Error::invalid("GFF", "the size must be positive"));
        }
        if !gamma.is_finite() || gamma < 0.0 {
            return Err(crate::Error::invalid("GFF", format!("gamma must be finite and >= 0, got {gamma}")));
        }
        let signed = |k: usize| if k <= d / 2 { k as f64 } else { k as f64 - d as f64 };
        let mut w2 = vec![0.0; d * d];
        for ky in 0..d {
            for kx in 0..d {
                let r = (signed(ky).powi(2) + signed(kx).powi(2)).sqrt();
                let w = if r == 0.0 { 1.0 } else { r.powf(-gamma) };
                w2[ky * d + kx] = w * w;
            }
        }
        let total: f64 = w2.iter().sum();
        let n = (d * d) as f64;
        let lam = w2.iter().map(|w| n * w / total).collect();
        let mut planner = FftPlanner::new();
        Ok(Self { d, gamma, lam, fwd: planner.plan_fft_forward(d), inv: planner.plan_fft_inverse(d) })
    }

    pub fn size(&self) -> usize {
        self.d
    }

    pub fn gamma(&self) -> f64 {
        self.gamma
    }

    /// Eigenvalues of `Sigma` on the FFT frequencies, row-major.
    pub fn eigenvalues(&self) -> &[f64] {
        &self.lam
    }

    /// One GFF plane (row-major `d x d`).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<f64> {
        let z: Vec<f64> = (0..self.d * self.d).map(|_| StandardNormal.sample(rng)).collect();
        self.sqrt_apply(&z)
    }

    /// `sqrt(Sigma) v`.
    pub fn sqrt_apply(&self, v: &[f64]) -> Vec<f64> {
        self.filter(v, |l| l.sqrt())
    }

    /// `Sigma^-1/2 v`.
    pub fn inv_sqrt_apply(&self, v: &[f64]) -> Vec<f64> {
        self.filter(v, |l| 1.0 / l.sqrt())
    }

    /// `Sigma v`.
    pub fn cov_apply(&self, v: &[f64]) -> Vec<f64> {
        self.filter(v, |l| l)
    }

    /// The exact covariance as a dense `D x D` matrix (row-major, `D = d^2`).
    pub fn dense_covariance(&self) -> Vec<f64> {
        let d = self.d;
        // Circulant: Sigma[(i,j),(i',j')] = c((i - i') mod d, (j - j') mod d), c = Sigma e_0.
        let mut e0 = vec![0.0; d * d];
        e0[0] = 1.0;
        let c = self.cov_apply(&e0);
        let n = d * d;
        let mut out = vec![0.0; n * n];
        for p in 0..n {
            let (i, j) = (p / d, p % d);
            for q in 0..n {
                let (k, l) = (q / d, q % d);
                out[p * n + q] = c[((i + d - k) % d) * d + (j + d - l) % d];
            }
        }
        out
    }

    /// `Re(IFFT2(h(lam) * FFT2(v)))`.
    fn filter(&self, v: &[f64], h: impl Fn(f64) -> f64) -> Vec<f64> {
        let d = self.d;
        assert_eq!(v.len(), d * d, "GFF operand must be d x d");
        let mut buf: Vec<Complex64> = v.iter().map(|&x| Complex64::new(x, 0.0)).collect();
        self.fft2(&mut buf, &self.fwd);
        for (b, &l) in buf.iter_mut().zip(&self.lam) {
            *b *= h(l);
        }
        self.fft2(&mut buf, &self.inv);
        let n = (d * d) as f64;
        buf.iter().map(|c| c.re / n).collect()
    }

    fn fft2(&self, buf: &mut [Complex64], plan: &Arc<dyn Fft<f64>>) {
        let d = self.d;
        for row in buf.chunks_exact_mut(d) {
            plan.process(row);
        }
        let mut col = vec![Complex64::new(0.0, 0.0); d];
        for j in 0..d {
            for i in 0..d {
                col[i] = buf[i * d + j];
            }
            plan.process(&mut col);
            for i in 0..d {
                buf[i * d + j] = col[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    /// The paper's spectrum, written out: `lam_k ~ |k|^(-2 gamma)` over signed DFT frequencies,
    /// the `k = 0` mode given the weight of `|k| = 1`, scaled to unit mean (unit pixel variance).
    fn paper_spectrum(d: usize, gamma: f64) -> Vec<f64> {
        let f = |k: usize| if 2 * k <= d { k as f64 } else { k as f64 - d as f64 };
        let raw: Vec<f64> = (0..d * d)
            .map(|p| {
                let r2 = f(p / d).powi(2) + f(p % d).powi(2);
                if r2 == 0.0 {
                    1.0
                } else {
                    r2.powf(-gamma)
                }
            })
            .collect();
        let mean = raw.iter().sum::<f64>() / (d * d) as f64;
        raw.iter().map(|x| x / mean).collect()
    }

    /// `Sigma[p, q] = (1/n) sum_k lam_k cos(2 pi k.(p - q) / d)`: a circulant from its spectrum.
    fn circulant(lam: &[f64], d: usize) -> Vec<f64> {
        let n = d * d;
        let mut out = vec![0.0; n * n];
        for p in 0..n {
            for q in 0..n {
                let (dy, dx) = ((p / d) as f64 - (q / d) as f64, (p % d) as f64 - (q % d) as f64);
                out[p * n + q] = (0..n)
                    .map(|k| {
                        let phase = (k / d) as f64 * dy + (k % d) as f64 * dx;
                        lam[k] * (2.0 * std::f64::consts::PI * phase / d as f64).cos()
                    })
                    .sum::<f64>()
                    / n as f64;
            }
        }
        out
    }

    #[test]
    fn spectrum_follows_the_power_law_with_the_zero_mode_rule() {
        for (d, gamma) in [(8, 1.0), (7, 1.5), (6, 0.5)] {
            let gff = Gff::new(d, gamma).unwrap();
            let want = paper_spectrum(d, gamma);
            for (k, (got, want)) in gff.eigenvalues().iter().zip(&want).enumerate() {
                assert!((got - want).abs() < 1e-12 * want, "d={d} gamma={gamma} k={k}: {got} vs {want}");
            }
            // The slope on a log-log plot is -2 gamma, and lam_0 equals lam at |k| = 1.
            let lam = gff.eigenvalues();
            let slope = (lam[2] / lam[1]).ln() / 2f64.ln();
            assert!((slope + 2.0 * gamma).abs() < 1e-12, "slope {slope}");
            assert!((lam[0] - lam[1]).abs() < 1e-12);
        }
    }

    #[test]
    fn gff_covariance_is_the_circulant_of_its_spectrum() {
        let d = 6;
        let gff = Gff::new(d, 1.0).unwrap();
        let want = circulant(&paper_spectrum(d, 1.0), d);
        let got = gff.dense_covariance();
        assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12));
    }

    #[test]
    fn gff_empirical_covariance_matches_analytic() {
        let (d, n) = (6, 40_000);
        let gff = Gff::new(d, 1.0).unwrap();
        let sigma = circulant(&paper_spectrum(d, 1.0), d);
        let m = d * d;
        let mut rng = StdRng::seed_from_u64(11);
        let samples: Vec<f64> = (0..n).flat_map(|_| gff.sample(&mut rng)).collect();
        let emp = crate::dense::second_moment(&samples, m);
        // An entry's MC standard error is sqrt((1 + rho^2)/n) <= sqrt(2/n) = 0.0071; allow 5 of them.
        let tol = 5.0 * (2.0 / n as f64).sqrt();
        for p in 0..m {
            assert!((sigma[p * m + p] - 1.0).abs() < 1e-12, "unit variance");
            for q in 0..m {
                let e = emp[(p, q)];
                assert!((e - sigma[p * m + q]).abs() < tol, "({p},{q}) {e} vs {}", sigma[p * m + q]);
            }
        }
        // The field is smooth: neighbours correlate strongly.
        assert!(sigma[1] > 0.3);
    }

    #[test]
    fn sqrt_and_inverse_sqrt_are_consistent_with_sigma() {
        let d = 5;
        let gff = Gff::new(d, 1.5).unwrap();
        let sigma = gff.dense_covariance();
        let m = d * d;
        for q in 0..m {
            let mut e = vec![0.0; m];
            e[q] = 1.0;
            let s2 = gff.sqrt_apply(&gff.sqrt_apply(&e));
            let id = gff.inv_sqrt_apply(&gff.sqrt_apply(&e));
            for p in 0..m {
                assert!((s2[p] - sigma[p * m + q]).abs() < 1e-12);
                assert!((id[p] - e[p]).abs() < 1e-10);
            }
        }
    }

    #[test]
    fn gamma_zero_is_white_noise() {
        let gff = Gff::new(4, 0.0).unwrap();
        let s = gff.dense_covariance();
        for p in 0..16 {
            for q in 0..16 {
                assert!((s[p * 16 + q] - if p == q { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        assert!(Gff::new(4, f64::NAN).is_err());
        assert!(Gff::new(0, 1.0).is_err());
    }
}
