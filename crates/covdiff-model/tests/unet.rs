//! The UNet: shapes, diffusers-style module names, and the DDPM CIFAR-10 size.

#![cfg(any(feature = "flex", feature = "ndarray"))]

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{backend::Backend, Distribution, Int, Tensor};
use covdiff_model::backends::Cpu;
use covdiff_model::unet::UNetConfig;

/// Collects the dotted path of every float parameter.
#[derive(Default)]
struct Paths {
    stack: Vec<String>,
    found: Vec<String>,
}

impl<B: Backend> ModuleVisitor<B> for Paths {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<B, D>>) {
        self.found.push(self.stack.join("."));
    }
}

#[test]
fn tiny_unet_maps_images_to_images_and_exposes_head_features() {
    let dev = Default::default();
    let model = UNetConfig::tiny(1).init::<Cpu>(&dev);
    let x = Tensor::<Cpu, 4>::random([2, 1, 28, 28], Distribution::Normal(0.0, 1.0), &dev);
    let t = Tensor::<Cpu, 1>::from_floats([10.0, 900.0], &dev);
    let out = model.forward_features(x, t, None);
    assert_eq!(out.eps.dims(), [2, 1, 28, 28]);
    assert_eq!(out.mid.dims(), [2, 64, 7, 7]);
    assert_eq!(out.last_up.dims(), [2, 32, 28, 28]);
    let eps = out.eps.into_data().to_vec::<f32>().unwrap();
    assert!(eps.iter().all(|v| v.is_finite()));

    let cond = UNetConfig::tiny(3).with_num_class_embeds(Some(10)).init::<Cpu>(&dev);
    let x = Tensor::<Cpu, 4>::zeros([2, 3, 16, 16], &dev);
    let y = Tensor::<Cpu, 1, Int>::from_ints([3, 7], &dev);
    let a = cond.forward(x.clone(), Tensor::from_floats([5.0, 5.0], &dev), Some(y));
    assert_eq!(a.dims(), [2, 3, 16, 16]);
    // The class changes the output.
    let d = (a.clone().narrow(0, 0, 1) - a.narrow(0, 1, 1)).abs().max().into_scalar();
    assert!(d > 0.0);
}

#[test]
fn module_names_follow_diffusers_unet2dmodel() {
    let model = UNetConfig::cifar(3).init::<Cpu>(&Default::default());
    let mut paths = Paths::default();
    model.visit(&mut paths);
    let names = paths.found;
    for want in [
        "conv_in.weight",
        "time_embedding.linear_1.weight",
        "time_embedding.linear_2.bias",
        "down_blocks.0.resnets.0.norm1.gamma",
        "down_blocks.0.resnets.0.conv1.weight",
        "down_blocks.0.resnets.0.time_emb_proj.weight",
        "down_blocks.0.resnets.1.conv2.bias",
        "down_blocks.0.downsamplers.0.conv.weight",
        "down_blocks.1.resnets.0.conv_shortcut.weight",
        "down_blocks.1.attentions.0.group_norm.beta",
        "down_blocks.1.attentions.1.to_q.weight",
        "down_blocks.1.attentions.0.to_out.0.weight",
        "mid_block.resnets.1.norm2.gamma",
        "mid_block.attentions.0.to_k.weight",
        "up_blocks.0.resnets.2.conv_shortcut.weight",
        "up_blocks.0.upsamplers.0.conv.weight",
        "up_blocks.2.attentions.2.to_v.bias",
        "up_blocks.3.resnets.0.conv1.weight",
        "conv_norm_out.gamma",
        "conv_out.weight",
    ] {
        assert!(names.iter().any(|n| n == want), "missing {want}; have e.g. {:?}", &names[..names.len().min(12)]);
    }
    for absent in [
        "down_blocks.3.downsamplers.0.conv.weight",
        "up_blocks.3.upsamplers.0.conv.weight",
        "down_blocks.0.attentions.0.to_q.weight",
    ] {
        assert!(!names.iter().any(|n| n == absent), "unexpected {absent}");
    }
}

#[test]
fn cifar_config_has_the_size_of_ddpm_cifar10() {
    // Ho et al. report 35.7M parameters for their CIFAR-10 model; diffusers'
    // google/ddpm-cifar10-32, the same architecture, has exactly 35,746,307.
    let n = UNetConfig::cifar(3).init::<Cpu>(&Default::default()).num_params();
    assert_eq!(n, 35_746_307);
    assert!(UNetConfig::new(vec![32, 64], vec![false]).validate().is_err());
    let err = UNetConfig::new(vec![30], vec![false]).validate().unwrap_err();
    assert!(matches!(err, covdiff_core::Error::Invalid { .. }) && err.to_string().contains("groups"), "{err}");
    // A configuration from a user is an error, not a panic.
    let err = UNetConfig::new(vec![32, 64], vec![false]).try_init::<Cpu>(&Default::default()).unwrap_err();
    assert!(err.to_string().contains("attention flag"), "{err}");
}

