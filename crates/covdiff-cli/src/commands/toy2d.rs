//! `covdiff toy2d`: the 2D thesis, trained, sampled and compared.

use crate::checkpoint::Checkpoints;
use crate::device::{dispatch, BackendJob, DeviceKind};
use crate::progress::bar;
use crate::training::{train_loop, Log};
use anyhow::{bail, ensure, Context, Result};
use burn::backend::Autodiff;
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use covdiff_core::metrics::energy_distance;
use covdiff_core::schedule::{Schedule, Sigmoid};
use covdiff_core::svg::{scatter_panels, Cloud, LinePlot, Series};
use covdiff_core::toy2d::{self, Toy};
use covdiff_core::trajectory::{Spacing, Trajectory};
use covdiff_model::diffusion::{ForwardNoise, Trainer};
use covdiff_model::toy2d::{
    negative_elbo, sample, settings, Column, ModelCard, Objective, Toy2dConfig, Toy2dModel, Toy2dStage,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Train an eps-network and a covariance network on a toy dataset.
    Train(TrainArgs),
    /// Draw samples from a trained model (SVG scatter over the data, optional .npy).
    Sample(SampleArgs),
    /// Scalar against learned full covariance, over K and the noise scale lambda.
    Sweep(SweepArgs),
}

#[derive(clap::Args, Clone)]
pub struct DataArgs {
    /// swiss-roll, s-curve, moons, circles, mix or mix-overlap.
    #[arg(long, default_value = "swiss-roll")]
    data: String,
    /// Training points.
    #[arg(long, default_value_t = 8000)]
    points: usize,
    /// Gaussian jitter added to the shape, before standardisation.
    #[arg(long, default_value_t = 0.02)]
    jitter: f64,
    /// Condition on class labels (mixes, moons, circles).
    #[arg(long)]
    conditional: bool,
    /// Diffusion steps T of the sigmoid schedule (beta 1e-5 to 0.03).
    #[arg(long, default_value_t = 500)]
    schedule_steps: usize,
}

#[derive(clap::Args, Clone)]
pub struct OptimArgs {
    /// Optimiser steps.
    #[arg(long, default_value_t = 3000)]
    steps: usize,
    #[arg(long, default_value_t = 256)]
    batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Weight of the KL term of the thesis objective.
    #[arg(long, default_value_t = 1.0)]
    kl_weight: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    optim: OptimArgs,
    /// baseline (scalar variance), thesis (KL to the batch noise covariance), or principled (NPR-residual E_t).
    #[arg(long, default_value = "principled")]
    objective: String,
    /// Output stem: writes <out>.mpk (weights), <out>.json (model card) and
    /// <out>.jsonl (metrics every 50 steps).
    #[arg(long, default_value = "toy2d")]
    out: PathBuf,
    /// Write a checkpoint (<out>.ckpt/) every this many steps; a rerun of the same
    /// command resumes from it. 0: only at the end (removed once the model is written).
    #[arg(long, default_value_t = 500)]
    checkpoint_every: usize,
    /// Ignore an existing checkpoint and start over.
    #[arg(long)]
    fresh: bool,
}

#[derive(clap::Args)]
pub struct SampleArgs {
    /// The model card written by `toy2d train` (<out>.json).
    #[arg(long)]
    model: PathBuf,
    /// Sampling steps K.
    #[arg(long, default_value_t = 50)]
    k: usize,
    /// beta, beta-tilde, thesis or principled (the last two need that model).
    #[arg(long)]
    covariance: Option<String>,
    /// Noise scale lambda.
    #[arg(long, default_value_t = 1.0)]
    lambda: f64,
    #[arg(long, default_value_t = 2000)]
    n: usize,
    /// Sample this class (conditional models).
    #[arg(long)]
    label: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "samples.svg")]
    out: PathBuf,
    /// Also write the points as a NumPy array [n, 2].
    #[arg(long)]
    raw: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct SweepArgs {
    /// Datasets, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "swiss-roll,moons")]
    datasets: Vec<String>,
    #[command(flatten)]
    optim: OptimArgs,
    #[arg(long, default_value_t = 8000)]
    points: usize,
    #[arg(long, default_value_t = 500)]
    schedule_steps: usize,
    /// Sampling steps K for the table.
    #[arg(long, value_delimiter = ',', default_value = "10,50,500")]
    ks: Vec<usize>,
    /// Noise scales for the lambda sweep.
    #[arg(long, value_delimiter = ',', default_value = "0,0.2,0.4,0.6,0.8,1,1.2,1.4,1.6,1.8,2")]
    lambdas: Vec<f64>,
    /// K used for the lambda sweep.
    #[arg(long, default_value_t = 50)]
    lambda_k: usize,
    /// Samples and held-out points per evaluation.
    #[arg(long, default_value_t = 2000)]
    eval_points: usize,
    #[arg(long, default_value = "sweep")]
    out_dir: PathBuf,
}

