//! `covdiff bench model`: what structured covariance costs next to a network.
//! On one randomly initialised UNet and batch: the time of a sampling step
//! with each covariance (iso, diag, kdct) and of a training step with each
//! objective and head, with the ratios kdct/diag; and the UNet's convolution
//! by each route (the backend's `conv2d`, our im2col), forward and backward.

use super::bench::median_ms;
use crate::device::BackendJob;
use crate::progress::bar;
use anyhow::{ensure, Result};
use burn::backend::Autodiff;
use burn::tensor::{backend::Backend, Distribution, Tensor};
use covdiff_core::data::ImageSet;
use covdiff_core::schedule::{Linear, Schedule};
use covdiff_model::diffusion::{ForwardNoise, SamplerConfig, Settings, StepVariance, Trainer};
use covdiff_model::image::{CovarianceHeadsConfig, HeadKind, HeadObjective, HeadStage, SecondOrder};
use covdiff_model::unet::{Conv, ConvRoute, UNet, UNetConfig};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// tiny or cifar.
    #[arg(long, default_value = "tiny")]
    preset: String,
    #[arg(long, default_value_t = 1)]
    channels: usize,
    #[arg(long, default_value_t = 28)]
    size: usize,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long, default_value_t = 5)]
    reps: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize, Default)]
struct Report {
    backend: String,
    unet: String,
    batch: usize,
    sampling_step_ms: std::collections::BTreeMap<String, f64>,
    training_step_ms: std::collections::BTreeMap<String, f64>,
    conv_ms: std::collections::BTreeMap<String, f64>,
    ratios: std::collections::BTreeMap<String, f64>,
}

/// The time of one sampling step (median over `reps` 4-step skip-step runs, the last clipped),
/// per step covariance: `iso` (beta-tilde), `diag` and `kdct` (heads on `unet`, `btilde I + kappa E`).
pub(crate) fn sampling_steps<B: Backend>(
    unet_cfg: &UNetConfig,
    unet: &UNet<B>,
    x: Tensor<B, 4>,
    size: usize,
    reps: usize,
    device: &B::Device,
) -> Result<BTreeMap<String, f64>> {
    let table = Linear::default().table();
    let sampler = |variance| SamplerConfig::ddpm(variance, 4).build::<B>(&table, ForwardNoise::White);
    let per_step = |ms: f64| ms / 4.0;
    let mut out = BTreeMap::new();
    let iso_sampler = sampler(StepVariance::Small)?;
    let iso = median_ms(reps, || {
        let _ = iso_sampler.clone().run(unet, x.clone());
        let _ = B::sync(device);
    });
    out.insert("iso".into(), per_step(iso));
    for kind in [HeadKind::Diagonal, HeadKind::KDct] {
        let heads = CovarianceHeadsConfig::for_unet(kind, unet_cfg, size).init::<B>(device);
        let model = SecondOrder { unet: unet.clone(), heads };
        let learned = sampler(StepVariance::Learned)?;
        let ms = median_ms(reps, || {
            let _ = learned.clone().run(&model, x.clone());
            let _ = B::sync(device);
        });
        out.insert(kind.name(), per_step(ms));
    }
    Ok(out)
}

