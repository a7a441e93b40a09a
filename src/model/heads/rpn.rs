//! Region proposal network (Faster R-CNN, Ren et al. 2015, Sec. 3.1) on a feature pyramid
//! (FPN, Sec. 4.1): a shared 3×3 conv, then per anchor an objectness logit and four box
//! deltas at every position of every level.

use burn::{
    config::Config,
    module::Module,
    nn::conv::Conv2d,
    tensor::{activation::relu, activation::sigmoid, Device, Int, Tensor, TensorData},
};
use rand::Rng;

use crate::model::{
    layers::{conv2d, normal_001},
    ops::{
        batched_nms, bce_with_logits, clip, iou_matrix, is_large_enough, smooth_l1_sum,
        AnchorGenerator, AnchorGeneratorConfig, BalancedSampler, BoxCoder, BoxXyxy, Match, Matcher,
    },
    ModelError,
};

/// RPN settings; defaults are torchvision's `MaskRCNN` with the nuclei anchors of Jung et
/// al. (2019).
#[derive(Config, Debug, PartialEq)]
pub struct RpnConfig {
    /// Channels of the pyramid features.
    #[config(default = 256)]
    pub in_channels: usize,
    /// Anchor sizes per level and ratios.
    #[config(default = "AnchorGeneratorConfig::new()")]
    pub anchors: AnchorGeneratorConfig,
    /// Proposals kept per level before NMS, in training.
    #[config(default = 2000)]
    pub pre_nms_top_n_train: usize,
    /// Proposals kept per level before NMS, at inference.
    #[config(default = 1000)]
    pub pre_nms_top_n_test: usize,
    /// Proposals kept per image after NMS, in training.
    #[config(default = 2000)]
    pub post_nms_top_n_train: usize,
    /// Proposals kept per image after NMS, at inference.
    #[config(default = 1000)]
    pub post_nms_top_n_test: usize,
    /// NMS IoU threshold between proposals (of the same level).
    #[config(default = 0.7)]
    pub nms_thresh: f32,
    /// Anchors with IoU ≥ this are positive.
    #[config(default = 0.7)]
    pub fg_iou_thresh: f32,
    /// Anchors with IoU < this are negative.
    #[config(default = 0.3)]
    pub bg_iou_thresh: f32,
    /// Anchors sampled per image for the loss.
    #[config(default = 256)]
    pub batch_size_per_image: usize,
    /// Largest positive share of the sampled anchors.
    #[config(default = 0.5)]
    pub positive_fraction: f32,
    /// Proposals with a lower objectness probability are dropped.
    #[config(default = 0.0)]
    pub score_thresh: f32,
    /// Proposals with a side below this (pixels) are dropped.
    #[config(default = 1e-3)]
    pub min_size: f32,
    /// β of the smooth-L1 box loss.
    #[config(default = "1.0 / 9.0")]
    pub smooth_l1_beta: f32,
}

/// The learnable part of the RPN.
#[derive(Module, Debug)]
pub struct RpnHead {
    /// Shared 3×3 convolution (+ ReLU).
    pub conv: Conv2d,
    /// 1×1 convolution to one objectness logit per anchor.
    pub cls_logits: Conv2d,
    /// 1×1 convolution to four box deltas per anchor.
    pub bbox_pred: Conv2d,
}

/// The RPN's outputs for a batch, flattened over levels, positions and anchors in the
/// order of [`AnchorGenerator::anchors_per_level`].
#[derive(Debug, Clone)]
pub struct RpnOutput {
    /// Objectness logits, `[N, A_total]`.
    pub objectness: Tensor<2>,
    /// Box deltas, `[N, A_total, 4]`.
    pub deltas: Tensor<3>,
    /// Feature-map `(height, width)` of each level.
    pub feature_sizes: Vec<(usize, usize)>,
}

