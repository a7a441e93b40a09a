//! Mask R-CNN (He et al. 2017) with a feature pyramid (Lin et al. 2017), configured for
//! nuclei as in Jung et al. (2019). One file per concept, as in torchvision's
//! `models/detection` and detectron2's `modeling`:
//! - geometry without parameters: [`box_ops`], [`box_coder`], [`anchors`], [`matcher`],
//!   [`sampler`];
//! - [`roi_align`]: multi-scale RoIAlign built on `grid_sample_2d`;
//! - [`rpn`]: the region proposal network; [`loss`]: the loss terms.

pub mod anchors;
pub mod box_coder;
pub mod box_head;
pub mod box_ops;
pub mod checkpoint;
mod layers;
pub mod loss;
pub mod mask_head;
pub mod mask_rcnn;
pub mod matcher;
pub mod paste;
pub mod roi_align;
pub mod roi_heads;
pub mod rpn;
pub mod sampler;
pub mod target;
pub mod train;

pub use anchors::{AnchorGenerator, AnchorGeneratorConfig};
pub use box_coder::BoxCoder;
pub use box_head::{BoxHead, BoxHeadConfig};
pub use checkpoint::{load_model, save_model};
pub use mask_head::{MaskHead, MaskHeadConfig};
pub use mask_rcnn::{MaskRcnn, MaskRcnnConfig, MaskRcnnLosses};
pub use roi_align::{RoiAlign, RoiAlignConfig};
pub use roi_heads::{Detection, RoiHeadsConfig, RoiSamples};
pub use rpn::{Rpn, RpnConfig, RpnHead, RpnOutput};
pub use target::TrainingTarget;
pub use train::{MaskRcnnTrainer, MaskRcnnTrainingConfig, StepReport, TrainError, TrainingImage};

/// Errors from building, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration that cannot build a model.
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
}
