//! Training of the 2D models on the shared trainer ([`crate::diffusion::train`]): the eps-network
//! by `L_simple` and the covariance network by the thesis' objective or the principled one, in one
//! [`Stage`] whose batches are points viewed as `[N, 2, 1, 1]` images.

use super::network::Toy2dModel;
use crate::covariance::{Covariance, Full2};
use crate::diffusion::train::{Batch, Loss, Settings, Stage, TrainingData};
use burn::tensor::{backend::AutodiffBackend, Tensor};
use covdiff_core::toy2d::Points;
use std::str::FromStr;

/// What the covariance network learns (the eps-network always learns `L_simple`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    /// Scalar variance: only the eps-network is trained.
    Baseline,
    /// The thesis, as written: `L_simple + w KL(N(0, L L^T) || N(0, Sigma_t))`, with `Sigma_t`
    /// the empirical covariance of the true noise `eps` over the batch (mean removed). Since
    /// `eps ~ N(0, I)` whatever `t`, `Sigma_t` is the identity up to sampling error.
    Thesis { kl_weight: f64 },
    /// `L L^T` regresses `E_t = Cov[eps | x_t]` by NPR-residual: `||E - r r^T||_F^2`,
    /// `r = eps - eps_hat` with `eps_hat` held fixed (docs/maths.md).
    Principled,
}

impl Objective {
    pub fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Thesis { .. } => "thesis",
            Self::Principled => "principled",
        }
    }
}

impl FromStr for Objective {
    type Err = covdiff_core::Error;
    fn from_str(s: &str) -> Result<Self, covdiff_core::Error> {
        match s {
            "baseline" => Ok(Self::Baseline),
            "thesis" => Ok(Self::Thesis { kl_weight: 1.0 }),
            "principled" => Ok(Self::Principled),
            _ => Err(covdiff_core::Error::unknown("objective", s, "baseline, thesis or principled")),
        }
    }
}

/// The thesis' optimiser (Sec. 5.2): Adam at `lr`, no warm-up, clipping or EMA, with a cosine
/// decay to 1% of `lr` over `decay_steps` (0: constant).
pub fn settings(batch: usize, lr: f64, decay_steps: usize, seed: u64) -> Settings {
    Settings { batch, lr, weight_decay: 0.0, warmup: 0, grad_clip: 0.0, ema: 0.0, seed, decay_steps }
}

impl TrainingData for Points {
    fn len(&self) -> usize {
        self.xy.len()
    }
    fn shape(&self) -> [usize; 3] {
        [2, 1, 1]
    }
    fn extend(&self, i: usize, out: &mut Vec<f32>) {
        out.extend(self.xy[i].map(|v| v as f32));
    }
    fn label(&self, i: usize) -> Option<usize> {
        self.labels.get(i).copied()
    }
}

/// Both 2D networks at once: `L_simple` (summed over the two coordinates, as the thesis writes it)
/// plus the covariance network's objective. Its loss terms are `simple` and `covariance`.
#[derive(Clone, Copy, Debug)]
pub struct Toy2dStage {
    pub objective: Objective,
}

impl<B: AutodiffBackend> Stage<B> for Toy2dStage {
    type Model = Toy2dModel<B>;
    fn loss(&self, model: &Toy2dModel<B>, batch: Batch<B>) -> Loss<B> {
        let (eps, x_t, t) = (Full2::as_points(batch.eps), Full2::as_points(batch.x_t), batch.t);
        let n = eps.dims()[0];
        let y = if model.is_conditional() { batch.labels } else { None };
        let eps_hat = model.predict_eps(x_t.clone(), t.clone(), y.clone());
        let simple = (eps.clone() - eps_hat.clone()).powi_scalar(2).sum_dim(1).mean();
        let covariance = match self.objective {
            Objective::Baseline => Tensor::<B, 1>::zeros([1], &eps.device()),
            Objective::Thesis { kl_weight } => {
                let target = batch_noise_covariance(eps);
                let pred = model.predict_cov(x_t, t, y);
                let zero = Tensor::<B, 4>::zeros([n, 2, 1, 1], &pred.device());
                pred.kl(zero.clone(), &target, zero).mean() * kl_weight
            }
            Objective::Principled => {
                let pred = model.predict_cov(x_t, t, y);
                let r = Full2::as_image((eps - eps_hat).detach());
                // ||E - r r^T||^2 = ||E||^2 - 2 r^T E r + const.
                (pred.frobenius_sq() - pred.quadratic(r) * 2.0).mean()
            }
        };
        let terms = vec![("simple", simple.clone().inner()), ("covariance", covariance.clone().inner())];
        Loss { total: simple + covariance, terms }
    }
    fn to_device(&self, _: &B::Device) -> Self {
        *self
    }
}

/// The thesis' `Sigma_t`: the empirical covariance of the batch's true noise `[N, 2]` (mean removed,
/// divided by `N - 1`), plus 1e-6 I, the same for every point.
fn batch_noise_covariance<B: AutodiffBackend>(eps: Tensor<B, 2>) -> Full2<B> {
    let eps = eps.detach();
    let n = eps.dims()[0];
    let centred = eps.clone() - eps.mean_dim(0);
    let col = |k: usize| centred.clone().narrow(1, k, 1).reshape([n]);
    let (a, b) = (col(0), col(1));
    let d = (n.max(2) - 1) as f64;
    let ones = Tensor::<B, 1>::ones([n], &a.device());
    let fill = |v: Tensor<B, 1>| ones.clone() * v;
    Full2 {
        p: fill((a.clone() * a.clone()).sum() / d + 1e-6),
        q: fill((a.clone() * b.clone()).sum() / d),
        r: fill((b.clone() * b).sum() / d + 1e-6),
    }
}
