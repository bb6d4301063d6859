//! Objectives for covariance heads on a frozen eps-network (docs/maths.md,
//! "Training objectives"), for any [`Covariance`]. Each returns one value
//! per image; the constant terms of the dense forms are dropped. The caller
//! passes `eps_hat` (and `J v`) already detached from the frozen network.

use crate::covariance::{per_image_sum, Covariance, Diagonal};
use burn::tensor::{backend::Backend, Distribution, Tensor};

/// NPR (K-DCT paper Eq. 27, Alg. 2): `||E - (eps eps^T - eps_hat eps_hat^T)||_F^2` up to a constant,
/// `= ||E||^2 - 2 eps^T E eps + 2 eps_hat^T E eps_hat`.
pub fn npr<B: Backend, C: Covariance<B>>(cov: &C, eps: Tensor<B, 4>, eps_hat: Tensor<B, 4>) -> Tensor<B, 1> {
    cov.frobenius_sq() - cov.quadratic(eps) * 2.0 + cov.quadratic(eps_hat) * 2.0
}

/// NPR-residual (Bao et al., generalised): `||E - r r^T||_F^2 = ||E||^2 - 2 r^T E r + const`, `r = eps - eps_hat`.
pub fn npr_residual<B: Backend, C: Covariance<B>>(cov: &C, eps: Tensor<B, 4>, eps_hat: Tensor<B, 4>) -> Tensor<B, 1> {
    cov.frobenius_sq() - cov.quadratic(eps - eps_hat) * 2.0
}

/// OCM (Alg. 3): `||E v||^2 - 2 v^T E v + 2 sqrt(bbar) (E v)^T (J v)` for a Rademacher probe `v`;
/// its mean over `v` is `||E - (I - sqrt(bbar) J)||_F^2 + const`.
pub fn ocm<B: Backend, C: Covariance<B>>(cov: &C, v: Tensor<B, 4>, jv: Tensor<B, 4>, bbar: f64) -> Tensor<B, 1> {
    let ev = cov.matvec(v.clone());
    per_image_sum(ev.clone() * ev.clone()) - per_image_sum(v * ev.clone()) * 2.0
        + per_image_sum(ev * jv) * (2.0 * bbar.sqrt())
}

/// SN (Bao et al., diagonal only): the head regresses `eps^2`, `||m - eps^2||^2` per image.
pub fn sn<B: Backend>(second_moment: Tensor<B, 4>, eps: Tensor<B, 4>) -> Tensor<B, 1> {
    let d = second_moment - eps.clone() * eps;
    per_image_sum(d.clone() * d)
}

/// The SN covariance `diag(m - eps_hat^2)`, floored at `floor` to stay positive.
pub fn sn_covariance<B: Backend>(second_moment: Tensor<B, 4>, eps_hat: Tensor<B, 4>, floor: f64) -> Diagonal<B> {
    Diagonal::new((second_moment - eps_hat.clone() * eps_hat).clamp_min(floor))
}

/// A Rademacher probe (entries +-1 with equal probability).
pub fn rademacher<B: Backend>(shape: [usize; 4], device: &B::Device) -> Tensor<B, 4> {
    Tensor::<B, 4>::random(shape, Distribution::Bernoulli(0.5), device) * 2.0 - 1.0
}

/// `J v` of `f` at `x` by central finite difference, `(f(x + h v) - f(x - h v)) / (2h)`:
/// error O(h^2) in exact arithmetic; in f32 choose h around 1e-2 times the scale of `x`.
pub fn jvp_central_difference<B: Backend>(
    f: impl Fn(Tensor<B, 4>) -> Tensor<B, 4>,
    x: Tensor<B, 4>,
    v: Tensor<B, 4>,
    h: f64,
) -> Tensor<B, 4> {
    (f(x.clone() + v.clone() * h) - f(x - v * h)) / (2.0 * h)
}
