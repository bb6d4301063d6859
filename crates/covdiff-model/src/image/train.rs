//! Two-stage training, one step at a time (as in the paper, Eq. 15):
//! stage 1 learns the eps-UNet by `L_simple`; stage 2 freezes it and learns
//! covariance heads on its features by NPR, NPR-residual, OCM or SN.
//!
//! Batches of step `k` come from a generator seeded by `(seed, k)`, on the
//! host, so a run restored from a checkpoint continues exactly as if it had
//! never stopped. AdamW with per-parameter gradient-norm clipping (burn's
//! `GradientClippingConfig::Norm`) and an EMA of the weights.

use super::heads::{CovarianceHeads, HeadKind};
use super::noise::ForwardNoise;
use crate::covariance::per_image_sum;
use crate::objectives::{jvp_central_difference, npr, npr_residual, ocm, sn};
use crate::unet::UNet;
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{
    adaptor::OptimizerAdaptor, grad_clipping::GradientClippingConfig, AdamW, AdamWConfig, GradientsParams,
    MultiGradientsParams, Optimizer,
};
use burn::tensor::backend::DeviceOps;
use burn::tensor::{backend::AutodiffBackend, backend::Backend, Tensor, TensorData};
use covdiff_core::data::ImageSet;
use covdiff_core::schedule::ScheduleTable;
use rand::{rngs::StdRng, RngExt, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The covariance heads' objective (docs/maths.md, "Training objectives").
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadObjective {
    /// Eq. 27, Alg. 2.
    Npr,
    /// Bao et al.'s target `r r^T`, `r = eps - eps_hat`.
    NprResidual,
    /// Alg. 3, with `J v` by central finite difference of step `h` on the frozen net.
    Ocm { h: f64 },
    /// Bao et al.'s squared noise; diagonal heads only.
    Sn,
}

impl HeadObjective {
    pub fn name(self) -> &'static str {
        match self {
            Self::Npr => "npr",
            Self::NprResidual => "npr-residual",
            Self::Ocm { .. } => "ocm",
            Self::Sn => "sn",
        }
    }
}

impl fmt::Display for HeadObjective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HeadObjective {
    type Err = covdiff_core::Error;
    fn from_str(s: &str) -> Result<Self, covdiff_core::Error> {
        match s {
            "npr" => Ok(Self::Npr),
            "npr-residual" => Ok(Self::NprResidual),
            "ocm" => Ok(Self::Ocm { h: 1e-2 }),
            "sn" => Ok(Self::Sn),
            _ => Err(covdiff_core::Error::unknown("objective", s, "npr, npr-residual, ocm or sn")),
        }
    }
}

/// Optimisation settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Linear warm-up of the learning rate over this many steps.
    pub warmup: usize,
    /// Per-parameter gradient-norm bound; 0 disables clipping.
    pub grad_clip: f64,
    /// EMA rate, warmed up as `min(rate, (1 + k) / (10 + k))`.
    pub ema: f64,
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { batch: 32, lr: 2e-4, weight_decay: 0.0, warmup: 100, grad_clip: 1.0, ema: 0.999, seed: 0 }
    }
}

impl Settings {
    pub fn lr_at(&self, step: usize) -> f64 {
        self.lr * ((step + 1) as f64 / self.warmup.max(1) as f64).min(1.0)
    }

    pub fn ema_at(&self, step: usize) -> f64 {
        self.ema.min((1 + step) as f64 / (10 + step) as f64)
    }

    fn optimizer<B: AutodiffBackend, M: AutodiffModule<B>>(&self) -> OptimizerAdaptor<AdamW, M, B> {
        let clip = (self.grad_clip > 0.0).then_some(GradientClippingConfig::Norm(self.grad_clip as f32));
        AdamWConfig::new().with_weight_decay(self.weight_decay as f32).with_grad_clipping(clip).init()
    }
}

/// One training batch: `x_t = sqrt(abar) x_0 + sqrt(bbar) Sigma^1/2 eps`.
pub struct Batch<B: Backend> {
    pub x0: Tensor<B, 4>,
    /// White `eps`, what the network predicts.
    pub eps: Tensor<B, 4>,
    pub x_t: Tensor<B, 4>,
    /// Each image's step as a float, for the time embedding.
    pub t: Tensor<B, 1>,
    /// `sqrt(bbar_t)` per image.
    pub sqrt_bbar: Tensor<B, 1>,
    /// A seed for the objectives' own randomness (OCM's probes).
    pub seed: u64,
    /// The forward noise `Sigma^1/2` that made `x_t`.
    pub noise: ForwardNoise<B>,
}

