//! The UNet's two training stages (the paper, Eq. 15) on the shared trainer
//! ([`crate::diffusion::train`]): stage 1 learns the eps-UNet by `L_simple`; stage 2 freezes it
//! and learns covariance heads on its features by NPR, NPR-residual, OCM or SN.

use super::heads::{CovarianceHeads, HeadKind};
use crate::covariance::per_image_sum;
use crate::diffusion::train::{Batch, Loss, Stage, StageError};
use crate::diffusion::{ForwardNoise, NoiseLevels};
use crate::objectives::{jvp_central_difference, npr, npr_residual, ocm, sn};
use crate::unet::UNet;
use burn::module::Module;
use burn::tensor::{backend::AutodiffBackend, backend::Backend, Tensor, TensorData};
use rand::{rngs::StdRng, RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The covariance heads' objective (docs/maths.md, "Training objectives").
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadObjective {
    /// Eq. 27, Alg. 2.
    Npr,
    /// Bao et al.'s target `r r^T`, `r = eps - eps_hat`.
    NprResidual,
    /// Alg. 3, with `J v` by central finite difference of step `h` on the frozen net.
    Ocm { h: f64 },
    /// Bao et al.'s squared noise; diagonal heads only.
    Sn,
}

impl HeadObjective {
    pub fn name(self) -> &'static str {
        match self {
            Self::Npr => "npr",
            Self::NprResidual => "npr-residual",
            Self::Ocm { .. } => "ocm",
            Self::Sn => "sn",
        }
    }
}

impl fmt::Display for HeadObjective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HeadObjective {
    type Err = covdiff_core::Error;
    fn from_str(s: &str) -> Result<Self, covdiff_core::Error> {
        match s {
            "npr" => Ok(Self::Npr),
            "npr-residual" => Ok(Self::NprResidual),
            "ocm" => Ok(Self::Ocm { h: 1e-2 }),
            "sn" => Ok(Self::Sn),
            _ => Err(covdiff_core::Error::unknown("objective", s, "npr, npr-residual, ocm or sn")),
        }
    }
}

/// `J Sigma^1/2 v` by central differences along `Sigma^1/2 v`, for OCM (Alg. 3). In the whitened
/// coordinates of the forward noise, `y = Sigma^-1/2 x_t`, Tweedie gives
/// `E_t = Cov[eps | x_t] = I - sqrt(bbar) d eps_hat / dy = I - sqrt(bbar) J Sigma^1/2` with
/// `J = d eps_hat / d x_t`: the probe enters the network through `Sigma^1/2` (white noise: `v`).
pub fn whitened_jvp<B: Backend>(
    f: impl Fn(Tensor<B, 4>) -> Tensor<B, 4>,
    x_t: Tensor<B, 4>,
    v: Tensor<B, 4>,
    noise: &ForwardNoise<B>,
    h: f64,
) -> Tensor<B, 4> {
    jvp_central_difference(f, x_t, noise.sqrt_apply(v), h)
}

/// Stage 1: `L_simple = E ||eps - eps_hat(x_t, t)||^2 / n`.
pub struct EpsStage;

impl<B: AutodiffBackend> Stage<B> for EpsStage {
    type Model = UNet<B>;
    fn loss(&self, model: &UNet<B>, batch: Batch<B>) -> Loss<B> {
        let n = batch.eps.dims()[1..].iter().product::<usize>() as f64;
        let eps_hat = model.forward(batch.x_t, batch.t, None);
        (per_image_sum((batch.eps - eps_hat).powi_scalar(2)).mean() / n).into()
    }
    fn to_device(&self, _: &B::Device) -> Self {
        EpsStage
    }
}

/// Stage 2: heads on a frozen UNet (which runs without autodiff).
pub struct HeadStage<B: AutodiffBackend> {
    pub unet: UNet<B::InnerBackend>,
    pub objective: HeadObjective,
}

