//! The host normal draws (`covariance::standard_normal`). A test binary of its own: the check
//! of reproducibility seeds the backend's global generator, which concurrent tests would draw
//! from in between.

use covdiff_model::backends::Cpu;

/// The host normal draws, made of independently seeded blocks: moments within Monte Carlo
/// error (4 standard errors), no correlation between neighbouring blocks, and the same numbers
/// for the same backend seed.
#[test]
fn host_normals_are_standard_and_reproducible() {
    use burn::tensor::backend::Backend;
    use covdiff_model::covariance::standard_normal;
    let dev = Default::default();
    Cpu::seed(&dev, 5);
    let z = standard_normal::<Cpu, 2>([3, 70_000], &dev).into_data().to_vec::<f32>().unwrap();
    let n = z.len() as f64;
    let mean = z.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = z.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let kurt = z.iter().map(|&v| (v as f64 - mean).powi(4)).sum::<f64>() / n / (var * var);
    assert!(mean.abs() < 4.0 / n.sqrt(), "mean {mean}");
    assert!((var - 1.0).abs() < 4.0 * (2.0 / n).sqrt(), "variance {var}");
    assert!((kurt - 3.0).abs() < 4.0 * (24.0 / n).sqrt(), "kurtosis {kurt}");
    // The first 8192 numbers of block 0 against those of block 1.
    let m = 8192;
    let corr = (0..m).map(|i| z[i] as f64 * z[m + i] as f64).sum::<f64>() / m as f64;
    assert!(corr.abs() < 4.0 / (m as f64).sqrt(), "neighbouring blocks correlate: {corr}");
    Cpu::seed(&dev, 5);
    let again = standard_normal::<Cpu, 2>([3, 70_000], &dev).into_data().to_vec::<f32>().unwrap();
    assert_eq!(z, again, "the same seed gives the same numbers");
}
