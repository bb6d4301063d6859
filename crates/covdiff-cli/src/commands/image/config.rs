//! The TOML run configuration of `covdiff train`, and the model card's files
//! (the card itself is `covdiff_model::image::card`).

use anyhow::{bail, ensure, Context, Result};
use covdiff_core::data::{DataSource, ImageSet};
pub use covdiff_model::image::card::{DataConfig, ModelCard, NoiseConfig, ScheduleConfig, TrainSpec, CARD_FORMAT};
use covdiff_model::image::{CovarianceHeadsConfig, HeadKind, HeadObjective};
use covdiff_model::unet::UNetConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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

/// The images of `source` for a model's card: resized to its size, and refused unless they have
/// its channels.
pub fn load_for_card(source: &str, card: &ModelCard, limit: usize) -> Result<ImageSet> {
    let set = load_images(source, card.size, limit)?;
    ensure!(
        (set.channels, set.size) == (card.channels, card.size),
        "{source} holds {}x{}x{} images, the model wants {}x{}x{}",
        set.channels,
        set.size,
        set.size,
        card.channels,
        card.size,
        card.size
    );
    Ok(set)
}

/// The images a [`DataConfig`] names.
pub fn load_data(data: &DataConfig) -> Result<ImageSet> {
    load_images(&data.source, data.size, data.limit)
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

/// The card beside `weights` (`x.safetensors` -> `x.json`).
pub fn card_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// The model card beside `weights`, checked.
pub fn read_card(weights: &Path) -> Result<ModelCard> {
    ensure!(weights.exists(), "{} does not exist", weights.display());
    let path = card_path(weights);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the model card {} that must sit beside the weights", path.display()))?;
    ModelCard::from_json(&text).with_context(|| format!("{} is not a usable covdiff model card", path.display()))
}
