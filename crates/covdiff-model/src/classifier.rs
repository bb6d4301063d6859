//! A small CNN classifier whose penultimate features define covdiff's FD
//! (the FID formula in this feature space; no Inception weights exist here)
//! and its k-NN precision and recall.

use crate::kernels::silu;
use crate::unet::Conv;
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{backend::Backend, Tensor};

#[derive(Config, Debug, PartialEq)]
pub struct ClassifierConfig {
    pub channels: usize,
    pub classes: usize,
    /// Channels of the first conv; the features have `2 * width` dimensions.
    #[config(default = 32)]
    pub width: usize,
}

impl ClassifierConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> Classifier<B> {
        let w = self.width;
        Classifier {
            conv1: Conv::new(self.channels, w, 3, 1, 1, device),
            conv2: Conv::new(w, 2 * w, 3, 2, 1, device),
            conv3: Conv::new(2 * w, 2 * w, 3, 2, 1, device),
            fc: LinearConfig::new(2 * w, 2 * w).init(device),
            head: LinearConfig::new(2 * w, self.classes).init(device),
        }
    }
}

#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    conv1: Conv<B>,
    conv2: Conv<B>,
    conv3: Conv<B>,
    fc: Linear<B>,
    head: Linear<B>,
}

impl<B: Backend> Classifier<B> {
    /// Penultimate features, `[B, 2 width]`: global average pooling, then one dense layer.
    pub fn features(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let h = silu(self.conv3.forward(silu(self.conv2.forward(silu(self.conv1.forward(x))))));
        let [b, c, ..] = h.dims();
        silu(self.fc.forward(h.mean_dim(3).mean_dim(2).reshape([b, c])))
    }

    /// Class logits.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.head.forward(self.features(x))
    }
}
