// covdiff's page: a thin shell over the wasm bindings (crates/covdiff-web). It picks the backend,
// fetches and caches the weights, drives the samplers step by step (yielding to the page between
// steps) and draws what comes back. No maths here beyond mapping values to grey levels.

const WEIGHTS = [
  { file: "weights/fashion-mnist-kdct.safetensors", role: "kdct" },
  { file: "weights/fashion-mnist-diag.safetensors", role: "diag" },
];
// Columns: [label, sampler name, which weights file runs it].
const COLUMNS = [
  ["beta-tilde", "beta-tilde", "kdct"],
  ["DDIM", "ddim", "kdct"],
  ["diagonal (NPR)", "diag", "diag"],
  ["K-DCT (NPR)", "kdct", "kdct"],
];
const CACHE = "covdiff-weights-v1";
const $ = (id) => document.getElementById(id);

// What the end-to-end test reads: the backend, the last samples per column, timings, errors.
const state = { backend: null, samples: {}, timings: {}, errors: [], gff: {}, ready: false };
window.covdiff = state;

function showError(message) {
  state.errors.push(String(message));
  const div = document.createElement("div");
  div.className = "error";
  div.textContent = String(message);
  $("errors").appendChild(div);
}
// The wasm panic hook calls this (crates/covdiff-web/src/lib.rs); a panic about buffers or
// limits (wgpu's) gets the remedy too.
globalThis.covdiffPanic = (message) => showError(explain(message));
addEventListener("error", (e) => showError(e.message));
addEventListener("unhandledrejection", (e) => showError(e.reason?.message ?? e.reason));

// A GPU error about buffers or limits gets the remedy appended.
function explain(e) {
  const message = String(e?.message ?? e);
  if (/buffer|limit|out of memory|allocation|max_storage/i.test(message)) {
    return `${message}\nThis is over the WebGPU adapter's limits: try fewer images (the "images" box), or the CPU fallback (?cpu).`;
  }
  return message;
}

const nextFrame = () => new Promise((r) => setTimeout(r, 0));

async function loadBindings() {
  if (window.wasmBindings) return window.wasmBindings;
  // Built by trunk: its loader initialises the module and fires this event.
  if (document.querySelector('link[rel="modulepreload"][href*="covdiff-web"], script[src*="covdiff-web"]') ||
      document.querySelector('link[href$=".wasm"]')) {
    await new Promise((r) => addEventListener("TrunkApplicationStarted", r, { once: true }));
    return window.wasmBindings;
  }
  // Built by wasm-bindgen directly (scripts/web.sh --plain): pkg/ beside the page.
  const mod = await import("./pkg/covdiff_web.js");
  await mod.default();
  return mod;
}

// WebGPU when the browser gives an adapter (and ?cpu is not in the address), else the CPU fallback.
async function pickEngine(wasm) {
  const forceCpu = new URLSearchParams(location.search).has("cpu");
  let why = forceCpu ? "?cpu in the address" : "";
  if (!forceCpu && navigator.gpu) {
    try {
      const adapter = await navigator.gpu.requestAdapter();
      if (adapter) {
        const info = adapter.info ?? {};
        const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(" ") || "an adapter";
        const software = adapter.isFallbackAdapter || info.isFallbackAdapter || /swiftshader|llvmpipe|lavapipe/i.test(name);
        return { engine: await wasm.Engine.webgpu(name), adapter, fallback: null, software };
      }
      why = "navigator.gpu gave no adapter";
    } catch (e) {
      why = `WebGPU failed to start: ${e.message ?? e}`;
    }
  } else if (!forceCpu) {
    why = "this browser has no WebGPU (navigator.gpu is missing)";
  }
  return { engine: wasm.Engine.cpu(), adapter: null, fallback: why };
}

