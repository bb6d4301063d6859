//! `covdiff eval`: NLL in bits/dim by the K-step ELBO (exact Cholesky or
//! stochastic Lanczos log-determinants), and the table over covariances and K.

use super::config::{load_images, ModelCard};
use super::models::{Column, Dyn, Models};
use crate::device::{dispatch, BackendJob, DeviceKind};
use crate::progress::bar;
use anyhow::{bail, ensure, Context, Result};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use covdiff_core::data::ImageSet;
use covdiff_core::likelihood::bits_per_dim;
use covdiff_core::trajectory::{Spacing, Trajectory};
use covdiff_model::image::{Elbo, ElboTerms, LogDet};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum Command {
    /// NLL (bits/dim) of held-out images for each covariance at one K.
    Nll(NllArgs),
    /// NLL for each covariance at K = 10, 25, 50, as Markdown and JSON.
    Table(TableArgs),
}

pub fn run(c: Command, device: DeviceKind) -> Result<()> {
    match c {
        Command::Nll(a) => dispatch(device, a),
        Command::Table(a) => dispatch(device, a),
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
    /// Images to evaluate.
    #[arg(long, default_value_t = 256)]
    n: usize,
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

fn held_out(card: &ModelCard, data: &Option<String>, n: usize) -> Result<ImageSet> {
    let source = match data {
        Some(s) => s.clone(),
        None if card.data.source == "fashion-mnist" => {
            let dir = std::env::var("COVDIFF_FASHION_MNIST").unwrap_or_else(|_| covdiff_core::data::FASHION_MNIST_DIR.into());
            format!("idx:{dir}/t10k-images-idx3-ubyte.gz")
        }
        None => card.data.source.clone(),
    };
    let mut set = load_images(&source, card.size, n)?;
    ensure!(
        (set.channels, set.size) == (card.channels, card.size),
        "{source} holds {}x{}x{} images, the model wants {}x{}x{}",
        set.channels,
        set.size,
        set.size,
        card.channels,
        card.size,
        card.size
    );
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

    /// Mean NLL terms (bits/dim) of each covariance at each K: `[k][covariance] -> (total, prior, transitions, decoder)`.
    fn evaluate<B: Backend>(&self, ks: &[usize], device: &B::Device) -> Result<Vec<Vec<[f64; 4]>>> {
        ensure!(self.n > 0 && self.batch > 0, "--n and --batch must be positive");
        let models = Models::<B>::load(&self.weights, device)?;
        let card = &models.cards[0];
        ensure!(card.noise.kind == "white", "NLL is implemented for white forward noise only, not NI-DDPM's GFF");
        let method = self.method()?;
        let n = card.channels * card.size * card.size;
        if method == LogDet::Exact && n > 4096 {
            bail!("n = {n} is too large for dense Cholesky: use --logdet lanczos");
        }
        let columns: Vec<Column> = self.covariances.iter().map(|c| models.column(c)).collect::<Result<_>>()?;
        let set = held_out(card, &self.data, self.n)?;
        let shape_of = |b: usize| [b, set.channels, set.size, set.size];
        let pb = bar((ks.len() * columns.len() * set.len().div_ceil(self.batch)) as u64, "ELBO");
        let mut out = Vec::new();
        for &k in ks {
            let trajectory = Trajectory::new(models.table.steps(), k, Spacing::Even).map_err(anyhow::Error::msg)?;
            let mut row = Vec::new();
            for &column in &columns {
                B::seed(device, self.seed);
                let mut sums = [0.0; 4];
                for start in (0..set.len()).step_by(self.batch) {
                    let b = self.batch.min(set.len() - start);
                    let px = set.pixels[start * n..(start + b) * n].to_vec();
                    let x0 = Tensor::<B, 4>::from_data(TensorData::new(px, shape_of(b)), device);
                    let terms: ElboTerms = models
                        .with_denoiser(column, |den, variance| {
                            Elbo { table: &models.table, trajectory: &trajectory, variance, logdet: method }
                                .terms(&Dyn(den), x0)
                        })?
                        .map_err(anyhow::Error::msg)?;
                    let total = terms.total();
                    for i in 0..b {
                        for (acc, v) in sums.iter_mut().zip([total[i], terms.prior[i], terms.transitions[i], terms.decoder[i]]) {
                            *acc += bits_per_dim(v, n);
                        }
                    }
                    pb.inc(1);
                }
                ensure!(sums[0].is_finite(), "the ELBO of {column:?} at K = {k} is not finite");
                row.push(sums.map(|s| s / set.len() as f64));
            }
            out.push(row);
        }
        pb.finish_and_clear();
        Ok(out)
    }
}

impl BackendJob for NllArgs {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let res = self.eval.evaluate::<B>(&[self.steps], &device)?;
        println!("K = {}, {} images, logdet {}:", self.steps, self.eval.n, self.eval.logdet);
        println!("{:>14} {:>10} {:>10} {:>12} {:>10}", "covariance", "NLL", "prior", "transitions", "decoder");
        for (name, [t, p, tr, d]) in self.eval.covariances.iter().zip(&res[0]) {
            println!("{name:>14} {t:>10.4} {p:>10.4} {tr:>12.4} {d:>10.4}");
        }
        println!("(bits/dim)");
        Ok(())
    }
}

impl BackendJob for TableArgs {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        ensure!(!self.ks.is_empty(), "--ks is empty");
        let res = self.eval.evaluate::<B>(&self.ks, &device)?;
        let mut md = String::from("NLL (bits/dim) by the K-step ELBO\n\n| covariance |");
        for k in &self.ks {
            write!(md, " K = {k} |")?;
        }
        md.push_str("\n|---|");
        md.push_str(&"---|".repeat(self.ks.len()));
        md.push('\n');
        let mut json = Vec::new();
        for (j, name) in self.eval.covariances.iter().enumerate() {
            write!(md, "| {name} |")?;
            for (i, k) in self.ks.iter().enumerate() {
                let [t, p, tr, d] = res[i][j];
                write!(md, " {t:.4} |")?;
                json.push(serde_json::json!({
                    "covariance": name, "k": k, "nll_bpd": t, "prior_bpd": p, "transitions_bpd": tr, "decoder_bpd": d,
                    "images": self.eval.n, "logdet": self.eval.logdet,
                }));
            }
            md.push('\n');
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
