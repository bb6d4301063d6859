//! `covdiff eval gaussian`: the Gaussian exactness table (docs/RESULTS.md), a thin shell over
//! `covdiff_model::image::exactness`.

use crate::device::BackendJob;
use anyhow::{ensure, Result};
use covdiff_core::gaussian::DctGaussian;
use covdiff_core::schedule::{Linear, Schedule};
use covdiff_model::image::exactness::{gaussian_exactness, Exactness};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct GaussianArgs {
    /// Image size d (d x d, grey and RGB).
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Step counts K, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,5,10")]
    ks: Vec<usize>,
    /// Samples per sampler and K (and exact draws for the floor).
    #[arg(long, default_value_t = 10_000)]
    n: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output stem: <out>.md and <out>.json.
    #[arg(long, default_value = "gaussian-exactness")]
    out: PathBuf,
}

/// The two datasets: grey, and RGB with the rank-one colour covariance `u u^T`; both with the
/// power-law DCT spectrum `2 / (1 + |k|^2)`.
fn datasets(d: usize) -> Result<Vec<(String, DctGaussian)>> {
    let u = [0.8, 0.55, 0.25];
    let rank_one: Vec<f64> = (0..9).map(|i| if i % 3 == 0 { u[i / 3] } else { 0.0 }).collect();
    Ok(vec![
        (format!("grey {d}x{d}"), DctGaussian::power_law(&[1.0], 1, d, 2.0, 1.0)?),
        (
            format!("RGB {d}x{d}, colour covariance u u^T, u = {u:?}"),
            DctGaussian::power_law(&rank_one, 3, d, 2.0, 1.0)?,
        ),
    ])
}

fn markdown(tables: &[Exactness]) -> String {
    let mut s = String::new();
    for t in tables {
        let _ = writeln!(
            s,
            "**{}**, {} samples per cell; relative Frobenius error of the second moment\n",
            t.data, t.samples
        );
        let ks: Vec<String> = t.ks.iter().map(|k| format!("K = {k}")).collect();
        let _ = writeln!(s, "| covariance | {} |", ks.join(" | "));
        let _ = writeln!(s, "|---|{}", "---:|".repeat(t.ks.len()));
        for r in &t.rows {
            let e: Vec<String> = r.errors.iter().map(|e| format!("{e:.4}")).collect();
            let _ = writeln!(s, "| {} | {} |", r.covariance, e.join(" | "));
        }
        let floor = vec![format!("{:.4}", t.floor); t.ks.len()];
        let _ = writeln!(s, "| Monte Carlo floor (exact draws) | {} |\n", floor.join(" | "));
    }
    s
}

impl BackendJob for GaussianArgs {
    type Output = ();
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Result<()> {
        ensure!(self.size >= 2 && self.n > 0, "--size must be at least 2 and --n positive");
        ensure!(self.ks.iter().all(|&k| (1..=1000).contains(&k)), "every K must lie in 1..=1000");
        let table = Linear::default().table();
        let mut tables = Vec::new();
        for (name, data) in datasets(self.size)? {
            eprintln!("{name}: beta-tilde, diagonal and K-DCT at {} K, {} samples each ...", self.ks.len(), self.n);
            tables.push(gaussian_exactness::<B>(&data, &name, &table, &self.ks, self.n, self.seed, &device)?);
        }
        let md = markdown(&tables);
        print!("{md}");
        std::fs::write(self.out.with_extension("md"), &md)?;
        std::fs::write(self.out.with_extension("json"), serde_json::to_string_pretty(&tables)?)?;
        eprintln!(
            "wrote {} and {}",
            self.out.with_extension("md").display(),
            self.out.with_extension("json").display()
        );
        Ok(())
    }
}
