//! `covdiff covariance true`: the true posterior covariance of a trained eps-UNet (K-DCT paper
//! Fig. 1C, 7 and 10). By second-order Tweedie (docs/maths.md, "Forward process and Tweedie"),
//! `E_t = Cov[eps | x_t] = I - sqrt(bbar) J` with `J = d eps_hat / d x_t`, the UNet's full
//! Jacobian by autodiff at held-out images noised to `t`. Against it: the `E_t` that each model's
//! heads learnt (K-DCT, diagonal), the best isotropic `c I`, and for scale the Frobenius-nearest
//! K-DCT and diagonal matrices (the best each family could do).

use crate::commands::covariance::{write_comparison, Comparison};
use crate::commands::denoise::read;
use crate::commands::image::config::read_card;
use crate::commands::image::eval::held_out;
use crate::commands::image::models::HeadWeights;
use crate::device::BackendJob;
use crate::progress::bar;
use anyhow::{ensure, Context as _, Result};
use burn::backend::Autodiff;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use covdiff_core::structure::{nearest_diagonal, nearest_isotropic, nearest_kdct, relative_error};
use covdiff_model::analytic::sensitivity::eps_covariance;
use covdiff_model::image::{Column, Pipeline};
use covdiff_model::Covariance;
use nalgebra::DMatrix;
use rand::{rngs::StdRng, RngExt, SeedableRng};
use rand_distr::StandardNormal;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    models: HeadWeights,
    /// Diffusion times.
    #[arg(long, value_delimiter = ',', default_value = "100,500,900")]
    t: Vec<usize>,
    /// Held-out images per t (the Jacobian costs C d^2 / rows-per-pass backward passes each).
    #[arg(long, default_value_t = 2)]
    inputs: usize,
    /// Held-out images (default: Fashion-MNIST's test set for Fashion-MNIST models).
    #[arg(long)]
    data: Option<String>,
    /// Jacobian rows per backward pass.
    #[arg(long, default_value_t = 16)]
    rows_per_pass: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder: table.md, true-covariance.json, and per t a spectrum SVG and a
    /// covariance-slice PNG (of the first input).
    #[arg(long, default_value = "covariance-true")]
    out: PathBuf,
}

/// One model file: its name and its pipeline.
struct Model<B: Backend> {
    name: String,
    pipeline: Pipeline<B>,
}

fn dense(v: Vec<f32>, n: usize) -> DMatrix<f64> {
    DMatrix::from_row_slice(n, n, &v.iter().map(|&x| x as f64).collect::<Vec<_>>())
}

impl BackendJob for Args {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        ensure!(!self.models.weights.is_empty(), "pass at least one --weights");
        ensure!(self.inputs > 0 && self.rows_per_pass > 0, "--inputs and --rows-per-pass must be positive");
        let mut models = Vec::new();
        let mut first_bytes = None;
        for path in &self.models.weights {
            let card = read_card(path)?;
            ensure!(card.heads.is_some(), "{} has no covariance heads: nothing learnt to compare", path.display());
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let pipeline = Pipeline::<B>::from_card(card.clone(), bytes.clone(), &path.display().to_string(), &device)?;
            first_bytes.get_or_insert((card, bytes));
            models.push(Model { name: pipeline.card().name(), pipeline });
        }
        let (card, bytes) = first_bytes.context("no model")?;
        let steps = models[0].pipeline.table().steps();
        ensure!(!self.t.is_empty() && self.t.iter().all(|t| (1..=steps).contains(t)), "--t must lie in 1..={steps}");
        let [_, c, d, _] = models[0].pipeline.shape(1);
        let n = c * d * d;
        for m in &models[1..] {
            ensure!(m.pipeline.shape(1) == [1, c, d, d], "{} is for other images than {}", m.name, models[0].name);
        }
        let source = format!("the eps-UNet of {}", models[0].name);
        let autodiff = Pipeline::<Autodiff<B>>::from_card(card.clone(), bytes, "the first weights", &device)?;
        let unet = autodiff.denoiser(Column::Ddim)?;
        let set = held_out(&card, &self.data, self.inputs)?;
        ensure!(set.len() >= self.inputs, "need {} held-out images, the data has {}", self.inputs, set.len());
        // The Jacobian is the first model's UNet's: every other model must run the same one.
        let probe = Tensor::<B, 4>::from_data(TensorData::new(set.image(0).to_vec(), [1, c, d, d]), &device);
        let eps_of = |m: &Model<B>| -> Result<Vec<f32>> {
            read(m.pipeline.denoiser(Column::Ddim)?.predict(probe.clone(), self.t[0], false).0)
        };
        let reference = eps_of(&models[0])?;
        for m in &models[1..] {
            let gap = eps_of(m)?.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            ensure!(
                gap <= 1e-5,
                "{} and {} run different eps-UNets (eps differs by {gap}); compare models of one UNet",
                m.name,
                models[0].name
            );
        }
        std::fs::create_dir_all(&self.out).with_context(|| format!("creating {}", self.out.display()))?;

