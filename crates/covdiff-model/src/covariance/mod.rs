//! Models of `E_t = Cov[eps | x_t]` (docs/maths.md, "Covariance models of E_t"),
//! as batched operators on image-shaped tensors `[B, C, d, d]`.
//!
//! Every operation is a composition of differentiable burn tensor ops, so
//! training can backpropagate through products, samples and norms. None of
//! them builds an `n x n` matrix, except [`Covariance::to_dense`], which is
//! for tests and small-n exact likelihoods.

mod any;
mod diagonal;
mod full2;
mod isotropic;
mod kdct;
mod low_rank;

pub use any::AnyCovariance;
pub use diagonal::Diagonal;
pub use full2::Full2;
pub use isotropic::Isotropic;
pub use kdct::KDct;
pub use low_rank::LowRank;

use burn::tensor::{backend::Backend, Distribution, Tensor, TensorData};

/// A symmetric positive (semi-)definite covariance of a batch of images.
pub trait Covariance<B: Backend>: Clone + Sized {
    /// `[B, C, d, d]`: the shape of the vectors it acts on.
    fn shape(&self) -> [usize; 4];

    fn device(&self) -> B::Device;

    /// `E v`, one product per batch entry.
    fn matvec(&self, v: Tensor<B, 4>) -> Tensor<B, 4>;

    /// A draw `g` of `N(0, E)` per batch entry, from the backend's generator, with the
    /// image-shaped standard normal `xi` whose `sqrt(e) xi` term it contains (Alg. 1's `xi1`;
    /// the paper's K-DCT covariance clipping bounds `g` by `|xi|`, A.7).
    fn sample_parts(&self) -> (Tensor<B, 4>, Tensor<B, 4>);

    /// A draw of `N(0, E)` per batch entry.
    fn sample(&self) -> Tensor<B, 4> {
        self.sample_parts().0
    }

    /// `diag(E)`, shaped like an image.
    fn diagonal(&self) -> Tensor<B, 4>;

    /// `||E||_F^2`, one value per batch entry.
    fn frobenius_sq(&self) -> Tensor<B, 1>;

    /// `shift I + scale E`, in the same structure (docs/maths.md: `btilde I + kappa E_t`).
    /// `scale` must be >= 0.
    fn shift_scale(&self, shift: f64, scale: f64) -> Self;

    /// The dense `[B, n, n]` matrix, channel-major `vec` (docs/maths.md, "Tensors and ordering").
    fn to_dense(&self) -> Tensor<B, 3>;

    /// `n = C d^2`.
    fn dim(&self) -> usize {
        let [_, c, h, w] = self.shape();
        c * h * w
    }

    /// `v^T E v`, one value per batch entry.
    fn quadratic(&self, v: Tensor<B, 4>) -> Tensor<B, 1> {
        per_image_sum(v.clone() * self.matvec(v))
    }
}

/// Standard normal noise of the given shape, fixed by the backend's generator (`B::seed`).
///
/// On the CPU backends (flex, ndarray) the backend's own normal draw costs about 20 ns a
/// number, more than every other step of a K-DCT sample together (Alg. 1 draws `2n`
/// numbers). There the numbers come from rand's Ziggurat sampler on the host, in blocks of
/// 8192 drawn in parallel, each from its own xoshiro256++ stream (ChaCha12
/// cost twice as much), all seeded by one draw of the backend's generator, so that a seeded run
/// stays reproducible on any number of threads. GPU backends draw on the device.
pub fn standard_normal<B: Backend, const D: usize>(shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
    let name = B::name(device);
    if !(name.contains("flex") || name.contains("ndarray")) {
        return Tensor::random(shape, Distribution::Normal(0.0, 1.0), device);
    }
    use rand::{RngExt, SeedableRng};
    // 3 x 24 bits of the backend's generator seed the host's.
    let u = Tensor::<B, 1>::random([3], Distribution::Uniform(0.0, 1.0), device).into_data();
    let seed = u.iter::<f64>().fold(0u64, |acc, u| (acc << 24) ^ (u * (1u64 << 24) as f64) as u64);
    let n = shape.iter().product::<usize>();
    let mut z = vec![0.0f32; n];
    // Fixed blocks, each with its own stream (the seed and the block's index), so the numbers
    // do not depend on how many threads draw them. Xoshiro256++ by name, not `SmallRng` (which
    // is Xoshiro128++ on wasm32), so the browser draws the CLI's numbers.
    crate::kernels::for_blocks(&mut z, NORMAL_BLOCK, |block, out| {
        let stream = seed ^ (block as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(stream);
        out.iter_mut().for_each(|z| *z = rng.sample(rand_distr::StandardNormal));
    });
    Tensor::from_data(TensorData::new(z, shape), device)
}

/// Numbers per independently seeded block of [`standard_normal`]'s host draw.
const NORMAL_BLOCK: usize = 1 << 13;

/// Sum over everything but the batch dimension.
pub(crate) fn per_image_sum<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, 1> {
    let b = x.dims()[0];
    x.reshape([b as i32, -1]).sum_dim(1).reshape([b])
}

/// `[B, n] -> [B, n, n]` diagonal matrices.
pub(crate) fn diag_embed<B: Backend>(v: Tensor<B, 2>) -> Tensor<B, 3> {
    let [b, n] = v.dims();
    let eye = Tensor::<B, 2>::eye(n, &v.device()).reshape([1, n, n]);
    eye * v.reshape([b, 1, n])
}

/// Broadcast a per-image scalar `[B]` against `[B, ...]`.
pub(crate) fn per_image<B: Backend, const D: usize>(s: Tensor<B, 1>) -> Tensor<B, D> {
    let mut shape = [1usize; D];
    shape[0] = s.dims()[0];
    s.reshape(shape)
}
