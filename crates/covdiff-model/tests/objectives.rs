//! Every objective equals its dense form from docs/maths.md, "Training objectives",
//! with E built as an n x n matrix (covdiff-core's explicit Kronecker products).
//! f32 operators against f64 references: 1e-4 relative tolerance.

#![cfg(any(feature = "flex", feature = "ndarray"))]

mod common;

use burn::backend::Autodiff;
use burn::tensor::Tensor;
use common::*;
use covdiff_core::dense::{dct2_matrix, kdct_family};
use covdiff_model::backends::Cpu;
use covdiff_model::objectives::{jvp_central_difference, npr, npr_residual, ocm, rademacher, sn, sn_covariance};
use covdiff_model::{Covariance, KDct, SpatialBasis};
use nalgebra::{DMatrix, DVector};

/// A random K-DCT covariance repeated over `batch`, and its dense matrix.
fn random_kdct(rng: &mut Rand, c: usize, d: usize, batch: usize) -> (KDct<Cpu>, DMatrix<f64>) {
    let dev = Default::default();
    let n = c * d * d;
    let (e, l, lam) = (rng.uniform(n, 0.1, 1.0), rng.normal(c * c, 0.6), rng.uniform(d * d, 0.1, 2.0));
    let dense = kdct_family(&e, &l, &lam, &dct2_matrix(d), c);
    let op = KDct::new(
        tensor::<Cpu, 4>(&e.repeat(batch), [batch, c, d, d], &dev),
        tensor::<Cpu, 3>(&l.repeat(batch), [batch, c, c], &dev),
        tensor::<Cpu, 3>(&lam.repeat(batch), [batch, d, d], &dev),
        SpatialBasis::dct(d, &dev),
    );
    (op, dense)
}

fn close(got: f64, want: f64, scale: f64, what: &str) {
    assert!((got - want).abs() < 1e-4 * scale.max(1.0), "{what}: {got} vs {want}");
}

#[test]
fn npr_and_npr_residual_equal_their_dense_forms() {
    let mut rng = Rand::new(21);
    let dev = Default::default();
    for (c, d) in [(1, 4), (3, 4), (3, 5)] {
        let n = c * d * d;
        let b = 3;
        let (op, e) = random_kdct(&mut rng, c, d, b);
        let (eps, eps_hat) = (rng.normal(b * n, 1.0), rng.normal(b * n, 0.7));
        let t = |v: &[f64]| tensor::<Cpu, 4>(v, [b, c, d, d], &dev);
        let got_npr = values(npr(&op, t(&eps), t(&eps_hat)));
        let got_res = values(npr_residual(&op, t(&eps), t(&eps_hat)));
        for i in 0..b {
            let (x, y) = (vector(&eps, i, n), vector(&eps_hat, i, n));
            let target = &x * x.transpose() - &y * y.transpose();
            let want = (&e - &target).norm_squared() - target.norm_squared();
            close(got_npr[i], want, e.norm_squared() + target.norm_squared(), "NPR");
            let r = &x - &y;
            let rr = &r * r.transpose();
            let want = (&e - &rr).norm_squared() - rr.norm_squared();
            close(got_res[i], want, e.norm_squared() + rr.norm_squared(), "NPR-residual");
        }
    }
}

/// OCM's mean over probes is `||E - (I - sqrt(bbar) J)||^2 + const`. At n = 4 we average over
/// all 16 Rademacher sign vectors, which is the expectation exactly; J comes from autodiff of a
/// small nonlinear eps-network, and J v from the central difference the training loop uses.
#[test]
fn ocm_mean_over_probes_equals_its_dense_form() {
    let mut rng = Rand::new(22);
    let (c, d) = (1, 2);
    let n = c * d * d;
    let probes = 1 << n;
    let (op, e) = random_kdct(&mut rng, c, d, probes);
    let w = DMatrix::from_row_slice(n, n, &rng.normal(n * n, 0.7));
    let x0 = rng.normal(n, 1.0);
    let bbar: f64 = 0.3;

    // The eps-network f(x) = tanh(W x), on any backend.
    fn net<B: burn::tensor::backend::Backend>(x: Tensor<B, 4>, w: &DMatrix<f64>) -> Tensor<B, 4> {
        let [b, c, h, wd] = x.dims();
        let n = c * h * wd;
        let wt: Vec<f32> = w.transpose().iter().map(|&v| v as f32).collect();
        let wt = Tensor::<B, 1>::from_floats(wt.as_slice(), &x.device()).reshape([n, n]);
        x.reshape([b, n]).matmul(wt.transpose()).tanh().reshape([b, c, h, wd])
    }
    // J by reverse-mode autodiff, one row per output.
    type Ad = Autodiff<Cpu>;
    let dev = Default::default();
    let mut j = DMatrix::<f64>::zeros(n, n);
    for i in 0..n {
        let x = tensor::<Ad, 4>(&x0, [1, c, d, d], &dev).require_grad();
        let y = net(x.clone(), &w).reshape([1, n]).narrow(1, i, 1).sum();
        let g = values(x.grad(&y.backward()).unwrap());
        for k in 0..n {
            j[(i, k)] = g[k];
        }
    }
    // And analytically: J = diag(1 - tanh^2(W x)) W.
    let pre = &w * DVector::from_column_slice(&x0);
    let jd = DMatrix::from_diagonal(&pre.map(|v| 1.0 - v.tanh().powi(2))) * &w;
    assert!((&j - &jd).abs().max() < 1e-5, "autodiff J");

    let signs: Vec<f64> =
        (0..probes).flat_map(|p| (0..n).map(move |k| if p >> k & 1 == 1 { 1.0 } else { -1.0 })).collect();
    let v = tensor::<Cpu, 4>(&signs, [probes, c, d, d], &dev);
    let x = tensor::<Cpu, 4>(&x0.repeat(probes), [probes, c, d, d], &dev);
    let jv = jvp_central_difference(|x| net(x, &w), x, v.clone(), 1e-2);
    let jv_exact: Vec<f64> =
        (0..probes).flat_map(|p| (&j * vector(&signs, p, n)).iter().copied().collect::<Vec<_>>()).collect();
    assert!(rel_err(&values(jv.clone()), &jv_exact) < 1e-3, "central difference J v");

    let mean = values(ocm(&op, v, jv, bbar)).iter().sum::<f64>() / probes as f64;
    let target = DMatrix::identity(n, n) - &j * bbar.sqrt();
    let want = (&e - &target).norm_squared() - target.norm_squared();
    assert!((mean - want).abs() < 2e-3 * (e.norm_squared() + target.norm_squared()), "OCM {mean} vs {want}");
}

