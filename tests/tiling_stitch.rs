//! Tiled inference and stitching: the paper's layout, exact results on seams and corners
//! with a segmenter that is exact on each tile, degenerate image sizes, nuclei larger than
//! the overlap, progress reporting and bounded batches.

mod tta_support;

use std::cell::RefCell;

use nucseg::data::RgbImage;
use nucseg::postprocess::{Stitcher, Tiler, TilerConfig};
use nucseg::{Instance, InstanceMask, InstanceSegmenter, Instances};
use proptest::prelude::*;
use tta_support::*;

fn tiler(tile: u32, stride: u32) -> Tiler {
    TilerConfig::new()
        .with_tile_size(tile)
        .with_stride(stride)
        .init()
        .unwrap()
}

#[test]
fn the_paper_layout_is_nine_tiles_at_0_250_500() {
    let t = TilerConfig::new().init().unwrap();
    let tiles = t.tiles(1000, 1000);
    assert_eq!(tiles.len(), 9);
    let mut starts: Vec<(u32, u32)> = tiles.iter().map(|t| (t.x0, t.y0)).collect();
    starts.sort();
    let expected: Vec<(u32, u32)> = [0, 250, 500]
        .iter()
        .flat_map(|&x| [0, 250, 500].map(|y| (x, y)))
        .collect();
    assert_eq!(starts, expected);
    assert!(tiles
        .iter()
        .all(|t| (t.width, t.height, t.input_size) == (500, 500, (500, 500))));
    // The cores partition the image.
    let area: u64 = tiles
        .iter()
        .map(|t| ((t.core[2] - t.core[0]) * (t.core[3] - t.core[1])) as u64)
        .sum();
    assert_eq!(area, 1_000_000);
    assert_eq!(tiles[4].core, [375, 375, 625, 625]);
    assert_eq!(tiles[4].inner_edges, [true; 4]);
    assert_eq!(tiles[0].inner_edges, [false, false, true, true]);
    assert_eq!(t.guaranteed_reach(), 124);
}

/// Disks on every tile edge, every core boundary and every crossing of them (and the image
/// corners), some centred exactly on a line (centroid on a pixel corner), some off it.
fn seam_disks(t: &Tiler, w: u32, h: u32, max_r: f64, rng: &mut SplitMix) -> Vec<Disk> {
    let tiles = t.tiles(w, h);
    let lines = |pick: &dyn Fn(&nucseg::postprocess::Tile) -> [u32; 4]| {
        let mut v: Vec<u32> = tiles.iter().flat_map(pick).collect();
        v.sort();
        v.dedup();
        v
    };
    let xs = lines(&|t| [t.x0, t.x0 + t.width, t.core[0], t.core[2]]);
    let ys = lines(&|t| [t.y0, t.y0 + t.height, t.core[1], t.core[3]]);
    let mut disks = Vec::new();
    for &x in &xs {
        for &y in &ys {
            let jitter = |rng: &mut SplitMix| match rng.next_u64() % 3 {
                0 => 0.0,
                1 => 0.5,
                _ => rng.uniform(-3.0, 3.0),
            };
            let d = Disk {
                cx: x as f64 + jitter(rng),
                cy: y as f64 + jitter(rng),
                r: rng.uniform(2.0, max_r),
            };
            place(&mut disks, d, 2.0);
        }
    }
    // Disks along the lines between crossings, and a random field.
    for _ in 0..disks.len() * 3 {
        let (cx, cy) = match rng.next_u64() % 3 {
            0 => (
                xs[(rng.next_u64() % xs.len() as u64) as usize] as f64,
                rng.uniform(0.0, h as f64),
            ),
            1 => (
                rng.uniform(0.0, w as f64),
                ys[(rng.next_u64() % ys.len() as u64) as usize] as f64,
            ),
            _ => (rng.uniform(0.0, w as f64), rng.uniform(0.0, h as f64)),
        };
        let r = rng.uniform(2.0, max_r);
        place(&mut disks, Disk { cx, cy, r }, 2.0);
    }
    disks
}

#[test]
fn seams_and_corners_of_a_2048x1536_image_are_exact() {
    let (w, h) = (2048, 1536);
    let t = TilerConfig::new().init().unwrap();
    let disks = seam_disks(&t, w, h, 40.0, &mut SplitMix(2048));
    assert!(disks.len() > 400, "{} disks", disks.len());
    let img = disk_image(w, h, &disks);
    let truth = dark_components(&img);
    assert_eq!(truth.len(), disks.len());
    let stitched = t.segment(&DarkSegmenter, &img).unwrap();
    assert_eq!((stitched.width, stitched.height), (w, h));
    assert_eq!(stitched.len(), truth.len());
    assert_eq!(canonical(&stitched), canonical(&truth));
}

#[test]
fn tiny_and_thin_images_work() {
    let t = TilerConfig::new().init().unwrap();
    let dark = RgbImage::from_pixel(1, 1, image::Rgb(NUCLEUS));
    let found = t.segment(&DarkSegmenter, &dark).unwrap();
    assert_eq!((found.width, found.height, found.len()), (1, 1, 1));
    assert_eq!(found.items[0].mask, InstanceMask::from_pixels([(0, 0)]));
    let white = RgbImage::from_pixel(1, 1, image::Rgb(BACKGROUND));
    assert!(t.segment(&DarkSegmenter, &white).unwrap().is_empty());
    assert!(t
        .segment(&DarkSegmenter, &RgbImage::new(0, 0))
        .unwrap()
        .is_empty());

    // 7 × 3000: one padded column of 11 tiles; disks on the seams, cut by the sides.
    let (w, h) = (7, 3000);
    assert_eq!(t.tiles(w, h).len(), 11);
    let mut disks = Vec::new();
    let mut rng = SplitMix(7);
    for k in 0..120 {
        let cy = 12.0 + k as f64 * 24.5;
        let cx = rng.uniform(0.0, 7.0);
        place(
            &mut disks,
            Disk {
                cx,
                cy,
                r: rng.uniform(1.0, 9.0),
            },
            2.0,
        );
    }
    let img = disk_image(w, h, &disks);
    let truth = dark_components(&img);
    let stitched = t.segment(&DarkSegmenter, &img).unwrap();
    assert_eq!(canonical(&stitched), canonical(&truth));
    // The transposed image too.
    let img = nucseg::postprocess::Dihedral::Transpose.apply_image(&img);
    assert_eq!(
        canonical(&t.segment(&DarkSegmenter, &img).unwrap()),
        canonical(&dark_components(&img))
    );
}

