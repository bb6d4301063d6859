//! The samplers against exact covariances. With Gaussian data and the exact
//! (linear) denoiser, every sampler here is a linear-Gaussian chain, so the
//! covariance of its output is found densely by propagating
//! `S <- A S A^T + Q` through the steps, with coefficients written out here
//! from docs/maths.md ("Skip-step posterior"), not taken from the code under test.
//! The sample covariance of 40k draws must match it, for white noise (DDPM)
//! and GFF noise (NI-DDPM), for the penultimate-step noise rules, and DDIM.

mod common;

use burn::tensor::Tensor;
use common::truth::{gff_sqrt, DenseDenoiser, Truth};
use common::values;
use covdiff_core::dense::second_moment;
use covdiff_core::gaussian::DctGaussian;
use covdiff_core::gff::Gff;
use covdiff_core::schedule::{Linear, Schedule, ScheduleTable};
use covdiff_core::trajectory::{Spacing, Trajectory};
use covdiff_model::backends::Cpu;
use covdiff_model::covariance::{AnyCovariance, Covariance};
use covdiff_model::diffusion::{
    initial_noise, Denoiser, ForwardNoise, GffOperator, NoiseClip, SamplerConfig, SamplerError, SamplerKind,
    StepVariance,
};
use covdiff_model::image::GaussianDenoiser;
use nalgebra::DMatrix;
use std::sync::Mutex;

type B = Cpu;

const D: usize = 4;
const N: usize = D * D;
const DRAWS: usize = 40_000;
static SEEDED: Mutex<()> = Mutex::new(());
/// Monte Carlo error of a 16 x 16 second moment from 40k draws: about 1-2% relative Frobenius
/// (`sqrt((n + 1) / N)` for a near-identity output).
const TOL: f64 = 0.035;

/// What the reference chain does at each step.
#[derive(Clone, Copy, Debug)]
enum Chain {
    /// Skip-step DDPM; `clip` is the penultimate step's rule: `None` unclipped, `Some(bound)` the
    /// Eq. 41 scaling to per-pixel standard deviation `bound`, `Some(0)` no noise at all.
    Ddpm {
        variance: StepVariance,
        clip: Option<f64>,
    },
    Ddim {
        eta: f64,
    },
}

/// The covariance of the sampler's output, by dense propagation from `x_T ~ N(0, Sigma)`.
fn propagate(truth: &Truth, table: &ScheduleTable, trajectory: &Trajectory, chain: Chain) -> DMatrix<f64> {
    let id = DMatrix::<f64>::identity(N, N);
    let sigma = &truth.sh * &truth.sh;
    let mut cov = sigma.clone();
    let t1 = *trajectory.times().last().unwrap();
    for (t, s) in trajectory.steps() {
        let (ab_t, ab_s) = (table.abar(t), table.abar(s));
        let (bb_t, bb_s) = (1.0 - ab_t, 1.0 - ab_s);
        let a = ab_t / ab_s;
        let epsm = truth.eps_map(ab_t);
        // Tweedie: x0_hat = (x_t - sqrt(bbar_t) Sigma^1/2 eps_hat) / sqrt(abar_t).
        let x0m = (&id - &truth.sh * &epsm * bb_t.sqrt()) / ab_t.sqrt();
        let btilde = bb_s * (1.0 - a) / bb_t;
        let (map, noise) = match chain {
            Chain::Ddpm { variance, clip } => {
                // mu_s = (sqrt(abar_s)(1 - a) x0_hat + sqrt(a) bbar_s x_t) / bbar_t.
                let map = &x0m * (ab_s.sqrt() * (1.0 - a) / bb_t) + &id * (a.sqrt() * bb_s / bb_t);
                let mut w = match variance {
                    StepVariance::Large => &id * (1.0 - a),
                    StepVariance::Small => &id * btilde,
                    StepVariance::Learned => &id * btilde + truth.eps_cov(ab_t) * ((1.0 - a).powi(2) / (a * bb_t)),
                    // The model's matrix (here the exact E_t) as the step covariance itself.
                    StepVariance::Direct => truth.eps_cov(ab_t),
                };
                if s == 0 {
                    w.fill(0.0);
                } else if let (true, Some(bound)) = (s == t1, clip) {
                    // S^1/2 W S^1/2 with S = min(1, bound^2 / diag W) (Eq. 41).
                    let scale =
                        DMatrix::from_fn(N, N, |i, j| if i == j { (bound / w[(i, i)].sqrt()).min(1.0) } else { 0.0 });
                    w = &scale * w * &scale;
                }
                (map, &truth.sh * w * &truth.sh)
            }
            Chain::Ddim { eta } => {
                let sig2 = eta * eta * btilde;
                let map = &x0m * ab_s.sqrt() + &truth.sh * &epsm * (bb_s - sig2).max(0.0).sqrt();
                (map, &sigma * sig2)
            }
        };
        cov = &map * cov * map.transpose() + noise;
    }
    cov
}

