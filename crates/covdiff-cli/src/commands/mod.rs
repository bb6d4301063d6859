pub mod bench;
pub mod bench_model;
pub mod covariance;
pub mod data;
pub mod gff;
pub mod image;
pub mod schedule;
pub mod toy2d;
