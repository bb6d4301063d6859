//! The negative ELBO over a K-step trajectory, in nats per image (docs/maths.md,
//! "Likelihood"; the paper's Eq. 42):
//! `KL(q(x_T|x_0) || N(0,I)) + sum_{s>0} KL(q(x_s|x_t,x_0) || p(x_s|x_t)) - log p(x_0|x_{t_1})`.
//!
//! Each KL is against a structured `Sigma = shift I + scale E_t`: exactly by
//! Cholesky of the dense matrix (small n), or by stochastic Lanczos quadrature
//! with the structured products only (the paper's Eqs. 43-44 estimate the same
//! `tr log Sigma`; Lanczos replaces their adaptive quadrature of Eq. 44).
//! The decoder is Ho et al.'s discretised Gaussian with the per-pixel
//! marginals `diag(Sigma_1)`, as Bao et al. do.
//!
//! This reads tensors back to the host: it is for native evaluation.

use super::denoiser::Denoiser;
use super::sampler::{SamplerError, StepVariance};
use crate::covariance::{AnyCovariance, Covariance};
use crate::objectives::rademacher;
use burn::tensor::{backend::Backend, Distribution, Tensor};
use covdiff_core::likelihood::{discretized_gaussian_nll, kl_isotropic_vs, lanczos_quadrature};
use covdiff_core::schedule::ScheduleTable;
use covdiff_core::skip_step::SkipStep;
use covdiff_core::trajectory::Trajectory;
use nalgebra::DMatrix;

/// Why an ELBO could not be computed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ElboError {
    #[error(transparent)]
    Math(#[from] covdiff_core::Error),
    #[error(transparent)]
    Sampler(#[from] SamplerError),
}

/// How `logdet Sigma`, `tr Sigma^-1` and `delta^T Sigma^-1 delta` are computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LogDet {
    /// Cholesky of the dense `n x n` matrix.
    Exact,
    /// Lanczos with `steps` iterations; `probes` Rademacher probes for the traces.
    Lanczos { probes: usize, steps: usize },
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec().expect("f64 data")
}

/// `[B, ...]` to one row per image.
fn rows<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<Vec<f64>> {
    let b = t.dims()[0];
    let v = host(t);
    let n = v.len() / b.max(1);
    v.chunks(n.max(1)).map(<[f64]>::to_vec).collect()
}

/// Lanczos tridiagonals of `Sigma` started at each image of `u`, batched:
/// `(alpha, beta)` per image, `steps` long. No reorthogonalisation.
pub fn lanczos<B: Backend, C: Covariance<B>>(cov: &C, u: Tensor<B, 4>, steps: usize) -> Vec<(Vec<f64>, Vec<f64>)> {
    let b = u.dims()[0];
    let col = |s: Tensor<B, 1>| s.reshape([b, 1, 1, 1]);
    let dot =
        |x: &Tensor<B, 4>, y: &Tensor<B, 4>| (x.clone() * y.clone()).reshape([b as i32, -1]).sum_dim(1).reshape([b]);
    let mut q = u.clone() / col(dot(&u, &u).sqrt());
    let mut q_prev = q.zeros_like();
    let mut b_prev = Tensor::<B, 1>::zeros([b], &u.device());
    let (mut alphas, mut betas) = (Vec::with_capacity(steps), Vec::with_capacity(steps));
    for _ in 0..steps {
        let mut w = cov.matvec(q.clone()) - q_prev * col(b_prev.clone());
        let a = dot(&q, &w);
        w = w - q.clone() * col(a.clone());
        let beta = dot(&w, &w).sqrt();
        alphas.push(a);
        betas.push(beta.clone());
        q_prev = q;
        q = w / col(beta.clone().clamp_min(1e-30));
        b_prev = beta;
    }
    let a = rows(Tensor::stack::<2>(alphas, 1));
    let bt = rows(Tensor::stack::<2>(betas, 1));
    a.into_iter().zip(bt).collect()
}

