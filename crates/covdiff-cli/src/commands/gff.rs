//! `covdiff gff`: Gaussian free field noise previews.

use anyhow::{ensure, Context, Result};
use covdiff_core::{figure, gff::Gff, npy};
use rand::{rngs::StdRng, SeedableRng};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Side of each square sample, in pixels.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Power of the spectrum, w_k = |k|^-gamma (0 is white noise).
    #[arg(long, default_value_t = 1.0)]
    gamma: f64,
    /// Number of samples.
    #[arg(long, default_value_t = 16)]
    n: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// PNG grid to write (values shown over +-3 standard deviations).
    #[arg(long, default_value = "gff.png")]
    out: PathBuf,
    /// Also write the raw samples as a NumPy array [n, size, size].
    #[arg(long)]
    raw: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    ensure!(a.n > 0 && a.size > 0, "--n and --size must be positive");
    ensure!(a.size <= 4096, "--size {} is too large (at most 4096)", a.size);
    let gff = Gff::new(a.size, a.gamma).map_err(anyhow::Error::msg)?;
    let mut rng = StdRng::seed_from_u64(a.seed);
    let samples: Vec<f32> = (0..a.n).flat_map(|_| gff.sample(&mut rng)).map(|x| x as f32).collect();
    let shown: Vec<f32> = samples.iter().map(|x| x / 3.0).collect();
    let cols = (a.n as f64).sqrt().ceil() as usize;
    let scale = (128 / a.size).max(1);
    let labels = figure::Labels::new(
        format!("GFF noise, gamma {}, {}x{} (grey scale: -3 to +3 sd)", a.gamma, a.size, a.size),
        Vec::new(),
    );
    figure::save_grid(&a.out, &shown, 1, a.size, cols, scale, &labels)
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!("wrote {} GFF samples ({}x{}, gamma {}) to {}", a.n, a.size, a.size, a.gamma, a.out.display());
    if let Some(raw) = a.raw {
        npy::write_f32(&raw, &[a.n, a.size, a.size], &samples).with_context(|| format!("writing {}", raw.display()))?;
        println!("wrote raw samples to {}", raw.display());
    }
    Ok(())
}
