//! Trains Mask R-CNN on any annotated folder — a MoNuSeg layout (`images/` + `labels/` or
//! `annotations/`) or image / mask pairs (`images/` + `masks/`) — with periodic validation,
//! checkpoints and `--resume`.
//!
//! ```text
//! cargo run --release --example train -- --data my-dataset --val-fraction 0.2 --steps 2000 --out my-model
//! cargo run --release --example train -- --data ../shared/data/monuseg-kumar --split train \
//!     --preset cpu-small --normalize macenko \
//!     --template ../shared/data/monuseg-kumar/images/TCGA-G9-6356-01Z-00-DX1.tif --out maskrcnn-out
//! ```
//! `--normalize dcgmm` trains on the paper's normalization (the shipped DCGMM network, or
//! `--dcgmm-model`, fitted to `--template`); the model's folder then holds a copy of that
//! network, which `model.normalizer.json` names.
//! Checkpoints go to `<out>/checkpoints` every `--checkpoint-every` steps; `--resume`
//! continues from the latest one exactly. The model is written as `<out>/model.bpk` and its
//! f16 form `<out>/model.safetensors` (the shipped format), sharing `model.json` (and
//! `model.normalizer.json`); use it with `segment --model <out>/model.safetensors`.
//! `--score-split test` scores the final model on a Kumar split (no test-time augmentation)
//! and writes the predictions to `<out>/<split>-pred/`.

mod common;

use std::{path::PathBuf, process::ExitCode, time::Instant};

use clap::Parser;
use common::{exit_code, peak_memory_bytes, progress_bar, TrainingProgress};
use nucseg::{
    backend::BackendKind,
    burn::module::Module,
    data::{open_dataset, KumarSplit, SampleInfo},
    model::{
        io::{load_imagenet_backbone, save_model, save_model_f16},
        ops::SplitConfig,
        MaskRcnnConfig,
    },
    output::OutputDir,
    pipeline::{Pipeline, Preset},
    pretrained::{load_bundle, write_normalizer_file, BundleNormalizer},
    stain::{NormalizerKind, StainNormalizer},
    train::{MaskRcnnTrainer, MaskRcnnTrainingConfig, RunData, StartMode, TrainingImage},
};

