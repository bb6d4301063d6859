//! Posterior sampling for inverse problems with a covariance-based likelihood score (K-DCT
//! paper, A.3, Eqs. 19-20): observations `y = A x_0 + noise`, `noise ~ N(0, sigma_y^2 I)`, with
//! `A` a pixel mask.
//!
//! With `q(x_0 | x_t) = N(x0_hat, Cov[x_0 | x_t])` and `Cov[x_0 | x_t] = (bbar / abar) E_t`, the
//! guidance is (Eq. 20, K-DCT column)
//!
//! `g = grad_{x_t} log p_t(y | x_t) = (E_t / sqrt(abar)) A^T u`,
//! `(sigma_y^2 I + A (bbar / abar) E_t A^T) u = y - A x0_hat`,
//!
//! where `grad_{x_t} x0_hat^T = E_t / sqrt(abar)` (`E_t = I - sqrt(bbar) d eps_hat / d x_t`, docs/maths.md).
//! The score becomes `grad log p_t(x_t) + g`, so the guided `eps_hat` is `eps_hat - sqrt(bbar) g`,
//! and any sampler runs on it unchanged. The solve is conjugate gradients on the observed pixels
//! with the covariance's structured `E v` (never a dense matrix). For Gaussian data with the
//! exact denoiser and `E_t` everything here is exact, so the guided chain samples the exact
//! conditional Gaussian (the test compares with the Schur complement).

use crate::covariance::{per_image, per_image_sum, AnyCovariance, Covariance};
use crate::diffusion::Denoiser;
use burn::tensor::{backend::Backend, ElementConversion, Tensor};
use covdiff_core::schedule::ScheduleTable;

/// Observed pixels `y` of a batch: `mask` is 1 where a pixel is observed and 0 elsewhere, and `y`
/// holds the observations there (0 elsewhere); both `[B, C, d, d]`.
#[derive(Clone, Debug)]
pub struct Observation<B: Backend> {
    pub mask: Tensor<B, 4>,
    pub y: Tensor<B, 4>,
    /// The observation noise's standard deviation, > 0 (it also regularises the solve).
    pub sigma_y: f64,
}

/// Which `E_t` the guidance uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuidanceCovariance {
    /// `E_t = I`: `Cov[x_0 | x_t] = (bbar / abar) I`, IGDM's heuristic (Song et al., 2023) with
    /// the same Jacobian approximation.
    Isotropic,
    /// The denoiser's own `E_t` (diagonal or K-DCT heads, or the exact one).
    Learnt,
}

/// Conjugate-gradient settings of the guidance solve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CgOptions {
    pub max_iterations: usize,
    /// Stop once every image's residual norm is below this fraction of its right-hand side's.
    pub tolerance: f64,
}

impl Default for CgOptions {
    fn default() -> Self {
        Self { max_iterations: 200, tolerance: 1e-4 }
    }
}

/// A denoiser whose `eps_hat` carries the guidance of an [`Observation`].
pub struct Guided<'a, B: Backend, D: Denoiser<B> + ?Sized> {
    pub inner: &'a D,
    pub observation: &'a Observation<B>,
    pub table: &'a ScheduleTable,
    pub covariance: GuidanceCovariance,
    pub cg: CgOptions,
}

impl<B: Backend, D: Denoiser<B> + ?Sized> Guided<'_, B, D> {
    /// The guidance `g` at `x_t` for `eps_hat` and `E_t` (Eq. 20).
    pub fn guidance(&self, x: Tensor<B, 4>, eps: Tensor<B, 4>, e: &AnyCovariance<B>, t: usize) -> Tensor<B, 4> {
        let (ab, bb) = (self.table.abar(t), self.table.bbar(t));
        let mask = self.observation.mask.clone();
        let x0 = (x - eps * bb.sqrt()) / ab.sqrt();
        let rhs = (self.observation.y.clone() - x0) * mask.clone();
        let sigma2 = self.observation.sigma_y * self.observation.sigma_y;
        // (sigma_y^2 I + A (bbar/abar) E_t A^T) on masked images.
        let system = |v: Tensor<B, 4>| v.clone() * sigma2 + e.matvec(v) * mask.clone() * (bb / ab);
        let diagonal = e.diagonal() * mask.clone() * (bb / ab) + sigma2;
        let u = conjugate_gradient(system, diagonal, rhs, self.cg);
        e.matvec(u) / ab.sqrt()
    }
}

impl<B: Backend, D: Denoiser<B> + ?Sized> Denoiser<B> for Guided<'_, B, D> {
    fn predict(&self, x: Tensor<B, 4>, t: usize, with_cov: bool) -> (Tensor<B, 4>, Option<AnyCovariance<B>>) {
        let learnt = self.covariance == GuidanceCovariance::Learnt;
        let (eps, cov) = self.inner.predict(x.clone(), t, with_cov || learnt);
        let g = match (&cov, learnt) {
            (Some(e), true) => self.guidance(x, eps.clone(), e, t),
            // E_t = I (and a learnt guidance whose denoiser has no E_t falls back to it).
            _ => {
                let identity = AnyCovariance::scalar(1.0, x.dims(), &x.device());
                self.guidance(x, eps.clone(), &identity, t)
            }
        };
        let eps = eps - g * self.table.bbar(t).sqrt();
        (eps, if with_cov { cov } else { None })
    }
}

/// Solves `M u = b` per image by conjugate gradients preconditioned with `M`'s diagonal
/// (Jacobi), `M` symmetric positive definite on the images' subspace that `b` lies in (here: the
/// observed pixels), given as `apply`, its diagonal as `diagonal` (> 0). Each image has its own
/// step sizes; images whose residual is small enough stop moving.
pub fn conjugate_gradient<B: Backend>(
    apply: impl Fn(Tensor<B, 4>) -> Tensor<B, 4>,
    diagonal: Tensor<B, 4>,
    b: Tensor<B, 4>,
    options: CgOptions,
) -> Tensor<B, 4> {
    let inverse = diagonal.recip();
    let mut u = b.zeros_like();
    let mut r = b.clone();
    let mut z = r.clone() * inverse.clone();
    let mut p = z.clone();
    let mut rz = per_image_sum(r.clone() * z);
    let mut rr = per_image_sum(b.clone() * b);
    let stop = rr.clone() * (options.tolerance * options.tolerance);
    for _ in 0..options.max_iterations {
        let active = rr.clone().greater(stop.clone()).float();
        if active.clone().sum().into_scalar().elem::<f32>() == 0.0 {
            break;
        }
        let mp = apply(p.clone());
        let pmp = per_image_sum(p.clone() * mp.clone());
        // alpha = r.z / p.M p, 0 for converged images (and where p.M p vanished).
        let alpha = (rz.clone() / pmp.clamp_min(1e-30)) * active;
        u = u + p.clone() * per_image::<B, 4>(alpha.clone());
        r = r - mp * per_image::<B, 4>(alpha);
        z = r.clone() * inverse.clone();
        let rz_next = per_image_sum(r.clone() * z.clone());
        let beta = rz_next.clone() / rz.clamp_min(1e-30);
        p = z.clone() + p * per_image::<B, 4>(beta);
        rz = rz_next;
        rr = per_image_sum(r.clone() * r.clone());
    }
    u
}
