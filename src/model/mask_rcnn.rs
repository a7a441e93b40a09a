//! Mask R-CNN (He et al. 2017) with a ResNet-FPN backbone: the assembled network, its
//! training losses and its inference, configured for nuclei as Jung et al. (2019) do.

use burn::{
    config::Config,
    module::Module,
    tensor::{activation::sigmoid, activation::softmax, Device, Tensor, TensorData},
};
use image::RgbImage;
use rand::Rng;
use std::time::{Duration, Instant};

use super::{
    backbone::{Fpn, FpnConfig, NormKind, NormRegion, ResNet, ResNetConfig},
    heads::{
        BoxHead, BoxHeadConfig, DenseHead, DenseHeadConfig, MaskHead, MaskHeadConfig,
        RoiHeadsConfig, RoiSamples, Rpn, RpnConfig, RpnHead, DENSE_STRIDE,
    },
    ops::{
        maskness, paste_mask, scale_box, split_touching, BoxXyxy, DistanceMap, HostPyramid,
        RoiAlign, RoiAlignConfig, SplitConfig,
    },
    target::TrainingTarget,
    ModelError,
};
use crate::instances::{Instance, InstanceSegmenter, Instances};

/// Everything that defines a Mask R-CNN; the defaults are the paper's network with a
/// ResNet-50 backbone (use [`MaskRcnnConfig::paper`] for ResNet-101).
#[derive(Config, Debug)]
pub struct MaskRcnnConfig {
    /// Classes including background (nuclei: 2).
    #[config(default = 2)]
    pub num_classes: usize,
    /// The ResNet body.
    #[config(default = "ResNetConfig::new(50)")]
    pub backbone: ResNetConfig,
    /// Channels of every pyramid level.
    #[config(default = 256)]
    pub fpn_channels: usize,
    /// Region proposal network (its `in_channels` is set from `fpn_channels`).
    #[config(default = "RpnConfig::new()")]
    pub rpn: RpnConfig,
    /// RoIAlign of the box branch (7×7).
    #[config(default = "RoiAlignConfig::new()")]
    pub box_roi_align: RoiAlignConfig,
    /// RoIAlign of the mask branch (14×14).
    #[config(default = "RoiAlignConfig::new().with_output_size([14, 14])")]
    pub mask_roi_align: RoiAlignConfig,
    /// Width of the box head's two hidden layers.
    #[config(default = 1024)]
    pub box_representation_size: usize,
    /// Channels of the mask head's 3×3 convolutions (their number is the length).
    #[config(default = "vec![256, 256, 256, 256]")]
    pub mask_head_layers: Vec<usize>,
    /// Channels of the mask head's transposed convolution.
    #[config(default = 256)]
    pub mask_dim_reduced: usize,
    /// Sampling, losses and post-processing of the second stage.
    #[config(default = "RoiHeadsConfig::new()")]
    pub roi_heads: RoiHeadsConfig,
    /// Per-channel mean subtracted from RGB in `[0, 1]` (ImageNet's, as torchvision).
    #[config(default = "[0.485, 0.456, 0.406]")]
    pub pixel_mean: [f32; 3],
    /// Per-channel standard deviation dividing RGB in `[0, 1]`.
    #[config(default = "[0.229, 0.224, 0.225]")]
    pub pixel_std: [f32; 3],
    /// Images are zero-padded (after normalization) to a multiple of this, so that every
    /// pyramid level has an exact stride.
    #[config(default = 32)]
    pub size_divisibility: usize,
    /// RoIs per chunk through the mask head at inference (bounds memory).
    #[config(default = 256)]
    pub mask_chunk: usize,
    /// At inference, the proposal and detection caps (`rpn.pre_nms_top_n_test` per level,
    /// `rpn.post_nms_top_n_test` and `roi_heads.detections_per_img` per image) hold per
    /// this many padded input pixels: an input `k` times as large (rounded up) gets `k`
    /// times the caps, so a whole 1000×1000 image is not capped like one 500×500 tile.
    /// `None` (files of older versions): per image, as torchvision.
    #[config(default = "Some(512 * 512)")]
    pub test_caps_area: Option<usize>,
    /// The stain normalization the network was trained with (`"none"`, `"macenko"`,
    /// `"reinhard"`, `"dcgmm"`), recorded so that a bundle missing its normalizer file, or
    /// carrying a stale one, is an error on load; `None` in files of older versions.
    pub normalizer: Option<String>,
    /// At inference, group norm takes its statistics over the tissue only of an input whose
    /// glass covers at least this share of it ([`NormRegion`]): trained on crops that are
    /// tissue from edge to edge, the network otherwise sees a slide tile's nuclei through
    /// statistics shifted by its glass. `None` (files of older versions): always over the
    /// whole input. No effect with frozen batch norm.
    #[config(default = "Some(NORM_GLASS_SHARE)")]
    pub norm_glass_share: Option<f32>,
    /// A dense head on P2 regressing nuclei's distance maps (beyond the paper; its
    /// `in_channels` is set from `fpn_channels`); `None`: the paper's network.
    pub dense_head: Option<DenseHeadConfig>,
    /// At inference, every input is resized by this factor, and the nuclei found are mapped
    /// back onto its pixels: the scale at which this network segments its training
    /// magnification best, chosen on validation images. `None` (files of older versions):
    /// 1, as given.
    pub test_scale: Option<f32>,
    /// At inference, split instances covering touching nuclei by the dense head's map
    /// ([`split_touching`]); ignored without a dense head. `None`: the paper's output.
    pub split: Option<SplitConfig>,
    /// At inference, each detection's score is its class probability times its mask's
    /// *maskness*, the mean probability over the pixels its mask keeps ([`maskness`];
    /// SOLOv2, Wang et al. 2020, at inference): a nucleus whose outline the mask head is unsure
    /// of ranks lower when overlaps are resolved and falls under the score threshold sooner.
    /// `None` or `false` (files of older versions): the class probability, as Mask R-CNN.
    pub maskness: Option<bool>,
    /// At inference, each detection's box is enlarged by this factor about its centre
    /// before its mask is predicted and pasted ([`scale_box`]): the mask head, trained on
    /// proposals (boxes at IoU ≥ 0.5 with the nucleus, often larger than it), sees
    /// the whole nucleus where a regressed box cuts it short. The detection keeps its box.
    /// `None` (files of older versions): 1, the detection's box, as Mask R-CNN.
    pub mask_box_scale: Option<f32>,
}

