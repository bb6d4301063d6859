//! The Wiener filter: the optimal denoiser of Gaussian data `x0 ~ N(mu, S)` (the locality
//! appendix, A.4 and C.4), `x0_hat = mu + sqrt(abar) S (abar S + bbar I)^-1 (x_t - sqrt(abar) mu)`.
//! With `S = U diag(lam) U^T` this is `mu + U diag(sqrt(abar) lam / (abar lam + bbar)) U^T (x_t -
//! sqrt(abar) mu)`: `U` the eigenvectors of `S` (exact), or the DCT basis with `lam` the diagonal
//! of `S` in it (the DCT-diagonal approximation, `I_C (x) F2` for colour).

use super::{coefficients, x0_denoiser, AnalyticError};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use covdiff_core::dense::dct2_matrix;
use covdiff_core::schedule::ScheduleTable;
use nalgebra::DMatrix;
use std::str::FromStr;

/// Which orthonormal basis diagonalises the data covariance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WienerBasis {
    /// The eigenvectors of `S`: the exact Gaussian posterior mean.
    Eigen,
    /// The 2D DCT per channel, keeping only the diagonal of `S` in it.
    Dct,
}

impl FromStr for WienerBasis {
    type Err = covdiff_core::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "eigen" | "full" => Ok(Self::Eigen),
            "dct" => Ok(Self::Dct),
            _ => Err(covdiff_core::Error::unknown("Wiener basis", s, "eigen (full) or dct")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct WienerDenoiser<B: Backend> {
    /// `[1, n]`.
    mean: Tensor<B, 2>,
    /// `[n, n]`, the basis vectors as columns.
    basis: Tensor<B, 2>,
    /// `[1, n]`, the data variance along each basis vector.
    lam: Tensor<B, 2>,
    table: ScheduleTable,
}

impl<B: Backend> WienerDenoiser<B> {
    /// From the data's mean and covariance (`C d^2`, channel-major).
    pub fn new(
        mean: &[f64],
        cov: &DMatrix<f64>,
        basis: WienerBasis,
        channels: usize,
        size: usize,
        table: ScheduleTable,
        device: &B::Device,
    ) -> Result<Self, AnalyticError> {
        let n = channels * size * size;
        if mean.len() != n || cov.nrows() != n || cov.ncols() != n {
            return Err(AnalyticError::Invalid(format!(
                "a Wiener filter for {channels} x {size} x {size} images needs a mean of {n} and an {n} x {n} covariance, got {} and {} x {}",
                mean.len(),
                cov.nrows(),
                cov.ncols()
            )));
        }
        if mean.iter().chain(cov.iter()).any(|x| !x.is_finite()) {
            return Err(AnalyticError::Invalid("the mean or covariance holds a non-finite value".into()));
        }
        let (u, lam) = match basis {
            WienerBasis::Eigen => {
                let eig = ((cov + cov.transpose()) * 0.5).symmetric_eigen();
                (eig.eigenvectors, eig.eigenvalues.iter().map(|&l| l.max(0.0)).collect::<Vec<_>>())
            }
            WienerBasis::Dct => {
                let f2 = dct2_matrix(size);
                let dd = size * size;
                let mut u = DMatrix::<f64>::zeros(n, n);
                for c in 0..channels {
                    u.view_mut((c * dd, c * dd), (dd, dd)).copy_from(&f2.transpose());
                }
                let lam = (0..n).map(|k| (u.column(k).transpose() * cov * u.column(k))[(0, 0)].max(0.0)).collect();
                (u, lam)
            }
        };
        let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        // Row-major [n, n] of U: nalgebra is column-major, so transpose first.
        let ut = u.transpose();
        Ok(Self {
            mean: Tensor::from_data(TensorData::new(f(mean), [1, n]), device),
            basis: Tensor::from_data(TensorData::new(f(ut.as_slice()), [n, n]), device),
            lam: Tensor::from_data(TensorData::new(f(&lam), [1, n]), device),
            table,
        })
    }

    pub fn table(&self) -> &ScheduleTable {
        &self.table
    }

    /// `E[x0 | x_t]` under the Gaussian, `[B, C, d, d]`.
    pub fn x0_hat(&self, x: Tensor<B, 4>, t: usize) -> Tensor<B, 4> {
        let shape = x.dims();
        let [b, ..] = shape;
        let n = self.mean.dims()[1];
        let (s, bb) = coefficients(&self.table, t);
        let gain = self.lam.clone() * s / (self.lam.clone() * (s * s) + bb);
        let centred = x.reshape([b, n]) - self.mean.clone() * s;
        let coeff = centred.matmul(self.basis.clone()) * gain;
        (coeff.matmul(self.basis.clone().transpose()) + self.mean.clone()).reshape(shape)
    }
}

x0_denoiser!(WienerDenoiser);
