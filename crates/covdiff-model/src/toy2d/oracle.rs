//! The exact denoiser for Gaussian 2D data `x_0 ~ N(0, S)` (docs/maths.md, "Gaussian
//! data"): `eps_hat = sqrt(bbar) (abar S + bbar I)^-1 x_t` and
//! `E_t = I - bbar (abar S + bbar I)^-1`. The oracle for tests and for
//! checking samplers and likelihoods.

use crate::covariance::Full2;
use burn::tensor::{backend::Backend, Tensor};
use covdiff_core::schedule::ScheduleTable;

pub struct GaussianOracle {
    s: [[f64; 2]; 2],
    table: ScheduleTable,
}

impl GaussianOracle {
    /// `s` must be symmetric positive semi-definite.
    pub fn new(s: [[f64; 2]; 2], table: ScheduleTable) -> Self {
        Self { s, table }
    }

    /// `(abar S + bbar I)^-1` at step t.
    fn marginal_inverse(&self, t: usize) -> [[f64; 2]; 2] {
        let (ab, bb) = (self.table.abar(t), self.table.bbar(t));
        let (p, q, r) = (ab * self.s[0][0] + bb, ab * self.s[0][1], ab * self.s[1][1] + bb);
        let det = p * r - q * q;
        [[r / det, -q / det], [-q / det, p / det]]
    }
}

impl GaussianOracle {
    /// `eps_hat(x_t)` of `[N, 2]` points.
    pub fn eps<B: Backend>(&self, x: Tensor<B, 2>, t: usize) -> Tensor<B, 2> {
        let m = self.marginal_inverse(t);
        let sb = self.table.bbar(t).sqrt();
        let flat: Vec<f32> = [m[0][0], m[1][0], m[0][1], m[1][1]].iter().map(|v| (v * sb) as f32).collect();
        // x M^T with M symmetric.
        let mt = Tensor::<B, 1>::from_floats(flat.as_slice(), &x.device()).reshape([2, 2]);
        x.matmul(mt)
    }

    /// `E_t` for `n` points.
    pub fn covariance<B: Backend>(&self, n: usize, t: usize, device: &B::Device) -> Full2<B> {
        let m = self.marginal_inverse(t);
        let bb = self.table.bbar(t);
        let fill = |v: f64| Tensor::<B, 1>::full([n], v as f32, device);
        Full2 { p: fill(1.0 - bb * m[0][0]), q: fill(-bb * m[0][1]), r: fill(1.0 - bb * m[1][1]) }
    }
}
