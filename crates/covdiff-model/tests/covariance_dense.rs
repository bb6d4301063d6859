//! Every covariance operation equals its dense matrix (docs/maths.md, "Covariance models").
//!
//! The references are built here in f64 with nalgebra and explicit Kronecker
//! products (covdiff-core's `dense`), independently of the burn operators.
//! Operators run in f32; products sum up to n = 768 terms of size O(1), so
//! we allow 2e-4 relative to the largest reference entry.

mod common;

use burn::tensor::backend::Backend;
use common::*;
use covdiff_core::dense::{dct2_matrix, kdct_family, separable_matrix};
use covdiff_model::{Covariance, Diagonal, Isotropic, KDct, LowRank, SpatialBasis};
use nalgebra::{DMatrix, DVector};

const TOL: f64 = 2e-4;

/// The dense truth and the operator for one random covariance of a batch of 2.
struct Case<B: Backend, C: Covariance<B>> {
    name: String,
    op: C,
    dense: Vec<DMatrix<f64>>,
    _b: std::marker::PhantomData<B>,
}

fn check<B: Backend, C: Covariance<B>>(case: Case<B, C>, rng: &mut Rand) {
    let Case { name, op, dense, .. } = case;
    let [b, c, d, _] = op.shape();
    let n = c * d * d;
    let device = op.device();

    // Covariances are symmetric, so nalgebra's column-major storage reads as row-major.
    let got = values(op.to_dense());
    for (i, m) in dense.iter().enumerate() {
        let e = rel_err(&got[i * n * n..(i + 1) * n * n], m.as_slice());
        assert!(e < TOL, "{name}: to_dense off by {e}");
    }

    let v = rng.normal(b * n, 1.0);
    let vt = tensor::<B, 4>(&v, [b, c, d, d], &device);
    let ev = values(op.matvec(vt.clone()));
    let quad = values(op.quadratic(vt));
    let diag = values(op.diagonal());
    let frob = values(op.frobenius_sq());
    let (shift, scale) = (0.37, 1.9);
    let shifted = values(op.shift_scale(shift, scale).to_dense());
    for (i, m) in dense.iter().enumerate() {
        let vi = vector(&v, i, n);
        let want = m * &vi;
        assert!(rel_err(&ev[i * n..(i + 1) * n], want.as_slice()) < TOL, "{name}: matvec");
        let q = vi.dot(&want);
        assert!((quad[i] - q).abs() < TOL * q.abs().max(1.0) * 10.0, "{name}: quadratic {} vs {q}", quad[i]);
        let dg = m.diagonal();
        assert!(rel_err(&diag[i * n..(i + 1) * n], dg.as_slice()) < TOL, "{name}: diagonal");
        let f = m.norm_squared();
        assert!((frob[i] - f).abs() < TOL * f, "{name}: frobenius {} vs {f}", frob[i]);
        let s = DMatrix::identity(n, n) * shift + m * scale;
        assert!(rel_err(&shifted[i * n * n..(i + 1) * n * n], s.as_slice()) < TOL, "{name}: shift_scale");
    }
}

const SIZES: [(usize, usize); 6] = [(1, 4), (3, 4), (1, 5), (3, 8), (1, 16), (3, 16)];

