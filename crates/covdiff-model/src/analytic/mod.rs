//! Analytic denoisers: what a diffusion model would compute with no training (the locality
//! appendix, A.1 to A.4). Each gives `x0_hat(x_t, t)` and implements the shared
//! [`Denoiser`](crate::diffusion::Denoiser) through `eps_hat = (x_t - sqrt(abar) x0_hat) / sqrt(bbar)`
//! (Prop. A.4), so every sampler and metric of covdiff runs on them.
//!
//! - [`OptimalDenoiser`]: `E[x0 | x_t]` under the empirical training set (Prop. A.2), streamed
//!   over the set, with its exact posterior covariance.
//! - [`WienerDenoiser`]: the linear denoiser of Gaussian data with the set's mean and covariance.
//! - [`MaskedDenoiser`]: the optimal denoiser restricted to a binary support per output pixel
//!   (Prop. A.10, Eq. 9): all pixels (the optimal one), a `p x p` patch (locality), or a measured
//!   sensitivity field binarised at a threshold.
//! - [`EquivariantPatchDenoiser`]: Kamb & Ganguli's ELS machine (Prop. A.7): locality and
//!   translation equivariance.
//!
//! They assume white forward noise (`Sigma = I`), as the appendix does.

mod data;
mod masked;
mod optimal;
mod patch;
mod registry;
pub mod sensitivity;
mod softmax;
mod wiener;

pub use data::TrainingSet;
pub use masked::{MaskedDenoiser, Support};
pub use optimal::OptimalDenoiser;
pub use patch::EquivariantPatchDenoiser;
pub use registry::{fitted_patch_sizes, AnalyticSpec, Ingredients, PatchSchedule, FASHION_MNIST_PATCH_SIZES};
pub use softmax::StreamingSoftmax;
pub use wiener::{WienerBasis, WienerDenoiser};

use burn::tensor::{backend::Backend, Tensor};
use covdiff_core::schedule::ScheduleTable;

/// Why an analytic denoiser could not be built.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AnalyticError {
    #[error("the training set is empty")]
    EmptySet,
    #[error("the training set holds {got} values, not a whole number of {channels} x {size} x {size} images")]
    Shape { got: usize, channels: usize, size: usize },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// `sqrt(abar_t)` and `bbar_t = 1 - abar_t` at `t >= 1`.
fn coefficients(table: &ScheduleTable, t: usize) -> (f64, f64) {
    let abar = table.abar(t);
    (abar.sqrt(), (1.0 - abar).max(f64::MIN_POSITIVE))
}

/// Prop. A.4: `eps_hat = (x_t - sqrt(abar) x0_hat) / sqrt(bbar)`.
fn eps_from_x0<B: Backend>(table: &ScheduleTable, t: usize, x: Tensor<B, 4>, x0: Tensor<B, 4>) -> Tensor<B, 4> {
    let (s, bb) = coefficients(table, t);
    (x - x0 * s) / bb.sqrt()
}

/// Every analytic denoiser is a [`Denoiser`](crate::diffusion::Denoiser) with no covariance of its
/// own in `predict` (the optimal one's is [`OptimalDenoiser::posterior_covariance`]).
macro_rules! x0_denoiser {
    ($ty:ident) => {
        impl<B: burn::tensor::backend::Backend> crate::diffusion::Denoiser<B> for $ty<B> {
            fn predict(
                &self,
                x: burn::tensor::Tensor<B, 4>,
                t: usize,
                _with_cov: bool,
            ) -> (burn::tensor::Tensor<B, 4>, Option<crate::covariance::AnyCovariance<B>>) {
                let x0 = self.x0_hat(x.clone(), t);
                (super::eps_from_x0(self.table(), t, x, x0), None)
            }
        }
    };
}
pub(crate) use x0_denoiser;