/// Default [`MaskRcnnConfig::norm_glass_share`]: 5 % of an input's cells. The 30 Kumar
/// images have at most 0.8 % (white lumina), CPM-15's none; a slide tile at the tissue's
/// edge has tens of percent.
pub const NORM_GLASS_SHARE: f32 = 0.05;

impl MaskRcnnConfig {
    /// The paper's network: ResNet-101-FPN with frozen batch norm (for ImageNet weights).
    pub fn paper() -> Self {
        MaskRcnnConfig::new().with_backbone(ResNetConfig::new(101))
    }

    /// A network small enough to train on a CPU: ResNet-18 at half width with group norm,
    /// 128-channel pyramid and heads, 256 sampled RoIs per image. 7.7 M parameters; about
    /// 2.2 s per training step of two 256×256 crops on 2 CPU cores (Flex backend).
    pub fn cpu_small() -> Self {
        MaskRcnnConfig::new()
            .with_roi_heads(RoiHeadsConfig::new().with_batch_size_per_image(256))
            .with_backbone(
                ResNetConfig::new(18)
                    .with_width(32)
                    .with_norm(NormKind::GroupNorm { groups: 8 }),
            )
            .with_fpn_channels(128)
            .with_box_representation_size(512)
            .with_mask_head_layers(vec![128, 128, 128, 128])
            .with_mask_dim_reduced(128)
    }

    /// A tiny network for tests.
    pub fn tiny() -> Self {
        MaskRcnnConfig::new()
            .with_backbone(
                ResNetConfig::new(18)
                    .with_width(8)
                    .with_norm(NormKind::GroupNorm { groups: 4 }),
            )
            .with_fpn_channels(32)
            .with_box_representation_size(128)
            .with_mask_head_layers(vec![32, 32])
            .with_mask_dim_reduced(32)
    }

