//! Image diffusion against exact references: the GFF operator against
//! covdiff-core's FFT, K-DCT heads trained by NPR against the exact
//! `Cov[eps | x_t]` of Gaussian data, few-step sampling against the data
//! covariance, the ELBO's KL by Cholesky and by Lanczos against dense
//! formulas, and two-stage training that resumes exactly.

mod common;

use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{backend::Backend, Tensor};
use common::{tensor, values, Rand};
use covdiff_core::data::ImageSet;
use covdiff_core::dense::{dct2_matrix, gaussian_kl, kdct_family};
use covdiff_core::gaussian::DctGaussian;
use covdiff_core::gff::Gff;
use covdiff_core::schedule::{Linear, Schedule, ScheduleTable};
use covdiff_model::backends::Cpu;
use covdiff_model::covariance::{AnyCovariance, Covariance, KDct, LowRank};
use covdiff_model::diffusion::elbo::{kl_isotropic_vs_cov, lanczos_logdet_trace_inverse, lanczos_quadratic_inverse};
use covdiff_model::diffusion::train::{ema_update, materialize};
use covdiff_model::diffusion::StepLosses;
use covdiff_model::diffusion::{Decoder, Denoiser, ForwardNoise, GffOperator, LogDet, Settings, Stage, Trainer};
use covdiff_model::image::{CovarianceHeadsConfig, EpsStage, GaussianDenoiser, HeadKind, HeadObjective, HeadStage};
use covdiff_model::objectives::npr;
use covdiff_model::spatial::SpatialBasis;
use covdiff_model::unet::UNetConfig;
use nalgebra::{DMatrix, DVector};
use std::sync::Arc;

type B = Cpu;
type AD = burn::backend::Autodiff<Cpu>;

fn table() -> ScheduleTable {
    Linear::default().table()
}

#[test]
fn gff_operator_matches_the_fft_filter() {
    let dev = Default::default();
    for (d, gamma) in [(6, 1.0), (8, 2.0), (7, 0.5)] {
        let gff = Gff::new(d, gamma).unwrap();
        let op = GffOperator::<B>::sqrt_of(&gff, &dev);
        let mut rng = Rand::new(d as u64);
        let v = rng.normal(2 * d * d, 1.0);
        let got = values(op.apply(tensor::<B, 4>(&v, [2, 1, d, d], &dev)));
        for k in 0..2 {
            let want = gff.sqrt_apply(&v[k * d * d..(k + 1) * d * d]);
            let err = common::rel_err(&got[k * d * d..(k + 1) * d * d], &want);
            // f32 matmuls over d terms: 1e-5 relative.
            assert!(err < 1e-5, "d={d} gamma={gamma}: {err}");
        }
    }
}

/// Exact `E_t` of the Gaussian truth, dense.
fn exact_cov(g: &DctGaussian, abar: f64) -> DMatrix<f64> {
    g.eps_cov_dense(abar)
}

fn rel_frobenius(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    (a - b).norm() / b.norm()
}

#[test]
fn npr_trained_kdct_heads_recover_the_exact_posterior_covariance() {
    // Grey 8 x 8 Gaussian data, fixed t; heads read constant features, so they learn one E.
    let dev = Default::default();
    let d = 8;
    let g = DctGaussian::power_law(&[1.0], 1, d, 4.0, 1.0).unwrap();
    let table = table();
    let t = 150;
    let abar = table.abar(t);
    let oracle = GaussianDenoiser::<B>::new(g.spectrum(), d, &table, &dev);
    let config = CovarianceHeadsConfig::new(HeadKind::KDct, 1, d, 8, 4).with_hidden(32).with_floor(1e-5);
    let mut heads = config.init::<AD>(&dev);
    let mut optim = AdamConfig::new().init();
    let mut rng = Rand::new(11);
    let batch = 64;
    for step in 0..600 {
        let mut x0 = Vec::with_capacity(batch * d * d);
        for _ in 0..batch {
            x0.extend(g.sample_x0(&mut rng.0));
        }
        let eps = rng.normal(batch * d * d, 1.0);
        let xt: Vec<f64> = x0.iter().zip(&eps).map(|(x, e)| abar.sqrt() * x + (1.0 - abar).sqrt() * e).collect();
        let xt = tensor::<B, 4>(&xt, [batch, 1, d, d], &dev);
        let (eps_hat, _) = oracle.predict(xt, t, false);
        let mid = Tensor::<AD, 4>::ones([batch, 4, 1, 1], &dev);
        let last = Tensor::<AD, 4>::ones([batch, 8, d, d], &dev);
        let cov = heads.forward(mid, last);
        let loss = npr(&cov, tensor::<AD, 4>(&eps, [batch, 1, d, d], &dev), Tensor::from_inner(eps_hat)).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &heads);
        let lr = if step < 400 { 1e-2 } else { 1e-3 };
        heads = optim.step(lr, heads, grads);
    }
    let heads = heads.valid();
    let cov = heads.forward(Tensor::ones([1, 4, 1, 1], &dev), Tensor::ones([1, 8, d, d], &dev));
    let learnt = DMatrix::from_row_slice(d * d, d * d, &values(cov.to_dense()));
    let err = rel_frobenius(&learnt, &exact_cov(&g, abar));
    eprintln!("NPR K-DCT heads: relative Frobenius error {err:.4}");
    // SGD on 38k draws of a rank-64 target: 5% relative Frobenius error.
    assert!(err < 0.05, "NPR K-DCT heads: relative Frobenius error {err}");
}

