//! `covdiff denoise sensitivity`: the sensitivity fields `d x0_hat_q / d x_t` (the locality
//! appendix, B.3 and B.4; main paper Fig. 3 to 5) of the UNet (autodiff) and of the optimal
//! denoiser (`sqrt(abar) / bbar Cov[x0 | x_t]`, exact), aligned on the output pixel and averaged
//! over noised training images, and the UNet's mask at a threshold.

use super::{Context, DataArgs};
use crate::device::BackendJob;
use anyhow::{ensure, Context as _, Result};
use burn::tensor::backend::Backend;
use covdiff_core::figure::{save_heatmaps, Labels, Panel};
use std::path::PathBuf;

fn panels(values: Vec<&[f64]>, n: usize) -> Vec<Panel<'_>> {
    values.into_iter().map(|values| Panel { n, values }).collect()
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataArgs,
    /// Diffusion times.
    #[arg(long, value_delimiter = ',', default_value = "100,300,500,700,900")]
    t: Vec<usize>,
    /// The binarisation threshold, relative to the field's maximum.
    #[arg(long, default_value_t = 0.02)]
    th: f64,
    /// Noised training images averaged per field.
    #[arg(long, default_value_t = 64)]
    inputs: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// PNG: rows UNet field, UNet mask, optimal field; a column per t.
    #[arg(long, default_value = "sensitivity.png")]
    out: PathBuf,
    /// JSON with the fields and the masks' sizes.
    #[arg(long, default_value = "sensitivity.json")]
    json: PathBuf,
}

impl BackendJob for Args {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        ensure!(self.th > 0.0 && self.th <= 1.0, "--th must be in (0, 1]");
        let ctx = Context::<B>::load(&self.data, false, &device)?;
        ctx.check_times(&self.t)?;
        let unet = ctx.unet_fields(&self.t, self.inputs, self.seed, &device)?;
        let optimal = ctx.optimal_fields(&self.t, self.inputs, self.seed, &device)?;
        let w = 2 * ctx.set.size - 1;
        let c = ctx.set.size as i64 - 1;
        let mut masks = Vec::new();
        let mut report = Vec::new();
        for &t in &self.t {
            let support = unet.at(t).support(self.th);
            let mut m = vec![0.0; w * w];
            for (dy, dx) in &support {
                m[((dy + c) as usize) * w + (dx + c) as usize] = 1.0;
            }
            println!("t = {t}: the UNet's mask at th = {} keeps {} offsets", self.th, support.len());
            report.push(serde_json::json!({
                "t": t, "mask_offsets": support.len(),
                "unet_field": unet.at(t).values, "optimal_field": optimal.at(t).values,
            }));
            masks.push(m);
        }
        let rows = vec![
            panels(self.t.iter().map(|&t| unet.at(t).values.as_slice()).collect(), w),
            panels(masks.iter().map(Vec::as_slice).collect(), w),
            panels(self.t.iter().map(|&t| optimal.at(t).values.as_slice()).collect(), w),
        ];
        let labels = Labels::new(
            format!("sensitivity |d x0_hat_q / d x_t| about q (offsets +-{c}), {} inputs", self.inputs),
            self.t.iter().map(|t| format!("t = {t}")).collect(),
        );
        let titles = ["UNet".to_string(), format!("mask th={}", self.th), "optimal".to_string()];
        save_heatmaps(&self.out, &rows, 160, &labels, &titles)
            .with_context(|| format!("writing {}", self.out.display()))?;
        let json = serde_json::json!({ "size": w, "threshold": self.th, "inputs": self.inputs, "times": report });
        std::fs::write(&self.json, serde_json::to_string(&json)? + "\n")
            .with_context(|| format!("writing {}", self.json.display()))?;
        println!("wrote {} and {}", self.out.display(), self.json.display());
        Ok(())
    }
}