    /// A preset by name: `tiny`, `cpu-small`, `r50` or `paper` (ResNet-101).
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        match name {
            "tiny" => Ok(Self::tiny()),
            "cpu-small" | "cpu_small" => Ok(Self::cpu_small()),
            "r50" | "resnet50" => Ok(Self::new()),
            "paper" | "r101" | "resnet101" => Ok(Self::paper()),
            other => Err(ModelError::InvalidConfig(format!(
                "unknown preset `{other}`: expected tiny, cpu-small, r50 or paper"
            ))),
        }
    }

    /// The network to train without pretrained backbone weights: a frozen batch norm
    /// (fixed statistics, made for ImageNet weights) would stay at the identity and leave
    /// the backbone unnormalized, so it becomes trainable group norm with 32 groups (Wu &
    /// He 2018; He, Girshick & Dollár 2019, *Rethinking ImageNet pre-training*, train
    /// detectors from scratch this way). Other norms are kept. Returns whether it changed.
    pub fn from_scratch(mut self) -> (Self, bool) {
        let frozen = self.backbone.norm == crate::model::backbone::NormKind::FrozenBatchNorm;
        if frozen {
            self.backbone.norm = crate::model::backbone::NormKind::GroupNorm { groups: 32 };
        }
        (self, frozen)
    }

    /// The multiply-accumulates of inference with this network (convolutions and linear
    /// layers; normalization, activations, RoIAlign and NMS left out), for putting a
    /// measured time beside the machine's arithmetic peak.
    pub fn inference_macs(&self) -> InferenceMacs {
        let c = self.fpn_channels as f64;
        let level = |l: i32| 4f64.powi(-l); // pixels of level l per input pixel
        let c_in = self.backbone.out_channels();
        let fpn: f64 = (2..=5)
            .map(|l| (c_in[l as usize - 2] as f64 * c + 9.0 * c * c) * level(l))
            .sum();
        let a = self.rpn.anchors.anchors_per_location() as f64;
        let rpn: f64 = (2..=6)
            .map(|l| (9.0 * c * c + 5.0 * a * c) * level(l))
            .sum();
        let [ph, pw] = self.box_roi_align.output_size;
        let r = self.box_representation_size as f64;
        let classes = self.num_classes as f64;
        let box_head = c * (ph * pw) as f64 * r + r * r + 5.0 * r * classes;
        let [mh, mw] = self.mask_roi_align.output_size;
        let pooled = (mh * mw) as f64;
        let mut mask_head = 0.0;
        let mut ch = c;
        for &out in &self.mask_head_layers {
            mask_head += pooled * 9.0 * ch * out as f64;
            ch = out as f64;
        }
        let d = self.mask_dim_reduced as f64;
        mask_head += pooled * ch * d * 4.0 + 4.0 * pooled * d * classes;
        InferenceMacs {
            backbone_per_pixel: self.backbone.macs_per_pixel(),
            fpn_per_pixel: fpn,
            rpn_per_pixel: rpn,
            box_head_per_roi: box_head,
            mask_head_per_roi: mask_head,
        }
    }

    /// This network with a dense head of the default sizes (kept if it has one already).
    pub fn with_dense(mut self) -> Self {
        self.dense_head.get_or_insert_with(DenseHeadConfig::new);
        self
    }

    /// Builds the network, checking the configuration.
    pub fn init(&self, device: &Device) -> Result<MaskRcnn, ModelError> {
        if let Some(problem) = self
            .dense_head
            .as_ref()
            .and_then(DenseHeadConfig::problem)
            .or_else(|| self.split.as_ref().and_then(SplitConfig::problem))
            .or_else(|| self.roi_heads.problem())
            .or_else(|| {
                self.test_scale
                    .and_then(|s| crate::data::resize_problem("test_scale", s))
            })
            .or_else(|| {
                self.mask_box_scale
                    .and_then(|s| mask_box_scale_problem("mask_box_scale", s))
            })
        {
            return Err(ModelError::InvalidConfig(problem));
        }
        if self.num_classes < 2 {
            return Err(ModelError::InvalidConfig(format!(
                "num_classes = {} must count the background and at least one class",
                self.num_classes
            )));
        }
        if self.test_caps_area == Some(0) {
            return Err(ModelError::InvalidConfig(
                "test_caps_area must be a positive number of pixels (or absent)".into(),
            ));
        }
        if !(1..=1024).contains(&self.size_divisibility)
            || self.pixel_std.iter().any(|&s| !(s > 0.0 && s.is_finite()))
            || self.pixel_mean.iter().any(|m| !m.is_finite())
        {
            return Err(ModelError::InvalidConfig(
                "size_divisibility must lie in 1..=1024, pixel_std be positive and finite, \
                 pixel_mean finite"
                    .into(),
            ));
        }
        let backbone = self.backbone.init(device)?;
        let fpn = FpnConfig::new(backbone.out_channels())
            .with_out_channels(self.fpn_channels)
            .try_init(device)?;
        let rpn_config = self.rpn.clone().with_in_channels(self.fpn_channels);
        let (rpn_head, rpn) = rpn_config.init(device)?;
        if rpn.anchor_generator.num_levels() != 5 {
            return Err(ModelError::InvalidConfig(format!(
                "{} anchor sizes given; the pyramid has 5 levels (P2–P6)",
                rpn.anchor_generator.num_levels()
            )));
        }
        let box_roi_align = self.box_roi_align.init()?;
        let mask_roi_align = self.mask_roi_align.init()?;
        let [bh, bw] = self.box_roi_align.output_size;
        if bh != bw {
            return Err(ModelError::InvalidConfig(format!(
                "box RoIAlign output {bh}×{bw} must be square"
            )));
        }
        let box_head = BoxHeadConfig::new()
            .with_in_channels(self.fpn_channels)
            .with_pooled_size(bh)
            .with_representation_size(self.box_representation_size)
            .with_num_classes(self.num_classes)
            .init(device);
        let mask_head = MaskHeadConfig::new()
            .with_in_channels(self.fpn_channels)
            .with_layers(self.mask_head_layers.clone())
            .with_dim_reduced(self.mask_dim_reduced)
            .with_num_classes(self.num_classes)
            .init(device);
        let dense_head = self
            .dense_head
            .as_ref()
            .map(|d| d.clone().with_in_channels(self.fpn_channels).init(device));
        Ok(MaskRcnn {
            dense_head,
            backbone,
            fpn,
            rpn_head,
            box_head,
            mask_head,
            rpn,
            box_roi_align,
            mask_roi_align,
            config: self.clone(),
        })
    }
}

