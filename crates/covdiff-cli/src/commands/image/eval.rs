//! `covdiff eval`: NLL in bits/dim by the K-step ELBO (exact Cholesky or
//! stochastic Lanczos log-determinants), and the table over covariances and K.

use super::classifier::Features;
use super::config::{load_for_card, ModelCard};
use super::models::{Column, Models, SampleOptions};
use crate::device::{dispatch, BackendJob, DeviceKind};
use crate::progress::bar;
use anyhow::{bail, ensure, Context, Result};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use covdiff_core::data::ImageSet;
use covdiff_core::likelihood::bits_per_dim;
use covdiff_core::metrics::{frechet_distance, precision_recall};
use covdiff_core::trajectory::{Spacing, Trajectory};
use covdiff_model::diffusion::{initial_noise, Decoder, Elbo, ElboTerms, LogDet};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum Command {
    /// NLL (bits/dim) of held-out images for each covariance at one K.
    Nll(NllArgs),
    /// FD, precision and recall of samples in a covdiff classifier's features, at one K.
    Fd(NllArgs),
    /// NLL (and FD with --classifier) for each covariance at K = 10, 25, 50, as Markdown and JSON.
    Table(TableArgs),
    /// Gaussian exactness: on DCT-diagonal Gaussian data with the exact denoiser, the samplers'
    /// second-moment error for beta-tilde, the exact diagonal and exact K-DCT, against the Monte
    /// Carlo floor.
    Gaussian(super::exactness::GaussianArgs),
}

pub fn run(c: Command, device: DeviceKind) -> Result<()> {
    match c {
        Command::Nll(a) => dispatch(device, a),
        Command::Fd(a) => dispatch(device, FdArgs(a)),
        Command::Table(a) => dispatch(device, a),
        Command::Gaussian(a) => dispatch(device, a),
    }
}

#[derive(clap::Args, Clone)]
pub struct EvalData {
    /// Model weights (repeat for several heads on the same eps-UNet).
    #[arg(long, required = true)]
    weights: Vec<PathBuf>,
    /// Covariances, comma-separated: beta, beta-tilde, and loaded heads (diag, kdct, ...).
    #[arg(long, value_delimiter = ',', default_value = "beta,beta-tilde")]
    covariances: Vec<String>,
    /// Held-out images; by default Fashion-MNIST's test set for Fashion-MNIST models, else the training source.
    #[arg(long)]
    data: Option<String>,
    /// Images for the NLL (0 skips it).
    #[arg(long, default_value_t = 256)]
    n: usize,
    /// A classifier from `covdiff classifier` (<stem>.mpk): adds FD, precision and recall.
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// Samples per covariance for FD (and as many held-out images).
    #[arg(long, default_value_t = 500)]
    fd_samples: usize,
    /// Sampling options for FD (the step count comes from --steps or --ks).
    #[command(flatten)]
    sampling: SampleOptions,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// exact (Cholesky of the dense n x n covariance) or lanczos (stochastic, structured products only).
    #[arg(long, default_value = "exact")]
    logdet: String,
    /// Rademacher probes per image for lanczos.
    #[arg(long, default_value_t = 4)]
    probes: usize,
    /// Lanczos iterations.
    #[arg(long, default_value_t = 30)]
    lanczos_steps: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(clap::Args)]
pub struct NllArgs {
    #[command(flatten)]
    eval: EvalData,
    #[arg(long, default_value_t = 10)]
    steps: usize,
}

#[derive(clap::Args)]
pub struct TableArgs {
    #[command(flatten)]
    eval: EvalData,
    #[arg(long, value_delimiter = ',', default_value = "10,25,50")]
    ks: Vec<usize>,
    /// Output stem: <out>.md and <out>.json.
    #[arg(long, default_value = "eval-table")]
    out: PathBuf,
}

pub(crate) fn held_out(card: &ModelCard, data: &Option<String>, n: usize) -> Result<ImageSet> {
    let source = match data {
        Some(s) => s.clone(),
        None if card.data.source == "fashion-mnist" => {
            let dir =
                std::env::var("COVDIFF_FASHION_MNIST").unwrap_or_else(|_| covdiff_core::data::FASHION_MNIST_DIR.into());
            format!("idx:{dir}/t10k-images-idx3-ubyte.gz")
        }
        None => card.data.source.clone(),
    };
    let mut set = load_for_card(&source, card, n)?;
    // The decoder is for 8-bit data: put resized pixels back on the 8-bit grid.
    for p in &mut set.pixels {
        *p = ((*p + 1.0) * 127.5).round().clamp(0.0, 255.0) / 127.5 - 1.0;
    }
    Ok(set)
}

impl EvalData {
    fn method(&self) -> Result<LogDet> {
        Ok(match self.logdet.as_str() {
            "exact" => LogDet::Exact,
            "lanczos" => {
                ensure!(self.probes > 0 && self.lanczos_steps > 0, "--probes and --lanczos-steps must be positive");
                LogDet::Lanczos { probes: self.probes, steps: self.lanczos_steps }
            }
            m => bail!("unknown --logdet '{m}' (expected exact or lanczos)"),
        })
    }