fn sample(
    denoiser: &impl Denoiser<B>,
    noise: &ForwardNoise<B>,
    trajectory: &Trajectory,
    chain: Chain,
    rule: NoiseClip,
) -> DMatrix<f64> {
    let dev = Default::default();
    // The backend's generator is global: tests running side by side must not reseed it mid-chain.
    let _guard = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    covdiff_model::normals::seed::<B>(&dev, 21);
    let table = table();
    let x_t = initial_noise::<B>([DRAWS, 1, D, D], noise, &dev);
    let kind = match chain {
        Chain::Ddpm { variance, .. } => SamplerKind::Ddpm { variance },
        Chain::Ddim { eta } => SamplerKind::Ddim { eta },
    };
    let steps = trajectory.times().len();
    let config = SamplerConfig {
        kind,
        steps,
        spacing: Spacing::Even,
        lambda: 1.0,
        clip_x0: false,
        clip_noise: rule,
        final_noise: false,
    };
    let out = config.build(&table, noise.clone()).unwrap().run(denoiser, x_t).unwrap();
    second_moment(&values(out), N)
}

fn table() -> ScheduleTable {
    Linear::default().table()
}

fn rel_frobenius(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    (a - b).norm() / b.norm()
}

fn data() -> DctGaussian {
    DctGaussian::power_law(&[1.0], 1, D, 2.0, 1.0).unwrap()
}

fn white_truth() -> Truth {
    Truth { c: data().prior_dense(), sh: DMatrix::identity(N, N) }
}

fn check(label: &str, got: &DMatrix<f64>, want: &DMatrix<f64>) {
    let err = rel_frobenius(got, want);
    eprintln!("{label}: relative Frobenius error {err:.4}");
    assert!(err < TOL, "{label}: sample covariance misses the exact one by {err}");
}

#[test]
fn ddpm_samples_match_the_dense_chain_for_every_step_variance() {
    let dev = Default::default();
    let truth = white_truth();
    let exact = GaussianDenoiser::<B>::new(data().spectrum(), D, &table(), &dev);
    let tr = Trajectory::new(1000, 5, Spacing::Even).unwrap();
    for variance in StepVariance::ALL {
        let chain = Chain::Ddpm { variance, clip: None };
        let want = propagate(&truth, &table(), &tr, chain);
        check(&format!("{variance:?}"), &sample(&exact, &ForwardNoise::White, &tr, chain, NoiseClip::Noise), &want);
    }
    // With the exact covariance the chain is exact down to x_{t_1}; the final step returns the mean,
    // whose covariance is C - Cov[x0 | x_{t_1}] (law of total covariance).
    let t1 = *tr.times().last().unwrap();
    let ab = table().abar(t1);
    let post =
        (truth.c.clone().try_inverse().unwrap() + DMatrix::identity(N, N) * (ab / (1.0 - ab))).try_inverse().unwrap();
    let learned = propagate(&truth, &table(), &tr, Chain::Ddpm { variance: StepVariance::Learned, clip: None });
    assert!(rel_frobenius(&learned, &(&truth.c - post)) < 1e-3, "the exact chain should reach the data covariance");
}

