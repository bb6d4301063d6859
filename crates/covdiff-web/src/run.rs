//! One sampler's run, stepped by the page.

use crate::js_error;
use burn::tensor::{backend::Backend, Tensor};
use covdiff_core::normals::NormalStream;
use covdiff_model::backends::{Flex, Wgpu};
use covdiff_model::diffusion::{initial_noise, SamplerConfig, Sampling};
use covdiff_model::image::{Column, Pipeline};
use covdiff_model::normals;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

pub(crate) struct RunOf<B: Backend> {
    pipeline: Rc<Pipeline<B>>,
    column: Column,
    sampling: Sampling<B>,
    x: Tensor<B, 4>,
    x0_hat: Option<Tensor<B, 4>>,
    /// The run's normal stream, where its next draw starts.
    stream: NormalStream,
}

impl<B: Backend> RunOf<B> {
    pub(crate) fn start(
        pipeline: Rc<Pipeline<B>>,
        sampler: &str,
        config: &SamplerConfig,
        seed: u32,
        batch: usize,
        device: &B::Device,
    ) -> Result<Self, JsError> {
        let column = pipeline.column(sampler).map_err(js_error)?;
        let sampling = pipeline.sampling(column, config).map_err(js_error)?;
        // As `covdiff sample`: seed, then x_T, then the steps' draws, from the run's own stream (the
        // page steps its samplers in turn), which is covdiff's on every backend: WebGPU and the
        // CPU fallback draw the CLI's numbers.
        let mut stream = NormalStream::new(u64::from(seed));
        let x = normals::with_stream(&mut stream, || initial_noise(pipeline.shape(batch), pipeline.noise(), device));
        Ok(Self { pipeline, column, sampling, x, x0_hat: None, stream })
    }

    fn step(&mut self) -> Result<(), JsError> {
        let denoiser = self.pipeline.denoiser(self.column).map_err(js_error)?;
        let (sampling, x) = (&mut self.sampling, self.x.clone());
        let out = normals::with_stream(&mut self.stream, || sampling.step(denoiser, x)).map_err(js_error)?;
        self.x = out.x;
        self.x0_hat = Some(out.x0_hat);
        Ok(())
    }
}

/// Reads a tensor back without blocking (a blocking GPU read is impossible in a browser) and
/// refuses non-finite values.
async fn read<B: Backend>(x: Tensor<B, 4>) -> Result<Vec<f32>, JsError> {
    let data =
        x.into_data_async().await.map_err(|e| JsError::new(&format!("reading the samples back failed: {e:?}")))?;
    let v = data.convert::<f32>().to_vec::<f32>().map_err(|e| JsError::new(&format!("{e:?}")))?;
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(JsError::new(&format!("the sampler produced a non-finite value (at index {i})")));
    }
    Ok(v)
}

/// Boxed: a run's state is a few kilobytes, and the two backends' differ in size.
pub(crate) enum AnyRun {
    Gpu(Box<RunOf<Wgpu>>),
    Cpu(Box<RunOf<Flex>>),
}

/// Runs `$body` with `$r` bound to the backend-specific run.
macro_rules! on_run {
    ($self:expr, $r:ident => $body:expr) => {
        match $self {
            AnyRun::Gpu($r) => $body,
            AnyRun::Cpu($r) => $body,
        }
    };
}

/// A sampling run in progress: `step()` takes one network evaluation; `sample()` and `x0_hat()`
/// read the current images back, `[batch, channels, size, size]` in [-1, 1] (roughly).
#[wasm_bindgen]
pub struct Run {
    run: AnyRun,
}

impl Run {
    pub(crate) fn new(run: AnyRun) -> Self {
        Self { run }
    }
}

#[wasm_bindgen]
impl Run {
    /// One step `x_t -> x_s`; an error once all steps are taken.
    pub fn step(&mut self) -> Result<(), JsError> {
        on_run!(&mut self.run, r => r.step())
    }

    #[wasm_bindgen(getter)]
    pub fn steps_done(&self) -> usize {
        on_run!(&self.run, r => r.sampling.steps_done())
    }

    #[wasm_bindgen(getter)]
    pub fn total_steps(&self) -> usize {
        on_run!(&self.run, r => r.sampling.total_steps())
    }

    #[wasm_bindgen(getter)]
    pub fn finished(&self) -> bool {
        on_run!(&self.run, r => r.sampling.is_finished())
    }

    /// The next step's `t` (the noise level it starts from), or -1 when finished.
    #[wasm_bindgen(getter)]
    pub fn next_t(&self) -> i32 {
        on_run!(&self.run, r => r.sampling.next_times().map_or(-1, |(t, _)| t as i32))
    }

    /// The current `x` (after the last step: the sample), flattened.
    pub async fn sample(&self) -> Result<Vec<f32>, JsError> {
        on_run!(&self.run, r => read(r.x.clone()).await)
    }

    /// The last step's estimate of the clean image, flattened (an error before the first step).
    pub async fn x0_hat(&self) -> Result<Vec<f32>, JsError> {
        on_run!(&self.run, r => match &r.x0_hat {
            Some(x) => read(x.clone()).await,
            None => Err(JsError::new("no step taken yet")),
        })
    }
}
