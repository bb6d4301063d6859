//! Samplers over a K-step trajectory (docs/maths.md, "Skip-step posterior"): the
//! skip-step DDPM with any step covariance, and DDIM(eta). Both work in the
//! whitened coordinates of the forward noise, so they serve NI-DDPM too.
//!
//! As in candle's schedulers, a serde [`SamplerConfig`] builds a [`Sampling`]
//! that owns its schedule and trajectory, and the caller drives
//! [`Sampling::step`]: one network evaluation per call, returning `x_s` and
//! the step's `x0_hat`, so a page can show progress and yield between steps.

use super::denoiser::Denoiser;
use super::noise::ForwardNoise;
use super::variance::StepVariance;
use crate::covariance::{AnyCovariance, Covariance};
use crate::normals::standard_normal;
use burn::tensor::{backend::Backend, Tensor};
use covdiff_core::schedule::ScheduleTable;
use covdiff_core::skip_step::SkipStep;
use covdiff_core::trajectory::{Spacing, Trajectory};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// What can go wrong while building or stepping a sampler.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SamplerError {
    #[error("the learned step variances need a model that predicts a covariance")]
    MissingCovariance,
    #[error("invalid sampler configuration: {0}")]
    Config(String),
    #[error("the sampler has already taken all of its {0} steps")]
    Finished(usize),
}

/// `x_T`: `Sigma^1/2 z`, `z ~ N(0, I)`, from covdiff's normal stream (`normals`).
pub fn initial_noise<B: Backend>(shape: [usize; 4], noise: &ForwardNoise<B>, device: &B::Device) -> Tensor<B, 4> {
    noise.sqrt_apply(standard_normal(shape, device))
}

/// What the penultimate step `t_2 -> t_1` does with its noise (K-DCT paper A.7, Bao et al.):
/// the step into `t_1`, the last one that adds noise. The final step `t_1 -> 0` returns the mean.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum NoiseClip {
    /// Add the step's noise unclipped.
    Noise,
    /// Eq. 41: scale by `S^1/2`, `S = min(1, v / diag(Sigma))`, `v = (y * 2/255 * sqrt(pi/2))^2`
    /// (Bao et al.'s bound on the per-pixel standard deviation). For a diagonal covariance this is
    /// Bao's elementwise clip of the diagonal.
    ClipScale { y: f64 },
    /// The paper's preferred rule: clip the noise sample `g` elementwise to `+-sqrt(v) |xi|`, with
    /// `xi` the white draw inside `g`. For a diagonal covariance this is also Bao's clip.
    ClipSample { y: f64 },
}

impl NoiseClip {
    /// `sqrt(v) = y * 2/255 * sqrt(pi/2)`: the per-pixel standard deviation bound.
    pub fn bound(y: f64) -> f64 {
        y * 2.0 / 255.0 * (std::f64::consts::PI / 2.0).sqrt()
    }

    /// The rule itself, or why its clip value `y` is not a positive number.
    pub fn validated(self) -> Result<Self, covdiff_core::Error> {
        match self {
            Self::ClipScale { y } | Self::ClipSample { y } if !(y.is_finite() && y > 0.0) => {
                Err(covdiff_core::Error::invalid("noise clipping", format!("the clip value must be positive, got {y}")))
            }
            rule => Ok(rule),
        }
    }

    /// The penultimate step's noise drawn from `sigma` under this rule.
    pub fn noise<B: Backend>(self, sigma: &AnyCovariance<B>) -> Tensor<B, 4> {
        match self {
            Self::Noise => sigma.sample(),
            Self::ClipScale { y } => {
                let std = sigma.diagonal().sqrt();
                let scale = (std.recip() * Self::bound(y)).clamp_max(1.0);
                sigma.sample() * scale
            }
            Self::ClipSample { y } => {
                let (g, xi) = sigma.sample_parts();
                let hi = xi.abs() * Self::bound(y);
                g.max_pair(hi.clone().neg()).min_pair(hi)
            }
        }
    }
}

