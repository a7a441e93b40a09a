//! Box geometry: areas, IoU matrices, clipping, small-box removal and non-maximum
//! suppression. Boxes are `[x1, y1, x2, y2]` in continuous pixel coordinates (the image
//! spans `[0, W] × [0, H]`; pixel `(i, j)` covers `[i, i+1) × [j, j+1)`), as in torchvision.
//!
//! Each operation exists on the host (`&[[f32; 4]]`, used for matching and bookkeeping) and,
//! where it runs on the device, as a tensor op; both are tested against each other and
//! against brute force.

use burn::tensor::Tensor;

/// A box `[x1, y1, x2, y2]`.
pub type BoxXyxy = [f32; 4];

/// Area of a box (0 for degenerate boxes).
#[inline]
pub fn area(b: &BoxXyxy) -> f32 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

/// Intersection over union of two boxes (0 when the union is empty).
#[inline]
pub fn iou(a: &BoxXyxy, b: &BoxXyxy) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// The `[a.len(), b.len()]` IoU matrix on the host, row-major. Uses a sort-and-sweep along
/// x so that the cost is proportional to the number of overlapping pairs plus the sort,
/// not to `a.len() × b.len()` comparisons of far-apart boxes.
pub fn iou_matrix(a: &[BoxXyxy], b: &[BoxXyxy]) -> Vec<f32> {
    let mut out = vec![0.0f32; a.len() * b.len()];
    if a.is_empty() || b.is_empty() {
        return out;
    }
    // Sort b by x1; for each a, scan the b's whose x1 < a.x2, skipping those ending before a.x1.
    let mut order: Vec<usize> = (0..b.len()).collect();
    order.sort_by(|&i, &j| b[i][0].total_cmp(&b[j][0]));
    let xs: Vec<f32> = order.iter().map(|&i| b[i][0]).collect();
    for (i, ba) in a.iter().enumerate() {
        let end = xs.partition_point(|&x| x < ba[2]);
        for &j in &order[..end] {
            if b[j][2] > ba[0] {
                out[i * b.len() + j] = iou(ba, &b[j]);
            }
        }
    }
    out
}

/// The IoU matrix of two box tensors, on their device.
///
/// # Shapes
/// `a: [N, 4]`, `b: [M, 4]` → `[N, M]`.
pub fn iou_matrix_tensor(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    let [n, _] = a.dims();
    let [m, _] = b.dims();
    let col = |t: &Tensor<2>, k: usize| t.clone().slice([0..t.dims()[0], k..k + 1]);
    let (ax1, ay1, ax2, ay2) = (col(&a, 0), col(&a, 1), col(&a, 2), col(&a, 3)); // [N, 1]
    let bt = b.transpose(); // [4, M]
    let row = |k: usize| bt.clone().slice([k..k + 1, 0..m]); // [1, M]
    let (bx1, by1, bx2, by2) = (row(0), row(1), row(2), row(3));
    let area_a =
        (ax2.clone() - ax1.clone()).clamp_min(0.0) * (ay2.clone() - ay1.clone()).clamp_min(0.0);
    let area_b =
        (bx2.clone() - bx1.clone()).clamp_min(0.0) * (by2.clone() - by1.clone()).clamp_min(0.0);
    let w = (ax2.expand([n, m]).min_pair(bx2.expand([n, m]))
        - ax1.expand([n, m]).max_pair(bx1.expand([n, m])))
    .clamp_min(0.0);
    let h = (ay2.expand([n, m]).min_pair(by2.expand([n, m]))
        - ay1.expand([n, m]).max_pair(by1.expand([n, m])))
    .clamp_min(0.0);
    let inter = w * h;
    let union = area_a.expand([n, m]) + area_b.expand([n, m]) - inter.clone();
    // Empty unions give 0, not NaN.
    let safe = union.clone().clamp_min(f32::MIN_POSITIVE);
    (inter / safe).mask_fill(union.lower_equal_elem(0.0), 0.0)
}

/// Clips a box to a `width × height` image.
#[inline]
pub fn clip(b: &BoxXyxy, width: f32, height: f32) -> BoxXyxy {
    [
        b[0].clamp(0.0, width),
        b[1].clamp(0.0, height),
        b[2].clamp(0.0, width),
        b[3].clamp(0.0, height),
    ]
}