#[test]
fn covariance_clipping_acts_on_the_penultimate_step_and_the_last_step_is_the_mean() {
    let dev = Default::default();
    let truth = white_truth();
    let exact = GaussianDenoiser::<B>::new(data().spectrum(), D, &table(), &dev);
    let tr = Trajectory::new(1000, 5, Spacing::Even).unwrap();
    let learned = |clip| Chain::Ddpm { variance: StepVariance::Learned, clip };
    // Eq. 41 at y = 2 (a per-pixel bound of 0.025, far below this step's standard deviations).
    let y = 2.0;
    let want = propagate(&truth, &table(), &tr, learned(Some(NoiseClip::bound(y))));
    let unclipped = propagate(&truth, &table(), &tr, learned(None));
    assert!(rel_frobenius(&want, &unclipped) > 0.1, "the test needs clipping that changes the covariance");
    check("clip-scale", &sample(&exact, &ForwardNoise::White, &tr, learned(None), NoiseClip::ClipScale { y }), &want);
    // clip-sample with a tiny bound removes the penultimate noise altogether.
    let none = propagate(&truth, &table(), &tr, learned(Some(0.0)));
    let rule = NoiseClip::ClipSample { y: 1e-4 };
    check("clip-sample, y -> 0", &sample(&exact, &ForwardNoise::White, &tr, learned(None), rule), &none);
    // A lone step to 0 is the mean E[x0 | x_T] whatever the rule.
    let one = Trajectory::new(1000, 1, Spacing::Even).unwrap();
    let mean_only = sample(&exact, &ForwardNoise::White, &one, learned(None), NoiseClip::Noise);
    let want = propagate(&truth, &table(), &one, learned(None));
    assert!(want.norm() < 0.01 * truth.c.norm(), "E[x0 | x_T] is close to 0");
    assert!((&mean_only - &want).norm() < 0.01 * truth.c.norm(), "K = 1 must return the mean");
}

#[test]
fn ddim_samples_match_the_dense_chain() {
    let dev = Default::default();
    let truth = white_truth();
    let exact = GaussianDenoiser::<B>::new(data().spectrum(), D, &table(), &dev);
    for (k, eta) in [(5, 0.0), (5, 1.0), (20, 0.0)] {
        let tr = Trajectory::new(1000, k, Spacing::Even).unwrap();
        let chain = Chain::Ddim { eta };
        let want = propagate(&truth, &table(), &tr, chain);
        check(
            &format!("DDIM K={k} eta={eta}"),
            &sample(&exact, &ForwardNoise::White, &tr, chain, NoiseClip::Noise),
            &want,
        );
    }
}

#[test]
fn ni_ddpm_samples_under_gff_noise_match_the_dense_chain() {
    let dev = Default::default();
    let gff = Gff::new(D, 1.0).unwrap();
    let truth = Truth { c: data().prior_dense(), sh: gff_sqrt(&gff) };
    let abar: Vec<f64> = (0..=1000).map(|t| table().abar(t)).collect();
    let exact = DenseDenoiser { truth: truth.clone(), abar, d: D };
    let noise = ForwardNoise::Gff(GffOperator::sqrt_of(&gff, &dev));
    let tr = Trajectory::new(1000, 5, Spacing::Even).unwrap();
    for variance in [StepVariance::Small, StepVariance::Learned] {
        let chain = Chain::Ddpm { variance, clip: None };
        let want = propagate(&truth, &table(), &tr, chain);
        check(&format!("NI-DDPM {variance:?}"), &sample(&exact, &noise, &tr, chain, NoiseClip::Noise), &want);
    }
    let chain = Chain::Ddim { eta: 0.0 };
    check("NI-DDIM", &sample(&exact, &noise, &tr, chain, NoiseClip::Noise), &propagate(&truth, &table(), &tr, chain));
    // The learned exact covariance reaches the data, white noise or not.
    let learned = propagate(&truth, &table(), &tr, Chain::Ddpm { variance: StepVariance::Learned, clip: None });
    assert!(rel_frobenius(&learned, &truth.c) < 0.01, "NI-DDPM with the exact covariance reaches C");
}

