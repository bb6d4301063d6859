//! `covdiff classifier`: train the small CNN whose penultimate features
//! define FD, precision and recall; and the feature extraction `eval` uses.

use super::config::load_images;
use crate::checkpoint::{load_error, recorder};
use crate::device::BackendJob;
use crate::progress::bar;
use anyhow::{ensure, Context, Result};
use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{backend::Backend, ElementConversion, Int, Tensor, TensorData};
use covdiff_core::data::ImageSet;
use covdiff_model::classifier::{Classifier, ClassifierConfig};
use rand::{rngs::StdRng, RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Labelled training images: fashion-mnist, idx:<file> (labels beside it) or cifar10:<dir>.
    #[arg(long, default_value = "fashion-mnist")]
    data: String,
    /// Resize to this size (0 keeps the source's); must match the diffusion models it will judge.
    #[arg(long, default_value_t = 0)]
    size: usize,
    #[arg(long, default_value_t = 600)]
    steps: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output stem: <out>.mpk (weights) and <out>.json (card, with held-out accuracy).
    #[arg(long, default_value = "runs/classifier")]
    out: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassifierCard {
    pub config: ClassifierConfig,
    pub data: String,
    pub size: usize,
    pub steps: usize,
    pub held_out_accuracy: f64,
    pub held_out_images: usize,
}

fn batch_tensor<B: Backend>(set: &ImageSet, idx: &[usize], device: &B::Device) -> Tensor<B, 4> {
    let mut px = Vec::with_capacity(idx.len() * set.dim());
    for &i in idx {
        px.extend_from_slice(set.image(i));
    }
    Tensor::from_data(TensorData::new(px, [idx.len(), set.channels, set.size, set.size]), device)
}

impl BackendJob for Args {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        ensure!(self.steps > 0 && self.batch > 0 && self.lr > 0.0, "--steps, --batch and --lr must be positive");
        let set = load_images(&self.data, self.size, 0)?;
        let labels =
            set.labels.clone().with_context(|| format!("{} has no labels to train a classifier on", self.data))?;
        let classes = *labels.iter().max().unwrap_or(&0) as usize + 1;
        ensure!(classes >= 2, "a classifier needs at least two classes");
        // The last tenth is held out.
        let held = (set.len() / 10).max(1);
        let train_n = set.len() - held;
        ensure!(train_n > 0, "too few images");
        let config = ClassifierConfig::new(set.channels, classes);
        covdiff_model::normals::seed::<B>(&device, self.seed);
        let mut model = config.init::<Autodiff<B>>(&device);
        let mut optim = AdamConfig::new().init();
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let mut rng = StdRng::seed_from_u64(self.seed);
        let pb = bar(self.steps as u64, "classifier");
        for step in 0..self.steps {
            let idx: Vec<usize> = (0..self.batch).map(|_| rng.random_range(0..train_n)).collect();
            let x = batch_tensor::<Autodiff<B>>(&set, &idx, &device);
            let y: Vec<i64> = idx.iter().map(|&i| labels[i] as i64).collect();
            let y = Tensor::<Autodiff<B>, 1, Int>::from_data(TensorData::new(y, [idx.len()]), &device);
            let loss = loss_fn.forward(model.forward(x), y);
            if step % 50 == 0 {
                pb.set_message(format!("loss {:.3}", loss.clone().into_scalar().elem::<f64>()));
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = self.lr * (0.5 * (1.0 + (std::f64::consts::PI * step as f64 / self.steps as f64).cos())).max(0.02);
            model = optim.step(lr, model, grads);
            pb.inc(1);
        }
        pb.finish_and_clear();
        let model = model.valid();
        let mut correct = 0usize;
        for start in (train_n..set.len()).step_by(256) {
            let idx: Vec<usize> = (start..(start + 256).min(set.len())).collect();
            let pred = model.forward(batch_tensor::<B>(&set, &idx, &device)).argmax(1);
            let pred: Vec<i64> = pred.into_data().convert::<i64>().to_vec().map_err(|e| anyhow::anyhow!("{e:?}"))?;
            correct += idx.iter().zip(pred).filter(|(i, p)| labels[**i] as i64 == *p).count();
        }
        let accuracy = correct as f64 / held as f64;
        let card = ClassifierCard {
            config,
            data: self.data.clone(),
            size: set.size,
            steps: self.steps,
            held_out_accuracy: accuracy,
            held_out_images: held,
        };
        if let Some(dir) = self.out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        model.save_file(self.out.clone(), &recorder()).with_context(|| format!("writing {}", self.out.display()))?;
        std::fs::write(self.out.with_extension("json"), serde_json::to_string_pretty(&card)? + "\n")?;
        println!(
            "classifier: {:.1}% on {held} held-out images; wrote {}.mpk and {}.json",
            100.0 * accuracy,
            self.out.display(),
            self.out.display()
        );
        Ok(())
    }
}

/// A trained classifier as a feature extractor.
pub struct Features<B: Backend> {
    model: Classifier<B>,
    pub card: ClassifierCard,
}

impl<B: Backend> Features<B> {
    /// Load `<stem>.mpk` and `<stem>.json` (`stem` may carry either extension).
    pub fn load(stem: &Path, device: &B::Device) -> Result<Self> {
        let stem = stem.with_extension("");
        let card_path = stem.with_extension("json");
        let card: ClassifierCard = serde_json::from_str(
            &std::fs::read_to_string(&card_path).with_context(|| format!("reading {}", card_path.display()))?,
        )
        .with_context(|| format!("{} is not a classifier card", card_path.display()))?;
        let model = card
            .config
            .init::<B>(device)
            .load_file(stem.clone(), &recorder(), device)
            .map_err(|e| load_error(&stem, "classifier", e))?;
        Ok(Self { model, card })
    }

    /// Features of flat images `[N, C, d, d]`, in batches.
    pub fn of(&self, pixels: &[f32], shape: [usize; 3], device: &B::Device) -> Result<Vec<f64>> {
        let dim = shape.iter().product::<usize>();
        let mut out = Vec::new();
        for chunk in pixels.chunks(256 * dim) {
            let n = chunk.len() / dim;
            let x =
                Tensor::<B, 4>::from_data(TensorData::new(chunk.to_vec(), [n, shape[0], shape[1], shape[2]]), device);
            let f: Vec<f32> =
                self.model.features(x).into_data().convert::<f32>().to_vec().map_err(|e| anyhow::anyhow!("{e:?}"))?;
            out.extend(f.into_iter().map(f64::from));
        }
        Ok(out)
    }

    pub fn dim(&self) -> usize {
        2 * self.card.config.width
    }
}