/// Clips box tensors to a `width × height` image.
///
/// # Shapes
/// `boxes: [N, 4]` → `[N, 4]`.
pub fn clip_tensor(boxes: Tensor<2>, width: f32, height: f32) -> Tensor<2> {
    let [n, _] = boxes.dims();
    let device = boxes.device();
    let upper = Tensor::<2>::from_floats([[width, height, width, height]], &device).expand([n, 4]);
    boxes.clamp_min(0.0).min_pair(upper)
}

/// A box scaled by `factor` about its centre (torchvision's `expand_boxes`); exactly `b`
/// at 1.
#[inline]
pub fn scale_box(b: &BoxXyxy, factor: f32) -> BoxXyxy {
    if factor == 1.0 {
        return *b;
    }
    let (cx, cy) = (0.5 * (b[0] + b[2]), 0.5 * (b[1] + b[3]));
    let (hw, hh) = (0.5 * factor * (b[2] - b[0]), 0.5 * factor * (b[3] - b[1]));
    [cx - hw, cy - hh, cx + hw, cy + hh]
}

/// Whether both sides of a box are at least `min_size`.
#[inline]
pub fn is_large_enough(b: &BoxXyxy, min_size: f32) -> bool {
    b[2] - b[0] >= min_size && b[3] - b[1] >= min_size
}

/// Greedy non-maximum suppression: visits boxes by decreasing score and keeps a box unless
/// it overlaps an already kept box with IoU > `iou_threshold`. Returns the kept indices by
/// decreasing score (ties keep input order). Same result as `torchvision.ops.nms`.
///
/// Runs on the host: Burn has no NMS that works on autodiff devices, and the inputs here are
/// at most a few thousand boxes. Candidates are tested only against kept boxes that
/// overlap them in x (sweep over kept boxes sorted by x1).
pub fn nms(boxes: &[BoxXyxy], scores: &[f32], iou_threshold: f32) -> Vec<usize> {
    assert_eq!(boxes.len(), scores.len(), "one score per box");
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&i, &j| scores[j].total_cmp(&scores[i]).then(i.cmp(&j)));
    let mut kept: Vec<usize> = Vec::new();
    // Uniform grid over kept boxes, so each candidate checks only nearby kept boxes.
    let max_side = boxes
        .iter()
        .map(|b| (b[2] - b[0]).max(b[3] - b[1]))
        .fold(1.0f32, f32::max);
    let cell = max_side.max(1.0);
    let mut grid: std::collections::HashMap<(i32, i32), Vec<usize>> = Default::default();
    let key = |x: f32, y: f32| ((x / cell).floor() as i32, (y / cell).floor() as i32);
    'next: for i in order {
        let b = &boxes[i];
        let (cx0, cy0) = key(b[0], b[1]);
        let (cx1, cy1) = key(b[2], b[3]);
        // A kept box overlapping `b` has its top-left cell within one cell of b's cells.
        for gx in cx0 - 1..=cx1 {
            for gy in cy0 - 1..=cy1 {
                if let Some(list) = grid.get(&(gx, gy)) {
                    for &k in list {
                        if iou(&boxes[k], b) > iou_threshold {
                            continue 'next;
                        }
                    }
                }
            }
        }
        grid.entry(key(b[0], b[1])).or_default().push(i);
        kept.push(i);
    }
    kept
}