/// A full covariance `diag(floor) + R R^T` with a free `R`: no head architecture in the way.
#[derive(burn::module::Module, Debug)]
struct FreeFactor<B: Backend> {
    r: burn::module::Param<Tensor<B, 3>>,
}

impl<B: Backend> FreeFactor<B> {
    fn covariance(&self, batch: usize, d: usize) -> AnyCovariance<B> {
        let n = d * d;
        let r = self.r.val().expand([batch, n, n]);
        AnyCovariance::LowRank(LowRank::new(Tensor::full([batch, 1, d, d], 1e-4, &r.device()), r))
    }
}

#[test]
fn ocm_training_under_gff_noise_recovers_the_whitened_posterior_covariance() {
    // NI-DDPM: grey 4 x 4 Gaussian data under GFF forward noise with the exact (linear)
    // eps-network. A free full covariance trained by OCM (probes along Sigma^1/2 v) must
    // reach the whitened E_t = I - bbar Sigma^1/2 Cov(x_t)^-1 Sigma^1/2 (dense truth), far from
    // the white-noise target I - sqrt(bbar) J that probing along v would give.
    use common::truth::{gff_sqrt, DenseDenoiser, Truth};
    use covdiff_model::image::train::whitened_jvp;
    use covdiff_model::objectives::{ocm, rademacher};
    let dev = Default::default();
    let (d, n) = (4, 16);
    let gff = Gff::new(d, 1.0).unwrap();
    let g = DctGaussian::power_law(&[1.0], 1, d, 2.0, 1.0).unwrap();
    let truth = Truth { c: g.prior_dense(), sh: gff_sqrt(&gff) };
    let abar = 0.3;
    let exact = DenseDenoiser { truth: truth.clone(), abar: vec![abar], d };
    let noise = ForwardNoise::Gff(GffOperator::<B>::sqrt_of(&gff, &dev));
    let want = truth.eps_cov(abar);
    let j = truth.eps_map(abar);
    let white = DMatrix::identity(n, n) - (&j + j.transpose()) * (0.5 * (1.0 - abar).sqrt());
    let apart = rel_frobenius(&white, &want);
    assert!(apart > 0.3, "the test must separate the two targets, {apart}");
    // (NPR needs no change under GFF: it regresses eps eps^T - eps_hat eps_hat^T, both white.)
    let init = common::Rand::new(3).normal(n * n, 0.3);
    let r = tensor::<AD, 3>(&init, [1, n, n], &dev).require_grad();
    let mut model = FreeFactor::<AD> { r: burn::module::Param::from_tensor(r) };
    let mut optim = AdamConfig::new().init::<AD, FreeFactor<AD>>();
    let mut rng = Rand::new(12);
    let batch = 64;
    for step in 0..1500 {
        let mut x0 = Vec::with_capacity(batch * n);
        for _ in 0..batch {
            x0.extend(g.sample_x0(&mut rng.0));
        }
        let eps = tensor::<B, 4>(&rng.normal(batch * n, 1.0), [batch, 1, d, d], &dev);
        let x_t =
            tensor::<B, 4>(&x0, [batch, 1, d, d], &dev) * abar.sqrt() + noise.sqrt_apply(eps) * (1.0 - abar).sqrt();
        let v = rademacher::<B>([batch, 1, d, d], &dev);
        let jv = whitened_jvp(|x| exact.predict(x, 0, false).0, x_t, v.clone(), &noise, 1e-2) * (1.0 - abar).sqrt();
        let loss = ocm(&model.covariance(batch, d), Tensor::from_inner(v), Tensor::from_inner(jv), 1.0).mean();
        let grads = GradientsParams::from_grads::<AD, FreeFactor<AD>>(loss.backward(), &model);
        let lr = if step < 600 {
            1e-2
        } else if step < 1000 {
            3e-3
        } else {
            5e-4
        };
        model = optim.step(lr, model, grads);
    }
    let learnt = DMatrix::from_row_slice(n, n, &values(model.covariance(1, d).to_dense()));
    let err = rel_frobenius(&learnt, &want);
    eprintln!("OCM under GFF: relative Frobenius error {err:.5} (white-noise target {apart:.4} away)");
    // OCM's gradient vanishes at its optimum when J is constant: the fixed point is exact up to f32.
    assert!(err < 0.01, "OCM under GFF: relative Frobenius error {err}");
}

