//! The assembled Mask R-CNN: inference on any image size, saving and loading, resuming
//! training exactly, and torchvision weights.

mod common;

use nucseg::burn::store::ModuleSnapshot;
use nucseg::burn::tensor::Device;
use nucseg::data::RgbImage;
use nucseg::model::{
    backbone::ResNetConfig,
    io::{load_model, load_torchvision_maskrcnn, parameter_paths, save_model},
    MaskRcnn, MaskRcnnConfig, ModelError,
};
use nucseg::train::{MaskRcnnTrainer, MaskRcnnTrainingConfig, TrainingImage};
use nucseg::Instances;
use safetensors::{tensor::TensorView, Dtype};

use common::disc_tile as tile;

fn params(model: &MaskRcnn) -> Vec<(String, Vec<u8>)> {
    model
        .collect(None, None, true)
        .into_iter()
        .map(|t| (t.name.clone(), t.into_bytes().unwrap().to_vec()))
        .collect()
}

#[test]
fn predicts_on_odd_sizes_and_blank_images() {
    let device = Device::flex();
    let model = MaskRcnnConfig::tiny().init(&device).unwrap();
    let (a, _) = tile(70, 45);
    let blank = RgbImage::from_pixel(33, 97, image::Rgb([255, 255, 255]));
    let out = model.predict(&[a.clone(), blank.clone()]);
    assert_eq!(out.len(), 2);
    assert_eq!((out[0].width, out[0].height), (70, 45));
    assert_eq!((out[1].width, out[1].height), (33, 97));
    for inst in out.iter().flat_map(|o| &o.items) {
        assert!(inst.score > 0.05 && inst.score <= 1.0);
        let b = inst.mask.tight_bbox().unwrap();
        assert!(b[2] <= 97 && b[3] <= 97);
    }
    assert!(out[0].items.len() <= 1000);
}

#[test]
fn save_load_round_trip_and_wrong_architecture() {
    let device = Device::flex();
    let dir = common::tmp_dir("mrcnn-io");
    let model = MaskRcnnConfig::tiny().init(&device).unwrap();
    let path = dir.join("m.bpk");
    save_model(&model, &path).unwrap();
    let loaded = load_model(&path, &device).unwrap();
    assert_eq!(params(&model), params(&loaded));
    let (img, _) = tile(64, 64);
    assert_eq!(
        model.predict(std::slice::from_ref(&img)),
        loaded.predict(std::slice::from_ref(&img))
    );

    // Weights of another architecture under this configuration: a clear error.
    let other = MaskRcnnConfig::tiny()
        .with_fpn_channels(16)
        .init(&device)
        .unwrap();
    let wrong = dir.join("wrong.bpk");
    save_model(&other, &wrong).unwrap();
    std::fs::copy(dir.join("m.json"), dir.join("wrong.json")).unwrap();
    let err = load_model(&wrong, &device).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::WeightFile { .. }), "{msg}");
    assert!(
        msg.contains("wrong.bpk") && msg.contains("wrong.json"),
        "{msg}"
    );
    let err = load_model(&dir.join("missing.bpk"), &device).unwrap_err();
    assert!(err.to_string().contains("missing.bpk"));
}

#[test]
fn resuming_reproduces_an_uninterrupted_run() {
    let device = Device::flex();
    device.seed(1);
    let (image, labels) = tile(96, 96);
    let data = vec![TrainingImage {
        id: "t".into(),
        image,
        labels,
    }];
    let config = MaskRcnnTrainingConfig::new()
        .with_batch_size(1)
        .with_crop_size(64)
        .with_steps(3)
        .with_warmup_steps(0)
        .with_lr(0.01)
        .with_checkpoint_every(2)
        .with_seed(5);
    let base = MaskRcnnConfig::tiny().init(&device).unwrap();

    let straight_dir = common::tmp_dir("resume-a");
    let mut straight = MaskRcnnTrainer::new(
        base.clone(),
        config.clone(),
        &device,
        Some(straight_dir.to_path_buf()),
    )
    .unwrap();
    let mut straight_losses = Vec::new();
    straight
        .train(&data, |r| straight_losses.push(r.total))
        .unwrap();

    let dir = common::tmp_dir("resume-b");
    let mut first = MaskRcnnTrainer::new(
        base,
        config.clone().with_steps(2),
        &device,
        Some(dir.clone()),
    )
    .unwrap();
    first.train(&data, |_| {}).unwrap();
    drop(first);
    let mut resumed = MaskRcnnTrainer::resume(config, &device, dir.to_path_buf()).unwrap();
    assert_eq!(resumed.step(), 2);
    let mut resumed_losses = Vec::new();
    resumed
        .train(&data, |r| resumed_losses.push(r.total))
        .unwrap();
    assert_eq!(resumed_losses, vec![straight_losses[2]]);
    assert_eq!(
        params(&straight.into_model()),
        params(&resumed.into_model())
    );
}