#[derive(Parser)]
#[command(about = "Train Mask R-CNN on an annotated folder, with validation and checkpoints")]
struct Args {
    /// Data set folder (MoNuSeg layout or images/ + masks/).
    #[arg(long)]
    data: PathBuf,
    /// Train on this Kumar split only (MoNuSeg folders).
    #[arg(long)]
    split: Option<KumarSplit>,
    /// Validate on this Kumar split (MoNuSeg folders).
    #[arg(long, conflicts_with = "val_fraction")]
    val_split: Option<KumarSplit>,
    /// Hold out this fraction of the images (the last ones by name) for validation.
    #[arg(long, default_value_t = 0.0)]
    val_fraction: f64,
    /// Validate every this many steps (0: only at the end).
    #[arg(long, default_value_t = 500)]
    val_every: usize,
    /// Score the final model on this Kumar split and keep its predictions.
    #[arg(long)]
    score_split: Option<KumarSplit>,
    /// Validate on every annotated image of this folder (another data set, e.g. CPM-15).
    #[arg(long, conflicts_with_all = ["val_split", "val_fraction"])]
    val_data: Option<PathBuf>,
    /// Network size: tiny, cpu-small, r50 or paper.
    #[arg(long, default_value = "cpu-small")]
    preset: String,
    /// Start from these weights (a model bundle: `.safetensors` or `.bpk` with its `.json`)
    /// instead of a random initialization; the network is theirs (`--preset` is ignored).
    #[arg(long, conflicts_with_all = ["resume", "backbone_weights"])]
    init: Option<PathBuf>,
    /// ImageNet weights of the preset's ResNet (torchvision's, as safetensors) for the
    /// backbone. Without them (and without --init) a preset whose backbone has frozen batch
    /// norm trains with group norm instead (32 groups).
    #[arg(long, conflicts_with = "resume")]
    backbone_weights: Option<PathBuf>,
    /// Give the network a dense head (distance maps on P2 that split touching nuclei at
    /// inference; beyond the paper). With --init the head is added to those weights.
    #[arg(long)]
    dense_head: bool,
    /// Train only the dense head, every other part frozen (what the network detects stays
    /// as it was): `--init model.safetensors --dense-head --dense-only` adds the cue to a
    /// trained model.
    #[arg(long)]
    dense_only: bool,
    /// Anchor sizes per pyramid level for a new network: n sizes `s · 2^(i/n)` from each
    /// level's `s` (RetinaNet's scales per octave; default 1, the paper's one size per
    /// level). With --resume the checkpoint's own network settings hold.
    #[arg(long, conflicts_with = "init")]
    scales_per_octave: Option<usize>,
    /// 3×3 convolutions of the dense head (default 2); with --dense-head, for a new head.
    #[arg(long, requires = "dense_head")]
    dense_convs: Option<usize>,
    /// Channels of the dense head's convolutions (default 64, a multiple of its 8 groups);
    /// with --dense-head, for a new head.
    #[arg(long, requires = "dense_head")]
    dense_channels: Option<usize>,
    /// Train the mask head on at most this many foreground RoIs per image, a random subset
    /// (default: all of them, as Mask R-CNN: up to a quarter of the sampled RoIs, 64 in the
    /// cpu-small preset). On a CPU the mask head is most of a step's arithmetic: a cap of 32
    /// made the shipped recipe's steps 1.5× as fast. With --resume the checkpoint's own
    /// network settings hold.
    #[arg(long)]
    mask_rois: Option<usize>,
    /// σ of the HED stain jitter.
    #[arg(long, default_value_t = 0.05)]
    stain_jitter: f32,
    /// Zoom range of the crops, "low,high" (e.g. 0.8,1.25; default: no zoom).
    #[arg(long, value_delimiter = ',')]
    scale_range: Vec<f32>,
    /// Probability that a crop reaches past the image onto synthetic glass.
    #[arg(long, default_value_t = 0.0)]
    glass_probability: f32,
    /// σ of the brightness/contrast jitter.
    #[arg(long, default_value_t = 0.0)]
    brightness_contrast: f32,
    /// Probability of a Gaussian blur of σ 0.5–1.5 px.
    #[arg(long, default_value_t = 0.0)]
    blur_probability: f32,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Optimizer steps.
    #[arg(long, default_value_t = 3000)]
    steps: usize,
    /// Crops per step.
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// Crop side (multiple of 32).
    #[arg(long, default_value_t = 256)]
    crop: u32,
    /// Peak learning rate.
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// Steps at which the learning rate drops 10× (comma-separated).
    #[arg(long, value_delimiter = ',')]
    lr_steps: Vec<usize>,
    /// Stain normalization of every image: none, macenko, reinhard or dcgmm (the paper's).
    #[arg(long, default_value = "none")]
    normalize: NormalizerKind,
    /// Template image for --normalize (for dcgmm also a template .json; default there: the
    /// DCGMM network's own template).
    #[arg(long)]
    template: Option<PathBuf>,
    /// DCGMM network for --normalize dcgmm (default: models/dcgmm-kumar.bpk); the model's
    /// folder gets a copy, so that the bundle is complete.
    #[arg(long)]
    dcgmm_model: Option<PathBuf>,
    /// Output folder (model, checkpoints).
    #[arg(long, default_value = "nucseg-model")]
    out: PathBuf,
    /// Continue from the latest checkpoint in <out>/checkpoints.
    #[arg(long)]
    resume: bool,
    /// Accept a --resume whose settings, data or normalizer differ from the saved run's.
    #[arg(long, requires = "resume")]
    allow_changes: bool,
    /// Replace an existing model and the old checkpoints in <out>.
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Checkpoint period in steps.
    #[arg(long, default_value_t = 250)]
    checkpoint_every: usize,
    /// Keep every checkpoint from this step on (snapshots to average with
    /// `average_weights`, as in stochastic weight averaging); before it, only the latest two.
    #[arg(long)]
    keep_checkpoints_from: Option<usize>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Compute device: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: BackendKind,
    #[command(flatten)]
    limits: common::ReadLimits,
}

fn main() -> ExitCode {
    exit_code(run(Args::parse()))
}

/// The training and validation samples the arguments select.
fn select(args: &Args) -> nucseg::Result<(Vec<SampleInfo>, Vec<SampleInfo>)> {
    let all = open_dataset(&args.data)?;
    let in_split = |s: &SampleInfo, split: Option<KumarSplit>| {
        split.is_none_or(|k| s.split.is_some_and(|x| k.contains(x)))
    };
    if let Some(folder) = &args.val_data {
        let train = all
            .into_iter()
            .filter(|s| in_split(s, args.split))
            .collect();
        return Ok((train, open_dataset(folder)?));
    }
    Ok(match args.val_split {
        Some(v) => (
            all.iter()
                .filter(|s| in_split(s, args.split))
                .cloned()
                .collect(),
            all.iter()
                .filter(|s| in_split(s, Some(v)))
                .cloned()
                .collect(),
        ),
        None => {
            let pool: Vec<SampleInfo> = all
                .into_iter()
                .filter(|s| in_split(s, args.split))
                .collect();
            let n_val = (pool.len() as f64 * args.val_fraction).round() as usize;
            let (t, v) = pool.split_at(pool.len() - n_val.min(pool.len().saturating_sub(1)));
            (t.to_vec(), v.to_vec())
        }
    })
}

