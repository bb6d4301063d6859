//! Image data sources, each giving `[N, C, d, d]` in [-1, 1] plus labels
//! where they exist. Bad files give a [`DataError`] that names the file and,
//! where it applies, the byte offset; nothing here panics on input.

mod cifar;
mod idx;
mod images;
mod source;

pub use cifar::{cifar10_batch, load_cifar10};
pub use idx::{idx_images, load_idx, parse_idx, read_idx};
pub use images::{decode_image, load_image_folder};
pub use source::{DataSource, FASHION_MNIST_DIR};

use std::path::{Path, PathBuf};

/// Why data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: at byte offset {offset}: {msg}")]
    Format { path: PathBuf, offset: u64, msg: String },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error("{0}")]
    Spec(String),
}

impl DataError {
    pub(crate) fn format(path: &Path, offset: u64, msg: impl Into<String>) -> Self {
        Self::Format { path: path.to_path_buf(), offset, msg: msg.into() }
    }
    pub(crate) fn invalid(path: &Path, msg: impl Into<String>) -> Self {
        Self::Invalid { path: path.to_path_buf(), msg: msg.into() }
    }
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }
}

/// A set of square images, `[N, C, d, d]` channel-major, values in [-1, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    pub channels: usize,
    pub size: usize,
    pub pixels: Vec<f32>,
    pub labels: Option<Vec<u32>>,
}

impl ImageSet {
    /// From 8-bit pixels, mapped by `x / 127.5 - 1`.
    pub fn from_u8(channels: usize, size: usize, bytes: &[u8], labels: Option<Vec<u32>>) -> Self {
        let pixels = bytes.iter().map(|&b| b as f32 / 127.5 - 1.0).collect();
        Self { channels, size, pixels, labels }
    }

    /// `C d^2`.
    pub fn dim(&self) -> usize {
        self.channels * self.size * self.size
    }

    pub fn len(&self) -> usize {
        self.pixels.len().checked_div(self.dim()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn image(&self, i: usize) -> &[f32] {
        &self.pixels[i * self.dim()..(i + 1) * self.dim()]
    }

    /// Keep the first `n` images.
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.pixels.truncate(n * self.dim());
            if let Some(l) = &mut self.labels {
                l.truncate(n);
            }
        }
    }

    /// Per-channel mean and standard deviation over all images and pixels.
    pub fn channel_stats(&self) -> Vec<(f64, f64)> {
        let dd = self.size * self.size;
        (0..self.channels)
            .map(|c| {
                let (mut s, mut s2, mut count) = (0.0f64, 0.0f64, 0usize);
                for i in 0..self.len() {
                    for &x in &self.image(i)[c * dd..(c + 1) * dd] {
                        s += x as f64;
                        s2 += (x as f64).powi(2);
                        count += 1;
                    }
                }
                let m = s / count.max(1) as f64;
                (m, (s2 / count.max(1) as f64 - m * m).max(0.0).sqrt())
            })
            .collect()
    }

    /// Every image resampled to `size x size` (antialiased triangle filter).
    pub fn resized(&self, size: usize) -> ImageSet {
        if size == self.size {
            return self.clone();
        }
        let dd = self.size * self.size;
        let mut pixels = Vec::with_capacity(self.len() * self.channels * size * size);
        for i in 0..self.len() {
            for plane in self.image(i).chunks_exact(dd) {
                pixels.extend(resize_plane(plane, self.size, size));
            }
        }
        ImageSet { channels: self.channels, size, pixels, labels: self.labels.clone() }
    }
}

/// Resample a square plane from `from x from` to `to x to`.
pub fn resize_plane(plane: &[f32], from: usize, to: usize) -> Vec<f32> {
    let buf = image::ImageBuffer::<image::Luma<f32>, Vec<f32>>::from_raw(from as u32, from as u32, plane.to_vec())
        .expect("plane holds from x from values");
    let out = image::imageops::resize(&buf, to as u32, to as u32, image::imageops::FilterType::Triangle);
    out.into_raw()
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

/// A fresh scratch folder for a test.
#[cfg(test)]
pub(crate) fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("covdiff-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_resize() {
        let set = ImageSet::from_u8(1, 2, &[0, 255, 0, 255, 255, 255, 255, 255], None);
        assert_eq!(set.len(), 2);
        let st = set.channel_stats();
        assert!((st[0].0 - 0.5).abs() < 1e-6);
        assert!((st[0].1 - 0.75f64.sqrt()).abs() < 1e-6);
        let big = set.resized(4);
        assert_eq!(big.dim(), 16);
        assert_eq!(big.len(), 2);
        assert!(big.image(1).iter().all(|&x| (x - 1.0).abs() < 1e-6));
    }
}
