//! U-Net (Ronneberger, Fischer & Brox, MICCAI 2015): the network that Jung et al. (2019)
//! put in place of the plain CNN of Zanjani et al.'s DCGMM to compute the per-pixel
//! cluster assignments.
//!
//! Each encoder level is two 3×3 convolutions (+ batch norm) + ReLU, then a 2×2 max pool;
//! the width doubles per level. Each decoder level upsamples by a 2×2 transposed
//! convolution, concatenates the encoder features of the same scale (the skip connection,
//! optional here) and applies two 3×3 convolutions. A 1×1 convolution gives the output
//! channels. Convolutions are zero-padded ("same"), so the output has the input's size;
//! the input's height and width must be multiples of `2^depth` ([`UNet::size_multiple`]).

use crate::stain::StainError;
use burn::{
    nn::{
        conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig},
        BatchNorm, BatchNormConfig, PaddingConfig2d, Relu,
    },
    prelude::*,
    tensor::{module::max_pool2d, ops::MaxPoolOptions},
};

/// Architecture of a [`UNet`].
#[derive(Config, Debug)]
pub struct UNetConfig {
    /// Input channels.
    #[config(default = 1)]
    pub in_channels: usize,
    /// Output channels (logits).
    #[config(default = 3)]
    pub out_channels: usize,
    /// Number of 2× downsamplings (Ronneberger et al.: 4).
    #[config(default = 4)]
    pub depth: usize,
    /// Channels of the first level; level `i` has `base_width · 2^i`
    /// (Ronneberger et al.: 64; half that is plenty for 3-cluster colour assignment).
    #[config(default = 32)]
    pub base_width: usize,
    /// Concatenate encoder features into the decoder (what makes a U-Net a U-Net).
    #[config(default = true)]
    pub skip_connections: bool,
    /// Batch normalization after every 3×3 convolution.
    #[config(default = true)]
    pub batch_norm: bool,
}

impl UNetConfig {
    /// Checks the configuration: at least one input and output channel, a base width of at
    /// least 1 and a depth of at most 8.
    pub fn validate(&self) -> Result<(), StainError> {
        if self.in_channels == 0 || self.out_channels == 0 || self.base_width == 0 {
            return Err(StainError::Config(format!(
                "U-Net needs in_channels, out_channels and base_width ≥ 1 (got {}, {}, {})",
                self.in_channels, self.out_channels, self.base_width
            )));
        }
        if self.depth > 8 {
            return Err(StainError::Config(format!(
                "U-Net depth {} > 8",
                self.depth
            )));
        }
        Ok(())
    }

    /// Builds the network with freshly initialized weights; an error if
    /// [`validate`](Self::validate) fails.
    pub fn init(&self, device: &Device) -> Result<UNet, StainError> {
        self.validate()?;
        let width = |level: usize| self.base_width << level;
        let norm = self.batch_norm;
        let down = (0..self.depth)
            .map(|l| {
                let cin = if l == 0 {
                    self.in_channels
                } else {
                    width(l - 1)
                };
                ConvBlock::new(cin, width(l), norm, device)
            })
            .collect();
        let bottom_in = if self.depth == 0 {
            self.in_channels
        } else {
            width(self.depth - 1)
        };
        let bottleneck = ConvBlock::new(bottom_in, width(self.depth), norm, device);
        let up = (0..self.depth)
            .rev()
            .map(|l| {
                let cin = if self.skip_connections {
                    2 * width(l)
                } else {
                    width(l)
                };
                UpBlock {
                    up: ConvTranspose2dConfig::new([width(l + 1), width(l)], [2, 2])
                        .with_stride([2, 2])
                        .init(device),
                    block: ConvBlock::new(cin, width(l), norm, device),
                }
            })
            .collect();
        let head = Conv2dConfig::new([width(0), self.out_channels], [1, 1]).init(device);
        Ok(UNet {
            down,
            bottleneck,
            up,
            head,
            skip_connections: self.skip_connections,
            relu: Relu::new(),
        })
    }
}

