//! `covdiff denoise compare`: each analytic denoiser's `x0_hat` against the trained UNet's at
//! every step of 10-step DDIM trajectories (the locality appendix's Table 1 and 2, Fig. 6 and 7).
//! With `--trajectory unet` every denoiser sees the UNet's own `x_t`; with `own` each one samples
//! its own trajectory from the same `x_T`, and its `x0_hat` is set against the UNet's at the same
//! step.

use super::{mean_std, names, read, x0_of, Context, DataArgs, Name};
use crate::device::BackendJob;
use crate::progress::bar;
use anyhow::{ensure, Context as _, Result};
use burn::tensor::{backend::Backend, Tensor};
use covdiff_core::figure::{save_grid, Labels};
use covdiff_core::locality::r2_mse;
use covdiff_core::svg::{LinePlot, Series};
use covdiff_core::trajectory::{Spacing, Trajectory};
use covdiff_model::analytic::AnalyticSpec;
use covdiff_model::diffusion::{initial_noise, Denoiser, SamplerConfig};
use covdiff_model::image::Column;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataArgs,
    /// Denoisers to set against the UNet: optimal, wiener, wiener-dct, patch[:p], els[:p], mask:<th>;
    /// p is one size, or sizes from the noisiest step on (els:28/17/9); without it, the fitted schedule.
    #[arg(long, value_delimiter = ',', default_value = "optimal,wiener,els,mask:0.005,mask:0.01,mask:0.02,mask:0.05")]
    denoisers: Vec<String>,
    /// Sampling trajectories (the appendix uses 128).
    #[arg(long, default_value_t = 128)]
    n: usize,
    /// Trajectories per batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// DDIM steps K.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// unet: every denoiser at the UNet's x_t; own: each denoiser along its own trajectory.
    #[arg(long, default_value = "unet", value_parser = ["unet", "own"])]
    trajectory: String,
    /// Inputs averaged per sensitivity field (mask denoisers).
    #[arg(long, default_value_t = 64)]
    field_inputs: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder: metrics.jsonl, summary.json, mse.svg, r2.svg, x0.png.
    #[arg(long, default_value = "denoise-compare")]
    out: PathBuf,
}

/// Per denoiser and step, the per-trajectory r^2 and MSE.
struct Scores {
    r2: Vec<Vec<f64>>,
    mse: Vec<Vec<f64>>,
    seconds: f64,
    evaluations: usize,
}

impl BackendJob for Args {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        ensure!(self.n > 0 && self.batch > 0 && self.steps > 0, "--n, --batch and --steps must be positive");
        let list = names(&self.denoisers)?;
        let analytic: Vec<Name> = list.into_iter().filter(|n| *n != Name::Unet).collect();
        ensure!(!analytic.is_empty(), "name at least one analytic denoiser besides the UNet");
        let needs_moments = analytic.iter().any(|n| matches!(n, Name::Analytic(s) if s.needs_moments()));
        let ctx = Context::<B>::load(&self.data, needs_moments, &device)?;
        let times: Vec<usize> =
            Trajectory::new(ctx.pipeline.table().steps(), self.steps, Spacing::Even)?.times().to_vec();
        let fields = if analytic.iter().any(|n| matches!(n, Name::Analytic(s) if s.needs_fields())) {
            eprintln!(
                "measuring the UNet's sensitivity fields at {} times ({} inputs each)",
                times.len(),
                self.field_inputs
            );
            Some(ctx.unet_fields(&times, self.field_inputs, self.seed ^ 0x5e75, &device)?)
        } else {
            None
        };
        let dens: Vec<Box<dyn Denoiser<B>>> = analytic
            .iter()
            .map(|n| Ok(ctx.build(n, &times, fields.as_ref())?.expect("analytic")))
            .collect::<Result<_>>()?;
        std::fs::create_dir_all(&self.out).with_context(|| format!("creating {}", self.out.display()))?;
        let own = self.trajectory == "own";
        let config = SamplerConfig::ddim(0.0, self.steps);
        let unet = ctx.unet();
        let mut scores: Vec<Scores> = analytic
            .iter()
            .map(|_| Scores {
                r2: vec![Vec::new(); self.steps],
                mse: vec![Vec::new(); self.steps],
                seconds: 0.0,
                evaluations: 0,
            })
            .collect();
        // x0_hat of the first trajectory at every step: the UNet's, then each denoiser's.
        let mut first: Vec<Vec<Vec<f32>>> = vec![Vec::new(); analytic.len() + 1];
        let chunks = self.n.div_ceil(self.batch);
        let pb = bar((chunks * self.steps * (1 + analytic.len())) as u64, "compare");
        covdiff_model::normals::seed::<B>(&device, self.seed);
        for start in (0..self.n).step_by(self.batch) {
            let b = self.batch.min(self.n - start);
            let x_t = initial_noise(ctx.pipeline.shape(b), ctx.pipeline.noise(), &device);
            // The UNet's trajectory: (x_t, t, x0_hat) per step.
            let mut sampling = ctx.pipeline.sampling(Column::Ddim, &config)?;
            let mut steps: Vec<(Tensor<B, 4>, usize, Vec<f32>)> = Vec::new();
            let mut x = x_t.clone();
            while !sampling.is_finished() {
                let out = sampling.step(unet, x.clone())?;
                steps.push((x, out.t, read(out.x0_hat)?));
                x = out.x;
                pb.inc(1);
            }
            if start == 0 {
                first[0] = steps.iter().map(|s| s.2[..ctx.set.dim()].to_vec()).collect();
            }
            for (k, den) in dens.iter().enumerate() {
                let mut own_sampling = ctx.pipeline.sampling(Column::Ddim, &config)?;
                let mut x = x_t.clone();
                for (step, (x_unet, t, ref_x0)) in steps.iter().enumerate() {
                    let clock = Instant::now();
                    let x0 = if own {
                        let out = own_sampling.step(den.as_ref(), x.clone())?;
                        x = out.x;
                        read(out.x0_hat)?
                    } else {
                        read(x0_of(den.as_ref(), &ctx.pipeline, x_unet.clone(), *t))?
                    };
                    scores[k].seconds += clock.elapsed().as_secs_f64();
                    scores[k].evaluations += b;
                    let dim = ctx.set.dim();
                    for (p, r) in x0.chunks(dim).zip(ref_x0.chunks(dim)) {
                        let (r2, mse) = r2_mse(p, r);
                        scores[k].r2[step].push(r2);
                        scores[k].mse[step].push(mse);
                    }
                    if start == 0 {
                        first[k + 1].push(x0[..dim].to_vec());
                    }
                    pb.inc(1);
                }
            }
        }
        pb.finish_and_clear();

