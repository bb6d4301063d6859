//! `covdiff export`: a run's EMA weights as safetensors (diffusers names)
//! plus the JSON model card, for `weights/` and the browser.

use super::config::{card_path, read_card, ModelCard};
use crate::device::BackendJob;
use anyhow::{ensure, Context, Result};
use burn::tensor::backend::Backend;
use covdiff_model::image::weights::{self, Bundle};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// A run folder of `covdiff train`, or a weights file with its card beside it.
    #[arg(long)]
    run: PathBuf,
    /// Where to write the weights; the card goes beside them (.json).
    #[arg(long)]
    out: PathBuf,
    /// A JSON file of evaluation results (e.g. from `eval table`) to record in the card's metrics.
    #[arg(long)]
    eval: Option<PathBuf>,
}

/// Write weights and their card (`path` with `.json`).
pub fn write_bundle<B: Backend>(bundle: &Bundle<B>, card: &ModelCard, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut card = card.clone();
    card.weights = path.file_name().and_then(|n| n.to_str()).unwrap_or("model.safetensors").to_string();
    let json = serde_json::to_string_pretty(&card)?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string()), ("covdiff_card".to_string(), json.clone())]);
    weights::save(bundle, path, &meta).map_err(anyhow::Error::msg)?;
    std::fs::write(card_path(path), json + "\n")?;
    Ok(())
}

/// The weights file and card of a run folder or weights path.
pub fn locate(run: &Path) -> Result<(PathBuf, ModelCard)> {
    let weights = if run.is_dir() { run.join("model.safetensors") } else { run.to_path_buf() };
    Ok((weights.clone(), read_card(&weights)?))
}

/// Build the model a card describes and load its weights.
pub fn load_bundle<B: Backend>(weights: &Path, card: &ModelCard, device: &B::Device) -> Result<Bundle<B>> {
    let bundle = Bundle {
        unet: card.unet.try_init::<B>(device)?,
        covariance_heads: card.heads.as_ref().map(|h| h.init(device)),
    };
    weights::load(bundle, weights).map_err(anyhow::Error::msg)
}

impl BackendJob for Args {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        ensure!(self.out.extension().is_some_and(|e| e == "safetensors"), "--out must name a .safetensors file");
        let (weights, mut card) = locate(&self.run)?;
        let bundle = load_bundle::<B>(&weights, &card, &device)?;
        if let Some(p) = &self.eval {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let eval: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))?;
            if !card.metrics.is_object() {
                card.metrics = serde_json::json!({});
            }
            card.metrics["eval"] = eval;
        }
        write_bundle(&bundle, &card, &self.out)?;
        println!("wrote {} and {}", self.out.display(), card_path(&self.out).display());
        Ok(())
    }
}
