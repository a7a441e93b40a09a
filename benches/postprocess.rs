//! Cost of the post-processing itself, next to the network it wraps, on a synthetic
//! 1000×1000 image with ~500 nuclei (disks of radius 5–14 px):
//! - `tta/merge_8_views`: [`merge_views`] of 8 views, each the disks jittered by up to
//!   ±1 px in centre and radius, with 3 % of the nuclei missed and 1 % invented per view;
//! - `tta/map_back_8_views`: the exact inverse transforms of those 8 predictions;
//! - `tta/transform_8_images`: the 8 dihedral views of the RGB image;
//! - `tiling/stitch_9_tiles`: [`Stitcher`] on the paper's 9 tiles (500 px, stride 250),
//!   with per-tile predictions made beforehand (exact connected components of each tile).
//!
//! Target: a few tens of ms at most per image, for each.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use nucseg::data::{connected_components, Connectivity, RgbImage};
use nucseg::postprocess::{merge_views, Dihedral, Stitcher, TilerConfig, TtaConfig, TtaSet};
use nucseg::{Instance, InstanceMask, Instances};

const SIZE: u32 = 1000;

/// SplitMix64, uniform in [lo, hi).
struct Rng(u64);
impl Rng {
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        lo + (hi - lo) * ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn disk(cx: f64, cy: f64, r: f64) -> InstanceMask {
    let (x0, y0) = (
        (cx - r).floor().max(0.0) as u32,
        (cy - r).floor().max(0.0) as u32,
    );
    let x1 = ((cx + r).ceil() as u32 + 1).min(SIZE);
    let y1 = ((cy + r).ceil() as u32 + 1).min(SIZE);
    InstanceMask::from_pixels(
        (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                (x as f64 + 0.5 - cx).powi(2) + (y as f64 + 0.5 - cy).powi(2) <= r * r
            }),
    )
}

/// ~500 non-overlapping disks `(cx, cy, r)`.
fn disks(rng: &mut Rng) -> Vec<(f64, f64, f64)> {
    let mut out: Vec<(f64, f64, f64)> = Vec::new();
    while out.len() < 500 {
        let d = (
            rng.uniform(0.0, 1000.0),
            rng.uniform(0.0, 1000.0),
            rng.uniform(5.0, 14.0),
        );
        if out
            .iter()
            .all(|e| ((e.0 - d.0).powi(2) + (e.1 - d.1).powi(2)).sqrt() > e.2 + d.2 + 2.0)
        {
            out.push(d);
        }
    }
    out
}

fn instances(masks: impl IntoIterator<Item = (InstanceMask, f32)>) -> Instances {
    Instances {
        width: SIZE,
        height: SIZE,
        items: masks
            .into_iter()
            .filter(|(m, _)| m.width > 0)
            .map(|(m, score)| Instance {
                score,
                ..Instance::from_mask(m)
            })
            .collect(),
    }
}

fn views(truth: &[(f64, f64, f64)], rng: &mut Rng) -> Vec<Instances> {
    (0..8)
        .map(|_| {
            let mut v: Vec<(InstanceMask, f32)> = Vec::new();
            for &(cx, cy, r) in truth {
                if rng.uniform(0.0, 1.0) < 0.03 {
                    continue;
                }
                let m = disk(
                    cx + rng.uniform(-1.0, 1.0),
                    cy + rng.uniform(-1.0, 1.0),
                    r + rng.uniform(-1.0, 1.0),
                );
                v.push((m, rng.uniform(0.5, 1.0) as f32));
            }
            for _ in 0..5 {
                let m = disk(rng.uniform(0.0, 1000.0), rng.uniform(0.0, 1000.0), 6.0);
                v.push((m, 0.3));
            }
            instances(v)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng(1000);
    let truth = disks(&mut rng);
    let views = views(&truth, &mut rng);
    let config = TtaConfig::new().with_set(TtaSet::D4);
    let merged = merge_views(&views, &config).unwrap();
    eprintln!(
        "views: {} nuclei each on average; merged: {}",
        views.iter().map(|v| v.len()).sum::<usize>() / 8,
        merged.len()
    );
    let transformed: Vec<Instances> = views
        .iter()
        .zip(Dihedral::ALL)
        .map(|(v, t)| t.apply_instances(v))
        .collect();
    let mut image = RgbImage::from_pixel(SIZE, SIZE, image::Rgb([255, 255, 255]));
    for &(cx, cy, r) in &truth {
        for (x, y) in disk(cx, cy, r).pixels() {
            image.put_pixel(x, y, image::Rgb([60, 30, 110]));
        }
    }

    let mut group = c.benchmark_group("tta_1000x1000_500_nuclei");
    group.bench_function("merge_8_views", |b| {
        b.iter(|| merge_views(&views, &config).unwrap())
    });
    group.bench_function("map_back_8_views", |b| {
        b.iter(|| {
            transformed
                .iter()
                .zip(Dihedral::ALL)
                .map(|(v, t)| t.inverse().apply_instances(v))
                .collect::<Vec<_>>()
        })
    });
    group.bench_function("transform_8_images", |b| {
        b.iter(|| Dihedral::ALL.map(|t| t.apply_image(&image)))
    });
    group.finish();

    let tiler = TilerConfig::new().init().unwrap();
    let tiles = tiler.tiles(SIZE, SIZE);
    let found: Vec<Instances> = tiles
        .iter()
        .map(|t| {
            let tile = tiler.extract(&image, t);
            let dark: Vec<bool> = tile
                .pixels()
                .map(|p| p.0.iter().all(|&c| c < 128))
                .collect();
            let (w, h) = tile.dimensions();
            Instances::from_label_map(&connected_components(w, h, &dark, Connectivity::Eight))
        })
        .collect();
    let stitched = {
        let mut s = Stitcher::new(SIZE, SIZE, 0.2);
        for (t, f) in tiles.iter().zip(found.clone()) {
            s.add(t, f).unwrap();
        }
        s.finish()
    };
    eprintln!(
        "tiles: {} with {} detections; stitched: {} of {} nuclei",
        tiles.len(),
        found.iter().map(|f| f.len()).sum::<usize>(),
        stitched.len(),
        truth.len()
    );
    let mut group = c.benchmark_group("tiling_1000x1000_500_nuclei");
    group.bench_function("stitch_9_tiles", |b| {
        b.iter_batched(
            || found.clone(),
            |found| {
                let mut s = Stitcher::new(SIZE, SIZE, 0.2);
                for (t, f) in tiles.iter().zip(found) {
                    s.add(t, f).unwrap();
                }
                s.finish()
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