fn random_kdct(c: usize, d: usize, b: usize, seed: u64) -> (KDct<B>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let dev = Default::default();
    let mut r = Rand::new(seed);
    let e = r.uniform(b * c * d * d, 0.05, 0.5);
    let l = r.normal(b * c * c, 0.6);
    let lam = r.uniform(b * d * d, 0.01, 2.0);
    let cov = KDct::new(
        tensor(&e, [b, c, d, d], &dev),
        tensor(&l, [b, c, c], &dev),
        tensor(&lam, [b, d, d], &dev),
        SpatialBasis::dct(d, &dev),
    );
    (cov, e, l, lam)
}

#[test]
fn kl_by_cholesky_and_by_lanczos_match_the_dense_formula() {
    let dev = Default::default();
    covdiff_model::normals::seed::<B>(&dev, 3);
    for (c, d) in [(1, 4), (3, 4)] {
        let n = c * d * d;
        let b = 2;
        let (cov, e, l, lam) = random_kdct(c, d, b, 17 + c as u64);
        let (shift, scale) = (0.02, 0.7);
        let sigma = AnyCovariance::KDct(cov.shift_scale(shift, scale));
        let mut r = Rand::new(99);
        let delta = r.normal(b * n, 0.3);
        let v = 0.05;
        let basis = dct2_matrix(d);
        let want: Vec<f64> = (0..b)
            .map(|i| {
                let s = kdct_family(
                    &e[i * n..(i + 1) * n],
                    &l[i * c * c..(i + 1) * c * c],
                    &lam[i * d * d..(i + 1) * d * d],
                    &basis,
                    c,
                ) * scale
                    + DMatrix::identity(n, n) * shift;
                gaussian_kl(&vec![0.0; n], &(DMatrix::identity(n, n) * v), &delta[i * n..(i + 1) * n], &s)
            })
            .collect();
        let dt = tensor::<B, 4>(&delta, [b, c, d, d], &dev);
        let exact = kl_isotropic_vs_cov(v, dt.clone(), &sigma, LogDet::Exact).unwrap();
        let probes = 300;
        let slq = kl_isotropic_vs_cov(v, dt, &sigma, LogDet::Lanczos { probes, steps: n.min(24) }).unwrap();
        for i in 0..b {
            // Cholesky in f64 of an f32 dense matrix: 1e-4 relative.
            assert!((exact[i] - want[i]).abs() < 1e-4 * want[i].abs(), "C={c}: {} vs {}", exact[i], want[i]);
            // Hutchinson over 300 Rademacher probes: the traces carry ~1-2% noise at this n.
            assert!((slq[i] - want[i]).abs() < 0.03 * want[i].abs(), "C={c}: Lanczos {} vs {}", slq[i], want[i]);
            eprintln!("C={c}: dense {:.3}, Cholesky {:.3}, Lanczos {:.3}", want[i], exact[i], slq[i]);
        }
    }
}

