//! The spatial eigenbasis of the K-DCT family (docs/maths.md, "DCT" and
//! "Covariance models"): a separable plane transform `T(X) = A X B^T`,
//! with `A` acting on rows (vertical) and `B` on columns (horizontal).
//! K-DCT uses `A = B = F`; "Free" learns `A` and `B`; "FreeDiag" uses
//! `diag(a1) F diag(a2)` and `diag(b1) F diag(b2)` (paper, Table 9).
//!
//! Transforms are matrix products with `d x d` factors, batched over the
//! leading dimensions: the paper found matmul fastest on GPUs.

use burn::tensor::{backend::Backend, Tensor, TensorData};

/// A separable spatial basis `T = A (x) B` on `d x d` planes.
#[derive(Clone, Debug)]
pub struct SpatialBasis<B: Backend> {
    a: Tensor<B, 2>,
    b: Tensor<B, 2>,
    /// True when `A` and `B` are orthonormal (the DCT), which simplifies the Frobenius norm.
    orthonormal: bool,
}

/// The orthonormal DCT-II matrix `F` as a `d x d` tensor.
pub fn dct_matrix<B: Backend>(d: usize, device: &B::Device) -> Tensor<B, 2> {
    let f: Vec<f32> = covdiff_core::dct::dct_matrix(d).into_iter().map(|x| x as f32).collect();
    Tensor::from_data(TensorData::new(f, [d, d]), device)
}

impl<B: Backend> SpatialBasis<B> {
    /// `A = B = F`: the K-DCT basis.
    pub fn dct(d: usize, device: &B::Device) -> Self {
        let f = dct_matrix::<B>(d, device);
        Self { a: f.clone(), b: f, orthonormal: true }
    }

    /// "Free": learnt `A` (rows) and `B` (columns), each `d x d`.
    pub fn free(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Self {
        assert_eq!(a.dims(), b.dims(), "A and B must both be d x d");
        Self { a, b, orthonormal: false }
    }

    /// "FreeDiag": `A = diag(a1) F diag(a2)`, `B = diag(b1) F diag(b2)`, each vector of length d.
    pub fn free_diag(a1: Tensor<B, 1>, a2: Tensor<B, 1>, b1: Tensor<B, 1>, b2: Tensor<B, 1>) -> Self {
        let d = a1.dims()[0];
        let f = dct_matrix::<B>(d, &a1.device());
        let scale = |l: Tensor<B, 1>, r: Tensor<B, 1>| f.clone() * l.reshape([d, 1]) * r.reshape([1, d]);
        Self { a: scale(a1, a2), b: scale(b1, b2), orthonormal: false }
    }

    pub fn size(&self) -> usize {
        self.a.dims()[0]
    }

    /// The row factor `A`.
    pub fn rows(&self) -> Tensor<B, 2> {
        self.a.clone()
    }

    /// The column factor `B`.
    pub fn cols(&self) -> Tensor<B, 2> {
        self.b.clone()
    }

    pub fn is_orthonormal(&self) -> bool {
        self.orthonormal
    }

    /// `T(X) = A X B^T` on the last two dimensions (`DCT2` for K-DCT).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let a = lift::<B, D>(self.a.clone());
        right_multiply(a.matmul(x), self.b.clone().transpose())
    }

    /// `T^T(Y) = A^T Y B` (`IDCT2` for K-DCT).
    pub fn adjoint<const D: usize>(&self, y: Tensor<B, D>) -> Tensor<B, D> {
        let at = lift::<B, D>(self.a.clone().transpose());
        right_multiply(at.matmul(y), self.b.clone())
    }

    /// `diag(T^T diag(lam) T)` as planes: `(A o A)^T Lam (B o B)` (docs/maths.md's `G^T Lam G`).
    pub fn diag_of_spectrum(&self, lam: Tensor<B, 3>) -> Tensor<B, 3> {
        let ga = lift::<B, 3>((self.a.clone() * self.a.clone()).transpose());
        let gb = lift::<B, 3>(self.b.clone() * self.b.clone());
        ga.matmul(lam).matmul(gb)
    }

    /// `||T^T diag(lam) T||_F^2 = <Lam, (P o P) Lam (Q o Q)>` with `P = A A^T`, `Q = B B^T`;
    /// `||lam||^2` for an orthonormal basis. Returns one value per batch entry.
    pub fn spectrum_frobenius_sq(&self, lam: Tensor<B, 3>) -> Tensor<B, 1> {
        let [n, _, _] = lam.dims();
        if self.orthonormal {
            return (lam.clone() * lam).reshape([n as i32, -1]).sum_dim(1).reshape([n]);
        }
        let p = self.a.clone().matmul(self.a.clone().transpose());
        let q = self.b.clone().matmul(self.b.clone().transpose());
        let p2 = lift::<B, 3>(p.clone() * p);
        let q2 = lift::<B, 3>(q.clone() * q);
        let mixed = p2.matmul(lam.clone()).matmul(q2);
        (lam * mixed).reshape([n as i32, -1]).sum_dim(1).reshape([n])
    }

    /// `T` as a dense `d^2 x d^2` matrix, `T[(i,j),(k,l)] = A[i,k] B[j,l]`.
    pub fn to_dense(&self) -> Tensor<B, 2> {
        let d = self.size();
        let a = self.a.clone().reshape([d, 1, d, 1]);
        let b = self.b.clone().reshape([1, d, 1, d]);
        (a * b).reshape([d * d, d * d])
    }
}

/// `X M` on the last dimension, as one `(rows, d) x (d, d)` product over all leading
/// dimensions: one large matrix product runs faster on CPUs than many `d x d` ones.
fn right_multiply<B: Backend, const D: usize>(x: Tensor<B, D>, m: Tensor<B, 2>) -> Tensor<B, D> {
    let dims = x.dims();
    let rows = dims[..D - 1].iter().product::<usize>();
    x.reshape([rows, dims[D - 1]]).matmul(m).reshape(dims)
}

/// A `d x d` matrix viewed with `D - 2` leading unit dimensions, for broadcast matmul.
fn lift<B: Backend, const D: usize>(m: Tensor<B, 2>) -> Tensor<B, D> {
    let [r, c] = m.dims();
    let mut shape = [1usize; D];
    shape[D - 2] = r;
    shape[D - 1] = c;
    m.reshape(shape)
}
