//! Loaded models and the samplers named on the command line: `beta`,
//! `beta-tilde` (alias `iso`), `ddim`, and the covariance heads of any
//! loaded weights by kind (`diag`, `lowrank8`, `kdct`, `free`, `free-diag`)
//! or by kind and objective (`kdct-ocm`).

use super::config::ModelCard;
use super::export::load_bundle;
use anyhow::{bail, ensure, Result};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use covdiff_core::schedule::ScheduleTable;
use covdiff_core::trajectory::Spacing;
use covdiff_model::image::weights::Bundle;
use covdiff_model::image::{Denoiser, ForwardNoise, NoiseClip, SamplerConfig, SamplerKind, SecondOrder, StepVariance};
use covdiff_model::unet::UNet;
use std::path::PathBuf;

pub struct Models<B: Backend> {
    pub cards: Vec<ModelCard>,
    /// The first file's eps-UNet, for the heuristic samplers.
    unet: UNet<B>,
    /// Per file: its UNet with its heads, when it has heads.
    learned: Vec<Option<SecondOrder<B>>>,
    pub table: ScheduleTable,
    pub noise: ForwardNoise<B>,
}

impl<B: Backend> Models<B> {
    /// Load weights; all must share image shape, schedule and noise (one eps-UNet family).
    pub fn load(weights: &[PathBuf], device: &B::Device) -> Result<Self> {
        ensure!(!weights.is_empty(), "pass at least one --weights file");
        let mut cards = Vec::new();
        let mut learned = Vec::new();
        let mut unet = None;
        for w in weights {
            let (path, card) = super::export::locate(w)?;
            if let Some(first) = cards.first() {
                let f: &ModelCard = first;
                ensure!(
                    (f.channels, f.size, &f.schedule, &f.noise)
                        == (card.channels, card.size, &card.schedule, &card.noise),
                    "{} differs from {} in image shape, schedule or noise",
                    w.display(),
                    weights[0].display()
                );
            }
            let Bundle { unet: u, covariance_heads } = load_bundle::<B>(&path, &card, device)?;
            learned.push(covariance_heads.map(|heads| SecondOrder { unet: u.clone(), heads }));
            unet.get_or_insert(u);
            cards.push(card);
        }
        let table = cards[0].schedule.table()?;
        let noise = cards[0].noise.build::<B>(cards[0].size, device)?;
        let unet = unet.expect("at least one file was loaded");
        Ok(Self { cards, unet, learned, table, noise })
    }

    pub fn shape(&self, n: usize) -> [usize; 4] {
        [n, self.cards[0].channels, self.cards[0].size, self.cards[0].size]
    }

    /// Resolve a sampler name.
    pub fn column(&self, name: &str) -> Result<Column> {
        match name {
            "beta" => return Ok(Column::Heuristic(StepVariance::Large)),
            "beta-tilde" | "iso" => return Ok(Column::Heuristic(StepVariance::Small)),
            "ddim" => return Ok(Column::Ddim),
            _ => {}
        }
        let by_name = self.cards.iter().position(|c| c.name() == name);
        let by_kind = || self.cards.iter().position(|c| c.heads.as_ref().is_some_and(|h| h.kind.name() == name));
        match by_name.or_else(by_kind) {
            Some(i) => Ok(Column::Learned(i)),
            None => {
                let learned: Vec<String> = self.cards.iter().filter(|c| c.heads.is_some()).map(|c| c.name()).collect();
                bail!(
                    "no sampler '{name}': use beta, beta-tilde (iso), ddim{}{}",
                    if learned.is_empty() { "" } else { ", or " },
                    learned.join(", ")
                )
            }
        }
    }

    fn second_order(&self, i: usize) -> &SecondOrder<B> {
        self.learned[i].as_ref().expect("learned columns have heads")
    }

    /// Run the sampler of `column` from `x_t`.
    pub fn sample(
        &self,
        column: Column,
        opts: &SampleOptions,
        steps: usize,
        x_t: Tensor<B, 4>,
    ) -> Result<Tensor<B, 4>> {
        let kind = match column {
            Column::Heuristic(variance) => SamplerKind::Ddpm { variance },
            Column::Ddim => SamplerKind::Ddim { eta: opts.eta },
            Column::Learned(_) => SamplerKind::Ddpm { variance: StepVariance::Learned },
        };
        let config = SamplerConfig {
            kind,
            steps,
            spacing: opts.spacing,
            lambda: opts.lambda,
            clip_x0: opts.clip_x0,
            clip_noise: opts.clip_noise,
            final_noise: false,
        };
        let mut sampling = config.build(&self.table, self.noise.clone())?;
        Ok(match column {
            Column::Learned(i) => sampling.run(self.second_order(i), x_t)?,
            _ => sampling.run(&self.unet, x_t)?,
        })
    }

    /// The denoiser and step variance of a column, for the ELBO.
    pub fn denoiser(&self, column: Column) -> Result<(&dyn Denoiser<B>, StepVariance)> {
        Ok(match column {
            Column::Heuristic(v) => (&self.unet, v),
            Column::Ddim => bail!("DDIM has no likelihood: choose beta, beta-tilde or a learned covariance"),
            Column::Learned(i) => (self.second_order(i), StepVariance::Learned),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Column {
    Heuristic(StepVariance),
    Ddim,
    Learned(usize),
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