/// Each term of Eq. 42 against dense matrices in pixel space (docs/maths.md's formulas), with the
/// same white draws `z` for every `x_t = sqrt(abar) x_0 + sqrt(bbar) Sigma^1/2 z`: the prior
/// `KL(N(sqrt(abar_T) x_0, bbar_T Sigma) || N(0, Sigma))`, the transitions
/// `KL(N(mu_q, btilde Sigma) || N(mu_p, Sigma^1/2 W Sigma^1/2))` with `W` the step covariance of the
/// whitened chain, and the decoder of the pixels with covariance `Sigma^1/2 W_1 Sigma^1/2`.
fn check_elbo_against_dense<D: Denoiser<B>>(
    model: &D,
    truth: &common::truth::Truth,
    noise: &ForwardNoise<B>,
    label: &str,
    decoders: &[Decoder],
) {
    use covdiff_core::dense::gaussian_log_density;
    use covdiff_core::likelihood::discretized_gaussian_nll;
    use covdiff_core::trajectory::{Spacing, Trajectory};
    use covdiff_model::diffusion::{Elbo, StepVariance};
    let dev = Default::default();
    let (d, n, b) = (4, 16, 3);
    let table = table();
    let sh = &truth.sh;
    let sigma = sh * sh;
    let mut r = Rand::new(4);
    // 8-bit images in [-1, 1].
    let x0: Vec<f64> =
        r.normal(b * n, 0.5).iter().map(|x| ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round() / 127.5 - 1.0).collect();
    let trajectory = Trajectory::new(1000, 4, Spacing::Even).unwrap();
    let zs: Vec<Vec<f64>> = trajectory.steps().iter().map(|_| r.normal(b * n, 1.0)).collect();
    for &decoder in decoders {
        for variance in [StepVariance::Learned, StepVariance::Small] {
            let elbo = Elbo { table: &table, trajectory: &trajectory, variance, logdet: LogDet::Exact, decoder, noise };
            let mut k = 0;
            let got = elbo
                .terms_with(model, tensor::<B, 4>(&x0, [b, 1, d, d], &dev), |shape| {
                    k += 1;
                    tensor::<B, 4>(&zs[k - 1], shape, &dev)
                })
                .unwrap();
            for i in 0..b {
                let x = DVector::from_column_slice(&x0[i * n..(i + 1) * n]);
                let id = DMatrix::<f64>::identity(n, n);
                let ab = table.abar(1000);
                let prior = gaussian_kl((&x * ab.sqrt()).as_slice(), &(&sigma * (1.0 - ab)), &[0.0; 16], &sigma);
                let (mut transitions, mut nll) = (0.0, 0.0);
                for (j, (t, s)) in trajectory.steps().into_iter().enumerate() {
                    let (ab_t, ab_s) = (table.abar(t), table.abar(s));
                    let (bb_t, bb_s, a) = (1.0 - ab_t, 1.0 - ab_s, ab_t / ab_s);
                    let z = DVector::from_column_slice(&zs[j][i * n..(i + 1) * n]);
                    let xt = &x * ab_t.sqrt() + sh * z * bb_t.sqrt();
                    let eps = truth.eps_map(ab_t) * &xt;
                    let mean_p = (&xt - sh * eps * ((1.0 - a) / bb_t.sqrt())) / a.sqrt();
                    let btilde = bb_s * (1.0 - a) / bb_t;
                    let w = match variance {
                        StepVariance::Learned => &id * btilde + truth.eps_cov(ab_t) * ((1.0 - a).powi(2) / (a * bb_t)),
                        // beta-tilde; at s = 0 the large value 1 - a (Ho et al.).
                        _ => &id * if s == 0 { 1.0 - a } else { btilde },
                    };
                    let cov = sh * w * sh;
                    if s == 0 {
                        nll = match decoder {
                            Decoder::Discretized8Bit => {
                                let std: Vec<f64> = cov.diagonal().iter().map(|v| v.sqrt()).collect();
                                discretized_gaussian_nll(x.as_slice(), mean_p.as_slice(), &std)
                            }
                            Decoder::Gaussian => -gaussian_log_density(x.as_slice(), mean_p.as_slice(), &cov),
                        };
                    } else {
                        let mean_q = (&x * (ab_s.sqrt() * (1.0 - a)) + &xt * (a.sqrt() * bb_s)) / bb_t;
                        transitions += gaussian_kl(mean_q.as_slice(), &(&sigma * btilde), mean_p.as_slice(), &cov);
                    }
                }
                let close = |got: f64, want: f64, what: &str| {
                    // f32 network, filters and operators against f64: 1e-3 relative.
                    assert!(
                        (got - want).abs() < 1e-3 * want.abs().max(1.0),
                        "{label} {decoder:?} {variance:?} {what}: {got} vs {want}"
                    );
                };
                close(got.prior[i], prior, "prior");
                close(got.transitions[i], transitions, "transitions");
                close(got.decoder[i], nll, "decoder");
            }
        }
    }
}

#[test]
fn elbo_terms_match_a_dense_evaluation() {
    // White noise: the exact K-DCT model of Gaussian grey 4x4 data.
    let dev = Default::default();
    let (d, n) = (4, 16);
    let g = DctGaussian::power_law(&[1.0], 1, d, 2.0, 1.0).unwrap();
    let model = GaussianDenoiser::<B>::new(g.spectrum(), d, &table(), &dev);
    let truth = common::truth::Truth { c: g.prior_dense(), sh: DMatrix::identity(n, n) };
    check_elbo_against_dense(&model, &truth, &ForwardNoise::White, "white", &[Decoder::Discretized8Bit]);
}

/// Grey `d x d` Gaussian data (a DCT power law) under GFF noise of power 1: the dense truth, its
/// exact denoiser, and the forward noise.
fn gff_gaussian(d: usize) -> (common::truth::Truth, common::truth::DenseDenoiser, ForwardNoise<B>) {
    use common::truth::{gff_sqrt, DenseDenoiser, Truth};
    let gff = Gff::new(d, 1.0).unwrap();
    let g = DctGaussian::power_law(&[1.0], 1, d, 2.0, 1.0).unwrap();
    let truth = Truth { c: g.prior_dense(), sh: gff_sqrt(&gff) };
    let t = table();
    let model = DenseDenoiser { truth: truth.clone(), abar: (0..=t.steps()).map(|k| t.abar(k)).collect(), d };
    (truth, model, ForwardNoise::Gff(GffOperator::sqrt_of(&gff, &Default::default())))
}

