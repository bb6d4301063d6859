//! Image diffusion with structured covariance (the K-DCT paper): covariance
//! heads on a UNet, two-stage training, samplers, the ELBO, and NI-DDPM's
//! GFF forward noise.

pub mod card;
pub mod denoiser;
pub mod elbo;
pub mod exactness;
pub mod guidance;
pub mod heads;
pub mod noise;
pub mod pipeline;
pub mod sampler;
pub mod train;

pub use card::{ModelCard, CARD_FORMAT};
pub use denoiser::{Denoiser, GaussianDenoiser, SecondOrder};
pub use elbo::{Elbo, ElboError, ElboTerms, LogDet};
pub use guidance::{conjugate_gradient, CgOptions, GuidanceCovariance, Guided, Observation};
pub use heads::{CovarianceHeads, CovarianceHeadsConfig, HeadKind};
pub use noise::{ForwardNoise, GffOperator};
pub use pipeline::{Column, Pipeline, PipelineError};
pub use sampler::{
    initial_noise, NoiseClip, SamplerConfig, SamplerError, SamplerKind, Sampling, StepOutput, StepVariance,
};
pub use train::{EpsStage, HeadObjective, HeadStage, Settings, Stage, StageError, Trainer};
pub mod weights;
