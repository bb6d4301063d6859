//! `covdiff covariance`:
//! - `fit`: how well K-DCT describes a dataset's covariance;
//! - `true`: the true posterior covariance of a trained eps-UNet, against its learnt heads.

use crate::device::{dispatch, DeviceKind};
use crate::progress::bar;
use anyhow::{ensure, Context, Result};
use covdiff_core::data::DataSource;
use covdiff_core::figure::{save_heatmaps, Labels, Panel};
use covdiff_core::structure::{analyse, figure_views, marginal_covariance, spectrum};
use covdiff_core::svg::{LinePlot, Series};
use nalgebra::DMatrix;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Fit Kronecker, DCT and K-DCT structure to the marginal covariance (Fig. 1B, 5, 6).
    Fit(FitArgs),
    /// The true posterior covariance E_t = I - sqrt(bbar) J of a trained eps-UNet, from its
    /// Jacobian by autodiff, against the learnt K-DCT and diagonal E_t and the best isotropic one
    /// (K-DCT paper Fig. 1C, 7, 10).
    True(super::true_covariance::Args),
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

pub fn run(c: Command, device: DeviceKind) -> Result<()> {
    match c {
        Command::Fit(a) => fit(a),
        Command::True(a) => dispatch(device, a),
    }
}

fn fit(a: FitArgs) -> Result<()> {
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

/// Covariance matrices of one image at one `t`, for [`write_comparison`]: the first is the
/// reference, the others its approximations; `slices` of them (by index) are drawn as images.
pub(crate) struct Comparison<'a> {
    /// What the matrices are, as `Cov[x0 | x_t]`.
    pub what: &'a str,
    /// Whose the reference is, for the titles.
    pub source: &'a str,
    pub matrices: Vec<(String, &'a DMatrix<f64>)>,
    pub slices: Vec<usize>,
    pub channels: usize,
    pub size: usize,
}

/// Writes `spectrum-t{t}.svg` (every matrix's eigenvalues, largest first, log scale, down to
/// 1e-6 of the reference's largest) and `covariance-t{t}.png` (midline and full-plane slices, a
/// row per drawn matrix) into `dir`; `note` ends the PNG's title. Returns the reference's
/// eigenvalues, largest first.
pub(crate) fn write_comparison(dir: &Path, t: usize, cmp: &Comparison<'_>, note: &str) -> Result<Vec<f64>> {
    let Some((_, reference)) = cmp.matrices.first() else { return Ok(Vec::new()) };
    let mut spectra: Vec<Vec<f64>> = cmp.matrices.iter().map(|(_, m)| spectrum(m)).collect();
    let floor = spectra[0].first().copied().unwrap_or(0.0).max(0.0) * 1e-6;
    let plot = LinePlot {
        title: format!("eigenvalues of {}, t = {t} (trace {:.3})", cmp.what, reference.trace()),
        x_label: "index (largest first)".into(),
        y_label: "eigenvalue".into(),
        log_y: true,
        series: cmp
            .matrices
            .iter()
            .zip(&spectra)
            .enumerate()
            .map(|(k, ((name, _), ev))| Series {
                name: name.clone(),
                points: ev.iter().enumerate().filter(|(_, &v)| v > floor).map(|(i, &v)| ((i + 1) as f64, v)).collect(),
                dashed: k > 0,
            })
            .collect(),
    };
    let svg = dir.join(format!("spectrum-t{t}.svg"));
    std::fs::write(&svg, plot.to_svg()).with_context(|| format!("writing {}", svg.display()))?;
    let views: Vec<[(usize, Vec<f64>); 3]> =
        cmp.slices.iter().map(|&k| figure_views(cmp.matrices[k].1, cmp.channels, cmp.size)).collect();
    let rows: Vec<Vec<Panel<'_>>> = views.iter().map(panels).collect();
    let titles: Vec<String> = cmp.slices.iter().map(|&k| cmp.matrices[k].0.clone()).collect();
    let labels = Labels::new(
        format!("{} of {}, t = {t}; {note}", cmp.what, cmp.source),
        vec!["vertical midline".into(), "horizontal midline".into(), "channel 0, all pixels".into()],
    );
    let png = dir.join(format!("covariance-t{t}.png"));
    save_heatmaps(&png, &rows, 240, &labels, &titles).with_context(|| format!("writing {}", png.display()))?;
    Ok(spectra.swap_remove(0))
}
