//! Weights in and out: this crate's checkpoints (burnpack `.bpk` and f16 safetensors, each
//! with the `.json` configuration that builds its network) and torchvision-style
//! pretrained weights (ImageNet backbones, COCO Mask R-CNN) through key remaps.

mod checkpoint;
mod weights;

pub use checkpoint::{load_any, load_model, load_model_safetensors, save_model, save_model_f16};
pub use weights::{
    fpn_remaps, is_ignored_key, load_imagenet_backbone, load_safetensors,
    load_torchvision_maskrcnn, maskrcnn_backbone_remaps, maskrcnn_remaps,
    maskrcnn_remaps_without_predictors, parameter_paths, resnet_remaps, LoadReport, NO_REMAPS,
};