        let labels: Vec<String> = analytic.iter().map(|n| n.to_string()).collect();
        let mut jsonl = String::new();
        let mut summary = Vec::new();
        println!("| denoiser | r^2 | MSE | s per image per step |");
        println!("|---|---|---|---|");
        for (name, s) in labels.iter().zip(&scores) {
            for (step, t) in times.iter().enumerate() {
                let (r2, r2_sd) = mean_std(&s.r2[step]);
                let (mse, mse_sd) = mean_std(&s.mse[step]);
                jsonl += &serde_json::json!({
                    "denoiser": name, "step": step, "t": t,
                    "r2": r2, "r2_std": r2_sd, "mse": mse, "mse_std": mse_sd,
                })
                .to_string();
                jsonl.push('\n');
            }
            // Per trajectory, the mean over steps; then mean and spread over trajectories.
            let per = |m: &Vec<Vec<f64>>| -> Vec<f64> {
                (0..self.n).map(|i| m.iter().map(|v| v[i]).sum::<f64>() / self.steps as f64).collect()
            };
            let (r2, r2_sd) = mean_std(&per(&s.r2));
            let (mse, mse_sd) = mean_std(&per(&s.mse));
            let secs = s.seconds / s.evaluations.max(1) as f64;
            println!("| {name} | {r2:.3} ± {r2_sd:.3} | {mse:.4} ± {mse_sd:.4} | {secs:.4} |");
            summary.push(serde_json::json!({
                "denoiser": name, "r2": r2, "r2_std": r2_sd, "mse": mse, "mse_std": mse_sd,
                "seconds_per_image_step": secs,
            }));
        }
        let summary = serde_json::json!({
            "weights": self.data.weights.display().to_string(),
            "training_images": ctx.data.len(),
            "local_training_images": ctx.local.len(),
            "trajectories": self.n,
            "steps": self.steps,
            "trajectory": self.trajectory,
            "seed": self.seed,
            "sampler": "DDIM eta=0, x0 clipped",
            "denoisers": summary,
        });
        let write = |name: &str, text: String| -> Result<()> {
            let p = self.out.join(name);
            std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
        };
        write("metrics.jsonl", jsonl)?;
        write("summary.json", serde_json::to_string_pretty(&summary)? + "\n")?;
        let curve = |pick: fn(&Scores, usize) -> f64, y: &str, log_y: bool| LinePlot {
            title: format!("{y} of x0_hat against the UNet's, along {} DDIM trajectories", self.n),
            x_label: format!("sampling step (t = {} down to {})", times[0], times[self.steps - 1]),
            y_label: y.into(),
            log_y,
            series: labels
                .iter()
                .zip(&scores)
                .enumerate()
                .map(|(k, (name, s))| Series {
                    name: name.clone(),
                    points: (0..self.steps).map(|i| ((i + 1) as f64, pick(s, i))).collect(),
                    dashed: k >= 6,
                })
                .collect(),
        };
        write("mse.svg", curve(|s, i| mean_std(&s.mse[i]).0, "MSE", true).to_svg())?;
        write("r2.svg", curve(|s, i| mean_std(&s.r2[i]).0, "r^2", false).to_svg())?;
        let mut grid = Vec::new();
        for row in &first {
            for img in row {
                grid.extend_from_slice(img);
            }
        }
        let rows: Vec<String> = std::iter::once("unet".to_string()).chain(labels.iter().cloned()).collect();
        let png = self.out.join("x0.png");
        let d = ctx.set.size;
        save_grid(
            &png,
            &grid,
            ctx.set.channels,
            d,
            self.steps,
            (64 / d).clamp(1, 4),
            &Labels::new(
                format!("x0_hat along the {} trajectory of sample 0", if own { "own" } else { "UNet's" }),
                times.iter().map(|t| format!("t={t}")).collect(),
            )
            .with_rows(rows),
        )
        .with_context(|| format!("writing {}", png.display()))?;
        println!("wrote metrics.jsonl, summary.json, mse.svg, r2.svg and x0.png to {}", self.out.display());
        Ok(())
    }
}