/// Direct convolution in f64 loops: `y[n, o, i, j] = b[o] + sum W[o, c, di, dj] x[n, c, s i + di - p, s j + dj - p]`.
fn direct_conv(
    x: &[f32],
    xs: [usize; 4],
    w: &[f32],
    ws: [usize; 4],
    bias: &[f32],
    stride: usize,
    pad: usize,
) -> Vec<f64> {
    let [n, c, h, wd] = xs;
    let [o, _, k, _] = ws;
    let ho = (h + 2 * pad - k) / stride + 1;
    let wo = (wd + 2 * pad - k) / stride + 1;
    let mut y = vec![0.0f64; n * o * ho * wo];
    for ni in 0..n {
        for oi in 0..o {
            for i in 0..ho {
                for j in 0..wo {
                    let mut acc = bias[oi] as f64;
                    for ci in 0..c {
                        for di in 0..k {
                            for dj in 0..k {
                                let (r, q) = (
                                    (stride * i + di) as isize - pad as isize,
                                    (stride * j + dj) as isize - pad as isize,
                                );
                                if r < 0 || q < 0 || r >= h as isize || q >= wd as isize {
                                    continue;
                                }
                                let xv = x[((ni * c + ci) * h + r as usize) * wd + q as usize] as f64;
                                acc += w[((oi * c + ci) * k + di) * k + dj] as f64 * xv;
                            }
                        }
                    }
                    y[((ni * o + oi) * ho + i) * wo + j] = acc;
                }
            }
        }
    }
    y
}

/// Every route of our convolution against a direct loop convolution, forward; and the im2col
/// and host-kernel routes' gradients (what training uses) against those of burn's `conv2d`
/// under autodiff, also with the input not tracked (the UNet's first convolution).
#[test]
fn conv_routes_equal_direct_convolution_and_gradients_match() {
    use burn::backend::Autodiff;
    use covdiff_model::unet::{Conv, ConvRoute};
    type Ad = Autodiff<Cpu>;
    let dev = Default::default();
    for (k, stride, pad, size) in [(3, 1, 1, 8), (3, 2, 1, 8), (3, 2, 1, 7), (1, 1, 0, 5), (3, 1, 0, 6), (3, 1, 1, 5)] {
        let conv = Conv::<Cpu>::new(3, 4, k, stride, pad, &dev);
        let x = Tensor::<Cpu, 4>::random([2, 3, size, size], Distribution::Normal(0.0, 1.0), &dev);
        let xv = x.to_data().to_vec::<f32>().unwrap();
        let wv = conv.weight.val().to_data().to_vec::<f32>().unwrap();
        let bv = conv.bias.val().to_data().to_vec::<f32>().unwrap();
        let expected = direct_conv(&xv, [2, 3, size, size], &wv, [4, 3, k, k], &bv, stride, pad);
        for route in [ConvRoute::Backend, ConvRoute::Im2col, ConvRoute::Kernel] {
            let y = conv.forward_by(x.clone(), route);
            let got = y.to_data().to_vec::<f32>().unwrap();
            assert_eq!(got.len(), expected.len(), "{route:?} k={k} stride={stride} pad={pad} size={size}");
            let diff = got.iter().zip(&expected).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
            // f32 sums of at most 27 products of O(1) terms.
            assert!(diff < 1e-5, "{route:?} k={k} stride={stride} pad={pad} size={size}: {diff}");
        }
        // Gradients of <g, y> for a fixed random g, by each route under autodiff.
        let g = Tensor::<Ad, 4>::random(conv.forward(x.clone()).dims(), Distribution::Normal(0.0, 1.0), &dev);
        let grads = |route, track_x: bool| {
            let conv = Conv::<Ad>::from_tensors(
                Tensor::from_inner(conv.weight.val()).require_grad(),
                Tensor::from_inner(conv.bias.val()).require_grad(),
                stride,
                pad,
            );
            let xa = Tensor::<Ad, 4>::from_inner(x.clone());
            let xa = if track_x { xa.require_grad() } else { xa };
            let gr = (conv.forward_by(xa.clone(), route) * g.clone()).sum().backward();
            let dx = xa.grad(&gr).map(|d| d.flatten::<1>(0, 3));
            let dw = conv.weight.val().grad(&gr).unwrap().flatten::<1>(0, 3);
            let db = conv.bias.val().grad(&gr).unwrap();
            (dx, [dw, db])
        };
        for route in [ConvRoute::Im2col, ConvRoute::Kernel] {
            for track_x in [true, false] {
                let ((dx, ours), (dx_ref, reference)) = (grads(route, track_x), grads(ConvRoute::Backend, track_x));
                assert_eq!(dx.is_some(), track_x, "{route:?}: a gradient for x exactly when x is tracked");
                let pairs = dx.into_iter().zip(dx_ref).chain(ours.into_iter().zip(reference));
                let names = if track_x { vec!["x", "weight", "bias"] } else { vec!["weight", "bias"] };
                for (name, (a, b)) in names.iter().zip(pairs) {
                    let diff = (a - b).abs().max().into_scalar();
                    assert!(diff < 1e-4, "{route:?} d/d{name}, k={k} stride={stride} pad={pad} size={size}: {diff}");
                }
            }
        }
    }
}

