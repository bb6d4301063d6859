//! `E = s I`, one scalar per image.

use super::{diag_embed, per_image, Covariance};
use crate::normals::standard_normal;
use burn::tensor::{backend::Backend, Tensor};

#[derive(Clone, Debug)]
pub struct Isotropic<B: Backend> {
    /// `[B]`, > 0.
    pub s: Tensor<B, 1>,
    shape: [usize; 4],
}

impl<B: Backend> Isotropic<B> {
    /// `s` is `[B]`; `image` is `[C, d, d]`.
    pub fn new(s: Tensor<B, 1>, image: [usize; 3]) -> Self {
        let shape = [s.dims()[0], image[0], image[1], image[2]];
        Self { s, shape }
    }
}

impl<B: Backend> Covariance<B> for Isotropic<B> {
    fn shape(&self) -> [usize; 4] {
        self.shape
    }
    fn device(&self) -> B::Device {
        self.s.device()
    }
    fn matvec(&self, v: Tensor<B, 4>) -> Tensor<B, 4> {
        v * per_image::<B, 4>(self.s.clone())
    }
    fn sample_parts(&self) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let xi = standard_normal(self.shape, &self.device());
        (xi.clone() * per_image::<B, 4>(self.s.clone().sqrt()), xi)
    }
    fn diagonal(&self) -> Tensor<B, 4> {
        Tensor::ones(self.shape, &self.device()) * per_image::<B, 4>(self.s.clone())
    }
    fn frobenius_sq(&self) -> Tensor<B, 1> {
        self.s.clone().powi_scalar(2) * self.dim() as f64
    }
    fn shift_scale(&self, shift: f64, scale: f64) -> Self {
        Self { s: self.s.clone() * scale + shift, shape: self.shape }
    }
    fn to_dense(&self) -> Tensor<B, 3> {
        let [b, ..] = self.shape;
        let ones = Tensor::<B, 2>::ones([b, self.dim()], &self.device());
        diag_embed(ones * self.s.clone().reshape([b, 1]))
    }
}
