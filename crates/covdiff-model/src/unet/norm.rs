//! Group normalisation (Wu and He, 2018), as diffusers' UNet uses it, written
//! so that every elementwise pass is one that CPU backends vectorise: the
//! per-group statistics broadcast along trailing dimensions, and the affine
//! step is one per-channel scale and shift. burn-nn's `GroupNorm::forward`
//! multiplies by `gamma` reshaped to `[1, C, 1, 1]`, a broadcast that
//! burn-flex walks element by element (a third of the UNet's time in the
//! profile); the module's parameters (`gamma`, `beta`) are kept as they are.

use burn::nn::GroupNorm;
use burn::tensor::{backend::Backend, Tensor};

/// `y = gamma_c (x - mu_g) / sqrt(var_g + eps) + beta_c`, with `mu_g`, `var_g` the mean and
/// (biased) variance over each group's channels and pixels, per image: covdiff's host kernel
/// on flex, [`group_norm_ops`] elsewhere.
pub fn group_norm<B: Backend>(norm: &GroupNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    fused(norm, &x, false).unwrap_or_else(|| group_norm_ops(norm, x))
}

/// `silu(group_norm(x))`, in one pass on flex.
pub fn group_norm_silu<B: Backend>(norm: &GroupNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    fused(norm, &x, true).unwrap_or_else(|| crate::kernels::silu(group_norm_ops(norm, x)))
}

fn fused<B: Backend>(norm: &GroupNorm<B>, x: &Tensor<B, 4>, activation: bool) -> Option<Tensor<B, 4>> {
    let (gamma, beta) = (norm.gamma.as_ref()?.val(), norm.beta.as_ref()?.val());
    crate::kernels::group_norm(x, &gamma, &beta, norm.num_groups, norm.epsilon, activation)
}

/// [`group_norm`] from burn's tensor operations, for every backend.
pub fn group_norm_ops<B: Backend>(norm: &GroupNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    let g = norm.num_groups;
    let n = (c / g) * h * w;
    let x = x.reshape([b, g, n]);
    let mean = x.clone().sum_dim(2) / n as f64;
    let centred = x - mean;
    let var = centred.clone().square().sum_dim(2) / n as f64;
    // Per (image, channel): scale = gamma_c / sqrt(var_g + eps), a [B, C] tensor.
    let rstd = var.add_scalar(norm.epsilon).sqrt().recip().reshape([b, g, 1]);
    let rstd = rstd.expand([b, g, c / g]).reshape([b, c]);
    let (scale, shift) = match (&norm.gamma, &norm.beta) {
        (Some(gamma), Some(beta)) => {
            let gamma = gamma.val().reshape([1, c]).repeat_dim(0, b);
            let beta = beta.val().reshape([1, c]).repeat_dim(0, b);
            (rstd * gamma, Some(beta))
        }
        _ => (rstd, None),
    };
    let y = centred.reshape([b, c, h * w]) * scale.reshape([b, c, 1]);
    match shift {
        Some(beta) => (y + beta.reshape([b, c, 1])).reshape([b, c, h, w]),
        None => y.reshape([b, c, h, w]),
    }
}
