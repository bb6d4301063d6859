//! Image diffusion commands: train, sample, eval, export.

pub mod classifier;
pub mod config;
pub mod eval;
pub mod exactness;
pub mod export;
pub mod models;
pub mod sample;
pub mod train;
