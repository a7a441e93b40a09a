//! The second stage of Mask R-CNN without its learnable layers: choosing and labelling the
//! RoIs the box and mask heads train on (Fast R-CNN, Sec. 2.3), their losses (Mask R-CNN
//! eq. in Sec. 3: `L = L_cls + L_box + L_mask`), and turning head outputs into detections.

use burn::{
    config::Config,
    tensor::{Int, Tensor, TensorData},
};
use rand::Rng;

use crate::instances::InstanceMask;
use crate::model::{
    ops::{
        batched_nms, bce_with_logits, clip, cross_entropy, iou_matrix, is_large_enough,
        roi_align_plane, smooth_l1_sum, BalancedSampler, BoxCoder, BoxXyxy, Match, Matcher,
        RoiAlignConfig,
    },
    TrainingTarget,
};

/// Settings of the RoI heads; defaults are torchvision's, with up to 1000 detections per
/// image as Jung et al. (2019) keep for crowded nuclei.
#[derive(Config, Debug, PartialEq)]
pub struct RoiHeadsConfig {
    /// RoIs with IoU ≥ this are foreground.
    #[config(default = 0.5)]
    pub fg_iou_thresh: f32,
    /// RoIs with IoU < this are background.
    #[config(default = 0.5)]
    pub bg_iou_thresh: f32,
    /// RoIs sampled per image for the box loss.
    #[config(default = 512)]
    pub batch_size_per_image: usize,
    /// Largest foreground share of the sampled RoIs.
    #[config(default = 0.25)]
    pub positive_fraction: f32,
    /// Box-coder weights `(wx, wy, ww, wh)`.
    #[config(default = "[10.0, 10.0, 5.0, 5.0]")]
    pub bbox_reg_weights: [f32; 4],
    /// β of the smooth-L1 box loss.
    #[config(default = "1.0 / 9.0")]
    pub smooth_l1_beta: f32,
    /// Detections with a lower class probability are dropped.
    #[config(default = 0.05)]
    pub score_thresh: f32,
    /// Per-class NMS IoU threshold between detections.
    #[config(default = 0.5)]
    pub nms_thresh: f32,
    /// Most detections kept per image.
    #[config(default = 1000)]
    pub detections_per_img: usize,
    /// Detections with a side below this (pixels) are dropped.
    #[config(default = 1e-2)]
    pub min_size: f32,
    /// Mask probability threshold when pasting.
    #[config(default = 0.5)]
    pub mask_thresh: f32,
    /// Training only: the mask loss is taken over at most this many of each image's
    /// foreground RoIs, a uniform random subset (the sampler shuffles them). `None`: all of
    /// them, as Mask R-CNN (Sec. 3.1: `L_mask` is defined on every positive RoI). The mask
    /// head's four 3×3 convolutions on up to `batch_size_per_image × positive_fraction` RoIs
    /// per image are most of a CPU training step's arithmetic; a cap trades mask examples
    /// per step for steps.
    #[config(default = "None")]
    pub mask_rois_per_image: Option<usize>,
}

/// The RoIs of one image chosen for the box loss.
#[derive(Debug, Clone, Default)]
pub struct RoiSamples {
    /// Sampled RoIs (proposals and ground-truth boxes), positives first.
    pub boxes: Vec<BoxXyxy>,
    /// Class of each RoI (0 = background).
    pub labels: Vec<u32>,
    /// Matched ground-truth index of each positive RoI (`None` for background).
    pub matched: Vec<Option<usize>>,
    /// Encoded regression target of each RoI (zeros for background).
    pub regression_targets: Vec<[f32; 4]>,
}

impl RoiSamples {
    /// Number of foreground RoIs (they come first).
    pub fn num_positive(&self) -> usize {
        self.labels.iter().take_while(|&&l| l > 0).count()
    }
}

/// One detection before its mask is predicted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Box in image pixels.
    pub bbox: BoxXyxy,
    /// Class probability.
    pub score: f32,
    /// Class id (≥ 1).
    pub label: u32,
}