#[test]
fn ocm_under_gff_noise_targets_the_whitened_posterior_covariance() {
    // Gaussian data under GFF forward noise, with the exact (linear) eps-network. In whitened
    // coordinates E_t = I - sqrt(bbar) J Sigma^1/2 (docs/maths.md, Tweedie), so OCM must probe the
    // network along Sigma^1/2 v. The 16 rows of a Sylvester-Hadamard matrix have second moment I
    // exactly, so the mean over them is the expectation over Rademacher probes.
    use common::truth::{gff_sqrt, DenseDenoiser, Truth};
    use covdiff_core::gaussian::DctGaussian;
    use covdiff_core::gff::Gff;
    use covdiff_model::diffusion::{Denoiser, ForwardNoise, GffOperator};
    use covdiff_model::image::whitened_jvp;
    let dev = Default::default();
    let (d, n) = (4, 16);
    let gff = Gff::new(d, 1.0).unwrap();
    let data = DctGaussian::power_law(&[1.0], 1, d, 2.0, 1.0).unwrap();
    let truth = Truth { c: data.prior_dense(), sh: gff_sqrt(&gff) };
    let abar = 0.4;
    let exact = DenseDenoiser { truth: truth.clone(), abar: vec![abar], d };
    let noise = ForwardNoise::Gff(GffOperator::<Cpu>::sqrt_of(&gff, &dev));
    let signs: Vec<f64> = (0..n)
        .flat_map(|i: usize| {
            (0..n).map(move |k: usize| if (i & k).count_ones().is_multiple_of(2) { 1.0 } else { -1.0 })
        })
        .collect();
    let v = tensor::<Cpu, 4>(&signs, [n, 1, d, d], &dev);
    let x = tensor::<Cpu, 4>(&Rand::new(5).normal(n, 1.0).repeat(n), [n, 1, d, d], &dev);
    let (_, cov) = exact.predict(x.clone(), 0, true);
    let cov = cov.unwrap();
    let jv = whitened_jvp(|x| exact.predict(x, 0, false).0, x, v.clone(), &noise, 1e-2);
    let bbar: f64 = 1.0 - abar;
    let mean = values(ocm(&cov, v, jv, bbar)).iter().sum::<f64>() / n as f64;
    // The dense truth: mean = ||E - M||^2 - ||M||^2 with M = Cov[eps | x_t], here E = M.
    let m = truth.eps_cov(abar);
    let e = DMatrix::from_row_slice(n, n, &values(cov.to_dense())[..n * n]);
    let want = (&e - &m).norm_squared() - m.norm_squared();
    let tol = 1e-3 * m.norm_squared();
    assert!((mean - want).abs() < tol, "OCM under GFF: {mean} vs {want}");
    // Probing along v instead would target I - sqrt(bbar) J, which this test tells apart.
    let wrong = DMatrix::identity(n, n) - truth.eps_map(abar) * bbar.sqrt();
    let wrong_want = (&e - &wrong).norm_squared() - wrong.norm_squared();
    assert!((wrong_want - want).abs() > 20.0 * tol, "the test must separate the two targets");
}

#[test]
fn sn_regresses_the_second_moment() {
    let dev = Default::default();
    let m = tensor::<Cpu, 4>(&[1.5, 0.2, 0.9, 2.0], [1, 1, 2, 2], &dev);
    let eps = tensor::<Cpu, 4>(&[1.0, -0.5, 0.3, 1.2], [1, 1, 2, 2], &dev);
    let want: f64 = [(1.5 - 1.0f64), (0.2 - 0.25), (0.9 - 0.09), (2.0 - 1.44)].iter().map(|x| x * x).sum();
    close(values(sn(m.clone(), eps.clone()))[0], want, 1.0, "SN loss");
    // Var = E[eps^2] - E[eps]^2, floored.
    let cov = sn_covariance(m, eps, 0.05);
    assert!(rel_err(&values(cov.diagonal()), &[0.5, 0.05, 0.81, 0.56]) < 1e-6);
}

#[test]
fn rademacher_probes_are_signs_with_identity_second_moment() {
    let dev = Default::default();
    covdiff_model::normals::seed::<Cpu>(&dev, 4);
    let v = values(rademacher::<Cpu>([20_000, 1, 2, 2], &dev));
    assert!(v.iter().all(|x| *x == 1.0 || *x == -1.0));
    let m = covdiff_core::dense::second_moment(&v, 4);
    // Off-diagonal MC error 1/sqrt(20000) = 0.007: allow 0.035.
    assert!((m - DMatrix::identity(4, 4)).abs().max() < 0.035);
}
