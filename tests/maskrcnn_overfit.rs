//! Mask R-CNN learns: a tiny network trained for a bounded number of steps on one synthetic
//! 128×128 image with a handful of elliptical nuclei finds them (F1 ≥ 0.9 at IoU 0.5) and
//! its total loss falls at least 5×.

use burn::tensor::Device;
use nucseg::{
    data::{LabelMap, RgbImage},
    metrics::ImageMetrics,
    model::MaskRcnnConfig,
    train::{MaskRcnnTrainer, MaskRcnnTrainingConfig, TrainingImage},
};
use rand::{Rng, SeedableRng};

/// Pink background with mild noise and dark purple ellipses.
fn synthetic(seed: u64) -> (RgbImage, LabelMap) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (w, h) = (128u32, 128u32);
    let mut ellipses: Vec<(f32, f32, f32, f32, f32)> = Vec::new();
    while ellipses.len() < 7 {
        let (cx, cy) = (rng.random_range(14.0..114.0), rng.random_range(14.0..114.0));
        let (a, b) = (rng.random_range(7.0..12.0), rng.random_range(5.0..8.0));
        let t: f32 = rng.random_range(0.0..std::f32::consts::PI);
        if ellipses
            .iter()
            .all(|e| ((e.0 - cx).powi(2) + (e.1 - cy).powi(2)).sqrt() > e.2 + a + 3.0)
        {
            ellipses.push((cx, cy, a, b, t));
        }
    }
    let mut labels = LabelMap::new(w, h);
    let image = RgbImage::from_fn(w, h, |x, y| {
        let noise = rng.random_range(-8i32..8);
        for (k, &(cx, cy, a, b, t)) in ellipses.iter().enumerate() {
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            let (u, v) = (dx * t.cos() + dy * t.sin(), -dx * t.sin() + dy * t.cos());
            if (u / a).powi(2) + (v / b).powi(2) <= 1.0 {
                labels.set(x, y, k as u32 + 1);
                return image::Rgb([(80 + noise) as u8, (50 + noise) as u8, (140 + noise) as u8]);
            }
        }
        image::Rgb([
            (230 + noise) as u8,
            (170 + noise) as u8,
            (200 + noise) as u8,
        ])
    });
    (image, labels)
}

#[test]
fn tiny_mask_rcnn_overfits_one_image() {
    let device = Device::flex();
    device.seed(0);
    let (image, labels) = synthetic(7);
    let model = MaskRcnnConfig::tiny().init(&device).unwrap();
    let config = MaskRcnnTrainingConfig::new()
        .with_lr(0.02)
        .with_warmup_steps(20)
        .with_steps(300)
        .with_lr_steps(vec![240])
        .with_batch_size(1)
        .with_crop_size(128)
        .with_stain_jitter(0.0)
        .with_checkpoint_every(0);
    let data = vec![TrainingImage {
        id: "synthetic".into(),
        image: image.clone(),
        labels: labels.clone(),
    }];
    let mut trainer = MaskRcnnTrainer::new(model, config, &device, None).unwrap();
    let mut totals = Vec::new();
    trainer.train(&data, |r| totals.push(r.total)).unwrap();
    let first: f32 = totals[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = totals[totals.len() - 5..].iter().sum::<f32>() / 5.0;
    assert!(last * 5.0 <= first, "loss {first} → {last}");

    let model = trainer.into_model();
    let mut found = model.predict(std::slice::from_ref(&image)).pop().unwrap();
    let mut scores: Vec<f32> = found.items.iter().map(|i| i.score).collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    eprintln!("scores {:?}", &scores[..scores.len().min(15)]);
    found.items.retain(|i| i.score >= 0.5);
    let m = ImageMetrics::compute(&labels, &found.to_label_map()).unwrap();
    eprintln!(
        "loss {first:.3} → {last:.3}; F1@0.5 {:.3}, AJI {:.3}, {} found / {} true",
        m.f1_iou50.f1, m.aji, m.n_pred, m.n_true
    );
    assert!(
        m.f1_iou50.f1 >= 0.9,
        "F1 {} ({} found, {} true)",
        m.f1_iou50.f1,
        m.n_pred,
        m.n_true
    );
}