#[test]
fn ni_ddpm_elbo_terms_match_a_dense_evaluation_in_pixel_space() {
    // GFF noise (#13 part 3): the terms are taken in whitened coordinates, the decoder in pixels
    // (the 8-bit one with diag(Sigma^1/2 W Sigma^1/2), the Gaussian one with log|det Sigma^1/2| from
    // the circulant spectrum); the reference works in pixels throughout, with a dense Sigma^1/2.
    let (truth, model, noise) = gff_gaussian(4);
    check_elbo_against_dense(&model, &truth, &noise, "gff", &[Decoder::Discretized8Bit, Decoder::Gaussian]);
}

#[test]
fn ni_ddpm_elbo_with_exact_posteriors_equals_entropy_plus_prior_gap() {
    // The identity of the toy 2D test, under GFF noise: with the exact reverse conditionals and the
    // Gaussian decoder, E[-ELBO] = H(x_0) + KL(q(x_T) || N(0, Sigma)) for any trajectory, with
    // x_0 ~ N(0, C) and q(x_T) = N(0, abar_T C + bbar_T Sigma), all in pixel space (dense).
    use covdiff_core::dense::gaussian_kl;
    use covdiff_core::trajectory::{Spacing, Trajectory};
    use covdiff_model::diffusion::{Elbo, StepVariance};
    let dev = Default::default();
    let (d, n, m) = (4, 16, 20_000);
    let t = table();
    let (truth, model, noise) = gff_gaussian(d);
    let entropy = 0.5
        * (truth.c.clone().cholesky().unwrap().determinant().ln()
            + n as f64 * (1.0 + (2.0 * std::f64::consts::PI).ln()));
    let sigma = &truth.sh * &truth.sh;
    let big_t = t.steps();
    let gap = gaussian_kl(&[0.0; 16], &truth.marginal(t.abar(big_t)), &[0.0; 16], &sigma);
    let want = entropy + gap;
    // x_0 = chol(C) z, on the host.
    let l = truth.c.clone().cholesky().unwrap().l();
    let z = Rand::new(11).normal(m * n, 1.0);
    let x0: Vec<f64> =
        (0..m).flat_map(|i| (&l * DVector::from_column_slice(&z[i * n..(i + 1) * n])).data.as_vec().clone()).collect();
    let x0 = tensor::<B, 4>(&x0, [m, 1, d, d], &dev);
    covdiff_model::normals::seed::<B>(&dev, 12);
    for k in [1, 5] {
        let trajectory = Trajectory::new(big_t, k, Spacing::Even).unwrap();
        let elbo = Elbo {
            table: &t,
            trajectory: &trajectory,
            variance: StepVariance::Learned,
            logdet: LogDet::Exact,
            decoder: Decoder::Gaussian,
            noise: &noise,
        };
        let total = elbo.terms(&model, x0.clone()).unwrap().total();
        let mean = total.iter().sum::<f64>() / m as f64;
        let sd = (total.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m as f64).sqrt();
        // 4 standard errors, plus f32 arithmetic on O(10) terms.
        let tol = 4.0 * sd / (m as f64).sqrt() + 1e-2;
        eprintln!("K = {k}: E[-ELBO] {mean:.4} vs H + gap {want:.4} (tol {tol:.4})");
        assert!((mean - want).abs() < tol, "K = {k}: E[-ELBO] {mean} vs H + gap {want} (tol {tol})");
    }
}

/// `f(S)` of a symmetric positive definite matrix, by its eigen-decomposition.
fn matrix_function(s: &DMatrix<f64>, f: impl Fn(f64) -> f64) -> DMatrix<f64> {
    let eig = s.clone().symmetric_eigen();
    &eig.eigenvectors * DMatrix::from_diagonal(&eig.eigenvalues.map(f)) * eig.eigenvectors.transpose()
}

