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

use burn::tensor::{backend::Backend, Tensor};

/// A symmetric positive (semi-)definite covariance of a batch of images.
pub trait Covariance<B: Backend>: Clone + Sized {
    /// `[B, C, d, d]`: the shape of the vectors it acts on.
    fn shape(&self) -> [usize; 4];

    fn device(&self) -> B::Device;

    /// `E v`, one product per batch entry.
    fn matvec(&self, v: Tensor<B, 4>) -> Tensor<B, 4>;

    /// A draw `g` of `N(0, E)` per batch entry, from covdiff's stream (`normals`), with the
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
