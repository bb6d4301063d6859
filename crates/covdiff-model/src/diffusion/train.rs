//! The trainer shared by images and toy 2D, one step at a time: a [`Stage`] says what is
//! optimised (the UNet by `L_simple`, covariance heads on a frozen UNet, the 2D MLPs), and
//! [`Trainer`] draws the batches, steps the optimiser and keeps the EMA.
//!
//! Batches of step `k` come from a generator seeded by `(seed, k)`, on the host, so a run
//! restored from a checkpoint continues exactly as if it had never stopped. AdamW with
//! per-parameter gradient-norm clipping (burn's `GradientClippingConfig::Norm`), a warm-up and an
//! optional cosine decay of the learning rate, and an EMA of the weights.

use super::noise::ForwardNoise;
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{
    adaptor::OptimizerAdaptor, grad_clipping::GradientClippingConfig, AdamW, AdamWConfig, GradientsParams,
    MultiGradientsParams, Optimizer,
};
use burn::tensor::backend::DeviceOps;
use burn::tensor::{backend::AutodiffBackend, backend::Backend, Int, Tensor, TensorData};
use covdiff_core::data::ImageSet;
use covdiff_core::schedule::ScheduleTable;
use rand::{rngs::StdRng, RngExt, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

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
    /// Steps of a cosine decay of the learning rate to 1% of `lr` after the warm-up; 0 keeps it
    /// constant.
    pub decay_steps: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            batch: 32,
            lr: 2e-4,
            weight_decay: 0.0,
            warmup: 100,
            grad_clip: 1.0,
            ema: 0.999,
            seed: 0,
            decay_steps: 0,
        }
    }
}

impl Settings {
    pub fn lr_at(&self, step: usize) -> f64 {
        let warm = ((step + 1) as f64 / self.warmup.max(1) as f64).min(1.0);
        if self.decay_steps == 0 {
            return self.lr * warm;
        }
        let u = (step as f64 / self.decay_steps as f64).min(1.0);
        self.lr * warm * (0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * u).cos()))
    }

    /// 0 when `ema` is 0: the EMA is then the model itself.
    pub fn ema_at(&self, step: usize) -> f64 {
        self.ema.min((1 + step) as f64 / (10 + step) as f64)
    }

    fn optimizer<B: AutodiffBackend, M: AutodiffModule<B>>(&self) -> OptimizerAdaptor<AdamW, M, B> {
        let clip = (self.grad_clip > 0.0).then_some(GradientClippingConfig::Norm(self.grad_clip as f32));
        AdamWConfig::new().with_weight_decay(self.weight_decay as f32).with_grad_clipping(clip).init()
    }
}

/// What a trainer draws its examples from: `len` examples, each `shape = [C, H, W]` values in the
/// model's units (images in [-1, 1]; 2D points as `[2, 1, 1]`), with optional class labels.
pub trait TrainingData: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn shape(&self) -> [usize; 3];
    /// Appends example `i` to `out`.
    fn extend(&self, i: usize, out: &mut Vec<f32>);
    /// Example `i`'s class, where the data is labelled.
    fn label(&self, i: usize) -> Option<usize>;
}

impl TrainingData for ImageSet {
    fn len(&self) -> usize {
        ImageSet::len(self)
    }
    fn shape(&self) -> [usize; 3] {
        [self.channels, self.size, self.size]
    }
    fn extend(&self, i: usize, out: &mut Vec<f32>) {
        out.extend_from_slice(self.image(i));
    }
    fn label(&self, i: usize) -> Option<usize> {
        self.labels.as_ref().map(|l| l[i] as usize)
    }
}

/// One training batch: `x_t = sqrt(abar) x_0 + sqrt(bbar) Sigma^1/2 eps`.
pub struct Batch<B: Backend> {
    /// The examples' class labels, where the data has them.
    pub labels: Option<Tensor<B, 1, Int>>,
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
    /// The stage and the model do not go together (e.g. SN with non-diagonal heads).
    #[error("{0}")]
    Incompatible(String),
}

