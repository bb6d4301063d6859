//! The analytic denoisers against references written out here: softmaxes and weighted
//! covariances in f64 by brute force, the Gaussian posterior mean by a dense solve, and patch
//! distances from explicitly zero-padded patches.

mod common;

use burn::backend::Autodiff;
use burn::tensor::{Tensor, TensorData};
use common::{values, Rand};
use covdiff_core::locality::TimeTable;
use covdiff_core::schedule::{Linear, Schedule, ScheduleTable};
use covdiff_model::analytic::sensitivity::{eps_covariance, jacobian_rows};
use covdiff_model::analytic::{
    EquivariantPatchDenoiser, MaskedDenoiser, OptimalDenoiser, StreamingSoftmax, Support, TrainingSet, WienerBasis,
    WienerDenoiser,
};
use covdiff_model::backends::Cpu;
use covdiff_model::diffusion::Denoiser;
use covdiff_model::image::GaussianDenoiser;
use nalgebra::{DMatrix, DVector};

type B = Cpu;

fn table() -> ScheduleTable {
    Linear::default().table()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn images(v: &[f64], b: usize, c: usize, d: usize) -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(f32s(v), [b, c, d, d]), &Default::default())
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// A stable softmax in f64: `exp(l - max) / sum`.
fn softmax(l: &[f64]) -> Vec<f64> {
    let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = l.iter().map(|x| (x - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

/// The posterior weights of the empirical distribution, by Prop. A.2's formula in f64.
fn weights(x: &[f64], set: &[f64], abar: f64) -> Vec<f64> {
    let n = x.len();
    let l: Vec<f64> = set
        .chunks(n)
        .map(|y| -x.iter().zip(y).map(|(a, b)| (a - abar.sqrt() * b).powi(2)).sum::<f64>() / (2.0 * (1.0 - abar)))
        .collect();
    softmax(&l)
}

#[test]
fn the_streaming_softmax_equals_the_direct_one_even_where_a_naive_one_overflows() {
    let (b, r, m, v) = (3, 2, 50, 4);
    let mut rng = Rand::new(1);
    let vals = rng.uniform(m * v, -1.0, 1.0);
    for offset in [0.0, 2.0e4, -3.0e4] {
        // Logits spread over +-60 about the offset; the reference uses the same f32 values.
        let logits: Vec<f32> = rng.uniform(b * r * m, -60.0, 60.0).iter().map(|x| (x + offset) as f32).collect();
        let mut wssm = StreamingSoftmax::<B>::new();
        let dev = Default::default();
        let all = Tensor::<B, 3>::from_data(TensorData::new(logits.clone(), [b, r, m]), &dev);
        let vt = Tensor::<B, 2>::from_data(TensorData::new(f32s(&vals), [m, v]), &dev);
        for start in (0..m).step_by(7) {
            let end = (start + 7).min(m);
            let chunk = vt.clone().slice(start..end);
            wssm.update(all.clone().slice([0..b, 0..r, start..end]), |w| {
                w.reshape([b * r, end - start]).matmul(chunk).reshape([b, r, v])
            });
        }
        let got = values(wssm.value().unwrap());
        let lse = values(wssm.log_normaliser().unwrap());
        let mut want = Vec::new();
        for row in logits.chunks(m) {
            let l: Vec<f64> = row.iter().map(|&x| x as f64).collect();
            let w = softmax(&l);
            want.extend((0..v).map(|k| (0..m).map(|i| w[i] * vals[i * v + k]).sum::<f64>()));
            let mx = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let want_lse = mx + l.iter().map(|x| (x - mx).exp()).sum::<f64>().ln();
            let k = want.len() / v - 1;
            assert!((lse[k] - want_lse).abs() <= 1e-6 * want_lse.abs().max(1.0), "lse {} vs {want_lse}", lse[k]);
        }
        assert!(max_diff(&got, &want) < 1e-6, "offset {offset}: {}", max_diff(&got, &want));
        // The naive softmax in f32 is not finite at these offsets, which is what the stream avoids.
        if offset != 0.0 {
            let naive: Vec<f32> = logits[..m].iter().map(|x| x.exp()).collect();
            let s: f32 = naive.iter().sum();
            assert!(naive.iter().map(|x| x / s).any(|w| !w.is_finite()) || s == 0.0);
        }
    }
}

#[test]
fn the_optimal_denoiser_and_its_covariance_equal_brute_force_sums() {
    let (c, d, n_set, b) = (2, 3, 23, 3);
    let n = c * d * d;
    let mut rng = Rand::new(2);
    let set = rng.uniform(n_set * n, -1.0, 1.0);
    let xs = rng.normal(b * n, 0.8);
    let data = TrainingSet::<B>::from_pixels(&f32s(&set), c, d, 6, &Default::default()).unwrap();
    let opt = OptimalDenoiser::new(data, table());
    for t in [40, 300, 800] {
        let abar = table().abar(t);
        let x0 = values(opt.x0_hat(images(&xs, b, c, d), t));
        let cov = values(opt.posterior_covariance(images(&xs, b, c, d), t));
        let rows = [0, 7, n - 1];
        let cov_rows = values(opt.covariance_rows(images(&xs, b, c, d), t, &rows));
        for k in 0..b {
            let x = &xs[k * n..(k + 1) * n];
            let w = weights(x, &set, abar);
            let mean: Vec<f64> = (0..n).map(|j| (0..n_set).map(|i| w[i] * set[i * n + j]).sum()).collect();
            assert!(max_diff(&x0[k * n..(k + 1) * n], &mean) < 1e-5, "t {t}: mean");
            let brute = DMatrix::from_fn(n, n, |p, q| {
                (0..n_set).map(|i| w[i] * (set[i * n + p] - mean[p]) * (set[i * n + q] - mean[q])).sum()
            });
            let got = DMatrix::from_row_slice(n, n, &cov[k * n * n..(k + 1) * n * n]);
            assert!((&got - &brute).amax() < 1e-5, "t {t}: covariance off by {}", (&got - &brute).amax());
            let row: Vec<f64> = brute.row(rows[k]).iter().cloned().collect();
            assert!(max_diff(&cov_rows[k * n..(k + 1) * n], &row) < 1e-5, "t {t}: covariance row");
        }
    }
}

/// A random SPD covariance `A A^T / n + 0.05 I` and a mean.
fn gaussian(n: usize, rng: &mut Rand) -> (DVector<f64>, DMatrix<f64>) {
    let a = DMatrix::from_vec(n, n, rng.normal(n * n, 0.5));
    (DVector::from_vec(rng.uniform(n, -0.3, 0.3)), &a * a.transpose() / n as f64 + DMatrix::identity(n, n) * 0.05)
}

/// `mu + sqrt(abar) S (abar S + bbar I)^-1 (x - sqrt(abar) mu)` by a dense solve.
fn gaussian_posterior_mean(mu: &DVector<f64>, s: &DMatrix<f64>, x: &[f64], abar: f64) -> Vec<f64> {
    let n = mu.len();
    let m = s * abar + DMatrix::identity(n, n) * (1.0 - abar);
    let r = DVector::from_column_slice(x) - mu * abar.sqrt();
    let sol = m.lu().solve(&r).unwrap();
    (mu + s * sol * abar.sqrt()).iter().cloned().collect()
}

#[test]
fn the_wiener_filter_is_the_exact_gaussian_posterior_mean_and_the_optimal_denoiser_approaches_it() {
    let (c, d) = (1, 2);
    let n = c * d * d;
    let mut rng = Rand::new(3);
    let (mu, s) = gaussian(n, &mut rng);
    let chol = s.clone().cholesky().unwrap().l();
    let big = 100_000;
    let set: Vec<f64> = (0..big)
        .flat_map(|_| (&mu + &chol * DVector::from_vec(rng.normal(n, 1.0))).iter().cloned().collect::<Vec<_>>())
        .collect();
    let dev = Default::default();
    let wiener = WienerDenoiser::<B>::new(mu.as_slice(), &s, WienerBasis::Eigen, c, d, table(), &dev).unwrap();
    let data = TrainingSet::<B>::from_pixels(&f32s(&set), c, d, 8192, &dev).unwrap();
    let opt = OptimalDenoiser::new(data, table());
    let b = 6;
    let xs = rng.normal(b * n, 1.0);
    for t in [200, 500, 900] {
        let abar = table().abar(t);
        let want: Vec<f64> = xs.chunks(n).flat_map(|x| gaussian_posterior_mean(&mu, &s, x, abar)).collect();
        let got = values(wiener.x0_hat(images(&xs, b, c, d), t));
        assert!(max_diff(&got, &want) < 1e-5, "t {t}: Wiener off by {}", max_diff(&got, &want));
        // The empirical posterior mean over 1e5 draws: Monte Carlo error about 1e-2 here.
        let emp = values(opt.x0_hat(images(&xs, b, c, d), t));
        assert!(max_diff(&emp, &want) < 0.03, "t {t}: optimal off by {}", max_diff(&emp, &want));
    }
    // A covariance that is diagonal in the DCT basis: the DCT Wiener filter is exact too.
    let f2 = covdiff_core::dense::dct2_matrix(d);
    let spec = DMatrix::from_diagonal(&DVector::from_vec(vec![0.9, 0.3, 0.2, 0.05]));
    let s_dct = f2.transpose() * spec * &f2;
    let dct = WienerDenoiser::<B>::new(mu.as_slice(), &s_dct, WienerBasis::Dct, c, d, table(), &dev).unwrap();
    let got = values(dct.x0_hat(images(&xs, b, c, d), 400));
    let want: Vec<f64> =
        xs.chunks(n).flat_map(|x| gaussian_posterior_mean(&mu, &s_dct, x, table().abar(400))).collect();
    assert!(max_diff(&got, &want) < 1e-5);
    assert!(WienerDenoiser::<B>::new(&[0.0; 3], &s, WienerBasis::Eigen, c, d, table(), &dev).is_err());
}

#[test]
fn an_all_ones_mask_and_a_patch_covering_the_image_are_the_optimal_denoiser() {
    let (c, d, n_set, b) = (2, 4, 30, 2);
    let n = c * d * d;
    let mut rng = Rand::new(4);
    let set = f32s(&rng.uniform(n_set * n, -1.0, 1.0));
    let xs = rng.normal(b * n, 0.7);
    let dev = Default::default();
    let data = TrainingSet::<B>::from_pixels(&set, c, d, 7, &dev).unwrap();
    let opt = OptimalDenoiser::new(data.clone(), table());
    let all = MaskedDenoiser::new(data.clone(), table(), &Support::All).unwrap();
    let patch = MaskedDenoiser::new(data.clone(), table(), &Support::Patch(TimeTable::constant(2 * d - 1))).unwrap();
    let rows = MaskedDenoiser::new(data, table(), &Support::Rows(TimeTable::constant(vec![1.0; d.pow(4)]))).unwrap();
    for t in [30, 500, 950] {
        let want = values(opt.x0_hat(images(&xs, b, c, d), t));
        assert!(max_diff(&values(all.x0_hat(images(&xs, b, c, d), t)), &want) < 1e-5, "t {t}: all-ones mask");
        assert!(max_diff(&values(patch.x0_hat(images(&xs, b, c, d), t)), &want) < 1e-5, "t {t}: full patch");
        assert!(max_diff(&values(rows.x0_hat(images(&xs, b, c, d), t)), &want) < 1e-5, "t {t}: all-ones rows");
    }
}

/// The pixel `(y, x)` of channel `ch` of a `d x d` image, zero outside it.
fn at(img: &[f64], ch: usize, d: usize, y: i64, x: i64) -> f64 {
    if (0..d as i64).contains(&y) && (0..d as i64).contains(&x) {
        img[ch * d * d + y as usize * d + x as usize]
    } else {
        0.0
    }
}

#[test]
fn patch_denoisers_with_and_without_translations_equal_brute_force_patch_sums() {
    let (c, d, n_set, b, p) = (2, 4, 5, 2, 3);
    let n = c * d * d;
    let r = (p / 2) as i64;
    let mut rng = Rand::new(5);
    let set = rng.uniform(n_set * n, -1.0, 1.0);
    let xs = rng.normal(b * n, 0.7);
    let dev = Default::default();
    let data = TrainingSet::<B>::from_pixels(&f32s(&set), c, d, 2, &dev).unwrap();
    let local = MaskedDenoiser::new(data.clone(), table(), &Support::Patch(TimeTable::constant(p))).unwrap();
    let els = EquivariantPatchDenoiser::new(data, table(), TimeTable::constant(p)).unwrap();
    // Patch distance between x about q = (qy, qx) and training image i about (ry, rx).
    let dist = |x: &[f64], i: usize, q: (i64, i64), rr: (i64, i64), s: f64| -> f64 {
        let y = &set[i * n..(i + 1) * n];
        let mut acc = 0.0;
        for ch in 0..c {
            for dy in -r..=r {
                for dx in -r..=r {
                    let a = at(x, ch, d, q.0 + dy, q.1 + dx);
                    let bv = at(y, ch, d, rr.0 + dy, rr.1 + dx);
                    // Locality alone drops the pixels outside the image (mask support); with
                    // translations both patches are zero padded.
                    acc += (a - s * bv).powi(2);
                }
            }
        }
        acc
    };
    for t in [100, 600] {
        let abar = table().abar(t);
        let (s, bb) = (abar.sqrt(), 1.0 - abar);
        let got_local = values(local.x0_hat(images(&xs, b, c, d), t));
        let got_els = values(els.x0_hat(images(&xs, b, c, d), t));
        for k in 0..b {
            let x = &xs[k * n..(k + 1) * n];
            for qy in 0..d as i64 {
                for qx in 0..d as i64 {
                    let q = (qy, qx);
                    // Locality: candidates are the training images at the same place q. Pixels
                    // outside the image add the same (x - s 0)^2 = 0 to both, so zero padding
                    // and dropping them agree.
                    let w = softmax(&(0..n_set).map(|i| -dist(x, i, q, q, s) / (2.0 * bb)).collect::<Vec<_>>());
                    // Equivariance: every training patch at every place r.
                    let cands: Vec<(usize, (i64, i64))> = (0..n_set)
                        .flat_map(|i| (0..d as i64).flat_map(move |ry| (0..d as i64).map(move |rx| (i, (ry, rx)))))
                        .collect();
                    let we =
                        softmax(&cands.iter().map(|&(i, rr)| -dist(x, i, q, rr, s) / (2.0 * bb)).collect::<Vec<_>>());
                    for ch in 0..c {
                        let idx = k * n + ch * d * d + (qy as usize) * d + qx as usize;
                        let want: f64 = (0..n_set).map(|i| w[i] * at(&set[i * n..], ch, d, qy, qx)).sum();
                        assert!((got_local[idx] - want).abs() < 1e-5, "local, t {t}, q {q:?}");
                        let want_e: f64 =
                            cands.iter().zip(&we).map(|(&(i, (ry, rx)), w)| w * at(&set[i * n..], ch, d, ry, rx)).sum();
                        assert!((got_els[idx] - want_e).abs() < 1e-5, "equivariant, t {t}, q {q:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn the_optimal_denoisers_jacobian_is_its_posterior_covariance_by_tweedie() {
    type A = Autodiff<Cpu>;
    let (c, d, n_set, b) = (1, 3, 40, 3);
    let n = c * d * d;
    let mut rng = Rand::new(6);
    let set = f32s(&rng.uniform(n_set * n, -1.0, 1.0));
    let xs = rng.normal(b * n, 0.8);
    let dev = Default::default();
    let opt_ad = OptimalDenoiser::new(TrainingSet::<A>::from_pixels(&set, c, d, 16, &dev).unwrap(), table());
    let opt = OptimalDenoiser::new(TrainingSet::<B>::from_pixels(&set, c, d, 16, &dev).unwrap(), table());
    let rows = [4, 0, 8];
    for t in [150, 700] {
        let abar = table().abar(t);
        let jac = values(jacobian_rows::<A, _>(&opt_ad, &table(), images(&xs, b, c, d), t, &rows).unwrap());
        let cov = values(opt.covariance_rows(images(&xs, b, c, d), t, &rows));
        let want: Vec<f64> = cov.iter().map(|v| v * abar.sqrt() / (1.0 - abar)).collect();
        let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max).max(1e-3);
        assert!(max_diff(&jac, &want) < 1e-3 * scale, "t {t}: {} (scale {scale})", max_diff(&jac, &want));
    }
    assert!(jacobian_rows::<A, _>(&opt_ad, &table(), images(&xs, b, c, d), 10, &[0, 1]).is_err());
}

/// Second-order Tweedie on the exact denoiser of `x0 ~ N(0, S)`, `S = F2^T diag(sigma2) F2`:
/// the autodiff Jacobian path gives the dense `Cov[eps | x_t] = I - bbar (abar S + bbar I)^-1`,
/// built here from the DCT matrix with nalgebra.
#[test]
fn the_jacobian_path_gives_the_exact_gaussian_posterior_covariance_of_eps() {
    type A = Autodiff<Cpu>;
    let d = 4;
    let n = d * d;
    let sigma2 = Rand::new(9).uniform(n, 0.05, 2.0);
    let dev = Default::default();
    let den = GaussianDenoiser::<A>::new(&sigma2, d, &table(), &dev);
    let f = covdiff_core::dct::dct_matrix(d);
    // F2[(k,l), (i,j)] = F[k,i] F[l,j] on row-major images.
    let f2 = DMatrix::from_fn(n, n, |r, q| f[(r / d) * d + q / d] * f[(r % d) * d + q % d]);
    let s = f2.transpose() * DMatrix::from_diagonal(&DVector::from_vec(sigma2.clone())) * &f2;
    let x = images(&Rand::new(10).normal(n, 1.0), 1, 1, d);
    for t in [10, 300, 900] {
        let (abar, bbar) = (table().abar(t), 1.0 - table().abar(t));
        let inv = (&s * abar + DMatrix::identity(n, n) * bbar).try_inverse().unwrap();
        let want = DMatrix::identity(n, n) - inv * bbar;
        // 5 rows per pass: the last pass is a partial one.
        let got = values(eps_covariance::<A, _>(&den, &table(), x.clone(), t, 5).unwrap());
        let want: Vec<f64> = want.transpose().as_slice().to_vec();
        assert!(max_diff(&got, &want) < 2e-4, "t {t}: {}", max_diff(&got, &want));
    }
    assert!(eps_covariance::<A, _>(&den, &table(), images(&vec![0.0; 2 * n], 2, 1, d), 10, 5).is_err());
    assert!(eps_covariance::<A, _>(&den, &table(), x.clone(), 0, 5).is_err());
    assert!(eps_covariance::<A, _>(&den, &table(), x, 10, 0).is_err());
}

#[test]
fn analytic_denoisers_run_in_the_samplers_and_bad_sets_are_errors() {
    use covdiff_model::diffusion::{SamplerConfig, StepVariance};
    let (c, d) = (1, 4);
    let n = c * d * d;
    let mut rng = Rand::new(7);
    let set = f32s(&rng.uniform(10 * n, -1.0, 1.0));
    let dev = Default::default();
    let data = TrainingSet::<B>::from_pixels(&set, c, d, 4, &dev).unwrap();
    let opt = OptimalDenoiser::new(data, table());
    let x_t = images(&rng.normal(2 * n, 1.0), 2, c, d);
    let mut sampling =
        SamplerConfig::ddim(0.0, 10).build::<B>(&table(), covdiff_model::diffusion::ForwardNoise::White).unwrap();
    let x = values(sampling.run(&opt, x_t.clone()).unwrap());
    // DDIM with the optimal denoiser ends on training images (memorisation).
    for img in x.chunks(n) {
        let best = set
            .chunks(n)
            .map(|y| img.iter().zip(y).map(|(a, &b)| (a - b as f64).powi(2)).sum::<f64>())
            .fold(f64::INFINITY, f64::min);
        assert!(best < 1e-6, "DDIM with the optimal denoiser should return a training image, off by {best}");
    }
    let mut ddpm = SamplerConfig::ddpm(StepVariance::Small, 5)
        .build::<B>(&table(), covdiff_model::diffusion::ForwardNoise::White)
        .unwrap();
    assert!(values(ddpm.run(&opt as &dyn Denoiser<B>, x_t).unwrap()).iter().all(|v| v.is_finite()));
    assert!(TrainingSet::<B>::from_pixels(&set[..n + 1], c, d, 4, &dev).is_err());
    assert!(TrainingSet::<B>::from_pixels(&[], c, d, 4, &dev).is_err());
    assert!(TrainingSet::<B>::from_pixels(&set, c, d, 0, &dev).is_err());
    let mut nan = set.clone();
    nan[3] = f32::NAN;
    assert!(TrainingSet::<B>::from_pixels(&nan, c, d, 4, &dev).is_err());
}

#[test]
fn analytic_denoisers_by_name() {
    use covdiff_model::analytic::{fitted_patch_sizes, AnalyticSpec};
    for name in
        ["optimal", "wiener", "wiener-dct", "patch", "patch:5", "els", "els:9", "els:9/7/3", "mask:0.02", "wmask:0.05"]
    {
        let spec: AnalyticSpec = name.parse().unwrap();
        assert_eq!(spec.to_string(), name);
    }
    for bad in
        ["opt", "patch:0", "els:x", "els:9//3", "els:9/0", "mask", "mask:0", "mask:2", "wmask", "mask:nan", "wiener:3"]
    {
        assert!(bad.parse::<AnalyticSpec>().is_err(), "{bad} should be refused");
    }
    // The fitted schedule over 10 steps is the appendix's list; over 5 steps every other entry;
    // at half the image size, half the patch.
    let times: Vec<usize> = (0..10).map(|k| 901 - 100 * k).collect();
    let sizes = fitted_patch_sizes(&times, 28).unwrap();
    let got: Vec<usize> = times.iter().map(|&t| *sizes.at(t)).collect();
    assert_eq!(got, vec![28, 28, 25, 23, 17, 17, 13, 13, 9, 9]);
    let five = fitted_patch_sizes(&[801, 601, 401, 201, 1], 28).unwrap();
    assert_eq!([801, 601, 401, 201, 1].map(|t| *five.at(t)), [28, 25, 17, 13, 9]);
    assert_eq!(*fitted_patch_sizes(&[901], 14).unwrap().at(901), 14);
    let list: AnalyticSpec = "els:9/7/3".parse().unwrap();
    let AnalyticSpec::Els(schedule) = list else { panic!("els") };
    let six = schedule.table(&[901, 701, 501, 301, 101, 1], 28).unwrap();
    assert_eq!([901, 701, 501, 301, 101, 1].map(|t| *six.at(t)), [9, 9, 7, 7, 3, 3]);
}

#[test]
fn a_wiener_mask_below_every_entry_is_the_optimal_denoiser() {
    use covdiff_model::analytic::{AnalyticSpec, Ingredients};
    let (c, d, n_set, b) = (1, 3, 25, 2);
    let n = c * d * d;
    let mut rng = Rand::new(8);
    let set = rng.uniform(n_set * n, -1.0, 1.0);
    let (mu, s) = gaussian(n, &mut rng);
    let xs = rng.normal(b * n, 0.7);
    let data = TrainingSet::<B>::from_pixels(&f32s(&set), c, d, 8, &Default::default()).unwrap();
    let opt = OptimalDenoiser::new(data.clone(), table());
    let times = [700, 300];
    let ing = Ingredients {
        data: &data,
        local_data: &data,
        table: &table(),
        times: &times,
        moments: Some((mu.as_slice(), &s)),
        fields: None,
    };
    let wmask = "wmask:1e-12".parse::<AnalyticSpec>().unwrap().build(&ing).unwrap();
    for t in times {
        let abar = table().abar(t);
        let x = images(&xs, b, c, d);
        let (eps, _) = wmask.predict(x.clone(), t, false);
        let got = values((x - eps * (1.0 - abar).sqrt()) / abar.sqrt());
        let want = values(opt.x0_hat(images(&xs, b, c, d), t));
        assert!(max_diff(&got, &want) < 1e-4, "t {t}: {}", max_diff(&got, &want));
    }
    let no_moments = Ingredients { moments: None, ..ing };
    assert!("wmask:0.1".parse::<AnalyticSpec>().unwrap().build(&no_moments).is_err());
}