impl FromStr for NoiseClip {
    type Err = covdiff_core::Error;
    /// `noise`, `clip-scale[:y]`, `clip-sample[:y]` (y defaults to 2, Bao et al.'s value).
    fn from_str(s: &str) -> Result<Self, covdiff_core::Error> {
        let (name, y) = match s.split_once(':') {
            Some((n, y)) => (
                n,
                y.parse::<f64>().map_err(|_| {
                    covdiff_core::Error::invalid("noise clipping", format!("the clip value in '{s}' is not a number"))
                })?,
            ),
            None => (s, 2.0),
        };
        match name {
            "noise" => Ok(Self::Noise),
            "clip-scale" => Self::ClipScale { y }.validated(),
            "clip-sample" => Self::ClipSample { y }.validated(),
            _ => Err(covdiff_core::Error::unknown("noise-clipping rule", s, "noise, clip-scale[:y], clip-sample[:y]")),
        }
    }
}

/// Which sampler, with its own parameter.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SamplerKind {
    /// The skip-step DDPM: `x_s = mu_s + lambda Sigma^1/2 g`, `g ~ N(0, Sigma_s)` in whitened coordinates.
    Ddpm { variance: StepVariance },
    /// DDIM(eta): `x_s = sqrt(abar_s) x0_hat + sqrt(bbar_s - sigma^2) Sigma^1/2 eps_hat + sigma Sigma^1/2 z`.
    Ddim { eta: f64 },
}

fn one() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

fn bao_clip() -> NoiseClip {
    NoiseClip::ClipSample { y: 2.0 }
}

/// Everything that defines a sampling run except the model and the start `x_T`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerConfig {
    /// `{"kind": "ddpm", "variance": "beta" | "beta-tilde" | "learned"}` or `{"kind": "ddim", "eta": ...}`.
    pub kind: SamplerKind,
    /// K, the number of network evaluations.
    pub steps: usize,
    #[serde(default)]
    pub spacing: Spacing,
    /// Noise scale `lambda` (1 is the model's own variance; DDPM only).
    #[serde(default = "one")]
    pub lambda: f64,
    /// Clip `x0_hat` to [-1, 1] and use the mean's `x0` form.
    #[serde(default = "yes")]
    pub clip_x0: bool,
    /// The rule for the penultimate step's noise (DDPM only).
    #[serde(default = "bao_clip")]
    pub clip_noise: NoiseClip,
    /// Draw the final step `t_1 -> 0` from its Gaussian too (DDPM only) instead of returning its
    /// mean, as the papers do. With the exact covariance the chain then samples the data
    /// distribution itself at any K (the Gaussian exactness study).
    #[serde(default)]
    pub final_noise: bool,
}

impl SamplerConfig {
    /// The skip-step DDPM over `steps` even steps, `lambda = 1`, x0 clipping, Bao's noise clip.
    pub fn ddpm(variance: StepVariance, steps: usize) -> Self {
        Self {
            kind: SamplerKind::Ddpm { variance },
            steps,
            spacing: Spacing::Even,
            lambda: 1.0,
            clip_x0: true,
            clip_noise: bao_clip(),
            final_noise: false,
        }
    }

    /// DDIM(eta) over `steps` even steps, with x0 clipping.
    pub fn ddim(eta: f64, steps: usize) -> Self {
        Self { kind: SamplerKind::Ddim { eta }, ..Self::ddpm(StepVariance::Small, steps) }
    }

    /// Whether the model must provide `E_t`.
    pub fn needs_covariance(&self) -> bool {
        matches!(self.kind, SamplerKind::Ddpm { variance } if variance.is_learned())
    }

    /// A sampler over `table`'s times, with the forward noise `noise` (white or GFF).
    pub fn build<B: Backend>(
        &self,
        table: &ScheduleTable,
        noise: ForwardNoise<B>,
    ) -> Result<Sampling<B>, SamplerError> {
        let bad = |m: String| Err(SamplerError::Config(m));
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return bad(format!("lambda must be finite and >= 0, got {}", self.lambda));
        }
        if let SamplerKind::Ddim { eta } = self.kind {
            if !(eta.is_finite() && eta >= 0.0) {
                return bad(format!("eta must be finite and >= 0, got {eta}"));
            }
        }
        self.clip_noise.validated().map_err(|e| SamplerError::Config(e.to_string()))?;
        let trajectory = Trajectory::new(table.steps(), self.steps, self.spacing)
            .map_err(|e| SamplerError::Config(e.to_string()))?;
        Ok(Sampling {
            config: self.clone(),
            table: table.clone(),
            t1: trajectory.times().last().copied().unwrap_or(0),
            steps: trajectory.steps(),
            done: 0,
            noise,
        })
    }
}

