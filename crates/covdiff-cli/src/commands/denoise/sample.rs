//! `covdiff denoise sample`: DDIM samples from analytic denoisers (and the UNet) from the same
//! seeds, each beside its nearest training image, with the distance to it (the locality
//! appendix's Table 3: the optimal denoiser only reproduces training images).

use super::{mean_std, names, read, Context, DataArgs, Name};
use crate::device::BackendJob;
use crate::progress::bar;
use anyhow::{ensure, Context as _, Result};
use burn::tensor::backend::Backend;
use covdiff_core::figure::{save_grid, Labels};
use covdiff_core::locality::nearest_neighbours;
use covdiff_core::trajectory::{Spacing, Trajectory};
use covdiff_model::diffusion::{initial_noise, SamplerConfig};
use covdiff_model::image::Column;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataArgs,
    /// Denoisers, side by side: unet, optimal, wiener, wiener-dct, patch[:p], els[:p], mask:<th>.
    #[arg(long, value_delimiter = ',', default_value = "optimal")]
    denoiser: Vec<String>,
    #[arg(long, default_value_t = 8)]
    n: usize,
    /// DDIM steps K.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// DDIM's eta (0: deterministic).
    #[arg(long, default_value_t = 0.0)]
    eta: f64,
    /// Inputs averaged per sensitivity field (mask denoisers).
    #[arg(long, default_value_t = 64)]
    field_inputs: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// PNG grid: per denoiser a column of samples and a column of their nearest training images.
    #[arg(long, default_value = "denoise-samples.png")]
    out: PathBuf,
    /// JSON with the distances to the nearest training images.
    #[arg(long, default_value = "denoise-samples.json")]
    json: PathBuf,
}

impl BackendJob for Args {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        ensure!(self.n > 0 && self.steps > 0, "--n and --steps must be positive");
        ensure!(self.eta.is_finite() && self.eta >= 0.0, "--eta must be >= 0");
        let list = names(&self.denoiser)?;
        let moments = list.iter().any(|n| matches!(n, Name::Analytic(s) if s.needs_moments()));
        let ctx = Context::<B>::load(&self.data, moments, &device)?;
        let times: Vec<usize> =
            Trajectory::new(ctx.pipeline.table().steps(), self.steps, Spacing::Even)?.times().to_vec();
        let fields = if list.iter().any(|n| matches!(n, Name::Analytic(s) if s.needs_fields())) {
            Some(ctx.unet_fields(&times, self.field_inputs, self.seed ^ 0x5e75, &device)?)
        } else {
            None
        };
        let config = SamplerConfig::ddim(self.eta, self.steps);
        let dim = ctx.set.dim();
        let pb = bar((list.len() * self.steps) as u64, "sampling");
        let mut columns = Vec::new();
        let mut report = Vec::new();
        for name in &list {
            let den = ctx.build(name, &times, fields.as_ref())?;
            covdiff_model::normals::seed::<B>(&device, self.seed);
            let mut x = initial_noise(ctx.pipeline.shape(self.n), ctx.pipeline.noise(), &device);
            let mut sampling = ctx.pipeline.sampling(Column::Ddim, &config)?;
            let clock = Instant::now();
            while !sampling.is_finished() {
                x = match &den {
                    Some(d) => sampling.step(d.as_ref(), x)?.x,
                    None => sampling.step(ctx.unet(), x)?.x,
                };
                pb.inc(1);
            }
            let samples = read(x)?;
            let seconds = clock.elapsed().as_secs_f64();
            let nn = nearest_neighbours(&samples, &ctx.set.pixels, dim);
            let (mean, sd) = mean_std(&nn.iter().map(|p| p.1).collect::<Vec<_>>());
            eprintln!(
                "{name}: {} samples in {seconds:.1} s; RMS distance to the nearest training image {mean:.4} ± {sd:.4}",
                self.n
            );
            report.push(serde_json::json!({
                "denoiser": name.to_string(), "nn_rms_distance": mean, "nn_rms_distance_std": sd,
                "nearest": nn.iter().map(|p| p.0).collect::<Vec<_>>(), "seconds": seconds,
            }));
            let nearest: Vec<f32> = nn.iter().flat_map(|&(i, _)| ctx.set.image(i).to_vec()).collect();
            columns.push((name.to_string(), samples, nearest, mean));
        }
        pb.finish_and_clear();
        let mut grid = Vec::new();
        for i in 0..self.n {
            for (_, s, nn, _) in &columns {
                grid.extend_from_slice(&s[i * dim..(i + 1) * dim]);
                grid.extend_from_slice(&nn[i * dim..(i + 1) * dim]);
            }
        }
        let headers = columns.iter().flat_map(|(n, _, _, m)| [n.clone(), format!("NN {m:.3}")]).collect();
        let d = ctx.set.size;
        save_grid(
            &self.out,
            &grid,
            ctx.set.channels,
            d,
            2 * columns.len(),
            (64 / d).clamp(1, 4),
            &Labels::new(
                format!(
                    "DDIM K={}, seed {}: samples and nearest training images (NN: RMS distance)",
                    self.steps, self.seed
                ),
                headers,
            ),
        )
        .with_context(|| format!("writing {}", self.out.display()))?;
        let json = serde_json::json!({
            "training_images": ctx.data.len(), "local_training_images": ctx.local.len(),
            "steps": self.steps, "eta": self.eta, "seed": self.seed, "denoisers": report,
        });
        std::fs::write(&self.json, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("writing {}", self.json.display()))?;
        println!("wrote {} and {}", self.out.display(), self.json.display());
        Ok(())
    }
}
