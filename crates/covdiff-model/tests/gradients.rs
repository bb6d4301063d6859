//! The covariance operators are differentiable, and their gradients equal
//! those of the same losses computed through the dense matrix.
//!
//! Loss: `||E||_F^2 + v^T E v` per image, summed. The structured path uses
//! the O(n d) formulas; the reference path builds `E` densely. Both run
//! through burn's autodiff, so any formula error shows up as a gradient error.
//! f32 throughout: tolerance 1e-3 relative to the largest gradient entry.

#![cfg(any(feature = "flex", feature = "ndarray"))]

mod common;

use burn::backend::Autodiff;
use burn::tensor::Tensor;
use common::*;
use covdiff_model::backends::Cpu;
use covdiff_model::{Covariance, KDct, LowRank, SpatialBasis};

type Ad = Autodiff<Cpu>;

/// Gradients of the structured loss and of its dense twin. Each graph is
/// built and consumed before the next, as in a training step.
fn both_grads<C: Covariance<Ad>>(
    make: impl Fn() -> C,
    v: Tensor<Ad, 4>,
    params: &[Tensor<Ad, 2>],
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let op = make();
    let structured = grad_of((op.frobenius_sq() + op.quadratic(v.clone())).sum(), params);
    let op = make();
    let [b, ..] = op.shape();
    let n = op.dim();
    let dense = op.to_dense();
    let vf = v.reshape([b, n, 1]);
    let quad = vf.clone().swap_dims(1, 2).matmul(dense.clone().matmul(vf)).sum();
    (structured, grad_of((dense.clone() * dense).sum() + quad, params))
}

fn grad_of(loss: Tensor<Ad, 1>, params: &[Tensor<Ad, 2>]) -> Vec<Vec<f64>> {
    let grads = loss.backward();
    params.iter().map(|p| values(p.grad(&grads).expect("parameter has a gradient"))).collect()
}

fn assert_close(a: &[Vec<f64>], b: &[Vec<f64>], what: &str) {
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        let e = rel_err(x, y);
        assert!(e < 1e-3, "{what}: gradient of parameter {k} off by {e}");
    }
}

#[test]
fn kdct_free_and_free_diag_gradients_match_dense() {
    let dev = Default::default();
    let mut rng = Rand::new(9);
    let (b, c, d) = (2, 3, 4);
    let n = c * d * d;
    let leaf = |v: Vec<f64>, rows: usize, cols: usize| tensor::<Ad, 2>(&v, [rows, cols], &dev).require_grad();
    let e = leaf(rng.uniform(b * n, 0.1, 1.0), b, n);
    let l = leaf(rng.normal(b * c * c, 0.6), b, c * c);
    let lam = leaf(rng.uniform(b * d * d, 0.1, 2.0), b, d * d);
    let a = leaf(rng.normal(d * d, 0.5), d, d);
    let bb = leaf(rng.normal(d * d, 0.5), d, d);
    let diags = leaf(rng.uniform(4 * d, 0.5, 1.5), 4, d);
    let v = tensor::<Ad, 4>(&rng.normal(b * n, 1.0), [b, c, d, d], &dev);
    let row = |k: usize| diags.clone().narrow(0, k, 1).reshape([d]);
    let core = vec![e.clone(), l.clone(), lam.clone()];
    let cases = [
        ("kdct", core.clone()),
        ("free", [core.clone(), vec![a.clone(), bb.clone()]].concat()),
        ("free-diag", [core.clone(), vec![diags.clone()]].concat()),
    ];
    for (name, params) in cases {
        let make = || {
            let basis = match name {
                "kdct" => SpatialBasis::dct(d, &dev),
                "free" => SpatialBasis::free(a.clone(), bb.clone()),
                _ => SpatialBasis::free_diag(row(0), row(1), row(2), row(3)),
            };
            KDct::new(
                e.clone().reshape([b, c, d, d]),
                l.clone().reshape([b, c, c]),
                lam.clone().reshape([b, d, d]),
                basis,
            )
        };
        let (gs, gr) = both_grads(make, v.clone(), &params);
        assert!(gs.iter().all(|g| g.iter().any(|x| x.abs() > 1e-6)), "{name}: gradients flow");
        assert_close(&gs, &gr, name);
    }
}

#[test]
fn low_rank_gradients_match_dense() {
    let dev = Default::default();
    let mut rng = Rand::new(10);
    let (b, c, d, rank) = (2, 1, 4, 3);
    let n = c * d * d;
    let e = tensor::<Ad, 2>(&rng.uniform(b * n, 0.1, 1.0), [b, n], &dev).require_grad();
    let r = tensor::<Ad, 2>(&rng.normal(b * n * rank, 0.4), [b, n * rank], &dev).require_grad();
    let v = tensor::<Ad, 4>(&rng.normal(b * n, 1.0), [b, c, d, d], &dev);
    let make = || LowRank::new(e.clone().reshape([b, c, d, d]), r.clone().reshape([b, n, rank]));
    let params = [e.clone(), r.clone()];
    let (gs, gd) = both_grads(make, v, &params);
    assert_close(&gs, &gd, "low-rank");
}
