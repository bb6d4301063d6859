//! `covdiff denoise`: analytic denoisers (the locality appendix) beside a trained UNet.
//! - `compare`: r^2 and MSE of each one's `x0_hat` against the UNet's along 10-step trajectories;
//! - `sample`: DDIM samples from them, with each sample's nearest training image;
//! - `sensitivity`: the sensitivity fields of the UNet and of the optimal denoiser, and the mask;
//! - `posterior`: the optimal denoiser's exact posterior covariance against its nearest K-DCT,
//!   diagonal and isotropic approximations.

mod compare;
mod posterior;
mod sample;
mod sensitivity;

use crate::commands::image::config::{load_for_card, read_card};
use crate::device::{dispatch, DeviceKind};
use crate::progress::bar;
use anyhow::{bail, ensure, Context as _, Result};
use burn::backend::Autodiff;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use covdiff_core::data::ImageSet;
use covdiff_core::locality::{SensitivityField, TimeTable};
use covdiff_core::structure::marginal_moments;
use covdiff_model::analytic::sensitivity::jacobian_rows;
use covdiff_model::analytic::{AnalyticSpec, Ingredients, OptimalDenoiser, TrainingSet};
use covdiff_model::diffusion::Denoiser;
use covdiff_model::image::{Column, Pipeline};
use nalgebra::DMatrix;
use rand::{rngs::StdRng, RngExt, SeedableRng};
use rand_distr::StandardNormal;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(clap::Subcommand)]
pub enum Command {
    /// r^2 and MSE of analytic denoisers' x0_hat against the UNet's along sampling trajectories
    /// (the appendix's Table 1, Fig. 6 and 7).
    Compare(compare::Args),
    /// Sample with analytic denoisers (DDIM), each sample beside its nearest training image (Table 3).
    Sample(sample::Args),
    /// Sensitivity fields d x0_hat_q / d x_t of the UNet and the optimal denoiser, and the binary mask.
    Sensitivity(sensitivity::Args),
    /// The optimal denoiser's exact Cov[x0 | x_t] against its nearest K-DCT, diagonal and
    /// isotropic approximations (K-DCT paper Fig. 1C and 7, with no network).
    Posterior(posterior::Args),
    /// Merge `compare` summaries into one Markdown table, beside the appendix's numbers.
    Table(compare::TableArgs),
}

pub fn run(c: Command, device: DeviceKind) -> Result<()> {
    match c {
        Command::Compare(a) => dispatch(device, a),
        Command::Sample(a) => dispatch(device, a),
        Command::Sensitivity(a) => dispatch(device, a),
        Command::Posterior(a) => dispatch(device, a),
        Command::Table(a) => compare::table(a),
    }
}

/// The trained UNet and the training images.
#[derive(clap::Args, Clone, Debug)]
pub struct DataArgs {
    /// The trained eps-UNet; its card (beside it) names the data, schedule and image size.
    #[arg(long, default_value = "weights/fashion-mnist-kdct.safetensors")]
    pub weights: PathBuf,
    /// The training images (default: the card's data source).
    #[arg(long)]
    pub data: Option<String>,
    /// Use the first N training images for the optimal and Wiener denoisers (0: all).
    #[arg(long, default_value_t = 0)]
    pub train_limit: usize,
    /// Use the first N training images for patch, els and mask, which cost d^2 times more per image.
    #[arg(long, default_value_t = 2000)]
    pub local_limit: usize,
    /// Training images per chunk of the streamed softmax.
    #[arg(long, default_value_t = 1024)]
    pub chunk: usize,
}

/// A column: the trained UNet itself, or an analytic denoiser.
#[derive(Clone, Debug, PartialEq)]
pub enum Name {
    Unet,
    Analytic(AnalyticSpec),
}

impl FromStr for Name {
    type Err = covdiff_core::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "unet" {
            return Ok(Self::Unet);
        }
        s.parse().map(Self::Analytic)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unet => f.write_str("unet"),
            Self::Analytic(a) => a.fmt(f),
        }
    }
}

/// Everything the denoisers are built from.
pub struct Context<B: Backend> {
    pub bytes: Vec<u8>,
    pub pipeline: Pipeline<B>,
    pub set: ImageSet,
    pub data: TrainingSet<B>,
    pub local: TrainingSet<B>,
    pub moments: Option<(Vec<f64>, DMatrix<f64>)>,
}

impl<B: Backend> Context<B> {
    /// Load the UNet and the data; `moments` computes the mean and covariance (Wiener).
    pub fn load(args: &DataArgs, moments: bool, device: &B::Device) -> Result<Self> {
        let path = if args.weights.is_dir() { args.weights.join("model.safetensors") } else { args.weights.clone() };
        let card = read_card(&path)?;
        ensure!(
            card.noise.kind == "white",
            "the analytic denoisers assume white forward noise, and {} was trained with {} noise",
            path.display(),
            card.noise.kind
        );
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let source = args.data.clone().unwrap_or_else(|| card.data.source.clone());
        let set = load_for_card(&source, &card, args.train_limit)?;
        let pipeline = Pipeline::from_card(card, bytes.clone(), &path.display().to_string(), device)?;
        eprintln!("{source}: {} training images of {}x{}x{}", set.len(), set.channels, set.size, set.size);
        let data = TrainingSet::from_images(&set, args.chunk, device)?;
        let local_n = if args.local_limit == 0 { set.len() } else { args.local_limit.min(set.len()) };
        let mut local_set = set.clone();
        local_set.truncate(local_n);
        let local = TrainingSet::from_images(&local_set, args.chunk, device)?;
        let moments = moments.then(|| {
            let pb = bar(set.len() as u64, "covariance");
            let (mean, cov) = marginal_moments(&set, |k| pb.set_position(k as u64));
            pb.finish_and_clear();
            (mean.as_slice().to_vec(), cov)
        });
        Ok(Self { bytes, pipeline, set, data, local, moments })
    }

