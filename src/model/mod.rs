//! Mask R-CNN (He et al. 2017) with a feature pyramid (Lin et al. 2017), configured for
//! nuclei as in Jung et al. (2019). Grouped by role, as torchvision's `models/detection`
//! and detectron2's `modeling` (with its `layers`):
//!
//! | module | role | key types |
//! | --- | --- | --- |
//! | [`ops`] | geometry and loss terms without parameters: box ops and NMS, the box coder, anchors, the IoU matcher, the balanced sampler, multi-scale RoIAlign, mask pasting | [`ops::BoxXyxy`], [`ops::AnchorGenerator`], [`ops::Matcher`], [`ops::RoiAlign`] |
//! | [`backbone`] | the ResNet body, its normalization layers and the feature pyramid | [`backbone::ResNet`], [`backbone::Fpn`], [`backbone::NormKind`] |
//! | [`heads`] | the region proposal network and the second stage (RoI sampling, box and mask heads, detections) | [`heads::Rpn`], [`heads::RoiHeadsConfig`], [`heads::BoxHead`], [`heads::MaskHead`] |
//! | [`io`] | checkpoints (`.bpk`, f16 safetensors) and torchvision / ImageNet weights | [`io::load_any`], [`io::load_torchvision_maskrcnn`] |
//!
//! [`MaskRcnn`] assembles them; [`TrainingTarget`] is the truth a training step reads. The
//! trainer is apart from the model, in [`crate::train`].
//!
//! Module fields are named after torchvision's `state_dict` keys (`conv1`, `bn1`,
//! `layer1.0.downsample.0`, `inner_blocks.0`, `fc6`, `mask_fcn_logits`, ...) so that
//! checkpoints load with few key remaps; see [`io`] for the exact Burn parameter paths.

pub mod backbone;
mod error;
pub mod heads;
pub mod io;
mod layers;
mod mask_rcnn;
pub mod ops;
mod target;

pub use error::{ModelError, TensorShapeMismatch};
pub use mask_rcnn::{
    mask_box_scale_problem, InferenceMacs, InferenceStage, MaskRcnn, MaskRcnnConfig,
    MaskRcnnLosses, StageTime,
};
pub use target::TrainingTarget;
