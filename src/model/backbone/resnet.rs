//! ResNet body (He et al. 2016, *Deep Residual Learning for Image Recognition*, Table 1) as
//! the Mask R-CNN backbone: the stem and the four stages `conv2_x`..`conv5_x`, whose
//! outputs C2..C5 (strides 4, 8, 16, 32) feed the FPN. No pooling head, no classifier.
//!
//! It follows torchvision's `models/resnet.py` ("ResNet v1.5": the stride of a bottleneck
//! sits in its 3×3 convolution, not its first 1×1) and names every field after
//! torchvision's `state_dict` keys: `conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.bn1`,
//! `layer2.0.downsample.0` (1×1 projection conv), `layer2.0.downsample.1` (its norm), ...

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;

use super::norm::{Norm2d, NormKind};
use super::norm_region::NormRegion;
use crate::model::ModelError;

/// Depths with a known block layout, and their blocks per stage (He et al. 2016, Table 1).
const LAYOUTS: [(usize, [usize; 4], BlockKind); 5] = [
    (18, [2, 2, 2, 2], BlockKind::Basic),
    (34, [3, 4, 6, 3], BlockKind::Basic),
    (50, [3, 4, 6, 3], BlockKind::Bottleneck),
    (101, [3, 4, 23, 3], BlockKind::Bottleneck),
    (152, [3, 8, 36, 3], BlockKind::Bottleneck),
];

/// Output channels of a bottleneck block relative to its inner width (He et al. 2016, Sec. 4.1).
const BOTTLENECK_EXPANSION: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq)]
enum BlockKind {
    Basic,
    Bottleneck,
}

impl BlockKind {
    fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => BOTTLENECK_EXPANSION,
        }
    }
}

/// Configuration of a [`ResNet`] body.
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// Number of weighted layers: 18, 34 (basic blocks), 50, 101 or 152 (bottlenecks).
    pub depth: usize,
    /// Stem channels; the stages have inner widths `width × [1, 2, 4, 8]` (outputs ×4 for
    /// bottleneck networks). torchvision's networks have 64.
    #[config(default = 64)]
    pub width: usize,
    /// Normalization after each convolution.
    #[config(default = "NormKind::FrozenBatchNorm")]
    pub norm: NormKind,
    /// Input image channels.
    #[config(default = 3)]
    pub in_channels: usize,
}

impl ResNetConfig {
    fn layout(&self) -> Result<([usize; 4], BlockKind), ModelError> {
        LAYOUTS
            .iter()
            .find(|(d, _, _)| *d == self.depth)
            .map(|(_, blocks, kind)| (*blocks, *kind))
            .ok_or_else(|| {
                ModelError::InvalidConfig(format!(
                    "ResNet depth {} is not supported (expected one of 18, 34, 50, 101, 152)",
                    self.depth
                ))
            })
    }

    /// Output channels of C2..C5: `width × [1, 2, 4, 8]`, times 4 for bottleneck depths
    /// (`[64, 128, 256, 512]` for ResNet-18/34, `[256, 512, 1024, 2048]` for ResNet-50+).
    /// An unsupported depth is treated as a basic-block network (`init` rejects it).
    pub fn out_channels(&self) -> [usize; 4] {
        let e = self.layout().map(|(_, k)| k.expansion()).unwrap_or(1);
        [1, 2, 4, 8].map(|m| self.width * m * e)
    }