// Fetch with a progress bar, through the Cache API so that a reload reads no bytes again.
async function fetchWeights(file, onProgress) {
  const cache = "caches" in self ? await caches.open(CACHE).catch(() => null) : null;
  const hit = cache && (await cache.match(file));
  if (hit) {
    const bytes = new Uint8Array(await hit.arrayBuffer());
    onProgress(bytes.length, bytes.length, true);
    return { bytes, cached: true };
  }
  const response = await fetch(file);
  if (!response.ok) throw new Error(`weights ${file}: HTTP ${response.status} (missing from weights/?)`);
  const total = Number(response.headers.get("content-length")) || 0;
  const reader = response.body.getReader();
  const chunks = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    got += value.length;
    onProgress(got, total, false);
  }
  const bytes = new Uint8Array(got);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.length; }
  if (total && got !== total) throw new Error(`weights ${file}: got ${got} of ${total} bytes (truncated download)`);
  if (cache) await cache.put(file, new Response(bytes.slice())).catch(() => {});
  return { bytes, cached: false };
}

// Grey (or RGB) images [n, c, d, d] in [-1, 1] into one canvas column, `scale` pixels a pixel.
function drawColumn(canvas, values, n, c, d, scale) {
  canvas.width = d * scale;
  canvas.height = n * d * scale + (n - 1) * 2;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const img = ctx.createImageData(d, d);
  const tmp = document.createElement("canvas");
  tmp.width = d; tmp.height = d;
  const tctx = tmp.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < d * d; p++) {
      for (let ch = 0; ch < 3; ch++) {
        const v = values[i * c * d * d + Math.min(ch, c - 1) * d * d + p];
        img.data[4 * p + ch] = Math.max(0, Math.min(255, Math.round((v + 1) * 127.5)));
      }
      img.data[4 * p + 3] = 255;
    }
    tctx.putImageData(img, 0, 0);
    ctx.drawImage(tmp, 0, i * (d * scale + 2), d * scale, d * scale);
  }
}

// A d x d plane shown over +-range as grey.
function drawPlane(canvas, values, d, range) {
  const scale = Math.max(1, Math.floor(256 / d));
  const shown = Float32Array.from(values, (v) => v / range);
  drawColumn(canvas, shown, 1, 1, d, scale);
}

let wasm, engine, models = {};

async function start() {
  wasm = await loadBindings();
  // The tests call the bindings' panic check through this.
  state.bindings = wasm;
  const picked = await pickEngine(wasm);
  engine = picked.engine;
  state.backend = engine.kind;
  $("backend").textContent = engine.label + (picked.fallback ? ` (fallback: ${picked.fallback})` : "");
  $("backend").className = engine.kind;
  state.adapter = picked.adapter;
  if (picked.fallback) showError(`No WebGPU: ${picked.fallback}. Running on the CPU fallback.`);
  if (picked.software) {
    $("backend").textContent += " — a software adapter (the GPU emulated on the CPU): the CPU fallback is faster here, add ?cpu to the address to use it";
  }
  $("k").addEventListener("input", () => { $("k-out").value = $("k").value; });
  $("gamma").addEventListener("input", () => { $("gamma-out").value = $("gamma").value; });
  if (!picked.adapter) $("gff-path").value = "cpu";
  $("run-compare").addEventListener("click", () => runCompare().catch((e) => showError(explain(e))));
  $("run-gff").addEventListener("click", () => runGff().catch(showError));
  const { setupPlayground } = await import("./playground.js");
  setupPlayground(wasm, state, showError);
  await loadModels();
  $("run-compare").disabled = false;
  state.ready = true;
}

async function loadModels() {
  const sizes = {};
  const progress = () => {
    const got = Object.values(sizes).reduce((a, s) => a + s.got, 0);
    const total = Object.values(sizes).reduce((a, s) => a + (s.total || s.got), 0);
    $("weights-progress").max = total || 1;
    $("weights-progress").value = got;
    $("weights-status").textContent = `weights: ${(got / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`;
  };
  let cached = 0;
  await Promise.all(WEIGHTS.map(async ({ file, role }) => {
    sizes[file] = { got: 0, total: 0 };
    const { bytes, cached: hit } = await fetchWeights(file, (got, total) => { sizes[file] = { got, total }; progress(); });
    if (hit) cached++;
    let model;
    try {
      model = engine.load(bytes);
    } catch (e) {
      throw new Error(`${file}: ${e.message ?? e}`);
    }
    // A file of another model (the diagonal heads served as the K-DCT ones) loads; its card
    // says what it is, and a column must not show one covariance under another's name.
    if (!model.name.startsWith(`${role}-`)) {
      const name = model.name;
      model.free();
      throw new Error(`${file}: the wrong model: its card says "${name}", and this column needs a ${role} model`);
    }
    models[role] = model;
  }));
  state.weightsCached = cached;
  $("weights-status").textContent += cached ? ` (from the browser's cache: ${cached} of ${WEIGHTS.length} files)` : " (downloaded)";
}

