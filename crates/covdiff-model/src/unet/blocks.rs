//! The UNet's building blocks, named as in diffusers (`resnet.py`,
//! `attention_processor.py`, `unet_2d_blocks.py`), so that the parameter
//! paths of a diffusers `UNet2DModel` checkpoint map onto them.

use super::conv::Conv;
use super::norm::{group_norm, group_norm_silu};
use crate::kernels::silu;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{backend::Backend, Tensor};

fn conv3<B: Backend>(cin: usize, cout: usize, stride: usize, device: &B::Device) -> Conv<B> {
    Conv::new(cin, cout, 3, stride, 1, device)
}

fn norm<B: Backend>(groups: usize, channels: usize, eps: f64, device: &B::Device) -> GroupNorm<B> {
    GroupNormConfig::new(groups, channels).with_epsilon(eps).init(device)
}

/// Shared settings of the blocks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockSettings {
    pub temb: usize,
    pub groups: usize,
    pub eps: f64,
    pub dropout: f64,
    /// `None`: one head per block.
    pub head_dim: Option<usize>,
}

/// `TimestepEmbedding`: `linear_2(silu(linear_1(t)))`.
#[derive(Module, Debug)]
pub struct TimestepEmbedding<B: Backend> {
    linear_1: Linear<B>,
    linear_2: Linear<B>,
}

impl<B: Backend> TimestepEmbedding<B> {
    pub(crate) fn new(input: usize, dim: usize, device: &B::Device) -> Self {
        Self {
            linear_1: LinearConfig::new(input, dim).init(device),
            linear_2: LinearConfig::new(dim, dim).init(device),
        }
    }
    pub fn forward(&self, t: Tensor<B, 2>) -> Tensor<B, 2> {
        self.linear_2.forward(silu(self.linear_1.forward(t)))
    }
}

/// `ResnetBlock2D`: `shortcut(x) + conv2(drop(silu(norm2(conv1(silu(norm1(x))) + proj(silu(temb))))))`.
#[derive(Module, Debug)]
pub struct ResnetBlock2D<B: Backend> {
    norm1: GroupNorm<B>,
    conv1: Conv<B>,
    time_emb_proj: Linear<B>,
    norm2: GroupNorm<B>,
    dropout: Dropout,
    conv2: Conv<B>,
    conv_shortcut: Option<Conv<B>>,
}

impl<B: Backend> ResnetBlock2D<B> {
    pub(crate) fn new(cin: usize, cout: usize, s: BlockSettings, device: &B::Device) -> Self {
        Self {
            norm1: norm(s.groups, cin, s.eps, device),
            conv1: conv3(cin, cout, 1, device),
            time_emb_proj: LinearConfig::new(s.temb, cout).init(device),
            norm2: norm(s.groups, cout, s.eps, device),
            dropout: DropoutConfig::new(s.dropout).init(),
            conv2: conv3(cout, cout, 1, device),
            conv_shortcut: (cin != cout).then(|| Conv::new(cin, cout, 1, 1, 0, device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>, temb: Tensor<B, 2>) -> Tensor<B, 4> {
        let h = self.conv1.forward(group_norm_silu(&self.norm1, x.clone()));
        let [b, c] = [h.dims()[0], h.dims()[1]];
        let h = h + self.time_emb_proj.forward(silu(temb)).reshape([b, c, 1, 1]);
        let h = self.conv2.forward(self.dropout.forward(group_norm_silu(&self.norm2, h)));
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        shortcut + h
    }
}

/// Spatial self-attention (`Attention` with a group norm and a residual connection).
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    group_norm: GroupNorm<B>,
    to_q: Linear<B>,
    to_k: Linear<B>,
    to_v: Linear<B>,
    to_out: Vec<Linear<B>>,
    heads: usize,
}

impl<B: Backend> Attention<B> {
    pub(crate) fn new(channels: usize, s: BlockSettings, device: &B::Device) -> Self {
        let lin = || LinearConfig::new(channels, channels).init(device);
        Self {
            group_norm: norm(s.groups, channels, s.eps, device),
            to_q: lin(),
            to_k: lin(),
            to_v: lin(),
            to_out: vec![lin()],
            heads: s.head_dim.map_or(1, |hd| (channels / hd).max(1)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        let (heads, hd) = (self.heads, c / self.heads);
        let tokens = group_norm(&self.group_norm, x.clone()).reshape([b, c, h * w]).swap_dims(1, 2);
        let split = |t: Tensor<B, 3>| t.reshape([b, h * w, heads, hd]).swap_dims(1, 2);
        let q = split(self.to_q.forward(tokens.clone()));
        let k = split(self.to_k.forward(tokens.clone()));
        let v = split(self.to_v.forward(tokens));
        let scores = crate::kernels::softmax_last(q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt());
        let out = scores.matmul(v).swap_dims(1, 2).reshape([b, h * w, c]);
        let out = self.to_out[0].forward(out).swap_dims(1, 2).reshape([b, c, h, w]);
        out + x
    }
}

/// `Downsample2D`: a stride-2 3x3 convolution.
#[derive(Module, Debug)]
pub struct Downsample2D<B: Backend> {
    conv: Conv<B>,
}

/// `Upsample2D`: nearest-neighbour 2x (burn's `interpolate`, a gather on flex; the former
/// broadcast-and-reshape copied element by element), then a 3x3 convolution.
#[derive(Module, Debug)]
pub struct Upsample2D<B: Backend> {
    conv: Conv<B>,
}

impl<B: Backend> Upsample2D<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, _, h, w] = x.dims();
        let up = interpolate(x, [2 * h, 2 * w], InterpolateOptions::new(InterpolateMode::Nearest));
        self.conv.forward(up)
    }
}

/// `DownBlock2D` / `AttnDownBlock2D`.
#[derive(Module, Debug)]
pub struct DownBlock<B: Backend> {
    resnets: Vec<ResnetBlock2D<B>>,
    attentions: Vec<Attention<B>>,
    downsamplers: Vec<Downsample2D<B>>,
}

impl<B: Backend> DownBlock<B> {
    pub(crate) fn new(
        cin: usize,
        cout: usize,
        layers: usize,
        attention: bool,
        downsample: bool,
        s: BlockSettings,
        device: &B::Device,
    ) -> Self {
        Self {
            resnets: (0..layers)
                .map(|j| ResnetBlock2D::new(if j == 0 { cin } else { cout }, cout, s, device))
                .collect(),
            attentions: if attention { (0..layers).map(|_| Attention::new(cout, s, device)).collect() } else { vec![] },
            downsamplers: if downsample { vec![Downsample2D { conv: conv3(cout, cout, 2, device) }] } else { vec![] },
        }
    }