    /// Multiply-accumulates of the convolutions per input pixel (normalization, ReLU and
    /// pooling left out): the stem at stride 2, then stage `k` at stride `2^(k+1)`, each
    /// block's convolutions at its output resolution except a bottleneck's first 1×1 (at
    /// its input's). An unsupported depth counts as 0.
    pub fn macs_per_pixel(&self) -> f64 {
        let Ok((blocks, kind)) = self.layout() else {
            return 0.0;
        };
        let conv = |c_in: usize, c_out: usize, k: usize, stride: usize| {
            (c_in * c_out * k * k) as f64 / (stride * stride) as f64
        };
        let mut total = conv(self.in_channels, self.width, 7, 2);
        let mut in_ch = self.width;
        for (stage, &n) in blocks.iter().enumerate() {
            let planes = self.width << stage;
            let out_ch = planes * kind.expansion();
            for i in 0..n {
                let output = 1usize << (stage + 2);
                let input = if i == 0 && stage > 0 {
                    output / 2
                } else {
                    output
                };
                total += match kind {
                    BlockKind::Basic => {
                        conv(in_ch, planes, 3, output) + conv(planes, planes, 3, output)
                    }
                    BlockKind::Bottleneck => {
                        conv(in_ch, planes, 1, input)
                            + conv(planes, planes, 3, output)
                            + conv(planes, out_ch, 1, output)
                    }
                };
                if i == 0 && (stage > 0 || in_ch != out_ch) {
                    total += conv(in_ch, out_ch, 1, output);
                }
                in_ch = out_ch;
            }
        }
        total
    }

    /// Builds the network with torchvision's initialization: Kaiming-normal convolutions
    /// (fan-out, ReLU gain), norms at the identity.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] for an unsupported depth, a zero width or channel
    /// count, or a group count that does not divide every normalized channel count.
    pub fn init(&self, device: &Device) -> Result<ResNet, ModelError> {
        let (blocks, kind) = self.layout()?;
        if self.width == 0 || self.in_channels == 0 {
            return Err(ModelError::InvalidConfig(format!(
                "ResNet width ({}) and input channels ({}) must be positive",
                self.width, self.in_channels
            )));
        }
        let conv1 = conv(self.in_channels, self.width, 7, 2, 3).init(device);
        let bn1 = self.norm.init(self.width, device)?;
        let mut in_ch = self.width;
        let mut layers = Vec::with_capacity(4);
        for (stage, &n) in blocks.iter().enumerate() {
            let planes = self.width << stage;
            let stride = if stage == 0 { 1 } else { 2 };
            let mut layer = Vec::with_capacity(n);
            for i in 0..n {
                let s = if i == 0 { stride } else { 1 };
                layer.push(ResidualBlock::new(
                    kind, in_ch, planes, s, &self.norm, device,
                )?);
                in_ch = planes * kind.expansion();
            }
            layers.push(layer);
        }
        let [layer1, layer2, layer3, layer4]: [Vec<ResidualBlock>; 4] =
            layers.try_into().expect("four stages");
        Ok(ResNet {
            conv1,
            bn1,
            layer1,
            layer2,
            layer3,
            layer4,
            out_channels: self.out_channels(),
        })
    }
}

/// A `k×k` convolution without bias, initialized as torchvision's ResNet
/// (`kaiming_normal_(mode="fan_out", nonlinearity="relu")`: std = √2 / √fan_out).
fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, pad: usize) -> Conv2dConfig {
    Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
}

/// The shortcut projection of the first block of a stage: 1×1 convolution with the
/// block's stride, then a norm (torchvision `downsample = Sequential(conv1x1, norm)`,
/// keys `downsample.0.*` and `downsample.1.*`).
pub type Downsample = (Conv2d, Norm2d);

fn downsample(
    c_in: usize,
    c_out: usize,
    stride: usize,
    norm: &NormKind,
    device: &Device,
) -> Result<Option<Downsample>, ModelError> {
    if stride == 1 && c_in == c_out {
        return Ok(None);
    }
    Ok(Some((
        conv(c_in, c_out, 1, stride, 0).init(device),
        norm.init(c_out, device)?,
    )))
}

fn shortcut(
    downsample: &Option<Downsample>,
    x: Tensor<4>,
    region: Option<&NormRegion>,
) -> Tensor<4> {
    match downsample {
        Some((conv, norm)) => norm.forward_in(conv.forward(x), region),
        None => x,
    }
}

