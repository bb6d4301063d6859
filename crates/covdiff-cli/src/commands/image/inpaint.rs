//! `covdiff inpaint`: posterior sampling for inpainting (K-DCT paper A.3, Eqs. 19-20). Held-out
//! images are masked (`y = A x_0 + sigma_y noise`), and each covariance guides its own sampler:
//! isotropic guidance (`E_t = I`, IGDM's heuristic) with beta-tilde steps, and each learnt head
//! (diagonal, K-DCT) with its own `E_t` in the guidance's solve and in the step covariance.
//! Writes a labelled grid per mask and the reconstructions' MSE and PSNR.

use super::eval::held_out;
use super::models::{Column, HeadWeights, Models, SampleOptions};
use crate::commands::denoise::read;
use crate::device::BackendJob;
use crate::progress::bar;
use anyhow::{bail, ensure, Context, Result};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use covdiff_core::figure::{by_rows, save_grid, Labels};
use covdiff_model::diffusion::initial_noise;
use covdiff_model::image::{CgOptions, GuidanceCovariance, Guided, Observation};
use rand::{rngs::StdRng, RngExt, SeedableRng};
use rand_distr::StandardNormal;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    models: HeadWeights,
    /// Masks, comma-separated: box (the centre square of half the side is missing), half (the
    /// left half is missing), random:P (each pixel missing with probability P).
    #[arg(long, value_delimiter = ',', default_value = "box,half,random:0.5")]
    mask: Vec<String>,
    /// Guidance covariances, comma-separated: iso (E_t = I, beta-tilde steps) or a loaded head
    /// (diag, kdct, kdct-ocm...), which also sets its sampler's step covariance.
    #[arg(long, value_delimiter = ',', default_value = "iso,diag,kdct")]
    covariance: Vec<String>,
    /// Sampling steps K.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Observation noise sigma_y (pixels in [-1, 1]).
    #[arg(long, default_value_t = 0.01)]
    sigma_y: f64,
    /// Held-out images (the test set's first N).
    #[arg(long, default_value_t = 8)]
    n: usize,
    /// Images shown in each grid (the first ones); the metrics use all N.
    #[arg(long, default_value_t = 8)]
    shown: usize,
    /// Held-out data (default: Fashion-MNIST's test set for Fashion-MNIST models).
    #[arg(long)]
    data: Option<String>,
    /// Conjugate-gradient iterations per guidance solve, at most (each is one `E v`; the
    /// learnt covariances' spectra make the solve ill-conditioned, so it can take a hundred).
    #[arg(long, default_value_t = 200)]
    cg_iterations: usize,
    #[command(flatten)]
    options: SampleOptions,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder: <mask>.png per mask, inpaint.json and table.md.
    #[arg(long, default_value = "inpaint")]
    out: PathBuf,
}

/// A mask's pixels: `true` where observed, for a `d x d` image (every channel alike).
#[derive(Clone, Debug, PartialEq)]
enum Mask {
    Box,
    Half,
    Random(f64),
}

impl Mask {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s.split_once(':') {
            None if s == "box" => Self::Box,
            None if s == "half" => Self::Half,
            Some(("random", p)) => {
                let p: f64 = p.parse().with_context(|| format!("mask {s}: {p} is not a number"))?;
                ensure!(p > 0.0 && p < 1.0, "mask {s}: the missing fraction must lie in (0, 1)");
                Self::Random(p)
            }
            _ => bail!("no mask '{s}': use box, half or random:P"),
        })
    }

    fn observed(&self, d: usize, rng: &mut StdRng) -> Vec<bool> {
        let (lo, hi) = (d / 4, d - d / 4);
        (0..d * d)
            .map(|k| {
                let (i, j) = (k / d, k % d);
                match self {
                    Self::Box => !((lo..hi).contains(&i) && (lo..hi).contains(&j)),
                    Self::Half => j >= d / 2,
                    Self::Random(p) => rng.random::<f64>() >= *p,
                }
            })
            .collect()
    }
}

#[derive(Serialize)]
struct Row {
    mask: String,
    covariance: String,
    /// Over all pixels of the n images, pixels in [-1, 1].
    mse: f64,
    /// Over the missing pixels only.
    mse_missing: f64,
    /// Over the observed pixels: how closely the samples honour `y` (data consistency).
    mse_observed: f64,
    /// `10 log10(2^2 / mse)`: the pixel range is 2.
    psnr_db: f64,
}

