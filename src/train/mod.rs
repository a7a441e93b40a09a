//! Training, apart from the models (as torchvision's `references/detection` and
//! detectron2's `engine`): the Mask R-CNN trainer with its augmentation, checkpoints and
//! exact resumption, and the unsupervised DCGMM trainer.
//!
//! | module | trains | key types |
//! | --- | --- | --- |
//! | `maskrcnn` | [`MaskRcnn`](crate::model::MaskRcnn): SGD, warm-up and step decay, random crops with flips, rotations and stain jitter | [`MaskRcnnTrainer`], [`MaskRcnnTrainingConfig`] |
//! | `dcgmm` | [`Dcgmm`](crate::stain::Dcgmm): Adam on the mixture's negative log-likelihood (Zanjani et al. 2018) | [`DcgmmTrainer`], [`DcgmmTrainingConfig`] |
//! | `average` | the mean of trained networks' weights (stochastic weight averaging, Izmailov et al. 2018) | [`average_weights`] |
//! | `augment` | random crops (zoom, synthetic glass), HED stain jitter (Tellez et al. 2018), brightness/contrast, blur | [`scaled_crop`], [`hed_jitter`], [`brightness_contrast`], [`random_blur`] |
//!
//! Both trainers report progress through a callback after each step (a
//! [`StepReport`] or a [`DcgmmStepReport`]) and draw nothing themselves: a command-line
//! program decides whether to show a bar or print lines.

mod augment;
mod average;
mod dcgmm;
mod maskrcnn;

pub use augment::{
    brightness_contrast, hed_jitter, random_blur, random_crop, scaled_crop, CropSpec,
};
pub use average::average_weights;
pub use dcgmm::{
    load_training_images, random_crops, DcgmmStepReport, DcgmmTrainer, DcgmmTrainingConfig,
    DcgmmTrainingReport,
};
pub use maskrcnn::{
    CheckpointHook, MaskRcnnTrainer, MaskRcnnTrainingConfig, RunData, StartMode, StepReport,
    TrainError, TrainingImage,
};
