//! The `Denoiser` contract: what a sampler, the ELBO or guidance needs from a model at one step
//! `t` shared by the batch (docs/maths.md, "Skip-step posterior"). Images implement it with the
//! UNet (`image::denoiser`), toy 2D with its MLPs viewed as `[N, 2, 1, 1]` images
//! (`toy2d::Labelled`), and the analytic denoisers behind their registry.

use crate::covariance::AnyCovariance;
use burn::tensor::{backend::Backend, Tensor};

pub trait Denoiser<B: Backend> {
    /// `eps_hat(x_t, t)` and, when `with_cov` and the model has one, its learned covariance: `E_t =
    /// Cov[eps | x_t]`, or for a model trained as the 2D thesis, the step covariance itself
    /// ([`StepVariance::Direct`](super::StepVariance::Direct)).
    fn predict(&self, x: Tensor<B, 4>, t: usize, with_cov: bool) -> (Tensor<B, 4>, Option<AnyCovariance<B>>);
}
