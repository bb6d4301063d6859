//! One type for "whichever covariance this step uses", so samplers and the
//! ELBO can put isotropic, diagonal, low-rank and K-DCT side by side.

use super::{Covariance, Diagonal, Full2, Isotropic, KDct, LowRank};
use burn::tensor::{backend::Backend, Tensor};

#[derive(Clone, Debug)]
pub enum AnyCovariance<B: Backend> {
    Isotropic(Isotropic<B>),
    Diagonal(Diagonal<B>),
    LowRank(LowRank<B>),
    KDct(KDct<B>),
    /// A full 2 x 2 matrix per point (toy 2D).
    Full2(Full2<B>),
}

macro_rules! each {
    ($self:expr, $c:ident => $e:expr) => {
        match $self {
            AnyCovariance::Isotropic($c) => $e,
            AnyCovariance::Diagonal($c) => $e,
            AnyCovariance::LowRank($c) => $e,
            AnyCovariance::KDct($c) => $e,
            AnyCovariance::Full2($c) => $e,
        }
    };
}

impl<B: Backend> AnyCovariance<B> {
    /// `s I` for every image of a `[B, C, d, d]` batch.
    pub fn scalar(s: f64, shape: [usize; 4], device: &B::Device) -> Self {
        let [b, c, h, w] = shape;
        Self::Isotropic(Isotropic::new(Tensor::full([b], s, device), [c, h, w]))
    }
}

impl<B: Backend> Covariance<B> for AnyCovariance<B> {
    fn shape(&self) -> [usize; 4] {
        each!(self, c => c.shape())
    }
    fn device(&self) -> B::Device {
        each!(self, c => c.device())
    }
    fn matvec(&self, v: Tensor<B, 4>) -> Tensor<B, 4> {
        each!(self, c => c.matvec(v))
    }
    fn sample_parts(&self) -> (Tensor<B, 4>, Tensor<B, 4>) {
        each!(self, c => c.sample_parts())
    }
    fn diagonal(&self) -> Tensor<B, 4> {
        each!(self, c => c.diagonal())
    }
    fn frobenius_sq(&self) -> Tensor<B, 1> {
        each!(self, c => c.frobenius_sq())
    }
    fn shift_scale(&self, shift: f64, scale: f64) -> Self {
        match self {
            Self::Isotropic(c) => Self::Isotropic(c.shift_scale(shift, scale)),
            Self::Diagonal(c) => Self::Diagonal(c.shift_scale(shift, scale)),
            Self::LowRank(c) => Self::LowRank(c.shift_scale(shift, scale)),
            Self::KDct(c) => Self::KDct(c.shift_scale(shift, scale)),
            Self::Full2(c) => Self::Full2(c.shift_scale(shift, scale)),
        }
    }
    fn to_dense(&self) -> Tensor<B, 3> {
        each!(self, c => c.to_dense())
    }
}