/// torchvision's name for one of our parameters (written independently of the loader's
/// regexes), and whether it is a `Linear` weight stored transposed.
fn torchvision_key(name: &str) -> (String, bool) {
    let linear = name.starts_with("box_head.") && name.ends_with(".weight");
    let key = if let Some(rest) = name.strip_prefix("backbone.") {
        format!("backbone.body.{rest}")
    } else if let Some(rest) = name.strip_prefix("fpn.") {
        let (block, tail) = rest.split_at(rest.rfind('.').unwrap());
        format!("backbone.fpn.{block}.0{tail}")
    } else if let Some(rest) = name.strip_prefix("rpn_head.conv") {
        format!("rpn.head.conv.0.0{rest}")
    } else if let Some(rest) = name.strip_prefix("rpn_head.") {
        format!("rpn.head.{rest}")
    } else if let Some(rest) = name.strip_prefix("box_head.fc") {
        format!("roi_heads.box_head.fc{rest}")
    } else if let Some(rest) = name.strip_prefix("box_head.") {
        format!("roi_heads.box_predictor.{rest}")
    } else if let Some(rest) = name.strip_prefix("mask_head.mask_fcn.") {
        let (i, tail) = rest.split_at(rest.find('.').unwrap());
        format!(
            "roi_heads.mask_head.mask_fcn{}{tail}",
            i.parse::<usize>().unwrap() + 1
        )
    } else if let Some(rest) = name.strip_prefix("mask_head.") {
        format!("roi_heads.mask_predictor.{rest}")
    } else {
        panic!("unexpected parameter {name}")
    };
    (key, linear)
}

