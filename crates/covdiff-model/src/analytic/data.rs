//! The empirical training distribution `X = {x0^i}` on the device, in chunks, so that a pass over
//! it streams and its memory per step stays O(chunk).

use super::AnalyticError;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use covdiff_core::data::ImageSet;

/// One chunk of training images: `[M, C, d, d]` flattened to `[M, n]`, and `||x0^i||^2`.
#[derive(Clone, Debug)]
pub struct Chunk<B: Backend> {
    /// `[M, n]`, channel-major per image.
    pub x: Tensor<B, 2>,
    /// `[1, M]`.
    pub sq: Tensor<B, 2>,
}

/// The training images, channels `C` of `d x d`, in chunks of at most `chunk` images.
#[derive(Clone, Debug)]
pub struct TrainingSet<B: Backend> {
    pub(crate) chunks: Vec<Chunk<B>>,
    channels: usize,
    size: usize,
    len: usize,
}

impl<B: Backend> TrainingSet<B> {
    /// From pixels `[N, C, d, d]` (row-major, values in [-1, 1]).
    pub fn from_pixels(
        pixels: &[f32],
        channels: usize,
        size: usize,
        chunk: usize,
        device: &B::Device,
    ) -> Result<Self, AnalyticError> {
        let n = channels * size * size;
        if n == 0 || !pixels.len().is_multiple_of(n) {
            return Err(AnalyticError::Shape { got: pixels.len(), channels, size });
        }
        if pixels.is_empty() {
            return Err(AnalyticError::EmptySet);
        }
        if chunk == 0 {
            return Err(AnalyticError::Invalid("the chunk size must be positive".into()));
        }
        if let Some(bad) = pixels.iter().find(|x| !x.is_finite()) {
            return Err(AnalyticError::Invalid(format!("the training set holds a non-finite value ({bad})")));
        }
        let chunks = pixels
            .chunks(chunk * n)
            .map(|rows| {
                let m = rows.len() / n;
                let sq: Vec<f32> = rows.chunks(n).map(|r| r.iter().map(|v| v * v).sum()).collect();
                Chunk {
                    x: Tensor::from_data(TensorData::new(rows.to_vec(), [m, n]), device),
                    sq: Tensor::from_data(TensorData::new(sq, [1, m]), device),
                }
            })
            .collect();
        Ok(Self { chunks, channels, size, len: pixels.len() / n })
    }

    /// From a loaded [`ImageSet`].
    pub fn from_images(set: &ImageSet, chunk: usize, device: &B::Device) -> Result<Self, AnalyticError> {
        Self::from_pixels(&set.pixels, set.channels, set.size, chunk, device)
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// `C d^2`.
    pub fn dim(&self) -> usize {
        self.channels * self.size * self.size
    }

    /// The number of images `N`.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunks, in order.
    pub fn chunks(&self) -> &[Chunk<B>] {
        &self.chunks
    }
}
