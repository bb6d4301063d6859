//! The `Denoiser` contract: what a sampler or the ELBO needs from a model at
//! one step `t` shared by the batch. Implemented by the eps-UNet alone, by
//! the UNet with covariance heads (paper Eq. 15), and by the exact Gaussian
//! predictor used as ground truth.

use super::heads::CovarianceHeads;
use crate::covariance::{AnyCovariance, Diagonal, KDct};
use crate::spatial::SpatialBasis;
use crate::unet::UNet;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use covdiff_core::schedule::ScheduleTable;

pub trait Denoiser<B: Backend> {
    /// `eps_hat(x_t, t)` and, when `with_cov` and the model has one, `E_t = Cov[eps | x_t]`.
    fn predict(&self, x: Tensor<B, 4>, t: usize, with_cov: bool) -> (Tensor<B, 4>, Option<AnyCovariance<B>>);
}

fn steps<B: Backend>(x: &Tensor<B, 4>, t: usize) -> Tensor<B, 1> {
    Tensor::full([x.dims()[0]], t as f32, &x.device())
}

impl<B: Backend> Denoiser<B> for UNet<B> {
    fn predict(&self, x: Tensor<B, 4>, t: usize, _: bool) -> (Tensor<B, 4>, Option<AnyCovariance<B>>) {
        let tt = steps(&x, t);
        (self.forward(x, tt, None), None)
    }
}

/// A frozen eps-UNet and covariance heads on its features.
#[derive(Clone, Debug)]
pub struct SecondOrder<B: Backend> {
    pub unet: UNet<B>,
    pub heads: CovarianceHeads<B>,
}

impl<B: Backend> SecondOrder<B> {
    /// `E_t` from the heads' output; SN heads give `diag(m - eps_hat^2)` floored (Bao et al.).
    pub fn covariance(heads: &CovarianceHeads<B>, out: AnyCovariance<B>, eps: Tensor<B, 4>) -> AnyCovariance<B> {
        match out {
            AnyCovariance::Diagonal(m) if heads.is_second_moment() => {
                AnyCovariance::Diagonal(Diagonal::new((m.e - eps.clone() * eps).clamp_min(heads.floor())))
            }
            other => other,
        }
    }
}

impl<B: Backend> Denoiser<B> for SecondOrder<B> {
    fn predict(&self, x: Tensor<B, 4>, t: usize, with_cov: bool) -> (Tensor<B, 4>, Option<AnyCovariance<B>>) {
        let tt = steps(&x, t);
        let f = self.unet.forward_features(x, tt, None);
        let cov = with_cov.then(|| Self::covariance(&self.heads, self.heads.forward(f.mid, f.last_up), f.eps.clone()));
        (f.eps, cov)
    }
}

/// The exact `E[eps | x_t]` and `Cov[eps | x_t]` for grey images `x_0 ~ N(0, F2^T diag(sigma2) F2)`
/// (MATH.md, "Gaussian data"): `eps_hat = sqrt(bbar) F2^T diag(1 / (abar sigma2 + bbar)) F2 x_t`,
/// `E_t = F2^T diag(abar sigma2 / (abar sigma2 + bbar)) F2`, which is K-DCT with `e = 0`, `L = 1`.
#[derive(Clone, Debug)]
pub struct GaussianDenoiser<B: Backend> {
    basis: SpatialBasis<B>,
    sigma2: Tensor<B, 3>,
    abar: Vec<f64>,
}

impl<B: Backend> GaussianDenoiser<B> {
    /// `sigma2` is the `d x d` DCT spectrum of the data, row-major.
    pub fn new(sigma2: &[f64], d: usize, table: &ScheduleTable, device: &B::Device) -> Self {
        let v: Vec<f32> = sigma2.iter().map(|&x| x as f32).collect();
        Self {
            basis: SpatialBasis::dct(d, device),
            sigma2: Tensor::from_data(TensorData::new(v, [1, d, d]), device),
            abar: (0..=table.steps()).map(|t| table.abar(t)).collect(),
        }
    }
}

impl<B: Backend> Denoiser<B> for GaussianDenoiser<B> {
    fn predict(&self, x: Tensor<B, 4>, t: usize, with_cov: bool) -> (Tensor<B, 4>, Option<AnyCovariance<B>>) {
        let [b, c, d, _] = x.dims();
        assert_eq!(c, 1, "the Gaussian ground truth is for grey images");
        let (ab, bb) = (self.abar[t], 1.0 - self.abar[t]);
        let denom = self.sigma2.clone() * ab + bb;
        let eps = self.basis.adjoint(self.basis.forward(x.clone()) / denom.clone().unsqueeze_dim(1)) * bb.sqrt();
        let cov = with_cov.then(|| {
            let lam = (self.sigma2.clone() * ab / denom).expand([b, d, d]);
            let dev = x.device();
            AnyCovariance::KDct(KDct::new(
                Tensor::zeros([b, 1, d, d], &dev),
                Tensor::ones([b, 1, 1], &dev),
                lam,
                self.basis.clone(),
            ))
        });
        (eps, cov)
    }
}
