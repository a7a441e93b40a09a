//! A dense cue for touching nuclei (beyond the paper; issue 10, lever 5): a light head on
//! P2 regressing every nucleus's normalized distance map, as Naylor et al. (2019, *DIST*,
//! IEEE TMI 38:448) do for the breast set, but beside Mask R-CNN instead of in its place.
//! Its map splits an instance whose mask holds several distance peaks
//! ([`split_touching`](crate::model::ops::split_touching)).

use burn::{
    config::Config,
    module::Module,
    nn::conv::{Conv2d, ConvTranspose2d, ConvTranspose2dConfig},
    nn::{GroupNorm, GroupNormConfig, Initializer},
    tensor::{activation::relu, Device, Tensor},
};

use crate::model::layers::{conv2d, kaiming_fan_out};
use crate::model::ops::bce_with_logits;

/// Dense-head sizes.
#[derive(Config, Debug, PartialEq)]
pub struct DenseHeadConfig {
    /// Channels of P2 (set from the pyramid's width when the network is built).
    #[config(default = 128)]
    pub in_channels: usize,
    /// Channels of each 3×3 convolution and of the transposed convolution.
    #[config(default = 64)]
    pub channels: usize,
    /// Number of 3×3 convolutions (each with group norm and ReLU).
    #[config(default = 2)]
    pub convs: usize,
    /// Groups of their group norms.
    #[config(default = 8)]
    pub groups: usize,
}

/// `convs` × (3×3 conv, group norm, ReLU) on P2, a 2×2 stride-2 transposed convolution with
/// ReLU, and a 1×1 convolution to one logit per pixel pair: the distance map at stride 2.
#[derive(Module, Debug)]
pub struct DenseHead {
    /// The 3×3 convolutions.
    pub convs: Vec<Conv2d>,
    /// Their group norms.
    pub norms: Vec<GroupNorm>,
    /// Upsampling from stride 4 to stride 2.
    pub up: ConvTranspose2d,
    /// Distance logits.
    pub logits: Conv2d,
}

/// The output stride of [`DenseHead`]: one value per 2×2 input pixels.
pub const DENSE_STRIDE: usize = 2;

impl DenseHeadConfig {
    /// Checks the sizes (group norm needs channels divisible by the groups).
    pub fn problem(&self) -> Option<String> {
        (self.channels == 0 || self.groups == 0 || !self.channels.is_multiple_of(self.groups)).then(
            || {
                format!(
                    "dense head: {} channels must be a positive multiple of its {} groups",
                    self.channels, self.groups
                )
            },
        )
    }

    /// Builds the head (call [`problem`](Self::problem) first).
    pub fn init(&self, device: &Device) -> DenseHead {
        let c = self.channels;
        let mut convs = Vec::with_capacity(self.convs);
        let mut norms = Vec::with_capacity(self.convs);
        let mut input = self.in_channels;
        for _ in 0..self.convs {
            convs.push(conv2d([input, c], 3, kaiming_fan_out(), device));
            norms.push(GroupNormConfig::new(self.groups, c).init(device));
            input = c;
        }
        let mut up = ConvTranspose2dConfig::new([input, c], [2, 2])
            .with_stride([2, 2])
            .init(device);
        up.weight =
            kaiming_fan_out().init_with([input, c, 2, 2], Some(c * 4), Some(input * 4), device);
        up.bias = Some(Initializer::Zeros.init([c], device));
        DenseHead {
            convs,
            norms,
            up,
            logits: conv2d([c, 1], 1, kaiming_fan_out(), device),
        }
    }
}

impl DenseHead {
    /// Distance logits.
    ///
    /// # Shapes
    /// `p2: [N, C, H/4, W/4]` → `[N, 1, H/2, W/2]`.
    pub fn forward(&self, p2: Tensor<4>) -> Tensor<4> {
        let mut x = p2;
        for (conv, norm) in self.convs.iter().zip(&self.norms) {
            x = relu(norm.forward(conv.forward(x)));
        }
        self.logits.forward(relu(self.up.forward(x)))
    }

    /// Binary cross-entropy between the predicted maps and the targets in `[0, 1]`
    /// ([`TrainingTarget::distance_map`](crate::model::TrainingTarget::distance_map)),
    /// averaged over pixels.
    ///
    /// # Shapes
    /// `logits, targets: [N, 1, H/2, W/2]` → `[1]`.
    pub fn loss(logits: Tensor<4>, targets: Tensor<4>) -> Tensor<1> {
        bce_with_logits(logits, targets)
    }
}
