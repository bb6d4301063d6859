//! Toy 2D on the shared diffusion core (`crate::diffusion`): points are `[N, 2, 1, 1]` images, the
//! MLPs and the Gaussian oracle are [`Denoiser`]s whose covariance is a [`Full2`], and sampling and
//! the ELBO are the image ones with the settings of the thesis: no `x0` clipping, no noise
//! clipping, the final step's mean, and a Gaussian decoder.

use super::network::Toy2dModel;
use super::oracle::GaussianOracle;
use crate::covariance::{AnyCovariance, Covariance, Full2};
use crate::diffusion::{
    Decoder, Denoiser, Elbo, ElboError, ForwardNoise, LogDet, NoiseClip, SamplerConfig, SamplerError, SamplerKind,
    StepVariance,
};
use crate::normals::standard_normal;
use burn::tensor::{backend::Backend, Int, Tensor};
use covdiff_core::schedule::ScheduleTable;
use covdiff_core::trajectory::{Spacing, Trajectory};
use std::str::FromStr;

/// A 2D model with the labels of the batch it denoises (`None` for an unconditional model).
pub struct Labelled<'a, B: Backend> {
    pub model: &'a Toy2dModel<B>,
    pub labels: Option<Tensor<B, 1, Int>>,
}

impl<B: Backend> Toy2dModel<B> {
    /// This model as a [`Denoiser`] of a batch with these labels.
    pub fn denoiser(&self, labels: Option<Tensor<B, 1, Int>>) -> Labelled<'_, B> {
        Labelled { model: self, labels }
    }
}

fn steps<B: Backend>(n: usize, t: usize, device: &B::Device) -> Tensor<B, 1> {
    Tensor::full([n], t as f32, device)
}

impl<B: Backend> Denoiser<B> for Labelled<'_, B> {
    fn predict(&self, x: Tensor<B, 4>, t: usize, with_cov: bool) -> (Tensor<B, 4>, Option<AnyCovariance<B>>) {
        let x = Full2::as_points(x);
        let tt = steps::<B>(x.dims()[0], t, &x.device());
        let cov =
            with_cov.then(|| AnyCovariance::Full2(self.model.predict_cov(x.clone(), tt.clone(), self.labels.clone())));
        (Full2::as_image(self.model.predict_eps(x, tt, self.labels.clone())), cov)
    }
}

impl<B: Backend> Denoiser<B> for GaussianOracle {
    fn predict(&self, x: Tensor<B, 4>, t: usize, with_cov: bool) -> (Tensor<B, 4>, Option<AnyCovariance<B>>) {
        let x = Full2::as_points(x);
        let cov = with_cov.then(|| AnyCovariance::Full2(self.covariance(x.dims()[0], t, &x.device())));
        (Full2::as_image(self.eps(x, t)), cov)
    }
}

/// The four ways the 2D study samples, by the names of its tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// `(1 - a) I`, with the principled model's eps-network.
    Beta,
    /// `btilde I`, with the principled model's eps-network.
    BetaTilde,
    /// The thesis' model: its `L L^T` is the step covariance ([`StepVariance::Direct`]).
    Thesis,
    /// The principled model: `btilde I + kappa E_t` with its `L L^T` as `E_t`.
    Principled,
}

impl Column {
    pub const ALL: [Column; 4] = [Self::Beta, Self::BetaTilde, Self::Thesis, Self::Principled];

    pub fn name(self) -> &'static str {
        match self {
            Self::Beta => "beta",
            Self::BetaTilde => "beta-tilde",
            Self::Thesis => "thesis",
            Self::Principled => "principled",
        }
    }

    pub fn variance(self) -> StepVariance {
        match self {
            Self::Beta => StepVariance::Large,
            Self::BetaTilde => StepVariance::Small,
            Self::Thesis => StepVariance::Direct,
            Self::Principled => StepVariance::Learned,
        }
    }

    pub fn is_learned(self) -> bool {
        self.variance().is_learned()
    }

    /// The sampler of this column: `k` even steps, noise scale `lambda`, and the thesis' settings
    /// (no clipping of `x0` or of the noise; the final step `t_1 -> 0` returns its mean).
    pub fn sampler(self, k: usize, lambda: f64) -> SamplerConfig {
        SamplerConfig {
            kind: SamplerKind::Ddpm { variance: self.variance() },
            steps: k,
            spacing: Spacing::Even,
            lambda,
            clip_x0: false,
            clip_noise: NoiseClip::Noise,
            final_noise: false,
        }
    }
}

impl FromStr for Column {
    type Err = covdiff_core::Error;
    fn from_str(s: &str) -> Result<Self, covdiff_core::Error> {
        covdiff_core::Error::by_name("covariance", s, &Self::ALL, Self::name)
    }
}

/// `n` points from `model` by `config`, starting from `x_T ~ N(0, I)` drawn from covdiff's normal
/// stream (`normals`): `[n, 2]`.
pub fn sample<B: Backend, M: Denoiser<B> + ?Sized>(
    model: &M,
    table: &ScheduleTable,
    config: &SamplerConfig,
    n: usize,
    device: &B::Device,
) -> Result<Tensor<B, 2>, SamplerError> {
    let x = standard_normal::<B, 4>([n, 2, 1, 1], device);
    Ok(Full2::as_points(config.build(table, ForwardNoise::White)?.run(model, x)?))
}

/// The negative ELBO of each point of `x0` `[N, 2]` in nats (docs/maths.md, "Likelihood"), every term
/// exact (the 2 x 2 covariances in closed form) given one draw of each `x_t`, with the Gaussian
/// decoder.
pub fn negative_elbo<B: Backend, M: Denoiser<B> + ?Sized>(
    model: &M,
    table: &ScheduleTable,
    trajectory: &Trajectory,
    variance: StepVariance,
    x0: Tensor<B, 2>,
) -> Result<Vec<f64>, ElboError> {
    let noise = ForwardNoise::White;
    let elbo = Elbo { table, trajectory, variance, logdet: LogDet::Exact, decoder: Decoder::Gaussian, noise: &noise };
    Ok(elbo.terms(model, Full2::as_image(x0))?.total())
}

/// The model's covariance of the clean point given `x_t`: since
/// `x_0 = (x_t - sqrt(bbar_t) eps) / sqrt(abar_t)`, `Cov[x_0 | x_t] = (bbar_t / abar_t) E_t`
/// (docs/maths.md, "Gaussian data"), with the principled model's learned `E_t`. This is what the
/// page draws as ellipses: the uncertainty the model has about where a point came from, in data
/// units.
pub fn x0_covariance<B: Backend, M: Denoiser<B> + ?Sized>(
    model: &M,
    table: &ScheduleTable,
    x: Tensor<B, 2>,
    t: usize,
) -> Result<Full2<B>, SamplerError> {
    let ratio = table.bbar(t) / table.abar(t);
    match model.predict(Full2::as_image(x), t, true).1 {
        Some(AnyCovariance::Full2(e)) => Ok(e.shift_scale(0.0, ratio)),
        _ => Err(SamplerError::MissingCovariance),
    }
}
