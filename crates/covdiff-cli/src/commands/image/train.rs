//! `covdiff train`: stage 1 (eps-UNet by L_simple) or stage 2 (covariance
//! heads on the frozen UNet), from a TOML config with command-line overrides.

use super::config::{load_data, read_card, ModelCard, RunConfig, CARD_FORMAT};
use super::export::write_bundle;
use crate::checkpoint::Checkpoints;
use crate::device::BackendJob;
use crate::training::{train_loop, Log};
use anyhow::{ensure, Context, Result};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::backend::{DeviceId, DeviceOps};
use covdiff_model::diffusion::Trainer;
use covdiff_model::image::weights::{self, Bundle};
use covdiff_model::image::{EpsStage, HeadStage};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// A TOML run configuration (sections data, schedule, noise, unet, train, heads); without it,
    /// the built-in example: the tiny UNet on Fashion-MNIST at 28 x 28.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The run folder: config.toml, metrics.jsonl, checkpoint/, and at the end model.safetensors + model.json.
    #[arg(long, default_value = "runs/eps")]
    out: PathBuf,
    /// Stage 2: train covariance heads (diag, lowrank<r>, kdct, free, free-diag) on frozen eps weights.
    #[arg(long)]
    heads: Option<String>,
    /// Stage 2 objective: npr, npr-residual, ocm or sn.
    #[arg(long)]
    objective: Option<String>,
    /// Stage 2: the stage-1 weights (model.safetensors of an eps run).
    #[arg(long)]
    eps_weights: Option<PathBuf>,
    /// Data source override: fashion-mnist, idx:<file>, cifar10:<dir>, images:<dir>.
    #[arg(long)]
    data: Option<String>,
    /// Forward noise override: white or gff (NI-DDPM).
    #[arg(long)]
    noise: Option<String>,
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    batch: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    seed: Option<u64>,
    /// Checkpoint every this many steps (0: only at the end).
    #[arg(long)]
    checkpoint_every: Option<usize>,
    /// Data-parallel over this many devices of the chosen backend (--device cuda or wgpu: indices
    /// 0..N), with burn's multi-device optimiser step; each step's batch is split between them.
    #[arg(long, default_value_t = 1)]
    devices: usize,
    /// Ignore an existing checkpoint and start over.
    #[arg(long)]
    fresh: bool,
}

/// Devices `1..n` of the backend of `device` (which is device 0).
fn other_devices<D: DeviceOps>(device: &D, n: usize) -> Vec<D> {
    let id = device.id();
    (1..n).map(|i| D::from_id(DeviceId::new(id.type_id, id.index_id + i as u16))).collect()
}

impl Args {
    fn resolve(&self) -> Result<RunConfig> {
        let mut c = match &self.config {
            Some(p) => RunConfig::read(p)?,
            None => RunConfig::default(),
        };
        if let Some(v) = &self.data {
            c.data.source = v.clone();
        }
        if let Some(v) = &self.noise {
            c.noise.kind = v.clone();
        }
        if let Some(v) = self.steps {
            c.train.steps = v;
        }
        if let Some(v) = self.batch {
            c.train.batch = v;
        }
        if let Some(v) = self.lr {
            c.train.lr = v;
        }
        if let Some(v) = self.seed {
            c.train.seed = v;
        }
        if let Some(v) = self.checkpoint_every {
            c.train.checkpoint_every = v;
        }
        if self.heads.is_some() || self.objective.is_some() || self.eps_weights.is_some() {
            let h = c.heads.get_or_insert_with(Default::default);
            if let Some(v) = &self.heads {
                h.kind = v.clone();
            }
            if let Some(v) = &self.objective {
                h.objective = v.clone();
            }
            if let Some(v) = &self.eps_weights {
                h.eps_weights = v.clone();
            }
        }
        Ok(c)
    }
}

/// The identity of a run: everything but how long it trains and how it logs.
fn run_identity(c: &RunConfig) -> serde_json::Value {
    let mut v = serde_json::to_value(c).expect("configs serialise");
    for k in ["steps", "checkpoint_every", "log_every"] {
        v["train"].as_object_mut().map(|o| o.remove(k));
    }
    v
}

