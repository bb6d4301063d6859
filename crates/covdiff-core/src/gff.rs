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
        fft2(&mut buf, d, &self.fwd);
        for (b, &l) in buf.iter_mut().zip(&self.lam) {
            *b *= h(l);
        }
        fft2(&mut buf, d, &self.inv);
        let n = (d * d) as f64;
        buf.iter().map(|c| c.re / n).collect()
    }
}

/// The unnormalised 2D DFT of a row-major `d x d` buffer, rows then columns, in place.
fn fft2(buf: &mut [Complex64], d: usize, plan: &Arc<dyn Fft<f64>>) {
    for row in buf.chunks_exact_mut(d) {
        plan.process(row);
    }
    let mut col = vec![Complex64::new(0.0, 0.0); d];
    for j in 0..d {
        (0..d).for_each(|i| col[i] = buf[i * d + j]);
        plan.process(&mut col);
        (0..d).for_each(|i| buf[i * d + j] = col[i]);
    }
}

/// The radially averaged power spectrum of a `d x d` plane `x` (row-major): for each ring
/// `r = 1 ..= d/2`, the mean of `|FFT2(x)_k|^2 / d^2` over the signed frequencies `k` with
/// `round(|k|) = r`. For a field with circulant covariance `U^H diag(lam) U` its expectation is the
/// ring's mean of `lam_k` (so white noise gives 1, and a GFF `|k|^(-2 gamma)`). Returns
/// `(|k|, power)` pairs; `k = 0` (the mean) is left out, as are the corners beyond `d/2`.
pub fn radial_power_spectrum(x: &[f64], d: usize) -> Result<Vec<(f64, f64)>, crate::Error> {
    if d < 2 || x.len() != d * d {
        return Err(crate::Error::invalid(
            "power spectrum",
            format!("expected a d x d plane with d >= 2, got {} values for d = {d}", x.len()),
        ));
    }
    let mut planner = FftPlanner::new();
    let plan = planner.plan_fft_forward(d);
    let mut buf: Vec<Complex64> = x.iter().map(|&v| Complex64::new(v, 0.0)).collect();
    fft2(&mut buf, d, &plan);
    let power: Vec<f64> = buf.iter().map(|c| c.norm_sqr() / (d * d) as f64).collect();
    Ok(ring_means(&power, d))
}

/// The mean of a function of the DFT frequency (row-major `d x d`, e.g. a GFF's eigenvalues)
/// over each ring `round(|k|) = r`, `r = 1 ..= d/2`, with `k` the signed frequencies.
pub fn ring_means(values: &[f64], d: usize) -> Vec<(f64, f64)> {
    let signed = |k: usize| if k <= d / 2 { k as f64 } else { k as f64 - d as f64 };
    let rings = d / 2;
    let (mut sum, mut count) = (vec![0.0; rings + 1], vec![0usize; rings + 1]);
    for (q, v) in values.iter().enumerate().take(d * d) {
        let r = (signed(q / d).powi(2) + signed(q % d).powi(2)).sqrt().round() as usize;
        if (1..=rings).contains(&r) {
            sum[r] += v;
            count[r] += 1;
        }
    }
    (1..=rings).filter(|&r| count[r] > 0).map(|r| (r as f64, sum[r] / count[r] as f64)).collect()
}

/// The least-squares slope of `ln(power)` against `ln(|k|)`: `-2 gamma` for a GFF.
pub fn log_log_slope(points: &[(f64, f64)]) -> Option<f64> {
    let pts: Vec<(f64, f64)> =
        points.iter().filter(|(k, p)| *k > 0.0 && *p > 0.0).map(|(k, p)| (k.ln(), p.ln())).collect();
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return None;
    }
    let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
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

    /// The row-major indices `q` of the frequencies on ring `r`: `round(|k|) = r`, with `k` the
    /// signed frequencies (`k > d/2` stands for `k - d`).
    fn ring_of(d: usize, r: usize) -> Vec<usize> {
        let f = |k: usize| if k <= d / 2 { k as f64 } else { k as f64 - d as f64 };
        (0..d * d).filter(|q| (f(q / d).powi(2) + f(q % d).powi(2)).sqrt().round() == r as f64).collect()
    }

    /// The direct 2D DFT, `sum_p x_p exp(-2 pi i k.p / d)`, by the definition (O(d^4)).
    fn dft_power(x: &[f64], d: usize, ky: usize, kx: usize) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (p, v) in x.iter().enumerate() {
            let phase = -2.0 * std::f64::consts::PI * ((ky * (p / d) + kx * (p % d)) as f64) / d as f64;
            re += v * phase.cos();
            im += v * phase.sin();
        }
        (re * re + im * im) / (d * d) as f64
    }

    #[test]
    fn radial_spectrum_is_the_ring_mean_of_the_direct_dft() {
        let d = 6;
        let mut rng = StdRng::seed_from_u64(3);
        let x: Vec<f64> = (0..d * d).map(|_| StandardNormal.sample(&mut rng)).collect();
        let got = radial_power_spectrum(&x, d).unwrap();
        for &(r, p) in &got {
            let ring = ring_of(d, r as usize);
            let want = ring.iter().map(|&q| dft_power(&x, d, q / d, q % d)).sum::<f64>() / ring.len() as f64;
            assert!((p - want).abs() < 1e-10, "ring {r}: {p} vs {want}");
        }
        assert_eq!(got.len(), d / 2);
        assert!(radial_power_spectrum(&x, 5).is_err());
    }

    /// Monte Carlo: the mean radial spectrum of GFF samples is the ring mean of the paper's
    /// spectrum (each ring's estimate has relative standard error below 1/sqrt(samples x ring)),
    /// and its log-log slope is close to -2 gamma; white noise gives 1 and slope 0.
    #[test]
    fn gff_samples_have_the_power_law_spectrum() {
        let (d, gamma, m) = (32, 1.0, 200);
        let gff = Gff::new(d, gamma).unwrap();
        let want = paper_spectrum(d, gamma);
        let mut rng = StdRng::seed_from_u64(11);
        let mut mean = vec![0.0; d / 2];
        let mut white = vec![0.0; d / 2];
        for _ in 0..m {
            let s = radial_power_spectrum(&gff.sample(&mut rng), d).unwrap();
            let z: Vec<f64> = (0..d * d).map(|_| StandardNormal.sample(&mut rng)).collect();
            let w = radial_power_spectrum(&z, d).unwrap();
            for i in 0..d / 2 {
                mean[i] += s[i].1 / m as f64;
                white[i] += w[i].1 / m as f64;
            }
        }
        for r in 1..=d / 2 {
            let ring = ring_of(d, r);
            let exact = ring.iter().map(|&q| want[q]).sum::<f64>() / ring.len() as f64;
            let tol = 5.0 / ((m * ring.len()) as f64).sqrt();
            assert!((mean[r - 1] / exact - 1.0).abs() < tol, "ring {r}: {} vs {exact}", mean[r - 1]);
            assert!((white[r - 1] - 1.0).abs() < tol, "white ring {r}: {}", white[r - 1]);
        }
        let pts = |v: &[f64]| v.iter().enumerate().map(|(i, p)| ((i + 1) as f64, *p)).collect::<Vec<_>>();
        let slope = log_log_slope(&pts(&mean)).unwrap();
        assert!((slope + 2.0 * gamma).abs() < 0.1, "GFF slope {slope}");
        assert!(log_log_slope(&pts(&white)).unwrap().abs() < 0.05);
        assert_eq!(log_log_slope(&[(1.0, 1.0)]), None);
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
