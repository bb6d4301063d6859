//! Toy 2D diffusion with a learned full 2 x 2 covariance (the anisotropic
//! covariance thesis, `papers/anisotropic-covariance-2d.md`; docs/maths.md "2D
//! anisotropic covariance"), in two variants: the thesis as written, and the
//! principled one where `L L^T` estimates `E_t = Cov[eps | x_t]`.

pub mod card;
mod network;
mod oracle;
mod sampling;
mod train;

pub use card::ModelCard;
pub use network::{Mlp, Toy2dConfig, Toy2dModel};
pub use oracle::GaussianOracle;
pub use sampling::{negative_elbo, sample, x0_covariance, Column, Labelled};
pub use train::{settings, Objective, Toy2dStage};