/// Why `threshold` cannot be a mask probability threshold (`name` in the message), if it
/// cannot: it must lie in (0, 1), or every pixel or none would pass.
pub fn mask_threshold_problem(name: &str, threshold: f32) -> Option<String> {
    (!(threshold > 0.0 && threshold < 1.0))
        .then(|| format!("{name} {threshold} must lie in (0, 1)"))
}

impl RoiHeadsConfig {
    /// What is wrong with the settings, if anything: score and NMS IoU thresholds in
    /// [0, 1], the mask threshold in (0, 1), a mask-RoI cap of at least 1.
    pub fn problem(&self) -> Option<String> {
        mask_threshold_problem("roi_heads.mask_thresh", self.mask_thresh).or_else(|| {
            (!((0.0..=1.0).contains(&self.score_thresh) && (0.0..=1.0).contains(&self.nms_thresh)))
                .then(|| {
                    format!(
                        "roi_heads: score_thresh {} and nms_thresh {} must lie in [0, 1]",
                        self.score_thresh, self.nms_thresh
                    )
                })
        })
        .or_else(|| {
            (self.mask_rois_per_image == Some(0)).then(|| {
                "roi_heads: mask_rois_per_image must be at least 1 (or absent: every foreground RoI)"
                    .to_string()
            })
        })
    }

    /// The box coder of the box head.
    pub fn coder(&self) -> BoxCoder {
        BoxCoder::new(self.bbox_reg_weights)
    }

    /// Chooses the RoIs of one image (torchvision's `select_training_samples`): the ground
    /// truth boxes are added to the proposals, each RoI is matched to ground truth (IoU ≥ 0.5
    /// foreground, else background) and 512 are sampled, at most 25 % foreground.
    pub fn sample_rois(
        &self,
        proposals: &[BoxXyxy],
        target: &TrainingTarget,
        rng: &mut impl Rng,
    ) -> RoiSamples {
        let mut rois: Vec<BoxXyxy> = proposals.to_vec();
        rois.extend_from_slice(&target.boxes);
        let matcher = Matcher {
            high: self.fg_iou_thresh,
            low: self.bg_iou_thresh,
            allow_low_quality_matches: false,
        };
        let iou = iou_matrix(&target.boxes, &rois);
        let matches = matcher.assign(&iou, target.len(), rois.len());
        let sampler = BalancedSampler {
            batch_size_per_image: self.batch_size_per_image,
            positive_fraction: self.positive_fraction,
        };
        let (pos, neg) = sampler.sample(&matches, rng);
        let coder = self.coder();
        let mut s = RoiSamples::default();
        for &i in &pos {
            let Match::Gt(g) = matches[i] else {
                unreachable!("positives are matched")
            };
            s.boxes.push(rois[i]);
            s.labels.push(target.labels[g]);
            s.matched.push(Some(g));
            s.regression_targets
                .push(coder.encode(&target.boxes[g], &rois[i]));
        }
        for &i in &neg {
            s.boxes.push(rois[i]);
            s.labels.push(0);
            s.matched.push(None);
            s.regression_targets.push([0.0; 4]);
        }
        s
    }

