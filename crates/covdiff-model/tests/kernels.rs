//! covdiff's host kernels (`kernels`) against burn's own operations on the same backend:
//! SiLU forward and backward (burn composes it from `sigmoid` and its generic autodiff).

use burn::backend::Autodiff;
use burn::tensor::{Distribution, Tensor};
use covdiff_model::backends::Cpu;

type Ad = Autodiff<Cpu>;

/// The kernels are taken on this backend (the tests would compare burn with itself otherwise).
#[test]
fn flex_has_the_host_kernels() {
    assert!(covdiff_model::kernels::has_host_kernels::<Cpu>());
    assert!(covdiff_model::kernels::has_host_kernels::<Ad>());
}

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

/// The group-norm kernel (alone and fused with SiLU) against the same maths in burn's tensor
/// operations (`group_norm_ops`, then burn's `silu`), forward and all three gradients.
#[test]
fn group_norm_and_its_gradients_match_burns() {
    use burn::module::Param;
    use burn::nn::{GroupNorm, GroupNormConfig};
    use covdiff_model::unet::{group_norm, group_norm_ops, group_norm_silu};
    let dev = Default::default();
    let (b, c, h, w, groups) = (3, 8, 5, 7, 4);
    // An offset mean, so the variance's cancellation would show.
    let x = Tensor::<Cpu, 4>::random([b, c, h, w], Distribution::Normal(3.0, 2.0), &dev);
    let dy = Tensor::<Cpu, 4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &dev);
    let gamma = Tensor::<Cpu, 1>::random([c], Distribution::Normal(1.0, 0.5), &dev);
    let beta = Tensor::<Cpu, 1>::random([c], Distribution::Normal(0.0, 0.5), &dev);
    let norm = || {
        let mut n: GroupNorm<Ad> = GroupNormConfig::new(groups, c).with_epsilon(1e-5).init(&dev);
        n.gamma = Some(Param::from_tensor(Tensor::from_inner(gamma.clone()).require_grad()));
        n.beta = Some(Param::from_tensor(Tensor::from_inner(beta.clone()).require_grad()));
        n
    };
    type Run = dyn Fn(&GroupNorm<Ad>, Tensor<Ad, 4>) -> Tensor<Ad, 4>;
    let run = |f: &Run| {
        let n = norm();
        let xa = Tensor::<Ad, 4>::from_inner(x.clone()).require_grad();
        let y = f(&n, xa.clone());
        let gr = (y.clone() * Tensor::from_inner(dy.clone())).sum().backward();
        let grads = [
            xa.grad(&gr).unwrap().flatten::<1>(0, 3),
            n.gamma.as_ref().unwrap().val().grad(&gr).unwrap(),
            n.beta.as_ref().unwrap().val().grad(&gr).unwrap(),
        ];
        (y.inner(), grads)
    };
    let cases: [(&str, &Run, &Run); 2] = [
        ("group norm", &|n, x| group_norm(n, x), &|n, x| group_norm_ops(n, x)),
        ("group norm + silu", &|n, x| group_norm_silu(n, x), &|n, x| {
            burn::tensor::activation::silu(group_norm_ops(n, x))
        }),
    ];
    for (name, ours, theirs) in cases {
        let ((y, g), (y_ref, g_ref)) = (run(ours), run(theirs));
        let diff = (y - y_ref).abs().max().into_scalar();
        assert!(diff < 1e-4, "{name} forward: {diff}");
        for (what, (a, b)) in ["x", "gamma", "beta"].iter().zip(g.into_iter().zip(g_ref)) {
            let scale = b.clone().abs().max().into_scalar().max(1.0);
            let diff = (a - b).abs().max().into_scalar() / scale;
            assert!(diff < 1e-4, "{name} d/d{what}: {diff}");
        }
    }
}

/// The K-DCT structured term by the host kernel against the same maths in burn's tensor
/// operations (`SpatialBasis`'s transforms), for the DCT and a free basis, analysing or not.
#[test]
fn kdct_structured_matches_the_basis_transforms() {
    use covdiff_model::SpatialBasis;
    let dev = Default::default();
    // d = 8 and 64: the DCT takes the mirror route (half-size products), the free basis the
    // dense one (the covariance hands d >= 32 to the kernel).
    for (n, c, d) in [(3, 3, 8), (2, 3, 64)] {
        let normal = || Distribution::Normal(0.0, 1.0);
        let v = Tensor::<Cpu, 4>::random([n, c, d, d], normal(), &dev);
        let mix = Tensor::<Cpu, 3>::random([n, c, c], normal(), &dev);
        let lam = Tensor::<Cpu, 3>::random([n, d, d], Distribution::Uniform(0.1, 1.0), &dev);
        let free = SpatialBasis::free(Tensor::random([d, d], normal(), &dev), Tensor::random([d, d], normal(), &dev));
        for basis in [SpatialBasis::dct(d, &dev), free] {
            for (analyse, with_diagonal) in [(true, false), (false, false), (true, true), (false, true)] {
                // The optional diagonal term g * w, here e * v.
                let e = Tensor::<Cpu, 4>::random([n, c, d, d], Distribution::Uniform(0.1, 1.0), &dev);
                let diagonal = with_diagonal.then_some((&e, &v));
                let (rows, cols) = (basis.rows(), basis.cols());
                let ours = covdiff_model::kernels::kdct_structured(&v, &mix, &lam, [&rows, &cols], diagonal, analyse)
                    .expect("flex has the kernel");
                let mixed = mix.clone().matmul(v.clone().reshape([n, c, d * d])).reshape([n, c, d, d]);
                let coefficients = if analyse { basis.forward(mixed) } else { mixed };
                let mut theirs = basis.adjoint(coefficients * lam.clone().unsqueeze_dim::<4>(1));
                if with_diagonal {
                    theirs = theirs + e * v.clone();
                }
                let scale = theirs.clone().abs().max().into_scalar();
                let diff = (ours - theirs).abs().max().into_scalar() / scale;
                assert!(diff < 1e-5, "d {d}, analyse {analyse}, diagonal {with_diagonal}: {diff}");
            }
        }
    }
}

/// The softmax kernel against burn's `softmax`, forward and backward, on rows longer and
/// shorter than a SIMD lane group and with large logits.
#[test]
fn softmax_and_its_gradient_match_burns() {
    let dev = Default::default();
    for row in [5, 16, 37, 196] {
        let x = Tensor::<Cpu, 3>::random([2, 7, row], Distribution::Normal(0.0, 20.0), &dev);
        let g = Tensor::<Cpu, 3>::random([2, 7, row], Distribution::Normal(0.0, 1.0), &dev);
        let run = |f: &dyn Fn(Tensor<Ad, 3>) -> Tensor<Ad, 3>| {
            let xa = Tensor::<Ad, 3>::from_inner(x.clone()).require_grad();
            let y = f(xa.clone());
            let gr = (y.clone() * Tensor::from_inner(g.clone())).sum().backward();
            (y.inner(), xa.grad(&gr).unwrap())
        };
        let (y, dx) = run(&|x| covdiff_model::kernels::softmax_last(x));
        let (y_ref, dx_ref) = run(&|x| burn::tensor::activation::softmax(x, 2));
        let diff = (y - y_ref).abs().max().into_scalar();
        assert!(diff < 1e-6, "row {row} forward: {diff}");
        let diff = (dx - dx_ref).abs().max().into_scalar();
        assert!(diff < 1e-5, "row {row} backward: {diff}");
    }
}
