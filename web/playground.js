// The 2D covariance playground (panel 3): a thin shell over crates/covdiff-web's Playground.
// Trains the thesis' and the principled model step by step, yielding to the page between bursts
// of steps, draws the loss curves, then samples with scalar against full covariance and draws the
// principled model's Cov[x0 | x_t] as ellipses over its samples.

const $ = (id) => document.getElementById(id);
const nextFrame = () => new Promise((r) => setTimeout(r, 0));
const SAMPLERS = [
  ["beta-tilde", "scalar: beta-tilde I", "#2c7fb8"],
  ["principled", "full: principled (btilde I + kappa E_t)", "#c0392b"],
  ["thesis", "full: thesis (learned L L^T)", "#7b3294"],
];

// An SVG frame with axes, ticks and labels over [x0, x1] x [y0, y1]; returns the mapping.
function frame(W, H, x0, x1, y0, y1, { title, xlabel, ylabel }) {
  const L = 46, B = 34, R = 10, T = 10 + 11 * title.split("\n").length;
  const X = (v) => L + ((v - x0) / (x1 - x0 || 1)) * (W - L - R);
  const Y = (v) => H - B - ((v - y0) / (y1 - y0 || 1)) * (H - B - T);
  const ticks = (a, b) => {
    const step = 10 ** Math.floor(Math.log10((b - a) / 2 || 1));
    const m = (b - a) / step > 8 ? 2 * step : step;
    const out = [];
    for (let v = Math.ceil(a / m) * m; v <= b + 1e-9; v += m) out.push(+v.toPrecision(6));
    return out;
  };
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-size="10">`;
  // The title: one or two lines ("\n"), the plot starting below them.
  const lines = title.split("\n");
  lines.forEach((line, i) => { svg += `<text x="${W / 2}" y="${12 + 11 * i}" text-anchor="middle">${line}</text>`; });
  svg += `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#000"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#000"/>`;
  for (const v of ticks(x0, x1)) svg += `<line x1="${X(v)}" y1="${H - B}" x2="${X(v)}" y2="${H - B + 4}" stroke="#000"/><text x="${X(v)}" y="${H - B + 14}" text-anchor="middle">${v}</text>`;
  for (const v of ticks(y0, y1)) svg += `<line x1="${L - 4}" y1="${Y(v)}" x2="${L}" y2="${Y(v)}" stroke="#000"/><text x="${L - 6}" y="${Y(v) + 3}" text-anchor="end">${v}</text>`;
  svg += `<text x="${(L + W - R) / 2}" y="${H - 4}" text-anchor="middle">${xlabel}</text>`;
  svg += `<text transform="rotate(-90)" x="${-(T + H - B) / 2}" y="11" text-anchor="middle">${ylabel}</text>`;
  return { svg, X, Y, W, R, T };
}

function legend(f, items) {
  return items.map(([label, color], i) => {
    const y = f.T + 6 + i * 13;
    return `<rect x="${f.W - f.R - 150}" y="${y - 5}" width="10" height="8" fill="${color}"/><text x="${f.W - f.R - 136}" y="${y + 2}">${label}</text>`;
  }).join("");
}

function lossPlot(history) {
  const fig = $("pg-loss");
  if (history.length < 2) { fig.innerHTML = ""; return; }
  const all = history.flatMap((h) => [h[1], h[2]]);
  const [lo, hi] = [Math.min(...all), Math.max(...all)];
  const f = frame(360, 220, history[0][0], history[history.length - 1][0], lo, hi,
    { title: "training loss (live)", xlabel: "step", ylabel: "loss" });
  let svg = f.svg;
  [[1, "#c0392b"], [2, "#7b3294"]].forEach(([j, color]) => {
    svg += `<polyline fill="none" stroke="${color}" stroke-width="1.3" points="${history.map((h) => `${f.X(h[0]).toFixed(1)},${f.Y(h[j]).toFixed(1)}`).join(" ")}"/>`;
  });
  fig.innerHTML = svg + legend(f, [["principled", "#c0392b"], ["thesis", "#7b3294"]]) + "</svg>";
}

// Samples over the data, with optional ellipses [(x, y, p, q, r)] (1-sigma of [[p, q], [q, r]]).
function scatter(fig, data, points, color, title, ellipses) {
  const f = frame(320, 320, -3, 3, -3, 3, { title, xlabel: "x", ylabel: "y" });
  let svg = f.svg + `<g fill="#bbb">`;
  for (let i = 0; i < data.length; i += 2) svg += `<circle cx="${f.X(data[i]).toFixed(1)}" cy="${f.Y(data[i + 1]).toFixed(1)}" r="0.8"/>`;
  svg += `</g><g fill="${color}" fill-opacity="0.6">`;
  for (let i = 0; i < points.length; i += 2) {
    const [x, y] = [points[i], points[i + 1]];
    if (Math.abs(x) < 3 && Math.abs(y) < 3) svg += `<circle cx="${f.X(x).toFixed(1)}" cy="${f.Y(y).toFixed(1)}" r="1.1"/>`;
  }
  svg += `</g>`;
  const items = [["data", "#bbb"], ["samples", color]];
  if (ellipses) {
    const sx = f.X(1) - f.X(0);
    svg += `<g fill="none" stroke="#000" stroke-width="0.8">`;
    for (const [x, y, p, q, r] of ellipses) {
      // Eigen-decomposition of the 2x2 symmetric matrix: the ellipse's axes and angle.
      const m = (p + r) / 2, d = Math.sqrt(((p - r) / 2) ** 2 + q * q);
      const [l1, l2] = [m + d, Math.max(m - d, 0)];
      const angle = (Math.atan2(l1 - p, q || 1e-12) * 180) / Math.PI;
      svg += `<ellipse cx="${f.X(x).toFixed(1)}" cy="${f.Y(y).toFixed(1)}" rx="${(Math.sqrt(l1) * sx).toFixed(2)}" ry="${(Math.sqrt(l2) * sx).toFixed(2)}" transform="rotate(${(-angle).toFixed(1)} ${f.X(x).toFixed(1)} ${f.Y(y).toFixed(1)})"/>`;
    }
    svg += `</g>`;
    items.push(["1-sigma of Cov[x0 | x_t]", "#000"]);
  }
  fig.innerHTML = svg + legend(f, items) + "</svg>";
}