    /// Box-head losses over all images' samples (torchvision's `fastrcnn_loss`): mean
    /// cross-entropy of the class logits, and smooth-L1 of the foreground RoIs' deltas for
    /// their class, summed and divided by the number of sampled RoIs.
    ///
    /// # Shapes
    /// `class_logits: [K, C]`, `box_deltas: [K, C·4]`, K = Σ samples, in image order.
    pub fn box_loss(
        &self,
        class_logits: Tensor<2>,
        box_deltas: Tensor<2>,
        samples: &[RoiSamples],
    ) -> (Tensor<1>, Tensor<1>) {
        let [k, c] = class_logits.dims();
        let device = class_logits.device();
        let labels: Vec<i64> = samples
            .iter()
            .flat_map(|s| s.labels.iter().map(|&l| l as i64))
            .collect();
        assert_eq!(labels.len(), k, "one label per RoI");
        let mut pos_rows = Vec::new();
        let mut pos_labels = Vec::new();
        let mut targets = Vec::new();
        let mut row = 0i64;
        for s in samples {
            for (l, t) in s.labels.iter().zip(&s.regression_targets) {
                if *l > 0 {
                    pos_rows.push(row);
                    pos_labels.push(*l as i64);
                    targets.extend_from_slice(t);
                }
                row += 1;
            }
        }
        let label_t = Tensor::<1, Int>::from_data(TensorData::new(labels, [k]), &device);
        let cls = cross_entropy(class_logits, label_t);
        let p = pos_rows.len();
        let reg = if p == 0 {
            box_deltas.sum() * 0.0
        } else {
            let rows = Tensor::<1, Int>::from_data(TensorData::new(pos_rows, [p]), &device);
            let cls_idx = Tensor::<1, Int>::from_data(TensorData::new(pos_labels, [p]), &device);
            let pred = box_deltas
                .reshape([k, c, 4])
                .select(0, rows)
                .gather(1, cls_idx.reshape([p, 1, 1]).expand([p, 1, 4]))
                .reshape([p, 4]);
            let target = Tensor::<2>::from_data(TensorData::new(targets, [p, 4]), &device);
            smooth_l1_sum(pred, target, self.smooth_l1_beta) / k.max(1) as f32
        };
        (cls, reg)
    }

    /// Mask targets of the foreground RoIs (torchvision's `project_masks_on_boxes`): each
    /// matched ground-truth mask read by RoIAlign inside the RoI at `m × m` (soft values in
    /// `[0, 1]`), at most [`mask_rois_per_image`](Self::mask_rois_per_image) per image.
    /// Returns, per image, the foreground RoI boxes and their labels, and the
    /// targets `[P · m · m]`.
    pub fn mask_targets(
        &self,
        samples: &[RoiSamples],
        targets: &[TrainingTarget],
        m: usize,
    ) -> (Vec<Vec<BoxXyxy>>, Vec<u32>, Vec<f32>) {
        let cfg = RoiAlignConfig::new()
            .with_output_size([m, m])
            .with_sampling_ratio(2);
        let mut boxes = Vec::new();
        let mut labels = Vec::new();
        let mut values = Vec::new();
        let cap = self.mask_rois_per_image.unwrap_or(usize::MAX);
        for (s, t) in samples.iter().zip(targets) {
            let mut image_boxes = Vec::new();
            for ((b, l), g) in s.boxes.iter().zip(&s.labels).zip(&s.matched) {
                let (Some(g), true) = (g, *l > 0) else {
                    continue;
                };
                if image_boxes.len() == cap {
                    break;
                }
                image_boxes.push(*b);
                labels.push(*l);
                values.extend(mask_target(&t.masks[*g], b, &cfg));
            }
            boxes.push(image_boxes);
        }
        (boxes, labels, values)
    }

    /// Mask loss (Mask R-CNN Sec. 3, `L_mask`): mean per-pixel binary cross-entropy of the
    /// mask logits of each foreground RoI's ground-truth class.
    ///
    /// # Shapes
    /// `mask_logits: [P, C, M, M]`, `labels.len() == P`, `targets.len() == P · M · M`.
    pub fn mask_loss(
        &self,
        mask_logits: Tensor<4>,
        labels: &[u32],
        targets: Vec<f32>,
    ) -> Tensor<1> {
        let [p, _, m, _] = mask_logits.dims();
        if p == 0 {
            return mask_logits.sum() * 0.0;
        }
        let device = mask_logits.device();
        let idx: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [p]), &device)
            .reshape([p, 1, 1, 1])
            .expand([p, 1, m, m]);
        let logits = mask_logits.gather(1, idx);
        let targets = Tensor::<4>::from_data(TensorData::new(targets, [p, 1, m, m]), &device);
        bce_with_logits(logits, targets)
    }

    /// Detections of one image from the box head's outputs on its proposals (torchvision's
    /// `postprocess_detections`): per class, decode and clip boxes, drop low scores and tiny
    /// boxes, NMS per class, keep the best `detections_per_img`.
    ///
    /// `probs` and `deltas` are row-major `[K, C]` and `[K, C · 4]` host copies.
    pub fn detections(
        &self,
        proposals: &[BoxXyxy],
        probs: &[f32],
        deltas: &[f32],
        num_classes: usize,
        (width, height): (u32, u32),
    ) -> Vec<Detection> {
        let coder = self.coder();
        let mut cands: Vec<Detection> = Vec::new();
        for (k, p) in proposals.iter().enumerate() {
            for c in 1..num_classes {
                let score = probs[k * num_classes + c];
                if score <= self.score_thresh || score.is_nan() {
                    continue;
                }
                let d = &deltas[(k * num_classes + c) * 4..(k * num_classes + c) * 4 + 4];
                let b = clip(
                    &coder.decode(&[d[0], d[1], d[2], d[3]], p),
                    width as f32,
                    height as f32,
                );
                if is_large_enough(&b, self.min_size) && b.iter().all(|v| v.is_finite()) {
                    cands.push(Detection {
                        bbox: b,
                        score,
                        label: c as u32,
                    });
                }
            }
        }
        let boxes: Vec<BoxXyxy> = cands.iter().map(|d| d.bbox).collect();
        let scores: Vec<f32> = cands.iter().map(|d| d.score).collect();
        let groups: Vec<usize> = cands.iter().map(|d| d.label as usize).collect();
        batched_nms(&boxes, &scores, &groups, self.nms_thresh)
            .into_iter()
            .take(self.detections_per_img)
            .map(|i| cands[i])
            .collect()
    }
}