impl RpnHead {
    /// Runs the head on every pyramid level.
    ///
    /// # Shapes
    /// `features[l]: [N, C, H_l, W_l]` → objectness `[N, Σ H_l W_l A]`, deltas
    /// `[N, Σ H_l W_l A, 4]`.
    pub fn forward(&self, features: &[Tensor<4>]) -> RpnOutput {
        let mut objectness = Vec::new();
        let mut deltas = Vec::new();
        let mut feature_sizes = Vec::new();
        for f in features {
            let [n, _, h, w] = f.dims();
            let t = relu(self.conv.forward(f.clone()));
            let logits = self.cls_logits.forward(t.clone()); // [N, A, H, W]
            let a = logits.dims()[1];
            objectness.push(logits.permute([0, 2, 3, 1]).reshape([n, h * w * a]));
            let d = self.bbox_pred.forward(t); // [N, 4A, H, W]
            deltas.push(
                d.reshape([n, a, 4, h, w])
                    .permute([0, 3, 4, 1, 2])
                    .reshape([n, h * w * a, 4]),
            );
            feature_sizes.push((h, w));
        }
        RpnOutput {
            objectness: Tensor::cat(objectness, 1),
            deltas: Tensor::cat(deltas, 1),
            feature_sizes,
        }
    }
}

/// The RPN's non-learnable logic: anchors, proposal selection and the loss.
#[derive(Debug, Clone)]
pub struct Rpn {
    /// Its settings.
    pub config: RpnConfig,
    /// The anchor generator.
    pub anchor_generator: AnchorGenerator,
    coder: BoxCoder,
}

/// RPN losses for a batch.
#[derive(Debug, Clone)]
pub struct RpnLosses {
    /// Binary cross-entropy of the sampled anchors' objectness.
    pub objectness: Tensor<1>,
    /// Smooth-L1 of the positive anchors' deltas, divided by the number of sampled anchors.
    pub box_reg: Tensor<1>,
}

impl RpnConfig {
    /// Builds the head and the logic.
    pub fn init(&self, device: &Device) -> Result<(RpnHead, Rpn), ModelError> {
        let anchor_generator = self.anchors.init()?;
        if !(0.0..=1.0).contains(&self.positive_fraction) || self.bg_iou_thresh > self.fg_iou_thresh
        {
            return Err(ModelError::InvalidConfig(format!(
                "RPN thresholds: positive fraction {} must be in [0, 1] and bg IoU {} ≤ fg IoU {}",
                self.positive_fraction, self.bg_iou_thresh, self.fg_iou_thresh
            )));
        }
        let a = anchor_generator.num_anchors_per_location();
        let c = self.in_channels;
        let head = RpnHead {
            conv: conv2d([c, c], 3, normal_001(), device),
            cls_logits: conv2d([c, a], 1, normal_001(), device),
            bbox_pred: conv2d([c, 4 * a], 1, normal_001(), device),
        };
        Ok((
            head,
            Rpn {
                config: self.clone(),
                anchor_generator,
                coder: BoxCoder::new([1.0, 1.0, 1.0, 1.0]),
            },
        ))
    }
}

impl Rpn {
    /// All anchors of an image of `image_size = (height, width)`, flattened over levels.
    pub fn anchors(
        &self,
        image_size: (usize, usize),
        feature_sizes: &[(usize, usize)],
    ) -> Vec<BoxXyxy> {
        self.anchor_generator
            .anchors_per_level(image_size, feature_sizes)
            .into_iter()
            .flatten()
            .collect()
    }

