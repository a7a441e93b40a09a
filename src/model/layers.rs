//! Layer constructors with the initializations of torchvision's detection heads.

use burn::{
    nn::{
        conv::{Conv2d, Conv2dConfig},
        Initializer, PaddingConfig2d,
    },
    tensor::Device,
};

/// `nn.init.normal_(std = 0.01)` (RPN head).
pub fn normal_001() -> Initializer {
    Initializer::Normal {
        mean: 0.0,
        std: 0.01,
    }
}

/// `kaiming_normal_(mode = "fan_out", nonlinearity = "relu")` (mask head, ResNet).
pub fn kaiming_fan_out() -> Initializer {
    Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: true,
    }
}

/// A `k × k` convolution with "same" padding `k / 2` (symmetric, as PyTorch's), weights
/// from `init` and a zero bias.
pub fn conv2d(channels: [usize; 2], kernel: usize, init: Initializer, device: &Device) -> Conv2d {
    let p = kernel / 2;
    let mut conv = Conv2dConfig::new(channels, [kernel, kernel])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_initializer(init)
        .init(device);
    conv.bias = Some(Initializer::Zeros.init([channels[1]], device));
    conv
}
