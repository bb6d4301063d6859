//! `covdiff denoise posterior`: the optimal denoiser's exact `Cov[x0 | x_t]` (the weighted
//! covariance of the training images) for a held-out image noised to each `t`, against its
//! Frobenius-nearest K-DCT, diagonal and isotropic matrices: the K-DCT paper's Fig. 1C and 7 with
//! no network. The held-out image is the last of the set, and is left out of the training set.

use super::{read, Context, DataArgs};
use crate::commands::covariance::{write_comparison, Comparison};
use crate::device::BackendJob;
use crate::progress::bar;
use anyhow::{ensure, Context as _, Result};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use covdiff_core::structure::{nearest_diagonal, nearest_isotropic, nearest_kdct, relative_error};
use covdiff_model::analytic::{OptimalDenoiser, TrainingSet};
use nalgebra::DMatrix;
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::StandardNormal;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataArgs,
    /// Diffusion times.
    #[arg(long, value_delimiter = ',', default_value = "100,500,900")]
    t: Vec<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder: posterior.json, and per t a spectrum SVG and a covariance-slice PNG.
    #[arg(long, default_value = "denoise-posterior")]
    out: PathBuf,
}

impl BackendJob for Args {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let ctx = Context::<B>::load(&self.data, false, &device)?;
        ctx.check_times(&self.t)?;
        ensure!(ctx.set.len() >= 3, "need at least 3 images: one is held out");
        let (c, d, n) = (ctx.set.channels, ctx.set.size, ctx.set.dim());
        let mut train = ctx.set.clone();
        let held: Vec<f32> = train.image(train.len() - 1).to_vec();
        train.truncate(train.len() - 1);
        let opt = OptimalDenoiser::new(
            TrainingSet::from_images(&train, self.data.chunk, &device)?,
            ctx.pipeline.table().clone(),
        );
        std::fs::create_dir_all(&self.out).with_context(|| format!("creating {}", self.out.display()))?;
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut report = Vec::new();
        let pb = bar(self.t.len() as u64, "posterior");
        let mut md = format!(
            "Cov[x0 | x_t] of the optimal denoiser over {} training images; relative squared Frobenius error of the nearest matrix of each family\n\n| t | trace | K-DCT | diagonal | isotropic |\n|---:|---:|---:|---:|---:|\n",
            train.len()
        );
        for &t in &self.t {
            let abar = ctx.pipeline.table().abar(t);
            let x: Vec<f32> = held
                .iter()
                .map(|&v| {
                    let e: f64 = rand::RngExt::sample(&mut rng, StandardNormal);
                    (abar.sqrt() * v as f64 + (1.0 - abar).sqrt() * e) as f32
                })
                .collect();
            let x = Tensor::<B, 4>::from_data(TensorData::new(x, [1, c, d, d]), &device);
            let cov = read(opt.posterior_covariance(x, t))?;
            let sigma = DMatrix::from_row_slice(n, n, &cov.iter().map(|&v| v as f64).collect::<Vec<_>>());
            let sigma = (&sigma + sigma.transpose()) * 0.5;
            let kdct = nearest_kdct(&sigma, c, d);
            let (diag, iso) = (nearest_diagonal(&sigma), nearest_isotropic(&sigma));
            let errors = [kdct.error, relative_error(&sigma, &diag), relative_error(&sigma, &iso)];
            md += &format!("| {t} | {:.4} | {:.4} | {:.4} | {:.4} |\n", sigma.trace(), errors[0], errors[1], errors[2]);
            let cmp = Comparison {
                what: "Cov[x0 | x_t]",
                source: "the optimal denoiser",
                matrices: vec![
                    ("optimal (exact)".into(), &sigma),
                    ("nearest K-DCT".into(), &kdct.dense),
                    ("nearest diagonal".into(), &diag),
                    ("nearest isotropic".into(), &iso),
                ],
                slices: vec![0, 1, 2],
                channels: c,
                size: d,
            };
            let spectra0 = write_comparison(&self.out, t, &cmp, &format!("K-DCT error {:.3}", errors[0]))?;
            report.push(serde_json::json!({
                "t": t, "trace": sigma.trace(),
                "error_kdct": errors[0], "error_diagonal": errors[1], "error_isotropic": errors[2],
                "top_eigenvalues": spectra0.iter().take(16).collect::<Vec<_>>(),
            }));
            pb.inc(1);
        }
        pb.finish_and_clear();
        let json = serde_json::json!({
            "training_images": train.len(), "held_out": "the last image of the set", "seed": self.seed,
            "times": report,
        });
        print!("{md}");
        let p = self.out.join("table.md");
        std::fs::write(&p, md).with_context(|| format!("writing {}", p.display()))?;
        let p = self.out.join("posterior.json");
        std::fs::write(&p, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
        println!("wrote posterior.json, table.md, spectrum-t*.svg and covariance-t*.png to {}", self.out.display());
        Ok(())
    }
}
