//! Training Mask R-CNN: SGD with momentum and weight decay (Jung et al. 2019: lr 1e-3,
//! momentum 0.9), linear warm-up and step decay, per-tensor gradient clipping, batches of
//! random crops with the paper's augmentation (flips and rotations by multiples of 90°)
//! plus stain jitter, atomic checkpoints and exact resumption.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::{
    config::Config,
    grad_clipping::GradientClippingConfig,
    module::Module,
    optim::{decay::WeightDecayConfig, momentum::MomentumConfig, GradientsParams, SgdConfig},
    tensor::Device,
};
use image::RgbImage;
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::augment::{hed_jitter, random_crop};
use crate::{
    data::LabelMap,
    instances::Instances,
    model::{
        io::{load_model, save_model},
        MaskRcnn, MaskRcnnConfig, ModelError, TrainingTarget,
    },
    postprocess::Dihedral,
};

/// Optimization and data settings; defaults follow the paper where it says (SGD lr 1e-3,
/// momentum 0.9) and torchvision's reference recipe elsewhere.
#[derive(Config, Debug, PartialEq)]
pub struct MaskRcnnTrainingConfig {
    /// Peak learning rate.
    #[config(default = 1e-3)]
    pub lr: f64,
    /// SGD momentum (dampening 0, as PyTorch).
    #[config(default = 0.9)]
    pub momentum: f64,
    /// L2 weight decay.
    #[config(default = 1e-4)]
    pub weight_decay: f64,
    /// Steps of linear warm-up from `warmup_factor · lr` to `lr`.
    #[config(default = 200)]
    pub warmup_steps: usize,
    /// Starting fraction of the learning rate during warm-up.
    #[config(default = 0.001)]
    pub warmup_factor: f64,
    /// Steps at which the learning rate is multiplied by `lr_gamma`.
    #[config(default = "Vec::new()")]
    pub lr_steps: Vec<usize>,
    /// Step-decay factor.
    #[config(default = 0.1)]
    pub lr_gamma: f64,
    /// Gradient-norm clip, applied to each parameter tensor separately (Burn's clipping);
    /// `None` disables it.
    #[config(default = "Some(10.0)")]
    pub grad_clip_norm: Option<f32>,
    /// Total optimizer steps.
    #[config(default = 1000)]
    pub steps: usize,
    /// Crops per step.
    #[config(default = 2)]
    pub batch_size: usize,
    /// Side of the square training crops (a multiple of 32).
    #[config(default = 256)]
    pub crop_size: u32,
    /// Random flips and rotations by multiples of 90° (the dihedral group).
    #[config(default = true)]
    pub flip_rotate: bool,
    /// σ of the HED stain jitter (0 disables it).
    #[config(default = 0.05)]
    pub stain_jitter: f32,
    /// Write a checkpoint every this many steps (0: only at the end).
    #[config(default = 500)]
    pub checkpoint_every: usize,
    /// Seed of every random choice (crops, augmentation, sampling).
    #[config(default = 0)]
    pub seed: u64,
}

impl MaskRcnnTrainingConfig {
    /// The learning rate at `step` (0-based): linear warm-up, then step decay.
    pub fn lr_at(&self, step: usize) -> f64 {
        let mut lr = self.lr;
        if step < self.warmup_steps {
            let alpha = step as f64 / self.warmup_steps as f64;
            lr *= self.warmup_factor * (1.0 - alpha) + alpha;
        }
        let decays = self.lr_steps.iter().filter(|&&s| step >= s).count();
        lr * self.lr_gamma.powi(decays as i32)
    }

    fn check(&self) -> Result<(), ModelError> {
        if self.crop_size == 0
            || !self.crop_size.is_multiple_of(32)
            || self.batch_size == 0
            || self.lr.is_nan()
            || self.lr <= 0.0
        {
            return Err(ModelError::InvalidConfig(format!(
                "training: crop size {} must be a positive multiple of 32, batch size {} positive, lr {} positive",
                self.crop_size, self.batch_size, self.lr
            )));
        }
        Ok(())
    }
}

