//! A full 2 x 2 covariance per point (the 2D thesis, docs/maths.md "2D anisotropic
//! covariance"). Points are viewed as `[N, 2, 1, 1]` images so that every
//! [`Covariance`] algorithm (samplers, objectives) applies unchanged.
//!
//! Stored as the symmetric entries `S = [[p, q], [q, r]]`; built from a
//! Cholesky factor `L = [[a, 0], [b, c]]` with `a, c > 0`.

use super::Covariance;
use crate::normals::standard_normal;
use burn::tensor::{backend::Backend, Tensor};

#[derive(Clone, Debug)]
pub struct Full2<B: Backend> {
    pub p: Tensor<B, 1>,
    pub q: Tensor<B, 1>,
    pub r: Tensor<B, 1>,
}

impl<B: Backend> Full2<B> {
    /// `S = L L^T` with `L = [[a, 0], [b, c]]`: `p = a^2`, `q = a b`, `r = b^2 + c^2`.
    pub fn from_cholesky(a: Tensor<B, 1>, b: Tensor<B, 1>, c: Tensor<B, 1>) -> Self {
        Self { p: a.clone() * a.clone(), q: a * b.clone(), r: b.clone() * b + c.clone() * c }
    }

    /// `s I` for `n` points.
    pub fn scalar(s: f64, n: usize, device: &B::Device) -> Self {
        let ones = Tensor::<B, 1>::ones([n], device);
        Self { p: ones.clone() * s, q: ones.zeros_like(), r: ones * s }
    }

    /// From `[N, 2]` point tensors to the `[N, 2, 1, 1]` image view and back.
    pub fn as_image(x: Tensor<B, 2>) -> Tensor<B, 4> {
        let [n, _] = x.dims();
        x.reshape([n, 2, 1, 1])
    }

    pub fn as_points(x: Tensor<B, 4>) -> Tensor<B, 2> {
        let [n, ..] = x.dims();
        x.reshape([n, 2])
    }

    fn cols(v: Tensor<B, 4>) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let [n, ..] = v.dims();
        let v = v.reshape([n, 2]);
        (v.clone().narrow(1, 0, 1).reshape([n]), v.narrow(1, 1, 1).reshape([n]))
    }

    fn join(a: Tensor<B, 1>, b: Tensor<B, 1>) -> Tensor<B, 4> {
        let n = a.dims()[0];
        Tensor::stack::<2>(vec![a, b], 1).reshape([n, 2, 1, 1])
    }

    /// `det S = p r - q^2`.
    pub fn det(&self) -> Tensor<B, 1> {
        self.p.clone() * self.r.clone() - self.q.clone() * self.q.clone()
    }

    /// `log det S`.
    pub fn logdet(&self) -> Tensor<B, 1> {
        self.det().log()
    }

    /// `v^T S^-1 v = (r v1^2 - 2 q v1 v2 + p v2^2) / det S`.
    pub fn inv_quadratic(&self, v: Tensor<B, 4>) -> Tensor<B, 1> {
        let (v1, v2) = Self::cols(v);
        (self.r.clone() * v1.clone() * v1.clone() - self.q.clone() * v1 * v2.clone() * 2.0
            + self.p.clone() * v2.clone() * v2)
            / self.det()
    }

    /// `tr(S_other^-1 S)`.
    pub fn trace_solve(&self, other: &Self) -> Tensor<B, 1> {
        (other.r.clone() * self.p.clone() - other.q.clone() * self.q.clone() * 2.0 + other.p.clone() * self.r.clone())
            / other.det()
    }

    /// `KL(N(m_self, S_self) || N(m_other, S_other))`, `m`s as `[N, 2, 1, 1]` (docs/maths.md).
    pub fn kl(&self, m_self: Tensor<B, 4>, other: &Self, m_other: Tensor<B, 4>) -> Tensor<B, 1> {
        (self.trace_solve(other) + other.inv_quadratic(m_other - m_self) - 2.0 + other.logdet() - self.logdet()) * 0.5
    }

    /// `log N(x; m, S)`.
    pub fn log_density(&self, x: Tensor<B, 4>, m: Tensor<B, 4>) -> Tensor<B, 1> {
        (self.inv_quadratic(x - m) + self.logdet() + 2.0 * (2.0 * std::f64::consts::PI).ln()) * -0.5
    }

    /// The Cholesky factor `(a, b, c)`: `a = sqrt(p)`, `b = q / a`, `c = sqrt(r - b^2)`.
    pub fn cholesky(&self) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
        let a = self.p.clone().sqrt();
        let b = self.q.clone() / a.clone();
        let c = (self.r.clone() - b.clone() * b.clone()).clamp_min(0.0).sqrt();
        (a, b, c)
    }

    /// `L z` for standard normal `z` shaped `[N, 2, 1, 1]`.
    pub fn colour(&self, z: Tensor<B, 4>) -> Tensor<B, 4> {
        let (a, b, c) = self.cholesky();
        let (z1, z2) = Self::cols(z);
        Self::join(a * z1.clone(), b * z1 + c * z2)
    }
}

impl<B: Backend> Covariance<B> for Full2<B> {
    fn shape(&self) -> [usize; 4] {
        [self.p.dims()[0], 2, 1, 1]
    }
    fn device(&self) -> B::Device {
        self.p.device()
    }
    fn matvec(&self, v: Tensor<B, 4>) -> Tensor<B, 4> {
        let (v1, v2) = Self::cols(v);
        Self::join(self.p.clone() * v1.clone() + self.q.clone() * v2.clone(), self.q.clone() * v1 + self.r.clone() * v2)
    }
    fn sample_parts(&self) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let z = standard_normal(self.shape(), &self.device());
        (self.colour(z.clone()), z)
    }
    fn diagonal(&self) -> Tensor<B, 4> {
        Self::join(self.p.clone(), self.r.clone())
    }
    fn frobenius_sq(&self) -> Tensor<B, 1> {
        self.p.clone().powi_scalar(2) + self.q.clone().powi_scalar(2) * 2.0 + self.r.clone().powi_scalar(2)
    }
    fn shift_scale(&self, shift: f64, scale: f64) -> Self {
        Self { p: self.p.clone() * scale + shift, q: self.q.clone() * scale, r: self.r.clone() * scale + shift }
    }
    fn to_dense(&self) -> Tensor<B, 3> {
        let n = self.p.dims()[0];
        Tensor::stack::<2>(vec![self.p.clone(), self.q.clone(), self.q.clone(), self.r.clone()], 1).reshape([n, 2, 2])
    }
}