/// A stage's loss: the total it optimises, and named terms (detached) for the logs.
pub struct Loss<B: AutodiffBackend> {
    pub total: Tensor<B, 1>,
    pub terms: Vec<(&'static str, Tensor<B::InnerBackend, 1>)>,
}

impl<B: AutodiffBackend> From<Tensor<B, 1>> for Loss<B> {
    fn from(total: Tensor<B, 1>) -> Self {
        Self { total, terms: Vec::new() }
    }
}

/// What one optimiser step reports: the loss and its terms, unread.
pub struct StepLosses<B: Backend> {
    pub total: Tensor<B, 1>,
    pub terms: Vec<(&'static str, Tensor<B, 1>)>,
}

/// What a training stage optimises.
pub trait Stage<B: AutodiffBackend>: Sized {
    type Model: AutodiffModule<B> + Clone;
    /// Whether this stage can train `model` ([`Trainer::new`] asks before anything runs).
    fn check(&self, _model: &Self::Model) -> Result<(), StageError> {
        Ok(())
    }
    /// The mean loss over the batch, and the terms it is made of.
    fn loss(&self, model: &Self::Model, batch: Batch<B>) -> Loss<B>;
    /// The stage with its frozen parts on `device`, for data parallelism.
    fn to_device(&self, device: &B::Device) -> Self;
}

impl<B: Backend> Batch<B> {
    /// Images `start..start + len`, on `device`.
    fn shard(&self, start: usize, len: usize, device: &B::Device) -> Self {
        let cut4 = |t: &Tensor<B, 4>| t.clone().narrow(0, start, len).to_device(device);
        let cut1 = |t: &Tensor<B, 1>| t.clone().narrow(0, start, len).to_device(device);
        Batch {
            labels: self.labels.as_ref().map(|l| l.clone().narrow(0, start, len).to_device(device)),
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
    data: Arc<dyn TrainingData>,
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
        data: Arc<dyn TrainingData>,
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
        let [c, h, w] = self.data.shape();
        let (b, dim) = (self.settings.batch, c * h * w);
        let mut x0 = Vec::with_capacity(b * dim);
        let mut ts = Vec::with_capacity(b);
        let mut labels = Vec::with_capacity(b);
        for _ in 0..b {
            let i = rng.random_range(0..self.data.len());
            self.data.extend(i, &mut x0);
            labels.extend(self.data.label(i).map(|l| l as i64));
            ts.push(rng.random_range(1..=self.table.steps()));
        }
        let eps: Vec<f32> = (0..b * dim).map(|_| rng.sample::<f32, _>(StandardNormal)).collect();
        let shape = [b, c, h, w];
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
            labels: (labels.len() == b).then(|| Tensor::from_data(TensorData::new(labels, [b]), dev)),
            x0,
            eps,
            x_t,
            t: per_image(&|t| t as f64),
            sqrt_bbar: sb,
            seed: rng.random(),
            noise: self.noise.clone(),
        }
    }

    /// One optimiser step; returns the losses, unread.
    pub fn step(&mut self) -> StepLosses<B::InnerBackend> {
        let batch = self.batch(self.steps_done);
        let model = self.model.take().expect("model is present between steps");
        let lr = self.settings.lr_at(self.steps_done);
        let (model, loss) = if self.replicas.is_empty() {
            let loss = self.stage.loss(&model, batch);
            let grads = GradientsParams::from_grads(loss.total.backward(), &model);
            let terms = loss.terms;
            (self.optim.step(lr, model, grads), StepLosses { total: loss.total.inner(), terms })
        } else {
            self.step_parallel(model, batch, lr)
        };
        let rate = self.settings.ema_at(self.steps_done);
        self.ema = if rate == 0.0 { model.valid() } else { ema_update(self.ema.clone(), &model.valid(), rate) };
        self.model = Some(model);
        self.steps_done += 1;
        loss
    }

    fn step_parallel(&mut self, model: S::Model, batch: Batch<B>, lr: f64) -> (S::Model, StepLosses<B::InnerBackend>) {
        let b = batch.eps.dims()[0];
        let parts = self.replicas.len() + 1;
        let mut grads = MultiGradientsParams::default();
        let mut sum = StepLosses { total: Tensor::zeros([1], &self.device), terms: Vec::new() };
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
            let share = len as f64 / b as f64;
            let loss = stage.loss(&replica, batch.shard(start, len, device));
            let total = loss.total * share;
            grads.grads.push((GradientsParams::from_grads(total.backward(), &replica), device.id()));
            sum.total = sum.total + total.inner().to_device(&self.device);
            for (k, (name, term)) in loss.terms.into_iter().enumerate() {
                let term = term.to_device(&self.device) * share;
                match sum.terms.get_mut(k) {
                    Some((_, acc)) => *acc = acc.clone() + term,
                    None => sum.terms.push((name, term)),
                }
            }
            start += len;
        }
        (self.optim.step_multi(lr, model, grads), sum)
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
