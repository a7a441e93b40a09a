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

use super::augment::{brightness_contrast, hed_jitter, random_blur, scaled_crop, CropSpec};
use crate::{
    data::LabelMap,
    instances::Instances,
    model::{
        heads::RoiHeadsConfig,
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
    /// Zoom range of the crops, drawn log-uniformly (`(1, 1)`: none; `(0.8, 1.25)`: nuclei
    /// 20 % smaller to 25 % larger).
    #[config(default = "(1.0, 1.0)")]
    pub scale_range: (f32, f32),
    /// Probability that a crop may reach past the image onto synthetic glass.
    #[config(default = 0.0)]
    pub glass_probability: f32,
    /// How far such a crop may reach past each edge, as a fraction of its side.
    #[config(default = 0.5)]
    pub glass_margin: f32,
    /// σ of the brightness/contrast jitter ([`brightness_contrast`]; 0 disables it).
    #[config(default = 0.0)]
    pub brightness_contrast: f32,
    /// Probability of a Gaussian blur of σ 0.5–1.5 px.
    #[config(default = 0.0)]
    pub blur_probability: f32,
    /// Write a checkpoint every this many steps (0: only at the end).
    #[config(default = 500)]
    pub checkpoint_every: usize,
    /// Checkpoints from this step on are all kept (snapshots for weight averaging, as in
    /// stochastic weight averaging, Izmailov et al. 2018: average them with
    /// [`average_weights`](crate::train::average_weights)); before it only the latest two
    /// are. `None`: only the latest two are ever kept.
    #[config(default = "None")]
    pub keep_checkpoints_from: Option<usize>,
    /// Seed of every random choice (crops, augmentation, sampling).
    #[config(default = 0)]
    pub seed: u64,
    /// Train only the dense head ([`MaskRcnnConfig::dense_head`]) on its own loss, every
    /// other part frozen: adds the dense cue to a trained network without changing what it
    /// detects.
    #[config(default = false)]
    pub dense_only: bool,
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

    /// Rejects non-finite and absurd values up front, so that a run cannot start that
    /// would only produce NaN weights.
    pub fn check(&self) -> Result<(), ModelError> {
        let range = |name: &str, v: f64, lo: f64, hi: f64, lo_open: bool| {
            let ok = v.is_finite() && v <= hi && if lo_open { v > lo } else { v >= lo };
            let open = if lo_open { "(" } else { "[" };
            (!ok).then(|| format!("{name} = {v} must lie in {open}{lo}, {hi}]"))
        };
        let problems: Vec<String> = [
            range("lr", self.lr, 0.0, 1.0, true),
            range("momentum", self.momentum, 0.0, 0.999, false),
            range("weight decay", self.weight_decay, 0.0, 0.1, false),
            range("warm-up factor", self.warmup_factor, 0.0, 1.0, true),
            range("lr gamma", self.lr_gamma, 0.0, 1.0, true),
            range(
                "stain jitter",
                f64::from(self.stain_jitter),
                0.0,
                1.0,
                false,
            ),
            self.grad_clip_norm
                .and_then(|c| range("gradient clip norm", f64::from(c), 0.0, 1e6, true)),
            (self.crop_size == 0 || !self.crop_size.is_multiple_of(32) || self.crop_size > 4096)
                .then(|| {
                    format!(
                        "crop size {} must be a multiple of 32 in 32..=4096",
                        self.crop_size
                    )
                }),
            {
                let (a, b) = self.scale_range;
                let ok = a.is_finite() && b.is_finite() && a >= 0.25 && b <= 4.0 && a <= b;
                (!ok).then(|| format!("scale range ({a}, {b}) must satisfy 0.25 ≤ low ≤ high ≤ 4"))
            },
            range(
                "glass probability",
                f64::from(self.glass_probability),
                0.0,
                1.0,
                false,
            ),
            range(
                "glass margin",
                f64::from(self.glass_margin),
                0.0,
                1.0,
                false,
            ),
            range(
                "brightness/contrast jitter",
                f64::from(self.brightness_contrast),
                0.0,
                0.5,
                false,
            ),
            range(
                "blur probability",
                f64::from(self.blur_probability),
                0.0,
                1.0,
                false,
            ),
            (self.batch_size == 0 || self.batch_size > 1024)
                .then(|| format!("batch size {} must lie in 1..=1024", self.batch_size)),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !problems.is_empty() {
            return Err(ModelError::InvalidConfig(format!(
                "training: {}",
                problems.join("; ")
            )));
        }
        Ok(())
    }

    /// The settings that must agree for a resumed run to continue the saved one exactly,
    /// as `"name saved → now"` for each that differs (the total and checkpoint period may
    /// change: a run can be extended).
    fn differences(&self, saved: &MaskRcnnTrainingConfig) -> Vec<String> {
        let mut a = saved.clone();
        a.steps = self.steps;
        a.checkpoint_every = self.checkpoint_every;
        a.keep_checkpoints_from = self.keep_checkpoints_from;
        if &a == self {
            return Vec::new();
        }
        let (old, new) = (
            serde_json::to_value(&a).unwrap_or_default(),
            serde_json::to_value(self).unwrap_or_default(),
        );
        let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
            return vec!["training settings".into()];
        };
        old.iter()
            .filter(|(k, v)| new.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k} {v} → {}", new.get(k).cloned().unwrap_or_default()))
            .collect()
    }
}

/// How [`MaskRcnnTrainer::start`] treats a checkpoint folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// A new run; a folder that already holds checkpoints is an error
    /// ([`ModelError::CheckpointsExist`]), so an old run is never mixed with the new one.
    Fresh,
    /// A new run that first deletes the folder's old checkpoints.
    Replace,
    /// Continue the run saved in the folder. Its training settings, data and normalizer
    /// must equal the new ones ([`ModelError::ResumeMismatch`]) unless `allow_changes`.
    Resume {
        /// Accept settings that differ from the saved run's.
        allow_changes: bool,
    },
}

