//! The dense cue for touching nuclei (issue 10, lever 5): the distance-map targets, training
//! the dense head alone on a trained network, adding it to weights without one, and saving
//! and loading a network that has one.

mod common;

use nucseg::burn::store::ModuleSnapshot;
use nucseg::burn::tensor::Device;
use nucseg::data::LabelMap;
use nucseg::model::{
    io::{load_model_safetensors, save_model_f16},
    ops::SplitConfig,
    MaskRcnn, MaskRcnnConfig, TrainingTarget,
};
use nucseg::train::{MaskRcnnTrainer, MaskRcnnTrainingConfig, TrainingImage};

use common::disc_tile as tile;

/// Parameters as (name, bytes).
type Params = Vec<(String, Vec<u8>)>;

/// Parameters by name, split into the dense head's and the rest.
fn params(model: &MaskRcnn) -> (Params, Params) {
    model
        .collect(None, None, true)
        .into_iter()
        .map(|t| (t.name.clone(), t.into_bytes().unwrap().to_vec()))
        .partition(|(name, _)| name.starts_with("dense_head."))
}

#[test]
fn distance_targets_are_one_at_centres_and_zero_off_nuclei() {
    // One 9×9 square nucleus at x, y in 2..11 of a 16×16 input.
    let labels = LabelMap::from_fn(16, 16, |x, y| {
        u32::from((2..11).contains(&x) && (2..11).contains(&y))
    });
    let target = TrainingTarget::from_label_map(&labels);
    let full = target.distance_map(16, 16, 1);
    assert_eq!(full.len(), 256);
    let at = |x: usize, y: usize| full[y * 16 + x];
    assert_eq!(at(6, 6), 1.0, "the centre is 5 px from outside, the most");
    assert_eq!(at(2, 2), 0.2, "an edge pixel is 1 px from outside");
    assert_eq!(at(2, 6), 0.2);
    assert_eq!(at(4, 6), 0.6);
    assert_eq!(at(1, 6), 0.0);
    assert_eq!(at(12, 12), 0.0);
    // At stride 2, each cell is the mean of its 2×2 pixels.
    let coarse = target.distance_map(16, 16, 2);
    assert_eq!(coarse.len(), 64);
    let cell = |x: usize, y: usize| coarse[y * 8 + x];
    let mean = |x: usize, y: usize| {
        (at(2 * x, 2 * y) + at(2 * x + 1, 2 * y) + at(2 * x, 2 * y + 1) + at(2 * x + 1, 2 * y + 1))
            / 4.0
    };
    for (x, y) in [(0, 0), (1, 1), (2, 3), (3, 3), (5, 5), (7, 7)] {
        assert!((cell(x, y) - mean(x, y)).abs() < 1e-6, "cell {x},{y}");
    }
    assert_eq!(cell(0, 0), 0.0);
    assert!(cell(3, 3) > 0.7);
}

fn dense_config() -> MaskRcnnTrainingConfig {
    MaskRcnnTrainingConfig::new()
        .with_batch_size(2)
        .with_crop_size(64)
        .with_steps(30)
        .with_warmup_steps(0)
        .with_lr(0.05)
        .with_checkpoint_every(0)
        .with_dense_only(true)
}

#[test]
fn training_only_the_dense_head_learns_it_and_leaves_the_detector_untouched() {
    let device = Device::flex();
    device.seed(11);
    let model = MaskRcnnConfig::tiny().with_dense().init(&device).unwrap();
    let (dense_before, rest_before) = params(&model);
    let (image, labels) = tile(96, 96);
    let data = vec![TrainingImage {
        id: "t".into(),
        image,
        labels,
    }];
    let mut trainer = MaskRcnnTrainer::new(model, dense_config(), &device, None).unwrap();
    let mut losses = Vec::new();
    trainer
        .train(&data, |r| {
            assert_eq!(r.losses.len(), 1, "only the dense loss: {:?}", r.losses);
            assert_eq!(r.losses[0].0, "loss_dense");
            losses.push(r.total);
        })
        .unwrap();
    let first: f32 = losses[..3].iter().sum::<f32>() / 3.0;
    let last: f32 = losses[losses.len() - 3..].iter().sum::<f32>() / 3.0;
    assert!(
        last < 0.8 * first,
        "the dense loss fell from {first} to {last}"
    );
    let (dense_after, rest_after) = params(&trainer.into_model());
    assert_eq!(rest_after, rest_before, "every other part is frozen");
    assert_ne!(dense_after, dense_before);

    // A network without a dense head cannot train one alone: a clear error, not a panic.
    let plain = MaskRcnnConfig::tiny().init(&device).unwrap();
    let err = MaskRcnnTrainer::new(plain, dense_config(), &device, None)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("dense head"), "{err}");
}

#[test]
fn a_dense_head_is_added_to_trained_weights_and_saved_with_them() {
    let device = Device::flex();
    device.seed(3);
    let trained = MaskRcnnConfig::tiny().init(&device).unwrap();
    device.seed(4);
    let network = MaskRcnnConfig::tiny()
        .with_dense()
        .with_split(Some(SplitConfig::new()));
    let trainer_for = |network: &MaskRcnnConfig| {
        MaskRcnnTrainer::new(
            network.init(&device).unwrap(),
            dense_config(),
            &device,
            None,
        )
        .unwrap()
    };
    let mut trainer = trainer_for(&network);
    trainer.init_from(&trained).unwrap();
    let model = trainer.into_model();
    let (dense, rest) = params(&model);
    assert_eq!(rest, params(&trained).1, "the trained weights, all of them");
    assert!(!dense.is_empty());
    assert!(model.config.dense_head.is_some() && model.config.split.is_some());
    // Weights of another network are still refused.
    let mut trainer = trainer_for(&network);
    let other = MaskRcnnConfig::tiny()
        .with_fpn_channels(16)
        .init(&device)
        .unwrap();
    assert!(trainer.init_from(&other).is_err());

    // The f16 bundle carries the head; loading rebuilds it from the configuration.
    let dir = common::tmp_dir("dense-io");
    let path = dir.join("m.safetensors");
    save_model_f16(&model, &path).unwrap();
    let loaded = load_model_safetensors(&path, &device).unwrap();
    assert_eq!(loaded.config.split, Some(SplitConfig::new()));
    let (loaded_dense, _) = params(&loaded);
    assert_eq!(
        loaded_dense.iter().map(|p| &p.0).collect::<Vec<_>>(),
        dense.iter().map(|p| &p.0).collect::<Vec<_>>()
    );
    let (image, _) = tile(64, 64);
    let found = loaded.predict(std::slice::from_ref(&image));
    assert_eq!(found.len(), 1);
    for inst in &found[0].items {
        assert!(inst.mask.area() > 0 && inst.score > 0.0);
    }
}
