//! covdiff-model: burn tensors and modules, shared by the native CLI and
//! the browser. Everything is generic over `B: Backend`; the shells pick the
//! backend through this crate's `ndarray`, `wgpu` and `cuda` features.
//!
//! The library returns tensors and never reads them back synchronously: a
//! blocking GPU read panics in a browser.

pub mod analytic;
pub mod backends;
pub mod classifier;
pub mod covariance;
pub mod diffusion;
pub mod image;
pub mod kernels;
pub mod normals;
pub mod objectives;
pub mod spatial;
pub mod timestep;
pub mod toy2d;
pub mod unet;

pub use covariance::{AnyCovariance, Covariance, Diagonal, Full2, Isotropic, KDct, LowRank};
pub use spatial::SpatialBasis;
