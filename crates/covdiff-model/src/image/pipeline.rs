//! A weights file turned into running samplers, with no filesystem: the browser fetches the
//! bytes, natively the CLI reads them. [`Pipeline::from_safetensors_bytes`] reads the model card
//! from the safetensors header (`covdiff_card`), builds the UNet and its heads, loads the
//! weights, and resolves samplers by name (`beta`, `beta-tilde`, `ddim`, and the learnt
//! covariance by its kind or card name).
//!
//! ```no_run
//! # fn demo(bytes: &[u8]) -> Result<(), covdiff_model::image::pipeline::PipelineError> {
//! use burn::backend::Flex;
//! use covdiff_model::image::pipeline::Pipeline;
//! use covdiff_model::diffusion::{initial_noise, SamplerConfig, StepVariance};
//! let device = Default::default();
//! let pipeline = Pipeline::<Flex>::from_safetensors_bytes(bytes, &device)?;
//! let column = pipeline.column("kdct")?;
//! let config = SamplerConfig::ddpm(StepVariance::Learned, 10);
//! let mut sampling = pipeline.sampling(column, &config)?;
//! let x_t = initial_noise(pipeline.shape(8), pipeline.noise(), &device);
//! let x0 = sampling.run(pipeline.denoiser(column)?, x_t)?;
//! # Ok(()) }
//! ```

use super::card::{ModelCard, CARD_FORMAT};
use super::denoiser::SecondOrder;
use super::weights::{self, Bundle, WeightsError};
use crate::diffusion::{Denoiser, ForwardNoise, SamplerConfig, SamplerError, SamplerKind, Sampling, StepVariance};
use crate::unet::UNet;
use burn::tensor::backend::Backend;
use covdiff_core::schedule::ScheduleTable;
use std::collections::HashMap;

/// The metadata key that holds the model card's JSON.
pub const CARD_KEY: &str = "covdiff_card";

/// Why a pipeline could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("not a safetensors file: {0}")]
    NotSafetensors(String),
    #[error("the weights carry no covdiff model card (safetensors metadata '{CARD_KEY}', format {CARD_FORMAT})")]
    NoCard,
    #[error(transparent)]
    Card(#[from] covdiff_core::Error),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    #[error("no sampler '{name}' for this model: use {known}")]
    UnknownSampler { name: String, known: String },
    #[error("DDIM has no likelihood: choose beta, beta-tilde or a learnt covariance")]
    NoLikelihood,
}

/// The string metadata of a safetensors file's header: 8 bytes of little-endian header length,
/// then that many bytes of JSON whose `__metadata__` object maps strings to strings.
pub fn safetensors_metadata(bytes: &[u8]) -> Result<HashMap<String, String>, PipelineError> {
    let bad = |why: &str| PipelineError::NotSafetensors(why.into());
    let len: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| bad("shorter than 8 bytes"))?;
    let len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| bad("header length out of range"))?;
    let header = bytes
        .get(8..)
        .and_then(|rest| rest.get(..len))
        .ok_or_else(|| bad(&format!("its header claims {len} bytes but the file ends first (truncated?)")))?;
    #[derive(serde::Deserialize)]
    struct Header {
        #[serde(rename = "__metadata__", default)]
        metadata: HashMap<String, String>,
    }
    let header: Header = serde_json::from_slice(header)
        .map_err(|e| bad(&format!("its header is not JSON of the safetensors form: {e}")))?;
    Ok(header.metadata)
}

/// A sampler of a pipeline, by the names the papers use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Column {
    /// DDPM with a fixed variance: `beta` (large) or `beta-tilde` (small, isotropic).
    Heuristic(StepVariance),
    /// DDIM, deterministic unless its eta is positive.
    Ddim,
    /// DDPM with the model's learnt covariance `btilde I + kappa E_t`.
    Learned,
}

impl Column {
    /// The sampler kind this column runs, with DDIM's `eta`.
    pub fn kind(self, eta: f64) -> SamplerKind {
        match self {
            Self::Heuristic(variance) => SamplerKind::Ddpm { variance },
            Self::Ddim => SamplerKind::Ddim { eta },
            Self::Learned => SamplerKind::Ddpm { variance: StepVariance::Learned },
        }
    }
}