pub fn run(c: Command, device: DeviceKind) -> Result<()> {
    match c {
        Command::Train(a) => dispatch(device, a),
        Command::Sample(a) => dispatch(device, a),
        Command::Sweep(a) => dispatch(device, a),
    }
}

fn toy(name: &str) -> Result<Toy> {
    name.parse::<Toy>().map_err(anyhow::Error::msg)
}

fn check_optim(o: &OptimArgs) -> Result<()> {
    ensure!(o.steps > 0 && o.batch > 0, "--steps and --batch must be positive");
    ensure!(o.lr.is_finite() && o.lr > 0.0, "--lr must be a positive number");
    ensure!(o.kl_weight.is_finite() && o.kl_weight >= 0.0, "--kl-weight must be >= 0");
    Ok(())
}

/// Train one model, with a progress bar, and metrics and checkpoints where `log` says.
fn train_model<B: Backend>(
    data: &DataArgs,
    optim: &OptimArgs,
    objective: Objective,
    device: &B::Device,
    log: Option<Log>,
) -> Result<(Toy2dModel<B>, ModelCard)> {
    check_optim(optim)?;
    ensure!((10..=100_000).contains(&data.schedule_steps), "--schedule-steps must be between 10 and 100000");
    ensure!(data.points >= 10, "--points must be at least 10");
    let t = toy(&data.data)?;
    let points = toy2d::sample(t, data.points, data.jitter, optim.seed);
    let table = Sigmoid { steps: data.schedule_steps, ..Default::default() }.table();
    let classes = t.classes();
    let config = Toy2dConfig::new().with_classes(if data.conditional { classes } else { 0 });
    covdiff_model::normals::seed::<B>(device, optim.seed);
    let init = || config.init::<Autodiff<B>>(device);
    let stage = Toy2dStage { objective };
    let settings = settings(optim.batch, optim.lr, optim.steps, optim.seed);
    let trainer = Trainer::new(stage, init(), Arc::new(points), table, ForwardNoise::White, settings, device)?;
    let (trainer, summary) = train_loop(trainer, init, optim.steps, objective.name(), log, device)?;
    let card = ModelCard {
        data: t.name().into(),
        points: data.points,
        jitter: data.jitter,
        conditional: data.conditional,
        classes,
        schedule: "sigmoid".into(),
        schedule_steps: data.schedule_steps,
        objective: objective.name().into(),
        kl_weight: optim.kl_weight,
        train_steps: optim.steps,
        batch: optim.batch,
        lr: optim.lr,
        seed: optim.seed,
        hidden: config.hidden,
        layers: config.layers,
        final_loss: summary["final_loss"].as_f64().unwrap_or(f64::NAN),
        train_seconds: summary["train_seconds"].as_f64().unwrap_or(f64::NAN),
        weights: String::new(),
    };
    Ok((trainer.ema().clone(), card))
}

fn objective(name: &str, kl_weight: f64) -> Result<Objective> {
    Ok(match name.parse::<Objective>().map_err(anyhow::Error::msg)? {
        Objective::Thesis { .. } => Objective::Thesis { kl_weight },
        o => o,
    })
}