/// What one step produced.
#[derive(Clone, Debug)]
pub struct StepOutput<B: Backend> {
    /// `x_s`.
    pub x: Tensor<B, 4>,
    /// The step's estimate of the clean image (clipped when the config asks).
    pub x0_hat: Tensor<B, 4>,
    pub t: usize,
    pub s: usize,
}

/// A sampling run in progress: it owns its schedule, trajectory and noise, and takes one step
/// per [`Sampling::step`] call.
#[derive(Clone, Debug)]
pub struct Sampling<B: Backend> {
    config: SamplerConfig,
    table: ScheduleTable,
    steps: Vec<(usize, usize)>,
    /// `t_1`, where the penultimate step lands.
    t1: usize,
    done: usize,
    noise: ForwardNoise<B>,
}

/// `(x0_hat, Sigma^1/2 eps_hat)` at step `st`, `x0_hat` clipped when asked; with clipping the
/// noise estimate is recomputed from the clipped `x0_hat`.
fn tweedie<B: Backend>(
    st: &SkipStep,
    x: Tensor<B, 4>,
    eps: Tensor<B, 4>,
    noise: &ForwardNoise<B>,
    clip: bool,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let ceps = noise.sqrt_apply(eps);
    let (cx, ce) = st.x0_from_eps();
    let x0 = x.clone() * cx + ceps.clone() * ce;
    if !clip {
        return (x0, ceps);
    }
    let x0 = x0.clamp(-1.0, 1.0);
    let ceps = (x - x0.clone() * st.abar_t.sqrt()) / st.bbar_t().sqrt();
    (x0, ceps)
}

impl<B: Backend> Sampling<B> {
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Steps taken so far, out of [`Sampling::total_steps`].
    pub fn steps_done(&self) -> usize {
        self.done
    }

    pub fn total_steps(&self) -> usize {
        self.steps.len()
    }

    pub fn is_finished(&self) -> bool {
        self.done == self.steps.len()
    }

    /// The next step's `(t, s)`, if any.
    pub fn next_times(&self) -> Option<(usize, usize)> {
        self.steps.get(self.done).copied()
    }

    /// One step from `x = x_t` to `x_s`.
    pub fn step<D: Denoiser<B> + ?Sized>(
        &mut self,
        denoiser: &D,
        x: Tensor<B, 4>,
    ) -> Result<StepOutput<B>, SamplerError> {
        let (t, s) = self.next_times().ok_or(SamplerError::Finished(self.steps.len()))?;
        let st = SkipStep::new(&self.table, t, s);
        let c = &self.config;
        let (eps, cov) = denoiser.predict(x.clone(), t, self.config.needs_covariance());
        let (x0, ceps) = tweedie(&st, x.clone(), eps, &self.noise, c.clip_x0);
        let out = match c.kind {
            SamplerKind::Ddpm { variance } => {
                // docs/maths.md: mu_s from x0_hat, equal to the eps form without clipping.
                let (c0, cx) = st.mean_from_x0();
                let mean = x0.clone() * c0 + x * cx;
                // The final step t_1 -> 0 returns the mean (K-DCT paper A.7; Ho et al.) unless
                // `final_noise` asks for its draw.
                if c.lambda == 0.0 || (s == 0 && !c.final_noise) {
                    mean
                } else {
                    let sigma = variance.at(&st, cov, mean.dims(), &mean.device())?;
                    let g = if s == self.t1 { c.clip_noise.noise(&sigma) } else { sigma.sample() };
                    mean + self.noise.sqrt_apply(g) * c.lambda
                }
            }
            SamplerKind::Ddim { eta } => {
                let d = st.ddim(eta);
                let x = x0.clone() * d.c_x0 + ceps * d.c_eps;
                if d.sigma > 0.0 {
                    let z = standard_normal(x.dims(), &x.device());
                    x + self.noise.sqrt_apply(z) * d.sigma
                } else {
                    x
                }
            }
        };
        self.done += 1;
        Ok(StepOutput { x: out, x0_hat: x0, t, s })
    }

    /// All remaining steps from `x`: the sample.
    pub fn run<D: Denoiser<B> + ?Sized>(
        &mut self,
        denoiser: &D,
        x: Tensor<B, 4>,
    ) -> Result<Tensor<B, 4>, SamplerError> {
        let mut x = x;
        while !self.is_finished() {
            x = self.step(denoiser, x)?.x;
        }
        Ok(x)
    }
}
