//! 2D convolution, `y = W * x + b` (torch's `Conv2d`, cross-correlation).
//!
//! Two routes, chosen by measurement (`covdiff bench model`, tiny UNet's
//! first-level 3x3 conv, 16 x 32 x 28 x 28, flex on 2 cores):
//! - without autodiff (sampling, frozen networks), the backend's own `conv2d`:
//!   3.6 ms forward against 4.2 ms for the im2col below;
//! - under autodiff, an explicit im2col (k^2 shifted slices of the padded
//!   input) and one matmul: 33 ms forward + backward against 40 ms for
//!   burn's `conv2d`, whose default weight gradient is a convolution with an
//!   image-sized kernel (on ndarray: 56 ms against 1678 ms).
//!
//! Weights keep torch's layout `[out, in, k, k]` and the names `weight`, `bias`.

use burn::module::{Module, Param};
use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{backend::Backend, Distribution, Tensor};

#[derive(Module, Debug)]
pub struct Conv<B: Backend> {
    pub weight: Param<Tensor<B, 4>>,
    pub bias: Param<Tensor<B, 1>>,
    stride: usize,
    padding: usize,
}

impl<B: Backend> Conv<B> {
    /// Uniform initialisation in `+-1/sqrt(fan_in)`, as torch and burn do.
    pub fn new(cin: usize, cout: usize, kernel: usize, stride: usize, padding: usize, device: &B::Device) -> Self {
        let bound = 1.0 / ((cin * kernel * kernel) as f64).sqrt();
        let u = Distribution::Uniform(-bound, bound);
        Self::from_tensors(
            Tensor::random([cout, cin, kernel, kernel], u, device),
            Tensor::random([cout], u, device),
            stride,
            padding,
        )
    }

    pub fn from_tensors(weight: Tensor<B, 4>, bias: Tensor<B, 1>, stride: usize, padding: usize) -> Self {
        assert!(stride >= 1, "stride must be positive");
        Self { weight: Param::from_tensor(weight), bias: Param::from_tensor(bias), stride, padding }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        if !B::ad_enabled(&x.device()) {
            let (s, p) = (self.stride, self.padding);
            let options = ConvOptions::new([s, s], [p, p], [1, 1], 1);
            return conv2d(x, self.weight.val(), Some(self.bias.val()), options);
        }
        let [b, c, h, w] = x.dims();
        let [o, _, k, _] = self.weight.dims();
        let p = self.padding;
        let (ho, wo) = (h + 2 * p + 1 - k, w + 2 * p + 1 - k);
        let xp = if p > 0 { x.pad((p, p, p, p), PadMode::Constant(0.0)) } else { x };
        let y = if k == 1 {
            self.weight.val().reshape([1, o, c]).matmul(xp.reshape([b, c, ho * wo]))
        } else {
            let mut cols = Vec::with_capacity(k * k);
            for di in 0..k {
                for dj in 0..k {
                    cols.push(xp.clone().slice([0..b, 0..c, di..di + ho, dj..dj + wo]));
                }
            }
            let col = Tensor::stack::<5>(cols, 2).reshape([b, c * k * k, ho * wo]);
            self.weight.val().reshape([1, o, c * k * k]).matmul(col)
        };
        let y = (y + self.bias.val().reshape([1, o, 1])).reshape([b, o, ho, wo]);
        if self.stride == 1 {
            y
        } else {
            subsample(y, self.stride)
        }
    }
}

/// Every `s`-th row and column from the first: a stride-`s` convolution is the
/// stride-1 one read at those positions.
fn subsample<B: Backend>(y: Tensor<B, 4>, s: usize) -> Tensor<B, 4> {
    let [b, o, h, w] = y.dims();
    let (hs, ws) = (h.div_ceil(s), w.div_ceil(s));
    let y = y.pad((0, ws * s - w, 0, hs * s - h), PadMode::Constant(0.0));
    y.reshape([b, o, hs, s, ws, s]).narrow(3, 0, 1).narrow(5, 0, 1).reshape([b, o, hs, ws])
}
