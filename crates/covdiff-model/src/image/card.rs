//! The model card: what a weights file holds and how it was trained, as JSON in its safetensors
//! header (`covdiff_card`) and beside it (`x.safetensors` -> `x.json`). Everything that rebuilds
//! a model (the [`Pipeline`](super::pipeline::Pipeline), the CLI, the browser) reads it; each
//! part checks itself and returns an error, never a panic, since a card is user input.

use super::heads::CovarianceHeadsConfig;
use crate::diffusion::Settings;
use crate::diffusion::{ForwardNoise, GffOperator};
use crate::unet::UNetConfig;
use burn::tensor::backend::Backend;
use covdiff_core::gff::Gff;
use covdiff_core::schedule::{Cosine, Linear, Schedule, ScheduleTable};
use covdiff_core::Error;
use serde::{Deserialize, Serialize};

/// The card format this version reads and writes.
pub const CARD_FORMAT: &str = "covdiff-image-1";

/// The training data: where it came from, at what size, how much of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// fashion-mnist, idx:<file>, cifar10:<dir> or images:<dir>.
    pub source: String,
    /// Resize to this size (0 keeps the source's size).
    pub size: usize,
    /// Use only the first images (0: all).
    pub limit: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self { source: "fashion-mnist".into(), size: 0, limit: 0 }
    }
}

/// The forward process's `beta_t` (docs/maths.md's "Schedule").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// linear (Ho et al.) or cosine (Nichol & Dhariwal).
    pub kind: String,
    pub steps: usize,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self { kind: "linear".into(), steps: 1000 }
    }
}

impl ScheduleConfig {
    pub fn table(&self) -> Result<ScheduleTable, Error> {
        if !(2..=100_000).contains(&self.steps) {
            return Err(Error::invalid("schedule steps", format!("{} is not between 2 and 100000", self.steps)));
        }
        match self.kind.as_str() {
            "linear" => Ok(Linear { steps: self.steps, ..Default::default() }.table()),
            "cosine" => Ok(Cosine { steps: self.steps, ..Default::default() }.table()),
            k => Err(Error::unknown("schedule", k, "linear or cosine")),
        }
    }
}

/// The forward noise: white (DDPM) or a Gaussian free field (NI-DDPM).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseConfig {
    /// white or gff.
    pub kind: String,
    /// The GFF's power, `w_k = |k|^-gamma`.
    pub gamma: f64,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self { kind: "white".into(), gamma: 1.0 }
    }
}

impl NoiseConfig {
    pub fn build<B: Backend>(&self, size: usize, device: &B::Device) -> Result<ForwardNoise<B>, Error> {
        match self.kind.as_str() {
            "white" => Ok(ForwardNoise::White),
            "gff" => Ok(ForwardNoise::Gff(GffOperator::sqrt_of(&Gff::new(size, self.gamma)?, device))),
            k => Err(Error::unknown("noise", k, "white or gff")),
        }
    }
}

/// The optimiser's settings and length of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSpec {
    pub steps: usize,
    pub checkpoint_every: usize,
    pub log_every: usize,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup: usize,
    pub grad_clip: f64,
    pub ema: f64,
    pub seed: u64,
}

impl Default for TrainSpec {
    fn default() -> Self {
        let s = Settings::default();
        Self {
            steps: 2000,
            checkpoint_every: 200,
            log_every: 10,
            batch: s.batch,
            lr: s.lr,
            weight_decay: s.weight_decay,
            warmup: s.warmup,
            grad_clip: s.grad_clip,
            ema: s.ema,
            seed: s.seed,
        }
    }
}

impl TrainSpec {
    pub fn settings(&self) -> Result<Settings, Error> {
        let bad = |reason: &str| Err(Error::invalid("[train]", reason));
        if self.steps == 0 || self.batch == 0 {
            return bad("steps and batch must be positive");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr must be a positive number");
        }
        if !(0.0..1.0).contains(&self.ema) {
            return bad("ema must be in [0, 1)");
        }
        if !(self.grad_clip >= 0.0 && self.weight_decay >= 0.0) {
            return bad("grad_clip and weight_decay must be >= 0");
        }
        Ok(Settings {
            batch: self.batch,
            lr: self.lr,
            weight_decay: self.weight_decay,
            warmup: self.warmup,
            grad_clip: self.grad_clip,
            ema: self.ema,
            seed: self.seed,
            decay_steps: 0,
        })
    }
}

/// What a weights file holds: image shape, schedule, noise, the UNet and its heads, and the run
/// that trained them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: String,
    pub channels: usize,
    pub size: usize,
    pub data: DataConfig,
    pub schedule: ScheduleConfig,
    pub noise: NoiseConfig,
    pub unet: UNetConfig,
    pub heads: Option<CovarianceHeadsConfig>,
    pub objective: Option<String>,
    pub train: TrainSpec,
    pub steps_done: usize,
    /// Final training loss, evaluation tables and the like.
    pub metrics: serde_json::Value,
    /// The weights file, relative to the card.
    pub weights: String,
}

impl ModelCard {
    /// A card from its JSON text, checked: the format, the UNet against the image shape, and
    /// the heads against the UNet.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let card: Self = serde_json::from_str(text).map_err(|e| Error::invalid("model card", e.to_string()))?;
        card.check()?;
        Ok(card)
    }

    /// Every check of [`ModelCard::from_json`].
    pub fn check(&self) -> Result<(), Error> {
        if self.format != CARD_FORMAT {
            return Err(Error::invalid(
                "model card",
                format!("unknown format '{}' (expected {CARD_FORMAT})", self.format),
            ));
        }
        self.unet.validate()?;
        if self.unet.in_channels != self.channels
            || self.size == 0
            || !self.size.is_multiple_of(self.unet.size_multiple())
        {
            return Err(Error::invalid(
                "model card",
                format!(
                    "a UNet of {} input channels and size multiple {} does not fit {} x {} x {} images",
                    self.unet.in_channels,
                    self.unet.size_multiple(),
                    self.channels,
                    self.size,
                    self.size
                ),
            ));
        }
        if let Some(h) = &self.heads {
            let expected = CovarianceHeadsConfig::for_unet(h.kind, &self.unet, self.size);
            let same_shape = (h.channels, h.size, h.last_channels, h.mid_features, h.norm_num_groups)
                == (
                    expected.channels,
                    expected.size,
                    expected.last_channels,
                    expected.mid_features,
                    expected.norm_num_groups,
                );
            if !same_shape || h.hidden == 0 {
                return Err(Error::invalid("model card", "its covariance heads do not fit its UNet"));
            }
        }
        Ok(())
    }

    /// The model's short name: `eps`, or the heads' kind and objective (`kdct-ocm`).
    pub fn name(&self) -> String {
        match (&self.heads, &self.objective) {
            (Some(h), Some(o)) => format!("{}-{o}", h.kind),
            (Some(h), None) => h.kind.to_string(),
            _ => "eps".into(),
        }
    }
}
