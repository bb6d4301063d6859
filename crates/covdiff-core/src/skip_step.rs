//! Skip-step posterior coefficients from t down to s < t (docs/maths.md,
//! "Skip-step posterior"), the heuristics, and DDIM(eta).

use crate::schedule::ScheduleTable;

/// Coefficients of one sampling step from `t` to `s`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SkipStep {
    pub t: usize,
    pub s: usize,
    pub abar_t: f64,
    pub abar_s: f64,
    /// `a = abar_t / abar_s`.
    pub a: f64,
    /// `btilde = bbar_s (1 - a) / bbar_t`.
    pub btilde: f64,
    /// `kappa = (1 - a)^2 / (a bbar_t)`.
    pub kappa: f64,
}

impl SkipStep {
    /// The step from `t` to `s`; needs `0 <= s < t <= T`.
    pub fn new(table: &ScheduleTable, t: usize, s: usize) -> Self {
        assert!(s < t && t <= table.steps(), "skip step needs s < t <= T");
        let (abar_t, abar_s) = (table.abar(t), table.abar(s));
        let a = abar_t / abar_s;
        let bbar_t = 1.0 - abar_t;
        let bbar_s = 1.0 - abar_s;
        Self { t, s, abar_t, abar_s, a, btilde: bbar_s * (1.0 - a) / bbar_t, kappa: (1.0 - a).powi(2) / (a * bbar_t) }
    }

    pub fn bbar_t(&self) -> f64 {
        1.0 - self.abar_t
    }

    pub fn bbar_s(&self) -> f64 {
        1.0 - self.abar_s
    }

    /// `mu_s = c_x x_t + c_eps eps_hat`, with
    /// `c_x = 1/sqrt(a)`, `c_eps = -(1 - a)/(sqrt(a) sqrt(bbar_t))`.
    pub fn mean_from_eps(&self) -> (f64, f64) {
        let sa = self.a.sqrt();
        (1.0 / sa, -(1.0 - self.a) / (sa * self.bbar_t().sqrt()))
    }

    /// `mu_s = c_x0 x0_hat + c_x x_t`, the form used with x0 clipping:
    /// `c_x0 = sqrt(abar_s)(1 - a)/bbar_t`, `c_x = sqrt(a) bbar_s / bbar_t`.
    pub fn mean_from_x0(&self) -> (f64, f64) {
        let bt = self.bbar_t();
        (self.abar_s.sqrt() * (1.0 - self.a) / bt, self.a.sqrt() * self.bbar_s() / bt)
    }

    /// Tweedie: `x0_hat = c_x x_t + c_eps eps_hat`.
    pub fn x0_from_eps(&self) -> (f64, f64) {
        let sa = self.abar_t.sqrt();
        (1.0 / sa, -self.bbar_t().sqrt() / sa)
    }

    /// The covariance of the step is `shift I + scale E_t` (`btilde I + kappa E_t`).
    pub fn covariance_shift_scale(&self) -> (f64, f64) {
        (self.btilde, self.kappa)
    }

    /// Heuristic "small" variance: `btilde`.
    pub fn small_variance(&self) -> f64 {
        self.btilde
    }

    /// Heuristic "large" variance: `1 - a`.
    pub fn large_variance(&self) -> f64 {
        1.0 - self.a
    }

    /// DDIM(eta): `x_s = c_x0 x0_hat + c_eps eps_hat + sigma z`, `sigma^2 = eta^2 btilde`.
    pub fn ddim(&self, eta: f64) -> Ddim {
        let sigma2 = eta * eta * self.btilde;
        Ddim { c_x0: self.abar_s.sqrt(), c_eps: (self.bbar_s() - sigma2).max(0.0).sqrt(), sigma: sigma2.sqrt() }
    }
}

