//! Import of diffusers `UNet2DModel` checkpoints: the folder `save_pretrained` writes
//! (`config.json` and `diffusion_pytorch_model.safetensors`). covdiff's UNet already uses
//! diffusers' module names (`crate::unet`), so the weights load as they are; what needs mapping is
//! the configuration, and the timestep convention.
//!
//! Diffusers' schedulers feed the UNet the 0-based index `t - 1` of the noise level covdiff calls
//! `t` (1..=T): the imported configuration carries `timestep_offset = -1`, which the UNet applies
//! to every step it is given, so sampling, training and evaluation all use the convention the
//! weights were trained with.
//!
//! Only what covdiff's UNet computes is accepted; any other block type or option is refused with
//! an error that names it.

use super::weights::{load_bytes, Bundle, WeightsError};
use crate::unet::{UNet, UNetConfig};
use burn::tensor::backend::Backend;
use serde_json::Value;

/// Why a diffusers checkpoint cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("config.json: {0}")]
    Config(String),
    #[error("config.json: {0} is not supported by covdiff's UNet")]
    Unsupported(String),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Math(#[from] covdiff_core::Error),
}

/// An imported configuration: the UNet and the image size diffusers trained it at (`sample_size`,
/// where the config has one).
#[derive(Clone, Debug, PartialEq)]
pub struct DiffusersUNet {
    pub config: UNetConfig,
    pub sample_size: Option<usize>,
}

/// `key` of the config, or diffusers' default for it.
fn get<'a>(c: &'a Value, key: &str, default: &'a Value) -> &'a Value {
    c.get(key).filter(|v| !v.is_null()).unwrap_or(default)
}

fn usize_of(c: &Value, key: &str, default: usize) -> Result<usize, ImportError> {
    match c.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_u64().map(|u| u as usize).ok_or_else(|| ImportError::Config(format!("{key} is not a count"))),
    }
}

fn f64_of(c: &Value, key: &str, default: f64) -> Result<f64, ImportError> {
    match c.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_f64().ok_or_else(|| ImportError::Config(format!("{key} is not a number"))),
    }
}

fn strings(c: &Value, key: &str) -> Result<Vec<String>, ImportError> {
    let missing = || ImportError::Config(format!("{key} must be a list of block names"));
    c.get(key)
        .and_then(Value::as_array)
        .ok_or_else(missing)?
        .iter()
        .map(|v| v.as_str().map(str::to_string).ok_or_else(missing))
        .collect()
}

/// Refuses `key` unless it is absent, null or `expected`.
fn require(c: &Value, key: &str, expected: &Value) -> Result<(), ImportError> {
    let got = get(c, key, expected);
    if got == expected {
        Ok(())
    } else {
        Err(ImportError::Unsupported(format!("{key} = {got}")))
    }
}

