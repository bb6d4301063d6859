//! The negative ELBO over a K-step trajectory, in nats per image (docs/maths.md,
//! "Likelihood"; the paper's Eq. 42):
//! `KL(q(x_T|x_0) || N(0,I)) + sum_{s>0} KL(q(x_s|x_t,x_0) || p(x_s|x_t)) - log p(x_0|x_{t_1})`.
//!
//! Each KL is against a structured `Sigma = shift I + scale E_t`: exactly by
//! Cholesky of the dense matrix (small n), or by stochastic Lanczos quadrature
//! with the structured products only (the paper's Eqs. 43-44 estimate the same
//! `tr log Sigma`; Lanczos replaces their adaptive quadrature of Eq. 44).
//! The decoder `-log p(x_0 | x_{t_1})` is either Ho et al.'s discretised Gaussian with the
//! per-pixel marginals `diag(Sigma_1)`, as Bao et al. do (8-bit images), or the Gaussian density
//! with the full `Sigma_1` (continuous data: toy 2D).
//!
//! This reads tensors back to the host: it is for native evaluation.

use super::denoiser::Denoiser;
use super::noise::ForwardNoise;
use super::sampler::SamplerError;
use super::variance::StepVariance;
use crate::covariance::{AnyCovariance, Covariance};
use crate::objectives::rademacher;
use burn::tensor::{backend::Backend, Distribution, Tensor};
use covdiff_core::likelihood::{discretized_gaussian_nll, gaussian_moments, lanczos_quadrature};
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
    #[error("{0}")]
    Unsupported(String),
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

/// `delta^T Sigma^-1 delta`, `logdet Sigma` and `tr Sigma^-1` of each image: what every Gaussian
/// term of the ELBO is made of. Exact in closed form for the isotropic, diagonal and 2 x 2
/// covariances whatever `method`; otherwise by `method`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Moments {
    pub quad: Vec<f64>,
    pub logdet: Vec<f64>,
    pub trace_inv: Vec<f64>,
}

impl Moments {
    /// `delta = m_p - m_q` against `Sigma`.
    pub fn of<B: Backend>(delta: Tensor<B, 4>, sigma: &AnyCovariance<B>, method: LogDet) -> Result<Self, ElboError> {
        let n = sigma.dim() as f64;
        let sum = |t: Tensor<B, 4>| host(crate::covariance::per_image_sum(t));
        match sigma {
            AnyCovariance::Isotropic(iso) => {
                let s = host(iso.s.clone());
                let d2 = sum(delta.clone() * delta);
                Ok(Self {
                    quad: s.iter().zip(&d2).map(|(s, d2)| d2 / s).collect(),
                    logdet: s.iter().map(|s| n * s.ln()).collect(),
                    trace_inv: s.iter().map(|s| n / s).collect(),
                })
            }
            AnyCovariance::Diagonal(diag) => {
                let s = diag.e.clone();
                Ok(Self {
                    quad: sum(delta.clone() * delta / s.clone()),
                    logdet: sum(s.clone().log()),
                    trace_inv: sum(s.recip()),
                })
            }
            AnyCovariance::Full2(full) => {
                let det = full.det();
                Ok(Self {
                    quad: host(full.inv_quadratic(delta)),
                    logdet: host(det.clone().log()),
                    trace_inv: host((full.p.clone() + full.r.clone()) / det),
                })
            }
            _ => match method {
                LogDet::Exact => {
                    let n = sigma.dim();
                    let dense = host(sigma.to_dense());
                    let deltas = rows(delta);
                    let mut out = Self::default();
                    for (i, d) in deltas.iter().enumerate() {
                        let s = DMatrix::from_row_slice(n, n, &dense[i * n * n..(i + 1) * n * n]);
                        let (quad, logdet, trace_inv) = gaussian_moments(d, s)?;
                        out.quad.push(quad);
                        out.logdet.push(logdet);
                        out.trace_inv.push(trace_inv);
                    }
                    Ok(out)
                }
                LogDet::Lanczos { probes, steps } => {
                    let d2 = sum(delta.clone() * delta.clone());
                    let quad = lanczos_quadratic_inverse(sigma, delta, steps, &d2);
                    let (logdet, trace_inv) = lanczos_logdet_trace_inverse(sigma, probes, steps);
                    Ok(Self { quad, logdet, trace_inv })
                }
            },
        }
    }
}

