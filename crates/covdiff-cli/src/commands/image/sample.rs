//! `covdiff sample`: few-step sampling with any covariance, one PNG grid
//! (a column per sampler with `--compare`, all from the same seeds).

use super::models::{Models, SampleOptions};
use crate::device::BackendJob;
use crate::progress::bar;
use anyhow::{bail, ensure, Context, Result};
use burn::tensor::backend::Backend;
use covdiff_core::figure::{by_rows, save_grid, Labels};
use covdiff_model::diffusion::initial_noise;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Model weights (repeat for several covariance heads on the same eps-UNet); the card sits beside them.
    #[arg(long, required = true)]
    weights: Vec<PathBuf>,
    /// The sampler: beta, beta-tilde (iso), ddim, or a loaded head (diag, lowrank8, kdct, free, free-diag, kdct-ocm...).
    #[arg(long, default_value = "beta-tilde", conflicts_with = "compare")]
    covariance: String,
    /// Several samplers side by side, comma-separated, e.g. iso,diag,kdct.
    #[arg(long, value_delimiter = ',')]
    compare: Vec<String>,
    /// Sampling steps K.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[command(flatten)]
    options: SampleOptions,
    /// Images per sampler.
    #[arg(long, default_value_t = 16)]
    n: usize,
    /// Images per sampler call (memory bound); all of a column share one seed stream.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// PNG grid.
    #[arg(long, default_value = "samples.png")]
    out: PathBuf,
    /// Also write the raw samples, [samplers, n, C, d, d], as .npy or .safetensors.
    #[arg(long)]
    raw: Option<PathBuf>,
}

impl BackendJob for Args {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        ensure!(self.n > 0 && self.steps > 0 && self.batch > 0, "--n, --steps and --batch must be positive");
        ensure!(self.options.lambda >= 0.0 && self.options.lambda.is_finite(), "--lambda must be >= 0");
        let models = Models::<B>::load(&self.weights, &device)?;
        let names = if self.compare.is_empty() { vec![self.covariance.clone()] } else { self.compare.clone() };
        let columns = names.iter().map(|n| models.column(n)).collect::<Result<Vec<_>>>()?;
        let shape = models.shape(self.n);
        let chunks = self.n.div_ceil(self.batch);
        let pb = bar((columns.len() * chunks) as u64, "sampling");
        let mut all = Vec::new();
        for column in columns {
            covdiff_model::normals::seed::<B>(&device, self.seed);
            let mut v: Vec<f32> = Vec::with_capacity(self.n * models.shape(1)[1..].iter().product::<usize>());
            for start in (0..self.n).step_by(self.batch) {
                let x_t = initial_noise::<B>(models.shape(self.batch.min(self.n - start)), &models.noise, &device);
                let x = models.sample(column, &self.options, self.steps, x_t)?;
                v.extend(x.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?);
                pb.inc(1);
            }
            ensure!(v.iter().all(|x| x.is_finite()), "sampler {column:?} produced non-finite values");
            all.push(v);
        }
        pb.finish_and_clear();
        let [n, c, d, _] = shape;
        let dim = c * d * d;
        let grid = by_rows(&all, n, dim);
        let scale = (128 / d).clamp(1, 8);
        let cols = if all.len() == 1 { 8 } else { all.len() };
        let header = |name: &str| format!("{name} K={}", self.steps);
        let labels = if all.len() == 1 {
            Labels::new(format!("{}, seed {}", header(&names[0]), self.seed), Vec::new())
        } else {
            Labels::new(
                format!("K = {} steps, seed {}", self.steps, self.seed),
                names.iter().map(|n| header(n)).collect(),
            )
        };
        save_grid(&self.out, &grid, c, d, cols, scale, &labels)
            .with_context(|| format!("writing {}", self.out.display()))?;
        if let Some(raw) = &self.raw {
            let flat: Vec<f32> = all.concat();
            let dims = [all.len(), n, c, d, d];
            match raw.extension().and_then(|e| e.to_str()) {
                Some("npy") => covdiff_core::npy::write_f32(raw, &dims, &flat)?,
                Some("safetensors") => covdiff_core::npy::write_safetensors_f32(raw, "samples", &dims, &flat)?,
                _ => bail!("--raw must end in .npy or .safetensors"),
            }
        }
        println!(
            "{} x {n} samples ({}) with K = {} written to {}",
            all.len(),
            names.join(", "),
            self.steps,
            self.out.display()
        );
        Ok(())
    }
}
