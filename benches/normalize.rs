//! Stain normalization of one real 1000×1000 MoNuSeg image (TCGA-HE-7129, kidney) to a
//! breast template (TCGA-A7-A13E), per method. The template is fitted once, outside the
//! timing. DCGMM uses the default-size network (U-Net depth 4, width 32, 512-px tiles)
//! with untrained, seeded weights: the cost of normalization does not depend on the
//! weights' values.

use criterion::{criterion_group, criterion_main, Criterion};
use nucseg::{
    backend::Device,
    data::read_rgb,
    stain::{DcgmmConfig, DcgmmNormalizer, Macenko, Reinhard, StainNormalizer},
};

fn bench(c: &mut Criterion) {
    let shared = std::env::var("NUCSEG_SHARED")
        .unwrap_or_else(|_| format!("{}/../shared", env!("CARGO_MANIFEST_DIR")));
    let read = |id: &str| {
        read_rgb(format!("{shared}/data/monuseg-kumar/images/{id}.tif"))
            .expect("real MoNuSeg image (set NUCSEG_SHARED)")
    };
    let template = read("TCGA-A7-A13E-01Z-00-DX1");
    let image = read("TCGA-HE-7129-01Z-00-DX1");
    let device = Device::default();
    device.seed(0);
    let dcgmm = DcgmmConfig::new().init(&device).expect("default config");
    let mut normalizers: Vec<Box<dyn StainNormalizer>> = vec![
        Box::new(Reinhard::default()),
        Box::new(Macenko::default()),
        Box::new(DcgmmNormalizer::new(dcgmm, &device)),
    ];
    let mut group = c.benchmark_group("normalize_1000x1000");
    group.sample_size(10);
    for n in normalizers.iter_mut() {
        n.fit(&template).expect("template has tissue");
        group.bench_function(n.name(), |b| b.iter(|| n.transform(&image).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
