//! Geometry and loss terms without learnable parameters, testable on their own
//! (torchvision's `ops` and `models/detection/_utils.py`, detectron2's `layers` and
//! `modeling/{box_regression, matcher, sampling}`).

mod anchors;
mod box_coder;
mod box_ops;
mod loss;
mod matcher;
mod paste;
mod roi_align;
mod sampler;
mod split;
mod winograd;

pub use anchors::{AnchorGenerator, AnchorGeneratorConfig};
pub use box_coder::{BoxCoder, BBOX_XFORM_CLIP};
pub use box_ops::{
    area, batched_nms, clip, clip_tensor, iou, iou_matrix, iou_matrix_tensor, is_large_enough, nms,
    scale_box, BoxXyxy,
};
pub use loss::{bce_with_logits, cross_entropy, smooth_l1_sum};
pub use matcher::{Match, Matcher};
pub use paste::{maskness, paste_mask};
pub use roi_align::{roi_align_plane, HostPyramid, RoiAlign, RoiAlignConfig, RoiAlignMethod};
pub use sampler::BalancedSampler;
pub use split::{split_touching, DistanceMap, SplitConfig};
pub use winograd::{conv3x3_winograd, winograd_filter, WINOGRAD_TILES};