impl BackendJob for Args {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let cfg = self.resolve()?;
        ensure!((1..=64).contains(&self.devices), "--devices must be between 1 and 64");
        let others = other_devices(&device, self.devices);
        let settings = cfg.train.settings()?;
        let data = Arc::new(load_data(&cfg.data)?);
        let (channels, size) = (data.channels, data.size);
        let table = cfg.schedule.table()?;
        let noise = cfg.noise.build::<Autodiff<B>>(size, &device)?;
        let unet_cfg = cfg.unet.build(channels, size)?;
        std::fs::create_dir_all(&self.out).with_context(|| format!("creating {}", self.out.display()))?;
        std::fs::write(self.out.join("config.toml"), toml::to_string_pretty(&cfg)?)?;
        let checkpoints = Checkpoints::new(self.out.join("checkpoint"), run_identity(&cfg));
        let mut metrics = checkpoints.start(self.fresh, &self.out.join("metrics.jsonl"))?;
        let mut card = ModelCard {
            format: CARD_FORMAT.into(),
            channels,
            size,
            data: cfg.data.clone(),
            schedule: cfg.schedule.clone(),
            noise: cfg.noise.clone(),
            unet: unet_cfg.clone(),
            heads: None,
            objective: None,
            train: cfg.train.clone(),
            steps_done: 0,
            metrics: serde_json::Value::Null,
            weights: "model.safetensors".into(),
        };
        let log = Some(Log {
            metrics: &mut metrics,
            checkpoints: &checkpoints,
            every: cfg.train.checkpoint_every,
            log_every: cfg.train.log_every.max(1),
        });
        match &cfg.heads {
            None => {
                covdiff_model::normals::seed::<B>(&device, settings.seed);
                let init = || unet_cfg.init::<Autodiff<B>>(&device);
                let trainer =
                    Trainer::new(EpsStage, init(), data, table, noise, settings, &device)?.with_devices(&others);
                let (trainer, summary) = train_loop(trainer, init, cfg.train.steps, "eps", log, &device)?;
                card.steps_done = trainer.steps_done();
                card.metrics = summary;
                let bundle = Bundle { unet: trainer.ema().clone(), covariance_heads: None };
                write_bundle(&bundle, &card, &self.out.join("model.safetensors"))?;
            }
            Some(h) => {
                ensure!(
                    !h.eps_weights.as_os_str().is_empty(),
                    "stage 2 needs the stage-1 weights: --eps-weights <run>/model.safetensors (or eps_weights in [heads])"
                );
                let eps_card = read_card(&h.eps_weights)?;
                ensure!(
                    (eps_card.channels, eps_card.size) == (channels, size),
                    "the eps weights were trained on {}x{}x{} images, this data is {channels}x{size}x{size}",
                    eps_card.channels,
                    eps_card.size,
                    eps_card.size
                );
                ensure!(
                    eps_card.noise == cfg.noise,
                    "the eps weights were trained with other forward noise ({:?})",
                    eps_card.noise
                );
                let frozen = Bundle { unet: eps_card.unet.try_init::<B>(&device)?, covariance_heads: None };
                let frozen = weights::load(frozen, &h.eps_weights).map_err(anyhow::Error::msg)?.unet;
                let heads_cfg = h.config(&eps_card.unet, size)?;
                let objective = h.objective()?;
                covdiff_model::normals::seed::<B>(&device, settings.seed);
                let init = || heads_cfg.init::<Autodiff<B>>(&device);
                let stage = HeadStage::<Autodiff<B>> { unet: frozen.clone(), objective };
                let trainer = Trainer::new(stage, init(), data, table, noise, settings, &device)?.with_devices(&others);
                let name = format!("{}-{}", heads_cfg.kind, objective);
                let (trainer, summary) = train_loop(trainer, init, cfg.train.steps, &name, log, &device)?;
                card.unet = eps_card.unet.clone();
                card.heads = Some(heads_cfg.clone());
                card.objective = Some(objective.name().into());
                card.steps_done = trainer.steps_done();
                card.metrics = summary;
                card.metrics["eps_weights"] = serde_json::json!(h.eps_weights);
                let bundle = Bundle { unet: frozen, covariance_heads: Some(trainer.ema().clone()) };
                write_bundle(&bundle, &card, &self.out.join("model.safetensors"))?;
            }
        }
        println!(
            "trained {} for {} steps; wrote {} and {}",
            card.name(),
            card.steps_done,
            self.out.join("model.safetensors").display(),
            self.out.join("model.json").display()
        );
        Ok(())
    }
}
