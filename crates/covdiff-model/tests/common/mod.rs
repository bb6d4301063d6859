//! Shared test support: random parameters, dense references, tensor I/O.
#![allow(dead_code)]

use burn::tensor::{backend::Backend, Tensor, TensorData};

pub mod truth;
use nalgebra::{DMatrix, DVector};
use rand::{rngs::StdRng, RngExt, SeedableRng};
use rand_distr::StandardNormal;

pub struct Rand(pub StdRng);

impl Rand {
    pub fn new(seed: u64) -> Self {
        Self(StdRng::seed_from_u64(seed))
    }
    pub fn uniform(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| self.0.random_range(lo..hi)).collect()
    }
    pub fn normal(&mut self, n: usize, sd: f64) -> Vec<f64> {
        (0..n).map(|_| sd * self.0.sample::<f64, _>(StandardNormal)).collect()
    }
}

pub fn tensor<B: Backend, const D: usize>(v: &[f64], shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
    let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(f, shape), device)
}

pub fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap().into_iter().map(f64::from).collect()
}

/// Batch entry `b` of a `[B, n, n]` tensor's values.
pub fn matrix(v: &[f64], b: usize, n: usize) -> DMatrix<f64> {
    DMatrix::from_row_slice(n, n, &v[b * n * n..(b + 1) * n * n])
}

pub fn vector(v: &[f64], b: usize, n: usize) -> DVector<f64> {
    DVector::from_column_slice(&v[b * n..(b + 1) * n])
}

/// Largest absolute difference, relative to the largest reference entry (at least 1).
pub fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    got.iter().zip(want).fold(0.0f64, |m, (a, b)| m.max((a - b).abs())) / scale
}
