//! The diffusion core shared by images and toy 2D, laid out by role as in Extended-Analytic-DPM's
//! `core/diffusion`: the model contract ([`Denoiser`]), the forward noise (white or GFF), the step
//! variance, the samplers, the likelihood and the trainer. `image/` and `toy2d/` keep only what is
//! their own: networks, heads, model cards and oracles.

pub mod denoiser;
pub mod elbo;
pub mod langevin;
pub mod noise;
pub mod sampler;
pub mod train;
pub mod variance;

pub use denoiser::Denoiser;
pub use elbo::{Decoder, Elbo, ElboError, ElboTerms, LogDet};
pub use langevin::{Langevin, LangevinConfig, LangevinError, NoiseLevels};
pub use noise::{ForwardNoise, GffOperator};
pub use sampler::{initial_noise, NoiseClip, SamplerConfig, SamplerError, SamplerKind, Sampling, StepOutput};
pub use train::{Loss, Settings, Snapshot, Stage, StageError, StepLosses, Trainer, TrainingData};
pub use variance::StepVariance;
