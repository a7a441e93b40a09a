//! Trains Mask R-CNN on the 16 Kumar training images, saves it, and scores it on the 14
//! Kumar test images (Jung et al. 2019's protocol).
//!
//! ```text
//! cargo run --release --example train_maskrcnn -- --data ../shared/data/monuseg-kumar \
//!     --preset cpu-small --steps 3000 --normalize macenko \
//!     --template ../shared/data/monuseg-kumar/images/TCGA-G9-6356-01Z-00-DX1.tif --out maskrcnn-out
//! ```
//! Checkpoints go to `<out>/checkpoints` every `--checkpoint-every` steps; `--resume`
//! continues from the latest one. The trained model is `<out>/model.bpk` and its f16 form
//! `<out>/model.safetensors` (the shipped format), sharing `model.json` and
//! `model.normalizer.json`; the test predictions are `<out>/test-pred/<id>.png`.

use std::{path::PathBuf, process::ExitCode, time::Instant};

use clap::Parser;
use nucseg::{
    backend::BackendKind,
    burn::module::Module,
    data::{KumarSplit, MonusegDataset},
    model::{
        save_model, save_model_f16, MaskRcnnConfig, MaskRcnnTrainer, MaskRcnnTrainingConfig,
        TrainingImage,
    },
    output::OutputDir,
    pipeline::{Pipeline, PipelineConfig},
    pretrained::normalizer_path,
    progress::{peak_memory_bytes, progress_bar, TrainingProgress},
    stain::{fit_classical, NormalizerKind, StainNormalizer},
};

#[derive(Parser)]
#[command(about = "Train Mask R-CNN on the Kumar training split and score it on the test split")]
struct Args {
    /// MoNuSeg / Kumar folder (images/ + labels/ or annotations/).
    #[arg(long, default_value = "../shared/data/monuseg-kumar")]
    data: PathBuf,
    /// Network size: tiny, cpu-small, r50 or paper (ResNet-101).
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
    /// Output folder.
    #[arg(long, default_value = "maskrcnn-out")]
    out: PathBuf,
    /// Continue from the latest checkpoint in <out>/checkpoints.
    #[arg(long)]
    resume: bool,
    /// Replace an existing model and predictions in <out>.
    #[arg(long)]
    overwrite: bool,
    /// Compute device: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: BackendKind,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Checkpoint period in steps.
    #[arg(long, default_value_t = 250)]
    checkpoint_every: usize,
    /// Stain normalization before the network (training and test): none, macenko, reinhard.
    #[arg(long, default_value = "none")]
    normalize: NormalizerKind,
    /// Template image for --normalize.
    #[arg(long)]
    template: Option<PathBuf>,
}

fn main() -> ExitCode {
    nucseg::cli::exit_code(run(Args::parse()))
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let device = args.device.device()?;
    let out = OutputDir::create(&args.out, args.overwrite || args.resume)?;
    let model_path = out.claim("model.bpk")?;
    let normalizer = fit_classical(args.normalize, args.template.as_deref())?;
    if let Some(n) = &normalizer {
        n.save(&normalizer_path(&model_path))?;
    }
    let dataset = MonusegDataset::open(&args.data)?;
    let train = TrainingImage::load_all(
        &dataset.split(KumarSplit::Train)?,
        normalizer.as_ref().map(|n| n as &dyn StainNormalizer),
    )?;
    println!(
        "{} training images from {}",
        train.len(),
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
    let first_step = trainer.step();
    let mut progress = TrainingProgress::new(args.steps, first_step);
    let train_start = Instant::now();
    trainer.train(&train, |r| progress.step(r))?;
    progress.finish();
    let (steps_done, train_secs) = (
        trainer.step() - first_step,
        train_start.elapsed().as_secs_f64(),
    );
    let model = trainer.into_model();
    save_model(&model, &model_path)?;
    // The shippable form: f16 safetensors (half the size), loadable with `load_bundle`.
    let f16_path = out.claim("model.safetensors")?;
    save_model_f16(&model, &f16_path)?; // shares model.json and model.normalizer.json
    println!("saved {} and {}", model_path.display(), f16_path.display());

    // Score on the test split, no test-time augmentation (NucSeg-P, or NucSeg-NP without
    // normalization).
    let pred_dir = OutputDir::create(args.out.join("test-pred"), args.overwrite || args.resume)?;
    let config = PipelineConfig::preset(if normalizer.is_some() {
        "NucSeg-P"
    } else {
        "NucSeg-NP"
    })?;
    let pipeline = Pipeline::new(
        config,
        &model,
        normalizer.map(|n| Box::new(n) as Box<dyn StainNormalizer>),
    )?;
    let test = dataset.split(KumarSplit::Test)?;
    let bar = progress_bar(test.len() as u64, "test", true);
    let mut infer_secs = 0.0;
    let evaluation = pipeline.evaluate(&test, Some(&pred_dir), |done, _, _, secs| {
        infer_secs += secs;
        bar.set_position(done as u64);
    })?;
    bar.finish();
    print!("{}", evaluation.table());
    println!(
        "training: {steps_done} steps in {train_secs:.0} s ({:.3} steps/s); inference {:.1} s per 1000×1000 image; \
         peak memory {:.2} GiB; wall {:.0} s",
        steps_done as f64 / train_secs.max(1e-9),
        infer_secs / test.len() as f64,
        peak_memory_bytes().unwrap_or(0) as f64 / (1u64 << 30) as f64,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
