//! Mask R-CNN (He et al. 2017) with a feature pyramid (Lin et al. 2017), configured for
//! nuclei as in Jung et al. (2019). One file per concept, as in torchvision's
//! `models/detection` and detectron2's `modeling`:
//! - geometry without parameters: [`box_ops`], [`box_coder`], [`anchors`], [`matcher`],
//!   [`sampler`];
//! - [`roi_align`]: multi-scale RoIAlign built on `grid_sample_2d`.

pub mod anchors;
pub mod box_coder;
pub mod box_ops;
pub mod matcher;
pub mod roi_align;
pub mod sampler;

pub use anchors::{AnchorGenerator, AnchorGeneratorConfig};
pub use box_coder::BoxCoder;
pub use roi_align::{RoiAlign, RoiAlignConfig};
