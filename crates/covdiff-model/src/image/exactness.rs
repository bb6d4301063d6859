//! Gaussian exactness (issue #9, part 2): on DCT-diagonal Gaussian data with the exact
//! denoiser, how close does each step covariance bring the samplers' output to the data
//! covariance `S`, at a few K? With the exact `E_t` (K-DCT for this data) every step of the
//! chain is the exact reverse conditional, so only Monte Carlo error remains; isotropic and
//! diagonal covariances leave a bias that grows as K falls.
//!
//! The learnt-covariance chains draw their final step too ([`SamplerConfig::final_noise`]):
//! returning the mean would leave out `Cov[x_0 | x_{t_1}]`. beta-tilde's final variance is 0, so
//! its chain returns the mean there, as the papers' samplers do (its `s = 0` rule, beta, is
//! for the likelihood's decoder and would add noise of the data's own scale).

use super::GaussianDenoiser;
use crate::covariance::{AnyCovariance, Covariance, Diagonal};
use crate::diffusion::{
    initial_noise, Denoiser, ForwardNoise, NoiseClip, SamplerConfig, SamplerError, SamplerKind, StepVariance,
};
use burn::tensor::{backend::Backend, Tensor};
use covdiff_core::gaussian::DctGaussian;
use covdiff_core::schedule::ScheduleTable;
use covdiff_core::trajectory::Spacing;
use nalgebra::DMatrix;
use rand::SeedableRng;
use serde::Serialize;

/// The exact eps with only the diagonal of the exact `E_t`: the best diagonal covariance.
struct ExactDiagonal<'a, B: Backend>(&'a GaussianDenoiser<B>);

impl<B: Backend> Denoiser<B> for ExactDiagonal<'_, B> {
    fn predict(&self, x: Tensor<B, 4>, t: usize, with_cov: bool) -> (Tensor<B, 4>, Option<AnyCovariance<B>>) {
        let (eps, cov) = self.0.predict(x, t, with_cov);
        (eps, cov.map(|c| AnyCovariance::Diagonal(Diagonal::new(c.diagonal()))))
    }
}

/// One step covariance's relative Frobenius errors, one per K.
#[derive(Clone, Debug, Serialize)]
pub struct ExactnessRow {
    pub covariance: String,
    pub errors: Vec<f64>,
}

/// The study on one dataset.
#[derive(Clone, Debug, Serialize)]
pub struct Exactness {
    pub data: String,
    pub ks: Vec<usize>,
    pub samples: usize,
    /// `||S_hat - S||_F / ||S||_F`, `S_hat` the second moment of the samples.
    pub rows: Vec<ExactnessRow>,
    /// The same error for `samples` exact draws of `x_0`: the Monte Carlo floor.
    pub floor: f64,
}

/// `sum_i x_i x_i^T` accumulated over batches of flattened samples.
struct SecondMoment {
    sum: DMatrix<f64>,
    count: usize,
}

impl SecondMoment {
    fn new(n: usize) -> Self {
        Self { sum: DMatrix::zeros(n, n), count: 0 }
    }

    /// `values` holds `values.len() / n` samples of `n` numbers each.
    fn add(&mut self, values: &[f64]) {
        let m = values.len() / self.sum.nrows();
        self.sum += covdiff_core::dense::second_moment(values, self.sum.nrows()) * m as f64;
        self.count += m;
    }

    fn relative_error(&self, truth: &DMatrix<f64>) -> f64 {
        (&self.sum / self.count as f64 - truth).norm() / truth.norm()
    }
}

/// The relative Frobenius error of `n` samples from each of beta-tilde, the exact diagonal and
/// the exact K-DCT, at each K in `ks` (even spacing, no clipping), and of `n` exact draws.
pub fn gaussian_exactness<B: Backend>(
    data: &DctGaussian,
    name: &str,
    table: &ScheduleTable,
    ks: &[usize],
    n: usize,
    seed: u64,
    device: &B::Device,
) -> Result<Exactness, ExactnessError> {
    let exact = GaussianDenoiser::<B>::for_data(data, table, device)?;
    let truth = data.prior_dense();
    let dim = data.dim();
    let (c, d) = (data.channels(), data.size());
    let batch = 1000.min(n.max(1));
    let chain = |variance: StepVariance, k: usize, denoiser: &dyn Denoiser<B>| -> Result<f64, ExactnessError> {
        let final_noise = variance == StepVariance::Learned;
        let config = SamplerConfig {
            kind: SamplerKind::Ddpm { variance },
            steps: k,
            spacing: Spacing::Even,
            lambda: 1.0,
            clip_x0: false,
            clip_noise: NoiseClip::Noise,
            final_noise,
        };
        let mut moment = SecondMoment::new(dim);
        crate::normals::seed::<B>(device, seed);
        let mut left = n;
        while left > 0 {
            let m = left.min(batch);
            let x_t = initial_noise::<B>([m, c, d, d], &ForwardNoise::White, device);
            let out = config.build(table, ForwardNoise::White)?.run(denoiser, x_t)?;
            let values: Vec<f64> = out.into_data().iter::<f32>().map(f64::from).collect();
            moment.add(&values);
            left -= m;
        }
        Ok(moment.relative_error(&truth))
    };
    let rows = [
        ("beta-tilde (isotropic)", StepVariance::Small, &exact as &dyn Denoiser<B>),
        ("diagonal (exact diagonal of E_t)", StepVariance::Learned, &ExactDiagonal(&exact)),
        ("K-DCT (exact E_t)", StepVariance::Learned, &exact),
    ]
    .into_iter()
    .map(|(label, variance, denoiser)| {
        let errors = ks.iter().map(|&k| chain(variance, k, denoiser)).collect::<Result<_, _>>()?;
        Ok(ExactnessRow { covariance: label.into(), errors })
    })
    .collect::<Result<Vec<_>, ExactnessError>>()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut floor = SecondMoment::new(dim);
    let mut left = n;
    while left > 0 {
        let m = left.min(batch);
        floor.add(&(0..m).flat_map(|_| data.sample_x0(&mut rng)).collect::<Vec<_>>());
        left -= m;
    }
    Ok(Exactness { data: name.into(), ks: ks.to_vec(), samples: n, rows, floor: floor.relative_error(&truth) })
}

#[derive(Debug, thiserror::Error)]
pub enum ExactnessError {
    #[error(transparent)]
    Data(#[from] covdiff_core::Error),
    #[error(transparent)]
    Sampler(#[from] SamplerError),
}