        let mut rng = StdRng::seed_from_u64(self.seed);
        let learnt: Vec<String> = models.iter().map(|m| format!("learnt {}", m.name)).collect();
        let mut md = format!(
            "E_t = Cov[eps | x_t] of the eps-UNet by autodiff (I - sqrt(bbar) J, symmetrised) at {} held-out image(s) per t; relative squared Frobenius error of each approximation, mean over the images\n\n| t | asymmetry | trace / n | {} | best isotropic | nearest K-DCT | nearest diagonal |\n|---:|---:|---:|{}---:|---:|---:|\n",
            self.inputs,
            learnt.join(" | "),
            "---:|".repeat(models.len()),
        );
        let mut report = Vec::new();
        let pb = bar((self.t.len() * self.inputs) as u64, "Jacobians");
        for &t in &self.t {
            let table = models[0].pipeline.table();
            let (sa, sb) = (table.abar(t).sqrt(), (1.0 - table.abar(t)).sqrt());
            // Per input: asymmetry, trace / n, the learnt errors, isotropic, nearest K-DCT, diagonal.
            let mut rows: Vec<Vec<f64>> = Vec::new();
            for i in 0..self.inputs {
                let x: Vec<f32> = set
                    .image(i)
                    .iter()
                    .map(|&v| (sa * v as f64 + sb * rng.sample::<f64, _>(StandardNormal)) as f32)
                    .collect();
                let x = Tensor::<B, 4>::from_data(TensorData::new(x, [1, c, d, d]), &device);
                let raw =
                    dense(read(eps_covariance::<Autodiff<B>, _>(unet, table, x.clone(), t, self.rows_per_pass)?)?, n);
                let asymmetry = (&raw - raw.transpose()).norm() / raw.norm().max(1e-300);
                let truth = (&raw + raw.transpose()) * 0.5;
                let mut learnt_dense = Vec::new();
                for m in &models {
                    let (_, cov) = m.pipeline.denoiser(Column::Learned)?.predict(x.clone(), t, true);
                    let cov = cov.with_context(|| format!("{} predicts no covariance", m.name))?;
                    learnt_dense.push(dense(read(cov.to_dense())?, n));
                }
                let (iso, kdct, diag) =
                    (nearest_isotropic(&truth), nearest_kdct(&truth, c, d), nearest_diagonal(&truth));
                let mut row = vec![asymmetry, truth.trace() / n as f64];
                row.extend(learnt_dense.iter().map(|l| relative_error(&truth, l)));
                row.extend([relative_error(&truth, &iso), kdct.error, relative_error(&truth, &diag)]);
                if i == 0 {
                    let mut matrices = vec![("true (UNet Jacobian)".to_string(), &truth)];
                    matrices.extend(learnt.iter().cloned().zip(&learnt_dense));
                    matrices.push(("best isotropic".into(), &iso));
                    let slices = (0..=models.len()).collect();
                    let cmp = Comparison {
                        what: "E_t = Cov[eps | x_t]",
                        source: &source,
                        matrices,
                        slices,
                        channels: c,
                        size: d,
                    };
                    let note =
                        learnt.iter().zip(&row[2..]).map(|(l, e)| format!("{l} error {e:.3}")).collect::<Vec<_>>();
                    write_comparison(&self.out, t, &cmp, &note.join(", "))?;
                }
                report.push(serde_json::json!({
                    "t": t, "input": i, "asymmetry": asymmetry, "trace": truth.trace(),
                    "error_learnt": models.iter().zip(&row[2..]).map(|(m, e)| (m.name.clone(), *e)).collect::<std::collections::BTreeMap<_, _>>(),
                    "error_best_isotropic": row[2 + models.len()],
                    "error_nearest_kdct": row[3 + models.len()],
                    "error_nearest_diagonal": row[4 + models.len()],
                }));
                rows.push(row);
                pb.inc(1);
            }
            let mean: Vec<f64> =
                (0..rows[0].len()).map(|k| rows.iter().map(|r| r[k]).sum::<f64>() / rows.len() as f64).collect();
            md += &format!("| {t} | {} |\n", mean.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(" | "));
        }
        pb.finish_and_clear();
        print!("{md}");
        let p = self.out.join("table.md");
        std::fs::write(&p, &md).with_context(|| format!("writing {}", p.display()))?;
        let json = serde_json::json!({
            "models": models.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
            "inputs": self.inputs, "seed": self.seed, "n": n, "results": report,
        });
        let p = self.out.join("true-covariance.json");
        std::fs::write(&p, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
        println!(
            "wrote table.md, true-covariance.json, spectrum-t*.svg and covariance-t*.png to {}",
            self.out.display()
        );
        Ok(())
    }
}
