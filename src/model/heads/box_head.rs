//! The box branch (Fast R-CNN, Girshick 2015; FPN, Sec. 4.2): two fully connected layers
//! (1024) on each 7×7 RoIAlign feature, then class logits and per-class box deltas.

use burn::{
    config::Config,
    module::Module,
    nn::{Linear, LinearConfig},
    tensor::{activation::relu, Device, Tensor},
};

/// Box-head sizes; defaults are torchvision's `TwoMLPHead` + `FastRCNNPredictor`.
#[derive(Config, Debug, PartialEq)]
pub struct BoxHeadConfig {
    /// Channels of the pooled features.
    #[config(default = 256)]
    pub in_channels: usize,
    /// Side of the pooled features (RoIAlign output).
    #[config(default = 7)]
    pub pooled_size: usize,
    /// Width of the two hidden layers.
    #[config(default = 1024)]
    pub representation_size: usize,
    /// Classes including background (nuclei: 2).
    #[config(default = 2)]
    pub num_classes: usize,
}

/// `fc6 → ReLU → fc7 → ReLU`, then `cls_score` and `bbox_pred` (names as torchvision's).
#[derive(Module, Debug)]
pub struct BoxHead {
    /// First hidden layer.
    pub fc6: Linear,
    /// Second hidden layer.
    pub fc7: Linear,
    /// Class logits.
    pub cls_score: Linear,
    /// Per-class box deltas.
    pub bbox_pred: Linear,
}

impl BoxHeadConfig {
    /// Builds the head.
    pub fn init(&self, device: &Device) -> BoxHead {
        let d_in = self.in_channels * self.pooled_size * self.pooled_size;
        let r = self.representation_size;
        BoxHead {
            fc6: LinearConfig::new(d_in, r).init(device),
            fc7: LinearConfig::new(r, r).init(device),
            cls_score: LinearConfig::new(r, self.num_classes).init(device),
            bbox_pred: LinearConfig::new(r, self.num_classes * 4).init(device),
        }
    }
}

impl BoxHead {
    /// # Shapes
    /// `x: [K, C, P, P]` → class logits `[K, num_classes]`, deltas `[K, num_classes · 4]`.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let [k, c, h, w] = x.dims();
        let x = x.reshape([k, c * h * w]);
        let x = relu(self.fc6.forward(x));
        let x = relu(self.fc7.forward(x));
        (self.cls_score.forward(x.clone()), self.bbox_pred.forward(x))
    }
}