#[test]
fn lanczos_log_determinant_trace_and_quadratic_form_each_match_dense() {
    let dev = Default::default();
    covdiff_model::normals::seed::<B>(&dev, 8);
    for (c, d) in [(1, 4), (3, 4)] {
        let n = c * d * d;
        let b = 2;
        let (cov, e, l, lam) = random_kdct(c, d, b, 31 + c as u64);
        let sigma = AnyCovariance::KDct(cov.shift_scale(0.02, 0.7));
        let delta = Rand::new(7).normal(b * n, 0.3);
        let probes = 200;
        let steps = n.min(24);
        let (logdet, trace_inv) = lanczos_logdet_trace_inverse(&sigma, probes, steps);
        let d2: Vec<f64> = (0..b).map(|i| delta[i * n..(i + 1) * n].iter().map(|x| x * x).sum()).collect();
        let quad = lanczos_quadratic_inverse(&sigma, tensor::<B, 4>(&delta, [b, c, d, d], &dev), steps, &d2);
        for i in 0..b {
            let s = kdct_family(
                &e[i * n..(i + 1) * n],
                &l[i * c * c..(i + 1) * c * c],
                &lam[i * d * d..(i + 1) * d * d],
                &dct2_matrix(d),
                c,
            ) * 0.7
                + DMatrix::identity(n, n) * 0.02;
            // Hutchinson with Rademacher probes: Var[xi^T A xi] = 2 (||A||_F^2 - sum_i A_ii^2).
            let hutchinson_sd =
                |a: &DMatrix<f64>| (2.0 * (a.norm_squared() - a.diagonal().norm_squared()) / probes as f64).sqrt();
            let log_s = matrix_function(&s, f64::ln);
            let inv_s = matrix_function(&s, |x| 1.0 / x);
            let (want_ld, want_tr) = (log_s.trace(), inv_s.trace());
            let (tol_ld, tol_tr) =
                (4.0 * hutchinson_sd(&log_s) + 1e-3 * want_ld.abs(), 4.0 * hutchinson_sd(&inv_s) + 1e-3 * want_tr);
            eprintln!(
                "C={c}: logdet {:.3} vs {want_ld:.3} (tol {tol_ld:.3}), tr inv {:.3} vs {want_tr:.3} (tol {tol_tr:.3})",
                logdet[i], trace_inv[i]
            );
            assert!((logdet[i] - want_ld).abs() < tol_ld, "C={c}: logdet {} vs {want_ld}", logdet[i]);
            assert!((trace_inv[i] - want_tr).abs() < tol_tr, "C={c}: tr inv {} vs {want_tr}", trace_inv[i]);
            let dv = DVector::from_column_slice(&delta[i * n..(i + 1) * n]);
            let want_q = (dv.transpose() * &inv_s * &dv)[(0, 0)];
            // Gauss quadrature from delta: exact once the Krylov space is exhausted; f32 products.
            assert!((quad[i] - want_q).abs() < 2e-3 * want_q, "C={c}: quadratic {} vs {want_q}", quad[i]);
        }
    }
}

fn toy_images(n: usize, d: usize, seed: u64) -> ImageSet {
    let g = DctGaussian::power_law(&[1.0], 1, d, 2.0, 1.0).unwrap();
    let mut r = Rand::new(seed);
    let mut pixels = Vec::with_capacity(n * d * d);
    for _ in 0..n {
        pixels.extend(g.sample_x0(&mut r.0).into_iter().map(|x| (x * 0.4).clamp(-1.0, 1.0) as f32));
    }
    ImageSet { channels: 1, size: d, pixels, labels: None }
}

fn trainer<S: Stage<AD>>(stage: S, model: S::Model, data: &Arc<ImageSet>, settings: &Settings) -> Trainer<AD, S> {
    let data: Arc<ImageSet> = data.clone();
    Trainer::new(stage, model, data, table(), ForwardNoise::White, settings.clone(), &Default::default()).unwrap()
}

/// The small UNet of the training tests, on 8 x 8 images.
fn small_unet() -> UNetConfig {
    UNetConfig::new(vec![8, 8], vec![false, false]).with_norm_num_groups(4).with_layers_per_block(1)
}

fn loss(t: StepLosses<B>) -> f64 {
    values(t.total)[0]
}