/// Why a stage cannot train a model.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StageError {
    #[error("SN trains diagonal heads only, not {0} heads")]
    SnNeedsDiagonal(String),
}

/// What a training stage optimises.
pub trait Stage<B: AutodiffBackend>: Sized {
    type Model: AutodiffModule<B> + Clone;
    /// Whether this stage can train `model` ([`Trainer::new`] asks before anything runs).
    fn check(&self, _model: &Self::Model) -> Result<(), StageError> {
        Ok(())
    }
    /// The mean loss over the batch, normalised per dimension.
    fn loss(&self, model: &Self::Model, batch: Batch<B>) -> Tensor<B, 1>;
    /// The stage with its frozen parts on `device`, for data parallelism.
    fn to_device(&self, device: &B::Device) -> Self;
}

impl<B: Backend> Batch<B> {
    /// Images `start..start + len`, on `device`.
    fn shard(&self, start: usize, len: usize, device: &B::Device) -> Self {
        let cut4 = |t: &Tensor<B, 4>| t.clone().narrow(0, start, len).to_device(device);
        let cut1 = |t: &Tensor<B, 1>| t.clone().narrow(0, start, len).to_device(device);
        Batch {
            x0: cut4(&self.x0),
            eps: cut4(&self.eps),
            x_t: cut4(&self.x_t),
            t: cut1(&self.t),
            sqrt_bbar: cut1(&self.sqrt_bbar),
            seed: self.seed ^ (start as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            noise: self.noise.to_device(device),
        }
    }
}

/// `J Sigma^1/2 v` by central differences along `Sigma^1/2 v`, for OCM (Alg. 3). In the whitened
/// coordinates of the forward noise, `y = Sigma^-1/2 x_t`, Tweedie gives
/// `E_t = Cov[eps | x_t] = I - sqrt(bbar) d eps_hat / dy = I - sqrt(bbar) J Sigma^1/2` with
/// `J = d eps_hat / d x_t`: the probe enters the network through `Sigma^1/2` (white noise: `v`).
pub fn whitened_jvp<B: Backend>(
    f: impl Fn(Tensor<B, 4>) -> Tensor<B, 4>,
    x_t: Tensor<B, 4>,
    v: Tensor<B, 4>,
    noise: &ForwardNoise<B>,
    h: f64,
) -> Tensor<B, 4> {
    jvp_central_difference(f, x_t, noise.sqrt_apply(v), h)
}

/// Stage 1: `L_simple = E ||eps - eps_hat(x_t, t)||^2 / n`.
pub struct EpsStage;

impl<B: AutodiffBackend> Stage<B> for EpsStage {
    type Model = UNet<B>;
    fn loss(&self, model: &UNet<B>, batch: Batch<B>) -> Tensor<B, 1> {
        let n = batch.eps.dims()[1..].iter().product::<usize>() as f64;
        let eps_hat = model.forward(batch.x_t, batch.t, None);
        per_image_sum((batch.eps - eps_hat).powi_scalar(2)).mean() / n
    }
    fn to_device(&self, _: &B::Device) -> Self {
        EpsStage
    }
}

/// Stage 2: heads on a frozen UNet (which runs without autodiff).
pub struct HeadStage<B: AutodiffBackend> {
    pub unet: UNet<B::InnerBackend>,
    pub objective: HeadObjective,
}

impl<B: AutodiffBackend> Stage<B> for HeadStage<B> {
    type Model = CovarianceHeads<B>;
    fn check(&self, heads: &CovarianceHeads<B>) -> Result<(), StageError> {
        match (self.objective, heads.kind()) {
            (HeadObjective::Sn, kind) if kind != HeadKind::Diagonal => Err(StageError::SnNeedsDiagonal(kind.name())),
            _ => Ok(()),
        }
    }
    fn loss(&self, heads: &CovarianceHeads<B>, batch: Batch<B>) -> Tensor<B, 1> {
        let shape = batch.eps.dims();
        let n = shape[1..].iter().product::<usize>() as f64;
        let (x_t, t) = (batch.x_t.inner(), batch.t.inner());
        let f = self.unet.forward_features(x_t.clone(), t.clone(), None);
        let out = heads.forward(Tensor::from_inner(f.mid), Tensor::from_inner(f.last_up));
        let eps_hat = Tensor::<B, 4>::from_inner(f.eps);
        let eps = batch.eps;
        let per_image = match self.objective {
            HeadObjective::Npr => npr(&out, eps, eps_hat),
            HeadObjective::NprResidual => npr_residual(&out, eps, eps_hat),
            HeadObjective::Ocm { h } => {
                let mut rng = StdRng::seed_from_u64(batch.seed);
                let v: Vec<f32> =
                    (0..shape.iter().product()).map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 }).collect();
                let v = Tensor::<B::InnerBackend, 4>::from_data(TensorData::new(v, shape), &x_t.device());
                let noise = batch.noise.inner();
                let jv = whitened_jvp(|x| self.unet.forward(x, t.clone(), None), x_t, v.clone(), &noise, h);
                // sqrt(bbar) differs per image: fold it into J v.
                let jv = jv * batch.sqrt_bbar.inner().reshape([shape[0], 1, 1, 1]);
                ocm(&out, Tensor::from_inner(v), Tensor::from_inner(jv), 1.0)
            }
            HeadObjective::Sn => match out {
                crate::covariance::AnyCovariance::Diagonal(m) => sn(m.e, eps),
                // Trainer::new refuses this pairing through Stage::check.
                _ => unreachable!("SN trains diagonal heads only"),
            },
        };
        per_image.mean() / n
    }
    fn to_device(&self, device: &B::Device) -> Self {
        Self { unet: self.unet.clone().fork(device), objective: self.objective }
    }
}