/// `KL(N(m_q, v I) || N(m_p, Sigma))` per image, `delta = m_p - m_q`.
pub fn kl_isotropic_vs_cov<B: Backend>(
    v: f64,
    delta: Tensor<B, 4>,
    sigma: &AnyCovariance<B>,
    method: LogDet,
) -> Result<Vec<f64>, ElboError> {
    let n = sigma.dim() as f64;
    if let AnyCovariance::Isotropic(iso) = sigma {
        let s = host(iso.s.clone());
        let d2 = host(crate::covariance::per_image_sum(delta.clone() * delta));
        return Ok(s.iter().zip(d2).map(|(s, d2)| 0.5 * (n * v / s + d2 / s - n + n * s.ln() - n * v.ln())).collect());
    }
    if let AnyCovariance::Diagonal(diag) = sigma {
        // Exact for either method: 0.5 sum_i (v / s_i + delta_i^2 / s_i - 1 + ln s_i - ln v).
        let s = diag.e.clone();
        let terms = (s.clone().recip() * v + delta.clone() * delta / s.clone() + s.log()).reshape([0, -1]);
        let sums = host(terms.sum_dim(1));
        return Ok(sums.iter().map(|t| 0.5 * (t - n - n * v.ln())).collect());
    }
    match method {
        LogDet::Exact => {
            let [b, ..] = sigma.shape();
            let n = sigma.dim();
            let dense = host(sigma.to_dense());
            let deltas = rows(delta);
            (0..b)
                .map(|i| {
                    kl_isotropic_vs(v, &deltas[i], DMatrix::from_row_slice(n, n, &dense[i * n * n..(i + 1) * n * n]))
                })
                .collect::<Result<_, _>>()
                .map_err(ElboError::from)
        }
        LogDet::Lanczos { probes, steps } => {
            let d2 = host(crate::covariance::per_image_sum(delta.clone() * delta.clone()));
            let quad = lanczos_quadratic_inverse(sigma, delta, steps, &d2);
            let (logdet, trace_inv) = lanczos_logdet_trace_inverse(sigma, probes, steps);
            Ok((0..quad.len()).map(|i| 0.5 * (v * trace_inv[i] + quad[i] - n + logdet[i] - n * v.ln())).collect())
        }
    }
}

/// `delta^T Sigma^-1 delta` per image by Lanczos started at `delta` (`norm_sq = |delta|^2`): exact
/// after `n` steps in exact arithmetic.
pub fn lanczos_quadratic_inverse<B: Backend>(
    sigma: &AnyCovariance<B>,
    delta: Tensor<B, 4>,
    steps: usize,
    norm_sq: &[f64],
) -> Vec<f64> {
    lanczos(sigma, delta, steps)
        .iter()
        .zip(norm_sq)
        .map(|((a, b), n2)| lanczos_quadrature(*n2, a, b, |x| 1.0 / x))
        .collect()
}

/// `(logdet Sigma, tr Sigma^-1)` per image by stochastic Lanczos quadrature: Hutchinson's
/// `tr f(Sigma) = E[xi^T f(Sigma) xi]` over `probes` Rademacher probes (the paper's Eq. 43),
/// each `xi^T f(Sigma) xi` by Gauss quadrature on the Lanczos tridiagonal.
pub fn lanczos_logdet_trace_inverse<B: Backend>(
    sigma: &AnyCovariance<B>,
    probes: usize,
    steps: usize,
) -> (Vec<f64>, Vec<f64>) {
    let shape = sigma.shape();
    let n = sigma.dim() as f64;
    let probes = probes.max(1);
    let mut logdet = vec![0.0; shape[0]];
    let mut trace_inv = vec![0.0; shape[0]];
    for _ in 0..probes {
        let xi = rademacher::<B>(shape, &sigma.device());
        for (i, (a, b)) in lanczos(sigma, xi, steps).iter().enumerate() {
            logdet[i] += lanczos_quadrature(n, a, b, f64::ln) / probes as f64;
            trace_inv[i] += lanczos_quadrature(n, a, b, |x| 1.0 / x) / probes as f64;
        }
    }
    (logdet, trace_inv)
}