/// Basic residual block of ResNet-18/34: two 3×3 convolutions, the first with the stride.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// 3×3 convolution, `in → planes`, with the block's stride.
    pub conv1: Conv2d,
    /// Norm after `conv1`.
    pub bn1: Norm2d,
    /// 3×3 convolution, `planes → planes`.
    pub conv2: Conv2d,
    /// Norm after `conv2`.
    pub bn2: Norm2d,
    /// Shortcut projection when the shape changes.
    pub downsample: Option<Downsample>,
}

impl BasicBlock {
    /// `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`.
    ///
    /// # Shapes
    /// - x: `[N, in, H, W]` → `[N, planes, ⌈H/s⌉, ⌈W/s⌉]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_in(x, None)
    }

    /// [`forward`](Self::forward) with group norm's statistics over `region`
    /// ([`Norm2d::forward_in`]).
    pub fn forward_in(&self, x: Tensor<4>, region: Option<&NormRegion>) -> Tensor<4> {
        let identity = shortcut(&self.downsample, x.clone(), region);
        let out = relu(self.bn1.forward_in(self.conv1.forward(x), region));
        let out = self.bn2.forward_in(self.conv2.forward(out), region);
        relu(out + identity)
    }
}

/// Bottleneck block of ResNet-50/101/152 (v1.5): 1×1 reduce, 3×3 with the stride,
/// 1×1 expand ×4.
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// 1×1 convolution, `in → planes`.
    pub conv1: Conv2d,
    /// Norm after `conv1`.
    pub bn1: Norm2d,
    /// 3×3 convolution, `planes → planes`, with the block's stride.
    pub conv2: Conv2d,
    /// Norm after `conv2`.
    pub bn2: Norm2d,
    /// 1×1 convolution, `planes → 4·planes`.
    pub conv3: Conv2d,
    /// Norm after `conv3`.
    pub bn3: Norm2d,
    /// Shortcut projection when the shape changes.
    pub downsample: Option<Downsample>,
}

impl Bottleneck {
    /// `relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))`.
    ///
    /// # Shapes
    /// - x: `[N, in, H, W]` → `[N, 4·planes, ⌈H/s⌉, ⌈W/s⌉]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_in(x, None)
    }

    /// [`forward`](Self::forward) with group norm's statistics over `region`
    /// ([`Norm2d::forward_in`]).
    pub fn forward_in(&self, x: Tensor<4>, region: Option<&NormRegion>) -> Tensor<4> {
        let identity = shortcut(&self.downsample, x.clone(), region);
        let out = relu(self.bn1.forward_in(self.conv1.forward(x), region));
        let out = relu(self.bn2.forward_in(self.conv2.forward(out), region));
        let out = self.bn3.forward_in(self.conv3.forward(out), region);
        relu(out + identity)
    }
}

/// One residual block. Burn names the variant in parameter paths
/// (`layer1.0.Basic.conv1.weight`); [`load_safetensors`](crate::model::io::load_safetensors) skips variant
/// names, giving torchvision's `layer1.0.conv1.weight`.
// A network holds blocks of one kind only, in `Vec`s: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ResidualBlock {
    /// ResNet-18/34 block.
    Basic(BasicBlock),
    /// ResNet-50/101/152 block.
    Bottleneck(Bottleneck),
}

impl ResidualBlock {
    fn new(
        kind: BlockKind,
        c_in: usize,
        planes: usize,
        stride: usize,
        norm: &NormKind,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let c_out = planes * kind.expansion();
        let downsample = downsample(c_in, c_out, stride, norm, device)?;
        Ok(match kind {
            BlockKind::Basic => ResidualBlock::Basic(BasicBlock {
                conv1: conv(c_in, planes, 3, stride, 1).init(device),
                bn1: norm.init(planes, device)?,
                conv2: conv(planes, planes, 3, 1, 1).init(device),
                bn2: norm.init(planes, device)?,
                downsample,
            }),
            BlockKind::Bottleneck => ResidualBlock::Bottleneck(Bottleneck {
                conv1: conv(c_in, planes, 1, 1, 0).init(device),
                bn1: norm.init(planes, device)?,
                conv2: conv(planes, planes, 3, stride, 1).init(device),
                bn2: norm.init(planes, device)?,
                conv3: conv(planes, c_out, 1, 1, 0).init(device),
                bn3: norm.init(c_out, device)?,
                downsample,
            }),
        })
    }

