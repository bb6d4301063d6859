//! K-DCT (paper Eq. 12; docs/maths.md): `E = diag(e) + (L L^T) (x) T^T diag(lam) T`,
//! `T = F (x) F` for K-DCT, or a learnt basis for "Free" and "FreeDiag" (Table 9).

use super::{diag_embed, per_image_sum, Covariance};
use crate::normals::standard_normal;
use crate::spatial::SpatialBasis;
use burn::tensor::{backend::Backend, Tensor};

#[derive(Clone, Debug)]
pub struct KDct<B: Backend> {
    /// `[B, C, d, d]`, >= 0.
    pub e: Tensor<B, 4>,
    /// `[B, C, C]`: the colour factor.
    pub l: Tensor<B, 3>,
    /// `[B, d, d]`, > 0: the spectrum in the basis `T`.
    pub lam: Tensor<B, 3>,
    pub basis: SpatialBasis<B>,
}

impl<B: Backend> KDct<B> {
    pub fn new(e: Tensor<B, 4>, l: Tensor<B, 3>, lam: Tensor<B, 3>, basis: SpatialBasis<B>) -> Self {
        let [b, c, h, w] = e.dims();
        assert_eq!(h, w, "images must be square");
        assert_eq!(l.dims(), [b, c, c], "L must be [B, C, C]");
        assert_eq!(lam.dims(), [b, h, w], "lam must be [B, d, d]");
        assert_eq!(basis.size(), h, "basis size must match the image");
        Self { e, l, lam, basis }
    }

    /// `M = L L^T`, `[B, C, C]`.
    pub fn colour(&self) -> Tensor<B, 3> {
        self.l.clone().matmul(self.l.clone().swap_dims(1, 2))
    }

    /// Mix channels: `(M v)_c = sum_k M_{ck} v_k` for `M` `[B, C, C]`.
    fn mix(m: Tensor<B, 3>, v: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, c, h, w] = v.dims();
        m.matmul(v.reshape([b, c, h * w])).reshape([b, c, h, w])
    }

    /// The structured term's diagonal, `M_cc (G^T Lam G)` per channel.
    fn structured_diagonal(&self) -> Tensor<B, 4> {
        let [b, c, ..] = self.shape();
        let mcc = (self.l.clone() * self.l.clone()).sum_dim(2).reshape([b, c, 1, 1]);
        mcc * self.basis.diag_of_spectrum(self.lam.clone()).unsqueeze_dim(1)
    }

    /// `g * w` plus the structured term, by the CPU host kernel (`kernels::kdct_structured`),
    /// where there is one (`bench compare`, batch 16, C = 3: from d = 16 on it is at least level
    /// with burn's own products, and from d = 32 on faster, since the DCT's mirror symmetry
    /// halves the products and a group of images shares each product): `T^T(lam * T(M v))`
    /// when `analyse`, else `T^T(lam * M v)`. `lam` is only computed when the kernel runs.
    fn host_structured(
        &self,
        v: &Tensor<B, 4>,
        m: &Tensor<B, 3>,
        lam: impl FnOnce() -> Tensor<B, 3>,
        diagonal: (&Tensor<B, 4>, &Tensor<B, 4>),
        analyse: bool,
    ) -> Option<Tensor<B, 4>> {
        const SMALLEST: usize = 16;
        if self.basis.size() < SMALLEST || !crate::kernels::has_kdct_kernel::<B>() {
            return None;
        }
        let (a, b) = (self.basis.rows(), self.basis.cols());
        crate::kernels::kdct_structured(v, m, &lam(), [&a, &b], Some(diagonal), analyse)
    }

    /// `lam` once per channel, `[B, C, d, d]`: a same-shape product is the fast one on CPU
    /// backends (burn-flex walks a broadcast over the middle dimension element by element).
    fn lam4(&self) -> Tensor<B, 4> {
        let c = self.e.dims()[1];
        let lam = self.lam.clone().unsqueeze_dim(1);
        if c == 1 {
            lam
        } else {
            lam.repeat_dim(1, c)
        }
    }
}

impl<B: Backend> Covariance<B> for KDct<B> {
    fn shape(&self) -> [usize; 4] {
        self.e.dims()
    }
    fn device(&self) -> B::Device {
        self.e.device()
    }

    // Eq. 13: (E v)_c = e_c v_c + T^T(lam * T(sum_k (L L^T)_{ck} v_k)).
    fn matvec(&self, v: Tensor<B, 4>) -> Tensor<B, 4> {
        let m = self.colour();
        if let Some(ev) = self.host_structured(&v, &m, || self.lam.clone(), (&self.e, &v), true) {
            return ev;
        }
        let spectral = self.basis.forward(Self::mix(m, v.clone())) * self.lam4();
        self.e.clone() * v + self.basis.adjoint(spectral)
    }

    // Alg. 1 / Eq. 14: g = sqrt(e) xi1 + T^T(sqrt(lam) * L xi2).
    fn sample_parts(&self) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let xi1 = standard_normal(self.shape(), &self.device());
        let xi2 = standard_normal(self.shape(), &self.device());
        let root_e = self.e.clone().sqrt();
        let g = match self.host_structured(&xi2, &self.l, || self.lam.clone().sqrt(), (&root_e, &xi1), false) {
            Some(g) => g,
            None => root_e * xi1.clone() + self.basis.adjoint(Self::mix(self.l.clone(), xi2) * self.lam4().sqrt()),
        };
        (g, xi1)
    }

    // diag(E)_c = e_c + M_cc (G^T Lam G).
    fn diagonal(&self) -> Tensor<B, 4> {
        self.e.clone() + self.structured_diagonal()
    }

    // ||E||^2 = ||e||^2 + ||M||^2 ||S||^2 + 2 sum_c M_cc <e_c, diag(S)>, S = T^T diag(lam) T.
    fn frobenius_sq(&self) -> Tensor<B, 1> {
        per_image_sum(self.e.clone().powi_scalar(2))
            + per_image_sum(self.colour().powi_scalar(2)) * self.basis.spectrum_frobenius_sq(self.lam.clone())
            + per_image_sum(self.e.clone() * self.structured_diagonal()) * 2.0
    }

    // btilde I + kappa E: diagonal btilde + kappa e, colour factor sqrt(kappa) L.
    fn shift_scale(&self, shift: f64, scale: f64) -> Self {
        Self {
            e: self.e.clone() * scale + shift,
            l: self.l.clone() * scale.sqrt(),
            lam: self.lam.clone(),
            basis: self.basis.clone(),
        }
    }

    fn to_dense(&self) -> Tensor<B, 3> {
        let [b, c, h, w] = self.shape();
        let dd = h * w;
        let t = self.basis.to_dense().unsqueeze_dim::<3>(0);
        // S = T^T diag(lam) T, [B, D, D].
        let s = t.clone().swap_dims(1, 2).matmul(t * self.lam.clone().reshape([b, dd, 1]));
        let kron = self.colour().reshape([b, c, 1, c, 1]) * s.reshape([b, 1, dd, 1, dd]);
        diag_embed(self.e.clone().reshape([b, c * dd])) + kron.reshape([b, c * dd, c * dd])
    }
}
