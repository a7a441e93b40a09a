//! The mask branch (Mask R-CNN, Sec. 3 and Fig. 4 right): four 3×3 convolutions (256) with
//! ReLU on each 14×14 RoIAlign feature, a 2× transposed convolution, and a 1×1 convolution
//! to one 28×28 mask logit map per class.

use burn::{
    config::Config,
    module::Module,
    nn::conv::{Conv2d, ConvTranspose2d, ConvTranspose2dConfig},
    nn::Initializer,
    tensor::{activation::relu, Device, Tensor},
};

use crate::model::layers::{conv2d, kaiming_fan_out};

/// Mask-head sizes; defaults are torchvision's `MaskRCNNHeads` + `MaskRCNNPredictor`.
#[derive(Config, Debug, PartialEq)]
pub struct MaskHeadConfig {
    /// Channels of the pooled features.
    #[config(default = 256)]
    pub in_channels: usize,
    /// Output channels of each 3×3 convolution.
    #[config(default = "vec![256, 256, 256, 256]")]
    pub layers: Vec<usize>,
    /// Channels of the transposed convolution.
    #[config(default = 256)]
    pub dim_reduced: usize,
    /// Classes including background.
    #[config(default = 2)]
    pub num_classes: usize,
}

/// `mask_fcn1..4` (3×3 conv + ReLU), `conv5_mask` (2×2 stride-2 transposed conv + ReLU),
/// `mask_fcn_logits` (1×1 conv), as torchvision names them.
#[derive(Module, Debug)]
pub struct MaskHead {
    /// The 3×3 convolutions.
    pub mask_fcn: Vec<Conv2d>,
    /// The upsampling transposed convolution.
    pub conv5_mask: ConvTranspose2d,
    /// Per-class mask logits.
    pub mask_fcn_logits: Conv2d,
}

impl MaskHeadConfig {
    /// Builds the head.
    pub fn init(&self, device: &Device) -> MaskHead {
        let mut c = self.in_channels;
        let mask_fcn = self
            .layers
            .iter()
            .map(|&out| {
                let conv = conv2d([c, out], 3, kaiming_fan_out(), device);
                c = out;
                conv
            })
            .collect();
        let mut conv5_mask = ConvTranspose2dConfig::new([c, self.dim_reduced], [2, 2])
            .with_stride([2, 2])
            .init(device);
        // kaiming_normal_(fan_out): PyTorch's fan_out of a transposed-conv weight
        // [in, out, kh, kw] is in · kh · kw.
        conv5_mask.weight = kaiming_fan_out().init_with(
            [c, self.dim_reduced, 2, 2],
            Some(self.dim_reduced * 4),
            Some(c * 4),
            device,
        );
        conv5_mask.bias = Some(Initializer::Zeros.init([self.dim_reduced], device));
        MaskHead {
            mask_fcn,
            conv5_mask,
            mask_fcn_logits: conv2d(
                [self.dim_reduced, self.num_classes],
                1,
                kaiming_fan_out(),
                device,
            ),
        }
    }
}

impl MaskHead {
    /// # Shapes
    /// `x: [K, C, S, S]` → mask logits `[K, num_classes, 2S, 2S]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = x;
        for conv in &self.mask_fcn {
            x = relu(conv.forward(x));
        }
        let x = relu(self.conv5_mask.forward(x));
        self.mask_fcn_logits.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::heads::BoxHeadConfig;

    #[test]
    fn head_shapes() {
        let device = Device::flex();
        let mask = MaskHeadConfig::new()
            .with_in_channels(4)
            .with_layers(vec![8, 8])
            .with_dim_reduced(6)
            .init(&device);
        assert_eq!(
            mask.forward(Tensor::zeros([3, 4, 14, 14], &device)).dims(),
            [3, 2, 28, 28]
        );
        let boxes = BoxHeadConfig::new()
            .with_in_channels(4)
            .with_representation_size(16)
            .init(&device);
        let (logits, deltas) = boxes.forward(Tensor::zeros([5, 4, 7, 7], &device));
        assert_eq!((logits.dims(), deltas.dims()), ([5, 2], [5, 8]));
    }
}