#[test]
fn tiny_unet_loss_falls_in_a_few_hundred_steps() {
    use burn::backend::Autodiff;
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    use burn::tensor::TensorData;
    use covdiff_core::gaussian::DctGaussian;
    use covdiff_core::schedule::{Linear, Schedule};
    use rand::{rngs::StdRng, RngExt, SeedableRng};
    type Ad = Autodiff<Cpu>;

    let dev = Default::default();
    covdiff_model::normals::seed::<Ad>(&dev, 1);
    let data = DctGaussian::power_law(&[1.0], 1, 16, 4.0, 1.2).unwrap();
    let table = Linear::default().table();
    let mut rng = StdRng::seed_from_u64(2);
    let mut model = UNetConfig::tiny(1).init::<Ad>(&dev);
    let mut optim = AdamConfig::new().init();
    let (batch, steps) = (8, 240);
    let mut losses = Vec::new();
    for _ in 0..steps {
        let mut xt = Vec::with_capacity(batch * 256);
        let mut eps = Vec::with_capacity(batch * 256);
        let mut ts = Vec::with_capacity(batch);
        for _ in 0..batch {
            let x0 = data.sample_x0(&mut rng);
            let t = rng.random_range(1..=table.steps());
            let (sa, sb) = (table.abar(t).sqrt(), table.bbar(t).sqrt());
            for x in x0 {
                let e: f64 = rng.sample(rand_distr::StandardNormal);
                xt.push((sa * x + sb * e) as f32);
                eps.push(e as f32);
            }
            ts.push(t as f32);
        }
        let xt = Tensor::<Ad, 4>::from_data(TensorData::new(xt, [batch, 1, 16, 16]), &dev);
        let eps = Tensor::<Ad, 4>::from_data(TensorData::new(eps, [batch, 1, 16, 16]), &dev);
        let t = Tensor::<Ad, 1>::from_data(TensorData::new(ts, [batch]), &dev);
        let loss = (model.forward(xt, t, None) - eps).powi_scalar(2).mean();
        losses.push(loss.clone().into_scalar() as f64);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(2e-3, model, grads);
    }
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let (first, last) = (mean(&losses[..40]), mean(&losses[steps - 40..]));
    // L_simple starts near Var(eps) = 1; a learning network gets well below it.
    assert!(last < 0.6 * first, "loss {first:.3} -> {last:.3}");
}

/// The shipped tiny UNet against diffusers' `UNet2DModel` (the peer implementation) with the
/// same weights, on a fixed input: `tests/fixtures/unet_reference_*.npy`, written by
/// `scripts/unet_reference.py` (PyTorch 2.15, diffusers 0.42). Checks the convolutions (both
/// routes), group norms, attention and time embedding together.
#[test]
fn unet_matches_diffusers_on_the_shipped_weights() {
    use burn::backend::Autodiff;
    use burn::module::AutodiffModule;
    use covdiff_model::image::weights::{load, Bundle};
    use covdiff_model::image::{CovarianceHeadsConfig, HeadKind};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixture = |name: &str| covdiff_core::npy::read_f32(&root.join("tests/fixtures").join(name)).unwrap();
    let ((xs, x), (ys, eps)) = (fixture("unet_reference_x.npy"), fixture("unet_reference_eps.npy"));
    assert_eq!(xs, ys);
    let dev = Default::default();
    let cfg = UNetConfig::tiny(1);
    let bundle = Bundle::<Cpu> {
        unet: cfg.init(&dev),
        covariance_heads: Some(CovarianceHeadsConfig::for_unet(HeadKind::KDct, &cfg, 28).init(&dev)),
    };
    let bundle = load(bundle, &root.join("../../weights/fashion-mnist-kdct.safetensors")).unwrap();
    let shape = [xs[0], xs[1], xs[2], xs[3]];
    let x = Tensor::<Cpu, 4>::from_data(burn::tensor::TensorData::new(x, shape), &dev);
    let t = Tensor::<Cpu, 1>::from_floats([5.0, 250.0, 900.0], &dev);
    let worst = |got: Tensor<Cpu, 4>| {
        let got = got.to_data().to_vec::<f32>().unwrap();
        got.iter().zip(&eps).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max)
    };
    // Sampling (the backend's conv2d) and training (im2col under autodiff) both match.
    let plain = worst(bundle.unet.forward(x.clone(), t.clone(), None));
    let ad = <covdiff_model::unet::UNet<Autodiff<Cpu>> as AutodiffModule<_>>::from_inner(bundle.unet.clone());
    let trained = worst(ad.forward(Tensor::from_inner(x), Tensor::from_inner(t), None).inner());
    // Outputs are O(1); f32 differences in summation order across ~20 layers.
    assert!(plain < 2e-4 && trained < 2e-4, "max |eps - diffusers| = {plain} (plain), {trained} (autodiff)");
}

