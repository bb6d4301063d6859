//! `covdiff import diffusers <dir>`: a diffusers `UNet2DModel` folder as a covdiff model file (the
//! mapping is `covdiff_model::image::diffusers`).

use super::config::{card_path, DataConfig, ModelCard, NoiseConfig, ScheduleConfig, TrainSpec, CARD_FORMAT};
use super::export::write_bundle;
use crate::device::BackendJob;
use anyhow::{ensure, Context, Result};
use burn::tensor::backend::Backend;
use covdiff_model::image::diffusers::import_unet;
use covdiff_model::image::weights::Bundle;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum Command {
    /// A diffusers UNet2DModel folder (config.json, diffusion_pytorch_model.safetensors).
    Diffusers(Args),
}

#[derive(clap::Args)]
pub struct Args {
    /// The folder `UNet2DModel.save_pretrained` wrote.
    dir: PathBuf,
    /// Where to write the covdiff weights; the card goes beside them (.json).
    #[arg(long, default_value = "imported.safetensors")]
    out: PathBuf,
    /// The image size, where config.json has no sample_size.
    #[arg(long)]
    size: Option<usize>,
    /// The schedule the checkpoint was trained with: linear (DDPM's 1e-4 to 0.02) or cosine.
    #[arg(long, default_value = "linear")]
    schedule: String,
    /// Its number of steps T (diffusers' num_train_timesteps).
    #[arg(long, default_value_t = 1000)]
    schedule_steps: usize,
}

pub fn run(c: Command, device: crate::device::DeviceKind) -> Result<()> {
    match c {
        Command::Diffusers(a) => crate::device::dispatch(device, a),
    }
}

impl BackendJob for Args {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        ensure!(self.out.extension().is_some_and(|e| e == "safetensors"), "--out must name a .safetensors file");
        let config_path = self.dir.join("config.json");
        let weights_path = self.dir.join("diffusion_pytorch_model.safetensors");
        let config = std::fs::read_to_string(&config_path)
            .with_context(|| format!("reading {} (is this a diffusers UNet2DModel folder?)", config_path.display()))?;
        let weights = std::fs::read(&weights_path).with_context(|| format!("reading {}", weights_path.display()))?;
        let (imported, unet) = import_unet::<B>(&config, weights, &device)?;
        let size = match (self.size, imported.sample_size) {
            (Some(s), _) | (None, Some(s)) => s,
            (None, None) => anyhow::bail!("config.json has no sample_size: give the image size with --size"),
        };
        let schedule = ScheduleConfig { kind: self.schedule.clone(), steps: self.schedule_steps };
        schedule.table()?;
        let card = ModelCard {
            format: CARD_FORMAT.into(),
            channels: imported.config.in_channels,
            size,
            data: DataConfig { source: format!("diffusers:{}", self.dir.display()), size, limit: 0 },
            schedule,
            noise: NoiseConfig::default(),
            unet: imported.config.clone(),
            heads: None,
            objective: None,
            train: TrainSpec::default(),
            steps_done: 0,
            metrics: serde_json::json!({
                "imported_from": self.dir.display().to_string(),
                "timesteps": "diffusers feeds the UNet the 0-based step t - 1 (0..T-1) of covdiff's t (1..T): \
                              unet.timestep_offset = -1 applies it at sampling, training and evaluation",
            }),
            weights: String::new(),
        };
        card.check()?;
        write_bundle(&Bundle { unet, covariance_heads: None }, &card, &self.out)?;
        println!(
            "imported {} ({} levels, {} channels, {size} x {size}); wrote {} and {}",
            self.dir.display(),
            imported.config.block_out_channels.len(),
            card.channels,
            self.out.display(),
            card_path(&self.out).display()
        );
        Ok(())
    }
}
