//! The toy 2D model card: what a trained model is and how it was trained, written as JSON beside
//! its weights. It rebuilds the networks and loads the weights from bytes (the browser's way as
//! well as the CLI's), and checks itself first: a card is user input, so a bad one is an error,
//! never a panic.

use super::network::{Toy2dConfig, Toy2dModel};
use burn::module::{Module, ModuleVisitor, Param};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::{backend::Backend, Tensor};
use covdiff_core::schedule::{Schedule, ScheduleTable, Sigmoid};
use covdiff_core::Error;
use serde::{Deserialize, Serialize};

/// Everything needed to rebuild a trained toy 2D model.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ModelCard {
    pub data: String,
    pub points: usize,
    pub jitter: f64,
    pub conditional: bool,
    pub classes: usize,
    pub schedule: String,
    pub schedule_steps: usize,
    pub objective: String,
    pub kl_weight: f64,
    pub train_steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
    pub hidden: usize,
    pub layers: usize,
    pub final_loss: f64,
    pub train_seconds: f64,
    /// The weights file (named MessagePack), relative to the card.
    pub weights: String,
}

impl ModelCard {
    /// A card from its JSON text, checked ([`ModelCard::check`]).
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let card: Self = serde_json::from_str(text).map_err(|e| Error::invalid("toy2d model card", e.to_string()))?;
        card.check()?;
        Ok(card)
    }

    /// The networks' shape and the schedule are buildable.
    pub fn check(&self) -> Result<(), Error> {
        if self.hidden == 0 || self.layers == 0 {
            return Err(Error::invalid("toy2d model card", "hidden and layers must be positive"));
        }
        if self.conditional && self.classes == 0 {
            return Err(Error::invalid("toy2d model card", "a conditional model needs classes"));
        }
        self.table().map(|_| ())
    }

    /// The networks' shape.
    pub fn config(&self) -> Toy2dConfig {
        let classes = if self.conditional { self.classes } else { 0 };
        Toy2dConfig::new().with_hidden(self.hidden).with_layers(self.layers).with_classes(classes)
    }

    /// The thesis' sigmoid schedule the model was trained on.
    pub fn table(&self) -> Result<ScheduleTable, Error> {
        if self.schedule != "sigmoid" {
            return Err(Error::unknown("toy2d schedule", &self.schedule, "sigmoid"));
        }
        if !(10..=100_000).contains(&self.schedule_steps) {
            return Err(Error::invalid(
                "toy2d schedule steps",
                format!("{} is not between 10 and 100000", self.schedule_steps),
            ));
        }
        Ok(Sigmoid { steps: self.schedule_steps, ..Default::default() }.table())
    }

    /// The model this card describes, with its weights read from `bytes` (the `.mpk` file).
    pub fn load<B: Backend>(&self, bytes: Vec<u8>, device: &B::Device) -> Result<Toy2dModel<B>, Error> {
        self.check()?;
        let record = NamedMpkBytesRecorder::<FullPrecisionSettings>::default()
            .load(bytes, device)
            .map_err(|e| Error::invalid("toy2d weights", format!("unreadable or not this model's: {e}")))?;
        let fresh = self.config().init::<B>(device);
        let expected = shapes(&fresh);
        let model = fresh.load_record(record);
        // burn's `load_record` takes the recorded tensors whatever their shapes.
        if shapes(&model) != expected {
            return Err(Error::invalid("toy2d weights", "their tensors' shapes do not fit the card's networks"));
        }
        Ok(model)
    }
}

/// The shapes of a module's parameters, in visiting order.
fn shapes<B: Backend, M: Module<B>>(module: &M) -> Vec<Vec<usize>> {
    struct Shapes(Vec<Vec<usize>>);
    impl<B: Backend> ModuleVisitor<B> for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.shape().dims::<D>().to_vec());
        }
    }
    let mut visitor = Shapes(Vec::new());
    module.visit(&mut visitor);
    visitor.0
}
