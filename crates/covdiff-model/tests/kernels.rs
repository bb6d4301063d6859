//! covdiff's host kernels (`kernels`) against burn's own operations on the same backend:
//! SiLU forward and backward (burn composes it from `sigmoid` and its generic autodiff).

use burn::backend::Autodiff;
use burn::tensor::{Distribution, Tensor};
use covdiff_model::backends::Cpu;

type Ad = Autodiff<Cpu>;

#[test]
fn silu_and_its_gradient_match_burns() {
    let dev = Default::default();
    // Wide inputs, so both tails of the sigmoid are exercised; a strided view, so the copy path is.
    let x = Tensor::<Cpu, 3>::random([3, 40, 50], Distribution::Normal(0.0, 6.0), &dev).swap_dims(1, 2);
    let g = Tensor::<Cpu, 3>::random([3, 50, 40], Distribution::Normal(0.0, 1.0), &dev);
    let ours = covdiff_model::kernels::silu(x.clone());
    let theirs = burn::tensor::activation::silu(x.clone());
    let diff = (ours - theirs).abs().max().into_scalar();
    assert!(diff < 1e-5, "forward: {diff}");

    let grad = |f: &dyn Fn(Tensor<Ad, 3>) -> Tensor<Ad, 3>| {
        let xa = Tensor::<Ad, 3>::from_inner(x.clone()).require_grad();
        let gr = (f(xa.clone()) * Tensor::from_inner(g.clone())).sum().backward();
        xa.grad(&gr).unwrap()
    };
    let ours = grad(&|x| covdiff_model::kernels::silu(x));
    let theirs = grad(&|x| burn::tensor::activation::silu(x));
    let diff = (ours - theirs).abs().max().into_scalar();
    assert!(diff < 1e-5, "backward: {diff}");
}
