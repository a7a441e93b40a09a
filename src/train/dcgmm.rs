//! Unsupervised training of the [`Dcgmm`] on random crops of any H&E images.
//!
//! Each step draws `batch_size` crops (image chosen uniformly, position uniform, then one of
//! the 8 flips/rotations of the square), computes the DCGMM loss (the mixture's negative
//! log-likelihood, Zanjani et al. 2018, Sec. 2.2) and takes an Adam step with Zanjani et
//! al.'s settings (lr 1e-4, β₁ 0.9, β₂ 0.999, ε 1e-8; Burn's default ε is 1e-5).
//! Everything random is seeded: the device with [`Device::seed`] and the crops with a
//! [`StdRng`].

use std::{
    ops::Range,
    path::{Path, PathBuf},
    time::Instant,
};

use burn::{
    optim::{AdamConfig, GradientsParams},
    prelude::*,
};
use image::{imageops, RgbImage};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::data::{image_inputs, read_rgb};
use crate::stain::{hsd::hsd_tensor, Dcgmm, DcgmmConfig, StainError};

/// Training settings, with Zanjani et al. (2018)'s optimizer.
#[derive(Config, Debug)]
pub struct DcgmmTrainingConfig {
    /// Optimizer steps.
    #[config(default = 2000)]
    pub steps: usize,
    /// Side of the square random crops (a multiple of the U-Net's `2^depth`).
    #[config(default = 128)]
    pub crop_size: usize,
    /// Crops per step.
    #[config(default = 8)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[config(default = 1e-4)]
    pub learning_rate: f64,
    /// Adam β₁.
    #[config(default = 0.9)]
    pub beta_1: f32,
    /// Adam β₂.
    #[config(default = 0.999)]
    pub beta_2: f32,
    /// Adam ε.
    #[config(default = 1e-8)]
    pub epsilon: f32,
    /// Save a checkpoint every this many steps (0: only at the end), when a checkpoint
    /// path is set ([`DcgmmTrainer::with_checkpoint`]).
    #[config(default = 0)]
    pub checkpoint_every: usize,
    /// Seed of the weight initialization and the crop sampler.
    #[config(default = 42)]
    pub seed: u64,
}

/// What one DCGMM training step did, for progress reports.
#[derive(Debug, Clone, PartialEq)]
pub struct DcgmmStepReport {
    /// 1-based step number.
    pub step: usize,
    /// Steps in the run.
    pub steps: usize,
    /// Mean negative log-likelihood per pixel of the step's batch.
    pub nll: f32,
    /// Seconds since training started.
    pub elapsed: f64,
    /// The checkpoint written after this step, if one was.
    pub checkpoint: Option<PathBuf>,
}

/// What training did: the loss curve and the time it took.
#[derive(Debug, Clone, Default)]
pub struct DcgmmTrainingReport {
    /// `(step, mean NLL per pixel of that step's batch)`, steps counted from 1.
    pub curve: Vec<(usize, f32)>,
    /// Wall time of the training loop, seconds.
    pub seconds: f64,
    /// Checkpoints written.
    pub checkpoints: Vec<PathBuf>,
}

impl DcgmmTrainingReport {
    /// Mean NLL over the steps in `range` (1-based, as in [`curve`](Self::curve)); `None`
    /// if the curve has no step there.
    pub fn mean_nll(&self, range: Range<usize>) -> Option<f32> {
        let v: Vec<f32> = self
            .curve
            .iter()
            .filter(|(s, _)| range.contains(s))
            .map(|&(_, l)| l)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f32>() / v.len() as f32)
    }
}

/// Trains a [`Dcgmm`] on a set of images.
#[derive(Debug, Clone)]
pub struct DcgmmTrainer {
    /// The model to build and train.
    pub model: DcgmmConfig,
    /// Training settings.
    pub training: DcgmmTrainingConfig,
    images: Vec<RgbImage>,
    checkpoint: Option<PathBuf>,
}

