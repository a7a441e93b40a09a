//! The backbone: a ResNet body (He et al. 2016) with its normalization layers, and the
//! feature pyramid network (Lin et al. 2017) on its C2–C5 outputs.

mod fpn;
mod norm;
mod norm_region;
mod resnet;

pub use fpn::{Fpn, FpnConfig};
pub use norm::{FrozenBatchNorm2d, FrozenBatchNorm2dConfig, Norm2d, NormKind};
pub use norm_region::{
    GlassCells, NormRegion, GLASS_CELL, GLASS_CELL_FRACTION, GLASS_MIN_INTENSITY,
};
pub use resnet::{BasicBlock, Bottleneck, Downsample, ResNet, ResNetConfig, ResidualBlock};
