//! Mask R-CNN (He et al. 2017) with a feature pyramid (Lin et al. 2017), configured for
//! nuclei as in Jung et al. (2019). One file per concept, as in torchvision's
//! `models/detection` and detectron2's `modeling`:
//! - the backbone: a ResNet body ([`resnet`]) with its normalization layers ([`norm`]) and
//!   the feature pyramid ([`fpn`]);
//! - geometry without parameters: [`box_ops`], [`box_coder`], [`anchors`], [`matcher`],
//!   [`sampler`];
//! - [`roi_align`]: multi-scale RoIAlign built on `grid_sample_2d`;
//! - the heads: [`rpn`], [`box_head`], [`mask_head`], and the second stage's sampling,
//!   losses and post-processing in [`roi_heads`] ([`loss`] holds the loss terms, [`paste`]
//!   the mask pasting);
//! - [`mask_rcnn`]: the assembled network; [`train`]: its trainer; [`checkpoint`]: saving and
//!   loading; [`weights`]: torchvision-style pretrained weights.
//!
//! Module fields are named after torchvision's `state_dict` keys (`conv1`, `bn1`,
//! `layer1.0.downsample.0`, `inner_blocks.0`, `fc6`, `mask_fcn_logits`, ...) so that
//! checkpoints load with few key remaps; see [`weights`] for the exact Burn parameter paths.

pub mod anchors;
pub mod box_coder;
pub mod box_head;
pub mod box_ops;
pub mod checkpoint;
pub mod fpn;
mod layers;
pub mod loss;
pub mod mask_head;
pub mod mask_rcnn;
pub mod matcher;
pub mod norm;
pub mod paste;
pub mod resnet;
pub mod roi_align;
pub mod roi_heads;
pub mod rpn;
pub mod sampler;
pub mod target;
pub mod train;
pub mod weights;

pub use anchors::{AnchorGenerator, AnchorGeneratorConfig};
pub use box_coder::BoxCoder;
pub use box_head::{BoxHead, BoxHeadConfig};
pub use checkpoint::{load_any, load_model, load_model_safetensors, save_model, save_model_f16};
pub use fpn::{Fpn, FpnConfig};
pub use mask_head::{MaskHead, MaskHeadConfig};
pub use mask_rcnn::{MaskRcnn, MaskRcnnConfig, MaskRcnnLosses};
pub use norm::NormKind;
pub use resnet::{ResNet, ResNetConfig};
pub use roi_align::{RoiAlign, RoiAlignConfig};
pub use roi_heads::{Detection, RoiHeadsConfig, RoiSamples};
pub use rpn::{Rpn, RpnConfig, RpnHead, RpnOutput};
pub use target::TrainingTarget;
pub use train::{MaskRcnnTrainer, MaskRcnnTrainingConfig, StepReport, TrainError, TrainingImage};

use std::path::PathBuf;

/// Errors from building the network or loading its weights. Each variant names the
/// offending setting, file, key or shape.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration value the network cannot be built with.
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
    /// The weight file could not be opened or parsed as safetensors.
    #[error("cannot read weight file {}: {reason}", path.display())]
    WeightFile {
        /// The file.
        path: PathBuf,
        /// What went wrong (I/O error, corrupt header, ...).
        reason: String,
    },
    /// A key remap pattern is not a valid regular expression.
    #[error("invalid key remap pattern `{pattern}`: {reason}")]
    BadRemap {
        /// The pattern.
        pattern: String,
        /// The regex compiler's message.
        reason: String,
    },
    /// Two file keys are renamed to the same key by the remaps.
    #[error("key remaps rename both `{first}` and `{second}` to `{key}`")]
    RemapCollision {
        /// The common new name.
        key: String,
        /// One original key.
        first: String,
        /// The other original key.
        second: String,
    },
    /// The file's keys do not match the model's parameters (strict loading).
    #[error(
        "weight file {} does not match the model: {} missing key(s) [{}]; {} unexpected key(s) [{}]",
        path.display(), missing.len(), missing.join(", "), unexpected.len(), unexpected.join(", ")
    )]
    KeyMismatch {
        /// The file.
        path: PathBuf,
        /// Model parameter paths the file does not provide.
        missing: Vec<String>,
        /// File keys (as stored in the file) that no model parameter takes.
        unexpected: Vec<String>,
    },
    /// Tensors in the file have different shapes from the parameters they map to.
    #[error(
        "weight file {}: {}{}",
        path.display(),
        mismatches.first().map(ToString::to_string).unwrap_or_default(),
        if mismatches.len() > 1 { format!(" (and {} more shape mismatch(es))", mismatches.len() - 1) } else { String::new() }
    )]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// Every mismatched tensor, sorted by model path.
        mismatches: Vec<TensorShapeMismatch>,
    },
    /// A tensor could not be converted or read (wrong dtype kind, corrupt data, ...).
    #[error("weight file {}: {reason}", path.display())]
    WeightLoad {
        /// The file.
        path: PathBuf,
        /// What went wrong, naming the tensor.
        reason: String,
    },
}

/// One tensor whose shape in a weight file differs from its model parameter's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorShapeMismatch {
    /// The model parameter path.
    pub key: String,
    /// The key as stored in the file (before remapping).
    pub file_key: String,
    /// The parameter's shape.
    pub expected: Vec<usize>,
    /// The file tensor's shape.
    pub found: Vec<usize>,
}

impl std::fmt::Display for TensorShapeMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tensor `{}` has shape {:?} but model parameter `{}` has shape {:?}",
            self.file_key, self.found, self.key, self.expected
        )
    }
}