pub fn kdct_family_suite<B: Backend>(device: &B::Device) {
    let mut rng = Rand::new(42);
    for (c, d) in SIZES {
        let b = 2;
        let n = c * d * d;
        let e = rng.uniform(b * n, 0.1, 1.0);
        let l = rng.normal(b * c * c, 0.6);
        let lam = rng.uniform(b * d * d, 0.1, 2.0);
        let bases: Vec<(&str, SpatialBasis<B>, DMatrix<f64>)> = {
            let a = rng.normal(d * d, 1.0 / (d as f64).sqrt());
            let bb = rng.normal(d * d, 1.0 / (d as f64).sqrt());
            let diags: Vec<Vec<f64>> = (0..4).map(|_| rng.uniform(d, 0.5, 1.5)).collect();
            let f = covdiff_core::dct::dct_matrix(d);
            let scaled =
                |l: &[f64], r: &[f64]| -> Vec<f64> { (0..d * d).map(|k| l[k / d] * f[k] * r[k % d]).collect() };
            let (fa, fb) = (scaled(&diags[0], &diags[1]), scaled(&diags[2], &diags[3]));
            let t1 = |v: &[f64]| tensor::<B, 1>(v, [d], device);
            vec![
                ("kdct", SpatialBasis::dct(d, device), dct2_matrix(d)),
                (
                    "free",
                    SpatialBasis::free(tensor::<B, 2>(&a, [d, d], device), tensor::<B, 2>(&bb, [d, d], device)),
                    separable_matrix(&a, &bb, d),
                ),
                (
                    "free-diag",
                    SpatialBasis::free_diag(t1(&diags[0]), t1(&diags[1]), t1(&diags[2]), t1(&diags[3])),
                    separable_matrix(&fa, &fb, d),
                ),
            ]
        };
        for (name, basis, t) in bases {
            let dense = (0..b)
                .map(|i| {
                    kdct_family(
                        &e[i * n..(i + 1) * n],
                        &l[i * c * c..(i + 1) * c * c],
                        &lam[i * d * d..(i + 1) * d * d],
                        &t,
                        c,
                    )
                })
                .collect();
            let op = KDct::new(
                tensor::<B, 4>(&e, [b, c, d, d], device),
                tensor::<B, 3>(&l, [b, c, c], device),
                tensor::<B, 3>(&lam, [b, d, d], device),
                basis,
            );
            check(Case { name: format!("{name} C={c} d={d}"), op, dense, _b: Default::default() }, &mut rng);
        }
    }
}

pub fn simple_families_suite<B: Backend>(device: &B::Device) {
    let mut rng = Rand::new(7);
    for (c, d) in SIZES {
        let b = 2;
        let n = c * d * d;
        let e = rng.uniform(b * n, 0.1, 1.0);
        let diag_dense = |i: usize| DMatrix::from_diagonal(&DVector::from_column_slice(&e[i * n..(i + 1) * n]));

        let s = rng.uniform(b, 0.2, 3.0);
        let op = Isotropic::new(tensor::<B, 1>(&s, [b], device), [c, d, d]);
        let dense = (0..b).map(|i| DMatrix::identity(n, n) * s[i]).collect();
        check(Case { name: format!("isotropic C={c} d={d}"), op, dense, _b: Default::default() }, &mut rng);

        let op = Diagonal::new(tensor::<B, 4>(&e, [b, c, d, d], device));
        let dense = (0..b).map(diag_dense).collect();
        check(Case { name: format!("diagonal C={c} d={d}"), op, dense, _b: Default::default() }, &mut rng);

        let rank = 3;
        let r = rng.normal(b * n * rank, 0.3);
        let op = LowRank::new(tensor::<B, 4>(&e, [b, c, d, d], device), tensor::<B, 3>(&r, [b, n, rank], device));
        let dense = (0..b)
            .map(|i| {
                let ri = DMatrix::from_row_slice(n, rank, &r[i * n * rank..(i + 1) * n * rank]);
                diag_dense(i) + &ri * ri.transpose()
            })
            .collect();
        check(Case { name: format!("low-rank C={c} d={d}"), op, dense, _b: Default::default() }, &mut rng);
    }
}

