//! The `covdiff` binary end to end: outputs exist and are right, and bad
//! input ends in a clear error (exit 1, a message, no panic).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn covdiff(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_covdiff")).args(args).output().expect("covdiff runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("covdiff-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A clean failure: exit code 1, an `error:` line containing `want`, no panic.
fn assert_error(o: &Output, want: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("error:") && err.contains(want), "wanted '{want}' in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn write_idx(path: &Path, n: usize, d: usize) {
    let mut b = vec![0u8, 0, 8, 3];
    for x in [n, d, d] {
        b.extend((x as u32).to_be_bytes());
    }
    // Smooth random-ish images: a ramp plus per-image offset.
    for k in 0..n {
        for i in 0..d {
            for j in 0..d {
                b.push(((i * 9 + j * 5 + k * 37 + (k * k) % 13 * (i + j)) % 256) as u8);
            }
        }
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn help_is_everywhere() {
    for args in [
        vec!["--help"],
        vec!["gff", "--help"],
        vec!["schedule", "--help"],
        vec!["data", "info", "--help"],
        vec!["covariance", "fit", "--help"],
        vec!["covariance", "true", "--help"],
        vec!["bench", "covariance", "--help"],
        vec!["bench", "dct", "--help"],
        vec!["toy2d", "train", "--help"],
        vec!["toy2d", "sample", "--help"],
        vec!["toy2d", "sweep", "--help"],
        vec!["train", "--help"],
        vec!["sample", "--help"],
        vec!["inpaint", "--help"],
        vec!["eval", "nll", "--help"],
        vec!["eval", "table", "--help"],
        vec!["export", "--help"],
        vec!["import", "diffusers", "--help"],
        vec!["denoise", "compare", "--help"],
        vec!["denoise", "sample", "--help"],
        vec!["denoise", "sensitivity", "--help"],
        vec!["denoise", "posterior", "--help"],
        vec!["denoise", "table", "--help"],
        vec!["bench", "denoisers", "--help"],
    ] {
        let o = covdiff(&args);
        assert!(o.status.success(), "{args:?}");
        assert!(stdout(&o).contains("Usage:"), "{args:?}");
    }
}

#[test]
fn gff_writes_png_and_unit_variance_npy() {
    let dir = scratch("gff");
    let (png, npy) = (dir.join("g.png"), dir.join("g.npy"));
    let o = covdiff(&[
        "gff",
        "--size",
        "32",
        "--gamma",
        "1.0",
        "--n",
        "8",
        "--seed",
        "3",
        "--out",
        png.to_str().unwrap(),
        "--raw",
        npy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = image::open(&png).unwrap();
    assert!(img.width() > 32 * 2 && img.height() > 32);
    let (shape, data) = covdiff_core::npy::read_f32(&npy).unwrap();
    assert_eq!(shape, vec![8, 32, 32]);
    let var = data.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / data.len() as f64;
    // Per-pixel variance is 1; 8 smooth fields give a noisy estimate, so allow +-35%.
    assert!((var - 1.0).abs() < 0.35, "variance {var}");
    assert_error(&covdiff(&["gff", "--gamma", "nan", "--out", png.to_str().unwrap()]), "gamma");
    assert_error(&covdiff(&["gff", "--n", "0", "--out", png.to_str().unwrap()]), "must be positive");
}

#[test]
fn schedule_csv_matches_the_closed_form() {
    let o = covdiff(&["schedule", "linear", "--steps", "1000", "--csv"]);
    assert!(o.status.success());
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "t,beta,alpha,abar");
    assert_eq!(lines.len(), 1001);
    let last: Vec<f64> = lines[1000].split(',').map(|x| x.parse().unwrap()).collect();
    assert_eq!(last[0], 1000.0);
    assert!((last[1] - 0.02).abs() < 1e-15);
    let abar: f64 = (1..=1000).map(|t| 1.0 - (1e-4 + (0.02 - 1e-4) * (t - 1) as f64 / 999.0)).product();
    assert!((last[3] - abar).abs() < 1e-15);
    for kind in ["cosine", "sigmoid"] {
        assert!(covdiff(&["schedule", kind]).status.success());
    }
    assert!(!covdiff(&["schedule", "quartic"]).status.success());
}

/// `covdiff covariance fit <src> --d 8` into `dir` (fit.json, fit.png, fit.svg); the JSON.
fn covariance_fit(src: &str, dir: &Path) -> serde_json::Value {
    let (json, png) = (dir.join("fit.json"), dir.join("fit.png"));
    let args = ["covariance", "fit", src, "--d", "8", "--out", json.to_str().unwrap(), "--plot", png.to_str().unwrap()];
    let o = covdiff(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

#[test]
fn data_info_and_covariance_fit_on_an_idx_file() {
    let dir = scratch("fit");
    let file = dir.join("toy-images-idx3-ubyte");
    write_idx(&file, 300, 8);
    let src = format!("idx:{}", file.display());
    let o = covdiff(&["data", "info", &src]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("shape:    [300, 1, 8, 8]"), "{}", stdout(&o));

    let fit = covariance_fit(&src, &dir);
    assert_eq!(fit["images"], 300);
    // For grey images the nearest K-DCT is a convex fit, so it is at least as close as the best
    // diagonal alone and the best DCT-diagonal alone, both computed here from the file's bytes
    // (normalised errors do not depend on the pixel scale).
    let bytes = std::fs::read(&file).unwrap();
    let (n, m) = (300, 64);
    let x = nalgebra::DMatrix::from_fn(n, m, |i, j| bytes[16 + i * m + j] as f64);
    let mean = x.row_mean();
    let centred = nalgebra::DMatrix::from_fn(n, m, |i, j| x[(i, j)] - mean[j]);
    let sigma = centred.transpose() * &centred / (n - 1) as f64;
    let total = sigma.norm_squared();
    let diag_only = 1.0 - sigma.diagonal().norm_squared() / total;
    let f2 = covdiff_core::dense::dct2_matrix(8);
    let spectrum = (&f2 * &sigma * f2.transpose()).diagonal().map(|v| v.max(0.0));
    let dct_only = (&sigma - f2.transpose() * nalgebra::DMatrix::from_diagonal(&spectrum) * &f2).norm_squared() / total;
    let kdct = fit["kdct_error"].as_f64().unwrap();
    assert!(kdct <= diag_only.min(dct_only) + 1e-9, "K-DCT {kdct}, diagonal {diag_only}, DCT {dct_only}");
    assert!(kdct > 0.0, "this data is not K-DCT");
    assert!(image::open(dir.join("fit.png")).is_ok());
    assert!(std::fs::read_to_string(dir.join("fit.svg")).unwrap().contains("<svg"));
}

/// PNGs of 8x8 colour images `128 + u (x) p_k` (rank-one colour) or with independent channels.
fn write_colour_images(dir: &Path, n: usize, rank_one: bool) {
    use rand::{rngs::StdRng, RngExt, SeedableRng};
    let mut rng = StdRng::seed_from_u64(3);
    let u = [1.0, 0.6, -0.4];
    for k in 0..n {
        // A smooth random pattern per channel (or one shared by all channels), amplitude ~40.
        let mut pattern = |f: f64| {
            let (a, b, c): (f64, f64, f64) =
                (rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0));
            let (i0, j0) = (rng.random_range(0.0..6.0), rng.random_range(0.0..6.0));
            move |i: u32, j: u32| {
                let (x, y) = (i as f64 * f, j as f64 * f);
                40.0 * (a * (x * 0.4 + i0).cos() + b * (y * 0.7 + j0).sin() + c * ((x + y) * 0.3).cos())
            }
        };
        let shared = pattern(1.0);
        // Each channel its own spatial scale, so the channels' covariances differ.
        let own = [pattern(1.0), pattern(3.0), pattern(7.0)];
        let img = image::RgbImage::from_fn(8, 8, |i, j| {
            let v = |c: usize| if rank_one { u[c] * shared(i, j) } else { own[c](i, j) };
            image::Rgb([0, 1, 2].map(|c| (128.0 + v(c)).round().clamp(0.0, 255.0) as u8))
        });
        img.save(dir.join(format!("{k:03}.png"))).unwrap();
    }
}

#[test]
fn covariance_fit_finds_the_colour_kronecker_structure() {
    // Rank-one colour data: every image is u (x) p, so the sample covariance is exactly
    // u u^T (x) S and one colour (x) space product fits it (8-bit rounding aside). Independent
    // channels with different spatial scales leave a clear error with one product.
    for (tag, rank_one) in [("k1", true), ("k3", false)] {
        let dir = scratch(&format!("kron-{tag}"));
        let imgs = dir.join("imgs");
        std::fs::create_dir_all(&imgs).unwrap();
        write_colour_images(&imgs, 200, rank_one);
        let fit = covariance_fit(&format!("images:{}", imgs.display()), &dir);
        let k = |i: usize| fit["kronecker_errors"][i].as_f64().unwrap();
        if rank_one {
            assert!(k(0) < 1e-3, "rank-one colour: one product should fit, error {}", k(0));
        } else {
            // 0.63 here; sampling makes the channels correlate a little, so three products do not
            // fit exactly either.
            assert!(k(0) > 0.3, "independent channels: one product cannot fit, error {}", k(0));
        }
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = scratch("bad");
    let trunc = dir.join("t-images-idx3-ubyte");
    write_idx(&trunc, 4, 8);
    let bytes = std::fs::read(&trunc).unwrap();
    std::fs::write(&trunc, &bytes[..100]).unwrap();
    assert_error(&covdiff(&["data", "info", &format!("idx:{}", trunc.display())]), "offset 100: data truncated");
    assert_error(&covdiff(&["data", "info", "nonsense"]), "unknown data source");
    assert_error(&covdiff(&["data", "info", &format!("cifar10:{}", dir.display())]), "no CIFAR-10 batches");
    assert_error(&covdiff(&["data", "info", "idx:/definitely/not/here"]), "/definitely/not/here");
    assert_error(&covdiff(&["covariance", "fit", &format!("images:{}", dir.display())]), "no .png");
}

#[test]
fn missing_cuda_is_a_clear_error() {
    let o = covdiff(&["--device", "cuda", "bench", "dct", "--sizes", "8", "--reps", "1"]);
    // Built without the cuda feature: say so. Built with it, on a machine without a driver: say that.
    assert_error(&o, "cuda");
}

#[test]
fn benches_run_and_report_ratios() {
    let o = covdiff(&["bench", "covariance", "--sizes", "8,16", "--batch", "2", "--reps", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("ratio") && out.contains("growth exponent"), "{out}");
    let o = covdiff(&["bench", "dct", "--sizes", "8", "--reps", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn toy2d_trains_samples_by_label_and_rejects_bad_requests() {
    let dir = scratch("toy2d");
    let stem = dir.join("mix");
    let o = covdiff(&[
        "toy2d",
        "train",
        "--data",
        "mix",
        "--conditional",
        "--steps",
        "60",
        "--points",
        "400",
        "--out",
        stem.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("mix.json")).unwrap()).unwrap();
    assert_eq!(card["classes"], 4);
    assert_eq!(card["objective"], "principled");
    let metrics = std::fs::read_to_string(dir.join("mix.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 3, "steps 1, 51 and 60");
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert!(first["loss"].as_f64().unwrap().is_finite());

    let card_path = dir.join("mix.json");
    let (svg, npy) = (dir.join("s.svg"), dir.join("s.npy"));
    let o = covdiff(&[
        "toy2d",
        "sample",
        "--model",
        card_path.to_str().unwrap(),
        "--k",
        "5",
        "--label",
        "2",
        "--n",
        "50",
        "--out",
        svg.to_str().unwrap(),
        "--raw",
        npy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(covdiff_core::npy::read_f32(&npy).unwrap().0, vec![50, 2]);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<circle"));

    let model = card_path.to_str().unwrap();
    assert_error(
        &covdiff(&["toy2d", "sample", "--model", model, "--label", "9", "--out", svg.to_str().unwrap()]),
        "out of range",
    );
    assert_error(
        &covdiff(&["toy2d", "sample", "--model", model, "--covariance", "thesis", "--out", svg.to_str().unwrap()]),
        "needs a model trained",
    );
    assert_error(&covdiff(&["toy2d", "sample", "--model", model, "--k", "0", "--out", svg.to_str().unwrap()]), "K");
    assert_error(
        &covdiff(&["toy2d", "train", "--data", "spiral", "--out", stem.to_str().unwrap()]),
        "unknown toy dataset",
    );
    std::fs::write(dir.join("mix.mpk"), b"garbage").unwrap();
    assert_error(
        &covdiff(&["toy2d", "sample", "--model", model, "--out", svg.to_str().unwrap()]),
        "cannot load weights",
    );
    std::fs::write(&card_path, b"{not json").unwrap();
    assert_error(
        &covdiff(&["toy2d", "sample", "--model", model, "--out", svg.to_str().unwrap()]),
        "not a toy2d model card",
    );
}

/// `(step, loss)` of each line of a JSONL metrics file.
fn metric_lines(path: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn killed_training_resumes_from_its_checkpoint() {
    let dir = scratch("resume");
    let stem = dir.join("killed");
    let args = |stem: &Path| {
        let s = stem.to_str().unwrap().to_string();
        [
            "toy2d",
            "train",
            "--data",
            "moons",
            "--steps",
            "800",
            "--points",
            "500",
            "--checkpoint-every",
            "100",
            "--out",
            &s,
        ]
        .map(String::from)
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_covdiff"))
        .args(args(&stem))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = stem.with_extension("ckpt").join("state.json");
    let start = std::time::Instant::now();
    loop {
        let step = std::fs::read_to_string(&state)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v["step"].as_u64());
        if step.is_some_and(|s| s >= 300) {
            break;
        }
        assert!(start.elapsed().as_secs() < 300, "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "training ended before it could be killed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = metric_lines(&stem.with_extension("jsonl"));
    assert!(!stem.with_extension("json").exists(), "the killed run wrote no model card");

    let o = Command::new(env!("CARGO_BIN_EXE_covdiff")).args(args(&stem)).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming from the checkpoint"), "{}", stderr(&o));
    let all = metric_lines(&stem.with_extension("jsonl"));
    // The curve continues: one start at step 1, the resumed records pick up after the checkpoint,
    // and the first of them is nowhere near the loss of a fresh model.
    assert_eq!(all.iter().filter(|(s, _)| *s == 1).count(), 1);
    let resumed = &all[before.len()..];
    assert!(resumed[0].0 > 300 && resumed.last().unwrap().0 == 800, "{resumed:?}");
    assert!(resumed[0].1 < 0.8 * all[0].1, "resumed loss {} vs fresh {}", resumed[0].1, all[0].1);
    assert!(!stem.with_extension("ckpt").exists(), "finished runs clean up their checkpoint");

    // Batches are seeded by step and the optimiser state is restored, so the resumed run ends
    // where an uninterrupted one does.
    let whole = dir.join("whole");
    let o = Command::new(env!("CARGO_BIN_EXE_covdiff")).args(args(&whole)).output().unwrap();
    assert!(o.status.success());
    let card = |p: PathBuf| -> f64 {
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(p).unwrap()).unwrap()["final_loss"]
            .as_f64()
            .unwrap()
    };
    let (a, b) = (card(stem.with_extension("json")), card(whole.with_extension("json")));
    assert!((a - b).abs() < 1e-5 * b.abs().max(1.0), "resumed {a} vs uninterrupted {b}");

    // A checkpoint of another run is refused, not silently resumed.
    let other = dir.join("other");
    std::fs::create_dir_all(other.with_extension("ckpt")).unwrap();
    std::fs::write(other.with_extension("ckpt").join("state.json"), r#"{"run": {"data": "circles"}, "step": 5}"#)
        .unwrap();
    assert_error(&covdiff(&args(&other).each_ref().map(|s| s.as_str())), "different run");
}

/// Stage 2 with GFF noise on the given eps weights.
fn heads_gff(train: &[String], weights: &Path) -> Output {
    let mut a = train.to_vec();
    a.extend(["--noise", "gff", "--heads", "diag", "--eps-weights", weights.to_str().unwrap()].map(String::from));
    Command::new(env!("CARGO_BIN_EXE_covdiff")).args(a).output().unwrap()
}

fn step_of(state: &Path) -> Option<u64> {
    std::fs::read_to_string(state)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["step"].as_u64())
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn image_pipeline_trains_resumes_samples_evaluates_and_exports() {
    let dir = scratch("image");
    let data = dir.join("train-images-idx3-ubyte");
    write_idx(&data, 64, 8);
    let mut labels = vec![0u8, 0, 8, 1, 0, 0, 0, 64];
    labels.extend((0..64u8).map(|k| k % 3));
    std::fs::write(dir.join("train-labels-idx1-ubyte"), labels).unwrap();
    let config = dir.join("run.toml");
    std::fs::write(
        &config,
        format!(
            "[data]\nsource = \"idx:{}\"\n\n[unet]\nblock_out_channels = [8, 8]\nattention = [false, true]\n\
             norm_num_groups = 4\nlayers_per_block = 1\n\n[train]\nsteps = 200\nbatch = 4\ncheckpoint_every = 5\n\
             log_every = 1\nwarmup = 5\nlr = 1e-3\n",
            data.display()
        ),
    )
    .unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let train = |out: &Path| ["train", "--config", &s(&config), "--out", &s(out)].map(String::from);

    // Stage 1, killed after a checkpoint, then resumed: the loss curve continues.
    let eps = dir.join("eps");
    let mut child = Command::new(env!("CARGO_BIN_EXE_covdiff"))
        .args(train(&eps))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while step_of(&eps.join("checkpoint/state.json")).is_none_or(|s| s < 20) {
        assert!(start.elapsed().as_secs() < 300, "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "training ended before it could be killed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!eps.join("model.safetensors").exists());
    let before = metric_lines(&eps.join("metrics.jsonl"));
    let o = Command::new(env!("CARGO_BIN_EXE_covdiff")).args(train(&eps)).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming from the checkpoint"), "{}", stderr(&o));
    let all = metric_lines(&eps.join("metrics.jsonl"));
    assert_eq!(all.iter().filter(|(s, _)| *s == 1).count(), 1, "{all:?}");
    let resumed = &all[before.len()..];
    assert!(resumed[0].0 >= 20 && resumed.last().unwrap().0 == 200, "{resumed:?}");
    let early: f64 = all[..5].iter().map(|x| x.1).sum::<f64>() / 5.0;
    let late: f64 = all[all.len() - 5..].iter().map(|x| x.1).sum::<f64>() / 5.0;
    assert!(late < early, "stage-1 loss did not fall: {early} -> {late}");
    // Seeded batches and a restored optimiser and EMA: the resumed run ends where an uninterrupted one does.
    let whole = dir.join("whole");
    assert!(covdiff(&train(&whole).each_ref().map(|s| s.as_str())).status.success());
    let card = json(&eps.join("model.json"));
    let (a, b) = (
        card["metrics"]["final_loss"].as_f64().unwrap(),
        json(&whole.join("model.json"))["metrics"]["final_loss"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 1e-5 * b.abs().max(1.0), "resumed {a} vs uninterrupted {b}");
    assert_eq!(card["steps_done"], 200);
    let weights = eps.join("model.safetensors");

    // Stage 2 on the frozen UNet.
    let heads = |kind: &str, objective: &str, out: &Path| {
        let mut a = train(out).to_vec();
        a.extend(
            ["--heads", kind, "--objective", objective, "--eps-weights", &s(&weights), "--steps", "8"]
                .map(String::from),
        );
        Command::new(env!("CARGO_BIN_EXE_covdiff")).args(a).output().unwrap()
    };
    let kdct = dir.join("kdct");
    let o = heads("kdct", "ocm", &kdct);
    assert!(o.status.success(), "{}", stderr(&o));
    let diag = dir.join("diag");
    assert!(heads("diag", "sn", &diag).status.success());
    assert_error(&heads("kdct", "sn", &dir.join("bad")), "diag heads only");
    assert_eq!(json(&kdct.join("model.json"))["heads"]["kind"]["kind"], "kdct");

    // Sampling side by side, with raw tensors.
    let (kw, dw) = (s(&kdct.join("model.safetensors")), s(&diag.join("model.safetensors")));
    let png = dir.join("cmp.png");
    let raw = dir.join("cmp.npy");
    let o = covdiff(&[
        "sample",
        "--weights",
        &kw,
        "--weights",
        &dw,
        "--compare",
        "iso,beta,ddim,diag,kdct",
        "--steps",
        "3",
        "--n",
        "4",
        "--out",
        &s(&png),
        "--raw",
        &s(&raw),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(png.exists());
    let bytes = std::fs::read(&raw).unwrap();
    assert!(String::from_utf8_lossy(&bytes[..128]).contains("(5, 4, 1, 8, 8)"));
    assert_error(&covdiff(&["sample", "--weights", &kw, "--covariance", "lowrank4"]), "no sampler 'lowrank4'");

    // NLL, exact and stochastic, and the table.
    for logdet in ["exact", "lanczos"] {
        let o = covdiff(&[
            "eval",
            "nll",
            "--weights",
            &kw,
            "--covariances",
            "beta,kdct",
            "--steps",
            "3",
            "--n",
            "4",
            "--batch",
            "2",
            "--data",
            &format!("idx:{}", data.display()),
            "--logdet",
            logdet,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("kdct"), "{}", stdout(&o));
    }
    let table = dir.join("table");
    let o = covdiff(&[
        "eval",
        "table",
        "--weights",
        &kw,
        "--weights",
        &dw,
        "--covariances",
        "beta-tilde,diag,kdct",
        "--ks",
        "2,3",
        "--n",
        "2",
        "--data",
        &format!("idx:{}", data.display()),
        "--out",
        &s(&table),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&table.with_extension("json")).as_array().unwrap().len(), 6);
    assert!(std::fs::read_to_string(table.with_extension("md")).unwrap().contains("| kdct |"));

    // FD, precision and recall in the features of a classifier trained on the labels.
    let cls = dir.join("cls");
    let o = covdiff(&[
        "classifier",
        "--data",
        &format!("idx:{}", data.display()),
        "--steps",
        "5",
        "--batch",
        "8",
        "--out",
        &s(&cls),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = covdiff(&[
        "eval",
        "fd",
        "--weights",
        &kw,
        "--covariances",
        "beta,kdct",
        "--steps",
        "2",
        "--fd-samples",
        "6",
        "--batch",
        "3",
        "--classifier",
        &s(&cls),
        "--data",
        &format!("idx:{}", data.display()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("precision"), "{}", stdout(&o));
    assert_error(&covdiff(&["eval", "fd", "--weights", &kw, "--steps", "2"]), "--classifier");

    // Export, then bad weights: truncated, and shapes that do not fit the card.
    let exported = dir.join("weights/tiny.safetensors");
    assert!(covdiff(&["export", "--run", &s(&kdct), "--out", &s(&exported)]).status.success());
    assert!(exported.with_extension("json").exists());
    let cut = dir.join("cut.safetensors");
    let full = std::fs::read(&exported).unwrap();
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    std::fs::copy(exported.with_extension("json"), cut.with_extension("json")).unwrap();
    assert_error(&covdiff(&["sample", "--weights", &s(&cut)]), "cut.safetensors");
    let wrong = dir.join("wrong.safetensors");
    std::fs::copy(&exported, &wrong).unwrap();
    let mut card = json(&exported.with_extension("json"));
    card["unet"]["block_out_channels"] = serde_json::json!([8, 16]);
    std::fs::write(wrong.with_extension("json"), card.to_string()).unwrap();
    // A card whose heads do not fit its own UNet is refused before any tensor is read...
    assert_error(&covdiff(&["sample", "--weights", &s(&wrong)]), "heads do not fit its UNet");
    // ...and a consistent card that does not fit the tensors names the tensors.
    card["heads"] = serde_json::Value::Null;
    card["objective"] = serde_json::Value::Null;
    std::fs::write(wrong.with_extension("json"), card.to_string()).unwrap();
    assert_error(&covdiff(&["sample", "--weights", &s(&wrong)]), "down_blocks.1");

    // NI-DDPM: GFF forward noise, trained, sampled, and its NLL (whitened coordinates, pixel decoder).
    let gff = dir.join("gff");
    let mut a = train(&gff).to_vec();
    a.extend(["--noise", "gff", "--steps", "10"].map(String::from));
    let o = Command::new(env!("CARGO_BIN_EXE_covdiff")).args(a).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&gff.join("model.json"))["noise"]["kind"], "gff");
    let gw = s(&gff.join("model.safetensors"));
    for sampler in ["beta-tilde", "ddim"] {
        let o = covdiff(&[
            "sample",
            "--weights",
            &gw,
            "--covariance",
            sampler,
            "--steps",
            "3",
            "--n",
            "2",
            "--out",
            &s(&dir.join("gff.png")),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = covdiff(&[
        "eval",
        "nll",
        "--weights",
        &gw,
        "--covariances",
        "beta,beta-tilde",
        "--steps",
        "3",
        "--n",
        "2",
        "--data",
        &format!("idx:{}", data.display()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("beta-tilde"), "{}", stdout(&o));
    // Weights of another noise cannot seed stage 2 of this one.
    assert_error(&heads_gff(&train(&dir.join("mixed")), &weights), "other forward noise");

    // Config mistakes are named.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[train]\nstep = 5\n").unwrap();
    assert_error(&covdiff(&["train", "--config", &s(&bad), "--out", &s(&dir.join("x"))]), "unknown field `step`");
    assert_error(
        &covdiff(&["train", "--config", &s(&config), "--out", &s(&dir.join("y")), "--heads", "kdct"]),
        "--eps-weights",
    );
}

#[test]
fn the_shipped_weights_load_and_sample() {
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weights");
    let out = scratch("shipped");
    let (d, k) = (weights.join("fashion-mnist-diag.safetensors"), weights.join("fashion-mnist-kdct.safetensors"));
    let o = covdiff(&[
        "sample",
        "--weights",
        d.to_str().unwrap(),
        "--weights",
        k.to_str().unwrap(),
        "--compare",
        "iso,diag,kdct",
        "--steps",
        "2",
        "--n",
        "2",
        "--out",
        out.join("s.png").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn analytic_denoisers_compare_sample_and_measure_beside_the_shipped_unet() {
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weights/fashion-mnist-kdct.safetensors");
    let w = weights.to_str().unwrap();
    let out = scratch("denoise");
    let idx = out.join("train.idx");
    write_idx(&idx, 40, 28);
    let data = format!("idx:{}", idx.display());
    let common = ["--weights", w, "--data", data.as_str(), "--local-limit", "6", "--chunk", "16"];
    let dir = out.join("cmp");
    let mut args = vec!["denoise", "compare"];
    args.extend(common);
    args.extend([
        "--denoisers",
        "optimal,wiener,patch:5,els:3,mask:0.05,wmask:0.05",
        "--n",
        "3",
        "--batch",
        "2",
        "--steps",
        "2",
        "--field-inputs",
        "2",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let o = covdiff(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = json(&dir.join("summary.json"));
    let rows = summary["denoisers"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    assert_eq!(summary["training_images"], 40);
    assert_eq!(summary["local_training_images"], 6);
    for r in rows {
        let r2 = r["r2"].as_f64().unwrap();
        let mse = r["mse"].as_f64().unwrap();
        assert!(r2.is_finite() && r2 <= 1.0 && mse.is_finite() && mse >= 0.0, "{r}");
    }
    let lines = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 6 * 2);
    for f in ["x0.png", "mse.svg", "r2.svg"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let svg = std::fs::read_to_string(dir.join("mse.svg")).unwrap();
    assert!(svg.contains("mask:0.05") && svg.contains("sampling step"), "legend and axis label");

    let md = out.join("table.md");
    let o = covdiff(&["denoise", "table", dir.join("summary.json").to_str().unwrap(), "--out", md.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = std::fs::read_to_string(&md).unwrap();
    assert_eq!(table.lines().count(), 2 + 6);
    assert!(table.contains("| wmask:0.05 | 6 | 3 |") && table.contains("| 0.072 | 0.211 |"), "{table}");
    assert!(table.contains("| optimal | 40 | 3 |") && table.contains("r^2, t < 850"), "{table}");

    // DDIM with the optimal denoiser ends on training images: the nearest one is at distance 0.
    let png = out.join("s.png");
    let js = out.join("s.json");
    let mut args = vec!["denoise", "sample"];
    args.extend(common);
    args.extend(["--denoiser", "optimal,wiener", "--n", "2", "--steps", "3"]);
    args.extend(["--out", png.to_str().unwrap(), "--json", js.to_str().unwrap()]);
    let o = covdiff(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = json(&js);
    assert!(s["denoisers"][0]["nn_rms_distance"].as_f64().unwrap() < 1e-3, "{s}");
    assert!(s["denoisers"][1]["nn_rms_distance"].as_f64().unwrap() > 1e-3, "the Wiener filter is not a lookup");
    assert!(png.exists());

    let sens = out.join("sens.png");
    let mut args = vec!["denoise", "sensitivity"];
    args.extend(common);
    args.extend(["--t", "200,800", "--inputs", "2", "--out", sens.to_str().unwrap()]);
    let sj = out.join("sens.json");
    args.extend(["--json", sj.to_str().unwrap()]);
    let o = covdiff(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let f = json(&sj);
    assert_eq!(f["size"], 55);
    let field = f["times"][0]["unet_field"].as_array().unwrap();
    assert_eq!(field.len(), 55 * 55);
    assert_eq!(field[55 * 55 / 2].as_f64().unwrap(), 1.0, "a net is most sensitive to its own pixel");

    let post = out.join("post");
    let mut args = vec!["denoise", "posterior"];
    args.extend(common);
    args.extend(["--t", "600", "--out", post.to_str().unwrap()]);
    let o = covdiff(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let p = json(&post.join("posterior.json"));
    let t = &p["times"][0];
    let (diag, iso) = (t["error_diagonal"].as_f64().unwrap(), t["error_isotropic"].as_f64().unwrap());
    assert!(diag <= iso + 1e-12 && iso <= 1.0 + 1e-9, "{t}");
    assert_eq!(p["training_images"], 39);
    assert!(post.join("spectrum-t600.svg").exists() && post.join("covariance-t600.png").exists());

    let bj = out.join("bench.json");
    let mut args = vec!["bench", "denoisers"];
    args.extend(common);
    args.extend(["--batch", "2", "--reps", "1", "--json", bj.to_str().unwrap()]);
    let o = covdiff(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let b = json(&bj);
    let rows = b["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "the UNet and five denoisers");
    assert_eq!(rows[0]["denoiser"], "unet");
    assert!(rows.iter().all(|r| r["ms_per_step"].as_f64().unwrap() > 0.0));

    // Bad requests end in clear errors.
    let mut args = vec!["denoise", "compare"];
    args.extend(common);
    args.extend(["--denoisers", "optimal,bogus"]);
    assert_error(&covdiff(&args), "unknown analytic denoiser 'bogus'");
    let mut args = vec!["denoise", "sample"];
    args.extend(common);
    args.extend(["--denoiser", "els:0"]);
    assert_error(&covdiff(&args), "patch size");
    assert_error(&covdiff(&["denoise", "table", out.join("nothing.json").to_str().unwrap()]), "nothing.json");
}

/// `covariance true` on the shipped K-DCT and diagonal models: the UNet's Jacobian gives an
/// `E_t` whose learnt approximations are scored, with a table, JSON and labelled figures; a
/// model without heads, or a bad `--t`, is refused with a message.
#[test]
fn the_true_posterior_covariance_of_the_shipped_unet_is_compared_with_its_learnt_heads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weights");
    let (kdct, diag) = (root.join("fashion-mnist-kdct.safetensors"), root.join("fashion-mnist-diag.safetensors"));
    let out = scratch("true-cov");
    let idx = out.join("test.idx");
    write_idx(&idx, 3, 28);
    let data = format!("idx:{}", idx.display());
    let dir = out.join("true");
    let base = ["covariance", "true", "--data", data.as_str(), "--inputs", "1", "--rows-per-pass", "112"];
    let mut args = base.to_vec();
    args.extend(["--weights", kdct.to_str().unwrap(), "--weights", diag.to_str().unwrap()]);
    args.extend(["--t", "500", "--out", dir.to_str().unwrap()]);
    let o = covdiff(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = json(&dir.join("true-covariance.json"));
    assert_eq!(report["n"], 784);
    let r = &report["results"][0];
    let errors = r["error_learnt"].as_object().unwrap();
    assert_eq!(errors.len(), 2, "{r}");
    for (name, e) in errors {
        let e = e.as_f64().unwrap();
        assert!(e.is_finite() && e >= 0.0, "{name}: {e}");
    }
    // E_t = Cov[eps | x_t] has eigenvalues in [0, 1] for an exact denoiser; the UNet's is near that.
    let trace = r["trace"].as_f64().unwrap() / 784.0;
    assert!(trace > 0.0 && trace < 1.2, "trace / n = {trace}");
    let table = std::fs::read_to_string(dir.join("table.md")).unwrap();
    assert!(table.contains("best isotropic") && table.contains("| 500 |"), "{table}");
    let svg = std::fs::read_to_string(dir.join("spectrum-t500.svg")).unwrap();
    assert!(svg.contains("true (UNet Jacobian)") && svg.contains("eigenvalue"), "legend and axis label");
    assert!(dir.join("covariance-t500.png").exists());

    let mut args = base.to_vec();
    args.extend(["--weights", kdct.to_str().unwrap(), "--t", "0", "--out", dir.to_str().unwrap()]);
    let o = covdiff(&args);
    assert!(!o.status.success() && stderr(&o).contains("--t must lie in"), "{}", stderr(&o));
}

/// `inpaint` on the shipped K-DCT and diagonal models: guided sampling with isotropic, diagonal
/// and K-DCT covariance honours the observed pixels (their error is of the order of the
/// observation noise, 1e-4, where an unguided or unconverged sampler is off by 0.05 or more),
/// and writes a table, JSON and a labelled grid per mask; bad masks, noise levels and covariance
/// names are refused with messages.
#[test]
fn inpainting_honours_the_observed_pixels_with_every_covariance() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weights");
    let (kdct, diag) = (root.join("fashion-mnist-kdct.safetensors"), root.join("fashion-mnist-diag.safetensors"));
    let out = scratch("inpaint");
    let idx = out.join("test.idx");
    write_idx(&idx, 3, 28);
    let data = format!("idx:{}", idx.display());
    let dir = out.join("inpaint");
    let mut base = vec!["inpaint", "--data", data.as_str(), "--n", "3", "--steps", "3", "--out", dir.to_str().unwrap()];
    base.extend(["--weights", kdct.to_str().unwrap(), "--weights", diag.to_str().unwrap()]);
    let mut args = base.clone();
    args.extend(["--mask", "box,random:0.5"]);
    let o = covdiff(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = json(&dir.join("inpaint.json"));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 6, "2 masks x 3 covariances");
    for r in rows {
        for key in ["mse", "mse_missing", "psnr_db"] {
            assert!(r[key].as_f64().unwrap().is_finite(), "{r}");
        }
        assert!(r["mse_observed"].as_f64().unwrap() < 0.01, "the samples ignore the observation: {r}");
    }
    let table = std::fs::read_to_string(dir.join("table.md")).unwrap();
    assert!(table.contains("| box | kdct |") && table.contains("| random:0.5 | iso |"), "{table}");
    assert!(dir.join("box.png").exists() && dir.join("random-0.5.png").exists());

    for (extra, want) in [
        (["--mask", "circle"], "no mask 'circle'"),
        (["--sigma-y", "0"], "--sigma-y must be positive"),
        (["--covariance", "nope"], "no sampler 'nope'"),
    ] {
        let mut args = base.clone();
        args.extend(extra);
        assert_error(&covdiff(&args), want);
    }
}

#[test]
fn a_diffusers_unet_folder_imports_and_samples() {
    // The committed diffusers folder (#13 part 5): imported, its card records diffusers' timestep
    // convention, and the model samples; bad folders are refused with reasons. The numbers are
    // checked against diffusers in covdiff-model's unet tests.
    let dir = scratch("import");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/diffusers-unet");
    let out = dir.join("imported.safetensors");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let o = covdiff(&["import", "diffusers", &s(&fixture), "--out", &s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let card = json(&out.with_extension("json"));
    assert_eq!(card["unet"]["timestep_offset"], -1.0);
    assert_eq!(card["unet"]["freq_shift"], 1.0);
    assert_eq!(card["size"], 8);
    assert!(card["metrics"]["timesteps"].as_str().unwrap().contains("0-based"));
    let png = dir.join("s.png");
    let o = covdiff(&[
        "sample",
        "--weights",
        &s(&out),
        "--covariance",
        "beta-tilde",
        "--steps",
        "3",
        "--n",
        "2",
        "--out",
        &s(&png),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(png.exists());
    // No folder, a folder without weights, and an unsupported block type.
    assert_error(&covdiff(&["import", "diffusers", &s(&dir.join("none"))]), "UNet2DModel folder");
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let mut config = json(&fixture.join("config.json"));
    std::fs::write(bad.join("config.json"), config.to_string()).unwrap();
    assert_error(&covdiff(&["import", "diffusers", &s(&bad)]), "diffusion_pytorch_model.safetensors");
    config["down_block_types"] = serde_json::json!(["DownBlock2D", "CrossAttnDownBlock2D"]);
    std::fs::write(bad.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(fixture.join("diffusion_pytorch_model.safetensors"), bad.join("diffusion_pytorch_model.safetensors"))
        .unwrap();
    assert_error(&covdiff(&["import", "diffusers", &s(&bad)]), "CrossAttnDownBlock2D");
    // Weights of another shape are named tensor by tensor.
    config["down_block_types"] = serde_json::json!(["DownBlock2D", "DownBlock2D"]);
    config["up_block_types"] = serde_json::json!(["UpBlock2D", "UpBlock2D"]);
    std::fs::write(bad.join("config.json"), config.to_string()).unwrap();
    assert_error(&covdiff(&["import", "diffusers", &s(&bad)]), "attentions");
    std::fs::remove_dir_all(&dir).ok();
}
