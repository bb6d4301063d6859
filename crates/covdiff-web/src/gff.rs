//! The GFF explorer's CPU path: a GFF plane, a white-noise plane from the same seed, their
//! radially averaged power spectra and slopes, and a slice of the GFF covariance.

use crate::js_error;
use covdiff_core::gff::{log_log_slope, radial_power_spectrum, ring_means, Gff};
use rand::{rngs::StdRng, SeedableRng};
use wasm_bindgen::prelude::*;

/// What the GFF panel draws.
#[wasm_bindgen(getter_with_clone)]
pub struct GffPreview {
    /// The GFF plane, `d x d`, unit variance per pixel.
    pub field: Vec<f32>,
    /// White noise of the same size.
    pub white: Vec<f32>,
    /// `Sigma[c, :]` for the centre pixel `c`, as a `d x d` image (1 at the centre).
    pub slice: Vec<f32>,
    /// The rings `|k|` of the spectra.
    pub k: Vec<f32>,
    pub power_field: Vec<f32>,
    pub power_white: Vec<f32>,
    /// The exact spectrum's ring means (what `power_field` estimates).
    pub power_exact: Vec<f32>,
    /// Least-squares log-log slopes (NaN when undefined).
    pub slope_field: f64,
    pub slope_white: f64,
    pub slope_exact: f64,
}

/// A GFF preview of size `d` with power `gamma`, from `seed`.
#[wasm_bindgen]
pub fn gff_preview(d: usize, gamma: f64, seed: u32) -> Result<GffPreview, JsError> {
    if !(2..=512).contains(&d) {
        return Err(JsError::new(&format!("the GFF size must be between 2 and 512, got {d}")));
    }
    let gff = Gff::new(d, gamma).map_err(js_error)?;
    let mut rng = StdRng::seed_from_u64(u64::from(seed));
    let field = gff.sample(&mut rng);
    let white = Gff::new(d, 0.0).map_err(js_error)?.sample(&mut rng);
    let mut e = vec![0.0; d * d];
    e[(d / 2) * d + d / 2] = 1.0;
    let slice = gff.cov_apply(&e);
    let spectrum = |x: &[f64]| radial_power_spectrum(x, d).map_err(js_error);
    let (k, power_field, slope_field) = columns(&spectrum(&field)?);
    let (_, power_white, slope_white) = columns(&spectrum(&white)?);
    let (_, power_exact, slope_exact) = columns(&ring_means(gff.eigenvalues(), d));
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    Ok(GffPreview {
        field: f32s(&field),
        white: f32s(&white),
        slice: f32s(&slice),
        k,
        power_field,
        power_white,
        power_exact,
        slope_field,
        slope_white,
        slope_exact,
    })
}

/// `(|k|, power)` pairs as two `f32` columns, with their log-log slope (NaN when undefined).
fn columns(s: &[(f64, f64)]) -> (Vec<f32>, Vec<f32>, f64) {
    let k = s.iter().map(|p| p.0 as f32).collect();
    let power = s.iter().map(|p| p.1 as f32).collect();
    (k, power, log_log_slope(s).unwrap_or(f64::NAN))
}

/// The radial power spectrum of a plane (e.g. the WGSL shader's output) and its log-log slope.
#[wasm_bindgen(getter_with_clone)]
pub struct Spectrum {
    pub k: Vec<f32>,
    pub power: Vec<f32>,
    pub slope: f64,
}

/// The radially averaged power spectrum of a `d x d` plane and its log-log slope.
#[wasm_bindgen]
pub fn power_spectrum(values: &[f32], d: usize) -> Result<Spectrum, JsError> {
    let x: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
    let (k, power, slope) = columns(&radial_power_spectrum(&x, d).map_err(js_error)?);
    Ok(Spectrum { k, power, slope })
}