    /// For each K and covariance: the mean NLL terms in bits/dim `(total, prior, transitions, decoder)`
    /// when `nll`, and `(FD, precision, recall)` when `fd`.
    fn evaluate<B: Backend>(&self, ks: &[usize], nll: bool, fd: bool, device: &B::Device) -> Result<Vec<Vec<Cell>>> {
        ensure!(self.batch > 0, "--batch must be positive");
        ensure!(!nll || self.n > 0, "--n must be positive");
        let models = Models::<B>::load(&self.weights, device)?;
        let card = &models.cards[0];
        let method = self.method()?;
        let n = card.channels * card.size * card.size;
        if nll {
            ensure!(
                method != LogDet::Exact || n <= 4096,
                "n = {n} is too large for dense Cholesky: use --logdet lanczos"
            );
        }
        let features = match (&self.classifier, fd) {
            (Some(p), true) => Some(Features::<B>::load(p, device)?),
            (None, true) => bail!("FD needs --classifier (train one with `covdiff classifier`)"),
            _ => None,
        };
        if let Some(f) = &features {
            ensure!(
                f.card.size == card.size && f.card.config.channels == card.channels,
                "the classifier was trained on other image sizes"
            );
            ensure!(self.fd_samples >= 2, "--fd-samples must be at least 2");
        }
        let columns: Vec<Column> = self.covariances.iter().map(|c| models.column(c)).collect::<Result<_>>()?;
        let set = held_out(card, &self.data, self.n.max(if fd { self.fd_samples } else { 0 }))?;
        let shape_of = |b: usize| [b, set.channels, set.size, set.size];
        let real = match &features {
            Some(f) => {
                let m = self.fd_samples.min(set.len());
                Some(f.of(&set.pixels[..m * n], [set.channels, set.size, set.size], device)?)
            }
            None => None,
        };
        let nll_images = if nll { self.n.min(set.len()) } else { 0 };
        let per_cell = nll_images.div_ceil(self.batch) + if fd { self.fd_samples.div_ceil(self.batch) } else { 0 };
        let pb = bar((ks.len() * columns.len() * per_cell) as u64, "evaluating");
        let mut out = Vec::new();
        for &k in ks {
            let trajectory = Trajectory::new(models.table.steps(), k, Spacing::Even).map_err(anyhow::Error::msg)?;
            let mut row = Vec::new();
            for &column in &columns {
                let mut cell = Cell::default();
                if nll {
                    covdiff_model::normals::seed::<B>(device, self.seed);
                    let mut sums = [0.0; 4];
                    for start in (0..nll_images).step_by(self.batch) {
                        let b = self.batch.min(nll_images - start);
                        let px = set.pixels[start * n..(start + b) * n].to_vec();
                        let x0 = Tensor::<B, 4>::from_data(TensorData::new(px, shape_of(b)), device);
                        let (den, variance) = models.denoiser(column)?;
                        let terms: ElboTerms = Elbo {
                            table: &models.table,
                            trajectory: &trajectory,
                            variance,
                            logdet: method,
                            decoder: Decoder::Discretized8Bit,
                            noise: &models.noise,
                        }
                        .terms(den, x0)
                        .map_err(anyhow::Error::msg)?;
                        let total = terms.total();
                        for (i, total) in total.iter().enumerate() {
                            let t = [*total, terms.prior[i], terms.transitions[i], terms.decoder[i]];
                            for (acc, v) in sums.iter_mut().zip(t) {
                                *acc += bits_per_dim(v, n);
                            }
                        }
                        pb.inc(1);
                    }
                    ensure!(sums[0].is_finite(), "the ELBO of {column:?} at K = {k} is not finite");
                    cell.nll = Some(sums.map(|s| s / nll_images as f64));
                }
                if let (Some(f), Some(real)) = (&features, &real) {
                    covdiff_model::normals::seed::<B>(device, self.seed);
                    let mut fake = Vec::with_capacity(self.fd_samples * f.dim());
                    for start in (0..self.fd_samples).step_by(self.batch) {
                        let b = self.batch.min(self.fd_samples - start);
                        let x_t = initial_noise::<B>(shape_of(b), &models.noise, device);
                        let x = models.sample(column, &self.sampling, k, x_t)?.clamp(-1.0, 1.0);
                        let px: Vec<f32> =
                            x.into_data().convert::<f32>().to_vec().map_err(|e| anyhow::anyhow!("{e:?}"))?;
                        fake.extend(f.of(&px, [set.channels, set.size, set.size], device)?);
                        pb.inc(1);
                    }
                    let fdv = frechet_distance(real, &fake, f.dim());
                    let (p, r) = precision_recall(real, &fake, f.dim(), 3);
                    cell.fd = Some([fdv, p, r]);
                }
                row.push(cell);
            }
            out.push(row);
        }
        pb.finish_and_clear();
        Ok(out)
    }
}