/// What a run trains on, saved with each checkpoint and compared on resume.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunData {
    /// The training images' ids, in order.
    pub images: Vec<String>,
    /// The stain normalizer they were normalized with (its name and settings), or "none".
    pub normalizer: String,
    /// The weights the run started from ([`MaskRcnnTrainer::init_from`]), if not random.
    #[serde(default)]
    pub init: Option<String>,
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
    /// The loss terms ([`MaskRcnnLosses::values`](crate::model::MaskRcnnLosses::values);
    /// `loss_dense` alone when training only the dense head).
    pub losses: Vec<(&'static str, f32)>,
    /// Their sum.
    pub total: f32,
    /// Wall time of the step.
    pub seconds: f64,
}

/// Why training stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A loss, or a parameter after an update, became NaN or infinite; nothing was
    /// written, and the last checkpoint (if any) is the last good state.
    #[error("non-finite values at step {step} ({losses}); last good checkpoint: {checkpoint}")]
    NonFinite {
        /// The step.
        step: usize,
        /// The loss terms, formatted, or which values were not finite.
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
    data: Option<RunData>,
    /// Adds the caller's files to every checkpoint ([`on_checkpoint`](Self::on_checkpoint)).
    checkpoint_hook: Option<CheckpointHook>,
}

/// Writes files of the caller's into a checkpoint folder ([`MaskRcnnTrainer::on_checkpoint`]).
pub type CheckpointHook = Box<dyn Fn(&Path) -> crate::Result<()>>;

const STATE_FILE: &str = "trainer.json";
const MODEL_FILE: &str = "model.bpk";
const OPTIM_FILE: &str = "optimizer.bpk";
const LATEST: &str = "latest";

