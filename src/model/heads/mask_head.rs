//! The mask branch (Mask R-CNN, Sec. 3 and Fig. 4 right): four 3×3 convolutions (256) with
//! ReLU on each 14×14 RoIAlign feature, a 2× transposed convolution, and a 1×1 convolution
//! to one 28×28 mask logit map per class.

use burn::{
    config::Config,
    module::Module,
    nn::conv::{Conv2d, ConvTranspose2d, ConvTranspose2dConfig},
    nn::Initializer,
    tensor::{activation::relu, ops::PadMode, Device, Tensor},
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

    /// [`forward`](Self::forward) computed with one matrix product per layer over all
    /// regions at once, channels first (`[C, K·S·S]`), instead of a small im2col product
    /// per region: the same values up to summation order, and about twice as fast on the
    /// CPU for the hundreds of detections of a tile (see `docs/performance.md`). Regions go
    /// through in groups of [`BATCHED_REGIONS`] to bound the im2col buffer (9·C·S² floats
    /// per region).
    ///
    /// # Shapes
    /// `x: [K, C, S, S]` → mask logits `[K, num_classes, 2S, 2S]`.
    pub fn forward_batched(&self, x: Tensor<4>) -> Tensor<4> {
        let [k, c, s, _] = x.dims();
        if k <= BATCHED_REGIONS {
            return self.forward_batched_group(x);
        }
        let groups = (0..k)
            .step_by(BATCHED_REGIONS)
            .map(|start| {
                let end = (start + BATCHED_REGIONS).min(k);
                self.forward_batched_group(x.clone().slice([start..end, 0..c, 0..s, 0..s]))
            })
            .collect();
        Tensor::cat(groups, 0)
    }

    fn forward_batched_group(&self, x: Tensor<4>) -> Tensor<4> {
        let [k, _, s, _] = x.dims();
        let pixels = k * s * s;
        // Channels first: [C, K, S, S], so that every layer is W [O, C·kh·kw] · cols.
        let mut x = x.swap_dims(0, 1);
        for conv in &self.mask_fcn {
            let [c, ..] = x.dims();
            let w = conv.weight.val(); // [O, C, kh, kw], "same" padding, stride 1
            let [o, _, kh, kw] = w.dims();
            let padded = x.pad((kw / 2, kw / 2, kh / 2, kh / 2), PadMode::Constant(0.0));
            let taps: Vec<Tensor<4>> = (0..kh * kw)
                .map(|t| {
                    let (dy, dx) = (t / kw, t % kw);
                    padded.clone().slice([0..c, 0..k, dy..dy + s, dx..dx + s])
                })
                .collect();
            let cols = Tensor::stack::<5>(taps, 1).reshape([c * kh * kw, pixels]);
            let mut y = w.reshape([o, c * kh * kw]).matmul(cols); // [O, K·S·S]
            if let Some(b) = &conv.bias {
                y = y + b.val().reshape([o, 1]);
            }
            x = relu(y).reshape([o, k, s, s]);
        }
        // conv5_mask, 2×2 at stride 2: out[k, d, 2y+i, 2x+j] = Σ_c x[c, k, y, x]·W[c, d, i, j] + b[d].
        let [c, ..] = x.dims();
        let w = self.conv5_mask.weight.val(); // [C, D, 2, 2]
        let [_, d, sh, sw] = w.dims();
        let mut y = w
            .reshape([c, d * sh * sw])
            .transpose()
            .matmul(x.reshape([c, pixels])) // [D·2·2, K·S·S]
            .reshape([d, sh * sw * pixels]);
        if let Some(b) = &self.conv5_mask.bias {
            y = y + b.val().reshape([d, 1]);
        }
        // mask_fcn_logits (1×1) before the pixels are put in place: [classes, 2·2·K·S·S].
        let w = self.mask_fcn_logits.weight.val();
        let [classes, ..] = w.dims();
        let mut logits = w.reshape([classes, d]).matmul(relu(y));
        if let Some(b) = &self.mask_fcn_logits.bias {
            logits = logits + b.val().reshape([classes, 1]);
        }
        // [classes, i, j, K, y, x] → [K, classes, y, i, x, j] → [K, classes, 2S, 2S]
        logits
            .reshape([classes, sh, sw, k, s, s])
            .permute([3, 0, 4, 1, 5, 2])
            .reshape([k, classes, sh * s, sw * s])
    }
}

/// Regions per matrix product of [`MaskHead::forward_batched`]: 16 regions of 128 channels at
/// 14×14 make a 14.5 MB im2col buffer and a product 3,136 columns wide. Measured on the
/// shipped model (2 cores): 8 → 89, 16 → 97–103, 32 → 86–88, 64 → 58 GFLOP/s (larger
/// buffers cost page faults and cache misses more than the wider product gains).
pub const BATCHED_REGIONS: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::heads::BoxHeadConfig;
    use burn::{module::Param, tensor::Distribution};

    #[test]
    fn batched_forward_equals_the_convolutions() {
        let device = Device::flex();
        device.seed(7);
        let mut head = MaskHeadConfig::new()
            .with_in_channels(6)
            .with_layers(vec![8, 5])
            .with_dim_reduced(7)
            .with_num_classes(3)
            .init(&device);
        // Non-zero biases, so that their placement is checked too.
        for conv in &mut head.mask_fcn {
            conv.bias = Some(Param::from_tensor(Tensor::random(
                conv.bias.as_ref().unwrap().dims(),
                Distribution::Normal(0.0, 1.0),
                &device,
            )));
        }
        head.conv5_mask.bias = Some(Param::from_tensor(Tensor::random(
            [7],
            Distribution::Normal(0.0, 1.0),
            &device,
        )));
        head.mask_fcn_logits.bias = Some(Param::from_tensor(Tensor::random(
            [3],
            Distribution::Normal(0.0, 1.0),
            &device,
        )));
        // More regions than one group, an odd size.
        for (k, s) in [(BATCHED_REGIONS + 3, 9), (2, 14)] {
            let x = Tensor::<4>::random([k, 6, s, s], Distribution::Normal(0.0, 1.0), &device);
            let a = head.forward(x.clone());
            let b = head.forward_batched(x);
            assert_eq!(a.dims(), [k, 3, 2 * s, 2 * s]);
            assert_eq!(b.dims(), a.dims());
            let diff = (a.clone() - b).abs().max().into_scalar::<f32>();
            let scale = a.abs().max().into_scalar::<f32>();
            assert!(
                scale > 1.0 && diff <= 1e-5 * scale,
                "max |Δ| {diff}, max |x| {scale}"
            );
        }
    }

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