async function runCompare() {
  const k = Number($("k").value), seed = Number($("seed").value), n = Number($("batch").value);
  $("k-out").value = k;
  if (!(n >= 1 && n <= 16)) throw new Error("images must be between 1 and 16");
  const showX0 = $("show-x0").checked;
  $("run-compare").disabled = true;
  const columns = $("columns");
  columns.innerHTML = "";
  const total = COLUMNS.length * k;
  let done = 0;
  try {
    for (const [label, sampler, role] of COLUMNS) {
      const model = models[role];
      const fig = document.createElement("figure");
      const cap = document.createElement("figcaption");
      const canvas = document.createElement("canvas");
      cap.textContent = `${label} K=${k}`;
      fig.append(cap, canvas);
      const time = document.createElement("div");
      time.className = "time";
      fig.append(time);
      columns.append(fig);
      const scale = Math.max(1, Math.floor(96 / model.size));
      const t0 = performance.now();
      const run = model.start(sampler, k, seed, n);
      while (!run.finished) {
        const t = run.next_t;
        run.step();
        done++;
        $("step-progress").max = total;
        $("step-progress").value = done;
        $("step-status").textContent = `${label}: step ${run.steps_done} of ${k} (from t = ${t})`;
        if (showX0) drawColumn(canvas, await run.x0_hat(), n, model.channels, model.size, scale);
        await nextFrame(); // yield: the page stays responsive
      }
      const x = await run.sample();
      const ms = performance.now() - t0;
      run.free();
      drawColumn(canvas, x, n, model.channels, model.size, scale);
      time.textContent = `${(ms / 1000).toFixed(2)} s`;
      state.samples[sampler] = Array.from(x);
      state.timings[sampler] = ms;
    }
    state.lastRun = { k, seed, n };
    $("step-status").textContent = `done: ${COLUMNS.length} samplers x ${n} images, K = ${k}`;
  } finally {
    $("run-compare").disabled = false;
  }
}

// ---- GFF explorer ----
let gpuGff = null;

async function gffOnGpu(d, gamma, seed) {
  if (!gpuGff) {
    const { GffShader } = await import("./gff-gpu.js");
    const code = await (await fetch("shaders/gff.wgsl")).text();
    gpuGff = await GffShader.create(state.adapter, code);
  }
  return gpuGff.sample(d, gamma, seed);
}

