//! The UNet eps-predictor. Its module names follow diffusers' `UNet2DModel`
//! (`conv_in`, `time_embedding.linear_1`, `down_blocks.0.resnets.0.conv1`,
//! `down_blocks.1.attentions.0.to_q`, `down_blocks.0.downsamplers.0.conv`,
//! `mid_block.attentions.0.to_out.0`, `up_blocks.3.resnets.2.conv_shortcut`,
//! `conv_norm_out`, `conv_out`), so that a diffusers checkpoint can be mapped
//! onto it. Two differences in leaf names remain for an importer to translate:
//! burn's group norms hold `gamma`/`beta` where torch has `weight`/`bias`, and
//! burn's linear weights are stored transposed.

mod blocks;
mod conv;
mod norm;

pub use blocks::{Attention, DownBlock, MidBlock, ResnetBlock2D, TimestepEmbedding, UpBlock};
pub use conv::{Conv, ConvRoute};
pub use norm::{group_norm, group_norm_ops, group_norm_silu};

use crate::timestep::sinusoidal;
use blocks::{BlockSettings, UpChannels};
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig};
use burn::tensor::{backend::Backend, Int, Tensor};

/// The shape of a UNet.
#[derive(Config, Debug, PartialEq)]
pub struct UNetConfig {
    #[config(default = 1)]
    pub in_channels: usize,
    #[config(default = 1)]
    pub out_channels: usize,
    /// Channels per resolution level (the base channels times the multipliers).
    pub block_out_channels: Vec<usize>,
    /// Residual blocks per level on the way down (one more on the way up).
    #[config(default = 2)]
    pub layers_per_block: usize,
    /// Per level: self-attention after each residual block (the attention resolutions).
    pub attention: Vec<bool>,
    /// Width of an attention head; `None` gives one head per block.
    #[config(default = "None")]
    pub attention_head_dim: Option<usize>,
    #[config(default = 32)]
    pub norm_num_groups: usize,
    #[config(default = 1e-5)]
    pub norm_eps: f64,
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Class-conditional when set: a learnt embedding summed to the time embedding.
    #[config(default = "None")]
    pub num_class_embeds: Option<usize>,
    /// The sinusoidal embedding's halves as `[cos, sin]` (diffusers' `flip_sin_to_cos`); `None`:
    /// true. (Options, so that cards written before these settings existed still read.)
    #[config(default = "None")]
    pub flip_sin_to_cos: Option<bool>,
    /// Diffusers' `freq_shift`: frequencies `10000^(-k / (half - freq_shift))`; `None`: 0.
    #[config(default = "None")]
    pub freq_shift: Option<f64>,
    /// Added to covdiff's step `t` (1..=T) before the embedding; `None`: 0, covdiff's own networks.
    /// -1 for networks trained by diffusers' schedulers, which feed the 0-based index 0..T-1 of
    /// the same noise level.
    #[config(default = "None")]
    pub timestep_offset: Option<f64>,
}

impl UNetConfig {
    /// Small enough to train in minutes on 2 CPU cores at 28 x 28 (levels 28, 14, 7).
    pub fn tiny(channels: usize) -> Self {
        Self::new(vec![32, 64, 64], vec![false, true, false])
            .with_in_channels(channels)
            .with_out_channels(channels)
            .with_layers_per_block(1)
            .with_norm_num_groups(8)
    }

    /// The DDPM CIFAR-10 network (Ho et al.; diffusers' `google/ddpm-cifar10-32`):
    /// 128 base channels, multipliers (1, 2, 2, 2), 2 blocks per level, attention at 16 x 16.
    pub fn cifar(channels: usize) -> Self {
        Self::new(vec![128, 256, 256, 256], vec![false, true, false, false])
            .with_in_channels(channels)
            .with_out_channels(channels)
            .with_norm_eps(1e-6)
            .with_dropout(0.1)
    }

    /// Why this configuration cannot be built, if it cannot.
    pub fn validate(&self) -> Result<(), covdiff_core::Error> {
        self.problem().map_or(Ok(()), |reason| Err(covdiff_core::Error::invalid("UNet configuration", reason)))
    }

    fn problem(&self) -> Option<String> {
        let levels = self.block_out_channels.len();
        if levels == 0 || self.attention.len() != levels {
            return Some(format!("need one attention flag per level: {levels} levels, {} flags", self.attention.len()));
        }
        if self.layers_per_block == 0 || self.norm_num_groups == 0 {
            return Some("layers_per_block and norm_num_groups must be positive".into());
        }
        if let Some(c) = self.block_out_channels.iter().find(|c| **c == 0 || *c % self.norm_num_groups != 0) {
            return Some(format!("{c} channels cannot be split into {} groups", self.norm_num_groups));
        }
        if let Some(hd) = self.attention_head_dim {
            // The levels with attention, and the mid-block's (the last level's channels).
            let attended = self.block_out_channels.iter().zip(&self.attention).filter(|(_, a)| **a).map(|(c, _)| c);
            if let Some(c) = attended.chain(ch_last(self)).find(|c| hd == 0 || *c % hd != 0) {
                return Some(format!("{c} channels cannot be split into heads of {hd}"));
            }
        }
        let (shift, offset) = (self.freq_shift.unwrap_or(0.0), self.timestep_offset.unwrap_or(0.0));
        if !(shift.is_finite() && offset.is_finite()) {
            return Some("freq_shift and timestep_offset must be finite".into());
        }
        if self.block_out_channels[0] / 2 <= shift.max(0.0) as usize {
            return Some(format!("freq_shift {shift} leaves no frequencies"));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Some(format!("dropout {} is not in [0, 1)", self.dropout));
        }
        None
    }

