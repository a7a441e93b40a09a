//! Metrics on a real 1000×1000 MoNuSeg ground truth (557 nuclei) against a perturbed copy
//! (shifted 2 px, every 7th nucleus dropped, every 11th merged into its neighbour).
//! Target: all metrics for one image in under 20 ms on one core.

use criterion::{criterion_group, criterion_main, Criterion};
use nucseg::{
    data::{read_label_map, LabelMap},
    metrics::{ImageMetrics, OverlapTable},
};

fn perturbed(truth: &LabelMap) -> LabelMap {
    let (w, h) = truth.dimensions();
    LabelMap::from_fn(w, h, |x, y| {
        let v = truth.get(x.saturating_sub(2), y.saturating_sub(2));
        match v {
            0 => 0,
            v if v % 7 == 0 => 0,
            v if v % 11 == 0 => v + 1,
            v => v * 3 + 1000,
        }
    })
}

fn bench(c: &mut Criterion) {
    let shared = std::env::var("NUCSEG_SHARED")
        .unwrap_or_else(|_| format!("{}/../shared", env!("CARGO_MANIFEST_DIR")));
    let truth = read_label_map(format!(
        "{shared}/data/monuseg-kumar/labels/TCGA-49-4488-01Z-00-DX1.png"
    ))
    .expect("real MoNuSeg label map (set NUCSEG_SHARED)");
    let pred = perturbed(&truth);
    eprintln!(
        "truth {} nuclei, prediction {} nuclei",
        truth.count(),
        pred.count()
    );
    let mut group = c.benchmark_group("metrics_1000x1000");
    group.bench_function("overlap_table", |b| {
        b.iter(|| OverlapTable::new(&truth, &pred).unwrap())
    });
    group.bench_function("all_metrics", |b| {
        b.iter(|| ImageMetrics::compute(&truth, &pred).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