/// Multiply-accumulates of Mask R-CNN inference ([`MaskRcnnConfig::inference_macs`]): the
/// dense part per input pixel (padding included), the heads per region. A FLOP is two of
/// them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InferenceMacs {
    /// ResNet body, per input pixel.
    pub backbone_per_pixel: f64,
    /// FPN lateral and output convolutions, per input pixel.
    pub fpn_per_pixel: f64,
    /// RPN head on P2–P6, per input pixel.
    pub rpn_per_pixel: f64,
    /// Box head (two fully connected layers and the predictor), per proposal.
    pub box_head_per_roi: f64,
    /// Mask head (convolutions, transposed convolution, logits), per detection.
    pub mask_head_per_roi: f64,
}

impl InferenceMacs {
    /// The dense part (backbone, FPN, RPN head) per input pixel.
    pub fn dense_per_pixel(&self) -> f64 {
        self.backbone_per_pixel + self.fpn_per_pixel + self.rpn_per_pixel
    }

    /// All of it for an input of `pixels` pixels with `proposals` RoIs through the box head
    /// and `detections` through the mask head.
    pub fn total(&self, pixels: f64, proposals: usize, detections: usize) -> f64 {
        self.dense_per_pixel() * pixels
            + self.box_head_per_roi * proposals as f64
            + self.mask_head_per_roi * detections as f64
    }
}

/// Mask R-CNN: ResNet body → FPN (P2–P6) → RPN → RoIAlign → box head and mask head.
#[derive(Module, Debug)]
pub struct MaskRcnn {
    /// ResNet body (C2–C5).
    pub backbone: ResNet,
    /// Feature pyramid (P2–P6).
    pub fpn: Fpn,
    /// Region proposal head.
    pub rpn_head: RpnHead,
    /// Box branch.
    pub box_head: BoxHead,
    /// Mask branch.
    pub mask_head: MaskHead,
    /// Distance maps for splitting touching nuclei ([`MaskRcnnConfig::dense_head`]).
    pub dense_head: Option<DenseHead>,
    /// Anchors, proposal selection and the RPN loss.
    #[module(skip)]
    pub rpn: Rpn,
    /// RoIAlign for the box branch.
    #[module(skip)]
    pub box_roi_align: RoiAlign,
    /// RoIAlign for the mask branch.
    #[module(skip)]
    pub mask_roi_align: RoiAlign,
    /// The configuration it was built from.
    #[module(skip)]
    pub config: MaskRcnnConfig,
}

/// The five loss terms of a training step (Mask R-CNN, Sec. 3: `L = L_cls + L_box +
/// L_mask`, plus the RPN's two).
#[derive(Debug, Clone)]
pub struct MaskRcnnLosses {
    /// RPN objectness BCE.
    pub rpn_objectness: Tensor<1>,
    /// RPN box smooth-L1.
    pub rpn_box_reg: Tensor<1>,
    /// Box-head cross-entropy.
    pub classifier: Tensor<1>,
    /// Box-head smooth-L1.
    pub box_reg: Tensor<1>,
    /// Mask BCE.
    pub mask: Tensor<1>,
    /// Distance-map BCE of the dense head, when the network has one.
    pub dense: Option<Tensor<1>>,
}

impl MaskRcnnLosses {
    /// The sum of the terms (what is minimized).
    pub fn total(&self) -> Tensor<1> {
        let sum = self.rpn_objectness.clone()
            + self.rpn_box_reg.clone()
            + self.classifier.clone()
            + self.box_reg.clone()
            + self.mask.clone();
        match &self.dense {
            Some(d) => sum + d.clone(),
            None => sum,
        }
    }

