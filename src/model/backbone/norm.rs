//! Normalization layers of the backbone: torchvision's frozen batch norm (for fine-tuning
//! ImageNet / COCO weights) and group norm (for training from scratch).
//!
//! Detection batches are small (1–2 images per GPU in Mask R-CNN), too small for batch
//! statistics, so torchvision freezes the ImageNet BN statistics and affine parameters
//! (`torchvision.ops.misc.FrozenBatchNorm2d`); Wu & He (2018, *Group Normalization*, Sec. 6)
//! instead normalize over channel groups, which does not depend on the batch size.

use burn::module::{Module, Param};
use burn::nn::{GroupNorm, GroupNormConfig, Initializer};
use burn::prelude::*;

use super::norm_region::NormRegion;
use crate::model::ModelError;

/// Which normalization layer follows each convolution of the backbone.
#[derive(Config, Debug, PartialEq)]
pub enum NormKind {
    /// torchvision's `FrozenBatchNorm2d`: batch norm with fixed statistics and affine
    /// parameters, never trained. The choice for pretrained weights (torchvision's default
    /// for detection backbones).
    FrozenBatchNorm,
    /// Trainable group normalization with `groups` channel groups (32 in Wu & He 2018);
    /// every normalized channel count must be divisible by it.
    GroupNorm {
        /// Number of channel groups.
        groups: usize,
    },
}

