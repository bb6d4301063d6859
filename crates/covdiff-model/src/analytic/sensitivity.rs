//! Sensitivity fields (the locality appendix, A.3 and B.3): rows of the Jacobian
//! `d x0_hat_q / d x_t` of any [`Denoiser`], by reverse-mode autodiff. One backward pass gives one
//! row per batch element (the images of a batch do not interact), with its own output pixel `q_b`
//! (the sum of the channels of `x0_hat` at `q_b`). `x0_hat` is the unclipped Tweedie estimate
//! `(x_t - sqrt(bbar) eps_hat) / sqrt(abar)`, the image parametrisation B.3 recommends.

use super::{coefficients, AnalyticError};
use crate::diffusion::Denoiser;
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

/// The posterior covariance of the noise that a denoiser implies, by second-order Tweedie
/// (docs/maths.md, "Forward process and Tweedie"; K-DCT paper Fig. 1C):
/// `E_t = Cov[eps | x_t] = I - sqrt(bbar_t) J` with `J = d eps_hat / d x_t`, the full
/// `n x n` Jacobian (`n = C d^2`) at one image `x` (`[1, C, d, d]`), by reverse-mode autodiff:
/// `rows_per_pass` rows per backward pass (the image repeated, one output picked per copy).
/// Row `i` of the result is `e_i - sqrt(bbar) d eps_hat_i / d x_t`, `[n, n]`. It is not
/// symmetrised: a trained network's Jacobian is only nearly symmetric.
pub fn eps_covariance<B: AutodiffBackend, D: Denoiser<B> + ?Sized>(
    denoiser: &D,
    table: &ScheduleTable,
    x: Tensor<B::InnerBackend, 4>,
    t: usize,
    rows_per_pass: usize,
) -> Result<Tensor<B::InnerBackend, 2>, AnalyticError> {
    let [one, c, d, _] = x.dims();
    if one != 1 || rows_per_pass == 0 {
        return Err(AnalyticError::Invalid(format!(
            "need one image and at least one row per pass, got {one} images and {rows_per_pass} rows"
        )));
    }
    if t == 0 || t > table.steps() {
        return Err(AnalyticError::Invalid(format!("t must be in 1..={}, got {t}", table.steps())));
    }
    let (_, bb) = coefficients(table, t);
    let n = c * d * d;
    let device = x.device();
    let mut blocks = Vec::with_capacity(n.div_ceil(rows_per_pass));
    for first in (0..n).step_by(rows_per_pass) {
        let m = rows_per_pass.min(n - first);
        let pick: Vec<f32> = (0..m).flat_map(|r| (0..n).map(move |i| f32::from(i == first + r))).collect();
        let pick = Tensor::<B::InnerBackend, 2>::from_data(TensorData::new(pick, [m, n]), &device);
        let xs = Tensor::<B, 4>::from_inner(x.clone().repeat_dim(0, m)).require_grad();
        let (eps, _) = denoiser.predict(xs.clone(), t, false);
        let picked = Tensor::<B, 4>::from_inner(pick.clone().reshape([m, c, d, d]));
        let grads = (eps * picked).sum().backward();
        let jacobian = xs
            .grad(&grads)
            .ok_or_else(|| AnalyticError::Invalid("the denoiser's output does not depend on x_t".into()))?;
        blocks.push(pick - jacobian.reshape([m, n]) * bb.sqrt());
    }
    Ok(Tensor::cat(blocks, 0))
}