    /// Applies the block.
    ///
    /// # Shapes
    /// - x: `[N, in, H, W]` → `[N, out, ⌈H/s⌉, ⌈W/s⌉]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_in(x, None)
    }

    /// [`forward`](Self::forward) with group norm's statistics over `region`.
    pub fn forward_in(&self, x: Tensor<4>, region: Option<&NormRegion>) -> Tensor<4> {
        match self {
            ResidualBlock::Basic(b) => b.forward_in(x, region),
            ResidualBlock::Bottleneck(b) => b.forward_in(x, region),
        }
    }
}

/// ResNet body: stem (`conv1` 7×7/2, `bn1`, ReLU, 3×3/2 max-pool) and stages
/// `layer1`..`layer4`. Build it with [`ResNetConfig::init`].
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem convolution, 7×7, stride 2, padding 3.
    pub conv1: Conv2d,
    /// Stem norm.
    pub bn1: Norm2d,
    /// Stage conv2_x (stride 4 overall).
    pub layer1: Vec<ResidualBlock>,
    /// Stage conv3_x (stride 8).
    pub layer2: Vec<ResidualBlock>,
    /// Stage conv4_x (stride 16).
    pub layer3: Vec<ResidualBlock>,
    /// Stage conv5_x (stride 32).
    pub layer4: Vec<ResidualBlock>,
    /// Channels of C2..C5.
    pub out_channels: [usize; 4],
}

/// Names of the trainable units from the top, as torchvision's `trainable_layers`
/// counts them (`backbone_utils._resnet_fpn_extractor`).
const TRAINABLE_ORDER: [&str; 5] = ["layer4", "layer3", "layer2", "layer1", "conv1"];

impl ResNet {
    /// Computes the feature maps C2..C5 (outputs of `layer1`..`layer4`).
    ///
    /// # Shapes
    /// - x: `[N, in_channels, H, W]`
    /// - returns `[C2, C3, C4, C5]`, `Ci: [N, out_channels[i-2], ⌈H/2^i⌉, ⌈W/2^i⌉]`
    ///   (strides 4, 8, 16, 32; every stride-2 layer maps a size `h` to `⌊(h-1)/2⌋+1 = ⌈h/2⌉`,
    ///   so odd sizes round up).
    pub fn forward(&self, x: Tensor<4>) -> [Tensor<4>; 4] {
        self.forward_in(x, None)
    }

    /// [`forward`](Self::forward) with group norm's statistics over `region` (the tissue
    /// of inputs with glass, [`NormRegion::excluding_glass`]).
    pub fn forward_in(&self, x: Tensor<4>, region: Option<&NormRegion>) -> [Tensor<4>; 4] {
        let x = relu(self.bn1.forward_in(self.conv1.forward(x), region));
        let x = max_pool2d(
            x,
            MaxPoolOptions::new([3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1]),
        );
        let run = |blocks: &[ResidualBlock], x: Tensor<4>| {
            blocks
                .iter()
                .fold(x, |x, block| block.forward_in(x, region))
        };
        let c2 = run(&self.layer1, x);
        let c3 = run(&self.layer2, c2.clone());
        let c4 = run(&self.layer3, c3.clone());
        let c5 = run(&self.layer4, c4.clone());
        [c2, c3, c4, c5]
    }

    /// Channels of C2..C5.
    pub fn out_channels(&self) -> [usize; 4] {
        self.out_channels
    }