fn run(args: Args) -> nucseg::Result<()> {
    args.limits.apply();
    let started = Instant::now();
    let device = args.device.device()?;
    let out = OutputDir::create(&args.out, args.overwrite || args.resume)?;
    let model_path = out.claim("model.bpk")?;
    let f16_path = out.claim("model.safetensors")?;
    let normalizer_file = out.claim("model.normalizer.json")?;
    let config = MaskRcnnTrainingConfig::new()
        .with_steps(args.steps)
        .with_batch_size(args.batch)
        .with_crop_size(args.crop)
        .with_lr(args.lr)
        .with_lr_steps(args.lr_steps.clone())
        .with_checkpoint_every(args.checkpoint_every)
        .with_keep_checkpoints_from(args.keep_checkpoints_from)
        .with_seed(args.seed)
        .with_warmup_steps(args.warmup)
        .with_stain_jitter(args.stain_jitter)
        .with_glass_probability(args.glass_probability)
        .with_brightness_contrast(args.brightness_contrast)
        .with_blur_probability(args.blur_probability)
        .with_dense_only(args.dense_only);
    let config = match args.scale_range[..] {
        [] => config,
        [lo, hi] => config.with_scale_range((lo, hi)),
        _ => {
            return Err(nucseg::model::ModelError::InvalidConfig(format!(
                "--scale-range takes two numbers, low,high (got {})",
                args.scale_range.len()
            ))
            .into())
        }
    };
    config.check()?; // before any image is read
    let checkpoints = args.out.join("checkpoints");
    let mode = match (args.resume, args.overwrite) {
        (true, _) => StartMode::Resume {
            allow_changes: args.allow_changes,
        },
        (false, true) => StartMode::Replace,
        (false, false) => StartMode::Fresh,
    };
    MaskRcnnTrainer::check_folder(&checkpoints, mode)?;
    let (train, val) = select(&args)?;
    let normalizer = BundleNormalizer::for_training(
        args.normalize,
        args.template.as_deref(),
        args.dcgmm_model.as_deref(),
        &device,
    )?;
    let initial = match &args.init {
        Some(path) => Some(load_bundle(path, &device)?.model),
        None => None,
    };
    let run_data = RunData {
        init: args.init.as_ref().map(|p| p.display().to_string()),
        images: train.iter().map(|s| s.id.clone()).collect(),
        normalizer: match &normalizer {
            Some(n) => n.record()?,
            None => "none".into(),
        },
    };
    let boxed = || {
        normalizer
            .clone()
            .map(|n| Box::new(n) as Box<dyn StainNormalizer>)
    };
    let data = TrainingImage::load_all(
        &train,
        normalizer.as_ref().map(|n| n as &dyn StainNormalizer),
    )?;
    println!(
        "{} training and {} validation images from {}",
        data.len(),
        val.len(),
        args.data.display()
    );

    // The network records the normalization it is trained with; the bundle is checked
    // against it on load.
    let network = match &initial {
        Some(m) => m.config.clone(),
        None if args.backbone_weights.is_some() => MaskRcnnConfig::preset(&args.preset)?,
        None => {
            let (network, changed) = MaskRcnnConfig::preset(&args.preset)?.from_scratch();
            if changed && !args.resume {
                println!(
                    "no pretrained backbone: training from scratch with group norm (32 groups) \
                     instead of the preset's frozen batch norm"
                );
            }
            network
        }
    }
    .with_normalizer(Some(args.normalize.to_string()));
    let network = match args.mask_rois {
        Some(n) => {
            let heads = network.roi_heads.clone().with_mask_rois_per_image(Some(n));
            network.with_roi_heads(heads)
        }
        None => network,
    };
    let network = match args.scales_per_octave {
        Some(n) => {
            let mut rpn = network.rpn.clone();
            rpn.anchors.scales_per_octave = Some(n);
            network.with_rpn(rpn)
        }
        None => network,
    };
    let network = if args.dense_head {
        let sized = args.dense_convs.is_some() || args.dense_channels.is_some();
        if sized && network.dense_head.is_some() {
            return Err(nucseg::model::ModelError::InvalidConfig(
                "--dense-convs / --dense-channels size a new dense head, and the network \
                 already has one"
                    .to_string(),
            )
            .into());
        }
        // Split at inference by default: the head is trained for nothing else.
        let mut network = network.with_dense();
        if let Some(head) = network.dense_head.as_mut() {
            head.convs = args.dense_convs.unwrap_or(head.convs);
            head.channels = args.dense_channels.unwrap_or(head.channels);
        }
        let split = network.split.clone().unwrap_or_else(SplitConfig::new);
        network.with_split(Some(split))
    } else {
        network
    };
    let mut trainer =
        MaskRcnnTrainer::start(&network, config, &device, checkpoints, mode, run_data)?;
    if let Some(initial) = &initial {
        trainer.init_from(initial)?;
        println!("starting from {}", args.init.as_ref().unwrap().display());
    } else if let Some(path) = &args.backbone_weights {
        let (model, report) = load_imagenet_backbone(trainer.model().valid(), path)?;
        trainer.init_from(&model)?;
        println!("backbone from {} ({report})", path.display());
    }
    // Only now, with the run accepted, replace the normalizer of an earlier one.
    write_normalizer_file(normalizer.as_ref(), &normalizer_file)?;
    // Every checkpoint carries the normalizer too, so it loads as a bundle.
    let for_checkpoints = normalizer.clone();
    trainer.on_checkpoint(Box::new(move |dir| {
        write_normalizer_file(
            for_checkpoints.as_ref(),
            &nucseg::pretrained::normalizer_path(&dir.join("model.bpk")),
        )
    }));
    println!(
        "model {} ({} parameters) on {}",
        match &args.init {
            Some(path) => format!("of {}", path.display()),
            None => args.preset.clone(),
        },
        trainer.model().num_params(),
        args.device
    );
    let first_step = trainer.step();
    let mut progress = TrainingProgress::new(args.steps, first_step);
    let train_start = Instant::now();
    while trainer.step() < args.steps {
        let report = trainer.train_step(&data)?;
        progress.step(&report);
        let last = report.step == args.steps;
        if !val.is_empty()
            && (last || (args.val_every > 0 && report.step.is_multiple_of(args.val_every)))
        {
            let s = trainer.validate(&val, boxed())?.summary;
            progress.note(&format!(
                "validation at step {}: AJI {:.4}  AJI+ {:.4}  PQ {:.4}  Dice {:.4}  F1@0.5 {:.4} ({} images)",
                report.step, s.mean.aji, s.mean.aji_plus, s.mean.pq_pq, s.mean.dice, s.mean.f1_iou50_f1, s.images
            ));
        }
    }
    trainer.checkpoint()?;
    progress.finish();
    let (steps_done, train_secs) = (
        trainer.step() - first_step,
        train_start.elapsed().as_secs_f64(),
    );
    let model = trainer.into_model();
    save_model(&model, &model_path)?;
    save_model_f16(&model, &f16_path)?; // shares model.json and model.normalizer.json
    println!("saved {} and {}", model_path.display(), f16_path.display());

    let mut infer = String::new();
    if let Some(split) = args.score_split {
        let samples: Vec<SampleInfo> = open_dataset(&args.data)?
            .into_iter()
            .filter(|s| s.split.is_some_and(|x| split.contains(x)))
            .collect();
        let pred_dir = OutputDir::create(
            args.out.join(format!("{}-pred", split.name())),
            args.overwrite || args.resume,
        )?;
        let preset = if normalizer.is_some() {
            Preset::NucSegP
        } else {
            Preset::NucSegNp
        };
        let pipeline = Pipeline::new(preset.config(), &model, boxed())?;
        let bar = progress_bar(samples.len() as u64, split.name(), true);
        let mut secs = 0.0;
        let evaluation = pipeline.evaluate(&samples, Some(&pred_dir), |done, _, _, s| {
            secs += s;
            bar.set_position(done as u64);
        })?;
        bar.finish();
        println!("{preset} on the {} split:", split.name());
        print!("{}", evaluation.table());
        infer = format!(
            "; inference {:.1} s per image",
            secs / samples.len().max(1) as f64
        );
    }
    println!(
        "training: {steps_done} steps in {train_secs:.0} s ({:.3} steps/s){infer}; peak memory {:.2} GiB; wall {:.0} s",
        steps_done as f64 / train_secs.max(1e-9),
        peak_memory_bytes().unwrap_or(0) as f64 / (1u64 << 30) as f64,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