impl DcgmmTrainer {
    /// A trainer; an error if there are no images, an image is smaller than the crop, the
    /// crop is not a multiple of `2^depth`, or a setting is zero.
    pub fn new(
        model: DcgmmConfig,
        training: DcgmmTrainingConfig,
        images: Vec<RgbImage>,
    ) -> Result<Self, StainError> {
        model.validate()?;
        let crop = training.crop_size;
        let multiple = 1usize << model.unet.depth;
        if crop == 0 || !crop.is_multiple_of(multiple) {
            return Err(StainError::Config(format!(
                "crop size {crop} must be a positive multiple of 2^depth = {multiple}"
            )));
        }
        if training.batch_size == 0 {
            return Err(StainError::Config("batch size must be ≥ 1".into()));
        }
        if training.learning_rate.is_nan() || training.learning_rate <= 0.0 {
            return Err(StainError::Config(format!(
                "learning rate must be positive (got {})",
                training.learning_rate
            )));
        }
        if images.is_empty() {
            return Err(StainError::TrainingData("no training images".into()));
        }
        if let Some((i, img)) = images
            .iter()
            .enumerate()
            .find(|(_, im)| (im.width() as usize) < crop || (im.height() as usize) < crop)
        {
            return Err(StainError::TrainingData(format!(
                "image {i} is {}x{}, smaller than the {crop}x{crop} crop",
                img.width(),
                img.height()
            )));
        }
        Ok(DcgmmTrainer {
            model,
            training,
            images,
            checkpoint: None,
        })
    }

    /// Saves the model to `path` (see [`Dcgmm::save`]) every
    /// [`checkpoint_every`](DcgmmTrainingConfig::checkpoint_every) steps and at the end.
    pub fn with_checkpoint(mut self, path: impl Into<PathBuf>) -> Self {
        self.checkpoint = Some(path.into());
        self
    }

    /// The training images.
    pub fn images(&self) -> &[RgbImage] {
        &self.images
    }

    /// Trains from freshly initialized weights on `device` (gradients are enabled on it
    /// here), calling `on_step` after every step. Returns the model in inference mode and
    /// the report.
    pub fn train(
        &self,
        device: &Device,
        on_step: impl FnMut(&DcgmmStepReport),
    ) -> Result<(Dcgmm, DcgmmTrainingReport), StainError> {
        device.seed(self.training.seed);
        let device = device.clone().autodiff();
        let model = self.model.init(&device)?;
        self.train_model(model, &device, on_step)
    }

    /// Continues training `model` (e.g. loaded from a checkpoint) on `device`, calling
    /// `on_step` after every step.
    pub fn train_model(
        &self,
        model: Dcgmm,
        device: &Device,
        mut on_step: impl FnMut(&DcgmmStepReport),
    ) -> Result<(Dcgmm, DcgmmTrainingReport), StainError> {
        let t = &self.training;
        let device = device.clone().autodiff();
        let mut model = model.to_device(&device).train();
        let mut optimizer = AdamConfig::new()
            .with_beta_1(t.beta_1)
            .with_beta_2(t.beta_2)
            .with_epsilon(t.epsilon)
            .init();
        let mut rng = StdRng::seed_from_u64(t.seed);
        let mut report = DcgmmTrainingReport::default();
        let start = Instant::now();
        for step in 1..=t.steps {
            let crops = random_crops(&self.images, t.crop_size, t.batch_size, &mut rng);
            let x = hsd_tensor(&crops, &device);
            let loss = model.forward(x).nll;
            let nll: f32 = loss.clone().into_scalar();
            if !nll.is_finite() {
                return Err(StainError::Diverged { step, nll });
            }
            report.curve.push((step, nll));
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(t.learning_rate, model, grads);
            let mut checkpoint = None;
            if let Some(path) = &self.checkpoint {
                let periodic = t.checkpoint_every > 0 && step % t.checkpoint_every == 0;
                if periodic || step == t.steps {
                    model.valid().save(path)?;
                    if !report.checkpoints.contains(path) {
                        report.checkpoints.push(path.clone());
                    }
                    checkpoint = Some(path.clone());
                }
            }
            on_step(&DcgmmStepReport {
                step,
                steps: t.steps,
                nll,
                elapsed: start.elapsed().as_secs_f64(),
                checkpoint,
            });
        }
        report.seconds = start.elapsed().as_secs_f64();
        Ok((model.valid(), report))
    }
}