/// One annotated training image.
#[derive(Debug, Clone)]
pub struct TrainingImage {
    /// Name (file stem), for messages.
    pub id: String,
    /// The H&E image.
    pub image: RgbImage,
    /// Its nuclei.
    pub labels: LabelMap,
}

impl TrainingImage {
    /// Loads annotated samples for training, normalizing each image with `normalizer` when
    /// given (the network then has to see normalized images at inference too).
    pub fn load_all(
        samples: &[crate::data::SampleInfo],
        normalizer: Option<&dyn crate::stain::StainNormalizer>,
    ) -> crate::Result<Vec<TrainingImage>> {
        samples
            .iter()
            .map(|info| {
                let (image, labels) = info.load_annotated("training")?;
                let image = match normalizer {
                    Some(n) => n.transform(&image)?,
                    None => image,
                };
                Ok(TrainingImage {
                    id: info.id.clone(),
                    image,
                    labels,
                })
            })
            .collect()
    }
}

/// What one training step did.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// 1-based step number.
    pub step: usize,
    /// Learning rate used.
    pub lr: f64,
    /// The five loss terms.
    pub losses: [(&'static str, f32); 5],
    /// Their sum.
    pub total: f32,
    /// Wall time of the step.
    pub seconds: f64,
}

/// Why training stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A loss became NaN or infinite; the model was not updated, and the last checkpoint
    /// (if any) is the last good state.
    #[error("non-finite loss at step {step}: {losses}; last good checkpoint: {checkpoint}")]
    NonFinite {
        /// The step.
        step: usize,
        /// The loss terms, formatted.
        losses: String,
        /// The last checkpoint written, or "none".
        checkpoint: String,
    },
    /// Building, saving or loading the model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// No training image.
    #[error("no training images")]
    NoData,
}

/// Trains a [`MaskRcnn`] on an autodiff device. See the module docs.
pub struct MaskRcnnTrainer {
    /// Its settings.
    pub config: MaskRcnnTrainingConfig,
    model: MaskRcnn,
    optim: burn::optim::ModuleOptimizer,
    step: usize,
    checkpoint_dir: Option<PathBuf>,
    last_checkpoint: Option<PathBuf>,
}

const STATE_FILE: &str = "trainer.json";
const MODEL_FILE: &str = "model.bpk";
const OPTIM_FILE: &str = "optimizer.bpk";
const LATEST: &str = "latest";

#[derive(serde::Serialize, serde::Deserialize)]
struct TrainerState {
    step: usize,
}

impl MaskRcnnTrainer {
    /// A trainer for `model` (moved to `device.autodiff()`), checkpointing into
    /// `checkpoint_dir` when given.
    pub fn new(
        model: MaskRcnn,
        config: MaskRcnnTrainingConfig,
        device: &Device,
        checkpoint_dir: Option<PathBuf>,
    ) -> Result<Self, ModelError> {
        config.check()?;
        let model = model.fork(&device.clone().autodiff()).train();
        let optim = Self::optimizer(&config);
        Ok(MaskRcnnTrainer {
            config,
            model,
            optim,
            step: 0,
            checkpoint_dir,
            last_checkpoint: None,
        })
    }

    /// A fresh trainer for the network `model` describes, or with `resume` the run saved in
    /// `checkpoint_dir` continued (its own architecture; `model` is then not used). Either
    /// way it checkpoints into `checkpoint_dir`: what the examples' `--resume` does.
    pub fn start(
        model: &MaskRcnnConfig,
        config: MaskRcnnTrainingConfig,
        device: &Device,
        checkpoint_dir: PathBuf,
        resume: bool,
    ) -> Result<Self, ModelError> {
        if resume {
            Self::resume(config, device, checkpoint_dir)
        } else {
            Self::new(model.init(device)?, config, device, Some(checkpoint_dir))
        }
    }