/// Two 3×3 convolutions, each followed by optional batch norm and ReLU.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv1: Conv2d,
    norm1: Option<BatchNorm>,
    conv2: Conv2d,
    norm2: Option<BatchNorm>,
    relu: Relu,
}

impl ConvBlock {
    fn new(cin: usize, cout: usize, batch_norm: bool, device: &Device) -> Self {
        let conv = |a: usize, b: usize| {
            Conv2dConfig::new([a, b], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(!batch_norm)
                .init(device)
        };
        let norm = || batch_norm.then(|| BatchNormConfig::new(cout).init(device));
        ConvBlock {
            conv1: conv(cin, cout),
            norm1: norm(),
            conv2: conv(cout, cout),
            norm2: norm(),
            relu: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.conv1.forward(x);
        if let Some(n) = &self.norm1 {
            x = n.forward(x);
        }
        x = self.relu.forward(x);
        x = self.conv2.forward(x);
        if let Some(n) = &self.norm2 {
            x = n.forward(x);
        }
        self.relu.forward(x)
    }
}

/// One decoder level: 2× transposed-convolution upsampling, then a [`ConvBlock`].
#[derive(Module, Debug)]
pub struct UpBlock {
    up: ConvTranspose2d,
    block: ConvBlock,
}

/// The U-Net. Build it with [`UNetConfig::init`].
#[derive(Module, Debug)]
pub struct UNet {
    down: Vec<ConvBlock>,
    bottleneck: ConvBlock,
    up: Vec<UpBlock>,
    head: Conv2d,
    skip_connections: bool,
    relu: Relu,
}

impl UNet {
    /// Number of 2× downsamplings.
    pub fn depth(&self) -> usize {
        self.down.len()
    }

    /// Input heights and widths must be multiples of this (`2^depth`).
    pub fn size_multiple(&self) -> usize {
        1 << self.depth()
    }

    /// Output logits.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, height, width]`, height and width multiples of
    ///   [`size_multiple`](Self::size_multiple)
    /// - output: `[batch, out_channels, height, width]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let m = self.size_multiple();
        assert!(
            h % m == 0 && w % m == 0,
            "U-Net input {h}x{w} is not a multiple of 2^depth = {m} (pad it first)"
        );
        let mut skips = Vec::with_capacity(self.down.len());
        let mut x = x;
        for block in &self.down {
            let features = block.forward(x);
            x = max_pool2d(features.clone(), MaxPoolOptions::new([2, 2]));
            skips.push(features);
        }
        x = self.bottleneck.forward(x);
        for level in &self.up {
            let skip = skips.pop().expect("one skip per level");
            x = self.relu.forward(level.up.forward(x));
            if self.skip_connections {
                x = Tensor::cat(vec![x, skip], 1);
            }
            x = level.block.forward(x);
        }
        self.head.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_has_input_size_and_requested_channels() {
        let device = Device::default();
        for (depth, skip, bn) in [(0, true, true), (2, true, true), (3, false, false)] {
            let net = UNetConfig::new()
                .with_in_channels(2)
                .with_out_channels(5)
                .with_depth(depth)
                .with_base_width(4)
                .with_skip_connections(skip)
                .with_batch_norm(bn)
                .init(&device)
                .unwrap();
            assert_eq!(net.size_multiple(), 1 << depth);
            let x =
                Tensor::<4>::random([2, 2, 16, 24], burn::tensor::Distribution::Default, &device);
            assert_eq!(net.forward(x).dims(), [2, 5, 16, 24]);
        }
    }

    #[test]
    fn skip_connections_change_the_parameter_count() {
        let device = Device::default();
        let cfg = UNetConfig::new().with_depth(2).with_base_width(4);
        let with = cfg.init(&device).unwrap().num_params();
        let without = cfg
            .clone()
            .with_skip_connections(false)
            .init(&device)
            .unwrap()
            .num_params();
        // Each decoder block's first conv reads twice the channels with skips:
        // level 1: 8·8·9 extra weights, level 0: 4·4·9.
        assert_eq!(with - without, 8 * 8 * 9 + 4 * 4 * 9);
    }
}
