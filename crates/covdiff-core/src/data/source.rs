//! Named data sources: `fashion-mnist`, `idx:<path>`, `cifar10:<dir>`, `images:<dir>`.

use super::{load_cifar10, load_idx, load_image_folder, DataError, ImageSet};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where Debian's `dataset-fashion-mnist` installs Fashion-MNIST; the
/// environment variable `COVDIFF_FASHION_MNIST` overrides it.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// A data source named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// The built-in real dataset: Fashion-MNIST's 60k training images.
    FashionMnist,
    Idx(PathBuf),
    Cifar10(PathBuf),
    /// A folder of PNG/JPEG, resized to the given size (default 32).
    Images(PathBuf),
}

impl FromStr for DataSource {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        if s == "fashion-mnist" {
            return Ok(Self::FashionMnist);
        }
        let (kind, path) = s.split_once(':').ok_or_else(|| {
            DataError::Spec(format!(
                "unknown data source '{s}': use fashion-mnist, idx:<path>, cifar10:<dir> or images:<dir>"
            ))
        })?;
        if path.is_empty() {
            return Err(DataError::Spec(format!("data source '{s}' needs a path after '{kind}:'")));
        }
        let path = PathBuf::from(path);
        match kind {
            "idx" => Ok(Self::Idx(path)),
            "cifar10" => Ok(Self::Cifar10(path)),
            "images" => Ok(Self::Images(path)),
            _ => Err(DataError::Spec(format!("unknown data source kind '{kind}': use idx, cifar10 or images"))),
        }
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FashionMnist => f.write_str("fashion-mnist"),
            Self::Idx(p) => write!(f, "idx:{}", p.display()),
            Self::Cifar10(p) => write!(f, "cifar10:{}", p.display()),
            Self::Images(p) => write!(f, "images:{}", p.display()),
        }
    }
}

impl DataSource {
    /// Load the whole source. `images:` folders are resized to `image_size`.
    pub fn load(&self, image_size: usize) -> Result<ImageSet, DataError> {
        match self {
            Self::FashionMnist => {
                let dir = std::env::var_os("COVDIFF_FASHION_MNIST")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| FASHION_MNIST_DIR.into());
                let file = dir.join("train-images-idx3-ubyte.gz");
                if !file.exists() {
                    return Err(DataError::invalid(
                        &file,
                        "Fashion-MNIST is not installed: `apt-get install dataset-fashion-mnist`, or set COVDIFF_FASHION_MNIST",
                    ));
                }
                load_idx(&file)
            }
            Self::Idx(p) => load_idx(p),
            Self::Cifar10(p) => load_cifar10(p),
            Self::Images(p) => load_image_folder(p, image_size),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_print() {
        for s in ["fashion-mnist", "idx:/a/b.gz", "cifar10:/c", "images:d"] {
            assert_eq!(s.parse::<DataSource>().unwrap().to_string(), s);
        }
        for bad in ["mnist", "idx:", "png:/x"] {
            assert!(bad.parse::<DataSource>().is_err(), "{bad}");
        }
    }
}