#[test]
fn both_stages_resume_exactly_from_a_checkpoint() {
    let dev = Default::default();
    let d = 8;
    let data = Arc::new(toy_images(64, d, 1));
    let unet_cfg = small_unet();
    let settings = Settings { batch: 4, warmup: 2, ..Settings::default() };
    // One initial model, materialised and cloned: the backend's generator is shared with tests
    // running in parallel, and a clone of a lazily initialised parameter would draw its own values.
    let init = materialize(unet_cfg.init::<AD>(&dev));
    let new_eps = || trainer(EpsStage, init.clone(), &data, &settings);
    let mut straight = new_eps();
    let losses: Vec<f64> = (0..4).map(|_| loss(straight.step())).collect();
    let mut first = new_eps();
    first.step();
    first.step();
    let mut resumed = new_eps();
    resumed.restore(first.checkpoint());
    let tail: Vec<f64> = (0..2).map(|_| loss(resumed.step())).collect();
    assert_eq!(tail, losses[2..].to_vec(), "stage 1 resumed differently");

    let unet = straight.ema().clone();
    for objective in [HeadObjective::Npr, HeadObjective::NprResidual, HeadObjective::Ocm { h: 1e-2 }, HeadObjective::Sn]
    {
        let kind = if objective == HeadObjective::Sn { HeadKind::Diagonal } else { HeadKind::KDct };
        let heads_cfg = CovarianceHeadsConfig::for_unet(kind, &unet_cfg, d)
            .with_hidden(16)
            .with_second_moment(objective == HeadObjective::Sn);
        let heads_init = materialize(heads_cfg.init::<AD>(&dev));
        let new_heads = || {
            let stage = HeadStage::<AD> { unet: unet.clone(), objective };
            trainer(stage, heads_init.clone(), &data, &settings)
        };
        let mut straight = new_heads();
        let losses: Vec<f64> = (0..3).map(|_| loss(straight.step())).collect();
        assert!(losses.iter().all(|l| l.is_finite()), "{objective}: {losses:?}");
        let mut first = new_heads();
        first.step();
        let mut resumed = new_heads();
        resumed.restore(first.checkpoint());
        let tail: Vec<f64> = (0..2).map(|_| loss(resumed.step())).collect();
        assert_eq!(tail, losses[1..].to_vec(), "{objective}: stage 2 resumed differently");
    }
    // SN on non-diagonal heads is refused before anything runs, with a typed error.
    let kdct = CovarianceHeadsConfig::for_unet(HeadKind::KDct, &unet_cfg, d).with_hidden(16).init::<AD>(&dev);
    let stage = HeadStage::<AD> { unet, objective: HeadObjective::Sn };
    let refused = Trainer::new(stage, kdct, data.clone(), table(), ForwardNoise::White, settings, &dev);
    assert_eq!(
        refused.err(),
        Some(covdiff_model::diffusion::StageError::Incompatible(
            "SN trains diagonal heads only, not kdct heads".into()
        ))
    );
}

#[test]
fn data_parallel_steps_equal_single_device_steps() {
    // Two "devices" (both the CPU here: the arithmetic of the split, not the speed-up, is tested).
    let dev = Default::default();
    let d = 8;
    let data = Arc::new(toy_images(32, d, 2));
    let settings = Settings { batch: 6, warmup: 1, ..Settings::default() };
    let init = materialize(small_unet().init::<AD>(&dev));
    let run = |parallel: bool| {
        let t = trainer(EpsStage, init.clone(), &data, &settings);
        let mut t = if parallel { t.with_devices(&[dev]) } else { t };
        (0..3).map(|_| loss(t.step())).collect::<Vec<f64>>()
    };
    let (one, two) = (run(false), run(true));
    for (a, b) in one.iter().zip(&two) {
        // Same gradients up to the order of f32 sums.
        assert!((a - b).abs() < 1e-5 * a.abs(), "single {one:?} vs split {two:?}");
    }
}