    /// Images must be divisible by this (one halving per level but the last).
    pub fn size_multiple(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }

    /// Build the network, or say why this configuration cannot be built.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> Result<UNet<B>, covdiff_core::Error> {
        self.validate()?;
        Ok(self.init(device))
    }

    /// Build the network. Panics on a configuration that [`UNetConfig::validate`] rejects: use
    /// [`UNetConfig::try_init`] for configurations from users.
    pub fn init<B: Backend>(&self, device: &B::Device) -> UNet<B> {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        let ch = &self.block_out_channels;
        let levels = ch.len();
        let temb = 4 * ch[0];
        let s = BlockSettings {
            temb,
            groups: self.norm_num_groups,
            eps: self.norm_eps,
            dropout: self.dropout,
            head_dim: self.attention_head_dim,
        };
        let mut down_blocks = Vec::with_capacity(levels);
        let mut output = ch[0];
        for (i, (&channels, &attention)) in ch.iter().zip(&self.attention).enumerate() {
            let input = output;
            output = channels;
            down_blocks.push(DownBlock::new(
                input,
                output,
                self.layers_per_block,
                attention,
                i + 1 < levels,
                s,
                device,
            ));
        }
        let rev: Vec<usize> = ch.iter().rev().copied().collect();
        let mut up_blocks = Vec::with_capacity(levels);
        let mut output = rev[0];
        for i in 0..levels {
            let prev = output;
            output = rev[i];
            let input = rev[(i + 1).min(levels - 1)];
            let attention = self.attention[levels - 1 - i];
            let up = UpChannels { prev, input, output };
            up_blocks.push(UpBlock::new(up, self.layers_per_block + 1, attention, i + 1 < levels, s, device));
        }
        UNet {
            conv_in: Conv::new(self.in_channels, ch[0], 3, 1, 1, device),
            time_embedding: TimestepEmbedding::new(ch[0], temb, device),
            class_embedding: self.num_class_embeds.map(|n| EmbeddingConfig::new(n, temb).init(device)),
            down_blocks,
            mid_block: MidBlock::new(ch[levels - 1], s, device),
            up_blocks,
            conv_norm_out: GroupNormConfig::new(self.norm_num_groups, ch[0]).with_epsilon(self.norm_eps).init(device),
            conv_out: Conv::new(ch[0], self.out_channels, 3, 1, 1, device),
            time_proj_dim: ch[0],
            flip_sin_to_cos: self.flip_sin_to_cos.unwrap_or(true),
            freq_shift: self.freq_shift.unwrap_or(0.0),
            timestep_offset: self.timestep_offset.unwrap_or(0.0),
        }
    }
}

/// The last level's channels (the mid-block's), where there is a level.
fn ch_last(c: &UNetConfig) -> Option<&usize> {
    c.block_out_channels.last()
}

/// The eps-prediction and the features the covariance heads read (paper Eq. 15, Table 5).
pub struct UNetOutput<B: Backend> {
    /// `eps_hat`, `[B, out_channels, d, d]`.
    pub eps: Tensor<B, 4>,
    /// The mid-block's output, `[B, C_last, d / 2^(L-1), d / 2^(L-1)]`.
    pub mid: Tensor<B, 4>,
    /// The last up-block's output, `[B, C_0, d, d]`.
    pub last_up: Tensor<B, 4>,
}

#[derive(Module, Debug)]
pub struct UNet<B: Backend> {
    conv_in: Conv<B>,
    time_embedding: TimestepEmbedding<B>,
    class_embedding: Option<Embedding<B>>,
    down_blocks: Vec<DownBlock<B>>,
    mid_block: MidBlock<B>,
    up_blocks: Vec<UpBlock<B>>,
    conv_norm_out: GroupNorm<B>,
    conv_out: Conv<B>,
    time_proj_dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    timestep_offset: f64,
}

impl<B: Backend> UNet<B> {
    /// `eps_hat(x_t, t)`; `t` holds each image's step as a float, `y` its class when conditional.
    pub fn forward(&self, x: Tensor<B, 4>, t: Tensor<B, 1>, y: Option<Tensor<B, 1, Int>>) -> Tensor<B, 4> {
        self.forward_features(x, t, y).eps
    }

    pub fn forward_features(&self, x: Tensor<B, 4>, t: Tensor<B, 1>, y: Option<Tensor<B, 1, Int>>) -> UNetOutput<B> {
        let b = x.dims()[0];
        let t = if self.timestep_offset == 0.0 { t } else { t + self.timestep_offset };
        let mut temb =
            self.time_embedding.forward(sinusoidal(t, self.time_proj_dim, self.flip_sin_to_cos, self.freq_shift));
        if let (Some(emb), Some(y)) = (&self.class_embedding, y) {
            let e = emb.forward(y.reshape([b, 1]));
            let k = e.dims()[2];
            temb = temb + e.reshape([b, k]);
        }
        let mut x = self.conv_in.forward(x);
        let mut skips = vec![x.clone()];
        for block in &self.down_blocks {
            x = block.forward(x, temb.clone(), &mut skips);
        }
        let mid = self.mid_block.forward(x, temb.clone());
        let mut x = mid.clone();
        for block in &self.up_blocks {
            x = block.forward(x, temb.clone(), &mut skips);
        }
        let last_up = x.clone();
        let eps = self.conv_out.forward(group_norm_silu(&self.conv_norm_out, x));
        UNetOutput { eps, mid, last_up }
    }

    pub fn is_conditional(&self) -> bool {
        self.class_embedding.is_some()
    }
}