impl<B: AutodiffBackend> Stage<B> for HeadStage<B> {
    type Model = CovarianceHeads<B>;
    fn check(&self, heads: &CovarianceHeads<B>) -> Result<(), StageError> {
        match (self.objective, heads.kind()) {
            (HeadObjective::Sn, kind) if kind != HeadKind::Diagonal => {
                Err(StageError::Incompatible(format!("SN trains diagonal heads only, not {} heads", kind.name())))
            }
            _ => Ok(()),
        }
    }
    fn loss(&self, heads: &CovarianceHeads<B>, batch: Batch<B>) -> Loss<B> {
        let shape = batch.eps.dims();
        let n = shape[1..].iter().product::<usize>() as f64;
        let (x_t, t) = (batch.x_t.inner(), batch.t.inner());
        let f = self.unet.forward_features(x_t.clone(), t.clone(), None);
        let out = heads.forward(Tensor::from_inner(f.mid), Tensor::from_inner(f.last_up));
        let eps_hat = Tensor::<B, 4>::from_inner(f.eps);
        let eps = batch.eps;
        let per_image = match self.objective {
            HeadObjective::Npr => npr(&out, eps, eps_hat),
            HeadObjective::NprResidual => npr_residual(&out, eps, eps_hat),
            HeadObjective::Ocm { h } => {
                let mut rng = StdRng::seed_from_u64(batch.seed);
                let v: Vec<f32> =
                    (0..shape.iter().product()).map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 }).collect();
                let v = Tensor::<B::InnerBackend, 4>::from_data(TensorData::new(v, shape), &x_t.device());
                let noise = batch.noise.inner();
                let jv = whitened_jvp(|x| self.unet.forward(x, t.clone(), None), x_t, v.clone(), &noise, h);
                // sqrt(bbar) differs per image: fold it into J v.
                let jv = jv * batch.sqrt_bbar.inner().reshape([shape[0], 1, 1, 1]);
                ocm(&out, Tensor::from_inner(v), Tensor::from_inner(jv), 1.0)
            }
            HeadObjective::Sn => match out {
                crate::covariance::AnyCovariance::Diagonal(m) => sn(m.e, eps),
                // Trainer::new refuses this pairing through Stage::check.
                _ => unreachable!("SN trains diagonal heads only"),
            },
        };
        (per_image.mean() / n).into()
    }
    fn to_device(&self, device: &B::Device) -> Self {
        Self { unet: self.unet.clone().fork(device), objective: self.objective }
    }
}

/// (NI-)SMLD's denoising score matching on the UNet (the non-isotropic paper, Eq. 100): at the
/// batch's level `i` (its step `t`), `x_i = x_0 + sigma_i Sigma^1/2 eps` and the loss is
/// `||eps - eps_hat(x_i, i)||^2 / n`; the score is `-Sigma^-1/2 eps_hat / sigma_i` (Eq. 99). The
/// trainer's schedule must have `L` steps, so that its steps are the levels `1..=L` (its `abar` is
/// not used).
pub struct SmldStage {
    pub levels: NoiseLevels,
}

impl<B: AutodiffBackend> Stage<B> for SmldStage {
    type Model = UNet<B>;
    fn loss(&self, model: &UNet<B>, batch: Batch<B>) -> Loss<B> {
        let [b, ..] = batch.eps.dims();
        let n = batch.eps.dims()[1..].iter().product::<usize>() as f64;
        let sigma = self.levels.sigma_of(batch.t.clone()).reshape([b, 1, 1, 1]);
        let x_i = batch.x0 + batch.noise.sqrt_apply(batch.eps.clone()) * sigma;
        let eps_hat = model.forward(x_i, batch.t, batch.labels);
        (per_image_sum((batch.eps - eps_hat).powi_scalar(2)).mean() / n).into()
    }
    fn to_device(&self, _: &B::Device) -> Self {
        Self { levels: self.levels }
    }
}
