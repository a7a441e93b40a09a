//! Feature pyramid network (Lin et al. 2017, *Feature Pyramid Networks for Object
//! Detection*, Sec. 3 and Fig. 3), as torchvision's `ops.FeaturePyramidNetwork` with the
//! `LastLevelMaxPool` extra block used by Mask R-CNN.
//!
//! From the backbone maps C2..C5 it builds P2..P5 with `out_channels` channels each:
//! a 1×1 lateral convolution per level (`inner_blocks`), a top-down pathway that upsamples
//! the coarser merged map 2× (nearest neighbour) and adds it to the lateral, and a 3×3
//! convolution on each merged map (`layer_blocks`) "to reduce the aliasing effect of
//! upsampling". P6 subsamples P5 by 2 (max-pool, kernel 1, stride 2) for the largest RPN
//! anchors (Sec. 4.1).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::module::{interpolate, max_pool2d};
use burn::tensor::ops::{InterpolateMode, InterpolateOptions, MaxPoolOptions};

use crate::model::ModelError;

/// Configuration of an [`Fpn`].
#[derive(Config, Debug)]
pub struct FpnConfig {
    /// Channels of C2..C5 (e.g. [`super::resnet::ResNet::out_channels`]).
    pub in_channels: [usize; 4],
    /// Channels of every pyramid level (256 in the paper and torchvision).
    #[config(default = 256)]
    pub out_channels: usize,
}

impl FpnConfig {
    /// Builds the FPN with torchvision's initialization (`kaiming_uniform_(a=1)` weights,
    /// zero biases).
    ///
    /// # Panics
    /// If a channel count is zero; [`FpnConfig::try_init`] returns an error instead.
    pub fn init(&self, device: &Device) -> Fpn {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the FPN, or explains why it cannot.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] if a channel count is zero.
    pub fn try_init(&self, device: &Device) -> Result<Fpn, ModelError> {
        if self.out_channels == 0 || self.in_channels.contains(&0) {
            return Err(ModelError::InvalidConfig(format!(
                "FPN channel counts must be positive (in {:?}, out {})",
                self.in_channels, self.out_channels
            )));
        }
        let c = self.out_channels;
        Ok(Fpn {
            inner_blocks: self
                .in_channels
                .iter()
                .map(|&c_in| fpn_conv(c_in, c, 1, device))
                .collect(),
            layer_blocks: (0..4).map(|_| fpn_conv(c, c, 3, device)).collect(),
        })
    }
}

/// A `k×k` stride-1 convolution with "same" padding, `kaiming_uniform_(a=1)` weights
/// (bound √(3 / fan_in)) and a zero bias, as torchvision's FPN initializes it.
fn fpn_conv(c_in: usize, c_out: usize, k: usize, device: &Device) -> Conv2d {
    let p = k / 2;
    let mut conv = Conv2dConfig::new([c_in, c_out], [k, k])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_initializer(Initializer::KaimingUniform {
            gain: 1.0,
            fan_out_only: false,
        })
        .init(device);
    conv.bias = Some(Initializer::Zeros.init([c_out], device));
    conv
}

/// Feature pyramid network over four backbone levels, plus the max-pooled P6.
///
/// Parameter paths follow torchvision's older `state_dict` layout: `inner_blocks.{i}.weight`
/// / `.bias` (1×1 laterals, `i = 0` for C2) and `layer_blocks.{i}.weight` / `.bias` (3×3
/// outputs). Newer torchvision writes `inner_blocks.{i}.0.weight`;
/// [`fpn_remaps`](crate::model::io::fpn_remaps) maps both.
#[derive(Module, Debug)]
pub struct Fpn {
    /// 1×1 lateral convolutions, C2..C5 → `out_channels`.
    pub inner_blocks: Vec<Conv2d>,
    /// 3×3 output convolutions, one per level.
    pub layer_blocks: Vec<Conv2d>,
}

impl Fpn {
    /// Channels of every pyramid level.
    pub fn out_channels(&self) -> usize {
        self.layer_blocks[0].weight.dims()[0]
    }