    pub fn unet(&self) -> &dyn Denoiser<B> {
        self.pipeline.denoiser(Column::Ddim).expect("the eps-UNet is every pipeline's DDIM denoiser")
    }

    /// Diffusion times from the command line, each in `1..=T`.
    pub fn check_times(&self, t: &[usize]) -> Result<()> {
        let steps = self.pipeline.table().steps();
        ensure!(!t.is_empty() && t.iter().all(|t| (1..=steps).contains(t)), "--t must lie in 1..={steps}");
        Ok(())
    }

    /// The denoiser named `name`.
    pub fn build(
        &self,
        name: &Name,
        times: &[usize],
        fields: Option<&TimeTable<SensitivityField>>,
    ) -> Result<Option<Box<dyn Denoiser<B>>>> {
        let Name::Analytic(spec) = name else { return Ok(None) };
        let ing = Ingredients {
            data: &self.data,
            local_data: &self.local,
            table: self.pipeline.table(),
            times,
            moments: self.moments.as_ref().map(|(m, c)| (m.as_slice(), c)),
            fields,
        };
        Ok(Some(spec.build(&ing)?))
    }

    /// `x_t = sqrt(abar) x0 + sqrt(bbar) eps` for the first `count` training images (or fewer),
    /// with the host's generator: `[count, C, d, d]`.
    pub fn noised(&self, t: usize, count: usize, rng: &mut StdRng, device: &B::Device) -> Tensor<B, 4> {
        let count = count.min(self.set.len());
        let abar = self.pipeline.table().abar(t);
        let n = self.set.dim();
        let v: Vec<f32> = (0..count * n)
            .map(|k| {
                let e: f64 = rng.sample(StandardNormal);
                (abar.sqrt() * self.set.pixels[k] as f64 + (1.0 - abar).sqrt() * e) as f32
            })
            .collect();
        Tensor::from_data(TensorData::new(v, self.pipeline.shape(count)), device)
    }

    /// The UNet's sensitivity fields at `times`, from `count` noised training images each, every
    /// one with a random output pixel.
    pub fn unet_fields(&self, times: &[usize], count: usize, seed: u64, device: &B::Device) -> Result<FieldSet> {
        let card = self.pipeline.card().clone();
        let ad = Pipeline::<Autodiff<B>>::from_card(card, self.bytes.clone(), "the weights", device)?;
        let unet = ad.denoiser(Column::Ddim)?;
        self.fields(times, count, seed, device, |x, t, q| {
            Ok(jacobian_rows::<Autodiff<B>, _>(unet, self.pipeline.table(), x, t, q)?)
        })
    }

    /// The optimal denoiser's sensitivity fields, `sqrt(abar) / bbar Cov[x0 | x_t]` by row.
    pub fn optimal_fields(&self, times: &[usize], count: usize, seed: u64, device: &B::Device) -> Result<FieldSet> {
        let opt = OptimalDenoiser::new(self.data.clone(), self.pipeline.table().clone());
        let table = self.pipeline.table();
        self.fields(times, count, seed, device, |x, t, q| {
            let abar = table.abar(t);
            let shape = x.dims();
            Ok(opt.covariance_rows(x, t, q).reshape(shape) * (abar.sqrt() / (1.0 - abar)))
        })
    }

    fn fields(
        &self,
        times: &[usize],
        count: usize,
        seed: u64,
        device: &B::Device,
        rows: impl Fn(Tensor<B, 4>, usize, &[usize]) -> Result<Tensor<B, 4>>,
    ) -> Result<FieldSet> {
        ensure!(count > 0, "the sensitivity fields need at least one input");
        let mut rng = StdRng::seed_from_u64(seed);
        let (c, d) = (self.set.channels, self.set.size);
        let pb = bar(times.len() as u64, "sensitivity");
        let mut entries = Vec::new();
        for &t in times {
            let x = self.noised(t, count, &mut rng, device);
            let q: Vec<usize> = (0..x.dims()[0]).map(|_| rng.random_range(0..d * d)).collect();
            let j = read(rows(x, t, &q)?)?;
            entries.push((t, SensitivityField::from_rows(&j, &q, c, d)?));
            pb.inc(1);
        }
        pb.finish_and_clear();
        Ok(TimeTable::new(entries)?)
    }
}

pub type FieldSet = TimeTable<SensitivityField>;

/// A tensor's values on the host.
pub fn read<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>> {
    let v = t.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("reading a tensor: {e:?}"))?;
    if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
        bail!("a denoiser produced a non-finite value ({bad})");
    }
    Ok(v)
}

/// `x0_hat` from a denoiser's `eps_hat` at `t`, clipped to [-1, 1] as the samplers clip it.
pub fn x0_of<B: Backend>(den: &dyn Denoiser<B>, pipeline: &Pipeline<B>, x: Tensor<B, 4>, t: usize) -> Tensor<B, 4> {
    let abar = pipeline.table().abar(t);
    let (eps, _) = den.predict(x.clone(), t, false);
    ((x - eps * (1.0 - abar).sqrt()) / abar.sqrt()).clamp(-1.0, 1.0)
}

/// Parse a comma-separated list of names.
pub fn names(list: &[String]) -> Result<Vec<Name>> {
    ensure!(!list.is_empty(), "name at least one denoiser");
    Ok(list.iter().map(|s| s.parse()).collect::<Result<Vec<Name>, _>>()?)
}

/// Mean and standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}
