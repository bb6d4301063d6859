//! Image diffusion commands: train, sample, inpaint, eval, export, import.

pub mod classifier;
pub mod config;
pub mod eval;
pub mod exactness;
pub mod export;
pub mod import;
pub mod inpaint;
pub mod models;
pub mod sample;
pub mod train;