/// A table section: title, whether it is on, and the value it shows.
type Section = (String, bool, fn(&Cell) -> Option<f64>);

/// One covariance at one K.
#[derive(Clone, Copy, Debug, Default)]
struct Cell {
    nll: Option<[f64; 4]>,
    fd: Option<[f64; 3]>,
}

impl BackendJob for NllArgs {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let res = self.eval.evaluate::<B>(&[self.steps], true, false, &device)?;
        println!("K = {}, {} images, logdet {}:", self.steps, self.eval.n, self.eval.logdet);
        println!("{:>14} {:>10} {:>10} {:>12} {:>10}", "covariance", "NLL", "prior", "transitions", "decoder");
        for (name, cell) in self.eval.covariances.iter().zip(&res[0]) {
            let [t, p, tr, d] = cell.nll.expect("computed");
            println!("{name:>14} {t:>10.4} {p:>10.4} {tr:>12.4} {d:>10.4}");
        }
        println!("(bits/dim)");
        Ok(())
    }
}

/// `eval fd` takes the same arguments as `eval nll`.
pub struct FdArgs(NllArgs);

impl BackendJob for FdArgs {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let a = self.0;
        let res = a.eval.evaluate::<B>(&[a.steps], false, true, &device)?;
        println!("K = {}, {} samples against as many held-out images:", a.steps, a.eval.fd_samples);
        println!("{:>14} {:>10} {:>10} {:>10}", "covariance", "FD", "precision", "recall");
        for (name, cell) in a.eval.covariances.iter().zip(&res[0]) {
            let [f, p, r] = cell.fd.expect("computed");
            println!("{name:>14} {f:>10.4} {p:>10.3} {r:>10.3}");
        }
        Ok(())
    }
}

impl BackendJob for TableArgs {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        ensure!(!self.ks.is_empty(), "--ks is empty");
        let nll = self.eval.n > 0;
        let fd = self.eval.classifier.is_some();
        ensure!(nll || fd, "nothing to evaluate: --n is 0 and there is no --classifier");
        let res = self.eval.evaluate::<B>(&self.ks, nll, fd, &device)?;
        let mut md = String::new();
        let mut json = Vec::new();
        let (n, m) = (self.eval.n, self.eval.fd_samples);
        let logdet = &self.eval.logdet;
        let sections: [Section; 4] = [
            (format!("NLL (bits/dim) by the K-step ELBO, {n} test images, {logdet} log-determinants"), nll, |c| {
                c.nll.map(|v| v[0])
            }),
            (
                format!("FD in the classifier's features (lower is better), {m} samples against {m} test images"),
                fd,
                |c| c.fd.map(|v| v[0]),
            ),
            ("Precision (k = 3 nearest neighbours; higher is better)".into(), fd, |c| c.fd.map(|v| v[1])),
            ("Recall (k = 3 nearest neighbours; higher is better)".into(), fd, |c| c.fd.map(|v| v[2])),
        ];
        for (title, on, value) in sections {
            if !on {
                continue;
            }
            write!(md, "{title}\n\n| covariance |")?;
            for k in &self.ks {
                write!(md, " K = {k} |")?;
            }
            md.push_str("\n|---|");
            md.push_str(&"---|".repeat(self.ks.len()));
            md.push('\n');
            for (j, name) in self.eval.covariances.iter().enumerate() {
                write!(md, "| {name} |")?;
                for row in &res {
                    write!(md, " {:.4} |", value(&row[j]).unwrap_or(f64::NAN))?;
                }
                md.push('\n');
            }
            md.push('\n');
        }
        for (i, k) in self.ks.iter().enumerate() {
            for (j, name) in self.eval.covariances.iter().enumerate() {
                let c = res[i][j];
                json.push(serde_json::json!({
                    "covariance": name, "k": k,
                    "nll_bpd": c.nll.map(|v| v[0]), "prior_bpd": c.nll.map(|v| v[1]),
                    "transitions_bpd": c.nll.map(|v| v[2]), "decoder_bpd": c.nll.map(|v| v[3]),
                    "fd": c.fd.map(|v| v[0]), "precision": c.fd.map(|v| v[1]), "recall": c.fd.map(|v| v[2]),
                    "nll_images": self.eval.n, "fd_samples": if fd { self.eval.fd_samples } else { 0 },
                    "logdet": self.eval.logdet,
                }));
            }
        }
        let md_path = self.out.with_extension("md");
        let json_path = self.out.with_extension("json");
        std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
        std::fs::write(&json_path, serde_json::to_string_pretty(&json)? + "\n")?;
        print!("{md}");
        println!("wrote {} and {}", md_path.display(), json_path.display());
        Ok(())
    }
}
