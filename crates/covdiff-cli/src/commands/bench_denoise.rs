//! `covdiff bench denoisers`: one denoising step of each analytic denoiser (the locality
//! appendix's Table 4) beside one step of the trained UNet, on the same batch of noised training
//! images, as medians over repeats; ratios from one run.

use super::bench::median_ms;
use super::denoise::{names, Context, DataArgs, Name};
use crate::device::BackendJob;
use anyhow::{ensure, Context as _, Result};
use burn::tensor::backend::Backend;
use rand::{rngs::StdRng, SeedableRng};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataArgs,
    /// Denoisers to time (the UNet is always timed too).
    #[arg(long, value_delimiter = ',', default_value = "optimal,wiener,patch:9,mask:0.02,els:9")]
    denoisers: Vec<String>,
    /// Images per step.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// The diffusion time of the step.
    #[arg(long, default_value_t = 500)]
    t: usize,
    /// Timed repeats per denoiser (the median is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Also write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl BackendJob for Args {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        ensure!(self.batch > 0 && self.reps > 0, "--batch and --reps must be positive");
        let mut list = names(&self.denoisers)?;
        list.retain(|n| *n != Name::Unet);
        list.insert(0, Name::Unet);
        let moments = list.iter().any(|n| matches!(n, Name::Analytic(s) if s.needs_moments()));
        let ctx = Context::<B>::load(&self.data, moments, &device)?;
        let steps = ctx.pipeline.table().steps();
        ensure!((1..=steps).contains(&self.t), "--t must lie in 1..={steps}");
        let times = [self.t];
        let fields = if list.iter().any(|n| matches!(n, Name::Analytic(s) if s.needs_fields())) {
            Some(ctx.unet_fields(&times, 64, 0, &device)?)
        } else {
            None
        };
        let x = ctx.noised(self.t, self.batch, &mut StdRng::seed_from_u64(0), &device);
        let b = x.dims()[0];
        let backend = B::name(&device);
        println!(
            "{backend}: one step at t = {} on {b} images of {}x{}x{}",
            self.t, ctx.set.channels, ctx.set.size, ctx.set.size
        );
        println!("| denoiser | training images | ms per step | ms per image | / UNet |");
        println!("|---|---:|---:|---:|---:|");
        let mut rows = Vec::new();
        let mut unet_ms = f64::NAN;
        for name in &list {
            let built = ctx.build(name, &times, fields.as_ref())?;
            let den = built.as_deref().unwrap_or(ctx.unet());
            let ms = median_ms(self.reps, || {
                let (eps, _) = den.predict(x.clone(), self.t, false);
                // Reading one number back waits for the device.
                let _ = eps.sum().into_data();
            });
            if *name == Name::Unet {
                unet_ms = ms;
            }
            let images = match name {
                Name::Unet => 0,
                Name::Analytic(s) if s.is_local() => ctx.local.len(),
                Name::Analytic(_) => ctx.data.len(),
            };
            println!("| {name} | {images} | {ms:.1} | {:.2} | {:.2} |", ms / b as f64, ms / unet_ms);
            rows.push(serde_json::json!({
                "denoiser": name.to_string(), "training_images": images, "ms_per_step": ms,
                "ms_per_image": ms / b as f64, "ratio_to_unet": ms / unet_ms,
            }));
        }
        if let Some(path) = &self.json {
            let json = serde_json::json!({ "backend": backend, "t": self.t, "batch": b, "rows": rows });
            std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}