function stats(points) {
  const n = points.length / 2;
  let mx = 0, my = 0;
  for (let i = 0; i < n; i++) { mx += points[2 * i]; my += points[2 * i + 1]; }
  mx /= n; my /= n;
  let vx = 0, vy = 0;
  for (let i = 0; i < n; i++) { vx += (points[2 * i] - mx) ** 2; vy += (points[2 * i + 1] - my) ** 2; }
  return { n, mean: [mx, my], var: [vx / n, vy / n], finite: points.every(Number.isFinite) };
}

export function setupPlayground(wasm, state, showError) {
  const pg = { playground: null, training: false, history: [], stepsPerSecond: 0, samples: {} };
  state.playground = pg;
  for (const name of wasm.toy_datasets()) $("pg-data").add(new Option(name, name));
  $("pg-k").addEventListener("input", () => { $("pg-k-out").value = $("pg-k").value; });
  $("pg-lambda").addEventListener("input", () => { $("pg-lambda-out").value = $("pg-lambda").value; });
  $("pg-t").addEventListener("input", () => { $("pg-t-out").value = $("pg-t").value; });

  const reset = () => {
    pg.training = false;
    pg.playground?.free();
    pg.playground = new wasm.Playground($("pg-data").value, Number($("pg-seed").value), Number($("pg-batch").value), Number($("pg-lr").value));
    pg.history = [];
    pg.samples = {};
    lossPlot(pg.history);
    $("pg-train").textContent = "Train";
    $("pg-status").textContent = `${$("pg-data").value}: 8000 points, untrained`;
    const data = pg.playground.data_points(2000);
    SAMPLERS.forEach(([, label, color], i) => scatter($(`pg-s${i}`), data, [], color, label, null));
  };

  // Trains until paused or `until` steps, in bursts of about 40 ms between which the page runs.
  async function train(until = Infinity) {
    if (!pg.playground) reset();
    pg.training = true;
    $("pg-train").textContent = "Pause";
    let t0 = performance.now(), s0 = pg.playground.steps_done;
    while (pg.training && pg.playground.steps_done < until) {
      const burst = performance.now();
      while (performance.now() - burst < 40 && pg.playground.steps_done < until) {
        const [principled, thesis, simpleP, simpleT] = pg.playground.step();
        pg.history.push([pg.playground.steps_done, principled, thesis, simpleP, simpleT]);
      }
      const s = pg.playground.steps_done;
      pg.stepsPerSecond = ((s - s0) * 1000) / (performance.now() - t0);
      const last = pg.history[pg.history.length - 1];
      $("pg-status").textContent = `step ${s}: loss principled ${last[1].toFixed(3)}, thesis ${last[2].toFixed(3)}; ${pg.stepsPerSecond.toFixed(1)} steps/s (both models)`;
      lossPlot(pg.history.length > 600 ? pg.history.filter((_, i) => i % Math.ceil(pg.history.length / 600) === 0) : pg.history);
      await nextFrame();
    }
    pg.training = false;
    $("pg-train").textContent = "Train";
  }

  async function sample() {
    if (!pg.playground) reset();
    const k = Number($("pg-k").value), lambda = Number($("pg-lambda").value), t = Number($("pg-t").value);
    const n = 1000, seed = Number($("pg-seed").value);
    const data = pg.playground.data_points(2000);
    for (const [i, [name, label, color]] of SAMPLERS.entries()) {
      const t0 = performance.now();
      const x = pg.playground.sample(name, k, lambda, n, seed);
      const ms = performance.now() - t0;
      let ellipses = null;
      if (name === "principled") {
        const sub = x.slice(0, 2 * 40);
        const c = pg.playground.x0_covariances(sub, t);
        ellipses = Array.from({ length: sub.length / 2 }, (_, j) => [sub[2 * j], sub[2 * j + 1], c[3 * j], c[3 * j + 1], c[3 * j + 2]]);
      }
      scatter($(`pg-s${i}`), data, x, color, `${label}\nK=${k}, lambda=${lambda}${ellipses ? `, ellipses at t=${t}` : ""}`, ellipses);
      pg.samples[name] = { ...stats(x), ms, k, lambda };
      await nextFrame();
    }
  }

  $("pg-data").addEventListener("change", reset);
  $("pg-reset").addEventListener("click", () => { try { reset(); } catch (e) { showError(e.message ?? e); } });
  $("pg-train").addEventListener("click", () => {
    if (pg.training) { pg.training = false; return; }
    train().catch((e) => { pg.training = false; showError(e.message ?? e); });
  });
  $("pg-sample").addEventListener("click", () => sample().catch((e) => showError(e.message ?? e)));
  pg.train = train;
  pg.sample = sample;
  pg.reset = reset;
  reset();
}