/// The covdiff configuration of a diffusers `UNet2DModel` `config.json`.
pub fn unet_config(config_json: &str) -> Result<DiffusersUNet, ImportError> {
    let c: Value = serde_json::from_str(config_json).map_err(|e| ImportError::Config(e.to_string()))?;
    if !c.is_object() {
        return Err(ImportError::Config("not a JSON object".into()));
    }
    if let Some(name) = c.get("_class_name").and_then(Value::as_str) {
        if name != "UNet2DModel" {
            return Err(ImportError::Unsupported(format!("the model class {name} (covdiff imports UNet2DModel)")));
        }
    }
    for (key, expected) in [
        ("time_embedding_type", Value::from("positional")),
        ("act_fn", Value::from("silu")),
        ("resnet_time_scale_shift", Value::from("default")),
        ("center_input_sample", Value::from(false)),
        ("add_attention", Value::from(true)),
        ("mid_block_type", Value::from("UNetMidBlock2D")),
        ("downsample_type", Value::from("conv")),
        ("upsample_type", Value::from("conv")),
        ("downsample_padding", Value::from(1)),
        ("mid_block_scale_factor", Value::from(1)),
        ("class_embed_type", Value::Null),
    ] {
        require(&c, key, &expected)?;
    }
    let channels: Vec<usize> = c
        .get("block_out_channels")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|v| v.as_u64().map(|u| u as usize)).collect::<Option<Vec<_>>>())
        .unwrap_or(Some(vec![224, 448, 672, 896]))
        .ok_or_else(|| ImportError::Config("block_out_channels must be a list of counts".into()))?;
    let groups = usize_of(&c, "norm_num_groups", 32)?;
    if let Some(g) = c.get("attn_norm_num_groups").filter(|v| !v.is_null()) {
        if g.as_u64() != Some(groups as u64) {
            return Err(ImportError::Unsupported(format!("attn_norm_num_groups = {g} (other than norm_num_groups)")));
        }
    }
    let ch0 = channels.first().copied().unwrap_or(0);
    if let Some(d) = c.get("time_embedding_dim").filter(|v| !v.is_null()) {
        if d.as_u64() != Some(4 * ch0 as u64) {
            return Err(ImportError::Unsupported(format!("time_embedding_dim = {d} (covdiff uses 4 x {ch0})")));
        }
    }
    let down = strings(&c, "down_block_types")?;
    let up = strings(&c, "up_block_types")?;
    if down.len() != channels.len() || up.len() != channels.len() {
        return Err(ImportError::Config(format!(
            "{} levels of block_out_channels, {} down blocks, {} up blocks",
            channels.len(),
            down.len(),
            up.len()
        )));
    }
    let attention = down
        .iter()
        .map(|b| match b.as_str() {
            "DownBlock2D" => Ok(false),
            "AttnDownBlock2D" => Ok(true),
            other => Err(ImportError::Unsupported(format!("the down block type {other}"))),
        })
        .collect::<Result<Vec<bool>, _>>()?;
    for (i, b) in up.iter().enumerate() {
        let mirrored = if attention[channels.len() - 1 - i] { "AttnUpBlock2D" } else { "UpBlock2D" };
        if b != mirrored {
            return Err(ImportError::Unsupported(format!(
                "the up block type {b} at level {i} (covdiff mirrors the down blocks: {mirrored})"
            )));
        }
    }
    // Diffusers' attention_head_dim is the width of a head (default 8); `null` gives one head per block.
    let head = match c.get("attention_head_dim") {
        None => Some(8),
        Some(Value::Null) => None,
        Some(v) => {
            Some(v.as_u64().ok_or_else(|| ImportError::Config("attention_head_dim is not a count".into()))? as usize)
        }
    };
    let attended: Vec<usize> = channels.iter().zip(&attention).filter(|(_, a)| **a).map(|(c, _)| *c).collect();
    let last = channels.last().copied().unwrap_or(0);
    // One head of the whole width is covdiff's `None`.
    let head = head.filter(|h| !attended.iter().chain([&last]).all(|c| c == h));
    let flip = match get(&c, "flip_sin_to_cos", &Value::from(true)) {
        Value::Bool(b) => *b,
        v => return Err(ImportError::Config(format!("flip_sin_to_cos = {v} is not a boolean"))),
    };
    let config = UNetConfig::new(channels, attention)
        .with_in_channels(usize_of(&c, "in_channels", 3)?)
        .with_out_channels(usize_of(&c, "out_channels", 3)?)
        .with_layers_per_block(usize_of(&c, "layers_per_block", 2)?)
        .with_attention_head_dim(head)
        .with_norm_num_groups(groups)
        .with_norm_eps(f64_of(&c, "norm_eps", 1e-5)?)
        .with_dropout(f64_of(&c, "dropout", 0.0)?)
        .with_num_class_embeds(match c.get("num_class_embeds") {
            None | Some(Value::Null) => None,
            Some(_) => Some(usize_of(&c, "num_class_embeds", 0)?),
        })
        .with_flip_sin_to_cos(Some(flip))
        .with_freq_shift(Some(f64_of(&c, "freq_shift", 0.0)?))
        .with_timestep_offset(Some(-1.0));
    config.validate()?;
    let sample_size = match c.get("sample_size") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) if a.len() == 2 && a[0] == a[1] => a[0].as_u64().map(|u| u as usize),
        Some(Value::Array(a)) => return Err(ImportError::Unsupported(format!("non-square sample_size {a:?}"))),
        Some(v) => Some(v.as_u64().ok_or_else(|| ImportError::Config("sample_size is not a count".into()))? as usize),
    };
    Ok(DiffusersUNet { config, sample_size })
}

/// The UNet of a diffusers checkpoint: its `config.json` text and the bytes of its
/// `diffusion_pytorch_model.safetensors`. Every tensor is checked by name and shape.
pub fn import_unet<B: Backend>(
    config_json: &str,
    weights: Vec<u8>,
    device: &B::Device,
) -> Result<(DiffusersUNet, UNet<B>), ImportError> {
    let imported = unet_config(config_json)?;
    let bundle = Bundle { unet: imported.config.try_init::<B>(device)?, covariance_heads: None };
    let bundle = load_bytes(bundle, weights, "diffusion_pytorch_model.safetensors")?;
    Ok((imported, bundle.unet))
}