/// NMS applied independently per group (class or pyramid level): boxes of different groups
/// never suppress each other. Returns kept indices by decreasing score.
pub fn batched_nms(
    boxes: &[BoxXyxy],
    scores: &[f32],
    groups: &[usize],
    iou_threshold: f32,
) -> Vec<usize> {
    assert_eq!(boxes.len(), groups.len(), "one group per box");
    let mut by_group: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, &g) in groups.iter().enumerate() {
        by_group.entry(g).or_default().push(i);
    }
    let mut kept = Vec::new();
    for idx in by_group.values() {
        let b: Vec<BoxXyxy> = idx.iter().map(|&i| boxes[i]).collect();
        let s: Vec<f32> = idx.iter().map(|&i| scores[i]).collect();
        kept.extend(nms(&b, &s, iou_threshold).into_iter().map(|k| idx[k]));
    }
    kept.sort_by(|&i, &j| scores[j].total_cmp(&scores[i]).then(i.cmp(&j)));
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scale_box_keeps_the_centre_and_scales_the_sides() {
        assert_eq!(
            scale_box(&[10.0, 20.0, 30.0, 60.0], 1.5),
            [5.0, 10.0, 35.0, 70.0]
        );
        let odd = [0.1, 0.7, 13.3, 9.9];
        assert_eq!(scale_box(&odd, 1.0), odd);
    }

    fn boxes_strategy(n: usize) -> impl Strategy<Value = Vec<BoxXyxy>> {
        prop::collection::vec(
            (0.0f32..100.0, 0.0f32..100.0, 0.0f32..30.0, 0.0f32..30.0),
            0..n,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(x, y, w, h)| [x, y, x + w, y + h])
                .collect()
        })
    }

    /// Textbook greedy NMS over all pairs.
    fn nms_reference(boxes: &[BoxXyxy], scores: &[f32], t: f32) -> Vec<usize> {
        let mut order: Vec<usize> = (0..boxes.len()).collect();
        order.sort_by(|&i, &j| scores[j].total_cmp(&scores[i]).then(i.cmp(&j)));
        let mut suppressed = vec![false; boxes.len()];
        let mut keep = vec![];
        for (a, &i) in order.iter().enumerate() {
            if suppressed[i] {
                continue;
            }
            keep.push(i);
            for &j in &order[a + 1..] {
                if iou(&boxes[i], &boxes[j]) > t {
                    suppressed[j] = true;
                }
            }
        }
        keep
    }

    #[test]
    fn iou_by_hand() {
        assert_eq!(iou(&[0.0, 0.0, 2.0, 2.0], &[1.0, 1.0, 3.0, 3.0]), 1.0 / 7.0);
        assert_eq!(iou(&[0.0, 0.0, 1.0, 1.0], &[2.0, 2.0, 3.0, 3.0]), 0.0);
        assert_eq!(iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn tensor_iou_matches_host() {
        let device = burn::tensor::Device::flex();
        let a = vec![
            [0.0, 0.0, 2.0, 2.0],
            [1.0, 1.0, 5.0, 4.0],
            [3.0, 3.0, 3.0, 3.0],
        ];
        let b = vec![[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0]];
        let t = |v: &[BoxXyxy]| {
            Tensor::<2>::from_data(
                burn::tensor::TensorData::new(
                    v.iter().flatten().copied().collect::<Vec<f32>>(),
                    [v.len(), 4],
                ),
                &device,
            )
        };
        let got: Vec<f32> = iou_matrix_tensor(t(&a), t(&b))
            .try_into_vec_as::<f32>()
            .unwrap();
        let want = iou_matrix(&a, &b);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        let clipped: Vec<f32> = clip_tensor(t(&[[-3.0, 2.0, 9.0, 11.0]]), 8.0, 10.0)
            .try_into_vec_as::<f32>()
            .unwrap();
        assert_eq!(clipped, vec![0.0, 2.0, 8.0, 10.0]);
    }

    proptest! {
        #[test]
        fn iou_matrix_equals_brute_force(a in boxes_strategy(20), b in boxes_strategy(20)) {
            let m = iou_matrix(&a, &b);
            for (i, ba) in a.iter().enumerate() {
                for (j, bb) in b.iter().enumerate() {
                    prop_assert_eq!(m[i * b.len() + j], iou(ba, bb));
                }
            }
        }

        #[test]
        fn nms_equals_reference(b in boxes_strategy(60), seed in any::<u64>(), t in 0.1f32..0.9) {
            let scores: Vec<f32> = (0..b.len()).map(|i| (((i as u64 * 2654435761) ^ seed) % 1000) as f32 / 1000.0).collect();
            prop_assert_eq!(nms(&b, &scores, t), nms_reference(&b, &scores, t));
        }

        #[test]
        fn batched_nms_never_suppresses_across_groups(b in boxes_strategy(40)) {
            let scores: Vec<f32> = (0..b.len()).map(|i| 1.0 - i as f32 * 0.01).collect();
            // Duplicate every box into a second group: each kept box is kept in both groups.
            let mut boxes = b.clone();
            boxes.extend(b.iter().copied());
            let mut s = scores.clone();
            s.extend(scores.iter().map(|x| x - 0.001));
            let groups: Vec<usize> = (0..boxes.len()).map(|i| i / b.len()).collect();
            let kept = batched_nms(&boxes, &s, &groups, 0.5);
            let single = nms(&b, &scores, 0.5);
            prop_assert_eq!(kept.len(), 2 * single.len());
        }
    }
}