    /// The output, and the skip connections it adds (one per resnet, one for the downsampler).
    pub fn forward(&self, mut x: Tensor<B, 4>, temb: Tensor<B, 2>, skips: &mut Vec<Tensor<B, 4>>) -> Tensor<B, 4> {
        for (j, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, temb.clone());
            if let Some(attn) = self.attentions.get(j) {
                x = attn.forward(x);
            }
            skips.push(x.clone());
        }
        for ds in &self.downsamplers {
            x = ds.conv.forward(x);
            skips.push(x.clone());
        }
        x
    }
}

/// `UNetMidBlock2D`: resnet, attention, resnet.
#[derive(Module, Debug)]
pub struct MidBlock<B: Backend> {
    resnets: Vec<ResnetBlock2D<B>>,
    attentions: Vec<Attention<B>>,
}

impl<B: Backend> MidBlock<B> {
    pub(crate) fn new(channels: usize, s: BlockSettings, device: &B::Device) -> Self {
        Self {
            resnets: (0..2).map(|_| ResnetBlock2D::new(channels, channels, s, device)).collect(),
            attentions: vec![Attention::new(channels, s, device)],
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>, temb: Tensor<B, 2>) -> Tensor<B, 4> {
        let x = self.resnets[0].forward(x, temb.clone());
        let x = self.attentions[0].forward(x);
        self.resnets[1].forward(x, temb)
    }
}

/// `UpBlock2D` / `AttnUpBlock2D`.
#[derive(Module, Debug)]
pub struct UpBlock<B: Backend> {
    resnets: Vec<ResnetBlock2D<B>>,
    attentions: Vec<Attention<B>>,
    upsamplers: Vec<Upsample2D<B>>,
}

pub(crate) struct UpChannels {
    /// Channels of the block's input (the previous up block's output).
    pub prev: usize,
    /// Channels of the skip from the matching down level's input.
    pub input: usize,
    pub output: usize,
}

impl<B: Backend> UpBlock<B> {
    pub(crate) fn new(
        ch: UpChannels,
        layers: usize,
        attention: bool,
        upsample: bool,
        s: BlockSettings,
        device: &B::Device,
    ) -> Self {
        let resnets = (0..layers)
            .map(|j| {
                let skip = if j == layers - 1 { ch.input } else { ch.output };
                let cin = if j == 0 { ch.prev } else { ch.output };
                ResnetBlock2D::new(cin + skip, ch.output, s, device)
            })
            .collect();
        Self {
            resnets,
            attentions: if attention {
                (0..layers).map(|_| Attention::new(ch.output, s, device)).collect()
            } else {
                vec![]
            },
            upsamplers: if upsample {
                vec![Upsample2D { conv: conv3(ch.output, ch.output, 1, device) }]
            } else {
                vec![]
            },
        }
    }

    pub fn forward(&self, mut x: Tensor<B, 4>, temb: Tensor<B, 2>, skips: &mut Vec<Tensor<B, 4>>) -> Tensor<B, 4> {
        for (j, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("one skip connection per up-block resnet");
            x = resnet.forward(Tensor::cat(vec![x, skip], 1), temb.clone());
            if let Some(attn) = self.attentions.get(j) {
                x = attn.forward(x);
            }
        }
        for up in &self.upsamplers {
            x = up.forward(x);
        }
        x
    }
}