impl BackendJob for Args {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        ensure!(
            self.n > 0 && self.steps > 0 && self.cg_iterations > 0,
            "--n, --steps and --cg-iterations must be positive"
        );
        ensure!(self.sigma_y > 0.0 && self.sigma_y.is_finite(), "--sigma-y must be positive");
        let masks = self.mask.iter().map(|m| Mask::parse(m)).collect::<Result<Vec<_>>>()?;
        let models = Models::<B>::load(&self.models.weights, &device)?;
        let columns = self.covariance.iter().map(|n| models.column(n)).collect::<Result<Vec<_>>>()?;
        let set = held_out(&models.cards[0], &self.data, self.n)?;
        ensure!(set.len() >= self.n, "need {} held-out images, the data has {}", self.n, set.len());
        let shape = models.shape(self.n);
        let [n, c, d, _] = shape;
        let dim = c * d * d;
        let x0: Vec<f32> = (0..n).flat_map(|i| set.image(i).to_vec()).collect();
        std::fs::create_dir_all(&self.out).with_context(|| format!("creating {}", self.out.display()))?;
        let tensor = |v: Vec<f32>| Tensor::<B, 4>::from_data(TensorData::new(v, shape), &device);
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut rows = Vec::new();
        let pb = bar((masks.len() * columns.len()) as u64, "inpainting");
        for (mask, name) in masks.iter().zip(&self.mask) {
            // One mask per image (random masks differ between images), every channel alike.
            let mut observed = Vec::with_capacity(n * dim);
            for _ in 0..n {
                let plane = mask.observed(d, &mut rng);
                (0..c).for_each(|_| observed.extend_from_slice(&plane));
            }
            let y: Vec<f32> = x0
                .iter()
                .zip(&observed)
                .map(|(&x, &o)| if o { x + (self.sigma_y * rng.sample::<f64, _>(StandardNormal)) as f32 } else { 0.0 })
                .collect();
            let m: Vec<f32> = observed.iter().map(|&o| f32::from(u8::from(o))).collect();
            let observation = Observation { mask: tensor(m), y: tensor(y.clone()), sigma_y: self.sigma_y };
            let mut grid_columns = vec![y.clone()];
            for (&column, cov_name) in columns.iter().zip(&self.covariance) {
                covdiff_model::normals::seed::<B>(&device, self.seed);
                let (mut sampling, denoiser) = models.sampling(column, &self.options, self.steps)?;
                let learnt = matches!(column, Column::Learned(_));
                let guided = Guided {
                    inner: denoiser,
                    observation: &observation,
                    table: &models.table,
                    covariance: if learnt { GuidanceCovariance::Learnt } else { GuidanceCovariance::Isotropic },
                    cg: CgOptions { max_iterations: self.cg_iterations, tolerance: 1e-4 },
                };
                let x = sampling.run(&guided, initial_noise::<B>(shape, &models.noise, &device))?;
                let x = read(x).with_context(|| format!("{cov_name} guidance"))?;
                let err = |keep: &dyn Fn(bool) -> bool| {
                    let (sum, count) = x
                        .iter()
                        .zip(&x0)
                        .zip(&observed)
                        .filter(|(_, &o)| keep(o))
                        .fold((0.0f64, 0usize), |(s, k), ((&a, &b), _)| (s + ((a - b) as f64).powi(2), k + 1));
                    sum / count.max(1) as f64
                };
                let mse = err(&|_| true);
                rows.push(Row {
                    mask: name.clone(),
                    covariance: cov_name.clone(),
                    mse,
                    mse_missing: err(&|o| !o),
                    mse_observed: err(&|o| o),
                    psnr_db: 10.0 * (4.0 / mse).log10(),
                });
                grid_columns.push(x);
                pb.inc(1);
            }
            grid_columns.push(x0.clone());
            let grid = by_rows(&grid_columns, n.min(self.shown.max(1)), dim);
            let mut labels = vec!["observed y".to_string()];
            labels.extend(self.covariance.iter().map(|s| format!("{s} K={}", self.steps)));
            labels.push("original".into());
            let title = format!("inpainting, mask {name}, sigma_y {}, seed {}", self.sigma_y, self.seed);
            let png = self.out.join(format!("{}.png", name.replace(':', "-")));
            save_grid(&png, &grid, c, d, grid_columns.len(), (128 / d).clamp(1, 8), &Labels::new(title, labels))
                .with_context(|| format!("writing {}", png.display()))?;
        }
        pb.finish_and_clear();
        let mut md = format!(
            "Inpainting of {n} held-out images, K = {}, sigma_y = {} (pixels in [-1, 1]); MSE over all pixels, the missing and the observed ones, PSNR over all\n\n| mask | covariance | MSE | MSE (missing) | MSE (observed) | PSNR (dB) |\n|---|---|---:|---:|---:|---:|\n",
            self.steps, self.sigma_y
        );
        for r in &rows {
            let (m, mm, mo) = (r.mse, r.mse_missing, r.mse_observed);
            writeln!(md, "| {} | {} | {m:.5} | {mm:.5} | {mo:.5} | {:.2} |", r.mask, r.covariance, r.psnr_db)?;
        }
        std::fs::write(self.out.join("table.md"), &md)?;
        std::fs::write(self.out.join("inpaint.json"), serde_json::to_string_pretty(&rows)? + "\n")?;
        print!("{md}");
        println!("written to {}", self.out.display());
        Ok(())
    }
}