/// `count` random square crops of side `size`, each from an image drawn uniformly, at a
/// uniform position, then one of the 8 symmetries of the square (rotation by a multiple of
/// 90° and an optional horizontal flip). Every image must be at least `size` on each side.
pub fn random_crops(
    images: &[RgbImage],
    size: usize,
    count: usize,
    rng: &mut StdRng,
) -> Vec<RgbImage> {
    let size = size as u32;
    (0..count)
        .map(|_| {
            let img = &images[rng.random_range(0..images.len())];
            let x = rng.random_range(0..=img.width() - size);
            let y = rng.random_range(0..=img.height() - size);
            let mut crop = imageops::crop_imm(img, x, y, size, size).to_image();
            crop = match rng.random_range(0..4) {
                1 => imageops::rotate90(&crop),
                2 => imageops::rotate180(&crop),
                3 => imageops::rotate270(&crop),
                _ => crop,
            };
            if rng.random_bool(0.5) {
                imageops::flip_horizontal_in_place(&mut crop);
            }
            crop
        })
        .collect()
}

/// Every image (PNG, JPEG, TIFF) of the given folders (or single files), for training.
pub fn load_training_images(paths: &[impl AsRef<Path>]) -> Result<Vec<RgbImage>, StainError> {
    let mut images = Vec::new();
    for p in paths {
        for file in image_inputs(p.as_ref())? {
            images.push(read_rgb(&file)?);
        }
    }
    if images.is_empty() {
        return Err(StainError::TrainingData("no images found".into()));
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_are_seeded_and_come_from_the_images() {
        let img = RgbImage::from_fn(20, 10, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut a = StdRng::seed_from_u64(5);
        let mut b = StdRng::seed_from_u64(5);
        let ca = random_crops(std::slice::from_ref(&img), 8, 6, &mut a);
        let cb = random_crops(std::slice::from_ref(&img), 8, 6, &mut b);
        assert_eq!(ca, cb);
        for c in &ca {
            assert_eq!(c.dimensions(), (8, 8));
            // A rigid copy of an 8×8 window: the x / y ramps span exactly 7 values.
            let xs: Vec<u8> = c.pixels().map(|p| p[0]).collect();
            let ys: Vec<u8> = c.pixels().map(|p| p[1]).collect();
            assert_eq!(xs.iter().max().unwrap() - xs.iter().min().unwrap(), 7);
            assert_eq!(ys.iter().max().unwrap() - ys.iter().min().unwrap(), 7);
            assert!(c.pixels().all(|p| p[2] == 7));
        }
    }

    #[test]
    fn trainer_rejects_bad_settings() {
        let img = RgbImage::new(32, 32);
        let m = DcgmmConfig::new().with_unet(crate::stain::UNetConfig::new().with_depth(2));
        let t = DcgmmTrainingConfig::new().with_crop_size(30);
        assert!(matches!(
            DcgmmTrainer::new(m.clone(), t, vec![img.clone()]),
            Err(StainError::Config(_))
        ));
        let t = DcgmmTrainingConfig::new().with_crop_size(64);
        assert!(matches!(
            DcgmmTrainer::new(m.clone(), t.clone(), vec![img]),
            Err(StainError::TrainingData(_))
        ));
        assert!(matches!(
            DcgmmTrainer::new(m, t, vec![]),
            Err(StainError::TrainingData(_))
        ));
    }
}