/// Empirical covariance of `reps x batch` samples against `to_dense`, entry by entry.
/// An entry's Monte Carlo standard error is `sqrt((S_ii S_jj + S_ij^2) / N)`; we allow 5 of them.
pub fn monte_carlo_suite<B: Backend>(device: &B::Device) {
    let mut rng = Rand::new(3);
    let (c, d) = (3, 4);
    let n = c * d * d;
    let (batch, reps) = (10_000, 10); // 100k samples
    let e = rng.uniform(n, 0.1, 1.0);
    let l = rng.normal(c * c, 0.6);
    let lam = rng.uniform(d * d, 0.1, 2.0);
    let rep = |v: &[f64]| v.repeat(batch);
    let free_a = rng.normal(d * d, 0.5);
    let free_b = rng.normal(d * d, 0.5);
    let r = rng.normal(n * 2, 0.4);
    let e_t = tensor::<B, 4>(&rep(&e), [batch, c, d, d], device);
    let kdct = |basis| {
        KDct::new(
            e_t.clone(),
            tensor::<B, 3>(&rep(&l), [batch, c, c], device),
            tensor::<B, 3>(&rep(&lam), [batch, d, d], device),
            basis,
        )
    };
    let free = SpatialBasis::free(tensor::<B, 2>(&free_a, [d, d], device), tensor::<B, 2>(&free_b, [d, d], device));
    mc_check("kdct", kdct(SpatialBasis::dct(d, device)), reps);
    mc_check("free", kdct(free), reps);
    mc_check("low-rank", LowRank::new(e_t.clone(), tensor::<B, 3>(&rep(&r), [batch, n, 2], device)), reps);
    mc_check("diagonal", Diagonal::new(e_t), reps);
}

fn mc_check<B: Backend, C: Covariance<B>>(name: &str, op: C, reps: usize) {
    let [batch, ..] = op.shape();
    let n = op.dim();
    let truth = matrix(&values(op.to_dense().narrow(0, 0, 1)), 0, n);
    let mut acc = DMatrix::<f64>::zeros(n, n);
    for _ in 0..reps {
        let s = values(op.sample());
        let x = DMatrix::from_row_slice(batch, n, &s);
        acc += x.transpose() * &x;
    }
    let count = (batch * reps) as f64;
    let emp = acc / count;
    for i in 0..n {
        for j in 0..n {
            let se = ((truth[(i, i)] * truth[(j, j)] + truth[(i, j)].powi(2)) / count).sqrt();
            let diff = (emp[(i, j)] - truth[(i, j)]).abs();
            assert!(diff < 5.0 * se + 1e-5, "{name}: entry ({i},{j}) {} vs {} (se {se})", emp[(i, j)], truth[(i, j)]);
        }
    }
}

#[cfg(any(feature = "flex", feature = "ndarray"))]
mod cpu {
    use covdiff_model::backends::Cpu;

    #[test]
    fn kdct_family_equals_dense_on_cpu() {
        super::kdct_family_suite::<Cpu>(&Default::default());
    }

    #[test]
    fn isotropic_diagonal_low_rank_equal_dense_on_cpu() {
        super::simple_families_suite::<Cpu>(&Default::default());
    }

    #[test]
    fn samples_have_the_dense_covariance_on_cpu() {
        covdiff_model::normals::seed::<Cpu>(&Default::default(), 17);
        super::monte_carlo_suite::<Cpu>(&Default::default());
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use covdiff_model::backends::Wgpu;

    /// The wgpu device, or None (with a note) where no adapter exists. CI sets
    /// COVDIFF_REQUIRE_WGPU=1, and then a missing adapter fails the test.
    fn device() -> Option<burn::backend::wgpu::WgpuDevice> {
        let dev = burn::backend::wgpu::WgpuDevice::default();
        let probe = std::panic::catch_unwind(|| {
            let t = burn::tensor::Tensor::<Wgpu, 1>::ones([2], &dev);
            t.sum().into_scalar()
        });
        match probe {
            Ok(_) => Some(dev),
            Err(_) if std::env::var("COVDIFF_REQUIRE_WGPU").is_ok_and(|v| v == "1") => panic!("no wgpu adapter"),
            Err(_) => {
                eprintln!("no wgpu adapter here: wgpu tests not run");
                None
            }
        }
    }

    #[test]
    fn kdct_family_equals_dense_on_wgpu() {
        if let Some(d) = device() {
            super::kdct_family_suite::<Wgpu>(&d);
        }
    }

    #[test]
    fn isotropic_diagonal_low_rank_equal_dense_on_wgpu() {
        if let Some(d) = device() {
            super::simple_families_suite::<Wgpu>(&d);
        }
    }

    #[test]
    fn samples_have_the_dense_covariance_on_wgpu() {
        if let Some(d) = device() {
            super::monte_carlo_suite::<Wgpu>(&d);
        }
    }
}