    /// The terms' values, named as torchvision names them (`loss_dense` last, when present).
    pub fn values(&self) -> Vec<(&'static str, f32)> {
        let v = |t: &Tensor<1>| t.clone().into_scalar::<f32>();
        let mut values = vec![
            ("loss_objectness", v(&self.rpn_objectness)),
            ("loss_rpn_box_reg", v(&self.rpn_box_reg)),
            ("loss_classifier", v(&self.classifier)),
            ("loss_box_reg", v(&self.box_reg)),
            ("loss_mask", v(&self.mask)),
        ];
        if let Some(d) = &self.dense {
            values.push(("loss_dense", v(d)));
        }
        values
    }
}

impl MaskRcnn {
    /// The device its parameters live on.
    pub fn device(&self) -> Device {
        self.devices().into_iter().next().unwrap_or_default()
    }

    /// Normalizes images into one zero-padded batch on `device`; returns it with the padded
    /// `(height, width)`.
    ///
    /// # Shapes
    /// → `[N, 3, H_pad, W_pad]`, `H_pad`, `W_pad` the largest image size rounded up to a
    /// multiple of `size_divisibility`.
    pub fn preprocess(&self, images: &[&RgbImage], device: &Device) -> (Tensor<4>, (usize, usize)) {
        let d = self.config.size_divisibility;
        let h = images
            .iter()
            .map(|i| i.height() as usize)
            .max()
            .unwrap_or(0);
        let w = images.iter().map(|i| i.width() as usize).max().unwrap_or(0);
        let (hp, wp) = (h.div_ceil(d).max(1) * d, w.div_ceil(d).max(1) * d);
        let mut data = vec![0.0f32; images.len() * 3 * hp * wp];
        let (mean, std) = (self.config.pixel_mean, self.config.pixel_std);
        for (b, img) in images.iter().enumerate() {
            for (x, y, p) in img.enumerate_pixels() {
                for c in 0..3 {
                    data[((b * 3 + c) * hp + y as usize) * wp + x as usize] =
                        (p[c] as f32 / 255.0 - mean[c]) / std[c];
                }
            }
        }
        (
            Tensor::from_data(TensorData::new(data, [images.len(), 3, hp, wp]), device),
            (hp, wp),
        )
    }

    /// The pyramid P2–P6 of a batch.
    ///
    /// # Shapes
    /// `x: [N, 3, H, W]` → `[N, C, H/2^l, W/2^l]` for `l = 2..=6`.
    pub fn features(&self, x: Tensor<4>) -> [Tensor<4>; 5] {
        self.fpn.forward(self.backbone.forward(x))
    }

    /// The training losses of a batch (the model must be on an autodiff device for them to
    /// be differentiated). `targets[b]` are image `b`'s nuclei; `rng` drives the samplers.
    ///
    /// # Shapes
    /// `images: [N, 3, H, W]` (already normalized, e.g. by [`preprocess`](Self::preprocess)).
    pub fn forward_train(
        &self,
        images: Tensor<4>,
        targets: &[TrainingTarget],
        rng: &mut impl Rng,
    ) -> MaskRcnnLosses {
        let [n, _, h, w] = images.dims();
        assert_eq!(targets.len(), n, "one target per image");
        let p = self.features(images);
        let rpn_out = self.rpn_head.forward(&p);
        let anchors = self.rpn.anchors((h, w), &rpn_out.feature_sizes);
        let gt_boxes: Vec<Vec<BoxXyxy>> = targets.iter().map(|t| t.boxes.clone()).collect();
        let rpn_losses = self.rpn.loss(&rpn_out, &anchors, &gt_boxes, rng);
        let proposals = self.rpn.proposals(&rpn_out, &anchors, (h, w), true);
        let samples: Vec<RoiSamples> = proposals
            .iter()
            .zip(targets)
            .map(|(props, t)| {
                let boxes: Vec<BoxXyxy> = props.iter().map(|p| p.0).collect();
                self.config.roi_heads.sample_rois(&boxes, t, rng)
            })
            .collect();
        let levels = &p[..4];
        let rois: Vec<Vec<BoxXyxy>> = samples.iter().map(|s| s.boxes.clone()).collect();
        let (logits, deltas) = self
            .box_head
            .forward(self.box_roi_align.forward(levels, &rois));
        let (classifier, box_reg) = self.config.roi_heads.box_loss(logits, deltas, &samples);
        let m = 2 * self.config.mask_roi_align.output_size[0];
        let (pos_boxes, labels, mask_targets) =
            self.config.roi_heads.mask_targets(&samples, targets, m);
        let mask = if labels.is_empty() {
            // No foreground RoI in the batch: a zero that keeps the graph connected.
            p[0].clone().sum() * 0.0
        } else {
            let mask_logits = self
                .mask_head
                .forward(self.mask_roi_align.forward(levels, &pos_boxes));
            self.config
                .roi_heads
                .mask_loss(mask_logits, &labels, mask_targets)
        };
        let dense = self
            .dense_head
            .as_ref()
            .map(|head| self.dense_loss_on(head, p[0].clone(), targets, (h, w)));
        MaskRcnnLosses {
            rpn_objectness: rpn_losses.objectness,
            rpn_box_reg: rpn_losses.box_reg,
            classifier,
            box_reg,
            mask,
            dense,
        }
    }