impl BackendJob for TrainArgs {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let obj = objective(&self.objective, self.optim.kl_weight)?;
        let run = serde_json::json!({
            "data": self.data.data, "points": self.data.points, "jitter": self.data.jitter,
            "conditional": self.data.conditional, "schedule_steps": self.data.schedule_steps,
            "objective": self.objective, "kl_weight": self.optim.kl_weight, "steps": self.optim.steps,
            "batch": self.optim.batch, "lr": self.optim.lr, "seed": self.optim.seed,
        });
        let checkpoints = Checkpoints::new(self.out.with_extension("ckpt"), run);
        let mut metrics = checkpoints.start(self.fresh, &self.out.with_extension("jsonl"))?;
        let log = Log { metrics: &mut metrics, checkpoints: &checkpoints, every: self.checkpoint_every, log_every: 50 };
        let (model, mut card) = train_model::<B>(&self.data, &self.optim, obj, &device, Some(log))?;
        let weights = self.out.with_extension("mpk");
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        model.save_file(self.out.clone(), &recorder).with_context(|| format!("writing {}", weights.display()))?;
        card.weights = weights.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let card_path = self.out.with_extension("json");
        std::fs::write(&card_path, serde_json::to_string_pretty(&card)? + "\n")?;
        checkpoints.remove()?;
        println!(
            "trained {} on {} in {:.1} s ({} steps, final loss {:.4}); wrote {} and {}",
            card.objective,
            card.data,
            card.train_seconds,
            card.train_steps,
            card.final_loss,
            weights.display(),
            card_path.display()
        );
        Ok(())
    }
}

fn load_model<B: Backend>(card_path: &Path, device: &B::Device) -> Result<(Toy2dModel<B>, ModelCard)> {
    let text = std::fs::read_to_string(card_path).with_context(|| format!("reading {}", card_path.display()))?;
    let card =
        ModelCard::from_json(&text).with_context(|| format!("{} is not a toy2d model card", card_path.display()))?;
    let weights = card_path.with_file_name(&card.weights);
    let bytes = std::fs::read(&weights).with_context(|| format!("reading {}", weights.display()))?;
    let model = card.load::<B>(bytes, device).with_context(|| format!("{}: cannot load weights", weights.display()))?;
    Ok((model, card))
}

fn labels<B: Backend>(
    label: Option<usize>,
    n: usize,
    card: &ModelCard,
    device: &B::Device,
) -> Result<Option<Tensor<B, 1, Int>>> {
    match (card.conditional, label) {
        (true, Some(l)) if l < card.classes => {
            Ok(Some(Tensor::from_data(TensorData::new(vec![l as i64; n], [n]), device)))
        }
        (true, Some(l)) => bail!("--label {l} is out of range: the model has {} classes", card.classes),
        (true, None) => {
            let ys: Vec<i64> = (0..n).map(|i| (i % card.classes) as i64).collect();
            Ok(Some(Tensor::from_data(TensorData::new(ys, [n]), device)))
        }
        (false, Some(_)) => bail!("this model is unconditional: train with --conditional to sample by label"),
        (false, None) => Ok(None),
    }
}

fn points_of(v: &[f64]) -> Vec<[f64; 2]> {
    v.chunks_exact(2).map(|p| [p[0], p[1]]).collect()
}

/// A tensor's values on the host; a failed read is an error, never an empty point set.
fn read<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f64>> {
    let v =
        t.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("reading a tensor back: {e:?}"))?;
    ensure!(v.iter().all(|x| x.is_finite()), "the model produced non-finite values");
    Ok(v.into_iter().map(f64::from).collect())
}

impl BackendJob for SampleArgs {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let (model, card) = load_model::<B>(&self.model, &device)?;
        let cov = match &self.covariance {
            Some(c) => c.parse::<Column>().map_err(anyhow::Error::msg)?,
            None if card.objective == "thesis" => Column::Thesis,
            None if card.objective == "principled" => Column::Principled,
            None => Column::BetaTilde,
        };
        ensure!(
            !cov.is_learned() || cov.name() == card.objective,
            "covariance '{}' needs a model trained with that objective (this one: {})",
            cov.name(),
            card.objective
        );
        ensure!(self.lambda.is_finite() && (0.0..=10.0).contains(&self.lambda), "--lambda must lie in [0, 10]");
        ensure!(self.n > 0, "--n must be positive");
        let table = card.table()?;
        covdiff_model::normals::seed::<B>(&device, self.seed);
        let y = labels::<B>(self.label, self.n, &card, &device)?;
        let config = cov.sampler(self.k, self.lambda);
        let x = read(sample(&model.denoiser(y), &table, &config, self.n, &device)?)?;
        let data = toy2d::sample(toy(&card.data)?, self.n, card.jitter, 12345);
        let panels = vec![(
            format!("K = {}, {}, lambda = {}", self.k, cov.name(), self.lambda),
            vec![
                Cloud { name: "data".into(), points: data.xy.clone(), colour: "#bbbbbb".into() },
                Cloud { name: "samples".into(), points: points_of(&x), colour: "#d62728".into() },
            ],
        )];
        std::fs::write(&self.out, scatter_panels(&card.data, &panels, 3.0))?;
        if let Some(raw) = &self.raw {
            let f: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            covdiff_core::npy::write_f32(raw, &[self.n, 2], &f)?;
        }
        let held: Vec<f64> = data.xy.iter().flat_map(|p| [p[0], p[1]]).collect();
        println!(
            "energy distance to held-out data: {:.4}; wrote {}",
            energy_distance(&x, &held, 2),
            self.out.display()
        );
        Ok(())
    }
}

