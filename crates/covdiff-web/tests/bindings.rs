//! The bindings in a real browser (wasm-bindgen-test in headless Chromium, run by
//! `scripts/web-test.sh`): the CPU engine samples every column of the shipped weights, seeds
//! reproduce, bad bytes and bad arguments give errors with covdiff's messages, the GFF preview's
//! spectrum has the power law's slope, the 2D playground trains and samples, and the WebGPU engine
//! runs where the browser has an adapter.
#![cfg(target_arch = "wasm32")]

use covdiff_web::{gff_preview, power_spectrum, toy_datasets, Engine, Model, Playground};
use wasm_bindgen::{JsError, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const KDCT: &[u8] = include_bytes!("../../../weights/fashion-mnist-kdct.safetensors");

fn message(e: JsError) -> String {
    js_sys::Error::from(JsValue::from(e)).message().into()
}

fn load(engine: &Engine, bytes: &[u8]) -> Model {
    engine.load(bytes).map_err(message).expect("the shipped weights load")
}

async fn sample(model: &Model, sampler: &str, steps: usize, seed: u32) -> Vec<f32> {
    let mut run = model.start(sampler, steps, seed, 2).map_err(message).expect("a run starts");
    assert_eq!(run.total_steps(), steps);
    while !run.finished() {
        run.step().map_err(message).expect("a step");
    }
    assert!(run.step().is_err(), "a step after the last is an error");
    run.sample().await.map_err(message).expect("the samples read back")
}

#[wasm_bindgen_test]
async fn cpu_engine_samples_every_column_reproducibly() {
    let engine = Engine::cpu();
    assert_eq!(engine.kind(), "cpu");
    let model = load(&engine, KDCT);
    assert_eq!((model.name().as_str(), model.channels(), model.size(), model.learned()), ("kdct-npr", 1, 28, true));
    let mut columns = Vec::new();
    for sampler in ["beta-tilde", "ddim", "kdct"] {
        let x = sample(&model, sampler, 3, 7).await;
        assert_eq!(x.len(), 2 * 28 * 28);
        assert!(x.iter().all(|v| v.is_finite() && v.abs() <= 1.5), "{sampler}: values out of bounds");
        columns.push(x);
    }
    // The same seed gives the same samples; another seed or another covariance does not.
    assert_eq!(sample(&model, "kdct", 3, 7).await, columns[2]);
    let other = sample(&model, "kdct", 3, 8).await;
    let differ = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(differ(&other, &columns[2]) > 0.1);
    assert!(differ(&columns[0], &columns[2]) > 0.1, "K-DCT equals beta-tilde");
}

#[wasm_bindgen_test]
fn bad_bytes_and_arguments_are_errors_with_reasons() {
    let engine = Engine::cpu();
    let truncated = message(engine.load(&KDCT[..1000]).err().expect("truncated bytes are refused"));
    assert!(truncated.contains("truncated"), "{truncated}");
    let foreign = message(engine.load(b"not a weights file").err().expect("foreign bytes are refused"));
    assert!(foreign.contains("safetensors"), "{foreign}");
    let model = load(&engine, KDCT);
    let unknown = message(model.start("nonsense", 10, 0, 1).err().expect("an unknown sampler is refused"));
    assert!(unknown.contains("no sampler 'nonsense'"), "{unknown}");
    assert!(model.start("kdct", 0, 0, 1).is_err());
    assert!(model.start("kdct", 10, 0, 0).is_err());
    let run = model.start("kdct", 1, 0, 1).map_err(message).unwrap();
    assert!(run.next_t() > 0);
}

#[wasm_bindgen_test]
fn gff_preview_has_the_power_law_spectrum() {
    let p = gff_preview(64, 1.0, 3).map_err(message).unwrap();
    assert_eq!((p.field.len(), p.white.len(), p.slice.len()), (64 * 64, 64 * 64, 64 * 64));
    // The exact spectrum's slope is -2 gamma up to the rings' binning; one sample's is close.
    assert!((p.slope_exact + 2.0).abs() < 0.1, "exact slope {}", p.slope_exact);
    assert!((p.slope_field - p.slope_exact).abs() < 0.3, "sample slope {}", p.slope_field);
    assert!(p.slope_white.abs() < 0.3, "white slope {}", p.slope_white);
    // The slice is a covariance row: 1 (unit variance) at the centre pixel.
    assert!((p.slice[32 * 64 + 32] - 1.0).abs() < 1e-4);
    // The same spectrum from the f32 plane as from the f64 one inside the preview.
    let s = power_spectrum(&p.field, 64).map_err(message).unwrap();
    assert!(s.power.iter().zip(&p.power_field).all(|(a, b)| (a - b).abs() <= 1e-5 * b.abs()));
    assert!(gff_preview(1, 1.0, 0).is_err());
    assert!(gff_preview(64, -1.0, 0).is_err());
    assert!(power_spectrum(&p.field, 63).is_err());
}

#[wasm_bindgen_test]
fn playground_trains_and_samples_in_the_browser() {
    assert!(toy_datasets().contains(&"swiss-roll".to_string()));
    let refused = |r: Result<Playground, JsError>| message(r.err().expect("refused"));
    assert!(refused(Playground::new("spiral", 0, 64, 1e-3)).contains("spiral"));
    assert!(Playground::new("moons", 0, 0, 1e-3).is_err());
    assert!(Playground::new("moons", 0, 64, f64::NAN).is_err());

    let mut pg = Playground::new("moons", 1, 128, 2e-3).map_err(message).unwrap();
    let data = pg.data_points(100);
    assert_eq!(data.len(), 200);
    let mut first = Vec::new();
    let mut last = Vec::new();
    for step in 0..200 {
        let losses = pg.step().map_err(message).unwrap();
        assert_eq!(losses.len(), 4);
        if step < 20 {
            first.push(losses[2]);
        } else if step >= 180 {
            last.push(losses[2]);
        }
    }
    assert_eq!(pg.steps_done(), 200);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    // L_simple starts near 2 (eps has two unit components) and falls as the network learns.
    assert!(mean(&last) < mean(&first) - 0.3, "principled L_simple {} -> {}", mean(&first), mean(&last));

    let a = pg.sample("principled", 20, 1.0, 500, 7).map_err(message).unwrap();
    let b = pg.sample("principled", 20, 1.0, 500, 7).map_err(message).unwrap();
    let c = pg.sample("beta-tilde", 20, 1.0, 500, 7).map_err(message).unwrap();
    assert_eq!(a, b, "a seed reproduces the samples");
    assert!(a.iter().zip(&c).any(|(x, y)| (x - y).abs() > 1e-3), "full and scalar covariance coincide");
    assert!(a.iter().all(|v| v.is_finite() && v.abs() < 10.0));
    // The data are standardised: the samples' spread is of order one after 200 steps.
    let var = a.iter().step_by(2).map(|v| f64::from(*v).powi(2)).sum::<f64>() / 500.0;
    assert!(var > 0.3 && var < 3.0, "sample variance {var}");
    assert!(pg.sample("thesis", 20, 1.0, 10, 0).is_ok());
    assert!(pg.sample("cholesky", 20, 1.0, 10, 0).is_err());
    assert!(pg.sample("principled", 0, 1.0, 10, 0).is_err());
    assert!(pg.sample("principled", 20, -1.0, 10, 0).is_err());

    // Cov[x0 | x_t] is symmetric positive definite and grows with t.
    let small = pg.x0_covariances(&a[..20], 5).map_err(message).unwrap();
    let large = pg.x0_covariances(&a[..20], 400).map_err(message).unwrap();
    for (s, l) in small.chunks(3).zip(large.chunks(3)) {
        assert!(s[0] > 0.0 && s[2] > 0.0 && s[0] * s[2] > s[1] * s[1], "{s:?}");
        assert!(l[0] + l[2] > s[0] + s[2], "trace at t=400 {} vs t=5 {}", l[0] + l[2], s[0] + s[2]);
    }
    assert!(pg.x0_covariances(&a[..3], 5).is_err());
    assert!(pg.x0_covariances(&a[..20], 0).is_err());
    assert!(pg.x0_covariances(&[f32::NAN, 0.0], 5).is_err());
}

/// Where the browser gives a WebGPU adapter (Chromium with `--enable-unsafe-webgpu`, see
/// `webdriver.json`), the WebGPU engine samples too; without one the test says so and passes.
#[wasm_bindgen_test]
async fn webgpu_engine_samples_where_there_is_an_adapter() {
    let gpu = js_sys::Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| js_sys::Reflect::get(&n, &"gpu".into()))
        .unwrap_or(JsValue::UNDEFINED);
    let adapter = match gpu.is_undefined() {
        true => JsValue::NULL,
        false => {
            let request = js_sys::Reflect::get(&gpu, &"requestAdapter".into()).unwrap();
            let promise = js_sys::Function::from(request).call0(&gpu).unwrap();
            wasm_bindgen_futures::JsFuture::from(js_sys::Promise::from(promise)).await.unwrap_or(JsValue::NULL)
        }
    };
    if adapter.is_null() || adapter.is_undefined() {
        console_log!("this browser gives no WebGPU adapter: the WebGPU engine is not tested here");
        return;
    }
    let engine = Engine::webgpu("test".into()).await;
    assert_eq!(engine.kind(), "webgpu");
    let model = load(&engine, KDCT);
    let x = sample(&model, "kdct", 2, 0).await;
    assert!(x.iter().all(|v| v.is_finite() && v.abs() <= 1.5));
    let mean = x.iter().sum::<f32>() / x.len() as f32;
    assert!(mean > -0.95 && mean < 0.5, "mean {mean}");
}