    /// The dense head's loss alone (training the head on a trained network whose other
    /// parts are frozen); `None` without a dense head.
    ///
    /// # Shapes
    /// `images: [N, 3, H, W]` (already normalized).
    pub fn forward_train_dense(
        &self,
        images: Tensor<4>,
        targets: &[TrainingTarget],
    ) -> Option<Tensor<1>> {
        let head = self.dense_head.as_ref()?;
        let [n, _, h, w] = images.dims();
        assert_eq!(targets.len(), n, "one target per image");
        let p2 = self.fpn.forward(self.backbone.forward(images))[0].clone();
        Some(self.dense_loss_on(head, p2, targets, (h, w)))
    }

    fn dense_loss_on(
        &self,
        head: &DenseHead,
        p2: Tensor<4>,
        targets: &[TrainingTarget],
        (h, w): (usize, usize),
    ) -> Tensor<1> {
        let logits = head.forward(p2);
        let [n, _, gh, gw] = logits.dims();
        let mut data = Vec::with_capacity(n * gh * gw);
        for t in targets {
            data.extend(t.distance_map(w, h, DENSE_STRIDE));
        }
        let targets = Tensor::from_data(TensorData::new(data, [n, 1, gh, gw]), &logits.device());
        DenseHead::loss(logits, targets)
    }

    /// The factor of the inference caps for an input of `pixels` padded pixels
    /// ([`MaskRcnnConfig::test_caps_area`]).
    pub fn test_caps_scale(&self, pixels: usize) -> usize {
        self.config
            .test_caps_area
            .map_or(1, |a| pixels.div_ceil(a).max(1))
    }

    /// Detects nuclei in images (any sizes; they are batched together, padded to the
    /// largest). Run it on a model from [`Module::valid`] (no autodiff) for speed.
    pub fn predict(&self, images: &[RgbImage]) -> Vec<Instances> {
        self.predict_above(images, 0.0)
    }

    /// [`predict`](Self::predict) keeping only detections scored at least `min_score`: the
    /// mask branch, most of the work on dense tissue, runs only on those (as detectron2's
    /// `SCORE_THRESH_TEST`). Detections are independent after the box branch's NMS, so the
    /// result is exactly `predict`'s with the lower scores removed.
    pub fn predict_above(&self, images: &[RgbImage], min_score: f32) -> Vec<Instances> {
        self.predict_timed(images, min_score, None)
    }

    /// [`predict_above`](Self::predict_above), reporting the time of each
    /// [`InferenceStage`] to `clock` (the device is synchronized at every stage boundary,
    /// so the times are right on asynchronous backends too). The mask stages are reported
    /// once per chunk of [`MaskRcnnConfig::mask_chunk`] detections: sum them. With `None`
    /// it is `predict_above`, with no synchronization. With a
    /// [`MaskRcnnConfig::test_scale`], each image is resized first (untimed) and its nuclei
    /// mapped back onto its pixels.
    pub fn predict_timed(
        &self,
        images: &[RgbImage],
        min_score: f32,
        clock: Option<&mut dyn FnMut(StageTime)>,
    ) -> Vec<Instances> {
        match self.config.test_scale.filter(|&s| s != 1.0) {
            None => self.predict_as_given(images, min_score, clock),
            Some(scale) => {
                let resized: Vec<RgbImage> = images
                    .iter()
                    .map(|i| crate::data::resize_by(i, scale))
                    .collect();
                self.predict_as_given(&resized, min_score, clock)
                    .into_iter()
                    .zip(images)
                    .map(|(found, image)| found.resampled(image.width(), image.height()))
                    .collect()
            }
        }
    }