#[derive(Serialize)]
struct SweepRow {
    data: String,
    k: usize,
    lambda: f64,
    covariance: String,
    energy_distance: f64,
    nll_bits_per_dim: Option<f64>,
}

impl BackendJob for SweepArgs {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        ensure!(
            !self.ks.is_empty() && self.ks.iter().all(|&k| k >= 1 && k <= self.schedule_steps),
            "--ks must lie in 1..=T"
        );
        ensure!(
            self.lambdas.iter().all(|l| l.is_finite() && (0.0..=10.0).contains(l)),
            "--lambdas must lie in [0, 10]"
        );
        ensure!(self.eval_points >= 10, "--eval-points must be at least 10");
        std::fs::create_dir_all(&self.out_dir).with_context(|| format!("creating {}", self.out_dir.display()))?;
        let mut rows = Vec::new();
        let mut cards = Vec::new();
        for name in &self.datasets {
            let t = toy(name)?;
            let data = DataArgs {
                data: name.clone(),
                points: self.points,
                jitter: 0.02,
                conditional: false,
                schedule_steps: self.schedule_steps,
            };
            eprintln!("{name}: training principled and thesis models ({} steps each)", self.optim.steps);
            let (principled, c1) = train_model::<B>(&data, &self.optim, Objective::Principled, &device, None)?;
            let (thesis, c2) = train_model::<B>(
                &data,
                &self.optim,
                Objective::Thesis { kl_weight: self.optim.kl_weight },
                &device,
                None,
            )?;
            eprintln!("  trained in {:.1} s and {:.1} s", c1.train_seconds, c2.train_seconds);
            let table = c1.table()?;
            let held = toy2d::sample(t, self.eval_points, 0.02, 12345);
            let held_flat: Vec<f64> = held.xy.iter().flat_map(|p| [p[0], p[1]]).collect();
            let x0 = Tensor::<B, 2>::from_data(
                TensorData::new(held_flat.iter().map(|&v| v as f32).collect::<Vec<_>>(), [self.eval_points, 2]),
                &device,
            );
            // The baseline is the principled model's eps-network with scalar variance.
            let evaluate = |cov: Column, k: usize, lambda: f64, nll: bool| -> Result<(f64, Option<f64>, Vec<f64>)> {
                let tr = Trajectory::new(table.steps(), k, Spacing::Even).map_err(anyhow::Error::msg)?;
                covdiff_model::normals::seed::<B>(&device, 1000 + k as u64);
                let model = if cov == Column::Thesis { thesis.denoiser(None) } else { principled.denoiser(None) };
                let x = read(sample(&model, &table, &cov.sampler(k, lambda), self.eval_points, &device)?)?;
                let ed = energy_distance(&x, &held_flat, 2);
                let nll = if nll {
                    let v = negative_elbo(&model, &table, &tr, cov.variance(), x0.clone())?;
                    ensure!(v.iter().all(|x| x.is_finite()), "the model's ELBO is not finite");
                    Some(v.iter().sum::<f64>() / v.len() as f64 / (2.0 * std::f64::consts::LN_2))
                } else {
                    None
                };
                Ok((ed, nll, x))
            };
            let pb = bar((self.ks.len() * 4 + self.lambdas.len() * 4) as u64, "evaluating");
            let mut scatter = Vec::new();
            for &k in &self.ks {
                for cov in Column::ALL {
                    let (ed, nll, x) = evaluate(cov, k, 1.0, true)?;
                    rows.push(SweepRow {
                        data: name.clone(),
                        k,
                        lambda: 1.0,
                        covariance: cov.name().into(),
                        energy_distance: ed,
                        nll_bits_per_dim: nll,
                    });
                    if k == self.ks[0] {
                        scatter.push((format!("K = {k}: {}", cov.name()), points_of(&x)));
                    }
                    pb.inc(1);
                }
            }
            for &lambda in &self.lambdas {
                for cov in Column::ALL {
                    let (ed, _, _) = evaluate(cov, self.lambda_k, lambda, false)?;
                    rows.push(SweepRow {
                        data: name.clone(),
                        k: self.lambda_k,
                        lambda,
                        covariance: cov.name().into(),
                        energy_distance: ed,
                        nll_bits_per_dim: None,
                    });
                    pb.inc(1);
                }
            }
            pb.finish_and_clear();
            write_figures(&self, name, &held.xy, scatter, &rows)?;
            cards.push(c1);
            cards.push(c2);
        }
        let table_md = markdown(&rows, &self.ks);
        std::fs::write(self.out_dir.join("sweep.md"), &table_md)?;
        std::fs::write(
            self.out_dir.join("sweep.json"),
            serde_json::to_string_pretty(&serde_json::json!({ "models": cards, "rows": rows }))? + "\n",
        )?;
        println!("{table_md}");
        println!("wrote {}/sweep.json, sweep.md and figures", self.out_dir.display());
        Ok(())
    }
}

