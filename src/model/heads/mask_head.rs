//! The mask branch (Mask R-CNN, Sec. 3 and Fig. 4 right): four 3×3 convolutions (256) with
//! ReLU on each 14×14 RoIAlign feature, a 2× transposed convolution, and a 1×1 convolution
//! to one 28×28 mask logit map per class.

use burn::{
    config::Config,
    module::Module,
    nn::conv::{Conv2d, ConvTranspose2d, ConvTranspose2dConfig},
    nn::Initializer,
    tensor::{activation::relu, Device, Tensor, TensorData},
};

use crate::model::layers::{conv2d, kaiming_fan_out};
use crate::model::ops::{conv3x3_winograd, winograd_filter};

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

    /// [`forward`](Self::forward) for inference, computed over many regions at once:
    /// channels last on the host, the four 3×3 layers by Winograd F(2×2, 3×3)
    /// ([`conv3x3_winograd`]: 16 matrix products over channels with 2.25× fewer
    /// multiply-adds than the direct convolution), the 2×2 transposed convolution and the
    /// 1×1 logits as one matrix product each. The same values up to float rounding (test:
    /// ≤ 1e-5 relative to the largest logit); on the CPU 1.4× faster than
    /// [`forward`](Self::forward) for 64 regions (`benches/maskrcnn.rs`) and 1.5× faster
    /// than the im2col product it replaced (see `docs/performance.md`).
    /// Regions go through in groups of [`BATCHED_REGIONS`] to bound the buffers. No
    /// gradient flows through it (the features go to the host).
    ///
    /// # Shapes
    /// `x: [K, C, S, S]` → mask logits `[K, num_classes, 2S, 2S]`.
    pub fn forward_batched(&self, x: Tensor<4>) -> Tensor<4> {
        let [k, c, s, _] = x.dims();
        // The 3×3 layers by Winograd F(2×2, 3×3): filters transformed once per call.
        let layers: Vec<(Tensor<3>, Option<Vec<f32>>)> = self
            .mask_fcn
            .iter()
            .map(|conv| {
                let bias = conv
                    .bias
                    .as_ref()
                    .map(|b| b.val().try_into_vec_as::<f32>().expect("readable"));
                (winograd_filter(conv.weight.val()), bias)
            })
            .collect();
        if k <= BATCHED_REGIONS {
            return self.forward_batched_group(x, &layers);
        }
        let groups = (0..k)
            .step_by(BATCHED_REGIONS)
            .map(|start| {
                let end = (start + BATCHED_REGIONS).min(k);
                self.forward_batched_group(x.clone().slice([start..end, 0..c, 0..s, 0..s]), &layers)
            })
            .collect();
        Tensor::cat(groups, 0)
    }

    fn forward_batched_group(
        &self,
        x: Tensor<4>,
        layers: &[(Tensor<3>, Option<Vec<f32>>)],
    ) -> Tensor<4> {
        let [k, c, s, _] = x.dims();
        let pixels = k * s * s;
        let device = x.device();
        // Channels last on the host: [K, S, S, C].
        let mut host = x
            .permute([0, 2, 3, 1])
            .try_into_vec_as::<f32>()
            .expect("readable");
        let mut c = c;
        for (filter, bias) in layers {
            host = conv3x3_winograd(&host, [k, s, s, c], filter, bias.as_deref(), true);
            c = filter.dims()[2];
        }
        let x = Tensor::<2>::from_data(TensorData::new(host, [pixels, c]), &device);
        // conv5_mask, 2×2 at stride 2: out[k, 2y+i, 2x+j, d] = Σ_c x[k, y, x, c]·W[c, d, i, j] + b[d].
        let w = self.conv5_mask.weight.val(); // [C, D, 2, 2]
        let [_, d, sh, sw] = w.dims();
        let mut y = x
            .matmul(w.reshape([c, d * sh * sw]))
            .reshape([pixels, d, sh * sw]);
        if let Some(b) = &self.conv5_mask.bias {
            y = y + b.val().reshape([1, d, 1]);
        }
        // mask_fcn_logits (1×1) before the pixels are put in place: [K·S·S·2·2, classes].
        let y = relu(y).swap_dims(1, 2).reshape([pixels * sh * sw, d]);
        let w = self.mask_fcn_logits.weight.val();
        let [classes, ..] = w.dims();
        let mut logits = y.matmul(w.reshape([classes, d]).transpose());
        if let Some(b) = &self.mask_fcn_logits.bias {
            logits = logits + b.val().reshape([1, classes]);
        }
        // [K, y, x, i, j, classes] → [K, classes, y, i, x, j] → [K, classes, 2S, 2S]
        logits
            .reshape([k, s, s, sh, sw, classes])
            .permute([0, 5, 1, 3, 2, 4])
            .reshape([k, classes, sh * s, sw * s])
    }
}

/// Regions per group of [`MaskHead::forward_batched`]. Measured on the shipped model (2
/// cores, 256 regions): 4 → 2.23, 8 → 2.09, 16 → 4.3, 32 → 5.2 ms per region; the
/// transformed tiles of 16 regions (6.4 MB per buffer) already cost more in page faults
/// and cache misses than the wider products gain.
pub const BATCHED_REGIONS: usize = 8;

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