type Optim<B, M> = OptimizerAdaptor<AdamW, M, B>;

/// The optimiser's state, for checkpoints.
pub type OptimRecord<B, M> = <Optim<B, M> as Optimizer<M, B>>::Record;

/// The state a checkpoint holds.
pub struct Snapshot<B: AutodiffBackend, M: AutodiffModule<B>> {
    pub model: M,
    pub ema: M::InnerModule,
    pub optim: OptimRecord<B, M>,
    pub steps_done: usize,
}

/// Steppable training state for either stage.
pub struct Trainer<B: AutodiffBackend, S: Stage<B>> {
    stage: S,
    model: Option<S::Model>,
    ema: <S::Model as AutodiffModule<B>>::InnerModule,
    optim: Optim<B, S::Model>,
    data: Arc<ImageSet>,
    table: ScheduleTable,
    noise: ForwardNoise<B>,
    settings: Settings,
    steps_done: usize,
    device: B::Device,
    /// Further devices for data parallelism, each with its copy of the stage.
    replicas: Vec<(B::Device, S)>,
}

impl<B: AutodiffBackend, S: Stage<B>> Trainer<B, S> {
    pub fn new(
        stage: S,
        model: S::Model,
        data: Arc<ImageSet>,
        table: ScheduleTable,
        noise: ForwardNoise<B>,
        settings: Settings,
        device: &B::Device,
    ) -> Result<Self, StageError> {
        stage.check(&model)?;
        // burn initialises parameters lazily, and a clone of a lazy parameter draws its own
        // values: materialise them first, so the EMA starts from the model's own weights.
        let model = materialize(model);
        Ok(Self {
            stage,
            ema: model.valid(),
            model: Some(model),
            optim: settings.optimizer(),
            data,
            table,
            noise,
            settings,
            steps_done: 0,
            device: device.clone(),
            replicas: Vec::new(),
        })
    }

    /// Data parallelism with burn's multi-device optimiser step (`Optimizer::step_multi`): each
    /// step splits its batch over this trainer's device and `others`, runs forward and backward
    /// on each device's shard with a fork of the model, and the optimiser sums the gradients
    /// (each shard's loss weighted by its share of the batch) on each parameter's device.
    pub fn with_devices(mut self, others: &[B::Device]) -> Self {
        self.replicas = others.iter().map(|d| (d.clone(), self.stage.to_device(d))).collect();
        self
    }