impl NormKind {
    /// Checks that a layer of this kind can normalize `channels` channels.
    pub fn check(&self, channels: usize) -> Result<(), ModelError> {
        match *self {
            NormKind::FrozenBatchNorm => Ok(()),
            NormKind::GroupNorm { groups } => {
                if groups == 0 || !channels.is_multiple_of(groups) {
                    Err(ModelError::InvalidConfig(format!(
                        "group norm with {groups} groups cannot normalize {channels} channels \
                         (the channel count must be a multiple of the group count)"
                    )))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Builds a normalization layer over `channels` channels, initialized to the identity
    /// (weight 1, bias 0, and for frozen BN mean 0, variance 1).
    pub fn init(&self, channels: usize, device: &Device) -> Result<Norm2d, ModelError> {
        self.check(channels)?;
        Ok(match *self {
            NormKind::FrozenBatchNorm => {
                Norm2d::FrozenBatchNorm(FrozenBatchNorm2dConfig::new(channels).init(device))
            }
            NormKind::GroupNorm { groups } => {
                Norm2d::GroupNorm(GroupNormConfig::new(groups, channels).init(device))
            }
        })
    }
}

/// Configuration of a [`FrozenBatchNorm2d`].
#[derive(Config, Debug)]
pub struct FrozenBatchNorm2dConfig {
    /// Number of channels.
    pub num_features: usize,
    /// Added to the variance before the square root (torchvision's default `1e-5`).
    #[config(default = 1e-5)]
    pub eps: f64,
}

impl FrozenBatchNorm2dConfig {
    /// Builds the identity transform (weight 1, bias 0, mean 0, variance 1), with every
    /// parameter marked as not requiring gradients.
    pub fn init(&self, device: &Device) -> FrozenBatchNorm2d {
        let c = [self.num_features];
        let frozen = |init: Initializer| init.init(c, device).set_require_grad(false);
        FrozenBatchNorm2d {
            weight: frozen(Initializer::Ones),
            bias: frozen(Initializer::Zeros),
            running_mean: frozen(Initializer::Zeros),
            running_var: frozen(Initializer::Ones),
            eps: self.eps,
        }
    }
}

/// Batch normalization with fixed statistics and affine parameters
/// (torchvision `ops.misc.FrozenBatchNorm2d`):
/// `y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`, per channel.
///
/// The four tensors are parameters so that they are saved and loaded under torchvision's
/// names (`weight`, `bias`, `running_mean`, `running_var`), but they never train: they are
/// created with `require_grad = false` and the forward pass detaches them, so no gradient
/// reaches them even after `Module::unfreeze`.
#[derive(Module, Debug)]
pub struct FrozenBatchNorm2d {
    /// Per-channel scale γ. `[C]`
    pub weight: Param<Tensor<1>>,
    /// Per-channel shift β. `[C]`
    pub bias: Param<Tensor<1>>,
    /// Per-channel mean of the training data. `[C]`
    pub running_mean: Param<Tensor<1>>,
    /// Per-channel variance of the training data. `[C]`
    pub running_var: Param<Tensor<1>>,
    /// Added to the variance before the square root.
    pub eps: f64,
}

impl FrozenBatchNorm2d {
    /// Applies the frozen affine normalization.
    ///
    /// # Shapes
    /// - x: `[N, C, H, W]` → `[N, C, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let c = self.weight.dims()[0];
        let scale = self.weight.val().detach()
            * (self.running_var.val().detach() + self.eps).sqrt().recip();
        let shift = self.bias.val().detach() - self.running_mean.val().detach() * scale.clone();
        x * scale.reshape([1, c, 1, 1]) + shift.reshape([1, c, 1, 1])
    }
}

/// The normalization layer after a backbone convolution: frozen batch norm or group norm
/// ([`NormKind`] chooses).
///
/// Burn names enum variants in parameter paths (`bn1.FrozenBatchNorm.weight`,
/// `bn1.GroupNorm.gamma`); [`load_safetensors`](crate::model::io::load_safetensors) skips them, so torchvision's
/// `bn1.weight` maps onto either variant.
#[derive(Module, Debug)]
pub enum Norm2d {
    /// Frozen batch norm.
    FrozenBatchNorm(FrozenBatchNorm2d),
    /// Trainable group norm (Burn's; parameters `gamma`, `beta`).
    GroupNorm(GroupNorm),
}

impl Norm2d {
    /// Normalizes `x`.
    ///
    /// # Shapes
    /// - x: `[N, C, H, W]` → `[N, C, H, W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Norm2d::FrozenBatchNorm(bn) => bn.forward(x),
            Norm2d::GroupNorm(gn) => gn.forward(x),
        }
    }

    /// Normalizes `x`, group norm taking its statistics over the cells of `region` (when
    /// it has a mask of `x`'s size) instead of the whole map; frozen batch norm has no
    /// statistics to take and ignores it. `None` is [`forward`](Self::forward).
    ///
    /// # Shapes
    /// - x: `[N, C, H, W]` → `[N, C, H, W]`; the region's mask `[N, 1, H, W]`
    pub fn forward_in(&self, x: Tensor<4>, region: Option<&NormRegion>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        match (self, region.and_then(|r| r.at(h, w))) {
            (Norm2d::GroupNorm(gn), Some(mask)) => masked_group_norm(gn, x, mask.clone()),
            _ => self.forward(x),
        }
    }

    /// Number of channels normalized.
    pub fn channels(&self) -> usize {
        match self {
            Norm2d::FrozenBatchNorm(bn) => bn.weight.dims()[0],
            Norm2d::GroupNorm(gn) => gn.num_channels,
        }
    }
}

/// Group norm with the mean and variance of each (image, group) taken over the positions
/// where `mask` is 1 (Wu & He 2018, Eq. 1–2, with `S_i` restricted to the mask); with a mask
/// of ones it is Burn's `GroupNorm`.
///
/// # Shapes
/// - x: `[N, C, H, W]`, mask: `[N, 1, H, W]` → `[N, C, H, W]`
fn masked_group_norm(gn: &GroupNorm, x: Tensor<4>, mask: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let g = gn.num_groups;
    let x = x.reshape([n, g, c / g, h * w]);
    let mask = mask.reshape([n, 1, 1, h * w]);
    let count = (mask.clone().sum_dim(3) * (c / g) as f32).clamp_min(1.0);
    let mean = (x.clone() * mask.clone()).sum_dim(3).sum_dim(2) / count.clone();
    let centred = x - mean;
    let var = (centred.clone().square() * mask).sum_dim(3).sum_dim(2) / count;
    let y = (centred / (var + gn.epsilon).sqrt()).reshape([n, c, h, w]);
    match (&gn.gamma, &gn.beta) {
        (Some(gamma), Some(beta)) if gn.affine => {
            y * gamma.val().reshape([1, c, 1, 1]) + beta.val().reshape([1, c, 1, 1])
        }
        _ => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_bn_matches_hand_computed_values() {
        let device = Device::flex();
        let mut bn = FrozenBatchNorm2dConfig::new(2).init(&device);
        bn.weight = Param::from_tensor(Tensor::from_floats([2.0, 1.0], &device));
        bn.bias = Param::from_tensor(Tensor::from_floats([0.5, -1.0], &device));
        bn.running_mean = Param::from_tensor(Tensor::from_floats([1.0, 0.0], &device));
        bn.running_var =
            Param::from_tensor(Tensor::from_floats([4.0 - 1e-5, 0.25 - 1e-5], &device));
        // channel 0: (3 - 1) / 2 * 2 + 0.5 = 2.5 ; channel 1: (3 - 0) / 0.5 * 1 - 1 = 5
        let x = Tensor::<4>::full([1, 2, 1, 1], 3.0, &device);
        let y: Vec<f32> = bn.forward(x).try_into_vec_as().unwrap();
        assert!(
            (y[0] - 2.5).abs() < 1e-4 && (y[1] - 5.0).abs() < 1e-4,
            "{y:?}"
        );
    }

    #[test]
    fn group_norm_rejects_indivisible_channels() {
        let device = Device::flex();
        let err = NormKind::GroupNorm { groups: 32 }
            .init(48, &device)
            .unwrap_err();
        assert!(err.to_string().contains("48"), "{err}");
        assert!(NormKind::GroupNorm { groups: 0 }.check(8).is_err());
        assert_eq!(
            NormKind::GroupNorm { groups: 4 }
                .init(8, &device)
                .unwrap()
                .channels(),
            8
        );
    }
}