    /// Builds P2..P6 from C2..C5.
    ///
    /// The top-down map is resized to the lateral's exact size (nearest neighbour, as
    /// torchvision's `F.interpolate(size=...)`), so odd sizes, where a level is
    /// `⌈h/2⌉` of the one below, line up.
    ///
    /// # Shapes
    /// - c: `[C2, C3, C4, C5]`, `Ci: [N, in_channels[i-2], Hi, Wi]`
    /// - returns `[P2, P3, P4, P5, P6]`, `Pi: [N, out_channels, Hi, Wi]` for i ≤ 5 and
    ///   `P6: [N, out_channels, ⌈H5/2⌉, ⌈W5/2⌉]`
    pub fn forward(&self, c: [Tensor<4>; 4]) -> [Tensor<4>; 5] {
        let [c2, c3, c4, c5] = c;
        let mut last_inner = self.inner_blocks[3].forward(c5);
        let p5 = self.layer_blocks[3].forward(last_inner.clone());
        let mut results = Vec::with_capacity(5);
        for (level, x) in [(2, c4), (1, c3), (0, c2)] {
            let lateral = self.inner_blocks[level].forward(x);
            let [_, _, h, w] = lateral.dims();
            let top_down = interpolate(
                last_inner,
                InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([h, w]),
            );
            last_inner = lateral + top_down;
            results.push(self.layer_blocks[level].forward(last_inner.clone()));
        }
        // torchvision LastLevelMaxPool: F.max_pool2d(P5, kernel_size=1, stride=2, padding=0)
        let p6 = max_pool2d(p5.clone(), MaxPoolOptions::new([1, 1]).with_stride([2, 2]));
        let p2 = results.pop().expect("P2");
        let p3 = results.pop().expect("P3");
        let p4 = results.pop().expect("P4");
        [p2, p3, p4, p5, p6]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_channels_are_an_error() {
        let device = Device::flex();
        assert!(FpnConfig::new([8, 0, 8, 8]).try_init(&device).is_err());
        assert!(FpnConfig::new([8, 8, 8, 8])
            .with_out_channels(0)
            .try_init(&device)
            .is_err());
    }

    /// With 1×1 laterals and 3×3 outputs set to identities (weights picked by hand), P_i is
    /// the sum of C_i and the nearest-upsampled coarser levels: check one pixel by hand.
    #[test]
    fn top_down_sums_nearest_upsampled_levels() {
        let device = Device::flex();
        let mut fpn = FpnConfig::new([1, 1, 1, 1])
            .with_out_channels(1)
            .init(&device);
        let id3 = {
            let mut w = vec![0.0f32; 9];
            w[4] = 1.0;
            Tensor::<4>::from_data(TensorData::new(w, [1, 1, 3, 3]), &device)
        };
        for conv in fpn.inner_blocks.iter_mut() {
            conv.weight = burn::module::Param::from_tensor(Tensor::ones([1, 1, 1, 1], &device));
        }
        for conv in fpn.layer_blocks.iter_mut() {
            conv.weight = burn::module::Param::from_tensor(id3.clone());
        }
        // C5 1×1 = 1000, C4 2×2 = 100, C3 3×3 = 10 (odd: ⌈5/2⌉), C2 5×5 = ramp
        let ramp: Vec<f32> = (0..25).map(|v| v as f32).collect();
        let c2 = Tensor::<4>::from_data(TensorData::new(ramp, [1, 1, 5, 5]), &device);
        let c3 = Tensor::<4>::full([1, 1, 3, 3], 10.0, &device);
        let c4 = Tensor::<4>::full([1, 1, 2, 2], 100.0, &device);
        let c5 = Tensor::<4>::full([1, 1, 1, 1], 1000.0, &device);
        let [p2, p3, p4, p5, p6] = fpn.forward([c2, c3, c4, c5]);
        assert_eq!(p2.dims(), [1, 1, 5, 5]);
        assert_eq!(p3.dims(), [1, 1, 3, 3]);
        assert_eq!(p4.dims(), [1, 1, 2, 2]);
        assert_eq!(p5.dims(), [1, 1, 1, 1]);
        assert_eq!(p6.dims(), [1, 1, 1, 1]);
        let p2: Vec<f32> = p2.try_into_vec_as().unwrap();
        // pixel (4, 4) of P2 = C2 (24) + C3 (10) + C4 (100) + C5 (1000)
        assert_eq!(p2[24], 1134.0);
        let p6: Vec<f32> = p6.try_into_vec_as().unwrap();
        assert_eq!(p6, vec![1000.0]);
    }
}
