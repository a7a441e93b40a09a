//! Mask R-CNN inference on one real 1000×1000 MoNuSeg image (forward, post-processing and
//! mask pasting; no TTA, no tiling), the RoIAlign implementations on a training-sized
//! batch (forward + backward), and the inference forms of RoIAlign (tensor vs host, 4,000
//! proposals on a 1024² pyramid) and of the mask head (direct convolutions vs Winograd,
//! 64 regions).
//!
//! The shipped model (`models/nucseg-default.*`) is used when present; ResNet-50-FPN
//! (random weights, detections capped at 1000 like the torchvision peer in
//! `shared/peers/torchvision_maskrcnn_cpu.py`) is timed for the peer comparison.

use criterion::{criterion_group, criterion_main, Criterion};
use nucseg::{
    burn::tensor::{Device, Distribution, Tensor},
    data::read_rgb,
    model::{
        heads::{MaskHeadConfig, RoiHeadsConfig},
        ops::{HostPyramid, RoiAlignConfig, RoiAlignMethod},
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

/// Random P2–P5 levels of `batch` images of `side`² with `channels` channels.
fn random_levels(batch: usize, channels: usize, side: usize, device: &Device) -> Vec<Tensor<4>> {
    (2..=5)
        .map(|l| {
            Tensor::<4>::random(
                [batch, channels, side >> l, side >> l],
                Distribution::Default,
                device,
            )
        })
        .collect()
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
                    let levels: Vec<Tensor<4>> = random_levels(2, 128, 256, &device)
                        .into_iter()
                        .map(Tensor::require_grad)
                        .collect();
                    op.forward(&levels, &boxes).sum().backward()
                })
            });
        }
    }
    group.finish();
}

fn inference_forms(c: &mut Criterion) {
    let device = Device::flex();
    device.seed(0);
    let mut group = c.benchmark_group("inference_forms");
    group.sample_size(10);
    // The shipped model's pyramid at 1024² (128 channels) and 4,000 nucleus-sized boxes.
    let levels = random_levels(1, 128, 1024, &device);
    let boxes = vec![(0..4000)
        .map(|i| {
            let (x, y) = ((i * 37 % 1000) as f32, (i * 53 % 1000) as f32);
            let s = [12.0, 20.0, 28.0, 40.0, 90.0][i % 5];
            [x, y, x + s, y + 0.8 * s]
        })
        .collect::<Vec<[f32; 4]>>()];
    let op = RoiAlignConfig::new().init().unwrap();
    group.bench_function("roi_align_7x7_4000_boxes_tensor", |b| {
        b.iter(|| op.forward(&levels, &boxes).into_data())
    });
    group.bench_function("roi_align_7x7_4000_boxes_host", |b| {
        b.iter(|| {
            op.forward_host(&HostPyramid::read(&levels), &boxes)
                .into_data()
        })
    });
    // The shipped mask head's shape: 128 channels, four 3×3 layers, 14×14 regions.
    let head = MaskHeadConfig::new()
        .with_in_channels(128)
        .with_layers(vec![128; 4])
        .with_dim_reduced(128)
        .with_num_classes(2)
        .init(&device);
    let x = Tensor::<4>::random([64, 128, 14, 14], Distribution::Default, &device);
    group.bench_function("mask_head_64_regions_direct", |b| {
        b.iter(|| head.forward(x.clone()).into_data())
    });
    group.bench_function("mask_head_64_regions_winograd", |b| {
        b.iter(|| head.forward_batched(x.clone()).into_data())
    });
    group.finish();
}

criterion_group!(benches, roi_align, inference_forms, inference);
criterion_main!(benches);
