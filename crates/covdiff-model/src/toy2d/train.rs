//! Training of the 2D model, one step at a time: the state lives in
//! [`Trainer`], and [`Trainer::step`] does one optimiser step and returns the
//! losses as tensors (the caller reads them, synchronously natively or
//! asynchronously in a browser), so a page can interleave steps with drawing.

use super::network::{Toy2dConfig, Toy2dModel};
use crate::covariance::{Covariance, Full2};
use burn::module::AutodiffModule;
use burn::optim::{adaptor::OptimizerAdaptor, Adam, AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{backend::AutodiffBackend, Int, Tensor, TensorData};
use covdiff_core::schedule::ScheduleTable;
use covdiff_core::toy2d::Points;
use rand::{rngs::StdRng, RngExt, SeedableRng};
use rand_distr::StandardNormal;
use std::str::FromStr;

/// What the covariance network learns (the eps-network always learns `L_simple`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    /// Scalar variance: only the eps-network is trained.
    Baseline,
    /// The thesis, as written: `L_simple + w KL(N(0, L L^T) || N(0, Sigma_t))`, with `Sigma_t`
    /// the empirical covariance of the true noise `eps` over the batch (mean removed). Since
    /// `eps ~ N(0, I)` whatever `t`, `Sigma_t` is the identity up to sampling error.
    Thesis { kl_weight: f64 },
    /// `L L^T` regresses `E_t = Cov[eps | x_t]` by NPR-residual: `||E - r r^T||_F^2`,
    /// `r = eps - eps_hat` with `eps_hat` held fixed (docs/maths.md).
    Principled,
}

impl Objective {
    pub fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Thesis { .. } => "thesis",
            Self::Principled => "principled",
        }
    }
}

impl FromStr for Objective {
    type Err = covdiff_core::Error;
    fn from_str(s: &str) -> Result<Self, covdiff_core::Error> {
        match s {
            "baseline" => Ok(Self::Baseline),
            "thesis" => Ok(Self::Thesis { kl_weight: 1.0 }),
            "principled" => Ok(Self::Principled),
            _ => Err(covdiff_core::Error::unknown("objective", s, "baseline, thesis or principled")),
        }
    }
}

/// Optimisation settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    pub batch: usize,
    /// Peak learning rate (Adam).
    pub lr: f64,
    /// Steps of the cosine decay of the learning rate to 1% of `lr`; 0 keeps it constant.
    pub decay_steps: usize,
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self { batch: 256, lr: 1e-3, decay_steps: 0, seed: 0 }
    }
}

impl TrainOptions {
    /// The learning rate at `step`.
    pub fn lr_at(&self, step: usize) -> f64 {
        if self.decay_steps == 0 {
            return self.lr;
        }
        let u = (step as f64 / self.decay_steps as f64).min(1.0);
        self.lr * (0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * u).cos()))
    }
}

/// The losses of one step, as unread tensors.
pub struct StepLosses<B: AutodiffBackend> {
    pub total: Tensor<B::InnerBackend, 1>,
    pub simple: Tensor<B::InnerBackend, 1>,
    pub covariance: Tensor<B::InnerBackend, 1>,
}

type Optim<B> = OptimizerAdaptor<Adam, Toy2dModel<B>, B>;

/// The optimiser's state, for checkpoints.
pub type OptimRecord<B> = <Optim<B> as Optimizer<Toy2dModel<B>, B>>::Record;

/// Steppable training state. The batches of step `k` are drawn from a
/// generator seeded by `(seed, k)`, so a run restored from a checkpoint at
/// step `k` continues exactly as if it had never stopped.
pub struct Trainer<B: AutodiffBackend> {
    model: Option<Toy2dModel<B>>,
    optim: Optim<B>,
    points: Vec<f32>,
    labels: Vec<i64>,
    table: ScheduleTable,
    objective: Objective,
    options: TrainOptions,
    steps_done: usize,
    device: B::Device,
}

impl<B: AutodiffBackend> Trainer<B> {
    pub fn new(
        config: &Toy2dConfig,
        data: &Points,
        table: ScheduleTable,
        objective: Objective,
        options: TrainOptions,
        device: &B::Device,
    ) -> Self {
        crate::normals::seed::<B>(device, options.seed);
        Self {
            model: Some(config.init(device)),
            optim: AdamConfig::new().init(),
            points: data.xy.iter().flat_map(|p| [p[0] as f32, p[1] as f32]).collect(),
            labels: data.labels.iter().map(|&l| l as i64).collect(),
            table,
            objective,
            options,
            steps_done: 0,
            device: device.clone(),
        }
    }

    pub fn steps_done(&self) -> usize {
        self.steps_done
    }

    pub fn model(&self) -> &Toy2dModel<B> {
        self.model.as_ref().expect("model is present between steps")
    }

