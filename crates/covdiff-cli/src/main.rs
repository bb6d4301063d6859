//! `covdiff`: diffusion models with non-diagonal covariance, on the command line.

mod checkpoint;
mod commands;
mod device;
mod progress;
mod training;

use clap::{Parser, Subcommand};
use device::DeviceKind;

#[derive(Parser)]
#[command(name = "covdiff", version, about = "Diffusion models with structured (K-DCT) posterior covariance", long_about = None)]
struct Cli {
    /// Compute device for tensor work: cpu (the default CPU backend, flex), flex, ndarray, wgpu (Vulkan/Metal/DX12) or cuda.
    #[arg(long, global = true, default_value = "cpu")]
    device: DeviceKind,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sample Gaussian free field noise and save it as a PNG grid (and optionally .npy).
    Gff(commands::gff::Args),
    /// Print a noise schedule: t, beta, alpha, abar.
    Schedule(commands::schedule::Args),
    /// Inspect data sources.
    #[command(subcommand)]
    Data(commands::data::Command),
    /// Analyse the covariance structure of a dataset (paper Fig. 1B, 5, 6).
    #[command(subcommand)]
    Covariance(commands::covariance::Command),
    /// Toy 2D diffusion with learned full 2x2 covariance (the anisotropic-covariance thesis).
    #[command(subcommand)]
    Toy2d(commands::toy2d::Command),
    /// Train an eps-UNet (stage 1) or covariance heads on a frozen one (stage 2), from a TOML config.
    Train(commands::image::train::Args),
    /// Sample images in K steps with any covariance (PNG grid; --compare for side by side).
    Sample(commands::image::sample::Args),
    /// Inpaint held-out images: guided posterior sampling with isotropic, diagonal and K-DCT covariance (K-DCT paper A.3).
    Inpaint(commands::image::inpaint::Args),
    /// Evaluate models: NLL in bits/dim by the ELBO, and the table over covariances and K.
    #[command(subcommand)]
    Eval(commands::image::eval::Command),
    /// Train the small classifier whose features define FD, precision and recall.
    Classifier(commands::image::classifier::Args),
    /// Re-export a run's weights (safetensors with diffusers names) and model card, e.g. into weights/.
    Export(commands::image::export::Args),
    /// Import a checkpoint of another library as a covdiff model file (diffusers UNet2DModel).
    #[command(subcommand)]
    Import(commands::image::import::Command),
    /// Analytic denoisers (optimal, Wiener, patch, ELS, mask) beside the trained UNet.
    #[command(subcommand)]
    Denoise(commands::denoise::Command),
    /// Benchmarks: covariance operators (K-DCT against diagonal) and DCTs.
    #[command(subcommand)]
    Bench(commands::bench::Command),
}

/// Keep freed memory for reuse instead of returning it to the system. glibc serves
/// allocations above 128 KiB to 32 MiB (every image-sized tensor) with fresh `mmap`s,
/// and each first touch of their pages faults: measured on the tiny UNet's 3x3
/// convolution (2 cores, a VM), 34 ms with the defaults against 11 ms with this.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() {
    tune_allocator();
    let cli = Cli::parse();
    let result = covdiff_model::kernels::on_workers(|| match cli.command {
        Command::Gff(a) => commands::gff::run(a),
        Command::Schedule(a) => commands::schedule::run(a),
        Command::Data(c) => commands::data::run(c),
        Command::Covariance(c) => commands::covariance::run(c, cli.device),
        Command::Toy2d(c) => commands::toy2d::run(c, cli.device),
        Command::Bench(c) => commands::bench::run(c, cli.device),
        Command::Denoise(c) => commands::denoise::run(c, cli.device),
        Command::Train(a) => device::dispatch(cli.device, a),
        Command::Sample(a) => device::dispatch(cli.device, a),
        Command::Inpaint(a) => device::dispatch(cli.device, a),
        Command::Eval(c) => commands::image::eval::run(c, cli.device),
        Command::Export(a) => device::dispatch(cli.device, a),
        Command::Import(c) => commands::image::import::run(c, cli.device),
        Command::Classifier(a) => device::dispatch(cli.device, a),
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
