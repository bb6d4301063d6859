//! The TOML run configuration of `covdiff train`, and the JSON model card
//! written beside exported weights, from which every other command rebuilds
//! the model.

use anyhow::{bail, ensure, Context, Result};
use burn::tensor::backend::Backend;
use covdiff_core::data::{DataSource, ImageSet};
use covdiff_core::gff::Gff;
use covdiff_core::schedule::{Cosine, Linear, Schedule, ScheduleTable};
use covdiff_model::image::{CovarianceHeadsConfig, ForwardNoise, GffOperator, HeadKind, HeadObjective, Settings};
use covdiff_model::unet::UNetConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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

impl DataConfig {
    pub fn load(&self) -> Result<ImageSet> {
        load_images(&self.source, self.size, self.limit)
    }
}

/// Load a data source, resized and truncated.
pub fn load_images(source: &str, size: usize, limit: usize) -> Result<ImageSet> {
    let src: DataSource = source.parse()?;
    let mut set = src.load(if size == 0 { 32 } else { size }).with_context(|| format!("loading {src}"))?;
    ensure!(!set.is_empty(), "{src} holds no images");
    if size != 0 && set.size != size {
        set = set.resized(size);
    }
    if limit > 0 {
        set.truncate(limit);
    }
    Ok(set)
}

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
    pub fn table(&self) -> Result<ScheduleTable> {
        ensure!((2..=100_000).contains(&self.steps), "schedule steps must be between 2 and 100000");
        Ok(match self.kind.as_str() {
            "linear" => Linear { steps: self.steps, ..Default::default() }.table(),
            "cosine" => Cosine { steps: self.steps, ..Default::default() }.table(),
            k => bail!("unknown schedule '{k}' (expected linear or cosine)"),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseConfig {
    /// white (DDPM) or gff (NI-DDPM).
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
    pub fn build<B: Backend>(&self, size: usize, device: &B::Device) -> Result<ForwardNoise<B>> {
        Ok(match self.kind.as_str() {
            "white" => ForwardNoise::White,
            "gff" => ForwardNoise::Gff(GffOperator::sqrt_of(
                &Gff::new(size, self.gamma).map_err(anyhow::Error::msg)?,
                device,
            )),
            k => bail!("unknown noise '{k}' (expected white or gff)"),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UNetSpec {
    /// tiny or cifar; the fields below override the preset when set.
    pub preset: String,
    pub block_out_channels: Option<Vec<usize>>,
    pub attention: Option<Vec<bool>>,
    pub layers_per_block: Option<usize>,
    pub norm_num_groups: Option<usize>,
    pub dropout: Option<f64>,
}

impl Default for UNetSpec {
    fn default() -> Self {
        Self {
            preset: "tiny".into(),
            block_out_channels: None,
            attention: None,
            layers_per_block: None,
            norm_num_groups: None,
            dropout: None,
        }
    }
}

impl UNetSpec {
    pub fn build(&self, channels: usize, size: usize) -> Result<UNetConfig> {
        let mut c = match self.preset.as_str() {
            "tiny" => UNetConfig::tiny(channels),
            "cifar" => UNetConfig::cifar(channels),
            p => bail!("unknown UNet preset '{p}' (expected tiny or cifar)"),
        };
        if let Some(v) = &self.block_out_channels {
            c.block_out_channels = v.clone();
        }
        if let Some(v) = &self.attention {
            c.attention = v.clone();
        }
        if let Some(v) = self.layers_per_block {
            c.layers_per_block = v;
        }
        if let Some(v) = self.norm_num_groups {
            c.norm_num_groups = v;
        }
        if let Some(v) = self.dropout {
            c.dropout = v;
        }
        c.validate().map_err(|e| anyhow::anyhow!("[unet]: {e}"))?;
        ensure!(
            size.is_multiple_of(c.size_multiple()),
            "images of {size} x {size} do not fit this UNet: the size must be a multiple of {}",
            c.size_multiple()
        );
        Ok(c)
    }
}

/// Stage 2: which heads, trained how, on which stage-1 weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadsSpec {
    /// The stage-1 weights (`model.safetensors` of an eps run).
    pub eps_weights: PathBuf,
    /// diag, lowrank<r>, kdct, free or free-diag.
    pub kind: String,
    /// npr, npr-residual, ocm or sn (sn: diag only).
    pub objective: String,
    pub hidden: usize,
    /// OCM's finite-difference step.
    pub ocm_h: f64,
}

impl Default for HeadsSpec {
    fn default() -> Self {
        Self { eps_weights: PathBuf::new(), kind: "kdct".into(), objective: "npr".into(), hidden: 256, ocm_h: 1e-2 }
    }
}

impl HeadsSpec {
    pub fn kind(&self) -> Result<HeadKind> {
        self.kind.parse().map_err(anyhow::Error::msg)
    }
    pub fn objective(&self) -> Result<HeadObjective> {
        let o: HeadObjective = self.objective.parse().map_err(anyhow::Error::msg)?;
        let kind = self.kind()?;
        ensure!(o != HeadObjective::Sn || kind == HeadKind::Diagonal, "the sn objective trains diag heads only");
        Ok(match o {
            HeadObjective::Ocm { .. } => {
                ensure!(self.ocm_h > 0.0 && self.ocm_h.is_finite(), "ocm_h must be positive");
                HeadObjective::Ocm { h: self.ocm_h }
            }
            o => o,
        })
    }
    pub fn config(&self, unet: &UNetConfig, size: usize) -> Result<CovarianceHeadsConfig> {
        ensure!(self.hidden > 0, "[heads] hidden must be positive");
        Ok(CovarianceHeadsConfig::for_unet(self.kind()?, unet, size)
            .with_hidden(self.hidden)
            .with_second_moment(self.objective()? == HeadObjective::Sn))
    }
}

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
    pub fn settings(&self) -> Result<Settings> {
        ensure!(self.steps > 0 && self.batch > 0, "[train] steps and batch must be positive");
        ensure!(self.lr.is_finite() && self.lr > 0.0, "[train] lr must be a positive number");
        ensure!((0.0..1.0).contains(&self.ema), "[train] ema must be in [0, 1)");
        ensure!(self.grad_clip >= 0.0 && self.weight_decay >= 0.0, "[train] grad_clip and weight_decay must be >= 0");
        Ok(Settings {
            batch: self.batch,
            lr: self.lr,
            weight_decay: self.weight_decay,
            warmup: self.warmup,
            grad_clip: self.grad_clip,
            ema: self.ema,
            seed: self.seed,
        })
    }
}

/// A `covdiff train` run: every section has defaults (the built-in example
/// trains the tiny UNet on Fashion-MNIST at 28 x 28).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    pub data: DataConfig,
    pub schedule: ScheduleConfig,
    pub noise: NoiseConfig,
    pub unet: UNetSpec,
    pub train: TrainSpec,
    /// Present for stage 2.
    pub heads: Option<HeadsSpec>,
}

impl RunConfig {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{} is not a valid covdiff config", path.display()))
    }
}

/// What `export` writes beside the weights, and what `sample` and `eval` read.
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
    /// Final training loss and the like.
    pub metrics: serde_json::Value,
    /// The weights file, relative to the card.
    pub weights: String,
}

pub const CARD_FORMAT: &str = "covdiff-image-1";

impl ModelCard {
    /// The card beside `weights` (`x.safetensors` -> `x.json`).
    pub fn path_for(weights: &Path) -> PathBuf {
        weights.with_extension("json")
    }

    pub fn read_for(weights: &Path) -> Result<Self> {
        ensure!(weights.exists(), "{} does not exist", weights.display());
        let path = Self::path_for(weights);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the model card {} that must sit beside the weights", path.display()))?;
        let card: Self =
            serde_json::from_str(&text).with_context(|| format!("{} is not a covdiff model card", path.display()))?;
        ensure!(card.format == CARD_FORMAT, "{}: unknown card format '{}'", path.display(), card.format);
        Ok(card)
    }

    pub fn name(&self) -> String {
        match (&self.heads, &self.objective) {
            (Some(h), Some(o)) => format!("{}-{o}", h.kind),
            (Some(h), None) => h.kind.to_string(),
            _ => "eps".into(),
        }
    }
}
