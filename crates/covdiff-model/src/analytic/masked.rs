//! The masked optimal denoiser (the locality appendix, Prop. A.10, Eq. 9, without translations as
//! in its Algorithm 1): each output pixel `q` is the softmax-weighted pixel `q` of the training
//! images, with weights from the distance on a binary support `B^q` only,
//! `x0_hat_q = sum_i x0^i_q softmax_i(-||B^q (.) (x_t - sqrt(abar) x0^i)||^2 / (2 bbar))`.
//! The support is the same for all channels, and the output pixel keeps all of its channels.
//!
//! - all pixels: the optimal denoiser (Prop. A.2);
//! - a `p x p` patch about `q`: the locality constraint of A.2 alone;
//! - a measured sensitivity field binarised at a threshold (A.3, the appendix's own model).
//!
//! With `B^q` as the rows of a `d^2 x d^2` matrix, the distances of a chunk are one product:
//! `||B^q (.) (x - s y)||^2 = B^q . x^2 - 2 s B^q . (x (.) y) + s^2 B^q . y^2`, and the first term
//! is the same for every `i`.

use super::data::TrainingSet;
use super::softmax::StreamingSoftmax;
use super::{coefficients, x0_denoiser, AnalyticError};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use covdiff_core::locality::{offset_masks, patch_offsets, TimeTable};
use covdiff_core::schedule::ScheduleTable;

/// The support `B^q` of every output pixel, per time.
#[derive(Clone, Debug, PartialEq)]
pub enum Support {
    /// Every pixel: the optimal denoiser.
    All,
    /// A `p x p` patch about `q` (zero padding), `p` per time.
    Patch(TimeTable<usize>),
    /// The same offsets about every `q`, per time (a binarised sensitivity field).
    Offsets(TimeTable<Vec<(i64, i64)>>),
    /// Explicit masks per time, `d^2 x d^2` row-major, row `q` the support of pixel `q` (e.g. the
    /// binarised rows of the Wiener matrix, the appendix's Algorithm 1).
    Rows(TimeTable<Vec<f32>>),
}

#[derive(Clone, Debug)]
pub struct MaskedDenoiser<B: Backend> {
    data: TrainingSet<B>,
    table: ScheduleTable,
    /// `B^T` per time, `[d^2 (pixel), d^2 (output q)]`.
    masks: TimeTable<Tensor<B, 2>>,
}

impl<B: Backend> MaskedDenoiser<B> {
    pub fn new(data: TrainingSet<B>, table: ScheduleTable, support: &Support) -> Result<Self, AnalyticError> {
        let d = data.size();
        let q = d * d;
        let device = data.chunks()[0].x.device();
        let tensor = |m: Vec<f32>| Tensor::<B, 2>::from_data(TensorData::new(m, [q, q]), &device).transpose();
        let bad = |e: covdiff_core::Error| AnalyticError::Invalid(e.to_string());
        let masks = match support {
            Support::All => TimeTable::constant(tensor(vec![1.0; q * q])),
            Support::Patch(sizes) => {
                if sizes.entries().iter().any(|&(_, p)| p == 0) {
                    return Err(AnalyticError::Invalid("patch sizes must be positive".into()));
                }
                let e = sizes.entries().iter().map(|&(t, p)| (t, tensor(offset_masks(d, &patch_offsets(p)))));
                TimeTable::new(e.collect()).map_err(bad)?
            }
            Support::Offsets(offsets) => {
                if offsets.entries().iter().any(|(_, o)| o.is_empty()) {
                    return Err(AnalyticError::Invalid("every mask needs at least one pixel".into()));
                }
                let e = offsets.entries().iter().map(|(t, o)| (*t, tensor(offset_masks(d, o))));
                TimeTable::new(e.collect()).map_err(bad)?
            }
            Support::Rows(rows) => {
                if rows.entries().iter().any(|(_, m)| m.len() != q * q) {
                    return Err(AnalyticError::Invalid(format!("every mask must be {q} x {q}")));
                }
                let e = rows.entries().iter().map(|(t, m)| (*t, tensor(m.clone())));
                TimeTable::new(e.collect()).map_err(bad)?
            }
        };
        Ok(Self { data, table, masks })
    }

    pub fn table(&self) -> &ScheduleTable {
        &self.table
    }

    /// Eq. 9 at `t >= 1`, `[B, C, d, d]`.
    pub fn x0_hat(&self, x: Tensor<B, 4>, t: usize) -> Tensor<B, 4> {
        let shape = x.dims();
        let [b, c, d, _] = shape;
        let q = d * d;
        let (s, bb) = coefficients(&self.table, t);
        let mask_t = self.masks.at(t).clone();
        let x = x.reshape([b, 1, c, q]);
        let mut wssm = StreamingSoftmax::new();
        for chunk in self.data.chunks() {
            let [m, _] = chunk.x.dims();
            let y = chunk.x.clone().reshape([1, m, c, q]);
            // sum_c x (.) y and sum_c y^2, masked: [B, M, Q] and [1, M, Q].
            let cross = (x.clone().expand([b, m, c, q]) * y.clone().expand([b, m, c, q])).sum_dim(2);
            let cross = cross.reshape([b * m, q]).matmul(mask_t.clone()).reshape([b, m, q]);
            let sq = (y.clone() * y.clone()).sum_dim(2).reshape([m, q]).matmul(mask_t.clone()).reshape([1, m, q]);
            let logits = ((cross * (2.0 * s) - sq.expand([b, m, q]) * (s * s)) / (2.0 * bb)).swap_dims(1, 2);
            // sum_i w[b, q, i] y[i, :, q], batched over q: [Q, B, M] x [Q, M, C] = [Q, B, C].
            let yq = y.reshape([m, c, q]).permute([2, 0, 1]);
            wssm.update(logits, |w| w.permute([1, 0, 2]).matmul(yq).permute([1, 0, 2]));
        }
        let value = wssm.value().expect("a training set is never empty");
        value.swap_dims(1, 2).reshape(shape)
    }
}

x0_denoiser!(MaskedDenoiser);