    /// Continues from the latest checkpoint in `checkpoint_dir` (model, optimizer state and
    /// step), so that the run goes on exactly as if it had not stopped.
    pub fn resume(
        config: MaskRcnnTrainingConfig,
        device: &Device,
        checkpoint_dir: PathBuf,
    ) -> Result<Self, ModelError> {
        config.check()?;
        let latest = std::fs::read_to_string(checkpoint_dir.join(LATEST)).map_err(|e| {
            ModelError::WeightFile {
                path: checkpoint_dir.join(LATEST),
                reason: format!("no checkpoint to resume from: {e}"),
            }
        })?;
        let dir = checkpoint_dir.join(latest.trim());
        let model = load_model(&dir.join(MODEL_FILE), &device.clone().autodiff())?.train();
        let optim = Self::optimizer(&config)
            .load(dir.join(OPTIM_FILE))
            .map_err(|e| ModelError::WeightFile {
                path: dir.join(OPTIM_FILE),
                reason: e.to_string(),
            })?;
        let state_path = dir.join(STATE_FILE);
        let state: TrainerState =
            crate::io::read_json(&state_path).map_err(|e| ModelError::WeightFile {
                path: state_path.clone(),
                reason: e.to_string(),
            })?;
        Ok(MaskRcnnTrainer {
            config,
            model,
            optim,
            step: state.step,
            checkpoint_dir: Some(checkpoint_dir),
            last_checkpoint: Some(dir),
        })
    }

