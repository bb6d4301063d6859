// End-to-end test of the page in Debian's headless Chromium, driven through chromedriver's
// WebDriver HTTP API (Node's own fetch; no npm packages).
//
//   node tests/web/e2e.mjs <site dir> <cli samples dir> <out dir>
//
// <site dir>: the built page (trunk's dist/). <cli samples dir>: raw samples from the CLI for the
// same weights, seed, K and batch (written by scripts/web-test.sh): cli-flex.npy. Two browser sessions:
//   1. WebGPU (--enable-unsafe-webgpu: SwiftShader on a machine without a GPU): the WebGPU path is
//      taken, every panel runs, images are finite, not blank, within bounds; K-DCT differs from
//      beta-tilde for the same seed; the GFF shader's spectrum and variance match the CPU path's.
//   2. WebGPU disabled: the CPU fallback is taken and labelled, and its samples equal the CLI's;
//      the 2D playground trains (its loss falls), samples, and draws its loss curves and ellipses;
//      missing and truncated weights are shown on the page with the reason.
// Screenshots and a JSON of the measurements go to <out dir>.

import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { readFileSync, writeFileSync, mkdirSync, existsSync, statSync } from "node:fs";
import { join, extname } from "node:path";
import assert from "node:assert/strict";

const [site, cliDir, out] = process.argv.slice(2);
if (!site || !cliDir || !out) {
  console.error("usage: node tests/web/e2e.mjs <site dir> <cli samples dir> <out dir>");
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const K = Number(process.env.E2E_K ?? 5), N = Number(process.env.E2E_N ?? 4), SEED = 0;
// The page's samples against the CLI's: the same seed and weights, another build (wasm32 against
// x86-64 with AVX-512 kernels), so sums are ordered differently; after K steps of a 2.2M-parameter
// UNet that leaves differences of order 1e-4. Pixels live in [-1, 1].
const TOL = 2e-3;
// WebGPU against the CLI: the normal draws are covdiff's own host stream on every backend, so
// the samples are the same up to the GPU's arithmetic (SwiftShader, burn-wgpu's kernels, other
// reduction orders): DDIM, which draws nothing after x_T, differed by 5e-3 on this machine.
// Different draws would differ by O(1).
const TOL_GPU = 1e-2;

// ---- a static server for the site ----
const MIME = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css",
  ".wgsl": "text/plain", ".json": "application/json", ".safetensors": "application/octet-stream" };
