//! Image diffusion commands: train, sample, inpaint, eval, export.

pub mod classifier;
pub mod config;
pub mod eval;
pub mod exactness;
pub mod export;
pub mod inpaint;
pub mod models;
pub mod sample;
pub mod train;
