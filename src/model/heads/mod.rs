//! The heads on the feature pyramid: the region proposal network (Ren et al. 2015) and the
//! second stage (RoI sampling, the box head and the mask head of He et al. 2017), with
//! their losses and post-processing.

mod box_head;
mod dense_head;
mod mask_head;
mod roi_heads;
mod rpn;

pub use box_head::{BoxHead, BoxHeadConfig};
pub use dense_head::{DenseHead, DenseHeadConfig, DENSE_STRIDE};
pub use mask_head::{MaskHead, MaskHeadConfig, BATCHED_REGIONS};
pub use roi_heads::{mask_threshold_problem, Detection, RoiHeadsConfig, RoiSamples};
pub use rpn::{Rpn, RpnConfig, RpnHead, RpnLosses, RpnOutput};
