//! covdiff-core: the framework-free mathematics and I/O of covdiff.
//!
//! Everything here follows `docs/maths.md`; equations are cited where they
//! are implemented. Nothing here depends on burn.

pub mod data;
pub mod dct;
pub mod dense;
pub mod error;
pub mod figure;
pub mod font;
pub mod gaussian;
pub mod gff;
pub mod likelihood;
pub mod locality;
pub mod metrics;
pub mod normals;
pub mod npy;
pub mod schedule;
pub mod skip_step;
pub mod structure;
pub mod svg;
pub mod toy2d;
pub mod trajectory;

pub use error::Error;
