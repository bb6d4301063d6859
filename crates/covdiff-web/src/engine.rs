//! The backend the page runs on, and a loaded model.

use crate::js_error;
use crate::run::{AnyRun, Run, RunOf};
use burn::backend::flex::FlexDevice;
use burn::backend::wgpu::{graphics::WebGpu, init_setup_async, RuntimeOptions, WgpuDevice};
use covdiff_model::backends::{Flex, Wgpu};
use covdiff_model::diffusion::{SamplerConfig, StepVariance};
use covdiff_model::image::Pipeline;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

#[derive(Clone)]
enum Device {
    Gpu(WgpuDevice),
    Cpu(FlexDevice),
}

/// The compute backend: WebGPU or the CPU fallback.
#[wasm_bindgen]
pub struct Engine {
    device: Device,
    adapter: String,
}

#[wasm_bindgen]
impl Engine {
    /// WebGPU through burn-wgpu, set up asynchronously (a blocking set-up is impossible in a
    /// browser). The page calls it only once `navigator.gpu.requestAdapter()` has given an
    /// adapter; `adapter` is that adapter's description, shown on the page.
    pub async fn webgpu(adapter: String) -> Engine {
        let device = WgpuDevice::default();
        init_setup_async::<WebGpu>(&device, RuntimeOptions::default()).await;
        Engine { device: Device::Gpu(device), adapter }
    }

    /// burn's flex CPU backend compiled for wasm32 (one thread): the fallback without WebGPU.
    pub fn cpu() -> Engine {
        Engine { device: Device::Cpu(FlexDevice), adapter: String::new() }
    }

    /// `"webgpu"` or `"cpu"`.
    #[wasm_bindgen(getter)]
    pub fn kind(&self) -> String {
        match self.device {
            Device::Gpu(_) => "webgpu".into(),
            Device::Cpu(_) => "cpu".into(),
        }
    }

    /// What the page shows as the backend.
    #[wasm_bindgen(getter)]
    pub fn label(&self) -> String {
        match self.device {
            Device::Gpu(_) if self.adapter.is_empty() => "WebGPU (burn-wgpu)".into(),
            Device::Gpu(_) => format!("WebGPU (burn-wgpu) on {}", self.adapter),
            Device::Cpu(_) => "CPU fallback (burn flex, wasm32, one thread)".into(),
        }
    }

    /// A model from the bytes of a covdiff safetensors file (its card is in the header). Bad,
    /// truncated or foreign bytes give an error that says which.
    pub fn load(&self, bytes: &[u8]) -> Result<Model, JsError> {
        let pipeline = match &self.device {
            Device::Gpu(d) => {
                AnyPipeline::Gpu(Rc::new(Pipeline::from_safetensors_bytes(bytes, d).map_err(js_error)?), d.clone())
            }
            Device::Cpu(d) => {
                AnyPipeline::Cpu(Rc::new(Pipeline::from_safetensors_bytes(bytes, d).map_err(js_error)?), *d)
            }
        };
        Ok(Model { pipeline })
    }
}

pub(crate) enum AnyPipeline {
    Gpu(Rc<Pipeline<Wgpu>>, WgpuDevice),
    Cpu(Rc<Pipeline<Flex>>, FlexDevice),
}

/// A loaded model: the eps-UNet and, where the file has them, its covariance heads.
#[wasm_bindgen]
pub struct Model {
    pipeline: AnyPipeline,
}

impl Model {
    fn card(&self) -> &covdiff_model::image::ModelCard {
        match &self.pipeline {
            AnyPipeline::Gpu(p, _) => p.card(),
            AnyPipeline::Cpu(p, _) => p.card(),
        }
    }
}

#[wasm_bindgen]
impl Model {
    /// The card's name: `kdct-npr`, `diag-ocm`, or `eps` for a UNet without heads.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.card().name()
    }

    /// The model card as JSON (configuration, training steps, evaluation metrics).
    #[wasm_bindgen(getter)]
    pub fn card_json(&self) -> String {
        serde_json::to_string(self.card()).unwrap_or_default()
    }

    #[wasm_bindgen(getter)]
    pub fn channels(&self) -> usize {
        self.card().channels
    }

    #[wasm_bindgen(getter)]
    pub fn size(&self) -> usize {
        self.card().size
    }

    /// Whether the model has a learnt covariance (heads).
    #[wasm_bindgen(getter)]
    pub fn learned(&self) -> bool {
        self.card().heads.is_some()
    }

    /// A sampling run of `steps` steps for `batch` images from `seed`, with the CLI's defaults
    /// (`covdiff sample`: even spacing, x0 clipping, the K-DCT paper's penultimate-step clip).
    /// `sampler`: `beta`, `beta-tilde` (`iso`), `ddim`, or the model's learnt covariance by kind
    /// or name. As in the CLI, the seed fixes `x_T` and every later draw: each run keeps its own
    /// normal stream (covdiff's, the CLI's on every backend), so runs may be stepped in any order.
    pub fn start(&self, sampler: &str, steps: usize, seed: u32, batch: usize) -> Result<Run, JsError> {
        if batch == 0 || steps == 0 {
            return Err(JsError::new("the batch and the number of steps must be positive"));
        }
        let config = SamplerConfig::ddpm(StepVariance::Small, steps);
        let run = match &self.pipeline {
            AnyPipeline::Gpu(p, d) => AnyRun::Gpu(Box::new(RunOf::start(p.clone(), sampler, &config, seed, batch, d)?)),
            AnyPipeline::Cpu(p, d) => AnyRun::Cpu(Box::new(RunOf::start(p.clone(), sampler, &config, seed, batch, d)?)),
        };
        Ok(Run::new(run))
    }
}