/// `KL(N(m_q, v I) || N(m_p, Sigma))` per image, `delta = m_p - m_q`:
/// `0.5 (v tr Sigma^-1 + delta^T Sigma^-1 delta - n + logdet Sigma - n ln v)`.
pub fn kl_isotropic_vs_cov<B: Backend>(
    v: f64,
    delta: Tensor<B, 4>,
    sigma: &AnyCovariance<B>,
    method: LogDet,
) -> Result<Vec<f64>, ElboError> {
    let n = sigma.dim() as f64;
    let m = Moments::of(delta, sigma, method)?;
    Ok((0..m.quad.len()).map(|i| 0.5 * (v * m.trace_inv[i] + m.quad[i] - n + m.logdet[i] - n * v.ln())).collect())
}

/// `-log N(x; m, Sigma)` per image, `delta = x - m`: `0.5 (delta^T Sigma^-1 delta + logdet Sigma + n ln 2 pi)`.
pub fn gaussian_nll<B: Backend>(
    delta: Tensor<B, 4>,
    sigma: &AnyCovariance<B>,
    method: LogDet,
) -> Result<Vec<f64>, ElboError> {
    let n = sigma.dim() as f64;
    let m = Moments::of(delta, sigma, method)?;
    let c = n * (2.0 * std::f64::consts::PI).ln();
    Ok(m.quad.iter().zip(&m.logdet).map(|(q, l)| 0.5 * (q + l + c)).collect())
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

/// The last term, `-log p(x_0 | x_{t_1})`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoder {
    /// Ho et al.'s discretised Gaussian over the 256 levels of 8-bit data in [-1, 1], with the
    /// per-pixel marginals `diag(Sigma_1)` (Bao et al.).
    Discretized8Bit,
    /// The density of `N(mu_1, Sigma_1)` with the full covariance: continuous data.
    Gaussian,
}

/// The negative ELBO of a model with a step covariance rule, over a trajectory.
#[derive(Clone, Copy, Debug)]
pub struct Elbo<'a, B: Backend> {
    pub table: &'a ScheduleTable,
    pub trajectory: &'a Trajectory,
    pub variance: StepVariance,
    pub logdet: LogDet,
    pub decoder: Decoder,
    /// The forward noise. Under NI-DDPM's GFF the prior and transition terms are KLs taken in the
    /// whitened coordinates `y = Sigma^-1/2 x`, where the model is a plain DDPM (a KL does not
    /// change under an invertible linear map); the decoder is a density of the pixels `x_0`.
    pub noise: &'a ForwardNoise<B>,
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