/// Compares covdiff's import of a diffusers `UNet2DModel` folder with diffusers' own output
/// stored beside it (`reference_*.npy`, diffusers' 0-based timesteps).
fn check_diffusers_folder(dir: &std::path::Path) {
    use covdiff_model::image::diffusers::import_unet;
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let npy = |name: &str| covdiff_core::npy::read_f32(&dir.join(name)).unwrap();
    let dev = Default::default();
    let config = String::from_utf8(read("config.json")).unwrap();
    let (imported, unet) = import_unet::<Cpu>(&config, read("diffusion_pytorch_model.safetensors"), &dev).unwrap();
    assert_eq!(imported.config.timestep_offset, Some(-1.0), "the diffusers convention is recorded");
    let ((xs, x), (_, t), (_, eps)) = (npy("reference_x.npy"), npy("reference_t.npy"), npy("reference_eps.npy"));
    let x = Tensor::<Cpu, 4>::from_data(burn::tensor::TensorData::new(x, [xs[0], xs[1], xs[2], xs[3]]), &dev);
    // covdiff's step for diffusers' index t is t + 1; the imported UNet feeds the network t.
    let steps: Vec<f32> = t.iter().map(|t| t + 1.0).collect();
    let got = unet.forward(x, Tensor::from_floats(steps.as_slice(), &dev), None).to_data().to_vec::<f32>().unwrap();
    let worst = got.iter().zip(&eps).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    eprintln!("{}: max |eps - diffusers| = {worst:e}", dir.display());
    assert!(worst < 1e-5, "{}: max |eps - diffusers| = {worst}", dir.display());
}

/// `covdiff import diffusers` (#13 part 5): the committed folder `tests/fixtures/diffusers-unet`
/// (random weights, freq_shift 1, no sin/cos flip, attention with two heads), and a folder written
/// now by `scripts/diffusers_fixture.py` where torch and diffusers are installed, each against
/// diffusers' own output within 1e-5; unsupported configurations are refused by name.
#[test]
fn diffusers_checkpoints_import_and_match_diffusers() {
    use covdiff_model::image::diffusers::{unet_config, ImportError};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let committed = root.join("tests/fixtures/diffusers-unet");
    check_diffusers_folder(&committed);
    let fresh = std::env::temp_dir().join(format!("covdiff-diffusers-{}", std::process::id()));
    let made = std::process::Command::new("python3")
        .arg(root.join("scripts/diffusers_fixture.py"))
        .arg(&fresh)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if made {
        check_diffusers_folder(&fresh);
        std::fs::remove_dir_all(&fresh).ok();
    } else {
        eprintln!(
            "skipped: a fresh diffusers folder needs python3 with torch and diffusers (pip install torch diffusers); \
             the committed fixture was checked"
        );
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(committed.join("config.json")).unwrap()).unwrap();
    for (key, value, named) in [
        ("down_block_types", serde_json::json!(["DownBlock2D", "CrossAttnDownBlock2D"]), "CrossAttnDownBlock2D"),
        ("up_block_types", serde_json::json!(["UpBlock2D", "UpBlock2D"]), "UpBlock2D"),
        ("time_embedding_type", serde_json::json!("fourier"), "fourier"),
        ("resnet_time_scale_shift", serde_json::json!("scale_shift"), "scale_shift"),
        ("_class_name", serde_json::json!("UNet2DConditionModel"), "UNet2DConditionModel"),
    ] {
        let mut bad = config.clone();
        bad[key] = value;
        match unet_config(&bad.to_string()) {
            Err(e @ ImportError::Unsupported(_)) => assert!(e.to_string().contains(named), "{key}: {e}"),
            other => panic!("{key}: expected a refusal naming {named}, got {other:?}"),
        }
    }
    assert!(matches!(unet_config("{"), Err(ImportError::Config(_))));
    let mut bad = config.clone();
    bad["block_out_channels"] = serde_json::json!([8]);
    assert!(matches!(unet_config(&bad.to_string()), Err(ImportError::Config(_))), "levels must agree");
}
