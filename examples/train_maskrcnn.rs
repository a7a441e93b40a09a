//! Trains Mask R-CNN on the 16 Kumar training images, saves it, and scores it on the 14
//! Kumar test images.
//!
//! ```text
//! cargo run --release --example train_maskrcnn -- --data ../shared/data/monuseg-kumar \
//!     --preset cpu-small --steps 3000 --out maskrcnn-out
//! ```
//! Checkpoints go to `<out>/checkpoints` every `--checkpoint-every` steps; `--resume`
//! continues from the latest one. The trained model is `<out>/model.bpk` (+ `.json`), the
//! test predictions `<out>/test-pred/<id>.png`.

use std::{path::PathBuf, process::ExitCode, time::Instant};

use clap::Parser;
use nucseg::burn::module::Module;
use nucseg::{
    backend::BackendKind,
    data::{KumarSplit, MonusegDataset},
    metrics::evaluate_folders_where,
    model::{save_model, MaskRcnnConfig, MaskRcnnTrainer, MaskRcnnTrainingConfig, TrainingImage},
    output::OutputDir,
    progress::{peak_memory_bytes, progress_bar},
    stain::{NormalizerKind, StainNormalizer},
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
    /// Stain normalization applied to every image before the network (training and test):
    /// none, macenko or reinhard.
    #[arg(long, default_value = "none")]
    normalize: NormalizerKind,
    /// Template image for --normalize.
    #[arg(long)]
    template: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let device = args.device.device()?;
    let model_config = MaskRcnnConfig::preset(&args.preset)?;
    let out = OutputDir::create(&args.out, args.overwrite || args.resume)?;
    let model_path = out.claim("model.bpk")?;
    let pred_dir = OutputDir::create(args.out.join("test-pred"), args.overwrite || args.resume)?;

    let normalizer = nucseg::stain::fit_classical(args.normalize, args.template.as_deref())?;
    if let Some(n) = &normalizer {
        n.save(&out.claim("normalizer.json")?)?;
    }
    let normalize = |image: nucseg::data::RgbImage| -> nucseg::Result<nucseg::data::RgbImage> {
        Ok(match &normalizer {
            Some(n) => n.transform(&image)?,
            None => image,
        })
    };
    let dataset = MonusegDataset::open(&args.data)?;
    let train: Vec<TrainingImage> = dataset
        .split(KumarSplit::Train)?
        .iter()
        .map(|s| {
            let sample = s.load()?;
            Ok(TrainingImage {
                id: s.id.clone(),
                image: normalize(sample.image)?,
                labels: sample.labels.expect("MoNuSeg has truth"),
            })
        })
        .collect::<nucseg::Result<_>>()?;
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
    let mut trainer = if args.resume {
        MaskRcnnTrainer::resume(config, &device, checkpoints)?
    } else {
        MaskRcnnTrainer::new(
            model_config.init(&device)?,
            config,
            &device,
            Some(checkpoints),
        )?
    };
    let params = trainer.model().num_params();
    println!(
        "model {} ({params} parameters) on {}",
        args.preset, args.device
    );

    let bar = progress_bar(args.steps as u64, "train", true);
    bar.set_position(trainer.step() as u64);
    let train_start = Instant::now();
    let first_step = trainer.step();
    let mut recent: Vec<f32> = Vec::new();
    trainer.train(&train, |r| {
        recent.push(r.total);
        if recent.len() > 20 {
            recent.remove(0);
        }
        let parts: Vec<String> = r
            .losses
            .iter()
            .map(|(n, v)| format!("{}={v:.3}", n.trim_start_matches("loss_")))
            .collect();
        bar.set_message(format!(
            "loss {:.3} (avg20 {:.3}) {} lr {:.1e}",
            r.total,
            recent.iter().sum::<f32>() / recent.len() as f32,
            parts.join(" "),
            r.lr
        ));
        bar.set_position(r.step as u64);
        if r.step % 50 == 0 {
            bar.println(format!(
                "step {} total {:.4} {}",
                r.step,
                r.total,
                parts.join(" ")
            ));
        }
    })?;
    bar.finish();
    let steps_done = trainer.step() - first_step;
    let train_secs = train_start.elapsed().as_secs_f64();
    let model = trainer.into_model();
    save_model(&model, &model_path)?;
    println!("saved {}", model_path.display());

    // Score on the test split, one image at a time, no test-time augmentation.
    let test = dataset.split(KumarSplit::Test)?;
    let bar = progress_bar(test.len() as u64, "test", true);
    let mut infer_secs = 0.0;
    for s in &test {
        let image = normalize(nucseg::data::read_rgb(&s.image)?)?;
        let t = Instant::now();
        let found = model.predict(&[&image]).pop().expect("one result");
        infer_secs += t.elapsed().as_secs_f64();
        pred_dir.write_label_map(&s.image, &found.to_label_map())?;
        bar.inc(1);
    }
    bar.finish();
    let ids = KumarSplit::Test.ids();
    let evaluation = evaluate_folders_where(args.data.join("labels"), pred_dir.path(), |s| {
        ids.contains(&s)
    })?;
    print!("{}", evaluation.table());
    println!(
        "training: {steps_done} steps in {:.0} s ({:.3} steps/s, {:.2} s/step); inference {:.1} s per 1000×1000 image; peak memory {:.2} GiB; wall {:.0} s",
        train_secs,
        steps_done as f64 / train_secs.max(1e-9),
        train_secs / steps_done.max(1) as f64,
        infer_secs / test.len() as f64,
        peak_memory_bytes().unwrap_or(0) as f64 / (1u64 << 30) as f64,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