impl<B: Backend> Elbo<'_, B> {
    /// `x0` holds data in the decoder's form (8-bit images in [-1, 1], or continuous points); one
    /// draw of each `x_t ~ q(x_t | x_0)` (unbiased).
    pub fn terms<D: Denoiser<B> + ?Sized>(&self, model: &D, x0: Tensor<B, 4>) -> Result<ElboTerms, ElboError> {
        let device = x0.device();
        self.terms_with(model, x0, |shape| Tensor::random(shape, Distribution::Normal(0.0, 1.0), &device))
    }

    /// [`Elbo::terms`] with the white noise of each step's `x_t` from `draw`, one call per step in
    /// sampling order.
    pub fn terms_with<D: Denoiser<B> + ?Sized>(
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
        // The data in whitened coordinates (x0 itself under white noise).
        let y0 = self.noise.inv_sqrt_apply(x0.clone());
        // KL(N(sqrt(ab) y0, bb I) || N(0, I)) = 0.5 (n bb + ab |y0|^2 - n - n ln bb).
        let sq = host(crate::covariance::per_image_sum(y0.clone() * y0.clone()));
        let prior = sq.iter().map(|s| 0.5 * (n * bb + ab * s - n - n * bb.ln())).collect();
        let mut transitions = vec![0.0; b];
        let mut decoder = vec![0.0; b];
        let learned = self.variance.is_learned();
        for (t, s) in self.trajectory.steps() {
            let st = SkipStep::new(self.table, t, s);
            let z = draw(shape);
            // y_t = sqrt(abar) y0 + sqrt(bbar) z; the network sees x_t = Sigma^1/2 y_t.
            let yt = y0.clone() * st.abar_t.sqrt() + z * st.bbar_t().sqrt();
            let (eps, cov) = model.predict(self.noise.sqrt_apply(yt.clone()), t, learned);
            let (cx, ce) = st.mean_from_eps();
            let mean_p = yt.clone() * cx + eps * ce;
            let sigma = self.variance.at(&st, cov, shape, &device)?;
            if s == 0 {
                decoder = self.decoder_nll(x0.clone(), y0.clone(), mean_p, &sigma)?;
            } else {
                let (c0, cxq) = st.mean_from_x0();
                let mean_q = y0.clone() * c0 + yt * cxq;
                let kl = kl_isotropic_vs_cov(st.btilde, mean_p - mean_q, &sigma, self.logdet)?;
                for (acc, k) in transitions.iter_mut().zip(kl) {
                    *acc += k;
                }
            }
        }
        Ok(ElboTerms { prior, transitions, decoder })
    }

    /// `-log p(x_0 | x_{t_1})` of the pixels, with `p(y_0 | y_{t_1}) = N(mean_y, Sigma_1)` in whitened
    /// coordinates, so `N(Sigma^1/2 mean_y, Sigma^1/2 Sigma_1 Sigma^1/2)` in pixels.
    fn decoder_nll(
        &self,
        x0: Tensor<B, 4>,
        y0: Tensor<B, 4>,
        mean_y: Tensor<B, 4>,
        sigma: &AnyCovariance<B>,
    ) -> Result<Vec<f64>, ElboError> {
        let [b, c, ..] = x0.dims();
        match self.decoder {
            Decoder::Gaussian => {
                // Change of variables: -log p(x) = -log p(y) + log |det Sigma^1/2|.
                let logdet = self.noise.log_det_sqrt(c);
                Ok(gaussian_nll(y0 - mean_y, sigma, self.logdet)?.into_iter().map(|v| v + logdet).collect())
            }
            Decoder::Discretized8Bit => {
                let std = rows(self.pixel_marginal_variance(sigma)?.sqrt());
                let (xs, mus) = (rows(x0), rows(self.noise.sqrt_apply(mean_y)));
                Ok((0..b).map(|i| discretized_gaussian_nll(&xs[i], &mus[i], &std[i])).collect())
            }
        }
    }

    /// `diag(Sigma^1/2 Sigma_1 Sigma^1/2)`, the per-pixel variances of the decoder: `diag(Sigma_1)`
    /// under white noise; `s diag(Sigma)` for `Sigma_1 = s I` under GFF noise (circulant: the same for
    /// every pixel); otherwise from the dense matrices (`LogDet::Exact`, small `n`).
    fn pixel_marginal_variance(&self, sigma: &AnyCovariance<B>) -> Result<Tensor<B, 4>, ElboError> {
        if self.noise.is_white() {
            return Ok(sigma.diagonal());
        }
        let shape = sigma.shape();
        let [b, c, h, w] = shape;
        let device = sigma.device();
        match (sigma, self.logdet) {
            (AnyCovariance::Isotropic(iso), _) => {
                let s = iso.s.clone() * self.noise.pixel_variance();
                Ok(crate::covariance::per_image::<B, 4>(s) * Tensor::ones(shape, &device))
            }
            (_, LogDet::Exact) => {
                let n = c * h * w;
                let root = self.noise.sqrt_dense([c, h, w], &device).reshape([1, n, n]).expand([b, n, n]);
                let full = root.clone().matmul(sigma.to_dense()).matmul(root);
                let eye = Tensor::<B, 2>::eye(n, &device).reshape([1, n, n]);
                Ok((full * eye).sum_dim(2).reshape(shape))
            }
            (_, LogDet::Lanczos { .. }) => Err(ElboError::Unsupported(
                "the 8-bit decoder of a learned covariance under GFF noise needs diag(Sigma^1/2 Sigma_1 Sigma^1/2), \
                 which covdiff computes densely only: use --logdet exact (small images)"
                    .into(),
            )),
        }
    }
}
