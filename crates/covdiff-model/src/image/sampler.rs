//! Samplers over a K-step trajectory (MATH.md, "Skip-step posterior"): the
//! skip-step DDPM with any step covariance, and DDIM(eta). Both work in the
//! whitened coordinates of the forward noise, so they serve NI-DDPM too.

use super::denoiser::Denoiser;
use super::noise::ForwardNoise;
use crate::covariance::{standard_normal, AnyCovariance, Covariance};
use burn::tensor::{backend::Backend, Tensor};
use covdiff_core::schedule::ScheduleTable;
use covdiff_core::skip_step::SkipStep;
use covdiff_core::trajectory::Trajectory;
use std::str::FromStr;

/// A reverse-process sampler: from `x_T` to `x_0`.
pub trait Sampler<B: Backend> {
    fn sample<D: Denoiser<B>>(&self, denoiser: &D, x_t: Tensor<B, 4>) -> Tensor<B, 4>;
}

/// `x_T`: `Sigma^1/2 z`, `z ~ N(0, I)`, from the backend's generator.
pub fn initial_noise<B: Backend>(shape: [usize; 4], noise: &ForwardNoise<B>, device: &B::Device) -> Tensor<B, 4> {
    noise.sqrt_apply(standard_normal(shape, device))
}

/// The covariance of a skip step from `t` to `s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepVariance {
    /// "beta": `(1 - a) I`.
    Large,
    /// "beta-tilde": `btilde I`; at `s = 0`, where `btilde = 0`, the large value (Ho et al.).
    Small,
    /// `btilde I + kappa E_t` with the model's `E_t`.
    Learned,
}

impl StepVariance {
    /// The step covariance; `learned` is the model's `E_t` (needed for [`StepVariance::Learned`]).
    pub fn at<B: Backend>(
        self,
        st: &SkipStep,
        learned: Option<AnyCovariance<B>>,
        shape: [usize; 4],
        device: &B::Device,
    ) -> AnyCovariance<B> {
        match self {
            Self::Large => AnyCovariance::scalar(st.large_variance(), shape, device),
            Self::Small if st.s == 0 => AnyCovariance::scalar(st.large_variance(), shape, device),
            Self::Small => AnyCovariance::scalar(st.small_variance(), shape, device),
            Self::Learned => {
                let (shift, scale) = st.covariance_shift_scale();
                learned
                    .expect("the learned step variance needs a model with covariance heads")
                    .shift_scale(shift, scale)
            }
        }
    }
}

/// What the penultimate step `t_2 -> t_1` does with its noise (K-DCT paper A.7, Bao et al.):
/// the step into `t_1`, the last one that adds noise. The final step `t_1 -> 0` returns the mean.
#[derive(Clone, Copy, Debug, PartialEq)]
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
    type Err = String;
    /// `noise`, `clip-scale[:y]`, `clip-sample[:y]` (y defaults to 2, Bao et al.'s value).
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, y) = match s.split_once(':') {
            Some((n, y)) => (n, y.parse::<f64>().map_err(|_| format!("bad clip value in '{s}'"))?),
            None => (s, 2.0),
        };
        if !(y.is_finite() && y > 0.0) {
            return Err(format!("the clip value in '{s}' must be positive"));
        }
        match name {
            "noise" => Ok(Self::Noise),
            "clip-scale" => Ok(Self::ClipScale { y }),
            "clip-sample" => Ok(Self::ClipSample { y }),
            _ => Err(format!("unknown noise-clipping rule '{s}' (expected noise, clip-scale[:y], clip-sample[:y])")),
        }
    }
}

/// The skip-step DDPM: `x_s = mu_s + lambda g`, `g ~ N(0, Sigma_s)`.
#[derive(Clone, Debug)]
pub struct SkipStepDdpm<'a, B: Backend> {
    pub table: &'a ScheduleTable,
    pub trajectory: &'a Trajectory,
    pub variance: StepVariance,
    /// Noise scale `lambda` (1 is the model's own variance).
    pub lambda: f64,
    /// Clip `x0_hat` to [-1, 1] and use the mean's `x0` form.
    pub clip_x0: bool,
    /// The rule for the penultimate step's noise.
    pub clip_noise: NoiseClip,
    pub noise: ForwardNoise<B>,
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

impl<B: Backend> Sampler<B> for SkipStepDdpm<'_, B> {
    fn sample<D: Denoiser<B>>(&self, denoiser: &D, x_t: Tensor<B, 4>) -> Tensor<B, 4> {
        let shape = x_t.dims();
        let device = x_t.device();
        let t1 = self.trajectory.times().last().copied().unwrap_or(0);
        let mut x = x_t;
        for (t, s) in self.trajectory.steps() {
            let st = SkipStep::new(self.table, t, s);
            let (eps, cov) = denoiser.predict(x.clone(), t, self.variance == StepVariance::Learned);
            let (x0, _) = tweedie(&st, x.clone(), eps, &self.noise, self.clip_x0);
            // MATH.md: mu_s from x0_hat, equal to the eps form without clipping.
            let (c0, cx) = st.mean_from_x0();
            let mean = x0 * c0 + x * cx;
            // The final step t_1 -> 0 returns the mean (K-DCT paper A.7; Ho et al.).
            if self.lambda == 0.0 || s == 0 {
                x = mean;
                continue;
            }
            let sigma = self.variance.at(&st, cov, shape, &device);
            let g = if s == t1 { self.clip_noise.noise(&sigma) } else { sigma.sample() };
            x = mean + self.noise.sqrt_apply(g) * self.lambda;
        }
        x
    }
}

/// DDIM(eta): `x_s = sqrt(abar_s) x0_hat + sqrt(bbar_s - sigma^2) Sigma^1/2 eps_hat + sigma Sigma^1/2 z`.
#[derive(Clone, Debug)]
pub struct Ddim<'a, B: Backend> {
    pub table: &'a ScheduleTable,
    pub trajectory: &'a Trajectory,
    pub eta: f64,
    pub clip_x0: bool,
    pub noise: ForwardNoise<B>,
}

impl<B: Backend> Sampler<B> for Ddim<'_, B> {
    fn sample<D: Denoiser<B>>(&self, denoiser: &D, x_t: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = x_t;
        for (t, s) in self.trajectory.steps() {
            let st = SkipStep::new(self.table, t, s);
            let (eps, _) = denoiser.predict(x.clone(), t, false);
            let (x0, ceps) = tweedie(&st, x.clone(), eps, &self.noise, self.clip_x0);
            let c = st.ddim(self.eta);
            x = x0 * c.c_x0 + ceps * c.c_eps;
            if c.sigma > 0.0 {
                let z = standard_normal(x.dims(), &x.device());
                x = x + self.noise.sqrt_apply(z) * c.sigma;
            }
        }
        x
    }
}
