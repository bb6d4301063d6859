//! `Pipeline`: a model from the bytes of each shipped weights file, against the same model built
//! from the JSON card beside the file; and the errors that bad bytes, names and pairings give.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use covdiff_model::backends::Cpu;
use covdiff_model::image::pipeline::{safetensors_metadata, Column, Pipeline, PipelineError, CARD_KEY};
use covdiff_model::image::{initial_noise, ModelCard, SamplerConfig, SamplerKind, StepVariance};
use std::path::{Path, PathBuf};

type B = Cpu;

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
    B::seed(&device, seed);
    let x_t = initial_noise::<B>(p.shape(2), p.noise(), &device);
    let config = SamplerConfig { kind: SamplerKind::Ddim { eta: 0.5 }, ..SamplerConfig::ddpm(StepVariance::Small, 3) };
    let mut sampling = p.sampling(column, &config).expect("a valid sampler");
    let x: Tensor<B, 4> = sampling.run(p.denoiser(column).expect("a denoiser"), x_t).expect("sampling runs");
    x.into_data().to_vec().expect("f32 samples")
}

#[test]
fn a_pipeline_from_bytes_samples_as_the_card_beside_the_weights_says() {
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
            assert_eq!(a, b, "{} {name}: the same seed draws the same images", file.display());
        }
        let (a, b) = (draw(&from_bytes, learned, 7), draw(&beside, learned, 7));
        assert_eq!(a, b, "{}: the learnt covariance draws the same images", file.display());
        // The learnt sampler differs from beta-tilde's: the heads are in use.
        assert_ne!(a, draw(&from_bytes, Column::Heuristic(StepVariance::Small), 7));
    }
}

#[test]
fn bad_bytes_names_and_pairings_are_errors() {
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
    assert!(refused.to_string().contains("covariance heads"), "{refused}");
    assert!(p.sampling(Column::Heuristic(StepVariance::Small), &config).is_ok());
}
