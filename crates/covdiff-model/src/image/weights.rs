//! Weights as safetensors with diffusers' names: the UNet's tensors at the
//! top level exactly as in a diffusers `UNet2DModel` file (`conv_in.weight`,
//! `down_blocks.0.resnets.0.norm1.weight`, torch-layout linear weights), and
//! the covariance heads under `covariance_heads.`. burn-store's PyTorch
//! adapters rename group-norm `gamma`/`beta` and transpose linear weights. Reading takes bytes
//! (the browser fetches them); natively, files are read into bytes first.

use super::heads::CovarianceHeads;
use crate::unet::UNet;
use burn::module::Module;
use burn::tensor::backend::Backend;
#[cfg(not(target_arch = "wasm32"))]
use burn_store::BurnToPyTorchAdapter;
use burn_store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
#[cfg(not(target_arch = "wasm32"))]
use std::collections::HashMap;

/// Why weights could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("writing {origin}: {reason}")]
    Write { origin: String, reason: String },
    #[error("reading {origin}: {reason}")]
    Read { origin: String, reason: String },
    /// Tensors missing, left over or of the wrong shape, each named.
    #[error("{origin} does not fit the model its card describes: {problems}")]
    Mismatch { origin: String, problems: String },
}

/// An eps-UNet, with covariance heads after stage 2.
#[derive(Module, Debug)]
pub struct Bundle<B: Backend> {
    pub unet: UNet<B>,
    pub covariance_heads: Option<CovarianceHeads<B>>,
}

/// The heads as the file names them (`covariance_heads.` and their own paths), so that they
/// load with no key remapping (burn-store remaps by regex, natively only).
#[derive(Module, Debug)]
struct HeadsFile<B: Backend> {
    covariance_heads: CovarianceHeads<B>,
}

const HEADS_PREFIX: &str = "covariance_heads.";

/// Write `bundle` to `path`, with string `metadata` in the safetensors header.
#[cfg(not(target_arch = "wasm32"))]
pub fn save<B: Backend>(
    bundle: &Bundle<B>,
    path: &std::path::Path,
    metadata: &HashMap<String, String>,
) -> Result<(), WeightsError> {
    let mut store = SafetensorsStore::from_file(path)
        .with_to_adapter(BurnToPyTorchAdapter)
        .with_key_remapping(r"^unet\.", "")
        .overwrite(true);
    for (k, v) in metadata {
        store = store.metadata(k.clone(), v.clone());
    }
    bundle
        .save_into(&mut store)
        .map_err(|e| WeightsError::Write { origin: path.display().to_string(), reason: e.to_string() })
}

/// Load weights from the file at `path` into `bundle`; see [`load_bytes`].
#[cfg(not(target_arch = "wasm32"))]
pub fn load<B: Backend>(bundle: Bundle<B>, path: &std::path::Path) -> Result<Bundle<B>, WeightsError> {
    let origin = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| WeightsError::Read { origin: origin.clone(), reason: e.to_string() })?;
    load_bytes(bundle, bytes, &origin)
}

/// Load weights from the bytes of a safetensors file into `bundle` (built from the model card),
/// in the browser as natively: the UNet from the top-level names, the heads from
/// `covariance_heads.`. Any tensor missing, left over, or of the wrong shape is an error that
/// names it; `origin` names the bytes in messages.
pub fn load_bytes<B: Backend>(bundle: Bundle<B>, bytes: Vec<u8>, origin: &str) -> Result<Bundle<B>, WeightsError> {
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true)
        .validate(true);
    let read = |e: &dyn std::fmt::Display| WeightsError::Read { origin: origin.into(), reason: e.to_string() };
    let Bundle { mut unet, covariance_heads } = bundle;
    let has_heads = covariance_heads.is_some();
    let result = unet.load_from(&mut store).map_err(|e| read(&e))?;
    // Group norms are applied through the adapter's alternative names (`weight` -> `gamma`),
    // yet burn-store still lists the torch names as unused: those are not problems.
    let applied_as = |p: &str| {
        let alt = p
            .strip_suffix(".weight")
            .map(|s| format!("{s}.gamma"))
            .or(p.strip_suffix(".bias").map(|s| format!("{s}.beta")));
        alt.is_some_and(|a| result.applied.contains(&a))
    };
    let mut problems: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
    problems.extend(result.missing.iter().map(|(p, _)| format!("tensor '{p}' is missing")));
    problems.extend(
        result
            .unused
            .iter()
            .filter(|p| !(applied_as(p) || has_heads && p.starts_with(HEADS_PREFIX)))
            .map(|p| format!("tensor '{p}' is not part of this model")),
    );
    let covariance_heads = match covariance_heads {
        Some(heads) => {
            let mut file = HeadsFile { covariance_heads: heads };
            let result = file.load_from(&mut store).map_err(|e| read(&e))?;
            problems.extend(result.errors.iter().map(|e| e.to_string()));
            problems.extend(result.missing.iter().map(|(p, _)| format!("tensor '{p}' is missing")));
            Some(file.covariance_heads)
        }
        None => None,
    };
    if problems.is_empty() {
        return Ok(Bundle { unet, covariance_heads });
    }
    let shown = problems.iter().take(8).cloned().collect::<Vec<_>>().join("; ");
    let more = if problems.len() > 8 { format!(" (and {} more)", problems.len() - 8) } else { String::new() };
    Err(WeightsError::Mismatch { origin: origin.into(), problems: format!("{shown}{more}") })
}
