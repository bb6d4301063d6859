//! `covdiff bench compare`: covdiff against PyTorch on the same machine, in
//! one run. It runs `scripts/bench_torch.py` (torch and diffusers from pip)
//! first, so that the two never compete for the cores, then the same work in
//! covdiff, and prints both sides with their ratios:
//! - the tiny UNet (diffusers' `UNet2DModel` with the same shape) at 28 x 28:
//!   covdiff's sampling step (network plus covariance) against torch's forward,
//!   and one stage-1 training step (L_simple, AdamW) on each side;
//! - the first-level 3x3 convolution, forward and forward + backward;
//! - the K-DCT matvec and sample (Eq. 13, Alg. 1) and the diagonal ones, per d.

use super::bench::{covariance_row, median_ms, CovRow};
use super::bench_model::sampling_steps;
use crate::device::BackendJob;
use anyhow::{bail, ensure, Context, Result};
use burn::backend::Autodiff;
use burn::tensor::{backend::Backend, Distribution, Tensor};
use covdiff_core::data::ImageSet;
use covdiff_core::schedule::{Linear, Schedule};
use covdiff_model::diffusion::{ForwardNoise, Settings, Trainer};
use covdiff_model::image::EpsStage;
use covdiff_model::unet::{Conv, UNetConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// The PyTorch reference script.
    #[arg(long, default_value = "scripts/bench_torch.py")]
    script: PathBuf,
    /// The Python that has torch and diffusers.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Threads for PyTorch (match the cores covdiff uses).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// K-DCT image sizes d, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    sizes: Vec<usize>,
    /// Channels C of the K-DCT operators.
    #[arg(long, default_value_t = 3)]
    kdct_channels: usize,
    /// Timed repeats per measurement (the median is reported).
    #[arg(long, default_value_t = 7)]
    reps: usize,
    /// Rounds, alternating PyTorch and covdiff; each side's best median over the rounds is
    /// reported, so that a slow spell of a shared machine does not land on one side only.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also write both sides and the ratios as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// What `bench_torch.py` prints.
#[derive(Deserialize, Serialize)]
struct Torch {
    torch: String,
    threads: usize,
    unet: TorchUnet,
    conv: TorchConv,
    kdct: TorchKdct,
}

#[derive(Deserialize, Serialize)]
struct TorchUnet {
    forward_ms: f64,
    training_step_ms: f64,
}

#[derive(Deserialize, Serialize)]
struct TorchConv {
    forward_ms: f64,
    forward_backward_ms: f64,
}

#[derive(Deserialize, Serialize)]
struct TorchKdct {
    rows: Vec<TorchKdctRow>,
}

#[derive(Deserialize, Serialize)]
struct TorchKdctRow {
    d: usize,
    diag_matvec_ms: f64,
    kdct_matvec_ms: f64,
    diag_sample_ms: f64,
    kdct_sample_ms: f64,
}

/// One compared measurement.
#[derive(Serialize)]
struct Line {
    work: String,
    covdiff_ms: f64,
    torch_ms: f64,
    covdiff_over_torch: f64,
}

#[derive(Serialize)]
struct Report {
    backend: String,
    /// PyTorch's own report from the first round (its version, threads and that round's times).
    torch: Torch,
    /// Each side's best median over the rounds, and their ratio.
    lines: Vec<Line>,
    kdct_over_diag_sampling_step: f64,
}

impl Args {
    fn run_torch(&self) -> Result<Torch> {
        let out = Command::new(&self.python)
            .arg(&self.script)
            .args(["--threads", &self.threads.to_string(), "--batch", &self.batch.to_string()])
            .args(["--kdct-channels", &self.kdct_channels.to_string(), "--reps", &self.reps.to_string()])
            .arg("--sizes")
            .arg(self.sizes.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","))
            .output()
            .with_context(|| format!("could not run {} {}", self.python, self.script.display()))?;
        if !out.status.success() {
            bail!(
                "the PyTorch reference failed ({}); it needs torch and diffusers (pip install torch diffusers): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            );
        }
        serde_json::from_slice(&out.stdout).context("the PyTorch reference printed no valid JSON report")
    }
}

impl Args {
    /// One round of covdiff's side: every measured line against `torch`'s, and the K-DCT /
    /// diagonal sampling-step ratio.
    fn round<B: Backend>(&self, torch: &Torch, device: &B::Device) -> Result<Vec<Line>> {
        let device = device.clone();
        let (b, size, reps) = (self.batch, 28, self.reps);
        let sync = || {
            let _ = B::sync(&device);
        };
        let mut lines = Vec::new();
        let mut line = |work: String, covdiff_ms: f64, torch_ms: f64| {
            lines.push(Line { work, covdiff_ms, torch_ms, covdiff_over_torch: covdiff_ms / torch_ms });
        };

        // The tiny UNet.
        covdiff_model::normals::seed::<B>(&device, 0);
        let unet_cfg = UNetConfig::tiny(1);
        let unet = unet_cfg.init::<B>(&device);
        let x = Tensor::<B, 4>::random([b, 1, size, size], Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<B, 1>::full([b], 500.0, &device);
        let forward = median_ms(reps, || {
            let _ = unet.forward(x.clone(), t.clone(), None);
            sync();
        });
        line("UNet forward".into(), forward, torch.unet.forward_ms);
        let steps = sampling_steps(&unet_cfg, &unet, x, size, reps, &device)?;
        for (k, v) in &steps {
            line(format!("sampling step, {k} (torch: forward)"), *v, torch.unet.forward_ms);
        }
        let n = size * size;
        let pixels: Vec<f32> = (0..64 * n).map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0).collect();
        let data = Arc::new(ImageSet { channels: 1, size, pixels, labels: None });
        let settings = Settings { batch: b, ..Settings::default() };
        let mut trainer = Trainer::new(
            EpsStage,
            unet_cfg.init::<Autodiff<B>>(&device),
            data,
            Linear::default().table(),
            ForwardNoise::White,
            settings,
            &device,
        )?;
        let train = median_ms(reps, || {
            let _ = trainer.step();
            sync();
        });
        line("training step, stage 1".into(), train, torch.unet.training_step_ms);

        // The first-level convolution.
        let c0 = unet_cfg.block_out_channels[0];
        let xc = Tensor::<B, 4>::random([b, c0, size, size], Distribution::Normal(0.0, 1.0), &device);
        let conv = Conv::<B>::new(c0, c0, 3, 1, 1, &device);
        let cf = median_ms(reps, || {
            let _ = conv.forward(xc.clone());
            sync();
        });
        line("conv 3x3 forward".into(), cf, torch.conv.forward_ms);
        let xa = Tensor::<Autodiff<B>, 4>::from_inner(xc).require_grad();
        let conv_ad = Conv::<Autodiff<B>>::new(c0, c0, 3, 1, 1, &device);
        let cb = median_ms(reps, || {
            let _ = conv_ad.forward(xa.clone()).sum().backward();
            sync();
        });
        line("conv 3x3 forward + backward".into(), cb, torch.conv.forward_backward_ms);

        // The covariance operators.
        for tr in &torch.kdct.rows {
            let r: CovRow = covariance_row::<B>(tr.d, self.kdct_channels, b, reps, &device)?;
            line(format!("K-DCT E v, d = {}", r.d), r.kdct_matvec_ms, tr.kdct_matvec_ms);
            line(format!("K-DCT sample, d = {}", r.d), r.kdct_sample_ms, tr.kdct_sample_ms);
            line(format!("diag E v, d = {}", r.d), r.diag_matvec_ms, tr.diag_matvec_ms);
            line(format!("diag sample, d = {}", r.d), r.diag_sample_ms, tr.diag_sample_ms);
        }
        Ok(lines)
    }
}

impl BackendJob for Args {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        ensure!(
            self.batch > 0 && self.reps > 0 && self.kdct_channels > 0 && self.rounds > 0,
            "--batch, --reps, --rounds and --kdct-channels must be positive"
        );
        ensure!(
            !self.sizes.is_empty() && self.sizes.iter().all(|&d| (2..=1024).contains(&d)),
            "--sizes must lie in 2..=1024"
        );
        let mut best: Option<(Torch, Vec<Line>)> = None;
        for round in 1..=self.rounds {
            eprintln!("round {round}/{}: the PyTorch reference ({}) ...", self.rounds, self.script.display());
            let torch = self.run_torch()?;
            eprintln!("round {round}/{}: covdiff on {} ...", self.rounds, B::name(&device));
            let lines = self.round::<B>(&torch, &device)?;
            best = Some(match best {
                None => (torch, lines),
                Some((t, old)) => {
                    let merged = old
                        .into_iter()
                        .zip(lines)
                        .map(|(a, b)| {
                            let (covdiff_ms, torch_ms) = (a.covdiff_ms.min(b.covdiff_ms), a.torch_ms.min(b.torch_ms));
                            Line { work: a.work, covdiff_ms, torch_ms, covdiff_over_torch: covdiff_ms / torch_ms }
                        })
                        .collect();
                    (t, merged)
                }
            });
        }
        let Some((torch, lines)) = best else { bail!("no round ran") };
        // The two best medians' ratio (a minimum of per-round ratios would be biased low).
        let step = |k: &str| {
            lines.iter().find(|l| l.work == format!("sampling step, {k} (torch: forward)")).map(|l| l.covdiff_ms)
        };
        let kdct_over_diag = step("kdct").zip(step("diag")).map_or(f64::NAN, |(k, d)| k / d);
        let report = Report { backend: B::name(&device), kdct_over_diag_sampling_step: kdct_over_diag, torch, lines };
        println!(
            "covdiff on {} against PyTorch {} ({} threads); batch {}, best of {} rounds of the median of {} runs, ms",
            report.backend, report.torch.torch, report.torch.threads, self.batch, self.rounds, self.reps
        );
        println!("{:<40} {:>10} {:>10} {:>15}", "work", "covdiff", "PyTorch", "covdiff/PyTorch");
        for l in &report.lines {
            println!("{:<40} {:>10.3} {:>10.3} {:>15.2}", l.work, l.covdiff_ms, l.torch_ms, l.covdiff_over_torch);
        }
        println!("sampling step, kdct/diag on the same UNet: {:.3}", report.kdct_over_diag_sampling_step);
        if let Some(p) = &self.json {
            std::fs::write(p, serde_json::to_string_pretty(&report)? + "\n")?;
        }
        Ok(())
    }
}