    pub fn steps_done(&self) -> usize {
        self.steps_done
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn model(&self) -> &S::Model {
        self.model.as_ref().expect("model is present between steps")
    }

    /// The EMA weights, for sampling and export.
    pub fn ema(&self) -> &<S::Model as AutodiffModule<B>>::InnerModule {
        &self.ema
    }

    pub fn checkpoint(&self) -> Snapshot<B, S::Model> {
        Snapshot {
            model: self.model().clone(),
            ema: self.ema.clone(),
            optim: self.optim.to_record(),
            steps_done: self.steps_done,
        }
    }

    pub fn restore(&mut self, snapshot: Snapshot<B, S::Model>) {
        self.model = Some(snapshot.model);
        self.ema = snapshot.ema;
        self.optim = self.settings.optimizer().load_record(snapshot.optim);
        self.steps_done = snapshot.steps_done;
    }

    /// The batch of step `k` (deterministic in `(seed, k)`).
    pub fn batch(&self, k: usize) -> Batch<B> {
        let mut rng = StdRng::seed_from_u64(self.settings.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k as u64);
        let (b, dim) = (self.settings.batch, self.data.dim());
        let mut x0 = Vec::with_capacity(b * dim);
        let mut ts = Vec::with_capacity(b);
        for _ in 0..b {
            x0.extend_from_slice(self.data.image(rng.random_range(0..self.data.len())));
            ts.push(rng.random_range(1..=self.table.steps()));
        }
        let eps: Vec<f32> = (0..b * dim).map(|_| rng.sample::<f32, _>(StandardNormal)).collect();
        let shape = [b, self.data.channels, self.data.size, self.data.size];
        let dev = &self.device;
        let per_image = |f: &dyn Fn(usize) -> f64| {
            let v: Vec<f32> = ts.iter().map(|&t| f(t) as f32).collect();
            Tensor::<B, 1>::from_data(TensorData::new(v, [b]), dev)
        };
        let sa = per_image(&|t| self.table.abar(t).sqrt());
        let sb = per_image(&|t| self.table.bbar(t).sqrt());
        let x0 = Tensor::<B, 4>::from_data(TensorData::new(x0, shape), dev);
        let eps = Tensor::<B, 4>::from_data(TensorData::new(eps, shape), dev);
        let col = |v: Tensor<B, 1>| v.reshape([b, 1, 1, 1]);
        let x_t = x0.clone() * col(sa) + self.noise.sqrt_apply(eps.clone()) * col(sb.clone());
        Batch {
            x0,
            eps,
            x_t,
            t: per_image(&|t| t as f64),
            sqrt_bbar: sb,
            seed: rng.random(),
            noise: self.noise.clone(),
        }
    }

    /// One optimiser step; returns the loss, unread.
    pub fn step(&mut self) -> Tensor<B::InnerBackend, 1> {
        let batch = self.batch(self.steps_done);
        let model = self.model.take().expect("model is present between steps");
        let lr = self.settings.lr_at(self.steps_done);
        let (model, loss) = if self.replicas.is_empty() {
            let loss = self.stage.loss(&model, batch);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            (self.optim.step(lr, model, grads), loss)
        } else {
            self.step_parallel(model, batch, lr)
        };
        self.ema = ema_update(self.ema.clone(), &model.valid(), self.settings.ema_at(self.steps_done));
        self.model = Some(model);
        self.steps_done += 1;
        loss.inner()
    }

    fn step_parallel(&mut self, model: S::Model, batch: Batch<B>, lr: f64) -> (S::Model, Tensor<B, 1>) {
        let b = batch.eps.dims()[0];
        let parts = self.replicas.len() + 1;
        let mut grads = MultiGradientsParams::default();
        let mut total = Tensor::<B, 1>::zeros([1], &self.device);
        let mut start = 0;
        for i in 0..parts {
            let len = (b - start) / (parts - i);
            if len == 0 {
                continue;
            }
            let (device, stage) = match i {
                0 => (&self.device, &self.stage),
                _ => (&self.replicas[i - 1].0, &self.replicas[i - 1].1),
            };
            let replica = if i == 0 { model.clone() } else { model.clone().fork(device) };
            let loss = stage.loss(&replica, batch.shard(start, len, device)) * (len as f64 / b as f64);
            grads.grads.push((GradientsParams::from_grads(loss.backward(), &replica), device.id()));
            total = total + loss.detach().to_device(&self.device);
            start += len;
        }
        (self.optim.step_multi(lr, model, grads), total)
    }
}

/// Reads every parameter once, which runs burn's lazy initialisers: clones made afterwards
/// share the values instead of drawing their own.
struct Touch;

impl<B: Backend> ModuleVisitor<B> for Touch {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

/// `module` with all its parameters initialised.
pub fn materialize<B: Backend, M: Module<B>>(module: M) -> M {
    module.visit(&mut Touch);
    module
}

/// Every float parameter, flattened, in visiting order.
struct Collect<B: Backend>(Vec<Tensor<B, 1>>);

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let n = param.val().shape().num_elements();
        self.0.push(param.val().reshape([n]));
    }
}

/// `ema <- rate ema + (1 - rate) new`, parameter by parameter.
struct Blend<B: Backend> {
    new: std::vec::IntoIter<Tensor<B, 1>>,
    rate: f64,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, old, mapper) = param.consume();
        let new = self.new.next().expect("EMA and model have the same parameters").reshape(old.shape());
        Param::from_mapped_value(id, old * self.rate + new * (1.0 - self.rate), mapper)
    }
}

/// One EMA update of `ema` towards `model` (same architecture).
pub fn ema_update<B: Backend, M: Module<B>>(ema: M, model: &M, rate: f64) -> M {
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    ema.map(&mut Blend { new: collect.0.into_iter(), rate })
}