/// RoIAlign of one ground-truth mask inside box `b`: the mask is padded by one zero pixel so
/// that samples just outside it read 0, not its clamped edge.
fn mask_target(mask: &InstanceMask, b: &BoxXyxy, cfg: &RoiAlignConfig) -> Vec<f32> {
    let (w, h) = (mask.width as usize + 2, mask.height as usize + 2);
    let mut plane = vec![0.0f32; w * h];
    for (x, y) in mask.pixels() {
        plane[(y - mask.y0 + 1) as usize * w + (x - mask.x0 + 1) as usize] = 1.0;
    }
    let (ox, oy) = (mask.x0 as f32 - 1.0, mask.y0 as f32 - 1.0);
    let shifted = [b[0] - ox, b[1] - oy, b[2] - ox, b[3] - oy];
    roi_align_plane(&plane, (h, w), &shifted, 1.0, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instances::InstanceMask;
    use rand::SeedableRng;

    fn square_target() -> TrainingTarget {
        let mask = InstanceMask::from_pixels(
            (10..20)
                .flat_map(|y| (30..40).map(move |x| (x, y)))
                .collect::<Vec<_>>(),
        );
        TrainingTarget {
            boxes: vec![[30.0, 10.0, 40.0, 20.0]],
            labels: vec![1],
            masks: vec![mask],
        }
    }

    #[test]
    fn thresholds_out_of_range_are_problems() {
        assert_eq!(RoiHeadsConfig::new().problem(), None);
        for bad in [
            RoiHeadsConfig::new().with_mask_thresh(0.0),
            RoiHeadsConfig::new().with_mask_thresh(1.5),
            RoiHeadsConfig::new().with_score_thresh(-0.1),
            RoiHeadsConfig::new().with_nms_thresh(f32::NAN),
            RoiHeadsConfig::new().with_mask_rois_per_image(Some(0)),
        ] {
            assert!(bad.problem().is_some(), "{bad:?}");
        }
        let message = mask_threshold_problem("--mask-threshold", 1.5).unwrap();
        assert!(message.contains("--mask-threshold 1.5"), "{message}");
    }

    #[test]
    fn samples_include_ground_truth_and_encode_targets() {
        let cfg = RoiHeadsConfig::new().with_batch_size_per_image(8);
        let t = square_target();
        let proposals = vec![
            [31.0, 10.0, 41.0, 20.0],
            [0.0, 0.0, 5.0, 5.0],
            [50.0, 50.0, 60.0, 60.0],
        ];
        let s = cfg.sample_rois(&proposals, &t, &mut rand::rngs::StdRng::seed_from_u64(0));
        assert_eq!(
            s.num_positive(),
            2,
            "the near proposal and the gt box itself"
        );
        assert_eq!(s.labels.len(), 4);
        for (b, t) in s.boxes.iter().zip(&s.regression_targets).take(2) {
            let back = cfg.coder().decode(t, b);
            for (x, y) in back.iter().zip(&[30.0, 10.0, 40.0, 20.0]) {
                assert!((x - y).abs() < 1e-3);
            }
        }
    }

    #[test]
    fn mask_target_of_exact_box_is_all_ones_and_shifted_box_is_half() {
        let cfg = RoiHeadsConfig::new();
        let t = square_target();
        let samples = vec![RoiSamples {
            boxes: vec![[30.0, 10.0, 40.0, 20.0], [35.0, 10.0, 45.0, 20.0]],
            labels: vec![1, 1],
            matched: vec![Some(0), Some(0)],
            regression_targets: vec![[0.0; 4]; 2],
        }];
        let (_, labels, v) = cfg.mask_targets(&samples, &[t], 28);
        assert_eq!(labels, vec![1, 1]);
        // Inside the box the target is 1; the outermost samples straddle the mask's edge
        // (pixel centres are half a pixel in, 1.4 bins here) and read partial values.
        for i in 2..26 {
            for j in 2..26 {
                assert!(
                    (v[i * 28 + j] - 1.0).abs() < 1e-6,
                    "({i}, {j}) = {}",
                    v[i * 28 + j]
                );
            }
        }
        assert!(v[..784].iter().sum::<f32>() / 784.0 > 0.95);
        let mean: f32 = v[784..].iter().sum::<f32>() / 784.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }

    #[test]
    fn mask_rois_per_image_caps_each_image_separately() {
        let t = square_target();
        // Image 0: three positives then a negative; image 1: one positive.
        let boxes = [
            [30.0, 10.0, 40.0, 20.0],
            [31.0, 10.0, 41.0, 20.0],
            [32.0, 10.0, 42.0, 20.0],
            [0.0, 0.0, 5.0, 5.0],
        ];
        let samples = vec![
            RoiSamples {
                boxes: boxes.to_vec(),
                labels: vec![1, 1, 1, 0],
                matched: vec![Some(0), Some(0), Some(0), None],
                regression_targets: vec![[0.0; 4]; 4],
            },
            RoiSamples {
                boxes: vec![boxes[2]],
                labels: vec![1],
                matched: vec![Some(0)],
                regression_targets: vec![[0.0; 4]],
            },
        ];
        let targets = [t.clone(), t];
        let all = RoiHeadsConfig::new().mask_targets(&samples, &targets, 14);
        assert_eq!(all.0, vec![boxes[..3].to_vec(), vec![boxes[2]]]);
        let capped = RoiHeadsConfig::new()
            .with_mask_rois_per_image(Some(2))
            .mask_targets(&samples, &targets, 14);
        // The sampler has shuffled the positives: the first two are a random two.
        assert_eq!(capped.0, vec![boxes[..2].to_vec(), vec![boxes[2]]]);
        assert_eq!(capped.1, vec![1, 1, 1]);
        assert_eq!(capped.2.len(), 3 * 14 * 14);
        assert_eq!(capped.2[..2 * 196], all.2[..2 * 196]);
        assert_eq!(capped.2[2 * 196..], all.2[3 * 196..]);
    }

    #[test]
    fn detections_are_decoded_thresholded_and_suppressed() {
        let cfg = RoiHeadsConfig::new();
        // Two near-identical proposals and one far one; 2 classes (bg, nucleus).
        let proposals = vec![
            [10.0, 10.0, 20.0, 20.0],
            [10.5, 10.0, 20.5, 20.0],
            [40.0, 40.0, 50.0, 50.0],
        ];
        let probs = vec![0.1, 0.9, 0.2, 0.8, 0.99, 0.01];
        let deltas = vec![0.0f32; 3 * 2 * 4];
        let d = cfg.detections(&proposals, &probs, &deltas, 2, (64, 64));
        assert_eq!(
            d.len(),
            1,
            "second suppressed by the first, third below threshold"
        );
        assert_eq!(d[0].bbox, [10.0, 10.0, 20.0, 20.0]);
        assert_eq!(d[0].label, 1);
    }
}