#[derive(serde::Serialize, serde::Deserialize)]
struct TrainerState {
    step: usize,
    /// The settings of the run (absent in checkpoints of older versions; settings added
    /// since a checkpoint was written take their defaults, see [`saved_config`]).
    #[serde(default)]
    config: Option<serde_json::Value>,
    /// Its data (absent in checkpoints of older versions).
    #[serde(default)]
    data: Option<RunData>,
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
        let model = Self::trainable(model.fork(&device.clone().autodiff()).train(), &config)?;
        let optim = Self::optimizer(&config);
        Ok(MaskRcnnTrainer {
            config,
            model,
            optim,
            step: 0,
            checkpoint_dir,
            last_checkpoint: None,
            data: None,
            checkpoint_hook: None,
        })
    }

    /// A trainer for the network `model` describes, or for the run saved in
    /// `checkpoint_dir` (its own architecture; `model` is then not used), as `mode` says;
    /// either way it checkpoints into `checkpoint_dir` and records `data` with each
    /// checkpoint. What the examples' `--resume` and `--overwrite` do.
    pub fn start(
        model: &MaskRcnnConfig,
        config: MaskRcnnTrainingConfig,
        device: &Device,
        checkpoint_dir: PathBuf,
        mode: StartMode,
        data: RunData,
    ) -> Result<Self, ModelError> {
        let mut trainer = match mode {
            StartMode::Resume { allow_changes } => {
                Self::resume_checked(config, device, checkpoint_dir, Some(&data), allow_changes)?
            }
            StartMode::Fresh | StartMode::Replace => {
                config.check()?;
                Self::check_folder(&checkpoint_dir, mode)?;
                // Only a replacing start gets here with old checkpoints.
                for path in old_checkpoints(&checkpoint_dir) {
                    let removed = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    removed.map_err(|e| ModelError::WeightFile {
                        path: path.clone(),
                        reason: format!("cannot remove an old checkpoint: {e}"),
                    })?;
                }
                Self::new(model.init(device)?, config, device, Some(checkpoint_dir))?
            }
        };
        trainer.data = Some(data);
        Ok(trainer)
    }

    /// Whether [`start`](Self::start) in `mode` accepts `checkpoint_dir` as it is: a fresh
    /// start refuses a folder holding checkpoints of an earlier run
    /// ([`ModelError::CheckpointsExist`]). Cheap, so a program can ask before it loads its
    /// data.
    pub fn check_folder(checkpoint_dir: &Path, mode: StartMode) -> Result<(), ModelError> {
        let old = old_checkpoints(checkpoint_dir);
        if mode == StartMode::Fresh && !old.is_empty() {
            return Err(ModelError::CheckpointsExist {
                dir: checkpoint_dir.to_path_buf(),
                found: old.len(),
            });
        }
        Ok(())
    }

    /// Continues from the latest checkpoint in `checkpoint_dir` (model, optimizer state and
    /// step), so that the run goes on exactly as if it had not stopped. `config` may only
    /// differ from the saved run's in `steps`, `checkpoint_every` and `keep_checkpoints_from`
    /// ([`ModelError::ResumeMismatch`]).
    pub fn resume(
        config: MaskRcnnTrainingConfig,
        device: &Device,
        checkpoint_dir: PathBuf,
    ) -> Result<Self, ModelError> {
        Self::resume_checked(config, device, checkpoint_dir, None, false)
    }

    fn resume_checked(
        config: MaskRcnnTrainingConfig,
        device: &Device,
        checkpoint_dir: PathBuf,
        data: Option<&RunData>,
        allow_changes: bool,
    ) -> Result<Self, ModelError> {
        config.check()?;
        let latest = std::fs::read_to_string(checkpoint_dir.join(LATEST)).map_err(|e| {
            ModelError::WeightFile {
                path: checkpoint_dir.join(LATEST),
                reason: format!("no checkpoint to resume from: {e}"),
            }
        })?;
        let dir = checkpoint_dir.join(latest.trim());
        let state_path = dir.join(STATE_FILE);
        let state: TrainerState =
            crate::io::read_json(&state_path).map_err(|e| ModelError::WeightFile {
                path: state_path.clone(),
                reason: e.to_string(),
            })?;
        if !allow_changes {
            let mut differences = match state.config.clone().map(saved_config) {
                Some(Ok(saved)) => config.differences(&saved),
                Some(Err(e)) => vec![format!("unreadable saved settings ({e})")],
                None => Vec::new(),
            };
            if let (Some(saved), Some(now)) = (&state.data, data) {
                if saved.images != now.images {
                    differences.push(format!(
                        "training images {} → {}",
                        saved.images.len(),
                        now.images.len()
                    ));
                }
                if saved.normalizer != now.normalizer {
                    differences.push(format!(
                        "normalizer {} → {}",
                        saved.normalizer, now.normalizer
                    ));
                }
            }
            if !differences.is_empty() {
                return Err(ModelError::ResumeMismatch {
                    dir,
                    differences: differences.join(", "),
                });
            }
        }
        let model = Self::trainable(
            load_model(&dir.join(MODEL_FILE), &device.clone().autodiff())?.train(),
            &config,
        )?;
        let optim = Self::optimizer(&config)
            .load(dir.join(OPTIM_FILE))
            .map_err(|e| ModelError::WeightFile {
                path: dir.join(OPTIM_FILE),
                reason: e.to_string(),
            })?;
        Ok(MaskRcnnTrainer {
            config,
            model,
            optim,
            step: state.step,
            checkpoint_dir: Some(checkpoint_dir),
            last_checkpoint: Some(dir),
            data: state.data,
            checkpoint_hook: None,
        })
    }

    /// `model` with only the parts `config` trains requiring gradients.
    fn trainable(model: MaskRcnn, config: &MaskRcnnTrainingConfig) -> Result<MaskRcnn, ModelError> {
        if !config.dense_only {
            return Ok(model);
        }
        if model.dense_head.is_none() {
            return Err(ModelError::InvalidConfig(
                "training only the dense head needs a network with one (dense_head)".into(),
            ));
        }
        // Everything frozen, then the head put back as it was (a part added later is frozen
        // too, not trained by accident).
        let dense_head = model.dense_head.clone();
        Ok(MaskRcnn {
            dense_head,
            ..model.no_grad()
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

    /// Starts from `model`'s weights instead of the random initialization (fine-tuning, or
    /// a longer schedule continuing a finished model with a new one): only before the
    /// first step, and `model` must be the network this trainer was built for.
    pub fn init_from(&mut self, model: &MaskRcnn) -> Result<(), ModelError> {
        if self.step > 0 {
            return Err(ModelError::InvalidConfig(format!(
                "initial weights can only be set before the first step (at step {})",
                self.step
            )));
        }
        // The stain normalization is what the data went through, not the network: a model
        // trained on Macenko-normalized images may be fine-tuned on DCGMM-normalized ones.
        // A dense head may be added: it then starts from its own initialization.
        let adds_dense = model.dense_head.is_none() && self.model.dense_head.is_some();
        let same = |c: &MaskRcnnConfig, dense: bool| {
            // Inference settings and the RoI heads' sampling and thresholds do not change the
            // network either (the box coder's weights do: they give its outputs their scale).
            let weights = c.roi_heads.bbox_reg_weights;
            let mut c = c
                .clone()
                .with_normalizer(None)
                .with_split(None)
                .with_test_scale(None)
                .with_roi_heads(RoiHeadsConfig::new().with_bbox_reg_weights(weights));
            if dense {
                c.dense_head = None;
            }
            serde_json::to_value(c).ok()
        };
        if same(&model.config, adds_dense) != same(&self.model.config, adds_dense) {
            return Err(ModelError::InvalidConfig(
                "the initial weights are another network than the one configured for training"
                    .into(),
            ));
        }
        let config = self.model.config.clone();
        let dense_head = self.model.dense_head.clone();
        let mut initial = model.clone().fork(&self.model.device()).train();
        if adds_dense {
            initial.dense_head = dense_head;
        }
        self.model = Self::trainable(initial, &self.config)?;
        self.model.config = config; // records this run's normalization (and dense head)
        Ok(())
    }

    /// Steps done so far.
    pub fn step(&self) -> usize {
        self.step
    }

    /// From now on `hook` is called with every checkpoint folder once the model is written
    /// there and before the checkpoint becomes the latest, to add the caller's files: the
    /// `train` example writes the stain normalizer of the run (`model.normalizer.json`), so
    /// a checkpoint loads as a bundle of its own (`segment --model`, `average_weights`) as
    /// the final model does. An error of the hook fails the checkpoint.
    pub fn on_checkpoint(&mut self, hook: CheckpointHook) {
        self.checkpoint_hook = Some(hook);
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
            // Every draw below happens only when its augmentation is on, so a run with the
            // older settings draws exactly what it drew before they existed.
            let glass = c.glass_probability > 0.0 && rng.random::<f32>() < c.glass_probability;
            let spec = CropSpec {
                size: c.crop_size,
                scale: c.scale_range,
                glass_margin: if glass { c.glass_margin } else { 0.0 },
            };
            let (mut crop, labels) = scaled_crop(&item.image, &item.labels, spec, rng);
            let mut instances = Instances::from_label_map(&labels);
            if c.flip_rotate {
                let t = Dihedral::ALL[rng.random_range(0..8)];
                crop = t.apply_image(&crop);
                instances = t.apply_instances(&instances);
            }
            crop = hed_jitter(&crop, c.stain_jitter, rng);
            brightness_contrast(&mut crop, c.brightness_contrast, rng);
            crop = random_blur(crop, c.blur_probability, rng);
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
        let (total, values) = if self.config.dense_only {
            let loss = self
                .model
                .forward_train_dense(x, &targets)
                .expect("checked when the trainer was built");
            let value = loss.clone().into_scalar::<f32>();
            (loss, vec![("loss_dense", value)])
        } else {
            let losses = self.model.forward_train(x, &targets, &mut rng);
            (losses.total(), losses.values())
        };
        let total_value: f32 = values.iter().map(|v| v.1).sum();
        if !values.iter().all(|v| v.1.is_finite()) {
            return Err(TrainError::NonFinite {
                step: self.step + 1,
                losses: values
                    .iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                checkpoint: self.last_checkpoint_name(),
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

    /// Writes a checkpoint now: `<dir>/step-<n>/` (model, optimizer, settings and step),
    /// each file written atomically and durably, then `<dir>/latest` switched to it
    /// atomically, so a crash leaves the previous checkpoint as the latest. Parameters that
    /// are not all finite are never written ([`TrainError::NonFinite`]). This run's
    /// previous checkpoint is kept, and those from
    /// [`keep_checkpoints_from`](MaskRcnnTrainingConfig::keep_checkpoints_from) on; older
    /// ones are deleted.
    pub fn checkpoint(&mut self) -> Result<Option<PathBuf>, TrainError> {
        let Some(root) = self.checkpoint_dir.clone() else {
            return Ok(None);
        };
        let name = format!("step-{:07}", self.step);
        let dir = root.join(&name);
        if self.last_checkpoint.as_ref() == Some(&dir) {
            return Ok(Some(dir)); // this step is saved: only a step changes the state
        }
        let model = self.model.valid();
        if !parameters_finite(&model) {
            return Err(TrainError::NonFinite {
                step: self.step,
                losses: "parameters after the update".into(),
                checkpoint: self.last_checkpoint_name(),
            });
        }
        let io = |p: &Path| {
            let path = p.to_path_buf();
            move |e: std::io::Error| ModelError::WeightFile {
                path,
                reason: e.to_string(),
            }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        save_model(&model, &dir.join(MODEL_FILE))?;
        if let Some(hook) = &self.checkpoint_hook {
            hook(&dir).map_err(|e| ModelError::WeightFile {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
        }
        let optim_path = dir.join(OPTIM_FILE);
        crate::io::write_atomic_via(&optim_path, |tmp| self.optim.save(tmp))
            .map_err(io(&optim_path))?;
        let state_path = dir.join(STATE_FILE);
        let state = TrainerState {
            step: self.step,
            config: serde_json::to_value(&self.config).ok(),
            data: self.data.clone(),
        };
        crate::io::write_json(&state_path, &state).map_err(io(&state_path))?;
        let latest = root.join(LATEST);
        crate::io::write_atomic_bytes(&latest, name.as_bytes()).map_err(io(&latest))?;
        // Keep this and the previous checkpoint of this run, and the snapshots asked for;
        // delete older ones. A start in a folder with another run's checkpoints is refused,
        // so all are this run's.
        let kept_from = self.config.keep_checkpoints_from;
        for old in old_checkpoints(&root) {
            let step = old
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("step-"))
                .and_then(|n| n.parse::<usize>().ok());
            let keep = old == dir
                || Some(&old) == self.last_checkpoint.as_ref()
                || step.zip(kept_from).is_some_and(|(s, k)| s >= k);
            if !keep && step.is_some_and(|s| s < self.step) {
                let _ = std::fs::remove_dir_all(&old);
            }
        }
        self.last_checkpoint = Some(dir.clone());
        Ok(Some(dir))
    }

    fn last_checkpoint_name(&self) -> String {
        self.last_checkpoint
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "none".into())
    }
}

/// The training settings saved with a checkpoint; settings the saving version did not have
/// take their defaults, which reproduce what it did (every augmentation added later is off
/// by default).
fn saved_config(saved: serde_json::Value) -> Result<MaskRcnnTrainingConfig, serde_json::Error> {
    let mut merged = serde_json::to_value(MaskRcnnTrainingConfig::new())?;
    if let (Some(m), serde_json::Value::Object(s)) = (merged.as_object_mut(), saved) {
        m.extend(s);
    }
    serde_json::from_value(merged)
}

/// The checkpoint entries of a folder: its `latest` pointer and `step-*` folders.
fn old_checkpoints(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                (n.starts_with("step-") && p.is_dir()) || n == LATEST
            })
        })
        .collect();
    found.sort();
    found
}

/// Whether every float parameter of `model` is finite (one sum per tensor, one read).
fn parameters_finite(model: &MaskRcnn) -> bool {
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::Tensor;
    struct Sums(Vec<Tensor<1>>);
    impl ModuleVisitor for Sums {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.val().abs().sum());
        }
    }
    let mut sums = Sums(Vec::new());
    model.visit(&mut sums);
    if sums.0.is_empty() {
        return true;
    }
    Tensor::cat(sums.0, 0)
        .sum()
        .into_scalar::<f32>()
        .is_finite()
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

    #[test]
    fn settings_saved_before_the_augmentations_existed_read_with_them_off() {
        let mut old = serde_json::to_value(MaskRcnnTrainingConfig::new().with_steps(77)).unwrap();
        let o = old.as_object_mut().unwrap();
        for k in [
            "scale_range",
            "glass_probability",
            "glass_margin",
            "brightness_contrast",
            "blur_probability",
        ] {
            assert!(o.remove(k).is_some(), "{k}");
        }
        let read = saved_config(old).unwrap();
        assert_eq!(read, MaskRcnnTrainingConfig::new().with_steps(77));
        assert!(saved_config(serde_json::json!({"lr": "fast"})).is_err());
    }
}