    /// Freezes all but the top `trainable` units, counted as torchvision's
    /// `trainable_layers` does: `layer4`, `layer3`, `layer2`, `layer1`, then the stem
    /// convolution (and with 5, the stem norm too). torchvision's Mask R-CNN fine-tunes
    /// with 3. Frozen batch norms stay frozen whatever the count.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] if `trainable > 5`.
    pub fn with_trainable_layers(mut self, trainable: usize) -> Result<Self, ModelError> {
        if trainable > TRAINABLE_ORDER.len() {
            return Err(ModelError::InvalidConfig(format!(
                "trainable_layers must be in 0..=5, got {trainable}"
            )));
        }
        let frozen = |name: &str| !TRAINABLE_ORDER[..trainable].contains(&name);
        let freeze_layer = |blocks: Vec<ResidualBlock>, name: &str| -> Vec<ResidualBlock> {
            if frozen(name) {
                blocks.into_iter().map(Module::no_grad).collect()
            } else {
                blocks
            }
        };
        self.layer1 = freeze_layer(self.layer1, "layer1");
        self.layer2 = freeze_layer(self.layer2, "layer2");
        self.layer3 = freeze_layer(self.layer3, "layer3");
        self.layer4 = freeze_layer(self.layer4, "layer4");
        if frozen("conv1") {
            self.conv1 = self.conv1.no_grad();
        }
        if trainable < TRAINABLE_ORDER.len() {
            self.bn1 = self.bn1.no_grad();
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiply_accumulates_match_the_published_counts() {
        // torchvision's model table (GFLOPS at 224², counted as multiply-accumulates,
        // the 1000-way classifier included: 0.5 M and 2.0 M of them).
        for (depth, published, fc) in [(18, 1.81e9, 0.512e6), (50, 4.09e9, 2.048e6)] {
            let convs = ResNetConfig::new(depth).macs_per_pixel() * 224.0 * 224.0;
            let rel = (convs + fc - published).abs() / published;
            assert!(
                rel < 0.01,
                "ResNet-{depth}: {convs:.4e} MACs, published {published:.3e}"
            );
        }
        assert_eq!(ResNetConfig::new(19).macs_per_pixel(), 0.0);
    }

    #[test]
    fn out_channels_follow_block_kind() {
        assert_eq!(ResNetConfig::new(18).out_channels(), [64, 128, 256, 512]);
        assert_eq!(ResNetConfig::new(50).out_channels(), [256, 512, 1024, 2048]);
        assert_eq!(
            ResNetConfig::new(101).with_width(8).out_channels(),
            [32, 64, 128, 256]
        );
    }

    #[test]
    fn config_round_trips_through_json() {
        let cfg = ResNetConfig::new(50)
            .with_width(32)
            .with_norm(NormKind::GroupNorm { groups: 16 });
        let json = burn::config::config_to_json(&cfg);
        let back = ResNetConfig::load_binary(json.as_bytes()).unwrap();
        assert_eq!(back.depth, 50);
        assert_eq!(back.width, 32);
        assert_eq!(back.norm, NormKind::GroupNorm { groups: 16 });
        assert_eq!(back.in_channels, 3);
    }

    #[test]
    fn rejects_bad_configs() {
        let device = Device::flex();
        let err = ResNetConfig::new(42).init(&device).unwrap_err();
        assert!(err.to_string().contains("42"), "{err}");
        assert!(ResNetConfig::new(18).with_width(0).init(&device).is_err());
        // width 8 ⇒ a stage of 8 channels cannot be split into 32 groups
        let err = ResNetConfig::new(18)
            .with_width(8)
            .with_norm(NormKind::GroupNorm { groups: 32 })
            .init(&device)
            .unwrap_err();
        assert!(err.to_string().contains("32 groups"), "{err}");
        assert!(ResNetConfig::new(18)
            .with_width(8)
            .init(&device)
            .unwrap()
            .with_trainable_layers(6)
            .is_err());
    }
}