    /// Proposals of each image (detached from the graph): per level the top-k anchors by
    /// objectness, decoded, clipped to the image, tiny boxes and low scores dropped, NMS
    /// within each level, then the best `post_nms_top_n` over all levels. Returns boxes
    /// with their objectness probability, by decreasing score.
    pub fn proposals(
        &self,
        out: &RpnOutput,
        anchors: &[BoxXyxy],
        image_size: (usize, usize),
        training: bool,
    ) -> Vec<Vec<(BoxXyxy, f32)>> {
        let c = &self.config;
        let (pre, post) = if training {
            (c.pre_nms_top_n_train, c.post_nms_top_n_train)
        } else {
            (c.pre_nms_top_n_test, c.post_nms_top_n_test)
        };
        let objectness = out.objectness.clone().detach().without_autodiff();
        let deltas = out.deltas.clone().detach().without_autodiff();
        let [n, _] = objectness.dims();
        let a = self.anchor_generator.num_anchors_per_location();
        // Per image: (box, score, level) candidates.
        let mut candidates: Vec<Vec<(BoxXyxy, f32, usize)>> = vec![Vec::new(); n];
        let mut offset = 0;
        for (level, &(h, w)) in out.feature_sizes.iter().enumerate() {
            let count = h * w * a;
            let k = pre.min(count);
            if k == 0 {
                continue;
            }
            let level_obj = objectness.clone().slice([0..n, offset..offset + count]);
            let (scores, idx) = level_obj.topk_with_indices(k, 1); // [N, k]
            let level_deltas = deltas.clone().slice([0..n, offset..offset + count, 0..4]);
            let picked = level_deltas.gather(1, idx.clone().reshape([n, k, 1]).expand([n, k, 4]));
            let probs = sigmoid(scores).try_into_vec_as::<f32>().expect("readable");
            let idx = idx.try_into_vec_as::<i64>().expect("readable");
            let picked = picked.try_into_vec_as::<f32>().expect("readable");
            for b in 0..n {
                for j in 0..k {
                    let anchor = &anchors[offset + idx[b * k + j] as usize];
                    let d = &picked[(b * k + j) * 4..(b * k + j) * 4 + 4];
                    let decoded = self.coder.decode(&[d[0], d[1], d[2], d[3]], anchor);
                    let bx = clip(&decoded, image_size.1 as f32, image_size.0 as f32);
                    let s = probs[b * k + j];
                    if is_large_enough(&bx, c.min_size)
                        && s >= c.score_thresh
                        && bx.iter().all(|v| v.is_finite())
                    {
                        candidates[b].push((bx, s, level));
                    }
                }
            }
            offset += count;
        }
        candidates
            .into_iter()
            .map(|cands| {
                let boxes: Vec<BoxXyxy> = cands.iter().map(|c| c.0).collect();
                let scores: Vec<f32> = cands.iter().map(|c| c.1).collect();
                let levels: Vec<usize> = cands.iter().map(|c| c.2).collect();
                let keep = batched_nms(&boxes, &scores, &levels, c.nms_thresh);
                keep.into_iter()
                    .take(post)
                    .map(|i| (boxes[i], scores[i]))
                    .collect()
            })
            .collect()
    }

