//! covdiff in the browser: thin wasm-bindgen bindings over `covdiff-model` and `covdiff-core`.
//! No maths lives here; the page (`index.html`, `web/app.js`) drives these types.
//!
//! - [`Engine`]: the backend, WebGPU through burn-wgpu (initialised asynchronously) or burn's
//!   flex CPU backend compiled for wasm32 when the browser has no WebGPU adapter.
//! - [`Model`]: a weights file (fetched bytes) turned into a `Pipeline`; [`Run`]: one sampler,
//!   stepped by the page so that it can yield, show progress and `x0_hat` between steps.
//! - [`gff_preview`]: GFF noise against white noise with its radial power spectrum (the CPU
//!   path; `shaders/gff.wgsl` is the GPU one).
//! - [`Playground`]: the 2D models, trained in the page and sampled with scalar or full covariance.
//!
//! Every fallible call returns a JS `Error` with covdiff's own message; a panic is handed to the
//! page's `globalThis.covdiffPanic(message)` (installed by [`start`]) so that it is shown, not lost.

mod engine;
mod gff;
mod playground;
mod run;

pub use engine::{Engine, Model};
pub use gff::{gff_preview, power_spectrum, GffPreview, Spectrum};
pub use playground::{toy_datasets, Playground};
pub use run::Run;

use wasm_bindgen::prelude::*;

/// Installs the panic hook: the message goes to `globalThis.covdiffPanic` when the page defines
/// it, and to the console's error log in any case.
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        let message = format!("covdiff panicked: {info}");
        let global = js_sys::global();
        if let Ok(f) = js_sys::Reflect::get(&global, &JsValue::from_str("covdiffPanic")) {
            if let Some(f) = f.dyn_ref::<js_sys::Function>() {
                let _ = f.call1(&JsValue::NULL, &JsValue::from_str(&message));
            }
        }
        console_error(&message);
    }));
}

/// Panics with `message`, on purpose: the page's end-to-end test calls it to check that a panic
/// reaches the page through the hook that [`start`] installs. Nothing else calls it.
#[wasm_bindgen]
pub fn check_panic_hook(message: &str) {
    panic!("{message}");
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(message: &str);
}

/// A JS `Error` carrying a covdiff error's message (and its causes).
pub(crate) fn js_error(e: impl std::error::Error) -> JsError {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    JsError::new(&message)
}