function plotSpectrum(fig, k, series, title) {
  // A log-log plot with axes, ticks and a legend, as SVG.
  const W = 320, H = 240, L = 50, B = 36, T = 22, R = 10;
  const all = series.flatMap((s) => Array.from(s.p)).filter((p) => p > 0);
  const [xmin, xmax] = [Math.log10(k[0]), Math.log10(k[k.length - 1])];
  const [ymin, ymax] = [Math.floor(Math.log10(Math.min(...all))), Math.ceil(Math.log10(Math.max(...all)))];
  const X = (v) => L + ((Math.log10(v) - xmin) / (xmax - xmin || 1)) * (W - L - R);
  const Y = (v) => H - B - ((Math.log10(v) - ymin) / (ymax - ymin || 1)) * (H - B - T);
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-size="10">`;
  svg += `<text x="${W / 2}" y="14" text-anchor="middle">${title}</text>`;
  svg += `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#000"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#000"/>`;
  for (let e = Math.ceil(xmin); e <= Math.floor(xmax); e++) {
    svg += `<line x1="${X(10 ** e)}" y1="${H - B}" x2="${X(10 ** e)}" y2="${H - B + 4}" stroke="#000"/><text x="${X(10 ** e)}" y="${H - B + 14}" text-anchor="middle">${10 ** e}</text>`;
  }
  for (let e = ymin; e <= ymax; e++) {
    svg += `<line x1="${L - 4}" y1="${Y(10 ** e)}" x2="${L}" y2="${Y(10 ** e)}" stroke="#000"/><text x="${L - 6}" y="${Y(10 ** e) + 3}" text-anchor="end">1e${e}</text>`;
  }
  svg += `<text x="${(L + W - R) / 2}" y="${H - 6}" text-anchor="middle">frequency |k| (rings)</text>`;
  svg += `<text transform="rotate(-90)" x="${-(T + H - B) / 2}" y="12" text-anchor="middle">power</text>`;
  series.forEach((s, i) => {
    const pts = Array.from(k, (kk, j) => (s.p[j] > 0 ? `${X(kk).toFixed(1)},${Y(s.p[j]).toFixed(1)}` : null)).filter(Boolean);
    svg += `<polyline fill="none" stroke="${s.color}" stroke-width="1.5" ${s.dash ? 'stroke-dasharray="4 3"' : ""} points="${pts.join(" ")}"/>`;
    const ly = T + 8 + i * 13;
    svg += `<line x1="${W - 150}" y1="${ly}" x2="${W - 132}" y2="${ly}" stroke="${s.color}" stroke-width="2" ${s.dash ? 'stroke-dasharray="4 3"' : ""}/><text x="${W - 128}" y="${ly + 3}">${s.label}</text>`;
  });
  fig.innerHTML = svg + "</svg>";
}

async function runGff() {
  const d = Number($("gff-size").value), gamma = Number($("gamma").value), seed = Number($("gff-seed").value);
  const path = $("gff-path").value;
  const t0 = performance.now();
  const cpu = wasm.gff_preview(d, gamma, seed); // white noise, the slice and the exact spectrum
  let field = cpu.field, label = "CPU (covdiff-core)";
  if (path === "gpu") {
    if (!state.adapter) throw new Error("the GPU path needs WebGPU; use the CPU path");
    field = await gffOnGpu(d, gamma, seed);
    label = "GPU (shaders/gff.wgsl)";
  }
  const ms = performance.now() - t0;
  // gff_preview has the CPU field's and the white noise's spectra; only the shader's is computed here.
  const gpuSpectrum = path === "gpu" ? wasm.power_spectrum(field, d) : null;
  const spectrum = gpuSpectrum ?? { k: cpu.k, power: cpu.power_field, slope: cpu.slope_field };
  const white = { power: cpu.power_white, slope: cpu.slope_white };
  drawPlane($("gff-field"), field, d, 3);
  drawPlane($("gff-white"), cpu.white, d, 3);
  drawPlane($("gff-slice"), cpu.slice, d, 1);
  $("gff-field-cap").textContent = `GFF, gamma ${gamma}, ${d}x${d}, ${label}, ${ms.toFixed(0)} ms`;
  const mean = field.reduce((a, v) => a + v, 0) / field.length;
  const variance = field.reduce((a, v) => a + (v - mean) ** 2, 0) / field.length;
  plotSpectrum($("gff-plot"), spectrum.k, [
    { p: spectrum.power, color: "#c0392b", label: `GFF (slope ${spectrum.slope.toFixed(2)})` },
    { p: cpu.power_exact, color: "#000", dash: true, label: `exact (slope ${cpu.slope_exact.toFixed(2)})` },
    { p: white.power, color: "#2c7fb8", label: `white (slope ${white.slope.toFixed(2)})` },
  ], "radially averaged power spectrum");
  state.gff[path] = { d, gamma, seed, slope: spectrum.slope, exact: cpu.slope_exact, white: white.slope, variance, mean, ms };
  cpu.free(); gpuSpectrum?.free();
}

start().catch((e) => showError(e.message ?? e));