    /// [`predict_timed`](Self::predict_timed) on the images as they are (no test scale).
    fn predict_as_given(
        &self,
        images: &[RgbImage],
        min_score: f32,
        mut clock: Option<&mut dyn FnMut(StageTime)>,
    ) -> Vec<Instances> {
        if images.is_empty() {
            return Vec::new();
        }
        let device = self.device();
        let mut last = Instant::now();
        let mut lap = |stage: InferenceStage, count: usize| {
            if let Some(clock) = clock.as_mut() {
                let _ = device.sync();
                let now = Instant::now();
                clock(StageTime {
                    stage,
                    time: now - last,
                    count,
                });
                last = now;
            }
        };
        let refs: Vec<&RgbImage> = images.iter().collect();
        let (x, (hp, wp)) = self.preprocess(&refs, &device);
        let pixels = images.len() * hp * wp;
        lap(InferenceStage::Preprocess, pixels);
        let region = self
            .config
            .norm_glass_share
            .and_then(|share| NormRegion::excluding_glass(&refs, (hp, wp), share, &device));
        let c = self.backbone.forward_in(x, region.as_ref());
        lap(InferenceStage::Backbone, pixels);
        let p = self.fpn.forward(c);
        lap(InferenceStage::Fpn, pixels);
        let maps: Option<Vec<DistanceMap>> = match (&self.dense_head, &self.config.split) {
            (Some(head), Some(_)) => {
                let values = sigmoid(head.forward(p[0].clone()))
                    .try_into_vec_as::<f32>()
                    .expect("readable");
                let (gh, gw) = (hp / DENSE_STRIDE, wp / DENSE_STRIDE);
                let maps = values
                    .chunks(gh * gw)
                    .map(|v| DistanceMap {
                        width: gw,
                        height: gh,
                        stride: DENSE_STRIDE,
                        values: v.to_vec(),
                    })
                    .collect();
                lap(InferenceStage::DenseHead, pixels);
                Some(maps)
            }
            _ => None,
        };
        let caps = self.test_caps_scale(hp * wp);
        let mut rpn = self.rpn.clone();
        rpn.config.pre_nms_top_n_test *= caps;
        rpn.config.post_nms_top_n_test *= caps;
        let mut roi_heads = self.config.roi_heads.clone();
        roi_heads.detections_per_img *= caps;
        let rpn_out = self.rpn_head.forward(&p);
        let anchors = rpn.anchors((hp, wp), &rpn_out.feature_sizes);
        let proposals = rpn.proposals(&rpn_out, &anchors, (hp, wp), false);
        lap(InferenceStage::Rpn, pixels);
        let levels = &p[..4];
        let rois: Vec<Vec<BoxXyxy>> = proposals
            .iter()
            .map(|ps| ps.iter().map(|p| p.0).collect())
            .collect();
        // Inference needs no gradient: RoIAlign runs on the host, on channels-last copies.
        let pyramid = HostPyramid::read(levels);
        let pooled = self.box_roi_align.forward_host(&pyramid, &rois);
        let proposal_count = rois.iter().map(Vec::len).sum();
        lap(InferenceStage::BoxRoiAlign, proposal_count);
        let (logits, deltas) = self.box_head.forward(pooled);
        let probs = softmax(logits, 1)
            .try_into_vec_as::<f32>()
            .expect("readable");
        let deltas = deltas.try_into_vec_as::<f32>().expect("readable");
        let c = self.config.num_classes;
        let mut offset = 0;
        let mut detections = Vec::new();
        for (b, img_rois) in rois.iter().enumerate() {
            let k = img_rois.len();
            let size = (images[b].width(), images[b].height());
            let mut found = roi_heads.detections(
                img_rois,
                &probs[offset * c..(offset + k) * c],
                &deltas[offset * c * 4..(offset + k) * c * 4],
                c,
                size,
            );
            found.retain(|d| d.score >= min_score);
            detections.push(found);
            offset += k;
        }
        lap(InferenceStage::BoxBranch, offset);
        // Mask branch on the detections, in chunks.
        let m = 2 * self.config.mask_roi_align.output_size[0];
        let rescore = self.config.maskness == Some(true);
        let grow = self.config.mask_box_scale.unwrap_or(1.0);
        let mut out = Vec::new();
        for (b, dets) in detections.iter().enumerate() {
            let size = (images[b].width(), images[b].height());
            let mut inst = Instances::new(size.0, size.1);
            for chunk in dets.chunks(self.config.mask_chunk.max(1)) {
                let mut per_image = vec![Vec::new(); images.len()];
                per_image[b] = chunk.iter().map(|d| scale_box(&d.bbox, grow)).collect();
                let pooled = self.mask_roi_align.forward_host(&pyramid, &per_image);
                lap(InferenceStage::MaskRoiAlign, chunk.len());
                let logits = self.mask_head.forward_batched(pooled);
                let probs = sigmoid(logits).try_into_vec_as::<f32>().expect("readable");
                lap(InferenceStage::MaskHead, chunk.len());
                for (j, d) in chunk.iter().enumerate() {
                    let start = (j * c + d.label as usize) * m * m;
                    let soft = &probs[start..start + m * m];
                    let mask = paste_mask(soft, m, &per_image[b][j], size, roi_heads.mask_thresh);
                    let score = if rescore {
                        d.score * maskness(soft, roi_heads.mask_thresh)
                    } else {
                        d.score
                    };
                    if mask.area() > 0 && score >= min_score {
                        inst.items.push(Instance {
                            mask,
                            bbox: d.bbox,
                            score,
                            class_id: d.label,
                        });
                    }
                }
                lap(InferenceStage::Paste, chunk.len());
            }
            if let (Some(maps), Some(split)) = (&maps, &self.config.split) {
                inst.items = inst
                    .items
                    .iter()
                    .flat_map(|i| split_touching(i, &maps[b], split))
                    .collect();
                lap(InferenceStage::Split, inst.items.len());
            }
            out.push(inst);
        }
        out
    }
}

