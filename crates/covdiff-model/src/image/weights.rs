//! Weights as safetensors with diffusers' names: the UNet's tensors at the
//! top level exactly as in a diffusers `UNet2DModel` file (`conv_in.weight`,
//! `down_blocks.0.resnets.0.norm1.weight`, torch-layout linear weights), and
//! the covariance heads under `covariance_heads.`. burn-store's PyTorch
//! adapters rename group-norm `gamma`/`beta` and transpose linear weights.

use super::heads::CovarianceHeads;
use crate::unet::UNet;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why weights could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("writing {}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
    #[error("reading {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    /// Tensors missing, left over or of the wrong shape, each named.
    #[error("{} does not fit the model its card describes: {problems}", path.display())]
    Mismatch { path: PathBuf, problems: String },
}

/// An eps-UNet, with covariance heads after stage 2.
#[derive(Module, Debug)]
pub struct Bundle<B: Backend> {
    pub unet: UNet<B>,
    pub covariance_heads: Option<CovarianceHeads<B>>,
}

const UNET_ROOTS: &str =
    "conv_in|time_embedding|class_embedding|down_blocks|mid_block|up_blocks|conv_norm_out|conv_out";

/// Write `bundle` to `path`, with string `metadata` in the safetensors header.
pub fn save<B: Backend>(
    bundle: &Bundle<B>,
    path: &Path,
    metadata: &HashMap<String, String>,
) -> Result<(), WeightsError> {
    let mut store = SafetensorsStore::from_file(path)
        .with_to_adapter(BurnToPyTorchAdapter)
        .with_key_remapping(r"^unet\.", "")
        .overwrite(true);
    for (k, v) in metadata {
        store = store.metadata(k.clone(), v.clone());
    }
    bundle.save_into(&mut store).map_err(|e| WeightsError::Write { path: path.into(), reason: e.to_string() })
}

/// Load weights from `path` into `bundle` (built from the model card). Any tensor missing,
/// left over, or of the wrong shape is an error that names it.
pub fn load<B: Backend>(mut bundle: Bundle<B>, path: &Path) -> Result<Bundle<B>, WeightsError> {
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(PyTorchToBurnAdapter)
        .with_key_remapping(format!(r"^({UNET_ROOTS})\."), "unet.$1.")
        .allow_partial(true)
        .validate(true);
    let result =
        bundle.load_from(&mut store).map_err(|e| WeightsError::Read { path: path.into(), reason: e.to_string() })?;
    let mut problems: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
    problems.extend(result.missing.iter().map(|(p, _)| format!("tensor '{p}' is missing")));
    // Group norms are applied through the adapter's alternative names (`weight` -> `gamma`),
    // yet burn-store still lists the torch names as unused: those are not problems.
    let applied_as = |p: &str| {
        let alt = p
            .strip_suffix(".weight")
            .map(|s| format!("{s}.gamma"))
            .or(p.strip_suffix(".bias").map(|s| format!("{s}.beta")));
        alt.is_some_and(|a| result.applied.contains(&a))
    };
    problems.extend(
        result.unused.iter().filter(|p| !applied_as(p)).map(|p| format!("tensor '{p}' is not part of this model")),
    );
    if problems.is_empty() {
        return Ok(bundle);
    }
    let shown = problems.iter().take(8).cloned().collect::<Vec<_>>().join("; ");
    let more = if problems.len() > 8 { format!(" (and {} more)", problems.len() - 8) } else { String::new() };
    Err(WeightsError::Mismatch { path: path.into(), problems: format!("{shown}{more}") })
}
