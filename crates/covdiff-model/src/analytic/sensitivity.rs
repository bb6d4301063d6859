//! Sensitivity fields (the locality appendix, A.3 and B.3): rows of the Jacobian
//! `d x0_hat_q / d x_t` of any [`Denoiser`], by reverse-mode autodiff. One backward pass gives one
//! row per batch element (the images of a batch do not interact), with its own output pixel `q_b`
//! (the sum of the channels of `x0_hat` at `q_b`). `x0_hat` is the unclipped Tweedie estimate
//! `(x_t - sqrt(bbar) eps_hat) / sqrt(abar)`, the image parametrisation B.3 recommends.

use super::{coefficients, AnalyticError};
use crate::image::Denoiser;
use burn::tensor::{backend::AutodiffBackend, Tensor, TensorData};
use covdiff_core::schedule::ScheduleTable;

/// `J[b] = d (sum_c x0_hat[b, c, q_b]) / d x_t[b]`, `[B, C, d, d]`, at `t >= 1`.
pub fn jacobian_rows<B: AutodiffBackend, D: Denoiser<B> + ?Sized>(
    denoiser: &D,
    table: &ScheduleTable,
    x: Tensor<B::InnerBackend, 4>,
    t: usize,
    pixels: &[usize],
) -> Result<Tensor<B::InnerBackend, 4>, AnalyticError> {
    let [b, c, d, _] = x.dims();
    if pixels.len() != b || pixels.iter().any(|&q| q >= d * d) {
        return Err(AnalyticError::Invalid(format!(
            "need one output pixel below {} per image, got {:?} for {b} images",
            d * d,
            pixels
        )));
    }
    if t == 0 || t > table.steps() {
        return Err(AnalyticError::Invalid(format!("t must be in 1..={}, got {t}", table.steps())));
    }
    let device = x.device();
    let pick: Vec<f32> = pixels.iter().flat_map(|&q| (0..d * d).map(move |p| f32::from(p == q))).collect();
    let pick = Tensor::<B, 4>::from_data(TensorData::new(pick, [b, 1, d, d]), &device).expand([b, c, d, d]);
    let x = Tensor::<B, 4>::from_inner(x).require_grad();
    let (eps, _) = denoiser.predict(x.clone(), t, false);
    let (s, bb) = coefficients(table, t);
    let x0 = (x.clone() - eps * bb.sqrt()) / s;
    let grads = (x0 * pick).sum().backward();
    x.grad(&grads).ok_or_else(|| AnalyticError::Invalid("the denoiser's output does not depend on x_t".into()))
}