/// Coefficients of a DDIM step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ddim {
    pub c_x0: f64,
    pub c_eps: f64,
    pub sigma: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{Linear, Schedule};

    #[test]
    fn both_mean_forms_agree_without_clipping() {
        let table = Linear::default().table();
        for (t, s) in [(1000, 900), (500, 1), (10, 0), (2, 1)] {
            let st = SkipStep::new(&table, t, s);
            let (x, e) = (0.7, -1.3);
            let (cx, ce) = st.mean_from_eps();
            let (ax, ae) = st.x0_from_eps();
            let x0 = ax * x + ae * e;
            let (m0, mx) = st.mean_from_x0();
            assert!(((cx * x + ce * e) - (m0 * x0 + mx * x)).abs() < 1e-9, "t={t} s={s}");
        }
    }

    #[test]
    fn skip_to_zero_gives_posterior_of_x0() {
        // s = 0: btilde = 0 and kappa = bbar_t / abar_t, so Sigma = Cov[x0 | x_t].
        let table = Linear::default().table();
        let st = SkipStep::new(&table, 400, 0);
        assert_eq!(st.btilde, 0.0);
        assert!((st.kappa - table.bbar(400) / table.abar(400)).abs() < 1e-9);
    }

    /// `q(x_s | x_t, x_0)` by conditioning the joint Gaussian of `(x_s, x_t)` given `x_0`:
    /// `Var x_s = bbar_s`, `Var x_t = bbar_t`, `Cov(x_s, x_t) = sqrt(a) bbar_s`. Returns the
    /// coefficients of `x_0` and `x_t` in the mean, and the variance (a Schur complement).
    fn conditioned(table: &ScheduleTable, t: usize, s: usize) -> (f64, f64, f64) {
        let (ab_t, ab_s) = (table.abar(t), table.abar(s));
        let (bb_t, bb_s) = (1.0 - ab_t, 1.0 - ab_s);
        let cov = (ab_t / ab_s).sqrt() * bb_s;
        let gain = cov / bb_t;
        (ab_s.sqrt() - gain * ab_t.sqrt(), gain, bb_s - cov * cov / bb_t)
    }

    #[test]
    fn posterior_coefficients_match_gaussian_conditioning() {
        let table = Linear::default().table();
        for (t, s) in [(1000, 900), (500, 1), (10, 0), (2, 1), (700, 350)] {
            let st = SkipStep::new(&table, t, s);
            let (c0, cx, var) = conditioned(&table, t, s);
            let (m0, mx) = st.mean_from_x0();
            assert!((m0 - c0).abs() < 1e-12 && (mx - cx).abs() < 1e-12, "t={t} s={s}: mean");
            assert!((st.btilde - var).abs() < 1e-12, "t={t} s={s}: btilde {} vs {var}", st.btilde);
            // Law of total covariance: Cov[x_s | x_t] = btilde I + c0^2 Cov[x0 | x_t], and
            // Cov[x0 | x_t] = (bbar_t / abar_t) E_t, so kappa = c0^2 bbar_t / abar_t.
            let kappa = c0 * c0 * st.bbar_t() / st.abar_t;
            assert!((st.kappa - kappa).abs() < 1e-9 * kappa.max(1.0), "t={t} s={s}: kappa {} vs {kappa}", st.kappa);
        }
        // One step: beta-tilde and beta of the schedule.
        let st = SkipStep::new(&table, 300, 299);
        assert!((st.small_variance() - conditioned(&table, 300, 299).2).abs() < 1e-15);
        assert!((st.large_variance() - table.beta(300)).abs() < 1e-14);
    }

    #[test]
    fn ddim_with_eta_one_is_the_ddpm_posterior() {
        // DDIM (Song et al., Eq. 12) with the true eps = (x_t - sqrt(abar_t) x0) / sqrt(bbar_t)
        // and eta = 1 is q(x_s | x_t, x0): the same mean coefficients and variance.
        let table = Linear::default().table();
        for (t, s) in [(700, 350), (1000, 1), (50, 49)] {
            let st = SkipStep::new(&table, t, s);
            let (c0, cx, var) = conditioned(&table, t, s);
            let d = st.ddim(1.0);
            let on_x0 = d.c_x0 - d.c_eps * st.abar_t.sqrt() / st.bbar_t().sqrt();
            let on_xt = d.c_eps / st.bbar_t().sqrt();
            assert!((on_x0 - c0).abs() < 1e-12 && (on_xt - cx).abs() < 1e-12, "t={t} s={s}");
            assert!((d.sigma * d.sigma - var).abs() < 1e-12, "t={t} s={s}");
            assert_eq!(st.ddim(0.0).sigma, 0.0);
        }
    }
}
