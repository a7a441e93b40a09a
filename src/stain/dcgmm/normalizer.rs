//! DCGMM as a [`StainNormalizer`].

use burn::{module::Module, tensor::Device};
use image::RgbImage;

use super::{Dcgmm, DcgmmTemplate};
use crate::stain::{StainError, StainNormalizer};

/// DCGMM as a [`StainNormalizer`]: a trained model on a device, and a template.
#[derive(Debug, Clone)]
pub struct DcgmmNormalizer {
    /// The model, in inference mode.
    pub model: Dcgmm,
    /// The device it runs on.
    pub device: Device,
    /// The fitted template (`None` before `fit` or [`with_template`](Self::with_template)).
    pub template: Option<DcgmmTemplate>,
}

impl DcgmmNormalizer {
    /// A normalizer running `model` on `device` (without gradients).
    pub fn new(model: Dcgmm, device: &Device) -> Self {
        let device = device.clone().without_autodiff();
        DcgmmNormalizer {
            model: model.valid().to_device(&device),
            device,
            template: None,
        }
    }

    /// Uses an already fitted template (e.g. loaded with [`DcgmmTemplate::load`]).
    pub fn with_template(mut self, template: DcgmmTemplate) -> Self {
        self.template = Some(template);
        self
    }
}

impl StainNormalizer for DcgmmNormalizer {
    fn name(&self) -> &'static str {
        "dcgmm"
    }

    fn fit(&mut self, template: &RgbImage) -> Result<(), StainError> {
        self.template = Some(self.model.fit_template(template)?);
        Ok(())
    }

    fn transform(&self, image: &RgbImage) -> Result<RgbImage, StainError> {
        let template = self
            .template
            .as_ref()
            .ok_or(StainError::NotFitted { method: "dcgmm" })?;
        self.model.normalize(image, template)
    }
}