#[test]
fn torchvision_checkpoint_loads_into_every_parameter() {
    let device = Device::flex();
    let config = MaskRcnnConfig::tiny().with_backbone(ResNetConfig::new(18).with_width(8));
    device.seed(1);
    let source = config.init(&device).unwrap();
    // Write the source's parameters under torchvision's names and layouts.
    let mut entries: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for t in source.collect(None, None, true) {
        let (key, linear) = torchvision_key(&t.name);
        let shape = t.shape.to_vec();
        let bytes = t.into_bytes().unwrap().to_vec();
        if linear {
            let (rows, cols) = (shape[0], shape[1]);
            let v: Vec<f32> = bytes
                .chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let mut tr = vec![0f32; v.len()];
            for i in 0..rows {
                for j in 0..cols {
                    tr[j * rows + i] = v[i * cols + j];
                }
            }
            entries.push((
                key,
                vec![cols, rows],
                tr.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ));
        } else {
            entries.push((key, shape, bytes));
        }
    }
    entries.push((
        "backbone.body.bn1.num_batches_tracked".into(),
        vec![],
        0i64.to_le_bytes().to_vec(),
    ));
    let dir = common::tmp_dir("tv-maskrcnn");
    let path = dir.join("maskrcnn.safetensors");
    let views: Vec<(String, TensorView<'_>)> = entries
        .iter()
        .map(|(k, s, b)| {
            let dtype = if k.ends_with("num_batches_tracked") {
                Dtype::I64
            } else {
                Dtype::F32
            };
            (k.clone(), TensorView::new(dtype, s.clone(), b).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();

    device.seed(2);
    let target = config.init(&device).unwrap();
    assert_ne!(params(&source), params(&target));
    let (loaded, report) = load_torchvision_maskrcnn(target, &path, true).unwrap();
    assert_eq!(report.applied.len(), parameter_paths(&loaded).len());
    assert_eq!(params(&source), params(&loaded));
    let (img, _) = tile(64, 64);
    assert_eq!(
        source.predict(std::slice::from_ref(&img)),
        loaded.predict(std::slice::from_ref(&img))
    );
}

#[test]
fn f16_safetensors_round_trip_is_close() {
    use nucseg::model::io::{load_model_safetensors, save_model_f16};
    let device = Device::flex();
    let dir = common::tmp_dir("mrcnn-f16");
    let model = MaskRcnnConfig::tiny().init(&device).unwrap();
    let path = dir.join("m.safetensors");
    save_model_f16(&model, &path).unwrap();
    let bpk = dir.join("m.bpk");
    save_model(&model, &bpk).unwrap();
    let half = std::fs::metadata(&path).unwrap().len() as f64;
    let full = std::fs::metadata(&bpk).unwrap().len() as f64;
    assert!(half < 0.6 * full, "{half} vs {full} bytes");
    let loaded = load_model_safetensors(&path, &device).unwrap();
    for ((n, a), (_, b)) in params(&model).into_iter().zip(params(&loaded)) {
        let a: Vec<f32> = a
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let b: Vec<f32> = b
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-3 * x.abs().max(1e-2), "{n}: {x} vs {y}");
        }
    }
}

/// `model` with one convolution weight set to NaN: a NaN injected into a running
/// training, through Burn's public module mapper.
fn poisoned(model: &MaskRcnn) -> MaskRcnn {
    use nucseg::burn::module::{Module, ModuleMapper, Param};
    use nucseg::burn::tensor::Tensor;
    struct Poison(bool);
    impl ModuleMapper for Poison {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if self.0 || D != 4 {
                return param;
            }
            self.0 = true;
            param.map(|t| t.clone() * f32::NAN)
        }
    }
    model.clone().map(&mut Poison(false))
}

fn one_image() -> Vec<TrainingImage> {
    let (image, labels) = tile(64, 64);
    vec![TrainingImage {
        id: "t".into(),
        image,
        labels,
    }]
}

fn quick_config() -> MaskRcnnTrainingConfig {
    MaskRcnnTrainingConfig::new()
        .with_batch_size(1)
        .with_crop_size(64)
        .with_steps(2)
        .with_warmup_steps(0)
        .with_lr(0.01)
        .with_checkpoint_every(1)
}

#[test]
fn an_injected_nan_stops_training_with_the_last_good_checkpoint_intact() {
    use nucseg::train::TrainError;
    let device = Device::flex();
    device.seed(3);
    let data = one_image();
    let dir = common::tmp_dir("diverge");
    let model = MaskRcnnConfig::tiny().init(&device).unwrap();
    let mut good = MaskRcnnTrainer::new(model, quick_config(), &device, Some(dir.clone())).unwrap();
    good.train(&data, |_| {}).unwrap();
    let latest = std::fs::read_to_string(dir.join("latest")).unwrap();
    assert_eq!(latest.trim(), "step-0000002");
    let saved = std::fs::read(dir.join("step-0000002/model.bpk")).unwrap();

    // The same folder, the model poisoned: the loss is NaN at the first step.
    let mut bad = MaskRcnnTrainer::new(
        poisoned(good.model()),
        quick_config().with_steps(10),
        &device,
        Some(dir.clone()),
    )
    .unwrap();
    // A checkpoint of non-finite parameters is refused outright ...
    let err = bad.checkpoint().unwrap_err();
    assert!(
        matches!(err, TrainError::NonFinite { step: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("parameters"), "{err}");
    assert!(!dir.join("step-0000000").exists());
    // ... and training stops at the first non-finite loss without an update.
    let err = bad.train(&data, |_| {}).unwrap_err();
    let TrainError::NonFinite { step, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!((*step, bad.step()), (1, 0), "{err}");
    assert!(err.to_string().contains("non-finite values"), "{err}");
    // The good checkpoint is untouched, still the latest, and resumes.
    assert_eq!(
        std::fs::read_to_string(dir.join("latest")).unwrap().trim(),
        "step-0000002"
    );
    assert_eq!(
        std::fs::read(dir.join("step-0000002/model.bpk")).unwrap(),
        saved
    );
    let mut resumed =
        MaskRcnnTrainer::resume(quick_config().with_steps(3), &device, dir.to_path_buf()).unwrap();
    assert_eq!(resumed.step(), 2);
    let report = resumed.train_step(&data).unwrap();
    assert!(report.total.is_finite());
}

#[test]
fn absurd_hyper_parameters_are_refused_before_training() {
    let device = Device::flex();
    let model = MaskRcnnConfig::tiny().init(&device).unwrap();
    for (config, field) in [
        (quick_config().with_lr(f64::INFINITY), "lr"),
        (quick_config().with_lr(f64::NAN), "lr"),
        (quick_config().with_lr(1e9), "lr"),
        (quick_config().with_lr(0.0), "lr"),
        (quick_config().with_momentum(1.5), "momentum"),
        (quick_config().with_weight_decay(f64::NAN), "weight decay"),
        (quick_config().with_grad_clip_norm(Some(f32::NAN)), "clip"),
        (quick_config().with_stain_jitter(-1.0), "stain jitter"),
        (quick_config().with_crop_size(33), "crop size"),
        (quick_config().with_batch_size(0), "batch size"),
    ] {
        let err = MaskRcnnTrainer::new(model.clone(), config, &device, None)
            .err()
            .unwrap_or_else(|| panic!("{field}: accepted"));
        let text = err.to_string();
        assert!(matches!(err, ModelError::InvalidConfig(_)), "{text}");
        assert!(text.contains(field), "{field}: {text}");
    }
    assert!(MaskRcnnTrainer::new(model, quick_config(), &device, None).is_ok());
}

#[test]
fn a_new_run_refuses_an_old_runs_folder_and_resume_checks_the_settings() {
    use nucseg::train::{RunData, StartMode};
    let device = Device::flex();
    device.seed(4);
    let data = one_image();
    let dir = common::tmp_dir("old-run");
    let run = RunData {
        images: vec!["t".into()],
        normalizer: "none".into(),
        init: None,
    };
    let tiny = MaskRcnnConfig::tiny();
    let start = |config: MaskRcnnTrainingConfig, mode, run: RunData| {
        MaskRcnnTrainer::start(&tiny, config, &device, dir.clone(), mode, run)
    };
    // An old run that went further than the new one will: step 5.
    let mut old = start(
        quick_config().with_steps(5).with_checkpoint_every(5),
        StartMode::Fresh,
        run.clone(),
    )
    .unwrap();
    old.train(&data, |_| {}).unwrap();
    assert!(dir.join("step-0000005").is_dir());

    let err = start(quick_config(), StartMode::Fresh, run.clone())
        .err()
        .unwrap();
    assert!(matches!(err, ModelError::CheckpointsExist { .. }), "{err}");
    assert!(err.to_string().contains("old-run"), "{err}");
    assert!(dir.join("step-0000005").is_dir(), "nothing was removed");

    // Resume with other settings or data: refused unless allowed.
    let resume = StartMode::Resume {
        allow_changes: false,
    };
    let err = start(quick_config().with_lr(0.02), resume, run.clone())
        .err()
        .unwrap();
    assert!(matches!(err, ModelError::ResumeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("lr 0.01 → 0.02"), "{err}");
    let other_data = RunData {
        normalizer: "macenko".into(),
        ..run.clone()
    };
    let err = start(quick_config(), resume, other_data.clone())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("normalizer none → macenko"),
        "{err}"
    );
    let allowed = StartMode::Resume {
        allow_changes: true,
    };
    assert_eq!(
        start(quick_config(), allowed, other_data).unwrap().step(),
        5
    );
    // More steps is an extension, not a change.
    assert_eq!(
        start(quick_config().with_steps(9), resume, run.clone())
            .unwrap()
            .step(),
        5
    );

    // Replacing: the old checkpoints go first, and the new run's survive pruning.
    let mut new = start(quick_config().with_steps(3), StartMode::Replace, run).unwrap();
    assert!(!dir.join("step-0000005").exists());
    new.train(&data, |_| {}).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["latest", "step-0000002", "step-0000003"]);
}

#[test]
fn weights_with_tensors_the_network_does_not_use_are_refused() {
    use nucseg::model::io::{load_model_safetensors, save_model_f16};
    let device = Device::flex();
    let dir = common::tmp_dir("partial-weights");
    let big = MaskRcnnConfig::tiny().init(&device).unwrap();
    let path = dir.join("m.safetensors");
    save_model_f16(&big, &path).unwrap();
    // A configuration describing a smaller mask head: every tensor it needs is in the
    // file, with the right shape, and the file holds one more layer.
    let mut config = big.config.clone();
    config.mask_head_layers.pop();
    assert!(!config.mask_head_layers.is_empty());
    nucseg::burn::config::Config::save(&config, dir.join("m.json")).unwrap();
    let err = load_model_safetensors(&path, &device).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("unexpected key"), "{text}");
    assert!(
        !text.contains("allow_partial") && !text.contains('\n'),
        "{text}"
    );
}

#[test]
fn training_from_scratch_never_keeps_an_identity_batch_norm() {
    use nucseg::model::backbone::NormKind;
    let (r50, changed) = MaskRcnnConfig::preset("r50").unwrap().from_scratch();
    assert!(changed);
    assert_eq!(r50.backbone.norm, NormKind::GroupNorm { groups: 32 });
    let small = MaskRcnnConfig::preset("cpu-small").unwrap();
    let (same, changed) = small.clone().from_scratch();
    assert!(!changed);
    assert_eq!(same.backbone.norm, small.backbone.norm);
}

#[test]
fn a_run_starts_from_given_weights_only_before_its_first_step() {
    use nucseg::burn::module::Module;
    let device = Device::flex();
    device.seed(4);
    let start = MaskRcnnConfig::tiny().init(&device).unwrap();
    device.seed(5);
    let other = MaskRcnnConfig::tiny().init(&device).unwrap();
    assert_ne!(params(&start), params(&other));
    let mut trainer = MaskRcnnTrainer::new(start, quick_config(), &device, None).unwrap();
    trainer.init_from(&other).unwrap();
    assert_eq!(params(&trainer.model().valid()), params(&other));
    // Another network is refused.
    let bigger = MaskRcnnConfig::tiny()
        .with_fpn_channels(48)
        .init(&device)
        .unwrap();
    assert!(trainer.init_from(&bigger).is_err());
    // Weights trained on Macenko-normalized images fine-tune on other data: the run
    // records its own normalization, not theirs.
    let mut macenko = other.clone();
    macenko.config = macenko.config.with_normalizer(Some("macenko".into()));
    trainer.init_from(&macenko).unwrap();
    assert_eq!(trainer.model().config.normalizer, None);
    assert_eq!(params(&trainer.model().valid()), params(&other));
    // Nor do the RoI heads' sampling and thresholds make another network: weights trained
    // with a cap on the mask loss's RoIs continue without one (and the other way round);
    // the run keeps its own settings.
    let mut capped = other.clone();
    capped.config.roi_heads = capped
        .config
        .roi_heads
        .with_mask_rois_per_image(Some(4))
        .with_mask_thresh(0.3);
    trainer.init_from(&capped).unwrap();
    assert_eq!(
        trainer.model().config.roi_heads,
        MaskRcnnConfig::tiny().roi_heads
    );
    trainer.train_step(&one_image()).unwrap();
    let err = trainer.init_from(&other).unwrap_err().to_string();
    assert!(err.contains("before the first step"), "{err}");
}

#[test]
fn a_test_scale_segments_each_input_resized_and_maps_nuclei_back() {
    let device = Device::flex();
    device.seed(9);
    let model = MaskRcnnConfig::tiny().init(&device).unwrap();
    let mut scaled = model.clone();
    scaled.config.test_scale = Some(2.0);
    let (image, _) = tile(70, 50);
    let big = image::imageops::resize(&image, 140, 100, image::imageops::FilterType::CatmullRom);
    let direct = model.predict_above(std::slice::from_ref(&big), 0.0);
    let found = scaled.predict_above(std::slice::from_ref(&image), 0.0);
    assert_eq!((found[0].width, found[0].height), (70, 50));
    assert_eq!(found[0], direct[0].resampled(70, 50));
    for bad in [0.1, f32::NAN] {
        refused(
            MaskRcnnConfig::tiny().with_test_scale(Some(bad)),
            "test_scale",
        );
    }
}

/// Asserts that `config` is refused at `init` with an error naming `field`.
fn refused(config: MaskRcnnConfig, field: &str) {
    let err = config.init(&Device::flex()).unwrap_err().to_string();
    assert!(err.contains(field), "{err}");
}

/// A seeded tiny network, the same with `change` made to its configuration, a 64² tile, and
/// what each finds on it scored at least `min_score`.
fn with_and_without(
    change: impl FnOnce(&mut MaskRcnnConfig),
    min_score: f32,
) -> (MaskRcnn, RgbImage, Instances, Instances) {
    let device = Device::flex();
    device.seed(4);
    let model = MaskRcnnConfig::tiny().init(&device).unwrap();
    let mut changed = model.clone();
    change(&mut changed.config);
    let (image, _) = tile(64, 64);
    let [plain, found] = [&model, &changed].map(|m| {
        m.predict_above(std::slice::from_ref(&image), min_score)
            .remove(0)
    });
    (changed, image, plain, found)
}

#[test]
fn maskness_rescores_each_nucleus_before_the_threshold_and_keeps_its_mask() {
    let (rescored, image, plain, found) = with_and_without(|c| c.maskness = Some(true), 0.0);
    assert!(plain.items.len() > 3, "{} detections", plain.items.len());
    assert_eq!(found.items.len(), plain.items.len());
    let mut lowered = 0;
    for (a, b) in plain.items.iter().zip(&found.items) {
        assert_eq!(a.mask, b.mask);
        // Maskness lies in [mask threshold, 1]: the score falls by at most half.
        assert!(
            b.score <= a.score && b.score >= 0.5 * a.score - 1e-6,
            "{} → {}",
            a.score,
            b.score
        );
        lowered += (b.score < a.score) as usize;
    }
    assert!(lowered > 0);
    // The threshold applies to the rescored score.
    let mut scores: Vec<f32> = found.items.iter().map(|i| i.score).collect();
    scores.sort_by(f32::total_cmp);
    let cut = scores[scores.len() / 2];
    let above = rescored
        .predict_above(std::slice::from_ref(&image), cut)
        .remove(0);
    assert_eq!(
        above.items.len(),
        scores.iter().filter(|&&s| s >= cut).count()
    );
    assert!(above.items.iter().all(|i| i.score >= cut));
    // Files written before the option existed load without it.
    let mut json: serde_json::Value = serde_json::to_value(&rescored.config).unwrap();
    json.as_object_mut().unwrap().remove("maskness");
    let old: MaskRcnnConfig = serde_json::from_value(json).unwrap();
    assert_eq!(old.maskness, None);
}

#[test]
fn a_mask_box_scale_draws_masks_in_enlarged_boxes_and_keeps_the_detections() {
    let (grown, image, plain, found) = with_and_without(|c| c.mask_box_scale = Some(1.5), 0.0);
    // Every detection, each with a mask that cannot come out empty.
    let mut all = grown.clone();
    all.config.mask_box_scale = None;
    all.config.roi_heads.mask_thresh = 1e-6;
    let all = all
        .predict_above(std::slice::from_ref(&image), 0.0)
        .remove(0);
    assert!(found.items.len() > 3, "{} detections", found.items.len());
    // Does a mask reach beyond `b` (grown by a pasting margin of one pixel)?
    let beyond = |mask: &nucseg::InstanceMask, b: [f32; 4]| {
        let t = mask.tight_bbox().unwrap();
        (t[0] as f32) < b[0].floor() - 1.0
            || (t[1] as f32) < b[1].floor() - 1.0
            || t[2] as f32 > b[2].ceil() + 1.0
            || t[3] as f32 > b[3].ceil() + 1.0
    };
    assert!(plain.items.iter().all(|a| !beyond(&a.mask, a.bbox)));
    // The same detections in the same order, less those whose mask came out empty (a
    // random network's mask probabilities hover around the threshold).
    let key = |i: &nucseg::Instance| (i.bbox, i.score);
    for some in [&plain, &found] {
        let mut rest = all.items.iter();
        assert!(some.items.iter().all(|b| rest.any(|a| key(a) == key(b))));
    }
    let mut outside = 0;
    for b in &found.items {
        let limit = nucseg::model::ops::scale_box(&b.bbox, 1.5);
        assert!(!beyond(&b.mask, limit));
        outside += beyond(&b.mask, b.bbox) as usize;
    }
    assert!(outside > 0, "no mask left its detection's box");
    for bad in [0.9, 2.5, f32::NAN] {
        refused(
            MaskRcnnConfig::tiny().with_mask_box_scale(Some(bad)),
            "mask_box_scale",
        );
    }
}

#[test]
fn checkpoints_from_keep_checkpoints_from_on_are_all_kept() {
    let device = Device::flex();
    device.seed(4);
    let data = one_image();
    let steps = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("step-"))
            .collect();
        names.sort();
        names
    };
    // Without it, only the latest two of five checkpoints remain.
    let plain = common::tmp_dir("keep-none");
    let model = MaskRcnnConfig::tiny().init(&device).unwrap();
    let mut trainer = MaskRcnnTrainer::new(
        model.clone(),
        quick_config().with_steps(5),
        &device,
        Some(plain.clone()),
    )
    .unwrap();
    trainer.train(&data, |_| {}).unwrap();
    assert_eq!(steps(&plain), ["step-0000004", "step-0000005"]);

    // From step 2 on, every checkpoint is a snapshot to average; step 1 is still pruned.
    // A Macenko-trained network: each checkpoint carries the normalizer, as a bundle does.
    let kept = common::tmp_dir("keep-from");
    let config = quick_config()
        .with_steps(5)
        .with_keep_checkpoints_from(Some(2));
    let template = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/sample/TCGA-21-5784-01Z-00-DX1_crop.png");
    let normalizer = nucseg::pretrained::BundleNormalizer::for_training(
        nucseg::stain::NormalizerKind::Macenko,
        Some(&template),
        None,
        &device,
    )
    .unwrap();
    let macenko = MaskRcnnConfig::tiny()
        .with_normalizer(Some("macenko".into()))
        .init(&device)
        .unwrap();
    let mut trainer = MaskRcnnTrainer::new(macenko, config, &device, Some(kept.clone())).unwrap();
    trainer.on_checkpoint(Box::new(move |dir| {
        nucseg::pretrained::write_normalizer_file(
            normalizer.as_ref(),
            &dir.join("model.normalizer.json"),
        )
    }));
    trainer.train(&data, |_| {}).unwrap();
    assert_eq!(
        steps(&kept),
        [
            "step-0000002",
            "step-0000003",
            "step-0000004",
            "step-0000005"
        ]
    );
    // Each snapshot is its own step's weights (training moved them between snapshots).
    let weights: Vec<Vec<u8>> = steps(&kept)
        .iter()
        .map(|s| std::fs::read(kept.join(s).join("model.bpk")).unwrap())
        .collect();
    assert!(weights.windows(2).all(|w| w[0] != w[1]));
    // Each loads as a bundle with its normalizer, and the snapshots average.
    let bundles: Vec<_> = steps(&kept)
        .iter()
        .map(|s| nucseg::pretrained::load_bundle(&kept.join(s).join("model.bpk"), &device).unwrap())
        .collect();
    assert!(bundles.iter().all(|b| b.normalizer.is_some()));
    let networks: Vec<_> = bundles.into_iter().map(|b| b.model).collect();
    nucseg::train::average_weights(&networks).unwrap();
}
