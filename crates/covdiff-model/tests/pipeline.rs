//! `Pipeline`: a model from the bytes of each shipped weights file, against the same model built
//! from the JSON card beside the file; and the errors that bad bytes, names and pairings give.

use burn::tensor::Tensor;
use covdiff_model::backends::Cpu;
use covdiff_model::diffusion::{initial_noise, SamplerConfig, SamplerKind, StepVariance};
use covdiff_model::image::pipeline::{safetensors_metadata, Column, Pipeline, PipelineError, CARD_KEY};
use covdiff_model::image::ModelCard;
use std::path::{Path, PathBuf};

type B = Cpu;

/// The backends' generators are global: tests that seed them run one at a time.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn seeded() -> std::sync::MutexGuard<'static, ()> {
    SEEDED.lock().unwrap_or_else(|e| e.into_inner())
}

fn weights_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weights")
}

fn shipped() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(weights_dir())
        .expect("weights/ exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "weights/ holds safetensors files");
    files
}

/// `steps` steps of `column` from seeded noise.
fn draw(p: &Pipeline<B>, column: Column, seed: u64) -> Vec<f32> {
    let device = Default::default();
    covdiff_model::normals::seed::<B>(&device, seed);
    let x_t = initial_noise::<B>(p.shape(2), p.noise(), &device);
    let config = SamplerConfig { kind: SamplerKind::Ddim { eta: 0.5 }, ..SamplerConfig::ddpm(StepVariance::Small, 3) };
    let mut sampling = p.sampling(column, &config).expect("a valid sampler");
    let x: Tensor<B, 4> = sampling.run(p.denoiser(column).expect("a denoiser"), x_t).expect("sampling runs");
    x.into_data().to_vec().expect("f32 samples")
}

#[test]
fn a_pipeline_from_bytes_samples_as_the_card_beside_the_weights_says() {
    let _seeded = seeded();
    let device = Default::default();
    for file in shipped() {
        let bytes = std::fs::read(&file).unwrap();
        let from_bytes = Pipeline::<B>::from_safetensors_bytes(&bytes, &device)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let card = ModelCard::from_json(&std::fs::read_to_string(file.with_extension("json")).unwrap()).unwrap();
        assert_eq!(from_bytes.card().name(), card.name(), "{}", file.display());
        let beside = Pipeline::<B>::from_card(card, bytes, "the file", &device).unwrap();
        let learned = from_bytes.column(&from_bytes.card().name()).expect("the learnt covariance by its card name");
        assert_eq!(learned, Column::Learned);
        for name in ["beta-tilde", "ddim"] {
            let column = from_bytes.column(name).unwrap();
            let (a, b) = (draw(&from_bytes, column, 7), draw(&beside, column, 7));
            assert!(a.iter().all(|v| v.is_finite()));
            assert!(a == b, "{} {name}: the same seed draws the same images", file.display());
        }
        let (a, b) = (draw(&from_bytes, learned, 7), draw(&beside, learned, 7));
        assert!(a == b, "{}: the learnt covariance draws the same images", file.display());
        // The learnt sampler differs from beta-tilde's: the heads are in use.
        assert!(a != draw(&from_bytes, Column::Heuristic(StepVariance::Small), 7), "{}", file.display());
    }
}

#[test]
fn bad_bytes_names_and_pairings_are_errors() {
    let _seeded = seeded();
    let device = Default::default();
    let bytes = std::fs::read(&shipped()[0]).unwrap();
    let err = |r: Result<Pipeline<B>, PipelineError>| match r {
        Err(e) => e.to_string(),
        Ok(_) => panic!("an error"),
    };
    // Truncated anywhere: in the length, in the header, in the tensors.
    assert!(err(Pipeline::from_safetensors_bytes(&bytes[..5], &device)).contains("not a safetensors file"));
    assert!(err(Pipeline::from_safetensors_bytes(&bytes[..100], &device)).contains("truncated"));
    let cut = Pipeline::<B>::from_safetensors_bytes(&bytes[..bytes.len() / 2], &device);
    assert!(matches!(cut, Err(PipelineError::Weights(_))), "half a file is a weights error");
    // No card in the header.
    let header = br#"{"__metadata__":{"format":"pt"}}"#;
    let mut no_card = (header.len() as u64).to_le_bytes().to_vec();
    no_card.extend_from_slice(header);
    assert!(matches!(Pipeline::<B>::from_safetensors_bytes(&no_card, &device), Err(PipelineError::NoCard)));
    // A card that does not fit its UNet.
    let metadata = safetensors_metadata(&bytes).unwrap();
    let mut card = ModelCard::from_json(&metadata[CARD_KEY]).unwrap();
    card.size = 30;
    assert!(matches!(Pipeline::<B>::from_card(card, bytes.clone(), "x", &device), Err(PipelineError::Card(_))));
    // Names and pairings.
    let p = Pipeline::<B>::from_safetensors_bytes(&bytes, &device).unwrap();
    let unknown = p.column("kdct-sn").unwrap_err().to_string();
    assert!(unknown.contains("no sampler 'kdct-sn'") && unknown.contains("beta-tilde"), "{unknown}");
    assert!(matches!(p.likelihood(Column::Ddim), Err(PipelineError::NoLikelihood)));
    let mut card = p.card().clone();
    card.heads = None;
    card.objective = None;
    let eps_only = {
        // The eps-UNet's tensors alone: a file whose heads are dropped from the card is refused
        // (its heads' tensors are left over), so build the eps model from a UNet-only card.
        let Err(e) = Pipeline::<B>::from_card(card, bytes.clone(), "x", &device) else {
            panic!("left-over head tensors are an error")
        };
        e.to_string()
    };
    assert!(eps_only.contains("covariance_heads."), "{eps_only}");
}

