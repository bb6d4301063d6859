//! Score matching with Langevin dynamics, white (SMLD, Song & Ermon) or with the forward noise's
//! covariance `Sigma` (NI-SMLD, the non-isotropic paper's appendix E; docs/maths.md "NI-SMLD").
//!
//! Noise levels `sigma_1 > ... > sigma_L` perturb the data as `x_i = x + sigma_i Sigma^1/2 eps`. The
//! network predicts `eps` from `(x_i, i)`, so the score is `s(x_i, i) = -Sigma^-1/2 eps_hat / sigma_i`
//! (Eq. 99), trained by `||eps - eps_hat||^2` (Eq. 100, [`SmldStage`](crate::image::SmldStage)).
//!
//! Sampling is annealed Langevin dynamics with `Sigma`-preconditioned steps: at level `i`, `M`
//! steps of size `alpha_i = epsilon sigma_i^2 / sigma_L^2` of
//! `x <- x + alpha_i Sigma s(x, i) + sqrt(2 alpha_i) Sigma^1/2 z = x - (alpha_i / sigma_i) Sigma^1/2 eps_hat + sqrt(2 alpha_i) Sigma^1/2 z`,
//! which is plain SMLD in the whitened coordinates `y = Sigma^-1/2 x`. (The paper's Eq. 101 takes
//! the drift without `Sigma`; with noise of covariance `Sigma` that chain does not leave
//! `p_sigma` invariant unless `Sigma = I`, so covdiff preconditions the drift.) It starts from
//! `x ~ N(0, sigma_1^2 Sigma)` and, as NCSNv2 does, ends with the denoised
//! `x - sigma_L Sigma^1/2 eps_hat(x, L)` (Eq. 103).

use super::denoiser::Denoiser;
use super::noise::ForwardNoise;
use crate::normals::standard_normal;
use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

/// What can go wrong while building or stepping a Langevin sampler.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LangevinError {
    #[error("invalid Langevin configuration: {0}")]
    Config(String),
    #[error("the sampler has already annealed through all of its {0} levels")]
    Finished(usize),
}

/// `sigma_1 > ... > sigma_L`, geometric (Song & Ermon): `sigma_i = sigma_max r^(i - 1)`,
/// `r = (sigma_min / sigma_max)^(1 / (L - 1))`. Level `i` (1-based) is the network's step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseLevels {
    pub sigma_max: f64,
    pub sigma_min: f64,
    pub levels: usize,
}

impl NoiseLevels {
    /// `levels` geometric levels from `sigma_max` down to `sigma_min`.
    pub fn geometric(sigma_max: f64, sigma_min: f64, levels: usize) -> Result<Self, LangevinError> {
        let l = Self { sigma_max, sigma_min, levels };
        l.validated()
    }

    /// The levels, or why they are not `sigma_max > sigma_min > 0` with at least two of them.
    pub fn validated(self) -> Result<Self, LangevinError> {
        if !(self.sigma_min > 0.0 && self.sigma_max > self.sigma_min && self.sigma_max.is_finite()) || self.levels < 2 {
            return Err(LangevinError::Config(format!(
                "need sigma_max > sigma_min > 0 and at least 2 levels, got {}, {}, {}",
                self.sigma_max, self.sigma_min, self.levels
            )));
        }
        Ok(self)
    }

    /// `L`.
    pub fn len(&self) -> usize {
        self.levels
    }

    pub fn is_empty(&self) -> bool {
        self.levels == 0
    }

    /// `ln r`.
    fn log_ratio(&self) -> f64 {
        (self.sigma_min / self.sigma_max).ln() / (self.levels.max(2) - 1) as f64
    }

    /// `sigma_i`, `i` in `1..=L`.
    pub fn sigma(&self, i: usize) -> f64 {
        self.sigma_max * ((i as f64 - 1.0) * self.log_ratio()).exp()
    }

    /// `sigma_t` of each entry of a batch of levels `t` (as floats), on their device.
    pub fn sigma_of<B: Backend>(&self, t: Tensor<B, 1>) -> Tensor<B, 1> {
        ((t - 1.0) * self.log_ratio() + self.sigma_max.ln()).exp()
    }
}

/// Annealed Langevin dynamics: the levels, `M` steps per level and the step scale `epsilon`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LangevinConfig {
    pub levels: NoiseLevels,
    pub steps_per_level: usize,
    /// `alpha_i = epsilon sigma_i^2 / sigma_L^2`.
    pub epsilon: f64,
    /// End with the denoised `x - sigma_L Sigma^1/2 eps_hat` (one more network evaluation).
    #[serde(default = "yes")]
    pub denoise_last: bool,
}

fn yes() -> bool {
    true
}

impl LangevinConfig {
    /// A run with the forward noise `noise` (white: SMLD; GFF: NI-SMLD).
    pub fn build<B: Backend>(&self, noise: ForwardNoise<B>) -> Result<Langevin<B>, LangevinError> {
        if self.steps_per_level == 0 || !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(LangevinError::Config(format!(
                "need steps_per_level > 0 and epsilon > 0, got {} and {}",
                self.steps_per_level, self.epsilon
            )));
        }
        self.levels.validated()?;
        Ok(Langevin { config: self.clone(), noise, done: 0 })
    }
}

/// A Langevin run in progress; [`Langevin::step`] anneals through one level.
#[derive(Clone, Debug)]
pub struct Langevin<B: Backend> {
    config: LangevinConfig,
    noise: ForwardNoise<B>,
    /// Levels done.
    done: usize,
}

impl<B: Backend> Langevin<B> {
    /// `x_1 ~ N(0, sigma_1^2 Sigma)` from covdiff's normal stream.
    pub fn initial(&self, shape: [usize; 4], device: &B::Device) -> Tensor<B, 4> {
        self.noise.sqrt_apply(standard_normal(shape, device)) * self.config.levels.sigma(1)
    }

    pub fn levels_done(&self) -> usize {
        self.done
    }

    pub fn is_finished(&self) -> bool {
        self.done == self.config.levels.len()
    }

    /// The `M` Langevin steps of the next level from `x`; after the last level, the final denoising
    /// when the config asks for it.
    pub fn step<D: Denoiser<B> + ?Sized>(&mut self, score: &D, x: Tensor<B, 4>) -> Result<Tensor<B, 4>, LangevinError> {
        let levels = self.config.levels;
        if self.is_finished() {
            return Err(LangevinError::Finished(levels.len()));
        }
        let i = self.done + 1;
        let (sigma, last) = (levels.sigma(i), levels.sigma(levels.len()));
        let alpha = self.config.epsilon * sigma * sigma / (last * last);
        let mut x = x;
        for _ in 0..self.config.steps_per_level {
            let (eps, _) = score.predict(x.clone(), i, false);
            let z = standard_normal(x.dims(), &x.device());
            // x - (alpha / sigma) Sigma^1/2 eps_hat + sqrt(2 alpha) Sigma^1/2 z.
            x = x + self.noise.sqrt_apply(eps * (-alpha / sigma) + z * (2.0 * alpha).sqrt());
        }
        self.done += 1;
        if self.is_finished() && self.config.denoise_last {
            let (eps, _) = score.predict(x.clone(), i, false);
            x = x - self.noise.sqrt_apply(eps) * sigma;
        }
        Ok(x)
    }

    /// All remaining levels from `x`.
    pub fn run<D: Denoiser<B> + ?Sized>(&mut self, score: &D, x: Tensor<B, 4>) -> Result<Tensor<B, 4>, LangevinError> {
        let mut x = x;
        while !self.is_finished() {
            x = self.step(score, x)?;
        }
        Ok(x)
    }
}
