//! Backbone cost on the CPU (`Device::flex()`): ResNet + FPN forward passes at 256×256 and
//! 1000×1000 (a whole MoNuSeg image), batch 1, and one ResNet-18 + FPN training step
//! (forward, backward, SGD) at 256×256, batch 2. These numbers decide what can be trained
//! on a 2-core machine.
//!
//! `cargo bench --bench backbone` (all of it takes a few minutes); filter with e.g.
//! `cargo bench --bench backbone -- forward_256`.

use criterion::{criterion_group, criterion_main, Criterion};
use nucseg::burn::optim::{GradientsParams, SgdConfig};
use nucseg::burn::tensor::{Device, Distribution, Tensor};
use nucseg::model::backbone::{Fpn, FpnConfig};
use nucseg::model::backbone::{ResNet, ResNetConfig};

fn backbone(depth: usize, device: &Device) -> (ResNet, Fpn) {
    let body = ResNetConfig::new(depth).init(device).unwrap();
    let fpn = FpnConfig::new(body.out_channels()).init(device);
    (body, fpn)
}

/// Runs the backbone and reads back one number per level, so the timing includes the work.
fn forward(body: &ResNet, fpn: &Fpn, x: Tensor<4>) -> f32 {
    fpn.forward(body.forward(x))
        .into_iter()
        .map(|p| p.sum().into_scalar::<f32>())
        .sum()
}

fn bench(c: &mut Criterion) {
    let device = Device::flex();
    eprintln!("rayon threads: {}", rayon_threads());
    for size in [256usize, 1000] {
        let mut group = c.benchmark_group(format!("forward_{size}"));
        group.sample_size(10);
        for depth in [18, 50] {
            let (body, fpn) = backbone(depth, &device);
            let x = Tensor::<4>::random([1, 3, size, size], Distribution::Default, &device);
            group.bench_function(format!("resnet{depth}_fpn"), |b| {
                b.iter(|| forward(&body, &fpn, x.clone()))
            });
        }
        group.finish();
    }

    let device = Device::flex().autodiff();
    let mut group = c.benchmark_group("train_step_256_batch2");
    group.sample_size(10);
    let (body, fpn) = backbone(18, &device);
    let mut model = Some((body, fpn));
    let mut optim = SgdConfig::new().init();
    let x = Tensor::<4>::random([2, 3, 256, 256], Distribution::Default, &device);
    group.bench_function("resnet18_fpn_sgd", |b| {
        b.iter(|| {
            let pair = model.take().unwrap();
            let loss = pair
                .1
                .forward(pair.0.forward(x.clone()))
                .into_iter()
                .map(|p| p.powi_scalar(2).mean())
                .reduce(|a, b| a + b)
                .unwrap();
            let grads = GradientsParams::from_grads(loss.backward(), &pair);
            model = Some(optim.step(1e-4, pair, grads));
        })
    });
    group.finish();
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| {
        std::thread::available_parallelism()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into())
    })
}

criterion_group!(benches, bench);
criterion_main!(benches);