/// Why `factor` cannot be a [`MaskRcnnConfig::mask_box_scale`] (`name` in the message), if
/// it cannot: it must lie in [1, 2].
pub fn mask_box_scale_problem(name: &str, factor: f32) -> Option<String> {
    (!(1.0..=2.0).contains(&factor))
        .then(|| format!("{name} {factor} must lie in [1, 2] (boxes enlarged for the mask)"))
}

/// One stage of [`MaskRcnn::predict_timed`]: how long it took and on how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageTime {
    /// Which stage.
    pub stage: InferenceStage,
    /// Its wall time (after synchronizing the device).
    pub time: Duration,
    /// What it worked on: padded input pixels of the batch (preprocess, backbone, FPN,
    /// RPN), proposals (box stages) or detections (mask stages, per chunk).
    pub count: usize,
}

/// The stages of Mask R-CNN inference that [`MaskRcnn::predict_timed`] times, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InferenceStage {
    /// Normalization and padding of the batch into one tensor.
    Preprocess,
    /// ResNet C2–C5.
    Backbone,
    /// FPN P2–P6.
    Fpn,
    /// The dense head's distance maps (only with a dense head and splitting on).
    DenseHead,
    /// RPN head, anchors, proposal selection (top-k per level, NMS).
    Rpn,
    /// RoIAlign 7×7 of the proposals.
    BoxRoiAlign,
    /// Box head, decoding, per-class NMS.
    BoxBranch,
    /// RoIAlign 14×14 of the detections.
    MaskRoiAlign,
    /// The mask head's convolutions and the sigmoid.
    MaskHead,
    /// Mask pasting into image coordinates (Mask R-CNN's `paste_masks_in_image`).
    Paste,
    /// Splitting instances by the distance maps (only with a dense head and splitting on).
    Split,
}

impl InferenceStage {
    /// All stages, in order.
    pub const ALL: [InferenceStage; 11] = [
        InferenceStage::Preprocess,
        InferenceStage::Backbone,
        InferenceStage::Fpn,
        InferenceStage::DenseHead,
        InferenceStage::Rpn,
        InferenceStage::BoxRoiAlign,
        InferenceStage::BoxBranch,
        InferenceStage::MaskRoiAlign,
        InferenceStage::MaskHead,
        InferenceStage::Paste,
        InferenceStage::Split,
    ];

    /// A short name (`"backbone"`, `"mask head"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            InferenceStage::Preprocess => "preprocess",
            InferenceStage::Backbone => "backbone",
            InferenceStage::Fpn => "FPN",
            InferenceStage::Rpn => "RPN + proposals",
            InferenceStage::BoxRoiAlign => "box RoIAlign",
            InferenceStage::BoxBranch => "box head + NMS",
            InferenceStage::MaskRoiAlign => "mask RoIAlign",
            InferenceStage::MaskHead => "mask head",
            InferenceStage::Paste => "mask pasting",
            InferenceStage::DenseHead => "dense head",
            InferenceStage::Split => "split",
        }
    }
}

impl InstanceSegmenter for MaskRcnn {
    fn segment_instances(&self, image: &RgbImage) -> crate::Result<Instances> {
        Ok(self
            .predict(std::slice::from_ref(image))
            .pop()
            .expect("one result per image"))
    }

    fn segment_batch(&self, images: &[RgbImage]) -> crate::Result<Vec<Instances>> {
        Ok(self.predict(images))
    }

    fn segment_batch_above(
        &self,
        images: &[RgbImage],
        min_score: f32,
    ) -> crate::Result<Vec<Instances>> {
        Ok(self.predict_above(images, min_score))
    }
}