    fn optimizer(config: &MaskRcnnTrainingConfig) -> burn::optim::ModuleOptimizer {
        SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new()
                    .with_momentum(config.momentum)
                    .with_dampening(0.0),
            ))
            .with_weight_decay(Some(WeightDecayConfig::new(config.weight_decay as f32)))
            .with_gradient_clipping(config.grad_clip_norm.map(GradientClippingConfig::Norm))
            .init()
    }

    /// Steps done so far.
    pub fn step(&self) -> usize {
        self.step
    }

    /// The model being trained.
    pub fn model(&self) -> &MaskRcnn {
        &self.model
    }

    /// The trained model, for inference (no autodiff).
    pub fn into_model(self) -> MaskRcnn {
        self.model.valid()
    }

    /// A batch of augmented crops with their targets, reproducible from the seed and step.
    pub fn sample_batch(
        &self,
        data: &[TrainingImage],
        rng: &mut impl Rng,
    ) -> (Vec<RgbImage>, Vec<TrainingTarget>) {
        let c = &self.config;
        let mut images = Vec::with_capacity(c.batch_size);
        let mut targets = Vec::with_capacity(c.batch_size);
        for _ in 0..c.batch_size {
            let item = &data[rng.random_range(0..data.len())];
            let (mut crop, labels) = random_crop(&item.image, &item.labels, c.crop_size, rng);
            let mut instances = Instances::from_label_map(&labels);
            if c.flip_rotate {
                let t = Dihedral::ALL[rng.random_range(0..8)];
                crop = t.apply_image(&crop);
                instances = t.apply_instances(&instances);
            }
            crop = hed_jitter(&crop, c.stain_jitter, rng);
            images.push(crop);
            targets.push(TrainingTarget::from_instances(&instances));
        }
        (images, targets)
    }

    /// Runs one optimizer step on a batch drawn from `data`.
    pub fn train_step(&mut self, data: &[TrainingImage]) -> Result<StepReport, TrainError> {
        if data.is_empty() {
            return Err(TrainError::NoData);
        }
        let start = Instant::now();
        // One RNG per step, derived from the seed: resuming at step k draws what an
        // uninterrupted run would have drawn.
        let mut rng = StdRng::seed_from_u64(
            self.config.seed ^ (self.step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let (images, targets) = self.sample_batch(data, &mut rng);
        let device = self.model.device();
        let refs: Vec<&RgbImage> = images.iter().collect();
        let (x, _) = self.model.preprocess(&refs, &device);
        let losses = self.model.forward_train(x, &targets, &mut rng);
        let values = losses.values();
        let total = losses.total();
        let total_value: f32 = values.iter().map(|v| v.1).sum();
        if !values.iter().all(|v| v.1.is_finite()) {
            return Err(TrainError::NonFinite {
                step: self.step + 1,
                losses: values
                    .iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                checkpoint: self
                    .last_checkpoint
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "none".into()),
            });
        }
        let lr = self.config.lr_at(self.step);
        let grads = GradientsParams::from_grads(total.backward(), &self.model);
        // `step` takes the module by value; the clone shares its parameter tensors.
        self.model = self.optim.step(lr, self.model.clone(), grads);
        self.step += 1;
        if self.config.checkpoint_every > 0
            && self.step.is_multiple_of(self.config.checkpoint_every)
        {
            self.checkpoint()?;
        }
        Ok(StepReport {
            step: self.step,
            lr,
            losses: values,
            total: total_value,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Scores the current model on annotated images: each image through
    /// [`Pipeline`](crate::pipeline::Pipeline) without test-time augmentation (500 px tiles),
    /// normalized by `normalizer` when given.
    pub fn validate(
        &self,
        samples: &[crate::data::SampleInfo],
        normalizer: Option<Box<dyn crate::stain::StainNormalizer>>,
    ) -> crate::Result<crate::metrics::Evaluation> {
        use crate::pipeline::{Pipeline, Preset};
        let model = self.model.valid();
        let preset = if normalizer.is_some() {
            Preset::NucSegP
        } else {
            Preset::NucSegNp
        };
        Pipeline::new(preset.config(), &model, normalizer)?.evaluate(samples, None, |_, _, _, _| {})
    }

    /// Trains until `config.steps`, calling `on_step` after each step, and writes a final
    /// checkpoint.
    pub fn train(
        &mut self,
        data: &[TrainingImage],
        mut on_step: impl FnMut(&StepReport),
    ) -> Result<(), TrainError> {
        while self.step < self.config.steps {
            let report = self.train_step(data)?;
            on_step(&report);
        }
        if self.checkpoint_dir.is_some() {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Writes a checkpoint now: `<dir>/step-<n>/` (model, optimizer, step), each file
    /// written to a temporary name and renamed, then `<dir>/latest` switched to it
    /// atomically. The two most recent checkpoints are kept.
    pub fn checkpoint(&mut self) -> Result<Option<PathBuf>, ModelError> {
        let Some(root) = self.checkpoint_dir.clone() else {
            return Ok(None);
        };
        let name = format!("step-{:07}", self.step);
        let dir = root.join(&name);
        let io = |p: &Path| {
            let path = p.to_path_buf();
            move |e: std::io::Error| ModelError::WeightFile {
                path,
                reason: e.to_string(),
            }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        save_model(&self.model.valid(), &dir.join(MODEL_FILE))?;
        let optim_path = dir.join(OPTIM_FILE);
        crate::io::write_atomic_via(&optim_path, |tmp| self.optim.save(tmp))
            .map_err(io(&optim_path))?;
        let state_path = dir.join(STATE_FILE);
        crate::io::write_json(&state_path, &TrainerState { step: self.step })
            .map_err(io(&state_path))?;
        let latest = root.join(LATEST);
        crate::io::write_atomic_bytes(&latest, name.as_bytes()).map_err(io(&latest))?;
        // Keep the previous checkpoint; delete older ones.
        if let Ok(entries) = std::fs::read_dir(&root) {
            let mut steps: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir()
                        && p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("step-"))
                })
                .collect();
            steps.sort();
            for old in steps.iter().rev().skip(2) {
                let _ = std::fs::remove_dir_all(old);
            }
        }
        self.last_checkpoint = Some(dir.clone());
        Ok(Some(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_rate_schedule() {
        let c = MaskRcnnTrainingConfig::new()
            .with_warmup_steps(10)
            .with_lr_steps(vec![100, 200]);
        assert!((c.lr_at(0) - 1e-6).abs() < 1e-12);
        assert!((c.lr_at(5) - 1e-3 * (0.001 * 0.5 + 0.5)).abs() < 1e-12);
        assert_eq!(c.lr_at(10), 1e-3);
        assert!((c.lr_at(150) - 1e-4).abs() < 1e-12);
        assert!((c.lr_at(250) - 1e-5).abs() < 1e-12);
    }
}
