//! The 2D covariance playground: the thesis' and the principled model trained side by side in
//! the page, then sampled with scalar against full covariance.
//!
//! It runs on burn's flex CPU backend whatever the page's engine: the networks are MLPs of width
//! 128 on batches of 256 points, where a GPU dispatch per layer costs more than the arithmetic.

use crate::js_error;
use burn::backend::flex::FlexDevice;
use burn::backend::Autodiff;
use burn::prelude::ElementConversion;
use burn::tensor::{Tensor, TensorData};
use covdiff_core::schedule::{Schedule, ScheduleTable, Sigmoid};
use covdiff_core::toy2d::{self, Points, Toy};
use covdiff_model::backends::Flex;
use covdiff_model::diffusion::{ForwardNoise, StepLosses, Trainer};
use covdiff_model::toy2d::{sample, settings, x0_covariance, Column, Objective, Toy2dConfig, Toy2dModel, Toy2dStage};
use std::sync::Arc;
use wasm_bindgen::prelude::*;

type Ad = Autodiff<Flex>;

/// The CLI's defaults (`covdiff toy2d train`): 8000 points, jitter 0.02, a sigmoid schedule of
/// 500 steps.
const POINTS: usize = 8000;
const JITTER: f64 = 0.02;
const SCHEDULE_STEPS: usize = 500;

/// The datasets the playground offers, by name.
#[wasm_bindgen]
pub fn toy_datasets() -> Vec<String> {
    Toy::ALL.iter().map(|t| t.name().to_string()).collect()
}

/// Two models on one dataset, trained one step at a time by the page.
#[wasm_bindgen]
pub struct Playground {
    data: Points,
    table: ScheduleTable,
    principled: Trainer<Ad, Toy2dStage>,
    thesis: Trainer<Ad, Toy2dStage>,
}

fn points_tensor(xy: &[f32]) -> Result<Tensor<Flex, 2>, JsError> {
    if !xy.len().is_multiple_of(2) || xy.is_empty() {
        return Err(JsError::new("points must be a non-empty list of (x, y) pairs"));
    }
    if xy.iter().any(|v| !v.is_finite()) {
        return Err(JsError::new("points must be finite"));
    }
    Ok(Tensor::from_data(TensorData::new(xy.to_vec(), [xy.len() / 2, 2]), &FlexDevice))
}

/// A tensor's values, flattened.
fn read<const D: usize>(x: Tensor<Flex, D>) -> Result<Vec<f32>, JsError> {
    x.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| JsError::new(&format!("{e:?}")))
}

#[wasm_bindgen]
impl Playground {
    /// `data`: one of [`toy_datasets`]; the CLI's schedule and optimiser (Adam, constant `lr`).
    #[wasm_bindgen(constructor)]
    pub fn new(data: &str, seed: u32, batch: usize, lr: f64) -> Result<Playground, JsError> {
        let toy: Toy = data.parse().map_err(js_error)?;
        if batch == 0 || batch > 4096 {
            return Err(JsError::new("the batch must be between 1 and 4096"));
        }
        if !(lr.is_finite() && lr > 0.0 && lr < 1.0) {
            return Err(JsError::new("the learning rate must lie in (0, 1)"));
        }
        let seed = u64::from(seed);
        let points = toy2d::sample(toy, POINTS, JITTER, seed);
        let table = Sigmoid { steps: SCHEDULE_STEPS, ..Default::default() }.table();
        let config = Toy2dConfig::new();
        let data = Arc::new(points.clone());
        let trainer = |objective| {
            covdiff_model::normals::seed::<Ad>(&FlexDevice, seed);
            let model = config.init::<Ad>(&FlexDevice);
            let settings = settings(batch, lr, 0, seed);
            let stage = Toy2dStage { objective };
            Trainer::new(stage, model, data.clone(), table.clone(), ForwardNoise::White, settings, &FlexDevice)
                .map_err(js_error)
        };
        Ok(Playground {
            principled: trainer(Objective::Principled)?,
            thesis: trainer(Objective::Thesis { kl_weight: 1.0 })?,
            data: points,
            table,
        })
    }

