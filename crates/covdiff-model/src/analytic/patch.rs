//! The equivariant local score machine of Kamb & Ganguli (the locality appendix, Prop. A.7,
//! Eq. 6): the patch-based optimal denoiser under locality and translation equivariance,
//! `x0_hat_q = sum_i sum_g (g o x0^i)_q softmax_{i,g}(-||M_q x_t - sqrt(abar) M_q (g o x0^i)||^2 / (2 bbar))`.
//! A translation `g` moves training pixel `r` to `q`, so the candidates are every training patch
//! `M_r x0^i` at every position `r`, and the output is its centre pixel (all channels).
//!
//! Patches are `p x p` about their centre with zero padding, `p` odd (an even size is taken as
//! `p + 1`). With `U(x)` the patches of `x` as columns (im2col), the distances of a chunk are one
//! matrix product `U(x_t)^T U(x0^i)`; `||M_q x_t||^2` is the same for every candidate and dropped.
//! Its cost per image is `2 d^4 C p^2` per training image, which is why it is usually run on a
//! subset of the training set.

use super::data::TrainingSet;
use super::softmax::StreamingSoftmax;
use super::{coefficients, x0_denoiser, AnalyticError};
use burn::tensor::module::unfold4d;
use burn::tensor::ops::UnfoldOptions;
use burn::tensor::{backend::Backend, Tensor};
use covdiff_core::locality::TimeTable;
use covdiff_core::schedule::ScheduleTable;

/// Floats allowed in one chunk's distance matrix `[B d^2, M d^2]`.
const DISTANCE_BUDGET: usize = 1 << 24;

#[derive(Clone, Debug)]
pub struct EquivariantPatchDenoiser<B: Backend> {
    data: TrainingSet<B>,
    table: ScheduleTable,
    sizes: TimeTable<usize>,
}

impl<B: Backend> EquivariantPatchDenoiser<B> {
    /// Patch sizes per time; each is made odd (`p` or `p + 1`).
    pub fn new(data: TrainingSet<B>, table: ScheduleTable, sizes: TimeTable<usize>) -> Result<Self, AnalyticError> {
        if sizes.entries().iter().any(|&(_, p)| p == 0) {
            return Err(AnalyticError::Invalid("patch sizes must be positive".into()));
        }
        let odd = sizes.entries().iter().map(|&(t, p)| (t, p | 1)).collect();
        let sizes = TimeTable::new(odd).map_err(|e| AnalyticError::Invalid(e.to_string()))?;
        Ok(Self { data, table, sizes })
    }

    pub fn table(&self) -> &ScheduleTable {
        &self.table
    }

    /// The (odd) patch size used at `t`.
    pub fn patch_size(&self, t: usize) -> usize {
        *self.sizes.at(t)
    }

    /// Eq. 6 at `t >= 1`, `[B, C, d, d]`.
    pub fn x0_hat(&self, x: Tensor<B, 4>, t: usize) -> Tensor<B, 4> {
        let shape = x.dims();
        let [b, c, d, _] = shape;
        let q = d * d;
        let p = self.patch_size(t);
        let (s, bb) = coefficients(&self.table, t);
        let options = || UnfoldOptions::new([1, 1], [p / 2, p / 2], [1, 1]);
        let k = c * p * p;
        // [B Q, K]: row (b, q) is the patch of x_t about q.
        let ux = unfold4d(x, [p, p], options()).swap_dims(1, 2).reshape([b * q, k]);
        let per_step = (DISTANCE_BUDGET / (b * q * q)).max(1);
        let mut wssm = StreamingSoftmax::new();
        for chunk in self.data.chunks() {
            let [m, _] = chunk.x.dims();
            for start in (0..m).step_by(per_step) {
                let mi = per_step.min(m - start);
                let imgs = chunk.x.clone().slice(start..start + mi).reshape([mi, c, d, d]);
                // [K, Mi Q]: column (i, r) is training patch M_r x0^i.
                let uy = unfold4d(imgs.clone(), [p, p], options()).permute([1, 0, 2]).reshape([k, mi * q]);
                let sq = (uy.clone() * uy.clone()).sum_dim(0);
                let cross = ux.clone().matmul(uy);
                let logits = ((cross * (2.0 * s) - sq * (s * s)) / (2.0 * bb)).reshape([b, q, mi * q]);
                // The centre pixel of each candidate, [Mi Q, C].
                let centre = imgs.reshape([mi, c, q]).swap_dims(1, 2).reshape([mi * q, c]);
                wssm.update(logits, |w| w.reshape([b * q, mi * q]).matmul(centre).reshape([b, q, c]));
            }
        }
        let value = wssm.value().expect("a training set is never empty");
        value.swap_dims(1, 2).reshape(shape)
    }
}

x0_denoiser!(EquivariantPatchDenoiser);
