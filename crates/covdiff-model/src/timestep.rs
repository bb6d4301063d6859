//! Sinusoidal timestep embeddings (Vaswani et al.; diffusers' `Timesteps`).

use burn::tensor::{backend::Backend, Tensor};

/// `[sin(t w_k), cos(t w_k)]` with `w_k = 10000^(-k / (half - shift))`, k = 0..half (diffusers'
/// `get_timestep_embedding` with `downscale_freq_shift = shift`); with `flip_sin_to_cos` the
/// halves are swapped (`[cos, sin]`, diffusers' UNet2DModel default).
pub fn sinusoidal<B: Backend>(t: Tensor<B, 1>, dim: usize, flip_sin_to_cos: bool, shift: f64) -> Tensor<B, 2> {
    let n = t.dims()[0];
    let half = (dim / 2).max(1);
    // In f32, as diffusers computes it.
    let denom = (half as f32 - shift as f32).max(1e-9);
    let freqs: Vec<f32> = (0..half).map(|k| (-(10000f32).ln() * k as f32 / denom).exp()).collect();
    let w = Tensor::<B, 1>::from_floats(freqs.as_slice(), &t.device()).reshape([1, half]);
    let arg = t.reshape([n, 1]) * w;
    let (sin, cos) = (arg.clone().sin(), arg.cos());
    if flip_sin_to_cos {
        Tensor::cat(vec![cos, sin], 1)
    } else {
        Tensor::cat(vec![sin, cos], 1)
    }
}