/// The negative ELBO of a model with a step covariance rule, over a trajectory.
#[derive(Clone, Copy, Debug)]
pub struct Elbo<'a> {
    pub table: &'a ScheduleTable,
    pub trajectory: &'a Trajectory,
    pub variance: StepVariance,
    pub logdet: LogDet,
}

/// The terms of the negative ELBO of each image, in nats.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ElboTerms {
    pub prior: Vec<f64>,
    /// `sum_{s > 0}` of the KL terms.
    pub transitions: Vec<f64>,
    pub decoder: Vec<f64>,
}

impl ElboTerms {
    pub fn total(&self) -> Vec<f64> {
        (0..self.prior.len()).map(|i| self.prior[i] + self.transitions[i] + self.decoder[i]).collect()
    }
}

impl Elbo<'_> {
    /// `x0` holds 8-bit images in [-1, 1]; one draw of each `x_t ~ q(x_t | x_0)` (unbiased).
    pub fn terms<B: Backend, D: Denoiser<B> + ?Sized>(
        &self,
        model: &D,
        x0: Tensor<B, 4>,
    ) -> Result<ElboTerms, ElboError> {
        let device = x0.device();
        self.terms_with(model, x0, |shape| Tensor::random(shape, Distribution::Normal(0.0, 1.0), &device))
    }

    /// [`Elbo::terms`] with the white noise of each step's `x_t` from `draw`, one call per step in
    /// sampling order.
    pub fn terms_with<B: Backend, D: Denoiser<B> + ?Sized>(
        &self,
        model: &D,
        x0: Tensor<B, 4>,
        mut draw: impl FnMut([usize; 4]) -> Tensor<B, 4>,
    ) -> Result<ElboTerms, ElboError> {
        let shape = x0.dims();
        let [b, ..] = shape;
        let n = (shape[1] * shape[2] * shape[3]) as f64;
        let device = x0.device();
        let big_t = self.trajectory.times()[0];
        let (ab, bb) = (self.table.abar(big_t), self.table.bbar(big_t));
        // KL(N(sqrt(ab) x0, bb I) || N(0, I)) = 0.5 (n bb + ab |x0|^2 - n - n ln bb).
        let sq = host(crate::covariance::per_image_sum(x0.clone() * x0.clone()));
        let prior = sq.iter().map(|s| 0.5 * (n * bb + ab * s - n - n * bb.ln())).collect();
        let mut transitions = vec![0.0; b];
        let mut decoder = vec![0.0; b];
        let learned = self.variance == StepVariance::Learned;
        for (t, s) in self.trajectory.steps() {
            let st = SkipStep::new(self.table, t, s);
            let z = draw(shape);
            let xt = x0.clone() * st.abar_t.sqrt() + z * st.bbar_t().sqrt();
            let (eps, cov) = model.predict(xt.clone(), t, learned);
            let (cx, ce) = st.mean_from_eps();
            let mean_p = xt.clone() * cx + eps * ce;
            let sigma = self.variance.at(&st, cov, shape, &device)?;
            if s == 0 {
                let std = rows(sigma.diagonal().sqrt());
                let (xs, mus) = (rows(x0.clone()), rows(mean_p));
                for i in 0..b {
                    decoder[i] = discretized_gaussian_nll(&xs[i], &mus[i], &std[i]);
                }
            } else {
                let (c0, cxq) = st.mean_from_x0();
                let mean_q = x0.clone() * c0 + xt * cxq;
                let kl = kl_isotropic_vs_cov(st.btilde, mean_p - mean_q, &sigma, self.logdet)?;
                for (acc, k) in transitions.iter_mut().zip(kl) {
                    *acc += k;
                }
            }
        }
        Ok(ElboTerms { prior, transitions, decoder })
    }
}