    /// The RPN loss (Faster R-CNN eq. 1): anchors matched to ground truth (IoU ≥ 0.7
    /// positive, < 0.3 negative, each box's best anchors positive), 256 sampled per image
    /// with at most half positive; objectness BCE averaged over the sampled anchors and
    /// smooth-L1 of positive deltas summed and divided by the number of sampled anchors.
    pub fn loss(
        &self,
        out: &RpnOutput,
        anchors: &[BoxXyxy],
        targets: &[Vec<BoxXyxy>],
        rng: &mut impl Rng,
    ) -> RpnLosses {
        let c = &self.config;
        let [n, total] = out.objectness.dims();
        assert_eq!(targets.len(), n, "one target list per image");
        assert_eq!(anchors.len(), total, "anchors match the head's outputs");
        let matcher = Matcher {
            high: c.fg_iou_thresh,
            low: c.bg_iou_thresh,
            allow_low_quality_matches: true,
        };
        let sampler = BalancedSampler {
            batch_size_per_image: c.batch_size_per_image,
            positive_fraction: c.positive_fraction,
        };
        let mut sampled: Vec<i64> = Vec::new();
        let mut labels: Vec<f32> = Vec::new();
        let mut positives: Vec<i64> = Vec::new();
        let mut box_targets: Vec<f32> = Vec::new();
        for (b, gt) in targets.iter().enumerate() {
            let iou = iou_matrix(gt, anchors);
            let matches = matcher.assign(&iou, gt.len(), total);
            let (pos, neg) = sampler.sample(&matches, rng);
            for &i in &pos {
                let Match::Gt(g) = matches[i] else {
                    unreachable!("positives are matched")
                };
                let global = (b * total + i) as i64;
                sampled.push(global);
                labels.push(1.0);
                positives.push(global);
                box_targets.extend(self.coder.encode(&gt[g], &anchors[i]));
            }
            for &i in &neg {
                sampled.push((b * total + i) as i64);
                labels.push(0.0);
            }
        }
        let device = out.objectness.device();
        let objectness = out.objectness.clone().reshape([n * total]);
        let s = sampled.len();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(sampled, [s]), &device);
        let labels = Tensor::<1>::from_data(TensorData::new(labels, [s]), &device);
        let objectness_loss = bce_with_logits(objectness.select(0, idx), labels);
        let p = positives.len();
        let box_reg = if p == 0 {
            out.deltas.clone().sum() * 0.0
        } else {
            let pidx = Tensor::<1, Int>::from_data(TensorData::new(positives, [p]), &device);
            let pred = out.deltas.clone().reshape([n * total, 4]).select(0, pidx);
            let target = Tensor::<2>::from_data(TensorData::new(box_targets, [p, 4]), &device);
            smooth_l1_sum(pred, target, c.smooth_l1_beta) / s.max(1) as f32
        };
        RpnLosses {
            objectness: objectness_loss,
            box_reg,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn small() -> RpnConfig {
        RpnConfig::new()
            .with_in_channels(8)
            .with_anchors(AnchorGeneratorConfig::new().with_sizes(vec![8.0, 16.0]))
    }

    #[test]
    fn output_shapes_follow_the_anchor_order() {
        let device = Device::flex();
        let (head, rpn) = small().init(&device).unwrap();
        let feats = vec![
            Tensor::<4>::zeros([2, 8, 16, 12], &device),
            Tensor::<4>::zeros([2, 8, 8, 6], &device),
        ];
        let out = head.forward(&feats);
        assert_eq!(out.objectness.dims(), [2, (16 * 12 + 8 * 6) * 3]);
        assert_eq!(out.deltas.dims(), [2, (16 * 12 + 8 * 6) * 3, 4]);
        let anchors = rpn.anchors((64, 48), &out.feature_sizes);
        assert_eq!(anchors.len(), out.objectness.dims()[1]);
    }

    #[test]
    fn proposals_decode_the_best_anchors() {
        // A head whose objectness is +10 at one anchor and −10 elsewhere, deltas 0:
        // the top proposal is that anchor, clipped.
        let device = Device::flex();
        let (_, rpn) = small().with_nms_thresh(0.5).init(&device).unwrap();
        let sizes = vec![(4, 4), (2, 2)];
        let anchors = rpn.anchors((16, 16), &sizes);
        let total = anchors.len();
        let mut obj = vec![-10.0f32; total];
        let best = (4 + 1) * 3 + 1; // level 0, y 1, x 1, ratio 1:1 → [0, 0, 8, 8]
        obj[best] = 10.0;
        let out = RpnOutput {
            objectness: Tensor::from_data(TensorData::new(obj, [1, total]), &device),
            deltas: Tensor::zeros([1, total, 4], &device),
            feature_sizes: sizes,
        };
        let props = rpn.proposals(&out, &anchors, (16, 16), false);
        assert_eq!(props[0][0].0, [0.0, 0.0, 8.0, 8.0]);
        assert!(props[0][0].1 > 0.99);
        // Every proposal lies inside the image, sorted by score.
        assert!(props[0]
            .iter()
            .all(|(b, _)| b[0] >= 0.0 && b[2] <= 16.0 && b[1] >= 0.0 && b[3] <= 16.0));
        assert!(props[0].windows(2).all(|w| w[0].1 >= w[1].1));
    }

    #[test]
    fn loss_is_finite_and_learns() {
        // A few SGD steps on one image lower the RPN loss.
        use burn::optim::{GradientsParams, SgdConfig};
        let device = Device::flex().autodiff();
        let (mut head, rpn) = small().init(&device).unwrap();
        device.seed(0);
        let feats = vec![
            Tensor::<4>::random(
                [1, 8, 16, 16],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            ),
            Tensor::<4>::random(
                [1, 8, 8, 8],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            ),
        ];
        let gt = vec![vec![[10.0, 12.0, 22.0, 21.0], [40.0, 40.0, 52.0, 55.0]]];
        let mut optim = SgdConfig::new().init();
        let mut losses = Vec::new();
        for step in 0..30 {
            let out = head.forward(&feats);
            let anchors = rpn.anchors((64, 64), &out.feature_sizes);
            let mut rng = rand::rngs::StdRng::seed_from_u64(step);
            let l = rpn.loss(&out, &anchors, &gt, &mut rng);
            let total = l.objectness + l.box_reg;
            let v: f32 = total.clone().into_scalar();
            assert!(v.is_finite());
            losses.push(v);
            let grads = GradientsParams::from_grads(total.backward(), &head);
            head = optim.step(0.5, head, grads);
        }
        assert!(losses[29] < 0.5 * losses[0], "{losses:?}");
    }
}
