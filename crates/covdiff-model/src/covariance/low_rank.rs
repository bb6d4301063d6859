//! `E = diag(e) + R R^T`, `R` in `R^{n x r}` per image.

use super::{diag_embed, per_image_sum, Covariance};
use crate::normals::standard_normal;
use burn::tensor::{backend::Backend, Tensor};

#[derive(Clone, Debug)]
pub struct LowRank<B: Backend> {
    /// `[B, C, d, d]`, > 0.
    pub e: Tensor<B, 4>,
    /// `[B, n, r]`.
    pub r: Tensor<B, 3>,
}

impl<B: Backend> LowRank<B> {
    pub fn new(e: Tensor<B, 4>, r: Tensor<B, 3>) -> Self {
        let [b, c, h, w] = e.dims();
        let [br, n, _] = r.dims();
        assert_eq!((br, n), (b, c * h * w), "R must be [B, C d^2, rank]");
        Self { e, r }
    }

    pub fn rank(&self) -> usize {
        self.r.dims()[2]
    }

    /// `diag(R R^T)`, shaped like an image.
    fn rr_diagonal(&self) -> Tensor<B, 4> {
        (self.r.clone() * self.r.clone()).sum_dim(2).reshape(self.shape())
    }

    fn flat(&self, v: Tensor<B, 4>) -> Tensor<B, 3> {
        let [b, ..] = v.dims();
        v.reshape([b, self.dim(), 1])
    }
}

impl<B: Backend> Covariance<B> for LowRank<B> {
    fn shape(&self) -> [usize; 4] {
        self.e.dims()
    }
    fn device(&self) -> B::Device {
        self.e.device()
    }
    fn matvec(&self, v: Tensor<B, 4>) -> Tensor<B, 4> {
        let shape = v.dims();
        let rv = self.r.clone().matmul(self.r.clone().swap_dims(1, 2).matmul(self.flat(v.clone())));
        self.e.clone() * v + rv.reshape(shape)
    }
    fn sample_parts(&self) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, ..] = self.shape();
        let xi1 = standard_normal(self.shape(), &self.device());
        let xi2 = standard_normal([b, self.rank(), 1], &self.device());
        (self.e.clone().sqrt() * xi1.clone() + self.r.clone().matmul(xi2).reshape(self.shape()), xi1)
    }
    fn diagonal(&self) -> Tensor<B, 4> {
        self.e.clone() + self.rr_diagonal()
    }
    fn frobenius_sq(&self) -> Tensor<B, 1> {
        // ||diag(e) + R R^T||^2 = ||e||^2 + ||R^T R||^2 + 2 sum_i e_i (R R^T)_ii.
        let gram = self.r.clone().swap_dims(1, 2).matmul(self.r.clone());
        per_image_sum(self.e.clone().powi_scalar(2))
            + per_image_sum(gram.powi_scalar(2))
            + per_image_sum(self.e.clone() * self.rr_diagonal()) * 2.0
    }
    fn shift_scale(&self, shift: f64, scale: f64) -> Self {
        Self { e: self.e.clone() * scale + shift, r: self.r.clone() * scale.sqrt() }
    }
    fn to_dense(&self) -> Tensor<B, 3> {
        let b = self.shape()[0];
        diag_embed(self.e.clone().reshape([b, self.dim()])) + self.r.clone().matmul(self.r.clone().swap_dims(1, 2))
    }
}