    /// The model for inference (no autodiff).
    pub fn inference_model(&self) -> Toy2dModel<B::InnerBackend> {
        self.model().valid()
    }

    /// The model, the optimiser state and the number of steps done.
    pub fn checkpoint(&self) -> (Toy2dModel<B>, OptimRecord<B>, usize) {
        (self.model().clone(), self.optim.to_record(), self.steps_done)
    }

    /// Continue from a checkpoint taken by [`Trainer::checkpoint`].
    pub fn restore(&mut self, model: Toy2dModel<B>, optim: OptimRecord<B>, steps_done: usize) {
        self.model = Some(model);
        let fresh: Optim<B> = AdamConfig::new().init();
        self.optim = fresh.load_record(optim);
        self.steps_done = steps_done;
    }

    /// One optimiser step on a fresh batch.
    pub fn step(&mut self) -> StepLosses<B> {
        let mut rng =
            StdRng::seed_from_u64(self.options.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.steps_done as u64);
        let n = self.options.batch;
        let count = self.labels.len();
        let mut x0 = Vec::with_capacity(2 * n);
        let mut eps = Vec::with_capacity(2 * n);
        let mut xt = Vec::with_capacity(2 * n);
        let mut ts = Vec::with_capacity(n);
        let mut ys = Vec::with_capacity(n);
        let big_t = self.table.steps();
        for _ in 0..n {
            let i = rng.random_range(0..count);
            let t = rng.random_range(1..=big_t);
            let (sa, sb) = (self.table.abar(t).sqrt(), self.table.bbar(t).sqrt());
            for k in 0..2 {
                let e: f64 = rng.sample(StandardNormal);
                let x = self.points[2 * i + k] as f64;
                x0.push(x as f32);
                eps.push(e as f32);
                xt.push((sa * x + sb * e) as f32);
            }
            ts.push(t as f32);
            ys.push(self.labels[i]);
        }
        let dev = &self.device;
        let eps_t = Tensor::<B, 2>::from_data(TensorData::new(eps.clone(), [n, 2]), dev);
        let xt_t = Tensor::<B, 2>::from_data(TensorData::new(xt, [n, 2]), dev);
        let t_t = Tensor::<B, 1>::from_data(TensorData::new(ts, [n]), dev);
        let model = self.model.take().expect("model is present between steps");
        let y = model.is_conditional().then(|| Tensor::<B, 1, Int>::from_data(TensorData::new(ys, [n]), dev));

        let eps_hat = model.predict_eps(xt_t.clone(), t_t.clone(), y.clone());
        let simple = (eps_t.clone() - eps_hat.clone()).powi_scalar(2).sum_dim(1).mean();
        let cov_loss = match self.objective {
            Objective::Baseline => Tensor::<B, 1>::zeros([1], dev),
            Objective::Thesis { kl_weight } => {
                let target = batch_noise_covariance::<B>(&eps, n, dev);
                let pred = model.predict_cov(xt_t, t_t, y);
                let zero = Tensor::<B, 4>::zeros([n, 2, 1, 1], dev);
                pred.kl(zero.clone(), &target, zero).mean() * kl_weight
            }
            Objective::Principled => {
                let pred = model.predict_cov(xt_t, t_t, y);
                let r = Full2::as_image((eps_t - eps_hat).detach());
                // ||E - r r^T||^2 = ||E||^2 - 2 r^T E r + const.
                (pred.frobenius_sq() - pred.quadratic(r) * 2.0).mean()
            }
        };
        let total = simple.clone() + cov_loss.clone();
        let grads = GradientsParams::from_grads(total.backward(), &model);
        self.model = Some(self.optim.step(self.options.lr_at(self.steps_done), model, grads));
        self.steps_done += 1;
        StepLosses { total: total.inner(), simple: simple.inner(), covariance: cov_loss.inner() }
    }
}

/// The thesis' `Sigma_t`: the empirical covariance of the batch's true noise, plus 1e-6 I.
fn batch_noise_covariance<B: AutodiffBackend>(eps: &[f32], n: usize, device: &B::Device) -> Full2<B> {
    let mean = |k: usize| eps.iter().skip(k).step_by(2).map(|&x| x as f64).sum::<f64>() / n as f64;
    let (m0, m1) = (mean(0), mean(1));
    let (mut p, mut q, mut r) = (0.0, 0.0, 0.0);
    for e in eps.chunks_exact(2) {
        let (a, b) = (e[0] as f64 - m0, e[1] as f64 - m1);
        p += a * a;
        q += a * b;
        r += b * b;
    }
    let d = (n.max(2) - 1) as f64;
    let fill = |v: f64| Tensor::<B, 1>::full([n], v as f32, device);
    Full2 { p: fill(p / d + 1e-6), q: fill(q / d), r: fill(r / d + 1e-6) }
}
