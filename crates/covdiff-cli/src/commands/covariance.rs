//! `covdiff covariance fit`: how well K-DCT describes a dataset's covariance.

use crate::progress::bar;
use anyhow::{ensure, Context, Result};
use covdiff_core::data::DataSource;
use covdiff_core::figure::{save_heatmaps, Labels, Panel};
use covdiff_core::structure::{analyse, figure_views, marginal_covariance};
use covdiff_core::svg::{LinePlot, Series};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Fit Kronecker, DCT and K-DCT structure to the marginal covariance (Fig. 1B, 5, 6).
    Fit(FitArgs),
}

#[derive(clap::Args)]
pub struct FitArgs {
    /// fashion-mnist, idx:<file>, cifar10:<dir or file>, or images:<dir>.
    source: String,
    /// Images are resized to d x d first (the analysis is O((C d^2)^3)).
    #[arg(long, default_value_t = 16)]
    d: usize,
    /// Use at most this many images.
    #[arg(long)]
    limit: Option<usize>,
    /// Number of terms for the rank-n curves.
    #[arg(long, default_value_t = 16)]
    terms: usize,
    /// JSON with all errors and the fitted K-DCT parameters.
    #[arg(long, default_value = "fit.json")]
    out: PathBuf,
    /// PNG laid out like Fig. 1B: top the data's covariance, bottom the K-DCT fit;
    /// columns: vertical midline (all channels), horizontal midline, first channel in full.
    #[arg(long, default_value = "fit.png")]
    plot: PathBuf,
    /// SVG of the error curves, laid out like Fig. 5 (default: the PNG path with .svg).
    #[arg(long)]
    curves: Option<PathBuf>,
}

pub fn run(c: Command) -> Result<()> {
    let Command::Fit(a) = c;
    ensure!((2..=64).contains(&a.d), "--d must be between 2 and 64");
    let src: DataSource = a.source.parse()?;
    let mut set = src.load(a.d)?;
    if let Some(n) = a.limit {
        set.truncate(n);
    }
    ensure!(set.len() >= 2, "need at least two images, {} has {}", src, set.len());
    let set = set.resized(a.d);
    let n = set.dim();
    eprintln!("{}: {} images of {}x{}x{} (n = {n})", src, set.len(), set.channels, a.d, a.d);
    let pb = bar(set.len() as u64, "covariance");
    let sigma = marginal_covariance(&set, |done| pb.set_position(done as u64));
    pb.finish_and_clear();
    eprintln!("fitting structure (eigen-decomposition of a {n}x{n} matrix)...");
    let fit = analyse(&sigma, set.channels, a.d, set.len(), a.terms);

    std::fs::write(&a.out, serde_json::to_string_pretty(&fit)? + "\n")
        .with_context(|| format!("writing {}", a.out.display()))?;

    let views = figure_views(&sigma, set.channels, a.d);
    let model = figure_views(&fit.kdct_dense, set.channels, a.d);
    let labels = Labels::new(
        format!("{src}: covariance, d = {}, K-DCT error {:.4}", a.d, fit.kdct_error),
        vec!["vertical midline".into(), "horizontal midline".into(), "channel 0, all pixels".into()],
    );
    let row_titles = ["data".to_string(), "K-DCT".to_string()];
    save_heatmaps(&a.plot, &[panels(&views), panels(&model)], 240, &labels, &row_titles)
        .with_context(|| format!("writing {}", a.plot.display()))?;

    let curves = a.curves.unwrap_or_else(|| a.plot.with_extension("svg"));
    let pts = |v: &[f64]| v.iter().enumerate().map(|(k, &e)| ((k + 1) as f64, e)).collect::<Vec<_>>();
    let flat = |e: f64| vec![(1.0, e), (a.terms as f64, e)];
    let plot = LinePlot {
        title: format!("{src}: covariance structure (d = {})", a.d),
        x_label: "number of terms n".into(),
        y_label: "normalised squared error".into(),
        log_y: true,
        series: vec![
            Series { name: "colour (x) space".into(), points: pts(&fit.kronecker_errors), dashed: false },
            Series { name: "SVD rank n".into(), points: pts(&fit.svd_errors), dashed: false },
            Series { name: "S: vert (x) horiz".into(), points: pts(&fit.spatial_kronecker_errors), dashed: false },
            Series { name: "S: DCT-diagonal".into(), points: flat(fit.spatial_dct_error), dashed: true },
            Series { name: "K-DCT (full)".into(), points: flat(fit.kdct_error), dashed: true },
        ],
    };
    std::fs::write(&curves, plot.to_svg()).with_context(|| format!("writing {}", curves.display()))?;

    println!("images:                         {}", fit.images);
    println!("colour (x) space, 1 term:       {:.4}", fit.kronecker_errors[0]);
    println!("spatial factor, DCT-diagonal:   {:.4}", fit.spatial_dct_error);
    println!("spatial factor, 1 vert(x)horiz: {:.4}", fit.spatial_kronecker_errors[0]);
    println!("K-DCT model:                    {:.4}", fit.kdct_error);
    for k in [1, 10, fit.svd_errors.len()] {
        println!("SVD rank {k:<3}                    {:.4}", fit.svd_errors[k - 1]);
    }
    println!("wrote {}, {} and {}", a.out.display(), a.plot.display(), curves.display());
    Ok(())
}

fn panels(views: &[(usize, Vec<f64>); 3]) -> Vec<Panel<'_>> {
    views.iter().map(|(k, vals)| Panel { n: *k, values: vals }).collect()
}
