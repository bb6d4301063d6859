//! The image denoisers behind the shared [`Denoiser`] contract: the eps-UNet alone, the UNet
//! with covariance heads (paper Eq. 15), and the exact Gaussian predictor used as ground truth.

use super::heads::CovarianceHeads;
use crate::covariance::Covariance;
use crate::covariance::{AnyCovariance, Diagonal, KDct};
use crate::diffusion::Denoiser;
use crate::spatial::SpatialBasis;
use crate::unet::UNet;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use covdiff_core::gaussian::DctGaussian;
use covdiff_core::schedule::ScheduleTable;

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

/// The exact `E[eps | x_t]` and `Cov[eps | x_t]` for DCT-diagonal Gaussian data
/// `x_0 ~ N(0, M (x) F2^T diag(sigma2) F2)` (docs/maths.md, "Gaussian data") whose colour factor gives
/// `Cov[eps | x_t]` an exact K-DCT form (grey, rank-one `M = g u u^T`, or `M = g I`;
/// [`DctGaussian::kdct_colour`]): `E_t = (L L^T) (x) F2^T diag(lam_t) F2` with
/// `lam_t = abar sigma2 g / (abar sigma2 g + bbar)` and `e = 0`, and
/// `eps_hat = sqrt(bbar) (abar S + bbar I)^-1 x_t = (I - E_t) x_t / sqrt(bbar)`, computed as
/// `(x - P x + (L L^T) (x) F2^T diag(1 - lam_t) F2 x) / sqrt(bbar)` with `P = L L^T` the colour
/// projection, so that no two nearly equal terms are subtracted when `bbar` is small.
#[derive(Clone, Debug)]
pub struct GaussianDenoiser<B: Backend> {
    basis: SpatialBasis<B>,
    /// `[1, d, d]`.
    sigma2: Tensor<B, 3>,
    /// `[1, C, C]`.
    l: Tensor<B, 3>,
    gain: f64,
    abar: Vec<f64>,
}

impl<B: Backend> GaussianDenoiser<B> {
    /// Grey data; `sigma2` is the `d x d` DCT spectrum, row-major.
    pub fn new(sigma2: &[f64], d: usize, table: &ScheduleTable, device: &B::Device) -> Self {
        let v: Vec<f32> = sigma2.iter().map(|&x| x as f32).collect();
        Self {
            basis: SpatialBasis::dct(d, device),
            sigma2: Tensor::from_data(TensorData::new(v, [1, d, d]), device),
            l: Tensor::ones([1, 1, 1], device),
            gain: 1.0,
            abar: (0..=table.steps()).map(|t| table.abar(t)).collect(),
        }
    }

    /// Grey or colour data, or an error when `Cov[eps | x_t]` has no exact K-DCT form.
    pub fn for_data(
        data: &DctGaussian,
        table: &ScheduleTable,
        device: &B::Device,
    ) -> Result<Self, covdiff_core::Error> {
        let (l, gain) = data.kdct_colour().ok_or_else(|| {
            covdiff_core::Error::invalid(
                "Gaussian data",
                "the colour covariance must be a multiple of the identity or of rank one for an exact K-DCT posterior",
            )
        })?;
        let c = data.channels();
        let l: Vec<f32> = l.transpose().as_slice().iter().map(|&x| x as f32).collect();
        Ok(Self {
            l: Tensor::from_data(TensorData::new(l, [1, c, c]), device),
            gain,
            ..Self::new(data.spectrum(), data.size(), table, device)
        })
    }

    /// `abar sigma2 g` and `abar sigma2 g + bbar`, `[B, d, d]`: `lam_t` is their ratio and
    /// `1 - lam_t = bbar / (abar sigma2 g + bbar)`, each without cancellation.
    fn spectra(&self, t: usize, b: usize) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let (ab, bb) = (self.abar[t], 1.0 - self.abar[t]);
        let [_, d, _] = self.sigma2.dims();
        let signal = (self.sigma2.clone() * (ab * self.gain)).expand([b, d, d]);
        (signal.clone(), signal + bb)
    }

    fn kdct(&self, lam: Tensor<B, 3>, c: usize) -> KDct<B> {
        let [b, d, _] = lam.dims();
        let dev = lam.device();
        KDct::new(Tensor::zeros([b, c, d, d], &dev), self.l.clone().expand([b, c, c]), lam, self.basis.clone())
    }
}

impl<B: Backend> Denoiser<B> for GaussianDenoiser<B> {
    fn predict(&self, x: Tensor<B, 4>, t: usize, with_cov: bool) -> (Tensor<B, 4>, Option<AnyCovariance<B>>) {
        let [b, c, d, _] = x.dims();
        assert_eq!(c, self.l.dims()[1], "the image's channels must match the Gaussian data's");
        let (signal, denom) = self.spectra(t, b);
        let bb = 1.0 - self.abar[t];
        let rest = denom.clone().recip() * bb;
        // P x = (L L^T) x per pixel.
        let m = self.l.clone().matmul(self.l.clone().swap_dims(1, 2)).expand([b, c, c]);
        let projected = m.matmul(x.clone().reshape([b, c, d * d])).reshape([b, c, d, d]);
        let eps = (x.clone() - projected + self.kdct(rest, c).matvec(x)) / bb.sqrt();
        (eps, with_cov.then(|| AnyCovariance::KDct(self.kdct(signal / denom, c))))
    }
}
