//! How well the anchors fit the real nuclei: the share of Kumar's training nuclei that have an
//! anchor at IoU ≥ 0.7 (the RPN's threshold for a positive, Faster R-CNN Sec. 3.1.2), with the
//! paper's one size per level and with three per octave (RetinaNet, Lin et al. 2017, Sec. 4).

mod common;

use nucseg::{
    data::{KumarSplit, MonusegDataset},
    model::{
        ops::{iou, AnchorGenerator, AnchorGeneratorConfig, BoxXyxy},
        TrainingTarget,
    },
};

/// Input side (a multiple of P6's stride 64, so every level's stride is exact) and the
/// pyramid's feature sizes for it.
const SIDE: usize = 1024;
const LEVELS: [(usize, usize); 5] = [(256, 256), (128, 128), (64, 64), (32, 32), (16, 16)];

/// The best IoU of `b` with any anchor: per level, the anchors of the 5 × 5 positions
/// around the box's centre (for one anchor shape the IoU falls as the anchor's centre moves
/// away from the box's, so the nearest positions hold the best).
fn best_anchor_iou(g: &AnchorGenerator, levels: &[Vec<BoxXyxy>], b: &BoxXyxy) -> f32 {
    let a = g.num_anchors_per_location();
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let mut best = 0f32;
    for (level, &(fh, fw)) in levels.iter().zip(&LEVELS) {
        let stride = (SIDE / fw) as f32;
        let (x0, y0) = ((cx / stride).round() as i64, (cy / stride).round() as i64);
        for y in (y0 - 2).max(0)..=(y0 + 2).min(fh as i64 - 1) {
            for x in (x0 - 2).max(0)..=(x0 + 2).min(fw as i64 - 1) {
                let at = (y as usize * fw + x as usize) * a;
                for anchor in &level[at..at + a] {
                    best = best.max(iou(anchor, b));
                }
            }
        }
    }
    best
}

/// Share of the training nuclei whose best anchor reaches IoU 0.7.
fn covered_share(config: AnchorGeneratorConfig, boxes: &[BoxXyxy]) -> f64 {
    let g = config.init().unwrap();
    let levels = g.anchors_per_level((SIDE, SIDE), &LEVELS);
    let covered = boxes
        .iter()
        .filter(|b| best_anchor_iou(&g, &levels, b) >= 0.7)
        .count();
    covered as f64 / boxes.len() as f64
}

#[test]
fn three_sizes_per_octave_give_kumar_nuclei_positive_anchors_3_6_times_as_often() {
    let ds = MonusegDataset::open(common::monuseg()).unwrap();
    let mut boxes = Vec::new();
    for sample in ds.split(KumarSplit::Train).unwrap() {
        let labels = sample.load().unwrap().labels.unwrap();
        boxes.extend(TrainingTarget::from_label_map(&labels).boxes);
    }
    assert!(boxes.len() > 9_000, "{} training nuclei", boxes.len());
    let paper = covered_share(AnchorGeneratorConfig::new(), &boxes);
    let three = covered_share(
        AnchorGeneratorConfig::new().with_scales_per_octave(Some(3)),
        &boxes,
    );
    println!("nuclei with an anchor at IoU ≥ 0.7: paper {paper:.3}, three per octave {three:.3}");
    // Measured 2026-12-07 on the 9,907 training nuclei: 12.0 % and 43.5 % (the rest are
    // learnt only through each box's best anchor).
    assert!((paper - 0.120).abs() < 0.005, "{paper}");
    assert!((three - 0.435).abs() < 0.005, "{three}");
}
