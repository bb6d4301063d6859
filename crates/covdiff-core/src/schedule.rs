//! Noise schedules (docs/maths.md, "Schedules"): `beta_t` for t = 1..T and the
//! derived `alpha_t`, `abar_t`, `bbar_t` and `btilde_t`.

use serde::{Deserialize, Serialize};

/// A family of noise schedules: anything that yields `beta_1..beta_T`.
pub trait Schedule {
    /// Short name, as used on the command line.
    fn name(&self) -> &'static str;
    /// `beta_t` for t = 1..=T, in order.
    fn betas(&self) -> Vec<f64>;
    /// The derived quantities, computed once.
    fn table(&self) -> ScheduleTable {
        ScheduleTable::from_betas(self.betas())
    }
}

/// Ho et al.: beta linear from `beta_1` to `beta_T`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    pub steps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
}

impl Default for Linear {
    fn default() -> Self {
        Self { steps: 1000, beta_start: 1e-4, beta_end: 0.02 }
    }
}

impl Schedule for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }
    fn betas(&self) -> Vec<f64> {
        linspace(self.beta_start, self.beta_end, self.steps)
    }
}

/// Nichol & Dhariwal: `abar(t) = f(t)/f(0)`, `f(t) = cos^2(((t/T + s)/(1 + s)) pi/2)`,
/// each beta clipped at `max_beta`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cosine {
    pub steps: usize,
    pub s: f64,
    pub max_beta: f64,
}

impl Default for Cosine {
    fn default() -> Self {
        Self { steps: 1000, s: 0.008, max_beta: 0.999 }
    }
}

impl Schedule for Cosine {
    fn name(&self) -> &'static str {
        "cosine"
    }
    fn betas(&self) -> Vec<f64> {
        let big_t = self.steps as f64;
        let f = |t: f64| {
            let u = (t / big_t + self.s) / (1.0 + self.s) * std::f64::consts::FRAC_PI_2;
            u.cos().powi(2)
        };
        (1..=self.steps)
            .map(|t| {
                let b = 1.0 - f(t as f64) / f(t as f64 - 1.0);
                b.min(self.max_beta)
            })
            .collect()
    }
}

/// The 2D thesis: beta from `beta_start` to `beta_end` along `sigmoid(linspace(-6, 6, T))`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sigmoid {
    pub steps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
}

impl Default for Sigmoid {
    fn default() -> Self {
        Self { steps: 500, beta_start: 1e-5, beta_end: 0.03 }
    }
}

impl Schedule for Sigmoid {
    fn name(&self) -> &'static str {
        "sigmoid"
    }
    fn betas(&self) -> Vec<f64> {
        linspace(-6.0, 6.0, self.steps)
            .into_iter()
            .map(|u| {
                let s = 1.0 / (1.0 + (-u).exp());
                self.beta_start + (self.beta_end - self.beta_start) * s
            })
            .collect()
    }
}

fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![a],
        _ => (0..n).map(|i| a + (b - a) * i as f64 / (n - 1) as f64).collect(),
    }
}

/// `beta`, `alpha`, `abar`, `bbar` for t = 1..=T. Index with `t` (1-based);
/// `abar(0) = 1` and `bbar(0) = 0` stand for clean data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleTable {
    beta: Vec<f64>,
    abar: Vec<f64>,
}

impl ScheduleTable {
    /// Build from `beta_1..beta_T`. Each beta must lie in (0, 1).
    pub fn from_betas(beta: Vec<f64>) -> Self {
        let mut abar = Vec::with_capacity(beta.len());
        let mut acc = 1.0;
        for b in &beta {
            acc *= 1.0 - b;
            abar.push(acc);
        }
        Self { beta, abar }
    }

    /// Number of steps T.
    pub fn steps(&self) -> usize {
        self.beta.len()
    }

    pub fn beta(&self, t: usize) -> f64 {
        self.beta[t - 1]
    }

    /// `alpha_t = 1 - beta_t`.
    pub fn alpha(&self, t: usize) -> f64 {
        1.0 - self.beta(t)
    }

    /// `abar_t = prod_{s <= t} alpha_s`, with `abar_0 = 1`.
    pub fn abar(&self, t: usize) -> f64 {
        if t == 0 {
            1.0
        } else {
            self.abar[t - 1]
        }
    }

    /// `bbar_t = 1 - abar_t`.
    pub fn bbar(&self, t: usize) -> f64 {
        1.0 - self.abar(t)
    }

    /// `btilde_t = bbar_{t-1} beta_t / bbar_t`, the "small" one-step variance.
    pub fn btilde(&self, t: usize) -> f64 {
        self.bbar(t - 1) * self.beta(t) / self.bbar(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_matches_ho_et_al() {
        let t = Linear::default().table();
        assert_eq!(t.steps(), 1000);
        assert!((t.beta(1) - 1e-4).abs() < 1e-15);
        assert!((t.beta(1000) - 0.02).abs() < 1e-15);
        // abar_T of the DDPM linear schedule is about 4.04e-5.
        assert!((t.abar(1000) - 4.0358e-5).abs() < 1e-8, "{}", t.abar(1000));
    }

    #[test]
    fn cosine_abar_follows_its_closed_form() {
        let c = Cosine::default();
        let t = c.table();
        let f = |t: f64| (((t / 1000.0 + 0.008) / 1.008) * std::f64::consts::FRAC_PI_2).cos().powi(2);
        for step in [1, 10, 500, 900] {
            let want = f(step as f64) / f(0.0);
            assert!((t.abar(step) - want).abs() < 1e-12, "t = {step}");
        }
        assert!(t.beta(1000) <= 0.999);
    }

    #[test]
    fn sigmoid_is_monotone_between_its_ends() {
        let t = Sigmoid::default().table();
        let b: Vec<f64> = (1..=t.steps()).map(|s| t.beta(s)).collect();
        assert!(b.windows(2).all(|w| w[1] > w[0]));
        let s6 = 1.0 / (1.0 + 6f64.exp());
        assert!((b[0] - (1e-5 + (0.03 - 1e-5) * s6)).abs() < 1e-15);
    }

    #[test]
    fn btilde_is_posterior_variance_of_one_step() {
        // q(x_{t-1} | x_t, x_0) by conditioning (x_{t-1}, x_t) given x_0: Var x_{t-1} = bbar_{t-1},
        // Var x_t = bbar_t, Cov = sqrt(alpha_t) bbar_{t-1}; the Schur complement is beta-tilde.
        let t = Linear::default().table();
        for step in [2, 100, 1000] {
            let cov = (1.0 - t.beta(step)).sqrt() * t.bbar(step - 1);
            let schur = t.bbar(step - 1) - cov * cov / t.bbar(step);
            assert!((t.btilde(step) - schur).abs() < 1e-14, "t={step}: {} vs {schur}", t.btilde(step));
        }
        assert_eq!(t.btilde(1), 0.0);
    }
}
