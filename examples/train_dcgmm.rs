//! Trains the DCGMM stain-normalization model (Zanjani et al. 2018, with Jung et al.'s
//! U-Net) on any H&E images, unsupervised, and saves it.
//!
//! ```text
//! cargo run --release --example train_dcgmm -- \
//!     ../shared/data/monuseg-kumar/images ../shared/data/tnbc/images \
//!     --steps 2000 --crop 64 --batch 4 --depth 3 --width 8 --out /tmp/dcgmm/dcgmm.bpk \
//!     --template ../shared/data/monuseg-kumar/images/TCGA-A7-A13E-01Z-00-DX1.tif \
//!     --eval-monuseg ../shared/data/monuseg-kumar
//! ```
//! Writes `<out>` (weights, burnpack) and `<out>.json` (configuration), checkpointed every
//! `--checkpoint-every` steps; with `--template`, also the template's statistics
//! (`<out stem>.template.json`). `--eval-monuseg` measures how strongly one cluster claims
//! the ground-truth nuclei of the Kumar test images. (The shipped network's template was
//! refitted to TCGA-G9-6356, the shipped model's template, with `normalize --save-template`.)

mod common;

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use nucseg::{
    backend::BackendKind,
    data::{read_rgb, KumarSplit, MonusegDataset},
    stain::{ClusterPurity, CovarianceKind, Dcgmm, DcgmmConfig, UNetConfig},
    train::{load_training_images, DcgmmTrainer, DcgmmTrainingConfig},
};

#[derive(Parser)]
#[command(about = "Train the DCGMM stain normalizer")]
struct Args {
    /// Folders (or single files) of H&E images to train on.
    #[arg(required = true)]
    data: Vec<PathBuf>,
    /// Optimizer steps.
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    /// Side of the random square crops (a multiple of 2^depth).
    #[arg(long, default_value_t = 128)]
    crop: usize,
    /// Crops per step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Adam learning rate (Zanjani et al.: 1e-4).
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// U-Net depth (number of 2× downsamplings).
    #[arg(long, default_value_t = 4)]
    depth: usize,
    /// U-Net width of the first level.
    #[arg(long, default_value_t = 32)]
    width: usize,
    /// Mixture components.
    #[arg(long, default_value_t = 3)]
    clusters: usize,
    /// Covariance model: full or diagonal.
    #[arg(long, default_value = "full")]
    covariance: String,
    /// Model file to write (burnpack); its configuration goes beside it as .json.
    #[arg(long, default_value = "dcgmm.bpk")]
    out: PathBuf,
    /// Save a checkpoint every this many steps (0: only at the end).
    #[arg(long, default_value_t = 500)]
    checkpoint_every: usize,
    /// Seed of the initialization and the crop sampler.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Compute device: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: BackendKind,
    /// Fit this template image after training and save its statistics beside the model.
    #[arg(long)]
    template: Option<PathBuf>,
    /// A MoNuSeg folder (images/ + labels/): report the nuclei purity of the clusters on
    /// its Kumar test images.
    #[arg(long)]
    eval_monuseg: Option<PathBuf>,
    /// Replace an existing model, configuration and template at --out.
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    limits: common::ReadLimits,
}

fn main() -> ExitCode {
    common::exit_code(run(Args::parse()))
}

fn run(args: Args) -> nucseg::Result<()> {
    args.limits.apply();
    // The model, its configuration and the template: checked before any work.
    let template_out = args.out.with_extension("template.json");
    let mut outputs = vec![args.out.clone(), args.out.with_extension("json")];
    if args.template.is_some() {
        outputs.push(template_out.clone());
    }
    if let Some(path) = outputs.into_iter().find(|p| p.exists() && !args.overwrite) {
        return Err(nucseg::data::DataError::WouldOverwrite { path }.into());
    }
    let device = args.device.device()?;
    let covariance = match args.covariance.to_ascii_lowercase().as_str() {
        "full" => CovarianceKind::Full,
        "diagonal" | "diag" => CovarianceKind::Diagonal,
        other => {
            return Err(nucseg::stain::StainError::Config(format!(
                "covariance `{other}`: expected full or diagonal"
            ))
            .into())
        }
    };
    let model = DcgmmConfig::new()
        .with_clusters(args.clusters)
        .with_covariance(covariance)
        .with_unet(
            UNetConfig::new()
                .with_depth(args.depth)
                .with_base_width(args.width),
        );
    let training = DcgmmTrainingConfig::new()
        .with_steps(args.steps)
        .with_crop_size(args.crop)
        .with_batch_size(args.batch)
        .with_learning_rate(args.lr)
        .with_checkpoint_every(args.checkpoint_every)
        .with_seed(args.seed);
    let images = load_training_images(&args.data)?;
    println!("{} training images", images.len());
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| nucseg::stain::StainError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
    }
    let trainer = DcgmmTrainer::new(model, training, images)?.with_checkpoint(&args.out);
    let progress = common::DcgmmProgress::new(args.steps);
    let (model, report) = trainer.train(&device, |r| progress.step(r))?;
    progress.finish();
    let n = report.curve.len();
    println!(
        "trained {n} steps in {:.1} s ({:.3} s/step)",
        report.seconds,
        report.seconds / n.max(1) as f64
    );
    println!("NLL per pixel, mean over each tenth of training:");
    for t in 0..10 {
        let (a, b) = (t * n / 10 + 1, (t + 1) * n / 10 + 1);
        if let Some(m) = report.mean_nll(a..b) {
            println!("  steps {a:>6}..{:>6}: {m:.4}", b - 1);
        }
    }
    if let (Some(first), Some(last)) = (
        report.mean_nll(1..11),
        report.mean_nll(n.saturating_sub(9)..n + 1),
    ) {
        println!("  first 10 steps {first:.4}, last 10 steps {last:.4}");
    }
    println!("model: {}", args.out.display());

    if let Some(path) = &args.template {
        let template = model.fit_template(&read_rgb(path)?)?;
        template.save(&template_out)?;
        println!("template {} → {}", path.display(), template_out.display());
    }
    if let Some(dir) = &args.eval_monuseg {
        evaluate_purity(&model, dir)?;
    }
    Ok(())
}

/// Mean γ of the nuclei cluster on the ground-truth nuclei vs elsewhere, per Kumar test image.
fn evaluate_purity(model: &Dcgmm, dir: &PathBuf) -> nucseg::Result<()> {
    let ds = MonusegDataset::open(dir)?;
    let k = model.clusters();
    let mut votes = vec![0usize; k];
    let (mut inside, mut outside, mut count) = (0.0, 0.0, 0.0);
    println!("nuclei purity on the Kumar test images (cluster, mean γ on nuclei / elsewhere, argmax share):");
    for info in ds.split(KumarSplit::Test)? {
        let sample = info.load()?;
        let Some(labels) = sample.labels else {
            continue;
        };
        let mask: Vec<bool> = labels.as_slice().iter().map(|&v| v != 0).collect();
        let gamma = model.assignments_of_image(&sample.image)?;
        let Some(p) = ClusterPurity::of(&gamma, k, &mask) else {
            continue;
        };
        println!(
            "  {:<28} k={} {:.3} / {:.3}  {:.3}",
            info.id, p.cluster, p.inside, p.outside, p.argmax_inside
        );
        votes[p.cluster] += 1;
        inside += p.inside;
        outside += p.outside;
        count += 1.0;
    }
    if count > 0.0 {
        println!(
            "  mean over {count} images: {:.3} / {:.3}; nuclei cluster votes {votes:?}",
            inside / count,
            outside / count
        );
    }
    Ok(())
}
