//! The optimal empirical denoiser (the locality appendix, Prop. A.2):
//! `x0_hat(x_t) = sum_i x0^i softmax_i(-||x_t - sqrt(abar) x0^i||^2 / (2 bbar))`, the exact
//! `E[x0 | x_t]` when the data are the N training images, and its exact posterior covariance
//! `Cov[x0 | x_t] = sum_i w_i (x0^i - x0_hat)(x0^i - x0_hat)^T` with the same weights `w_i`.
//!
//! The logits drop `||x_t||^2`, which is the same for every `i`:
//! `l_i = (2 sqrt(abar) <x_t, x0^i> - abar ||x0^i||^2) / (2 bbar)`, one matrix product per chunk.

use super::data::{Chunk, TrainingSet};
use super::softmax::StreamingSoftmax;
use super::{coefficients, x0_denoiser};
use burn::tensor::{backend::Backend, Tensor};
use covdiff_core::schedule::ScheduleTable;

#[derive(Clone, Debug)]
pub struct OptimalDenoiser<B: Backend> {
    data: TrainingSet<B>,
    table: ScheduleTable,
}

impl<B: Backend> OptimalDenoiser<B> {
    pub fn new(data: TrainingSet<B>, table: ScheduleTable) -> Self {
        Self { data, table }
    }

    pub fn table(&self) -> &ScheduleTable {
        &self.table
    }

    pub fn data(&self) -> &TrainingSet<B> {
        &self.data
    }

    /// The logits `l_i` of one chunk for `x = x_t` flattened to `[B, n]`: `[B, M]`.
    fn logits(&self, x: &Tensor<B, 2>, chunk: &Chunk<B>, t: usize) -> Tensor<B, 2> {
        let (s, bb) = coefficients(&self.table, t);
        let dot = x.clone().matmul(chunk.x.clone().transpose());
        (dot * (2.0 * s) - chunk.sq.clone() * (s * s)) / (2.0 * bb)
    }

    /// The streamed softmax over the whole set, weighting the images themselves: `[B, 1, n]`.
    fn stream(&self, x: &Tensor<B, 2>, t: usize) -> StreamingSoftmax<B> {
        let mut wssm = StreamingSoftmax::new();
        for chunk in self.data.chunks() {
            let l = self.logits(x, chunk, t).unsqueeze_dim(1);
            wssm.update(l, |w| {
                let [b, _, m] = w.dims();
                w.reshape([b, m]).matmul(chunk.x.clone()).unsqueeze_dim(1)
            });
        }
        wssm
    }

    fn flat(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let [b, ..] = x.dims();
        x.reshape([b, self.data.dim()])
    }

    /// `E[x0 | x_t]`, `[B, C, d, d]`, at `t >= 1`.
    pub fn x0_hat(&self, x: Tensor<B, 4>, t: usize) -> Tensor<B, 4> {
        let shape = x.dims();
        let wssm = self.stream(&self.flat(x), t);
        wssm.value().expect("a training set is never empty").reshape(shape)
    }

    /// The posterior weights of one chunk, `[B, M]`, given the log-normaliser `[B, 1]`.
    fn weights(&self, x: &Tensor<B, 2>, chunk: &Chunk<B>, t: usize, lse: &Tensor<B, 2>) -> Tensor<B, 2> {
        (self.logits(x, chunk, t) - lse.clone()).exp()
    }

    /// `Cov[x0 | x_t]`, `[B, n, n]`, in two passes: the mean and log-normaliser first, then the
    /// weighted outer products of the centred images (no difference of large second moments).
    pub fn posterior_covariance(&self, x: Tensor<B, 4>, t: usize) -> Tensor<B, 3> {
        let x = self.flat(x);
        let [b, n] = x.dims();
        let wssm = self.stream(&x, t);
        let mean = wssm.value().expect("a training set is never empty");
        let lse = wssm.log_normaliser().expect("a training set is never empty").reshape([b, 1]);
        let mut cov = Tensor::<B, 3>::zeros([b, n, n], &x.device());
        for chunk in self.data.chunks() {
            let w = self.weights(&x, chunk, t, &lse);
            let [_, m] = w.dims();
            let centred = chunk.x.clone().unsqueeze_dim::<3>(0).expand([b, m, n]) - mean.clone().expand([b, m, n]);
            let weighted = centred.clone() * w.reshape([b, m, 1]).expand([b, m, n]);
            cov = cov + weighted.swap_dims(1, 2).matmul(centred);
        }
        cov
    }

    /// Rows `q_b` of `Cov[x0 | x_t]`, one per batch element, `[B, n]`: the sensitivity field of
    /// the optimal denoiser, since `d x0_hat / d x_t = sqrt(abar) / bbar Cov[x0 | x_t]`
    /// (Tweedie's formula for the second moment).
    pub fn covariance_rows(&self, x: Tensor<B, 4>, t: usize, rows: &[usize]) -> Tensor<B, 2> {
        let x = self.flat(x);
        let [b, n] = x.dims();
        assert_eq!(rows.len(), b, "one covariance row per batch element");
        let wssm = self.stream(&x, t);
        let mean = wssm.value().expect("a training set is never empty").reshape([b, n]);
        let lse = wssm.log_normaliser().expect("a training set is never empty").reshape([b, 1]);
        let pick: Vec<f32> = rows.iter().flat_map(|&q| (0..n).map(move |j| f32::from(j == q))).collect();
        let pick = Tensor::<B, 2>::from_data(burn::tensor::TensorData::new(pick, [b, n]), &x.device());
        let mean_q = (mean.clone() * pick.clone()).sum_dim(1);
        let mut acc = Tensor::<B, 2>::zeros([b, n], &x.device());
        for chunk in self.data.chunks() {
            let w = self.weights(&x, chunk, t, &lse);
            // (x0^i_q - mean_q) w_i, [B, M]; then sum_i of that times (x0^i - mean).
            let xq = pick.clone().matmul(chunk.x.clone().transpose());
            let a = (xq - mean_q.clone()) * w;
            acc = acc + a.clone().matmul(chunk.x.clone()) - mean.clone() * a.sum_dim(1);
        }
        acc
    }
}

x0_denoiser!(OptimalDenoiser);
