//! `covdiff bench`: timings as medians over repeats, reported as ratios
//! taken within one run (machines are noisy; ratios travel better).

use crate::device::{dispatch, BackendJob, DeviceKind};
use crate::progress::bar;
use anyhow::{ensure, Result};
use burn::tensor::{backend::Backend, Distribution, Tensor};
use covdiff_core::dct::{dct_matrix, separable, Dct2d};
use covdiff_model::{Covariance, Diagonal, KDct, SpatialBasis};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Subcommand)]
pub enum Command {
    /// K-DCT product and sample against diagonal, over image sizes d.
    Covariance(CovArgs),
    /// Fast DCT (rustdct) against matrix DCT (plain loops, and batched burn matmul).
    Dct(DctArgs),
    /// On one UNet and batch: sampling-step time per covariance and training-step time per objective.
    Model(super::bench_model::Args),
    /// covdiff against PyTorch on this machine, in one run: the tiny UNet's sampling and
    /// training steps, its first convolution, and the K-DCT operators (runs scripts/bench_torch.py).
    Compare(super::bench_compare::Args),
    /// One step of each analytic denoiser (optimal, Wiener, patch, mask, ELS) beside the UNet's.
    Denoisers(super::bench_denoise::Args),
}

#[derive(clap::Args)]
pub struct CovArgs {
    /// Image sizes d, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    sizes: Vec<usize>,
    #[arg(long, default_value_t = 3)]
    channels: usize,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Timed repeats per measurement (the median is reported).
    #[arg(long, default_value_t = 7)]
    reps: usize,
    /// Also write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct DctArgs {
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    sizes: Vec<usize>,
    /// Planes per batch for the burn matmul DCT.
    #[arg(long, default_value_t = 48)]
    planes: usize,
    #[arg(long, default_value_t = 7)]
    reps: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(c: Command, device: DeviceKind) -> Result<()> {
    match c {
        Command::Covariance(a) => {
            ensure!(
                !a.sizes.is_empty() && a.sizes.iter().all(|&d| (2..=1024).contains(&d)),
                "--sizes must lie in 2..=1024"
            );
            ensure!(a.reps > 0 && a.batch > 0 && a.channels > 0, "--reps, --batch and --channels must be positive");
            dispatch(device, a)
        }
        Command::Model(a) => dispatch(device, a),
        Command::Compare(a) => dispatch(device, a),
        Command::Denoisers(a) => dispatch(device, a),
        Command::Dct(a) => {
            ensure!(
                !a.sizes.is_empty() && a.sizes.iter().all(|&d| (2..=1024).contains(&d)),
                "--sizes must lie in 2..=1024"
            );
            dispatch(device, a)
        }
    }
}

/// Median wall time of `f` in milliseconds, after one warm-up call.
pub fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Least-squares slope of ln(time) against ln(d).
fn growth(ds: &[usize], ts: &[f64]) -> f64 {
    let x: Vec<f64> = ds.iter().map(|&d| (d as f64).ln()).collect();
    let y: Vec<f64> = ts.iter().map(|t| t.max(1e-9).ln()).collect();
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxy: f64 = x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    if sxx > 0.0 {
        sxy / sxx
    } else {
        f64::NAN
    }
}

/// K-DCT against diagonal at one image size `d`: `E v` and a draw of `N(0, E)` (Eq. 13,
/// Alg. 1), `C` channels, batch `b`, random positive `e`, `lam` and a random `L`.
pub(crate) fn covariance_row<B: Backend>(
    d: usize,
    c: usize,
    b: usize,
    reps: usize,
    device: &B::Device,
) -> Result<CovRow> {
    let uniform = Distribution::Uniform(0.1, 1.0);
    let e = Tensor::<B, 4>::random([b, c, d, d], uniform, device);
    let l = Tensor::<B, 3>::random([b, c, c], Distribution::Normal(0.0, 0.5), device);
    let lam = Tensor::<B, 3>::random([b, d, d], uniform, device);
    let v = Tensor::<B, 4>::random([b, c, d, d], Distribution::Normal(0.0, 1.0), device);
    let diag = Diagonal::new(e.clone());
    let kdct = KDct::new(e, l, lam, SpatialBasis::dct(d, device));
    let time = |f: &dyn Fn() -> Tensor<B, 4>| -> Result<f64> {
        let mut err = Ok(());
        let ms = median_ms(reps, || {
            let _ = f();
            if let Err(e) = B::sync(device) {
                err = Err(anyhow::anyhow!("device error: {e:?}"));
            }
        });
        err.map(|_| ms)
    };
    let dm = time(&|| diag.matvec(v.clone()))?;
    let km = time(&|| kdct.matvec(v.clone()))?;
    let ds = time(&|| diag.sample())?;
    let ks = time(&|| kdct.sample())?;
    Ok(CovRow {
        d,
        diag_matvec_ms: dm,
        kdct_matvec_ms: km,
        matvec_ratio: km / dm,
        diag_sample_ms: ds,
        kdct_sample_ms: ks,
        sample_ratio: ks / ds,
    })
}

#[derive(Serialize)]
pub(crate) struct CovRow {
    pub d: usize,
    pub diag_matvec_ms: f64,
    pub kdct_matvec_ms: f64,
    pub matvec_ratio: f64,
    pub diag_sample_ms: f64,
    pub kdct_sample_ms: f64,
    pub sample_ratio: f64,
}

#[derive(Serialize)]
struct CovReport {
    backend: String,
    channels: usize,
    batch: usize,
    rows: Vec<CovRow>,
    growth_exponent: std::collections::BTreeMap<String, f64>,
}

impl BackendJob for CovArgs {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let (c, b) = (self.channels, self.batch);
        let pb = bar(self.sizes.len() as u64, "sizes");
        let mut rows = Vec::new();
        for &d in &self.sizes {
            rows.push(covariance_row::<B>(d, c, b, self.reps, &device)?);
            pb.inc(1);
        }
        pb.finish_and_clear();
        let ds: Vec<usize> = rows.iter().map(|r| r.d).collect();
        let mut growth_exponent = std::collections::BTreeMap::new();
        for (name, f) in [
            ("diag_matvec", (|r: &CovRow| r.diag_matvec_ms) as fn(&CovRow) -> f64),
            ("kdct_matvec", |r| r.kdct_matvec_ms),
            ("diag_sample", |r| r.diag_sample_ms),
            ("kdct_sample", |r| r.kdct_sample_ms),
        ] {
            growth_exponent.insert(name.to_string(), growth(&ds, &rows.iter().map(f).collect::<Vec<_>>()));
        }
        let report = CovReport { backend: B::name(&device), channels: c, batch: b, rows, growth_exponent };
        println!("covariance operators on {} (C = {c}, batch {b}, median of {} runs, ms)", report.backend, self.reps);
        println!(
            "{:>5} {:>11} {:>11} {:>7} {:>11} {:>11} {:>7}",
            "d", "diag E*v", "kdct E*v", "ratio", "diag samp", "kdct samp", "ratio"
        );
        for r in &report.rows {
            println!(
                "{:>5} {:>11.3} {:>11.3} {:>7.2} {:>11.3} {:>11.3} {:>7.2}",
                r.d,
                r.diag_matvec_ms,
                r.kdct_matvec_ms,
                r.matvec_ratio,
                r.diag_sample_ms,
                r.kdct_sample_ms,
                r.sample_ratio
            );
        }
        // A fit needs two sizes at least.
        if report.rows.len() > 1 {
            println!("growth exponent of time in d (time ~ d^k):");
            for (k, v) in &report.growth_exponent {
                println!("  {k:<12} {v:.2}");
            }
        }
        if let Some(p) = &self.json {
            std::fs::write(p, serde_json::to_string_pretty(&report)? + "\n")?;
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct DctRow {
    d: usize,
    fast_us_per_plane: f64,
    matrix_loops_us_per_plane: f64,
    burn_matmul_us_per_plane: f64,
    loops_over_fast: f64,
    burn_over_fast: f64,
}

impl BackendJob for DctArgs {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let mut rows = Vec::new();
        let pb = bar(self.sizes.len() as u64, "sizes");
        for &d in &self.sizes {
            let plane: Vec<f64> = (0..d * d).map(|i| ((i * 7919) % 101) as f64 / 50.0 - 1.0).collect();
            let dct = Dct2d::new(d);
            let f = dct_matrix(d);
            let mut buf = plane.clone();
            let fast = median_ms(self.reps, || dct.forward(&mut buf)) * 1e3;
            let loops = median_ms(self.reps.min(3), || {
                std::hint::black_box(separable(&f, &plane, &f, d));
            }) * 1e3;
            let basis = SpatialBasis::<B>::dct(d, &device);
            let x = Tensor::<B, 3>::random([self.planes, d, d], Distribution::Normal(0.0, 1.0), &device);
            let burn_ms = median_ms(self.reps, || {
                let _ = basis.forward(x.clone());
                let _ = B::sync(&device);
            });
            let burn_us = burn_ms * 1e3 / self.planes as f64;
            rows.push(DctRow {
                d,
                fast_us_per_plane: fast,
                matrix_loops_us_per_plane: loops,
                burn_matmul_us_per_plane: burn_us,
                loops_over_fast: loops / fast,
                burn_over_fast: burn_us / fast,
            });
            pb.inc(1);
        }
        pb.finish_and_clear();
        println!("2D DCT per d x d plane (median of {} runs, microseconds); burn on {}", self.reps, B::name(&device));
        println!(
            "{:>5} {:>12} {:>14} {:>14} {:>10} {:>10}",
            "d", "fast f64", "matrix loops", "burn matmul", "loops/fast", "burn/fast"
        );
        for r in &rows {
            println!(
                "{:>5} {:>12.2} {:>14.2} {:>14.2} {:>10.1} {:>10.2}",
                r.d,
                r.fast_us_per_plane,
                r.matrix_loops_us_per_plane,
                r.burn_matmul_us_per_plane,
                r.loops_over_fast,
                r.burn_over_fast
            );
        }
        if let Some(p) = &self.json {
            std::fs::write(p, serde_json::to_string_pretty(&rows)? + "\n")?;
        }
        Ok(())
    }
}
