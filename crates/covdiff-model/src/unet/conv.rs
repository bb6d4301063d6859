//! 2D convolution, `y = W * x + b` (torch's `Conv2d`, cross-correlation).
//!
//! Three routes, chosen by measurement (`covdiff bench model`, tiny UNet's
//! first-level 3x3 conv, 16 x 32 x 28 x 28, flex on 2 cores):
//! - on flex, with or without autodiff, covdiff's host kernel
//!   (`kernels::conv2d`: per-image im2col and gemm, and its own backward);
//! - elsewhere without autodiff (GPUs), the backend's own `conv2d`:
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

    /// `y = W * x + b`, by the route that measured faster: the host kernel on flex, else the
    /// backend's `conv2d` without autodiff and the im2col below under it.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let route = if crate::kernels::has_host_kernels::<B>() {
            ConvRoute::Kernel
        } else if B::ad_enabled(&x.device()) {
            ConvRoute::Im2col
        } else {
            ConvRoute::Backend
        };
        self.forward_by(x, route)
    }

    /// `y = W * x + b` by the given route (both compute the same convolution).
    pub fn forward_by(&self, x: Tensor<B, 4>, route: ConvRoute) -> Tensor<B, 4> {
        match route {
            ConvRoute::Backend => {
                let (s, p) = (self.stride, self.padding);
                let options = ConvOptions::new([s, s], [p, p], [1, 1], 1);
                conv2d(x, self.weight.val(), Some(self.bias.val()), options)
            }
            ConvRoute::Im2col => self.im2col(x),
            ConvRoute::Kernel => {
                let (w, b) = (self.weight.val(), self.bias.val());
                match crate::kernels::conv2d(&x, &w, &b, self.stride, self.padding) {
                    Some(y) => y,
                    None => self.im2col(x),
                }
            }
        }
    }

    /// `y[i, j] = sum_{di, dj} W[:, :, di, dj] xp[i + di, j + dj] + b`, `xp` the padded input.
    /// On `xp` flattened row by row (width `W'`), the tap `(di, dj)` of output `(i, j)` sits at
    /// `(i W' + j) + (di W' + dj)`: computed on the padded width (its last `k - 1` columns then
    /// dropped), every tap is one contiguous shift of the flat image, which CPU backends copy at
    /// memcpy speed and whose gradient is one contiguous slice assignment.
    fn im2col(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        let [o, _, k, _] = self.weight.dims();
        let p = self.padding;
        let (hp, wp) = (h + 2 * p, w + 2 * p);
        let (ho, wo) = (hp + 1 - k, wp + 1 - k);
        let y = if k == 1 && p == 0 {
            self.weight.val().reshape([1, o, c]).matmul(x.reshape([b, c, h * w]))
        } else {
            // One more zero row keeps the last taps of the dropped columns inside the image.
            let extra = usize::from(k > 1);
            let flat = x.pad((p, p, p, p + extra), PadMode::Constant(0.0)).reshape([b, c, (hp + extra) * wp]);
            let n = ho * wp;
            // Each shift is copied out flat first (a 2D strided copy, which backends do fast),
            // so that the concatenation reads contiguous blocks.
            let tap =
                |t: usize| flat.clone().narrow(2, (t / k) * wp + t % k, n).reshape([b * c * n]).reshape([b, c, 1, n]);
            let col = Tensor::cat((0..k * k).map(tap).collect(), 2).reshape([b, c * k * k, n]);
            self.weight.val().reshape([1, o, c * k * k]).matmul(col)
        };
        // The bias repeated per image, so the sum broadcasts along rows only (fast on CPUs).
        let y = y + self.bias.val().reshape([1, o]).repeat_dim(0, b).reshape([b, o, 1]);
        let y = if k == 1 && p == 0 {
            y.reshape([b, o, ho, wo])
        } else {
            // Drop the last k - 1 columns, copied out as one 2D strided copy.
            y.reshape([b * o * ho, wp]).narrow(1, 0, wo).reshape([b * o * ho * wo]).reshape([b, o, ho, wo])
        };
        if self.stride == 1 {
            y
        } else {
            subsample(y, self.stride)
        }
    }
}

/// How [`Conv`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvRoute {
    /// The backend's `conv2d` (its autodiff is burn's generic one).
    Backend,
    /// Explicit im2col and one matrix product.
    Im2col,
    /// covdiff's host kernel (`kernels::conv2d`) where the backend has one, else `Im2col`.
    Kernel,
}

/// Every `s`-th row and column from the first: a stride-`s` convolution is the
/// stride-1 one read at those positions.
fn subsample<B: Backend>(y: Tensor<B, 4>, s: usize) -> Tensor<B, 4> {
    let [b, o, h, w] = y.dims();
    let (hs, ws) = (h.div_ceil(s), w.div_ceil(s));
    let y = y.pad((0, ws * s - w, 0, hs * s - h), PadMode::Constant(0.0));
    y.reshape([b, o, hs, s, ws, s]).narrow(3, 0, 1).narrow(5, 0, 1).reshape([b, o, hs, ws])
}