#[test]
fn every_head_kind_gives_a_symmetric_positive_definite_covariance() {
    // Random features through freshly initialised heads of each kind (d = 8, C = 3): the dense
    // matrix is symmetric with eigenvalues at least the floor, and Free/FreeDiag start as K-DCT
    // (their bases are initialised to F and to all-ones scales).
    let dev = Default::default();
    let (c, d, b) = (3, 8, 2);
    let mid = Tensor::<B, 4>::random([b, 4, 2, 2], burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
    let last = Tensor::<B, 4>::random([b, 8, d, d], burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
    let n = c * d * d;
    for kind in [HeadKind::Diagonal, HeadKind::LowRank { rank: 3 }, HeadKind::KDct, HeadKind::Free, HeadKind::FreeDiag]
    {
        let heads = CovarianceHeadsConfig::new(kind, c, d, 8, 16).with_hidden(16).init::<B>(&dev);
        let cov = heads.forward(mid.clone(), last.clone());
        assert_eq!(cov.shape(), [b, c, d, d], "{kind}");
        let v = values(cov.to_dense());
        for i in 0..b {
            let m = common::matrix(&v, i, n);
            let asym = (&m - m.transpose()).abs().max();
            assert!(asym < 1e-5 * m.abs().max(), "{kind}: not symmetric ({asym})");
            let min = m.symmetric_eigenvalues().min();
            assert!(min > 0.9e-4, "{kind}: smallest eigenvalue {min} below the floor");
        }
        if let AnyCovariance::KDct(k) = &cov {
            let dct = KDct::new(k.e.clone(), k.l.clone(), k.lam.clone(), SpatialBasis::dct(d, &dev));
            let err = common::rel_err(&v, &values(dct.to_dense()));
            assert!(err < 1e-5, "{kind} does not start as K-DCT ({err})");
        }
    }
}

#[test]
fn ema_update_blends_every_parameter() {
    // `ema <- rate ema + (1 - rate) model`, parameter by parameter, against the formula on raw values.
    let dev = Default::default();
    let a = materialize(burn::nn::LinearConfig::new(5, 3).init::<B>(&dev));
    let b = materialize(burn::nn::LinearConfig::new(5, 3).init::<B>(&dev));
    let ema = ema_update(a.clone(), &b, 0.3);
    let (wa, wb, we) = (values(a.weight.val()), values(b.weight.val()), values(ema.weight.val()));
    let want: Vec<f64> = wa.iter().zip(&wb).map(|(x, y)| 0.3 * x + 0.7 * y).collect();
    assert!(common::rel_err(&we, &want) < 1e-6);
    let bias = |m: &burn::nn::Linear<B>| values(m.bias.as_ref().unwrap().val());
    let want: Vec<f64> = bias(&a).iter().zip(&bias(&b)).map(|(x, y)| 0.3 * x + 0.7 * y).collect();
    assert!(common::rel_err(&bias(&ema), &want) < 1e-6);
    assert!(common::rel_err(&we, &wa) > 1e-3, "the two initialisations should differ");
}

/// The diagonal branch of the transition KL (exact for every log-determinant method) against
/// covdiff-core's dense Gaussian KL.
#[test]
fn diagonal_transition_kl_matches_the_dense_kl() {
    use covdiff_model::covariance::Diagonal;
    let dev = Default::default();
    let (b, c, d) = (2, 3, 4);
    let n = c * d * d;
    let mut rng = Rand::new(17);
    let s = rng.uniform(b * n, 0.05, 2.0);
    let delta = rng.normal(b * n, 0.7);
    let v = 0.3;
    let sigma = AnyCovariance::Diagonal(Diagonal::new(tensor::<B, 4>(&s, [b, c, d, d], &dev)));
    for method in [LogDet::Exact, LogDet::Lanczos { probes: 2, steps: 4 }] {
        let got = kl_isotropic_vs_cov(v, tensor::<B, 4>(&delta, [b, c, d, d], &dev), &sigma, method).unwrap();
        for i in 0..b {
            let p = DMatrix::from_diagonal(&DVector::from_column_slice(&s[i * n..(i + 1) * n]));
            let want = gaussian_kl(&vec![0.0; n], &(DMatrix::identity(n, n) * v), &delta[i * n..(i + 1) * n], &p);
            assert!((got[i] - want).abs() < 1e-4 * want.abs(), "{method:?}: {} vs {want}", got[i]);
        }
    }
}

#[test]
fn smld_stage_trains_a_noise_conditional_unet() {
    // NI-SMLD's stage (#13 part 2, Eq. 100): the levels on the host and on the device agree, and a
    // small UNet's loss falls well below that of predicting 0 (E|eps|^2 / n = 1): at the large
    // levels eps is nearly x_i / sigma_i.
    use covdiff_core::schedule::Linear;
    use covdiff_model::diffusion::NoiseLevels;
    use covdiff_model::image::SmldStage;
    let dev = Default::default();
    let levels = NoiseLevels::geometric(2.0, 0.02, 10).unwrap();
    let t: Vec<f64> = (1..=10).map(|i| i as f64).collect();
    let on_device = values(levels.sigma_of(tensor::<B, 1>(&t, [10], &dev)));
    for (i, s) in on_device.iter().enumerate() {
        assert!((s - levels.sigma(i + 1)).abs() < 1e-5 * s, "level {}: {s} vs {}", i + 1, levels.sigma(i + 1));
    }
    assert!((levels.sigma(1) - 2.0).abs() < 1e-12 && (levels.sigma(10) - 0.02).abs() < 1e-12);
    let data = Arc::new(toy_images(256, 8, 3));
    let settings = Settings { batch: 16, lr: 2e-3, warmup: 1, ..Settings::default() };
    // The trainer's steps are the levels 1..=L.
    let table = Linear { steps: levels.len(), ..Default::default() }.table();
    let model = materialize(small_unet().init::<AD>(&dev));
    let mut trainer =
        Trainer::new(SmldStage { levels }, model, data, table, ForwardNoise::White, settings, &dev).unwrap();
    let losses: Vec<f64> = (0..150).map(|_| loss(trainer.step())).collect();
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let (first, last) = (mean(&losses[..20]), mean(&losses[130..]));
    eprintln!("SMLD loss {first:.3} -> {last:.3}");
    // Measured 0.77 -> 0.45 (seeded batches); the margins leave room for other backends' rounding.
    assert!(last < 0.75 * first && last < 0.6, "SMLD loss {first:.3} -> {last:.3}");
}