// `broken` makes the server spoil the K-DCT weights: "missing" (404), "truncated" (1000 bytes) or
// "wrong" (the diagonal model's file in its place).
let broken = null;
const server = createServer((req, res) => {
  const path = join(site, decodeURIComponent(new URL(req.url, "http://x").pathname));
  const file = existsSync(path) && statSync(path).isDirectory() ? join(path, "index.html") : path;
  const spoilt = broken && file.endsWith("fashion-mnist-kdct.safetensors");
  if (!file.startsWith(site) || !existsSync(file) || (spoilt && broken === "missing")) { res.writeHead(404); res.end("not found"); return; }
  const body = !spoilt ? readFileSync(file)
    : broken === "wrong" ? readFileSync(file.replace("fashion-mnist-kdct", "fashion-mnist-diag"))
    : readFileSync(file).subarray(0, 1000);
  res.writeHead(200, { "content-type": MIME[extname(file)] ?? "application/octet-stream", "content-length": body.length });
  res.end(body);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const base = `http://127.0.0.1:${server.address().port}/`;

// ---- chromedriver ----
const port = 9500 + Math.floor(Math.random() * 400);
const driver = spawn(process.env.CHROMEDRIVER ?? "/usr/bin/chromedriver", [`--port=${port}`], { stdio: "ignore" });
const wd = async (method, path, body) => {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, {
    method, headers: { "content-type": "application/json" }, body: body && JSON.stringify(body),
  });
  const j = await r.json();
  if (j.value?.error) throw new Error(`${path}: ${j.value.error}: ${j.value.message}`);
  return j.value;
};
for (let i = 0; ; i++) {
  try { await wd("GET", "/status"); break; } catch (e) { if (i > 50) throw e; await new Promise((r) => setTimeout(r, 200)); }
}

// Sessions still open; a failed check must not leave its browser running.
const open = new Set();
async function session(webgpu) {
  const args = ["--headless=new", "--no-sandbox", "--window-size=1300,1900", "--disable-dev-shm-usage"];
  if (webgpu) args.push("--enable-unsafe-webgpu");
  else args.push("--disable-features=WebGPU", "--disable-gpu");
  const s = await wd("POST", "/session", { capabilities: { alwaysMatch: {
    browserName: "chrome", "goog:chromeOptions": { binary: process.env.CHROMIUM ?? "/usr/bin/chromium", args },
    timeouts: { script: 600000 },
  } } });
  const id = s.sessionId;
  const run = (script, ...a) => wd("POST", `/session/${id}/execute/sync`, { script, args: a });
  // Polls `cond` (a JS expression) until it is true or the page shows an error.
  const until = async (cond, what, seconds = 600) => {
    const t0 = Date.now();
    for (;;) {
      const [ok, errors] = await run(`return [Boolean(${cond}), (window.covdiff && window.covdiff.errors) || []]`);
      if (ok) return (Date.now() - t0) / 1000;
      const fatal = errors.filter((e) => !e.startsWith("No WebGPU"));
      if (fatal.length) throw new Error(`${what}: the page shows an error: ${fatal.join(" | ")}`);
      if (Date.now() - t0 > seconds * 1000) throw new Error(`${what}: not done after ${seconds} s`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };
  const shot = async (name) => writeFileSync(join(out, name), Buffer.from(await wd("GET", `/session/${id}/screenshot`), "base64"));
  const close = () => { open.delete(id); return wd("DELETE", `/session/${id}`); };
  open.add(id);
  return { id, run, until, shot, close };
}

// Reads a little-endian f32 .npy (covdiff_core::npy).
function readNpy(file) {
  const b = readFileSync(file);
  const hlen = b.readUInt16LE(8);
  const header = b.subarray(10, 10 + hlen).toString();
  assert.match(header, /'descr': '<f4'/);
  const shape = header.match(/'shape': \(([^)]*)\)/)[1].split(",").filter((s) => s.trim()).map(Number);
  const data = new Float32Array(b.buffer.slice(b.byteOffset + 10 + hlen, b.byteOffset + b.length));
  return { shape, data };
}

const SAMPLERS = ["beta-tilde", "ddim", "diag", "kdct"];
function checkImages(samples, where) {
  const stats = {};
  for (const name of SAMPLERS) {
    const x = samples[name];
    assert.ok(x && x.length === N * 28 * 28, `${where}: ${name} gave ${x?.length} values`);
    assert.ok(x.every(Number.isFinite), `${where}: ${name} has non-finite values`);
    const mean = x.reduce((a, v) => a + v, 0) / x.length;
    const sd = Math.sqrt(x.reduce((a, v) => a + (v - mean) ** 2, 0) / x.length);
    const max = Math.max(...x.map(Math.abs));
    // Fashion-MNIST in [-1, 1]: a dark background (mean well below 0) and clothes (spread).
    assert.ok(max <= 1.5, `${where}: ${name} out of bounds (max |x| ${max})`);
    assert.ok(sd > 0.2, `${where}: ${name} is blank (sd ${sd})`);
    assert.ok(mean > -0.95 && mean < 0.3, `${where}: ${name} mean ${mean} is not an image's`);
    stats[name] = { mean, sd, max };
  }
  const diff = Math.max(...samples.kdct.map((v, i) => Math.abs(v - samples["beta-tilde"][i])));
  assert.ok(diff > 0.1, `${where}: K-DCT equals beta-tilde (max difference ${diff})`);
  return { stats, kdct_vs_beta_tilde_max_diff: diff };
}

function compareWithCli(samples, file, where, tol = TOL) {
  const { shape, data } = readNpy(file);
  assert.deepEqual(shape, [SAMPLERS.length, N, 1, 28, 28]);
  const per = {};
  SAMPLERS.forEach((name, s) => {
    const cli = data.subarray(s * N * 784, (s + 1) * N * 784);
    per[name] = Math.max(...samples[name].map((v, i) => Math.abs(v - cli[i])));
  });
  const worst = Math.max(...Object.values(per));
  assert.ok(worst < tol, `${where}: the page's samples differ from the CLI's by ${worst} (tolerance ${tol}): ${JSON.stringify(per)}`);
  return per;
}

async function sampleAll(s) {
  await s.run(`document.getElementById('k').value = ${K}; document.getElementById('batch').value = ${N};
    document.getElementById('seed').value = ${SEED};
    for (const id of ['k', 'batch', 'seed']) document.getElementById(id).dispatchEvent(new Event('input'));
    document.getElementById('run-compare').click();`);
  const seconds = await s.until(`window.covdiff.lastRun && window.covdiff.lastRun.k === ${K}`, "sampling");
  const [samples, timings] = await s.run("return [window.covdiff.samples, window.covdiff.timings]");
  return { samples, timings, seconds };
}

const PG_STEPS = Number(process.env.E2E_PG_STEPS ?? 300);
async function playground(s) {
  await s.run(`document.getElementById('pg-data').value = 'swiss-roll';
    document.getElementById('pg-data').dispatchEvent(new Event('change'));
    window.covdiff.playground.train(${PG_STEPS});`);
  const train_s = await s.until(`window.covdiff.playground.playground.steps_done >= ${PG_STEPS} && !window.covdiff.playground.training`, "playground training");
  const [history, sps] = await s.run("return [window.covdiff.playground.history, window.covdiff.playground.stepsPerSecond]");
  assert.equal(history.length, PG_STEPS);
  const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
  // L_simple (history[i][3]) starts near 2, eps's two unit components, and falls as the eps-network learns.
  const [first, last] = [mean(history.slice(0, 20).map((h) => h[3])), mean(history.slice(-20).map((h) => h[3]))];
  assert.ok(history.every((h) => h.slice(1).every(Number.isFinite)), "a non-finite loss");
  assert.ok(last < first - 0.3, `the principled L_simple did not fall: ${first} -> ${last}`);
  await s.run("window.covdiff.playground.sample()");
  await s.until("Object.keys(window.covdiff.playground.samples).length === 3", "playground sampling");
  const [samples, ellipses, polylines] = await s.run(`return [window.covdiff.playground.samples,
    document.querySelectorAll('#pg-s1 ellipse').length, document.querySelectorAll('#pg-loss polyline').length]`);
  for (const [name, st] of Object.entries(samples)) {
    assert.ok(st.finite && st.n === 1000, `playground ${name}: ${JSON.stringify(st)}`);
    // Standardised data: each axis has variance 1; samples of a half-trained model are near it.
    // Not the thesis': its L L^T learns the identity, a unit-variance step, so its samples spread
    // far wider (the flaw the principled model fixes; covdiff-model's tests show it).
    if (name !== "thesis") for (const v of st.var) assert.ok(v > 0.3 && v < 3, `playground ${name}: variance ${v}`);
  }
  assert.equal(ellipses, 40, "the covariance ellipses are not drawn");
  assert.equal(polylines, 2, "the loss curves are not drawn");
  return { steps: PG_STEPS, train_s, steps_per_s: sps, simple_first: first, simple_last: last, samples };
}

const report = { K, N, seed: SEED, tolerance: TOL, tolerance_webgpu: TOL_GPU };
try {
  // ---- 1. WebGPU ----
  let s = await session(true);
  const t0 = Date.now();
  await s.run(`location.href = '${base}'`);
  await s.until("window.covdiff && window.covdiff.ready", "loading the page and the weights");
  report.webgpu = { load_s: (Date.now() - t0) / 1000 };
  const [backend, label] = await s.run("return [window.covdiff.backend, document.getElementById('backend').textContent]");
  assert.equal(backend, "webgpu", `the WebGPU path was not taken: ${label}`);
  report.webgpu.label = label;
  const gpu = await sampleAll(s);
  report.webgpu.first_compare_s = (Date.now() - t0) / 1000;
  Object.assign(report.webgpu, { compare_s: gpu.seconds, timings_ms: gpu.timings }, checkImages(gpu.samples, "WebGPU"));
  report.webgpu.vs_cli_flex = compareWithCli(gpu.samples, join(cliDir, "cli-flex.npy"), "WebGPU vs CLI (flex)", TOL_GPU);
  await s.shot("webgpu-compare.png");
  // A reload reads the weights from the Cache API.
  await s.run("location.reload()");
  await s.until("window.covdiff && window.covdiff.ready", "reloading");
  const cached = await s.run("return window.covdiff.weightsCached");
  assert.equal(cached, 2, "a reload downloaded the weights again");
  // The GFF panel, GPU and CPU paths, same size and gamma: the same statistics.
  for (const path of ["gpu", "cpu"]) {
    await s.run(`document.getElementById('gff-size').value = '128'; document.getElementById('gamma').value = '1';
      document.getElementById('gff-path').value = '${path}'; document.getElementById('gamma').dispatchEvent(new Event('input'));
      document.getElementById('run-gff').click();`);
    await s.until(`window.covdiff.gff['${path}']`, `GFF on the ${path}`);
  }
  const gff = await s.run("return window.covdiff.gff");
  for (const path of ["gpu", "cpu"]) {
    const g = gff[path];
    assert.ok(Math.abs(g.slope - g.exact) < 0.25, `GFF ${path}: spectrum slope ${g.slope}, exact ${g.exact}`);
    assert.ok(g.variance > 0.5 && g.variance < 1.5, `GFF ${path}: pixel variance ${g.variance}, expected about 1`);
    assert.ok(Math.abs(g.white) < 0.2, `white noise slope ${g.white}`);
  }
  assert.ok(Math.abs(gff.gpu.slope - gff.cpu.slope) < 0.3, "the GPU and CPU GFF spectra disagree");
  report.gff = gff;
  await s.run("document.getElementById('gff-panel').scrollIntoView()");
  await s.shot("webgpu-gff.png");
  // An adapter whose limits are too small for the model: the page reports the limits the adapter
  // gives, here 64 KiB buffers (smaller than the UNet's larger weights), as a small GPU would.
  await wd("POST", `/session/${s.id}/goog/cdp/execute`, { cmd: "Page.addScriptToEvaluateOnNewDocument", params: { source:
    `for (const name of ["maxStorageBufferBindingSize", "maxBufferSize"])
       Object.defineProperty(GPUSupportedLimits.prototype, name, { get() { return 65536; } });` } });
  await s.run("location.reload()");
  let limitErrors = [];
  for (let i = 0; i < 240 && !limitErrors.some((e) => /try fewer images/.test(e)); i++) {
    await new Promise((r) => setTimeout(r, 250));
    limitErrors = await s.run("return (window.covdiff && window.covdiff.errors) || []");
  }
  report.webgpu.small_limits = limitErrors.join(" | ");
  assert.ok(limitErrors.some((e) => /try fewer images/.test(e)), `small adapter limits: the page shows ${JSON.stringify(limitErrors)}`);
  await s.run("window.scrollTo(0, 0)");
  await s.shot("webgpu-small-limits.png");
  await s.close();

  // ---- 2. WebGPU disabled: the CPU fallback ----
  s = await session(false);
  const t1 = Date.now();
  await s.run(`location.href = '${base}'`);
  await s.until("window.covdiff && window.covdiff.ready", "loading the page on the CPU fallback");
  const [cpuBackend, cpuLabel, errors] = await s.run(
    "return [window.covdiff.backend, document.getElementById('backend').textContent, window.covdiff.errors]");
  assert.equal(cpuBackend, "cpu");
  assert.match(cpuLabel, /CPU fallback/);
  assert.ok(errors.some((e) => e.startsWith("No WebGPU")), "the fallback is not explained on the page");
  const cpu = await sampleAll(s);
  report.cpu = { label: cpuLabel, load_s: 0, first_compare_s: (Date.now() - t1) / 1000, compare_s: cpu.seconds,
    timings_ms: cpu.timings, ...checkImages(cpu.samples, "CPU fallback") };
  report.cpu.vs_cli_flex = compareWithCli(cpu.samples, join(cliDir, "cli-flex.npy"), "CPU fallback vs CLI (flex)");
  await s.shot("cpu-compare.png");
  // ---- 3. the 2D playground: train in the page, then sample scalar against full ----
  report.playground = await playground(s);
  await s.run("document.getElementById('playground-panel').scrollIntoView()");
  await s.shot("cpu-playground.png");
  // ---- 4. a panic reaches the page (through the hook), with the remedy for a limits panic ----
  await s.run("try { window.covdiff.bindings.check_panic_hook('buffer size exceeds the max_storage_buffer_binding_size limit (e2e check)'); } catch (e) {}");
  const panicShown = await s.run("return document.getElementById('errors').textContent");
  assert.match(panicShown, /covdiff panicked:[\s\S]*e2e check/, "a panic is not shown on the page");
  assert.match(panicShown, /try fewer images/, "a limits panic is shown without the remedy");
  report.panic = panicShown.slice(panicShown.indexOf("covdiff panicked"));
  await s.run("window.scrollTo(0, 0)");
  await s.shot("cpu-panic.png");
  // ---- 5. bad weights are shown on the page, with the reason ----
  report.bad_weights = {};
  for (const [mode, pattern] of [["missing", /HTTP 404/], ["truncated", /truncated/], ["wrong", /wrong model: its card says "diag-/]]) {
    broken = mode;
    await s.run("return caches.delete('covdiff-weights-v1')");
    await s.run("location.reload()");
    let errors = [];
    for (let i = 0; i < 240 && !errors.some((e) => pattern.test(e)); i++) {
      await new Promise((r) => setTimeout(r, 250));
      errors = (await s.run("return (window.covdiff && window.covdiff.errors) || []")).filter((e) => !e.startsWith("No WebGPU"));
    }
    assert.ok(errors.some((e) => pattern.test(e)), `${mode} weights: the page shows ${JSON.stringify(errors)}`);
    const shown = await s.run("return document.getElementById('errors').textContent");
    assert.match(shown, pattern, `${mode} weights: the error is not on the page`);
    report.bad_weights[mode] = errors.join(" | ");
    await s.run("window.scrollTo(0, 0)");
    await s.shot(`cpu-${mode}-weights.png`);
  }
  broken = null;
  await s.close();
  writeFileSync(join(out, "e2e.json"), JSON.stringify(report, null, 2));
  console.log(JSON.stringify(report, null, 2));
  console.log("web e2e: all checks passed");
} catch (e) {
  writeFileSync(join(out, "e2e.json"), JSON.stringify({ ...report, failure: String(e.stack ?? e) }, null, 2));
  console.error(e);
  process.exitCode = 1;
} finally {
  for (const id of open) await wd("DELETE", `/session/${id}`).catch(() => {});
  driver.kill();
  server.close();
}
