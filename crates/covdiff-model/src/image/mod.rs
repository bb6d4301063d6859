//! Image diffusion with structured covariance (the K-DCT paper): covariance heads on a UNet,
//! the UNet's training stages, model cards and pipelines, guidance and the Gaussian exactness
//! study. Samplers, the ELBO, the forward noise and the trainer are the shared core in
//! [`crate::diffusion`].

pub mod card;
pub mod denoiser;
pub mod diffusers;
pub mod exactness;
pub mod guidance;
pub mod heads;
pub mod pipeline;
pub mod train;

pub use card::{ModelCard, CARD_FORMAT};
pub use denoiser::{GaussianDenoiser, SecondOrder};
pub use guidance::{conjugate_gradient, CgOptions, GuidanceCovariance, Guided, Observation};
pub use heads::{CovarianceHeads, CovarianceHeadsConfig, HeadKind};
pub use pipeline::{Column, Pipeline, PipelineError};
pub use train::{whitened_jvp, EpsStage, HeadObjective, HeadStage, SmldStage};
pub mod weights;