fn write_figures(
    a: &SweepArgs,
    name: &str,
    data: &[[f64; 2]],
    scatter: Vec<(String, Vec<[f64; 2]>)>,
    rows: &[SweepRow],
) -> Result<()> {
    let panels: Vec<(String, Vec<Cloud>)> = scatter
        .into_iter()
        .map(|(title, pts)| {
            (
                title,
                vec![
                    Cloud { name: "data".into(), points: data.to_vec(), colour: "#bbbbbb".into() },
                    Cloud { name: "samples".into(), points: pts, colour: "#d62728".into() },
                ],
            )
        })
        .collect();
    std::fs::write(a.out_dir.join(format!("{name}_samples.svg")), scatter_panels(name, &panels, 3.0))?;
    let mine = |cov: &str, lam: bool| -> Vec<&SweepRow> {
        rows.iter()
            .filter(|r| {
                r.data == name && r.covariance == cov && ((r.lambda == 1.0 && !lam) || (lam && r.k == a.lambda_k))
            })
            .collect()
    };
    let line = |x_label: &str, y_label: &str, f: &dyn Fn(&str) -> Vec<(f64, f64)>, title: &str, log_y: bool| LinePlot {
        title: title.into(),
        x_label: x_label.into(),
        y_label: y_label.into(),
        log_y,
        series: Column::ALL
            .iter()
            .map(|c| Series { name: c.name().into(), points: f(c.name()), dashed: !c.is_learned() })
            .collect(),
    };
    let by_k_ed = |c: &str| {
        mine(c, false)
            .iter()
            .filter(|r| r.nll_bits_per_dim.is_some())
            .map(|r| (r.k as f64, r.energy_distance))
            .collect()
    };
    let by_k_nll =
        |c: &str| mine(c, false).iter().filter_map(|r| r.nll_bits_per_dim.map(|v| (r.k as f64, v))).collect();
    let by_lambda = |c: &str| {
        mine(c, true).iter().filter(|r| r.nll_bits_per_dim.is_none()).map(|r| (r.lambda, r.energy_distance)).collect()
    };
    for (file, plot) in [
        (
            "ed_vs_k",
            line(
                "K (sampling steps)",
                "energy distance",
                &by_k_ed,
                &format!("{name}: energy distance against K"),
                true,
            ),
        ),
        ("nll_vs_k", line("K (sampling steps)", "NLL (bits/dim)", &by_k_nll, &format!("{name}: NLL against K"), false)),
        (
            "ed_vs_lambda",
            line(
                "noise scale lambda",
                "energy distance",
                &by_lambda,
                &format!("{name}: energy distance against lambda (K = {})", a.lambda_k),
                true,
            ),
        ),
    ] {
        std::fs::write(a.out_dir.join(format!("{name}_{file}.svg")), plot.to_svg())?;
    }
    Ok(())
}

fn markdown(rows: &[SweepRow], ks: &[usize]) -> String {
    let mut s =
        String::from("| data | K | covariance | energy distance | NLL (bits/dim) |\n| --- | --- | --- | --- | --- |\n");
    for r in rows.iter().filter(|r| r.nll_bits_per_dim.is_some() && ks.contains(&r.k)) {
        s += &format!(
            "| {} | {} | {} | {:.4} | {:.3} |\n",
            r.data,
            r.k,
            r.covariance,
            r.energy_distance,
            r.nll_bits_per_dim.unwrap_or(f64::NAN)
        );
    }
    s
}
