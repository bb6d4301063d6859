//! Loaded models and the samplers named on the command line: `beta`,
//! `beta-tilde` (alias `iso`), `ddim`, and the covariance heads of any
//! loaded weights by kind (`diag`, `lowrank8`, `kdct`, `free`, `free-diag`)
//! or by kind and objective (`kdct-ocm`).

use super::config::{read_card, ModelCard};
use anyhow::{bail, ensure, Context, Result};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use covdiff_core::schedule::ScheduleTable;
use covdiff_core::trajectory::Spacing;
use covdiff_model::diffusion::{Denoiser, ForwardNoise, NoiseClip, SamplerConfig, Sampling, StepVariance};
use covdiff_model::image::Pipeline;
use std::path::PathBuf;

/// The pipelines of several weights files that share image shape, schedule and noise (one
/// eps-UNet family), and the samplers named across them.
pub struct Models<B: Backend> {
    pub cards: Vec<ModelCard>,
    pipelines: Vec<Pipeline<B>>,
    pub table: ScheduleTable,
    pub noise: ForwardNoise<B>,
}

/// A sampler: a pipeline's column (`Learned` names the pipeline that holds the heads).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Column {
    Heuristic(StepVariance),
    Ddim,
    Learned(usize),
}

impl<B: Backend> Models<B> {
    /// Load weights files (or run folders), each with its card beside it.
    pub fn load(weights: &[PathBuf], device: &B::Device) -> Result<Self> {
        ensure!(!weights.is_empty(), "pass at least one --weights file");
        let mut pipelines: Vec<Pipeline<B>> = Vec::new();
        for w in weights {
            let path = if w.is_dir() { w.join("model.safetensors") } else { w.clone() };
            let card = read_card(&path)?;
            if let Some(first) = pipelines.first().map(Pipeline::card) {
                ensure!(
                    (first.channels, first.size, &first.schedule, &first.noise)
                        == (card.channels, card.size, &card.schedule, &card.noise),
                    "{} differs from {} in image shape, schedule or noise",
                    w.display(),
                    weights[0].display()
                );
            }
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            pipelines.push(Pipeline::from_card(card, bytes, &path.display().to_string(), device)?);
        }
        let cards = pipelines.iter().map(|p| p.card().clone()).collect();
        let table = pipelines[0].table().clone();
        let noise = pipelines[0].noise().clone();
        Ok(Self { cards, pipelines, table, noise })
    }

    pub fn shape(&self, n: usize) -> [usize; 4] {
        self.pipelines[0].shape(n)
    }

    /// Resolve a sampler name: `beta`, `beta-tilde` (`iso`), `ddim`, or a file's learnt
    /// covariance by card name or kind (the first file that has it).
    pub fn column(&self, name: &str) -> Result<Column> {
        use covdiff_model::image::Column as One;
        let mut first_error = None;
        for (i, p) in self.pipelines.iter().enumerate() {
            match p.column(name) {
                Ok(One::Heuristic(v)) => return Ok(Column::Heuristic(v)),
                Ok(One::Ddim) => return Ok(Column::Ddim),
                Ok(One::Learned) => return Ok(Column::Learned(i)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let learned: Vec<String> = self.cards.iter().filter(|c| c.heads.is_some()).map(|c| c.name()).collect();
        match first_error {
            Some(_) => bail!(
                "no sampler '{name}': use beta, beta-tilde (iso), ddim{}{}",
                if learned.is_empty() { "" } else { ", or " },
                learned.join(", ")
            ),
            None => bail!("no models loaded"),
        }
    }

    /// The pipeline and its own column for a column across files.
    fn resolve(&self, column: Column) -> (&Pipeline<B>, covdiff_model::image::Column) {
        use covdiff_model::image::Column as One;
        match column {
            Column::Heuristic(v) => (&self.pipelines[0], One::Heuristic(v)),
            Column::Ddim => (&self.pipelines[0], One::Ddim),
            Column::Learned(i) => (&self.pipelines[i], One::Learned),
        }
    }

    /// Run the sampler of `column` from `x_t`.
    pub fn sample(
        &self,
        column: Column,
        opts: &SampleOptions,
        steps: usize,
        x_t: Tensor<B, 4>,
    ) -> Result<Tensor<B, 4>> {
        let (mut sampling, denoiser) = self.sampling(column, opts, steps)?;
        Ok(sampling.run(denoiser, x_t)?)
    }

    /// The sampler of `column` and its denoiser, for a caller that drives the steps or wraps the
    /// denoiser.
    pub fn sampling(
        &self,
        column: Column,
        opts: &SampleOptions,
        steps: usize,
    ) -> Result<(Sampling<B>, &dyn Denoiser<B>)> {
        let (pipeline, one) = self.resolve(column);
        let config = SamplerConfig {
            kind: one.kind(opts.eta),
            steps,
            spacing: opts.spacing,
            lambda: opts.lambda,
            clip_x0: opts.clip_x0,
            clip_noise: opts.clip_noise,
            final_noise: false,
        };
        Ok((pipeline.sampling(one, &config)?, pipeline.denoiser(one)?))
    }

    /// The denoiser and step variance of a column, for the ELBO.
    pub fn denoiser(&self, column: Column) -> Result<(&dyn Denoiser<B>, StepVariance)> {
        let (pipeline, one) = self.resolve(column);
        Ok(pipeline.likelihood(one)?)
    }
}

/// `--weights`: models with covariance heads on one eps-UNet (a card beside each), by default the
/// shipped K-DCT and diagonal models.
#[derive(clap::Args, Clone, Debug)]
pub struct HeadWeights {
    /// Models with covariance heads on one eps-UNet (a card beside each).
    #[arg(
        long,
        default_values = ["weights/fashion-mnist-kdct.safetensors", "weights/fashion-mnist-diag.safetensors"]
    )]
    pub weights: Vec<PathBuf>,
}

#[derive(clap::Args, Clone, Debug)]
pub struct SampleOptions {
    /// even or quadratic time spacing.
    #[arg(long, default_value = "even")]
    pub spacing: Spacing,
    /// Noise scale lambda.
    #[arg(long, default_value_t = 1.0)]
    pub lambda: f64,
    /// DDIM's eta (for the ddim sampler).
    #[arg(long, default_value_t = 0.0)]
    pub eta: f64,
    /// Do not clip x0_hat to [-1, 1].
    #[arg(long = "no-clip-x0", action = clap::ArgAction::SetFalse)]
    pub clip_x0: bool,
    /// The penultimate step's noise (t_2 -> t_1; the final step t_1 -> 0 returns the mean):
    /// noise (unclipped), clip-scale[:y] (Eq. 41) or clip-sample[:y] (the paper's K-DCT rule).
    #[arg(long, default_value = "clip-sample:2")]
    pub clip_noise: NoiseClip,
}
