//! The exact denoiser of Gaussian data `x0 ~ N(0, C)` under white or GFF
//! forward noise, as dense matrices: an independent reference for samplers
//! and objectives at small n.

use burn::tensor::{Tensor, TensorData};
use covdiff_core::gff::Gff;
use covdiff_model::backends::Cpu;
use covdiff_model::covariance::{AnyCovariance, LowRank};
use covdiff_model::diffusion::Denoiser;
use nalgebra::DMatrix;

type B = Cpu;

/// Gaussian data `x0 ~ N(0, C)` under forward noise `Sigma` (`sh = Sigma^1/2`), both dense.
#[derive(Clone)]
pub struct Truth {
    pub c: DMatrix<f64>,
    pub sh: DMatrix<f64>,
}

impl Truth {
    /// `Cov(x_t) = abar C + bbar Sigma`.
    pub fn marginal(&self, abar: f64) -> DMatrix<f64> {
        &self.c * abar + &self.sh * &self.sh * (1.0 - abar)
    }

    /// `eps_hat = E[eps | x_t] = sqrt(bbar) Sigma^1/2 Cov(x_t)^-1 x_t`.
    pub fn eps_map(&self, abar: f64) -> DMatrix<f64> {
        let inv = self.marginal(abar).try_inverse().unwrap();
        &self.sh * inv * (1.0 - abar).sqrt()
    }

    /// `E_t = Cov[eps | x_t] = I - bbar Sigma^1/2 Cov(x_t)^-1 Sigma^1/2`.
    pub fn eps_cov(&self, abar: f64) -> DMatrix<f64> {
        let inv = self.marginal(abar).try_inverse().unwrap();
        DMatrix::identity(self.c.nrows(), self.c.nrows()) - &self.sh * inv * &self.sh * (1.0 - abar)
    }
}

/// The exact denoiser of [`Truth`] as dense products; `E_t` as `diag(e) + R R^T` of full rank.
pub struct DenseDenoiser {
    pub truth: Truth,
    /// `abar_t` for t = 0..=T.
    pub abar: Vec<f64>,
    /// Grey `d x d` images.
    pub d: usize,
}

pub fn to_tensor<const K: usize>(m: &DMatrix<f64>, shape: [usize; K]) -> Tensor<B, K> {
    let v: Vec<f32> = m.transpose().iter().map(|&x| x as f32).collect(); // row-major
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

impl Denoiser<B> for DenseDenoiser {
    fn predict(&self, x: Tensor<B, 4>, t: usize, with_cov: bool) -> (Tensor<B, 4>, Option<AnyCovariance<B>>) {
        let b = x.dims()[0];
        let (d, n) = (self.d, self.d * self.d);
        let abar = self.abar[t];
        let map = to_tensor(&self.truth.eps_map(abar).transpose(), [n, n]);
        let eps = x.reshape([b, n]).matmul(map).reshape([b, 1, d, d]);
        let cov = with_cov.then(|| {
            let floor = 1e-6;
            let eig = self.truth.eps_cov(abar).symmetric_eigen();
            let scale = eig.eigenvalues.map(|w| (w - floor).max(0.0).sqrt());
            let r = &eig.eigenvectors * DMatrix::from_diagonal(&scale);
            let r = to_tensor::<3>(&r, [1, n, n]).expand([b, n, n]);
            AnyCovariance::LowRank(LowRank::new(Tensor::full([b, 1, d, d], floor, &Default::default()), r))
        });
        (eps, cov)
    }
}

/// `Sigma^1/2` of the GFF from its eigenvalues on the DFT frequencies, by the circulant formula
/// `Sigma[p, q] = (1/n) sum_k lam_k cos(2 pi k.(p - q) / d)`, then a symmetric eigen square root.
pub fn gff_sqrt(gff: &Gff) -> DMatrix<f64> {
    let d = gff.size();
    let n = d * d;
    let lam = gff.eigenvalues();
    let sigma = DMatrix::from_fn(n, n, |p, q| {
        let (dy, dx) = ((p / d) as f64 - (q / d) as f64, (p % d) as f64 - (q % d) as f64);
        (0..n)
            .map(|k| {
                let (ky, kx) = ((k / d) as f64, (k % d) as f64);
                lam[k] * (2.0 * std::f64::consts::PI * (ky * dy + kx * dx) / d as f64).cos()
            })
            .sum::<f64>()
            / n as f64
    });
    let eig = sigma.symmetric_eigen();
    &eig.eigenvectors
        * DMatrix::from_diagonal(&eig.eigenvalues.map(|w| w.max(0.0).sqrt()))
        * eig.eigenvectors.transpose()
}
