//! The forward noise of the diffusion: white (DDPM) or a Gaussian free field
//! (NI-DDPM, docs/maths.md "Non-isotropic noise"). With `x_t = sqrt(abar) x_0 +
//! sqrt(bbar) Sigma^1/2 eps`, every DDPM formula holds in `y = Sigma^-1/2 x`,
//! so samplers apply `Sigma^1/2` to whatever is noise-like (eps_hat, z, and
//! structured samples) and nothing else changes.

use burn::tensor::{
    backend::{AutodiffBackend, Backend},
    Tensor, TensorData,
};
use covdiff_core::gff::Gff;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub enum ForwardNoise<B: Backend> {
    White,
    Gff(GffOperator<B>),
}

impl<B: Backend> ForwardNoise<B> {
    /// `Sigma^1/2 v` on `[B, C, d, d]` (each plane filtered alike).
    pub fn sqrt_apply(&self, v: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Self::White => v,
            Self::Gff(op) => op.apply(v),
        }
    }

    pub fn is_white(&self) -> bool {
        matches!(self, Self::White)
    }

    /// `Sigma^-1/2 v`: into the whitened coordinates `y = Sigma^-1/2 x`.
    pub fn inv_sqrt_apply(&self, v: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Self::White => v,
            Self::Gff(op) => op.inverse().apply(v),
        }
    }

    /// `log |det Sigma^1/2|` over `channels` planes: `channels * sum_k ln sqrt(lam_k)` from the
    /// circulant spectrum (0 for white noise). The change of variables `x = Sigma^1/2 y` adds it
    /// to every negative log-density taken in whitened coordinates.
    pub fn log_det_sqrt(&self, channels: usize) -> f64 {
        match self {
            Self::White => 0.0,
            Self::Gff(op) => channels as f64 * op.sqrt_spectrum.iter().map(|h| h.ln()).sum::<f64>(),
        }
    }

    /// `diag(Sigma)`, the same for every pixel of a circulant `Sigma`: the mean of its eigenvalues.
    pub fn pixel_variance(&self) -> f64 {
        match self {
            Self::White => 1.0,
            Self::Gff(op) => op.sqrt_spectrum.iter().map(|h| h * h).sum::<f64>() / op.sqrt_spectrum.len() as f64,
        }
    }

    /// The dense `Sigma^1/2` on images of `shape = [C, d, d]`, `[n, n]` with `n = C d^2` (channel-major
    /// `vec`): the filter applied to each basis image. For exact evaluations at small `n`.
    pub fn sqrt_dense(&self, shape: [usize; 3], device: &B::Device) -> Tensor<B, 2> {
        let [c, h, w] = shape;
        let n = c * h * w;
        let basis = Tensor::<B, 2>::eye(n, device).reshape([n, c, h, w]);
        // Row j is Sigma^1/2 e_j, a column of the symmetric Sigma^1/2.
        self.sqrt_apply(basis).reshape([n, n])
    }

    /// The same noise with each of its tensors passed through `f`.
    fn map<B2: Backend>(&self, f: impl Fn(Tensor<B, 4>) -> Tensor<B2, 4>) -> ForwardNoise<B2> {
        match self {
            Self::White => ForwardNoise::White,
            Self::Gff(op) => ForwardNoise::Gff(GffOperator {
                c: f(op.c.clone()),
                s: f(op.s.clone()),
                h: f(op.h.clone()),
                sqrt_spectrum: op.sqrt_spectrum.clone(),
            }),
        }
    }

    /// The same noise on `device`.
    pub fn to_device(&self, device: &B::Device) -> Self {
        self.map(|t| t.to_device(device))
    }
}

impl<B: AutodiffBackend> ForwardNoise<B> {
    /// The same noise without autodiff (for frozen networks).
    pub fn inner(&self) -> ForwardNoise<B::InnerBackend> {
        self.map(|t| t.inner())
    }
}

/// A 2D circulant filter `Re(IDFT2(h * DFT2(x)))` with real, even `h`, as
/// matmuls with the `d x d` cosine and sine matrices. With `W = C - iS`
/// (both symmetric), `DFT2(X) = W X W`; its real and imaginary parts are
/// `P = CXC - SXS`, `Q = -(CXS + SXC)`, and the real part of
/// `W* (h o (P + iQ)) W* / d^2` is `(C Yr C - S Yr S - C Yi S - S Yi C) / d^2`.
#[derive(Clone, Debug)]
pub struct GffOperator<B: Backend> {
    c: Tensor<B, 4>,
    s: Tensor<B, 4>,
    /// `h / d^2`, `[1, 1, d, d]`.
    h: Tensor<B, 4>,
    /// `h` on the host, row-major on the FFT frequencies.
    sqrt_spectrum: Arc<Vec<f64>>,
}

impl<B: Backend> GffOperator<B> {
    /// `Sigma^1/2` of the GFF `gff` (eigenvalues from covdiff-core).
    pub fn sqrt_of(gff: &Gff, device: &B::Device) -> Self {
        let h: Vec<f64> = gff.eigenvalues().iter().map(|l| l.sqrt()).collect();
        Self::circulant(gff.size(), &h, device)
    }

    /// The filter with spectrum `h` (row-major `d x d` on FFT frequencies).
    pub fn circulant(d: usize, h: &[f64], device: &B::Device) -> Self {
        let mat = |f: fn(f64) -> f64| {
            let v: Vec<f32> = (0..d * d)
                .map(|p| f(2.0 * std::f64::consts::PI * ((p / d) * (p % d)) as f64 / d as f64) as f32)
                .collect();
            Tensor::<B, 2>::from_data(TensorData::new(v, [d, d]), device).reshape([1, 1, d, d])
        };
        Self { c: mat(f64::cos), s: mat(f64::sin), h: Self::scaled(d, h, device), sqrt_spectrum: Arc::new(h.to_vec()) }
    }

    /// `h / d^2` as the `[1, 1, d, d]` tensor [`GffOperator::apply`] multiplies by.
    fn scaled(d: usize, h: &[f64], device: &B::Device) -> Tensor<B, 4> {
        let scale = 1.0 / (d * d) as f64;
        let hv: Vec<f32> = h.iter().map(|x| (x * scale) as f32).collect();
        Tensor::from_data(TensorData::new(hv, [1, 1, d, d]), device)
    }

    /// The filter with the reciprocal spectrum `1 / h` (for `Sigma^1/2`: `Sigma^-1/2`).
    pub fn inverse(&self) -> Self {
        let spectrum: Vec<f64> = self.sqrt_spectrum.iter().map(|h| 1.0 / h).collect();
        Self {
            c: self.c.clone(),
            s: self.s.clone(),
            h: Self::scaled(self.c.dims()[2], &spectrum, &self.h.device()),
            sqrt_spectrum: Arc::new(spectrum),
        }
    }

    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let (c, s) = (&self.c, &self.s);
        let mm = |a: &Tensor<B, 4>, x: Tensor<B, 4>, b: &Tensor<B, 4>| a.clone().matmul(x).matmul(b.clone());
        let p = mm(c, x.clone(), c) - mm(s, x.clone(), s);
        let q = (mm(c, x.clone(), s) + mm(s, x, c)).neg();
        let (yr, yi) = (p * self.h.clone(), q * self.h.clone());
        mm(c, yr.clone(), c) - mm(s, yr, s) - mm(c, yi.clone(), s) - mm(s, yi, c)
    }
}