    /// The first `n` training points, flattened `(x, y)` pairs, for the scatter plot.
    pub fn data_points(&self, n: usize) -> Vec<f32> {
        self.data.xy.iter().take(n).flat_map(|p| [p[0] as f32, p[1] as f32]).collect()
    }

    #[wasm_bindgen(getter)]
    pub fn steps_done(&self) -> usize {
        self.principled.steps_done()
    }

    /// One optimiser step of each model; returns `[principled, thesis, principled L_simple,
    /// thesis L_simple]`, the first two the total losses (`L_simple` plus the covariance term,
    /// which can be negative for the principled model). An error if a loss is not finite.
    pub fn step(&mut self) -> Result<Vec<f64>, JsError> {
        let step = self.principled.steps_done();
        let (p, t) = (self.principled.step(), self.thesis.step());
        let losses =
            [p.total.clone(), t.total.clone(), simple(&p)?, simple(&t)?].map(|l| l.into_scalar().elem::<f64>());
        if losses.iter().any(|l| !l.is_finite()) {
            return Err(JsError::new(&format!(
                "training diverged at step {step} (losses {losses:?}); restart with a smaller learning rate"
            )));
        }
        Ok(losses.to_vec())
    }

    /// `n` samples in `k` steps, noise scaled by `lambda`, flattened `(x, y)` pairs.
    /// `covariance`: `beta`, `beta-tilde` (scalar, with the principled model's eps-network),
    /// `principled` (`btilde I + kappa E_t`), or `thesis` (its learned step covariance).
    pub fn sample(&self, covariance: &str, k: usize, lambda: f64, n: usize, seed: u32) -> Result<Vec<f32>, JsError> {
        let covariance: Column = covariance.parse().map_err(js_error)?;
        if !(lambda.is_finite() && (0.0..=10.0).contains(&lambda)) {
            return Err(JsError::new("lambda must lie in [0, 10]"));
        }
        if n == 0 || n > 100_000 {
            return Err(JsError::new("the number of samples must be between 1 and 100000"));
        }
        covdiff_model::normals::seed::<Flex>(&FlexDevice, u64::from(seed));
        let model = self.model(covariance);
        let x = sample(&model.denoiser(None), &self.table, &covariance.sampler(k, lambda), n, &FlexDevice)
            .map_err(js_error)?;
        let v = read(x)?;
        if v.iter().any(|x| !x.is_finite()) {
            return Err(JsError::new("sampling produced a non-finite point; train longer or lower lambda"));
        }
        Ok(v)
    }

    /// The principled model's `Cov[x_0 | x_t] = (bbar_t / abar_t) E_t` at the given points and
    /// step `t` (1 to 500), as `(p, q, r)` per point: `[[p, q], [q, r]]`.
    pub fn x0_covariances(&self, xy: &[f32], t: usize) -> Result<Vec<f32>, JsError> {
        if !(1..=self.table.steps()).contains(&t) {
            return Err(JsError::new(&format!("t must lie in 1..={}", self.table.steps())));
        }
        let x = points_tensor(xy)?;
        let model = self.principled.ema().clone();
        let c = x0_covariance(&model.denoiser(None), &self.table, x, t).map_err(js_error)?;
        let (p, q, r) = (read(c.p)?, read(c.q)?, read(c.r)?);
        Ok((0..p.len()).flat_map(|i| [p[i], q[i], r[i]]).collect())
    }
}

impl Playground {
    fn model(&self, covariance: Column) -> Toy2dModel<Flex> {
        match covariance {
            Column::Thesis => self.thesis.ema().clone(),
            _ => self.principled.ema().clone(),
        }
    }
}

/// A step's `L_simple` term.
fn simple(losses: &StepLosses<Flex>) -> Result<Tensor<Flex, 1>, JsError> {
    losses
        .terms
        .iter()
        .find(|(name, _)| *name == "simple")
        .map(|(_, t)| t.clone())
        .ok_or_else(|| JsError::new("the 2D stage reports no L_simple term"))
}
