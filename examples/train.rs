//! Trains Mask R-CNN on any annotated folder — a MoNuSeg layout (`images/` + `labels/` or
//! `annotations/`) or image / mask pairs (`images/` + `masks/`) — with periodic validation,
//! checkpoints and `--resume`.
//!
//! ```text
//! cargo run --release --example train -- --data my-dataset --val-fraction 0.2 --steps 2000 --out my-model
//! cargo run --release --example train -- --data ../shared/data/monuseg-kumar --split train --val-split test_same_organ
//! ```
//! The model is written as `<out>/model.bpk` + `model.json` (+ `model.normalizer.json`);
//! use it with `segment --model <out>/model.bpk`.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use nucseg::{
    backend::BackendKind,
    burn::module::Module,
    cli::exit_code,
    data::{open_dataset, KumarSplit, SampleInfo},
    model::{save_model, MaskRcnnConfig, MaskRcnnTrainer, MaskRcnnTrainingConfig, TrainingImage},
    output::OutputDir,
    pretrained::normalizer_path,
    progress::TrainingProgress,
    stain::{fit_classical, NormalizerKind, StainNormalizer},
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
    /// Network size: tiny, cpu-small, r50 or paper.
    #[arg(long, default_value = "cpu-small")]
    preset: String,
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
    /// Stain normalization of every image: none, macenko or reinhard.
    #[arg(long, default_value = "none")]
    normalize: NormalizerKind,
    /// Template image for --normalize.
    #[arg(long)]
    template: Option<PathBuf>,
    /// Output folder (model, checkpoints).
    #[arg(long, default_value = "nucseg-model")]
    out: PathBuf,
    /// Continue from the latest checkpoint in <out>/checkpoints.
    #[arg(long)]
    resume: bool,
    /// Replace an existing model in <out>.
    #[arg(long)]
    overwrite: bool,
    /// Checkpoint period in steps.
    #[arg(long, default_value_t = 250)]
    checkpoint_every: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Compute device: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: BackendKind,
}

fn main() -> ExitCode {
    exit_code(run(Args::parse()))
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let device = args.device.device()?;
    let out = OutputDir::create(&args.out, args.overwrite || args.resume)?;
    let model_path = out.claim("model.bpk")?;
    let all = open_dataset(&args.data)?;
    let in_split = |s: &SampleInfo, split: Option<KumarSplit>| {
        split.is_none_or(|k| s.split.is_some_and(|x| k.contains(x)))
    };
    let (train, val): (Vec<SampleInfo>, Vec<SampleInfo>) = match args.val_split {
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
    };
    let normalizer = fit_classical(args.normalize, args.template.as_deref())?;
    if let Some(n) = &normalizer {
        n.save(&normalizer_path(&model_path))?;
    }
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

    let config = MaskRcnnTrainingConfig::new()
        .with_steps(args.steps)
        .with_batch_size(args.batch)
        .with_crop_size(args.crop)
        .with_lr(args.lr)
        .with_lr_steps(args.lr_steps.clone())
        .with_checkpoint_every(args.checkpoint_every)
        .with_seed(args.seed);
    let checkpoints = args.out.join("checkpoints");
    let mut trainer = MaskRcnnTrainer::start(
        &MaskRcnnConfig::preset(&args.preset)?,
        config,
        &device,
        checkpoints,
        args.resume,
    )?;
    println!(
        "model {} ({} parameters) on {}",
        args.preset,
        trainer.model().num_params(),
        args.device
    );
    let mut progress = TrainingProgress::new(args.steps, trainer.step());
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
    save_model(&trainer.into_model(), &model_path)?;
    println!("saved {}", model_path.display());
    Ok(())
}
