//! Mask R-CNN inference on one real 1000×1000 MoNuSeg image (forward, post-processing and
//! mask pasting; no TTA, no tiling), and the RoIAlign implementations on a training-sized
//! batch (forward + backward).
//!
//! The shipped model (`models/nucseg-default.*`) is used when present; ResNet-50-FPN
//! (random weights, detections capped at 1000 like the torchvision peer in
//! `shared/peers/torchvision_maskrcnn_cpu.py`) is timed for the peer comparison.

use criterion::{criterion_group, criterion_main, Criterion};
use nucseg::{
    burn::tensor::{Device, Distribution, Tensor},
    data::read_rgb,
    model::{
        heads::RoiHeadsConfig,
        ops::{RoiAlignConfig, RoiAlignMethod},
        MaskRcnnConfig,
    },
    pretrained::default_model,
};
use std::time::Duration;

fn image() -> nucseg::data::RgbImage {
    let shared = std::env::var("NUCSEG_SHARED")
        .unwrap_or_else(|_| format!("{}/../shared", env!("CARGO_MANIFEST_DIR")));
    read_rgb(format!(
        "{shared}/data/monuseg-kumar/images/TCGA-21-5784-01Z-00-DX1.tif"
    ))
    .expect("MoNuSeg image (set NUCSEG_SHARED)")
}

fn inference(c: &mut Criterion) {
    let device = Device::flex();
    let img = image();
    let mut group = c.benchmark_group("maskrcnn_inference_1000x1000");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(90))
        .warm_up_time(Duration::from_secs(5));
    if let Ok(bundle) = default_model(&device) {
        let n = bundle.model.predict(std::slice::from_ref(&img))[0].len();
        eprintln!("default model: {n} detections");
        group.bench_function("default_model", |b| {
            b.iter(|| bundle.model.predict(std::slice::from_ref(&img)))
        });
    }
    device.seed(0);
    // Score threshold 0 keeps up to 1000 detections, as the torchvision peer does.
    let r50 = MaskRcnnConfig::new()
        .with_test_caps_area(None)
        .with_roi_heads(RoiHeadsConfig::new().with_score_thresh(0.0))
        .init(&device)
        .unwrap();
    eprintln!(
        "resnet50 random: {} detections",
        r50.predict(std::slice::from_ref(&img))[0].len()
    );
    group.bench_function("resnet50_fpn_random_1000_dets", |b| {
        b.iter(|| r50.predict(std::slice::from_ref(&img)))
    });
    group.finish();
}

fn roi_align(c: &mut Criterion) {
    let device = Device::flex().autodiff();
    let mut group = c.benchmark_group("roi_align_train_2x128_boxes_fwd_bwd");
    group.sample_size(10);
    let boxes: Vec<Vec<[f32; 4]>> = (0..2)
        .map(|b| {
            (0..128)
                .map(|i| {
                    let (x, y) = ((i * 7 % 230) as f32, (i * 13 % 230) as f32 + b as f32);
                    [x, y, x + 14.0, y + 12.0]
                })
                .collect()
        })
        .collect();
    for method in [RoiAlignMethod::Separable, RoiAlignMethod::GridSample] {
        for size in [7, 14] {
            let op = RoiAlignConfig::new()
                .with_output_size([size, size])
                .with_method(method)
                .init()
                .unwrap();
            group.bench_function(format!("{method:?}_{size}x{size}"), |b| {
                b.iter(|| {
                    let levels: Vec<Tensor<4>> = (2..=5)
                        .map(|l| {
                            Tensor::<4>::random(
                                [2, 128, 256 >> l, 256 >> l],
                                Distribution::Default,
                                &device,
                            )
                            .require_grad()
                        })
                        .collect();
                    op.forward(&levels, &boxes).sum().backward()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, roi_align, inference);
criterion_main!(benches);