#[test]
fn a_learnt_covariance_on_a_model_without_heads_is_refused_when_the_sampler_is_built() {
    use covdiff_model::image::card::{DataConfig, NoiseConfig, ScheduleConfig, TrainSpec, CARD_FORMAT};
    use covdiff_model::image::weights::{save, Bundle};
    use covdiff_model::unet::UNetConfig;
    let _seeded = seeded();
    let device = Default::default();
    let unet = UNetConfig::new(vec![8, 8], vec![false, false])
        .with_in_channels(1)
        .with_out_channels(1)
        .with_norm_num_groups(4)
        .with_layers_per_block(1);
    let card = ModelCard {
        format: CARD_FORMAT.into(),
        channels: 1,
        size: 8,
        data: DataConfig::default(),
        schedule: ScheduleConfig::default(),
        noise: NoiseConfig::default(),
        unet: unet.clone(),
        heads: None,
        objective: None,
        train: TrainSpec::default(),
        steps_done: 0,
        metrics: serde_json::Value::Null,
        weights: "eps.safetensors".into(),
    };
    let dir = std::env::temp_dir().join(format!("covdiff-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("eps.safetensors");
    let metadata = [(CARD_KEY.to_string(), serde_json::to_string(&card).unwrap())].into();
    save(&Bundle::<B> { unet: unet.init(&device), covariance_heads: None }, &path, &metadata).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let p = Pipeline::<B>::from_safetensors_bytes(&bytes, &device).unwrap();
    assert_eq!(p.card().name(), "eps");
    assert!(matches!(p.column("kdct"), Err(PipelineError::UnknownSampler { .. })));
    let config = SamplerConfig::ddpm(StepVariance::Learned, 5);
    let Err(refused) = p.sampling(Column::Learned, &config) else { panic!("no heads, no learnt covariance") };
    assert!(refused.to_string().contains("predicts a covariance"), "{refused}");
    assert!(p.sampling(Column::Heuristic(StepVariance::Small), &config).is_ok());
}

#[test]
fn stepping_k_times_equals_running_the_sampler() {
    let _seeded = seeded();
    let device = Default::default();
    let file = weights_dir().join("fashion-mnist-kdct.safetensors");
    let p = Pipeline::<B>::from_safetensors_bytes(&std::fs::read(file).unwrap(), &device).unwrap();
    for name in ["kdct", "beta-tilde", "ddim"] {
        let column = p.column(name).unwrap();
        let config = SamplerConfig::ddpm(StepVariance::Small, 4);
        covdiff_model::normals::seed::<B>(&device, 3);
        let x_t = initial_noise::<B>(p.shape(2), p.noise(), &device);
        let run: Vec<f32> = p
            .sampling(column, &config)
            .unwrap()
            .run(p.denoiser(column).unwrap(), x_t)
            .unwrap()
            .into_data()
            .to_vec()
            .unwrap();
        covdiff_model::normals::seed::<B>(&device, 3);
        let mut x = initial_noise::<B>(p.shape(2), p.noise(), &device);
        let mut sampling = p.sampling(column, &config).unwrap();
        let mut ts = Vec::new();
        for _ in 0..4 {
            let out = sampling.step(p.denoiser(column).unwrap(), x).unwrap();
            let x0: Vec<f32> = out.x0_hat.into_data().to_vec().unwrap();
            assert!(x0.iter().all(|v| v.is_finite() && v.abs() <= 1.0), "{name}: x0_hat is clipped to [-1, 1]");
            ts.push((out.t, out.s));
            x = out.x;
        }
        assert_eq!(ts.last().map(|ts| ts.1), Some(0), "{name}: the last step ends at t = 0");
        assert!(sampling.step(p.denoiser(column).unwrap(), x.clone()).is_err(), "{name}: a fifth step is an error");
        let stepped: Vec<f32> = x.into_data().to_vec().unwrap();
        assert!(stepped == run, "{name}: step() four times equals run()");
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;
    use burn::backend::wgpu::WgpuDevice;
    use burn::backend::Autodiff;
    use burn::tensor::backend::Backend;
    use covdiff_core::data::ImageSet;
    use covdiff_core::schedule::{Linear, Schedule};
    use covdiff_model::backends::Wgpu;
    use covdiff_model::covariance::{AnyCovariance, Covariance};
    use covdiff_model::diffusion::{ForwardNoise, Settings, Trainer};
    use covdiff_model::image::EpsStage;
    use covdiff_model::unet::UNetConfig;
    use std::sync::Arc;

    /// The wgpu device, or None (with a note) where no adapter exists; CI sets
    /// COVDIFF_REQUIRE_WGPU=1 so that a missing adapter fails there.
    fn device() -> Option<WgpuDevice> {
        let dev = WgpuDevice::default();
        let probe = std::panic::catch_unwind(|| Tensor::<Wgpu, 1>::ones([2], &dev).into_data());
        match probe {
            Ok(_) => Some(dev),
            Err(_) if std::env::var("COVDIFF_REQUIRE_WGPU").is_ok_and(|v| v == "1") => panic!("no wgpu adapter"),
            Err(_) => {
                eprintln!("no wgpu adapter here: wgpu pipeline test not run");
                None
            }
        }
    }

    #[test]
    fn a_pipeline_samples_and_a_unet_trains_on_wgpu() {
        let _seeded = seeded();
        let Some(gpu) = device() else { return };
        let cpu = Default::default();
        let bytes = std::fs::read(weights_dir().join("fashion-mnist-kdct.safetensors")).unwrap();
        let on_cpu = Pipeline::<B>::from_safetensors_bytes(&bytes, &cpu).unwrap();
        let on_gpu = Pipeline::<Wgpu>::from_safetensors_bytes(&bytes, &gpu).unwrap();
        // Deterministic DDIM from the same start: the two backends agree.
        covdiff_model::normals::seed::<B>(&cpu, 5);
        let x_t = initial_noise::<B>(on_cpu.shape(2), on_cpu.noise(), &cpu);
        let x_gpu = Tensor::<Wgpu, 4>::from_data(x_t.to_data(), &gpu);
        let config =
            SamplerConfig { kind: SamplerKind::Ddim { eta: 0.0 }, ..SamplerConfig::ddpm(StepVariance::Small, 3) };
        fn ddim<Q: Backend>(p: &Pipeline<Q>, config: &SamplerConfig, x: Tensor<Q, 4>) -> Vec<f32> {
            let mut sampling = p.sampling(Column::Ddim, config).unwrap();
            sampling.run(p.denoiser(Column::Ddim).unwrap(), x).unwrap().into_data().to_vec().unwrap()
        }
        let (a, b) = (ddim(&on_cpu, &config, x_t), ddim(&on_gpu, &config, x_gpu));
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst < 2e-3, "DDIM on wgpu differs from the CPU by {worst}");
        // The learnt covariance is the same on both (its diagonal at one x_t), and samples on wgpu.
        let x = Tensor::<B, 4>::random(on_cpu.shape(2), burn::tensor::Distribution::Uniform(-1.0, 1.0), &cpu);
        fn diagonal<Q: Backend>(cov: Option<AnyCovariance<Q>>) -> Tensor<Q, 4> {
            cov.expect("the heads' covariance").diagonal()
        }
        let learned_cpu = on_cpu.denoiser(Column::Learned).unwrap();
        let a: Vec<f32> = diagonal(learned_cpu.predict(x.clone(), 500, true).1).into_data().to_vec().unwrap();
        let learned_gpu = on_gpu.denoiser(Column::Learned).unwrap();
        let x = Tensor::<Wgpu, 4>::from_data(x.to_data(), &gpu);
        let b: Vec<f32> = diagonal(learned_gpu.predict(x, 500, true).1).into_data().to_vec().unwrap();
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / x.abs().max(1e-3)).fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "the K-DCT diagonal on wgpu differs from the CPU's by {worst} (relative)");
        let learned = on_gpu.column("kdct").unwrap();
        let x = initial_noise::<Wgpu>(on_gpu.shape(2), on_gpu.noise(), &gpu);
        let x = on_gpu.sampling(learned, &config).unwrap().run(on_gpu.denoiser(learned).unwrap(), x).unwrap();
        assert!(x.into_data().to_vec::<f32>().unwrap().iter().all(|v| v.is_finite()));

        // Two training steps of a small UNet on wgpu: finite losses, and the model moves.
        type Ad = Autodiff<Wgpu>;
        let d = 8;
        let pixels = (0..32 * d * d).map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0).clamp(-1.0, 1.0)).collect();
        let data = Arc::new(ImageSet { channels: 1, size: d, pixels, labels: None });
        let unet = UNetConfig::new(vec![8, 8], vec![false, false]).with_norm_num_groups(4).with_layers_per_block(1);
        let settings = Settings { batch: 4, warmup: 1, ..Settings::default() };
        let table = Linear::default().table();
        let mut trainer =
            Trainer::<Ad, _>::new(EpsStage, unet.init::<Ad>(&gpu), data, table, ForwardNoise::White, settings, &gpu)
                .unwrap();
        let losses: Vec<f32> = (0..2).map(|_| trainer.step().total.into_scalar()).collect();
        assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0), "{losses:?}");
        assert_eq!(trainer.steps_done(), 2);
    }
}