/// The exact eps of the Gaussian truth, without its covariance (like an eps-UNet alone).
struct EpsOnly(GaussianDenoiser<B>);

impl Denoiser<B> for EpsOnly {
    fn predict(&self, x: Tensor<B, 4>, t: usize, _: bool) -> (Tensor<B, 4>, Option<AnyCovariance<B>>) {
        (self.0.predict(x, t, false).0, None)
    }
}

#[test]
fn a_sampler_is_stepped_by_the_caller_and_its_config_round_trips() {
    let dev = Default::default();
    let exact = GaussianDenoiser::<B>::new(data().spectrum(), D, &table(), &dev);
    let config = SamplerConfig::ddpm(StepVariance::Learned, 4);
    // The config is data: JSON and back.
    let json = serde_json::to_string(&config).unwrap();
    assert!(json.contains(r#""kind":{"kind":"ddpm","variance":"learned"}"#), "{json}");
    assert_eq!(serde_json::from_str::<SamplerConfig>(&json).unwrap(), config);
    let short: SamplerConfig = serde_json::from_str(r#"{"kind": {"kind": "ddim", "eta": 0.5}, "steps": 7}"#).unwrap();
    assert_eq!(short, SamplerConfig { kind: SamplerKind::Ddim { eta: 0.5 }, ..SamplerConfig::ddim(0.0, 7) });
    let typo = serde_json::from_str::<SamplerConfig>(r#"{"kind": {"kind": "ddim", "eta": 0.5}, "step": 7}"#);
    assert!(typo.unwrap_err().to_string().contains("unknown field `step`"));

    // Stepping by hand gives the same sample as run(), with x0_hat at every step.
    let x_t = || {
        covdiff_model::normals::seed::<B>(&dev, 3);
        initial_noise::<B>([8, 1, D, D], &ForwardNoise::White, &dev)
    };
    let guard = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let whole = config.build(&table(), ForwardNoise::White).unwrap().run(&exact, x_t()).unwrap();
    let mut sampling = config.build(&table(), ForwardNoise::White).unwrap();
    let mut x = x_t();
    let mut times = Vec::new();
    while !sampling.is_finished() {
        let out = sampling.step(&exact, x).unwrap();
        assert_eq!(out.x0_hat.dims(), [8, 1, D, D]);
        times.push((out.t, out.s));
        x = out.x;
    }
    drop(guard);
    assert_eq!(times, Trajectory::new(1000, 4, Spacing::Even).unwrap().steps());
    assert_eq!(values(x.clone()), values(whole));
    assert_eq!(sampling.step(&exact, x).unwrap_err(), SamplerError::Finished(4));

    // A learned variance without a covariance, or a bad setting, is an error, not a panic.
    let mut sampling = config.build(&table(), ForwardNoise::White).unwrap();
    let err = sampling.step(&EpsOnly(exact), initial_noise::<B>([2, 1, D, D], &ForwardNoise::White, &dev));
    assert_eq!(err.unwrap_err(), SamplerError::MissingCovariance);
    for bad in [
        SamplerConfig { lambda: -1.0, ..config.clone() },
        SamplerConfig { steps: 0, ..config.clone() },
        SamplerConfig { steps: 1001, ..config.clone() },
        SamplerConfig { clip_noise: NoiseClip::ClipSample { y: f64::NAN }, ..config.clone() },
        SamplerConfig::ddim(-0.5, 10),
    ] {
        assert!(matches!(bad.build::<B>(&table(), ForwardNoise::White), Err(SamplerError::Config(_))), "{bad:?}");
    }
}

/// Rank-one colour data: the exact denoiser's eps and `E_t` against covdiff-core's
/// per-frequency `C x C` solves (`eps_mean`, `eps_cov_dense`).
#[test]
fn colour_gaussian_denoiser_matches_the_per_frequency_truth() {
    let dev = Default::default();
    let u = [0.9, 0.6, 0.3];
    let p: Vec<f64> = (0..9).map(|i| if i % 3 == 0 { u[i / 3] } else { 0.0 }).collect();
    let data = DctGaussian::power_law(&p, 3, D, 2.0, 1.0).unwrap();
    let exact = GaussianDenoiser::<B>::for_data(&data, &table(), &dev).unwrap();
    let x: Vec<f64> = (0..3 * N).map(|i| ((i * 37 % 23) as f64 - 11.0) / 7.0).collect();
    for t in [1, 40, 500, 999] {
        let ab = table().abar(t);
        let xt = Tensor::<B, 1>::from_floats(x.iter().map(|&v| v as f32).collect::<Vec<_>>().as_slice(), &dev)
            .reshape([1, 3, D, D]);
        let (eps, cov) = exact.predict(xt, t, true);
        let eps = values(eps);
        let truth = data.eps_mean(&x, ab);
        let scale = truth.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (g, w) in eps.iter().zip(&truth) {
            assert!((g - w).abs() < 1e-4 * scale.max(1.0), "t {t}: eps {g} vs {w}");
        }
        let dense = values(Covariance::to_dense(&cov.unwrap()));
        let want = data.eps_cov_dense(ab);
        let got = DMatrix::from_row_slice(3 * N, 3 * N, &dense);
        assert!(rel_frobenius(&got, &want) < 1e-5, "t {t}: E_t off by {}", rel_frobenius(&got, &want));
    }
    let full = DctGaussian::power_law(&[1.0, 0.2, 0.1, 0.2, 1.0, 0.3, 0.1, 0.3, 1.0], 3, D, 2.0, 1.0).unwrap();
    assert!(GaussianDenoiser::<B>::for_data(&full, &table(), &dev).is_err(), "full-rank colour has no exact K-DCT");
}

/// The exactness study at small size: with the exact K-DCT covariance the chain draws the data
/// itself, so its error is Monte Carlo error like that of exact draws (the floor); beta-tilde's
/// and the diagonal's biases at K = 2 lie well above it.
#[test]
fn gaussian_exactness_separates_exact_kdct_from_the_floor_and_the_heuristics() {
    let dev = Default::default();
    let _guard = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let ex = covdiff_model::image::exactness::gaussian_exactness::<B>(&data(), "grey", &table(), &[2], 20_000, 3, &dev)
        .unwrap();
    let err = |i: usize| ex.rows[i].errors[0];
    eprintln!("floor {:.4}, iso {:.4}, diag {:.4}, kdct {:.4}", ex.floor, err(0), err(1), err(2));
    assert!(err(2) < 2.0 * ex.floor + 0.01, "exact K-DCT {} vs floor {}", err(2), ex.floor);
    assert!(err(0) > 4.0 * ex.floor && err(1) > 4.0 * ex.floor, "the heuristics should be biased at K = 2");
}

/// Guided inpainting (K-DCT paper A.3, Eqs. 19-20) on Gaussian data with the exact denoiser and
/// `E_t`: the likelihood score is then exact, so the guided chain samples the exact conditional
/// `x_0 | y` (up to the step variance's use of the unconditional `E_t`, a bias far below the
/// Monte Carlo error here). Its unobserved pixels must have the mean
/// `S_uo (S_oo + s^2 I)^-1 y` and the Schur complement `S_uu - S_uo (S_oo + s^2 I)^-1 S_ou` as
/// covariance, written out here with nalgebra from the prior, within Monte Carlo error.
#[test]
fn guided_sampling_draws_the_exact_conditional_gaussian() {
    use covdiff_model::image::{CgOptions, GuidanceCovariance, Guided, Observation};
    const DRAWS_GUIDED: usize = 8000;
    let dev = Default::default();
    let _guard = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    covdiff_model::normals::seed::<B>(&dev, 5);
    let table = table();
    let prior = data().prior_dense();
    let observed = [0usize, 3, 5, 6, 9, 10, 12, 15];
    let unobserved: Vec<usize> = (0..N).filter(|i| !observed.contains(i)).collect();
    let sigma_y = 0.1;
    let y_obs = common::Rand::new(3).normal(observed.len(), 0.8);
    // The truth, from the prior's blocks.
    let block =
        |rows: &[usize], cols: &[usize]| DMatrix::from_fn(rows.len(), cols.len(), |i, j| prior[(rows[i], cols[j])]);
    let (s_oo, s_uo, s_uu) =
        (block(&observed, &observed), block(&unobserved, &observed), block(&unobserved, &unobserved));
    let gain =
        &s_uo * (s_oo + DMatrix::identity(observed.len(), observed.len()) * (sigma_y * sigma_y)).try_inverse().unwrap();
    let want_mean = &gain * nalgebra::DVector::from_vec(y_obs.clone());
    let want_cov = &s_uu - &gain * s_uo.transpose();
    // The observation, the same for every draw.
    let (mut mask, mut y) = (vec![0.0; N], vec![0.0; N]);
    for (&i, &v) in observed.iter().zip(&y_obs) {
        (mask[i], y[i]) = (1.0, v);
    }
    let batch = |v: &[f64]| common::tensor::<B, 4>(&v.repeat(DRAWS_GUIDED), [DRAWS_GUIDED, 1, D, D], &dev);
    let observation = Observation { mask: batch(&mask), y: batch(&y), sigma_y };
    let exact = GaussianDenoiser::<B>::new(data().spectrum(), D, &table, &dev);
    let guided = Guided {
        inner: &exact,
        observation: &observation,
        table: &table,
        covariance: GuidanceCovariance::Learnt,
        cg: CgOptions { max_iterations: 2 * observed.len(), tolerance: 1e-5 },
    };
    let config = SamplerConfig {
        kind: SamplerKind::Ddpm { variance: StepVariance::Learned },
        steps: 250,
        spacing: Spacing::Even,
        lambda: 1.0,
        clip_x0: false,
        clip_noise: NoiseClip::Noise,
        final_noise: true,
    };
    let x_t = initial_noise::<B>([DRAWS_GUIDED, 1, D, D], &ForwardNoise::White, &dev);
    let out = values(config.build(&table, ForwardNoise::White).unwrap().run(&guided, x_t).unwrap());
    // The unobserved pixels' sample mean and covariance.
    let m = unobserved.len();
    let draws = DMatrix::from_fn(DRAWS_GUIDED, m, |r, j| out[r * N + unobserved[j]]);
    let mean = draws.row_mean().transpose();
    let centred = DMatrix::from_fn(DRAWS_GUIDED, m, |r, j| draws[(r, j)] - mean[j]);
    let cov = centred.transpose() * &centred / (DRAWS_GUIDED - 1) as f64;
    for j in 0..m {
        let se = (want_cov[(j, j)] / DRAWS_GUIDED as f64).sqrt();
        assert!(
            (mean[j] - want_mean[j]).abs() < 5.0 * se,
            "pixel {}: mean {} against {}",
            unobserved[j],
            mean[j],
            want_mean[j]
        );
    }
    // Monte Carlo error of an 8 x 8 covariance from 8000 draws: about sqrt((m + 1) / N) = 3.4%
    // relative Frobenius; the bound is twice that.
    let tol = 2.0 * ((m + 1) as f64 / DRAWS_GUIDED as f64).sqrt();
    let err = rel_frobenius(&cov, &want_cov);
    assert!(err < tol, "conditional covariance: relative Frobenius error {err} (tolerance {tol})");
    // The test has power: the prior's own block is far from the conditional.
    assert!(rel_frobenius(&s_uu, &want_cov) > 3.0 * tol, "the observation barely informs the unobserved pixels");
}

/// Conjugate gradients (Jacobi-preconditioned) against a dense solve: per image, with a
/// different SPD matrix for each (diagonal plus a rank-one term), and an image whose right-hand
/// side is zero stays zero.
#[test]
fn conjugate_gradient_solves_each_images_system() {
    use covdiff_model::image::{conjugate_gradient, CgOptions};
    let dev = Default::default();
    let mut rand = common::Rand::new(8);
    let (diag, u, rhs) = (rand.uniform(3 * N, 0.5, 2.0), rand.normal(3 * N, 1.0), rand.normal(3 * N, 1.0));
    let mut rhs = rhs;
    rhs[2 * N..].iter_mut().for_each(|v| *v = 0.0);
    let t = |v: &[f64]| common::tensor::<B, 4>(v, [3, 1, D, D], &dev);
    let (dt, ut) = (t(&diag), t(&u));
    // M_i v = diag_i * v + u_i (u_i . v).
    let apply = |v: Tensor<B, 4>| {
        let dot = (ut.clone() * v.clone()).sum_dim(3).sum_dim(2).sum_dim(1);
        dt.clone() * v + ut.clone() * dot
    };
    // M's diagonal: diag_i + u_i^2.
    let m_diag: Vec<f64> = diag.iter().zip(&u).map(|(a, b)| a + b * b).collect();
    let got = values(conjugate_gradient(apply, t(&m_diag), t(&rhs), CgOptions { max_iterations: 40, tolerance: 1e-5 }));
    for img in 0..3 {
        let range = img * N..(img + 1) * N;
        let ui = nalgebra::DVector::from_column_slice(&u[range.clone()]);
        let m =
            DMatrix::from_diagonal(&nalgebra::DVector::from_column_slice(&diag[range.clone()])) + &ui * ui.transpose();
        let want = m.lu().solve(&nalgebra::DVector::from_column_slice(&rhs[range.clone()])).unwrap();
        let diff = (nalgebra::DVector::from_column_slice(&got[range]) - &want).amax();
        assert!(diff < 1e-4 * (1.0 + want.amax()), "image {img}: {diff}");
    }
}

/// The exact (NI-)SMLD denoiser of `x0 ~ N(0, C)` at level `i`: `x_i ~ N(0, C + sigma_i^2 Sigma)`,
/// score `-(C + sigma_i^2 Sigma)^-1 x`, so `eps_hat = sigma_i Sigma^1/2 (C + sigma_i^2 Sigma)^-1 x`
/// (the paper's Eq. 99 solved for `eps_hat`).
struct SmldTruth {
    truth: Truth,
    levels: covdiff_model::diffusion::NoiseLevels,
}

impl SmldTruth {
    fn eps_map(&self, i: usize) -> DMatrix<f64> {
        let s = self.levels.sigma(i);
        let sigma = &self.truth.sh * &self.truth.sh;
        &self.truth.sh * (&self.truth.c + sigma * (s * s)).try_inverse().unwrap() * s
    }
}

impl Denoiser<B> for SmldTruth {
    fn predict(&self, x: Tensor<B, 4>, t: usize, _: bool) -> (Tensor<B, 4>, Option<AnyCovariance<B>>) {
        let b = x.dims()[0];
        let map = common::truth::to_tensor(&self.eps_map(t).transpose(), [N, N]);
        (x.reshape([b, N]).matmul(map).reshape([b, 1, D, D]), None)
    }
}

/// The covariance of annealed Langevin's output by dense propagation, from docs/maths.md's
/// update `x <- x - (alpha / sigma) Sigma^1/2 eps_hat + sqrt(2 alpha) Sigma^1/2 z`: with the linear
/// exact `eps_hat = E_i x`, `V <- P V P^T + 2 alpha Sigma`, `P = I - (alpha / sigma) Sigma^1/2 E_i`;
/// then the final denoising `x - sigma_L Sigma^1/2 E_L x`.
fn langevin_dense(model: &SmldTruth, config: &covdiff_model::diffusion::LangevinConfig) -> DMatrix<f64> {
    let id = DMatrix::<f64>::identity(N, N);
    let sh = &model.truth.sh;
    let sigma = sh * sh;
    let levels = config.levels;
    let last = levels.sigma(levels.len());
    let mut v = &sigma * levels.sigma(1).powi(2);
    for i in 1..=levels.len() {
        let s = levels.sigma(i);
        let alpha = config.epsilon * s * s / (last * last);
        let p = &id - sh * model.eps_map(i) * (alpha / s);
        for _ in 0..config.steps_per_level {
            v = &p * v * p.transpose() + &sigma * (2.0 * alpha);
        }
    }
    let d = &id - sh * model.eps_map(levels.len()) * last;
    &d * v * d.transpose()
}

/// 10k chains of 1000 steps each: fewer draws than the one-pass samplers above, since every chain
/// takes 1000 steps. The Monte Carlo error of the 16 x 16 second moment is then about
/// `sqrt((n + 1) / N) = 4%` relative Frobenius; the tolerance is twice that.
const LANGEVIN_DRAWS: usize = 10_000;
const LANGEVIN_TOL: f64 = 0.08;

/// NI-SMLD (#13 part 2): annealed Langevin with the exact score, for white and GFF noise. The
/// sample covariance of 10k chains matches the dense propagation of the same chain (Monte Carlo
/// error), and that chain reaches the data covariance `C` (the discretisation and annealing bias
/// of this configuration, stated below, is under 3%).
#[test]
fn annealed_langevin_with_the_exact_score_reaches_the_data_covariance() {
    use covdiff_model::diffusion::{LangevinConfig, NoiseLevels};
    let dev = Default::default();
    let gff = Gff::new(D, 1.0).unwrap();
    let c = data().prior_dense();
    // epsilon = 0.5 sigma_L^2: the last level's steps are half its noise variance, and each level
    // relaxes over M alpha_i / sigma_i^2 = 25 of its own time units (docs/maths.md, "NI-SMLD").
    let levels = NoiseLevels::geometric(5.0, 0.05, 20).unwrap();
    let config = LangevinConfig { levels, steps_per_level: 50, epsilon: 1.25e-3, denoise_last: true };
    for (label, sh, noise) in [
        ("white", DMatrix::identity(N, N), ForwardNoise::White),
        ("gff", gff_sqrt(&gff), ForwardNoise::Gff(GffOperator::sqrt_of(&gff, &dev))),
    ] {
        let model = SmldTruth { truth: Truth { c: c.clone(), sh }, levels };
        let want = langevin_dense(&model, &config);
        let bias = rel_frobenius(&want, &c);
        eprintln!("{label}: the exact chain's covariance is {bias:.4} from C (relative Frobenius)");
        assert!(bias < 0.03, "{label}: this configuration should reach C, not {bias}");
        let got = {
            let _guard = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
            covdiff_model::normals::seed::<B>(&dev, 23);
            let mut run = config.build(noise.clone()).unwrap();
            let x = run.initial([LANGEVIN_DRAWS, 1, D, D], &dev);
            second_moment(&values(run.run(&model, x).unwrap()), N)
        };
        for (what, reference) in [("the exact chain", &want), ("C", &c)] {
            let err = rel_frobenius(&got, reference);
            eprintln!("{label} Langevin against {what}: relative Frobenius error {err:.4}");
            assert!(err < LANGEVIN_TOL, "{label}: the sample covariance misses {what} by {err}");
        }
    }
    // Bad configurations are errors, not panics.
    assert!(NoiseLevels::geometric(0.01, 5.0, 12).is_err());
    assert!(LangevinConfig { epsilon: 0.0, ..config.clone() }.build::<B>(ForwardNoise::White).is_err());
    let mut run = LangevinConfig { levels: NoiseLevels::geometric(1.0, 0.5, 2).unwrap(), ..config }
        .build::<B>(ForwardNoise::White)
        .unwrap();
    let model = SmldTruth { truth: Truth { c, sh: DMatrix::identity(N, N) }, levels };
    let x = run.initial([2, 1, D, D], &dev);
    let x = run.run(&model, x).unwrap();
    assert!(run.step(&model, x).is_err(), "a finished run refuses another level");
}
