//! `E = diag(e)`.

use super::{diag_embed, per_image_sum, Covariance};
use crate::normals::standard_normal;
use burn::tensor::{backend::Backend, Tensor};

#[derive(Clone, Debug)]
pub struct Diagonal<B: Backend> {
    /// `[B, C, d, d]`, > 0.
    pub e: Tensor<B, 4>,
}

impl<B: Backend> Diagonal<B> {
    pub fn new(e: Tensor<B, 4>) -> Self {
        Self { e }
    }
}

impl<B: Backend> Covariance<B> for Diagonal<B> {
    fn shape(&self) -> [usize; 4] {
        self.e.dims()
    }
    fn device(&self) -> B::Device {
        self.e.device()
    }
    fn matvec(&self, v: Tensor<B, 4>) -> Tensor<B, 4> {
        self.e.clone() * v
    }
    fn sample_parts(&self) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let xi = standard_normal(self.shape(), &self.device());
        (xi.clone() * self.e.clone().sqrt(), xi)
    }
    fn diagonal(&self) -> Tensor<B, 4> {
        self.e.clone()
    }
    fn frobenius_sq(&self) -> Tensor<B, 1> {
        per_image_sum(self.e.clone().powi_scalar(2))
    }
    fn shift_scale(&self, shift: f64, scale: f64) -> Self {
        Self { e: self.e.clone() * scale + shift }
    }
    fn to_dense(&self) -> Tensor<B, 3> {
        let b = self.shape()[0];
        diag_embed(self.e.clone().reshape([b, self.dim()]))
    }
}