impl BackendJob for Args {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        ensure!(
            self.batch > 0 && self.reps > 0 && self.channels > 0,
            "--batch, --reps and --channels must be positive"
        );
        let unet_cfg = match self.preset.as_str() {
            "tiny" => UNetConfig::tiny(self.channels),
            "cifar" => UNetConfig::cifar(self.channels),
            p => anyhow::bail!("unknown preset '{p}' (expected tiny or cifar)"),
        };
        ensure!(
            self.size.is_multiple_of(unet_cfg.size_multiple()),
            "--size must be a multiple of {}",
            unet_cfg.size_multiple()
        );
        let shape = [self.batch, self.channels, self.size, self.size];
        let table = Linear::default().table();
        let sync = || {
            let _ = B::sync(&device);
        };
        let mut r = Report {
            backend: B::name(&device),
            unet: format!("{} ({} x {} x {})", self.preset, self.channels, self.size, self.size),
            batch: self.batch,
            ..Default::default()
        };
        let pb = bar(9, "bench");
        covdiff_model::normals::seed::<B>(&device, 0);
        let unet = unet_cfg.init::<B>(&device);
        let x = Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        r.sampling_step_ms = sampling_steps(&unet_cfg, &unet, x, self.size, self.reps, &device)?;
        pb.inc(3);
        // Training: one optimiser step of the heads on the frozen UNet.
        let n = self.channels * self.size * self.size;
        let pixels: Vec<f32> = (0..64 * n).map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0).collect();
        let data = Arc::new(ImageSet { channels: self.channels, size: self.size, pixels, labels: None });
        let settings = Settings { batch: self.batch, ..Settings::default() };
        for objective in
            [HeadObjective::Npr, HeadObjective::NprResidual, HeadObjective::Ocm { h: 1e-2 }, HeadObjective::Sn]
        {
            let kinds: &[HeadKind] = if objective == HeadObjective::Sn {
                &[HeadKind::Diagonal]
            } else {
                &[HeadKind::Diagonal, HeadKind::KDct]
            };
            for &kind in kinds {
                let cfg = CovarianceHeadsConfig::for_unet(kind, &unet_cfg, self.size)
                    .with_second_moment(objective == HeadObjective::Sn);
                let stage = HeadStage::<Autodiff<B>> { unet: unet.clone(), objective };
                let mut trainer = Trainer::new(
                    stage,
                    cfg.init::<Autodiff<B>>(&device),
                    data.clone(),
                    table.clone(),
                    ForwardNoise::White,
                    settings.clone(),
                    &device,
                )?;
                let ms = median_ms(self.reps, || {
                    let _ = trainer.step();
                    sync();
                });
                r.training_step_ms.insert(format!("{objective}/{}", kind.name()), ms);
            }
            pb.inc(1);
        }
        // The UNet's first-level convolution by each route: forward without autodiff, and
        // forward + backward under it.
        let c0 = unet_cfg.block_out_channels[0];
        let xc =
            Tensor::<B, 4>::random([self.batch, c0, self.size, self.size], Distribution::Normal(0.0, 1.0), &device);
        let xa = Tensor::<Autodiff<B>, 4>::from_inner(xc.clone()).require_grad();
        let conv = Conv::<B>::new(c0, c0, 3, 1, 1, &device);
        let conv_ad = Conv::<Autodiff<B>>::new(c0, c0, 3, 1, 1, &device);
        let routes = [("backend", ConvRoute::Backend), ("im2col", ConvRoute::Im2col), ("kernel", ConvRoute::Kernel)];
        for (name, route) in routes {
            let fwd = median_ms(self.reps, || {
                let _ = conv.forward_by(xc.clone(), route);
                sync();
            });
            let bwd = median_ms(self.reps, || {
                let _ = conv_ad.forward_by(xa.clone(), route).sum().backward();
                sync();
            });
            r.conv_ms.insert(format!("{name}_forward"), fwd);
            r.conv_ms.insert(format!("{name}_forward_backward"), bwd);
        }
        pb.inc(1);
        pb.finish_and_clear();
        let s = &r.sampling_step_ms;
        r.ratios.insert("sampling kdct/diag".into(), s["kdct"] / s["diag"]);
        r.ratios.insert("sampling kdct/iso".into(), s["kdct"] / s["iso"]);
        for o in ["npr", "npr-residual", "ocm"] {
            let t = &r.training_step_ms;
            r.ratios.insert(format!("training {o} kdct/diag"), t[&format!("{o}/kdct")] / t[&format!("{o}/diag")]);
        }
        let c = &r.conv_ms;
        r.ratios.insert("conv forward backend/im2col".into(), c["backend_forward"] / c["im2col_forward"]);
        r.ratios
            .insert("conv fwd+bwd backend/im2col".into(), c["backend_forward_backward"] / c["im2col_forward_backward"]);
        r.ratios.insert("conv forward kernel/backend".into(), c["kernel_forward"] / c["backend_forward"]);
        r.ratios
            .insert("conv fwd+bwd kernel/backend".into(), c["kernel_forward_backward"] / c["backend_forward_backward"]);
        println!("{} UNet on {}, batch {} (median of {} runs, ms)", r.unet, r.backend, r.batch, self.reps);
        println!("sampling step:");
        for (k, v) in &r.sampling_step_ms {
            println!("  {k:<22} {v:>10.2}");
        }
        println!("training step (frozen UNet, heads trained):");
        for (k, v) in &r.training_step_ms {
            println!("  {k:<22} {v:>10.2}");
        }
        println!("first-level 3x3 convolution:");
        for (k, v) in &r.conv_ms {
            println!("  {k:<30} {v:>10.2}");
        }
        println!("ratios:");
        for (k, v) in &r.ratios {
            println!("  {k:<30} {v:>8.3}");
        }
        if let Some(p) = &self.json {
            std::fs::write(p, serde_json::to_string_pretty(&r)? + "\n")?;
        }
        Ok(())
    }
}