#[test]
fn nuclei_larger_than_the_overlap_are_joined_across_seams() {
    // Overlap 16 px guarantees only a reach of 7 px; these are much larger, and a 150 px bar
    // crosses several tiles without ever being whole in one.
    let t = tiler(64, 48);
    assert_eq!(t.guaranteed_reach(), 7);
    let (w, h) = (200, 150);
    let mut img = disk_image(
        w,
        h,
        &[
            Disk {
                cx: 48.0,
                cy: 48.0,
                r: 20.0,
            },
            Disk {
                cx: 150.0,
                cy: 110.0,
                r: 25.0,
            },
        ],
    );
    for x in 20..170 {
        for y in 10..18 {
            img.put_pixel(x, y, image::Rgb(NUCLEUS));
        }
    }
    let truth = dark_components(&img);
    assert_eq!(truth.len(), 3);
    let stitched = t.segment(&DarkSegmenter, &img).unwrap();
    assert_eq!(canonical(&stitched), canonical(&truth));
}

/// Records the batches it is given.
#[derive(Default)]
struct Recorder {
    batches: RefCell<Vec<(usize, (u32, u32))>>,
}

impl InstanceSegmenter for Recorder {
    fn segment_instances(&self, image: &RgbImage) -> nucseg::Result<Instances> {
        DarkSegmenter.segment_instances(image)
    }

    fn segment_batch(&self, images: &[RgbImage]) -> nucseg::Result<Vec<Instances>> {
        assert!(images
            .iter()
            .all(|i| i.dimensions() == images[0].dimensions()));
        self.batches
            .borrow_mut()
            .push((images.len(), images[0].dimensions()));
        images.iter().map(|i| self.segment_instances(i)).collect()
    }
}

#[test]
fn batches_are_bounded_and_progress_is_reported() {
    let t = TilerConfig::new().with_batch_size(4).init().unwrap();
    let img = RgbImage::from_pixel(1000, 1000, image::Rgb(BACKGROUND));
    let rec = Recorder::default();
    let mut calls = Vec::new();
    t.segment_with_progress(&rec, &img, |done, total| calls.push((done, total)))
        .unwrap();
    assert_eq!(calls, vec![(4, 9), (8, 9), (9, 9)]);
    assert_eq!(
        *rec.batches.borrow(),
        vec![(4, (500, 500)), (4, (500, 500)), (1, (500, 500))]
    );
}

#[test]
fn duplicates_from_neighbouring_tiles_are_merged_by_iou() {
    // Feed the stitcher two tiles that both claim one nucleus (slightly different masks,
    // centroids in their own cores): only one survives.
    let t = tiler(100, 50);
    let tiles = t.tiles(150, 100);
    assert_eq!(tiles.len(), 2);
    let (a, b) = (&tiles[0], &tiles[1]);
    assert_eq!((a.core, b.core), ([0, 0, 75, 100], [75, 0, 150, 100]));
    let disk = |cx: f64| Disk {
        cx,
        cy: 50.0,
        r: 8.0,
    };
    let as_tile = |d: Disk, x0: u32, score: f32| {
        let mut m = d.mask(150, 100);
        m.x0 -= x0;
        Instances {
            width: 100,
            height: 100,
            items: vec![Instance {
                score,
                ..Instance::from_mask(m)
            }],
        }
    };
    let mut s = Stitcher::new(150, 100, 0.2);
    s.add(a, as_tile(disk(74.0), 0, 0.7)).unwrap();
    s.add(b, as_tile(disk(76.0), 50, 0.9)).unwrap();
    let out = s.finish();
    assert_eq!(out.len(), 1);
    assert_eq!(out.items[0].score, 0.9);
    assert_eq!(out.items[0].mask, disk(76.0).mask(150, 100));
    // Through the tiler, a disk centred on the core boundary is taken once, from `b`.
    let img = disk_image(150, 100, &[disk(75.0)]);
    let found = t.segment(&DarkSegmenter, &img).unwrap();
    assert_eq!(canonical(&found), canonical(&dark_components(&img)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any layout, any image size: nuclei within the guaranteed reach come out exactly.
    #[test]
    fn random_layouts_are_exact(
        tile in 12u32..48, stride_frac in 0.3f64..0.8, w in 1u32..130, h in 1u32..130,
        seed in any::<u64>(),
    ) {
        let stride = ((tile as f64 * stride_frac) as u32).max(1);
        let t = tiler(tile, stride);
        let reach = t.guaranteed_reach() as f64;
        prop_assume!(reach >= 2.0);
        let mut rng = SplitMix(seed);
        // A disk of radius r reaches at most r + 1 px from its centroid.
        let disks = seam_disks(&t, w, h, (reach - 1.0).max(1.5), &mut rng);
        let img = disk_image(w, h, &disks);
        let stitched = t.segment(&DarkSegmenter, &img).unwrap();
        prop_assert_eq!(canonical(&stitched), canonical(&dark_components(&img)));
    }
}