/// A model ready to sample: its card, the eps-UNet, its heads (if any), the schedule table and
/// the forward noise.
pub struct Pipeline<B: Backend> {
    card: ModelCard,
    unet: UNet<B>,
    learned: Option<SecondOrder<B>>,
    table: ScheduleTable,
    noise: ForwardNoise<B>,
}

impl<B: Backend> Pipeline<B> {
    /// A pipeline from the bytes of a covdiff safetensors file, whose header carries its card.
    pub fn from_safetensors_bytes(bytes: &[u8], device: &B::Device) -> Result<Self, PipelineError> {
        let metadata = safetensors_metadata(bytes)?;
        let card = ModelCard::from_json(metadata.get(CARD_KEY).ok_or(PipelineError::NoCard)?)?;
        Self::from_card(card, bytes.to_vec(), "the weights", device)
    }

    /// A pipeline from a card (e.g. the JSON beside the weights) and the weights' bytes; `origin`
    /// names them in messages.
    pub fn from_card(card: ModelCard, bytes: Vec<u8>, origin: &str, device: &B::Device) -> Result<Self, PipelineError> {
        card.check()?;
        let table = card.schedule.table()?;
        let noise = card.noise.build::<B>(card.size, device)?;
        let bundle = Bundle {
            unet: card.unet.try_init::<B>(device)?,
            covariance_heads: card.heads.as_ref().map(|h| h.init(device)),
        };
        let Bundle { unet, covariance_heads } = weights::load_bytes(bundle, bytes, origin)?;
        let learned = covariance_heads.map(|heads| SecondOrder { unet: unet.clone(), heads });
        Ok(Self { card, unet, learned, table, noise })
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    pub fn table(&self) -> &ScheduleTable {
        &self.table
    }

    pub fn noise(&self) -> &ForwardNoise<B> {
        &self.noise
    }

    /// The shape of a batch of `n` images.
    pub fn shape(&self, n: usize) -> [usize; 4] {
        [n, self.card.channels, self.card.size, self.card.size]
    }

    /// The sampler called `name`: `beta`, `beta-tilde` (or `iso`), `ddim`, or this model's learnt
    /// covariance by its card name (`kdct-ocm`) or kind (`kdct`).
    pub fn column(&self, name: &str) -> Result<Column, PipelineError> {
        match name {
            "beta" => return Ok(Column::Heuristic(StepVariance::Large)),
            "beta-tilde" | "iso" => return Ok(Column::Heuristic(StepVariance::Small)),
            "ddim" => return Ok(Column::Ddim),
            _ => {}
        }
        match &self.card.heads {
            Some(h) if name == self.card.name() || name == h.kind.name() => Ok(Column::Learned),
            heads => Err(PipelineError::UnknownSampler {
                name: name.into(),
                known: format!(
                    "beta, beta-tilde (iso), ddim{}",
                    heads.as_ref().map(|_| format!(" or {}", self.card.name())).unwrap_or_default()
                ),
            }),
        }
    }

    /// The denoiser a column runs: the eps-UNet, or the UNet with its heads.
    pub fn denoiser(&self, column: Column) -> Result<&dyn Denoiser<B>, PipelineError> {
        match (column, &self.learned) {
            (Column::Learned, Some(learned)) => Ok(learned),
            (Column::Learned, None) => Err(SamplerError::MissingCovariance.into()),
            _ => Ok(&self.unet),
        }
    }

    /// The denoiser and step variance of a column, for the ELBO.
    pub fn likelihood(&self, column: Column) -> Result<(&dyn Denoiser<B>, StepVariance), PipelineError> {
        match column {
            Column::Heuristic(v) => Ok((self.denoiser(column)?, v)),
            Column::Ddim => Err(PipelineError::NoLikelihood),
            Column::Learned => Ok((self.denoiser(column)?, StepVariance::Learned)),
        }
    }

    /// A sampler for `column` with `config`'s steps, spacing and rules (its kind is the
    /// column's; DDIM keeps `config`'s eta when it is DDIM). Checked against the model here,
    /// not later: a learnt covariance needs heads.
    pub fn sampling(&self, column: Column, config: &SamplerConfig) -> Result<Sampling<B>, PipelineError> {
        let eta = match config.kind {
            SamplerKind::Ddim { eta } => eta,
            _ => 0.0,
        };
        self.denoiser(column)?;
        let config = SamplerConfig { kind: column.kind(eta), ..config.clone() };
        Ok(config.build(&self.table, self.noise.clone())?)
    }
}