/// The appendix's Table 1, Fashion-MNIST column: its own model's `(threshold, r^2, MSE)` (Algorithm
/// 1, the Wiener matrix's rows binarised: `wmask`) against the authors' trained DDPM.
const PAPER_MASK: [(f64, f64, f64); 4] =
    [(0.005, 0.563, 0.115), (0.01, 0.517, 0.122), (0.02, 0.406, 0.144), (0.05, 0.072, 0.211)];

#[derive(clap::Args)]
pub struct TableArgs {
    /// summary.json files written by `denoise compare`, merged in order.
    #[arg(required = true)]
    summaries: Vec<PathBuf>,
    /// Markdown table.
    #[arg(long, default_value = "denoise-table.md")]
    out: PathBuf,
    /// Also average over the steps below this t only (from metrics.jsonl beside each summary):
    /// an eps-parametrised UNet's x0_hat is mostly noise at the first steps (appendix B.5).
    #[arg(long, default_value_t = 850)]
    below: usize,
}

/// Mean r^2 and MSE over the steps with `t < below`, per denoiser, from `metrics.jsonl` (the mean
/// over trajectories of the mean over steps is the mean over steps of the per-step means).
fn low_noise(path: &std::path::Path, below: usize) -> Result<std::collections::HashMap<String, (f64, f64)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut acc: std::collections::HashMap<String, (f64, f64, usize)> = Default::default();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}: line {} is not JSON", path.display(), i + 1))?;
        let t = v.get("t").and_then(|x| x.as_u64()).unwrap_or(u64::MAX);
        if t < below as u64 {
            let name = v.get("denoiser").and_then(|x| x.as_str()).unwrap_or("?").to_string();
            let e = acc.entry(name).or_default();
            e.0 += v.get("r2").and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
            e.1 += v.get("mse").and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
            e.2 += 1;
        }
    }
    Ok(acc.into_iter().map(|(k, (r, m, n))| (k, (r / n as f64, m / n as f64))).collect())
}

/// `covdiff denoise table`: one Markdown table from several comparisons, with the appendix's
/// numbers beside the mask rows.
pub fn table(a: TableArgs) -> Result<()> {
    let mut md = format!(
        "| denoiser | training images | trajectories | r^2 | MSE | r^2, t < {b} | MSE, t < {b} | r^2 (appendix) | MSE (appendix) | s per image per step |\n|---|---:|---:|---|---|---:|---:|---:|---:|---:|\n",
        b = a.below
    );
    for path in &a.summaries {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let s: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not a compare summary", path.display()))?;
        let field = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_f64());
        let rows = s
            .get("denoisers")
            .and_then(|d| d.as_array())
            .with_context(|| format!("{}: no denoisers", path.display()))?;
        let n = s.get("trajectories").and_then(|x| x.as_u64()).unwrap_or(0);
        let low = low_noise(&path.with_file_name("metrics.jsonl"), a.below)?;
        for row in rows {
            let name = row.get("denoiser").and_then(|x| x.as_str()).unwrap_or("?");
            let spec: Option<AnalyticSpec> = name.parse().ok();
            let images = match &spec {
                Some(sp) if sp.is_local() => s.get("local_training_images"),
                _ => s.get("training_images"),
            }
            .and_then(|x| x.as_u64())
            .unwrap_or(0);
            let paper = match spec {
                Some(AnalyticSpec::WienerMask(th)) => PAPER_MASK.iter().find(|p| (p.0 - th).abs() < 1e-12),
                _ => None,
            };
            let get = |k: &str| field(row, k).unwrap_or(f64::NAN);
            md += &format!(
                "| {name} | {images} | {n} | {:.3} ± {:.3} | {:.4} ± {:.4} | {:.3} | {:.4} | {} | {} | {:.4} |\n",
                get("r2"),
                get("r2_std"),
                get("mse"),
                get("mse_std"),
                low.get(name).map_or(f64::NAN, |v| v.0),
                low.get(name).map_or(f64::NAN, |v| v.1),
                paper.map(|p| format!("{:.3}", p.1)).unwrap_or_else(|| "-".into()),
                paper.map(|p| format!("{:.3}", p.2)).unwrap_or_else(|| "-".into()),
                get("seconds_per_image_step"),
            );
        }
    }
    std::fs::write(&a.out, &md).with_context(|| format!("writing {}", a.out.display()))?;
    print!("{md}");
    Ok(())
}
