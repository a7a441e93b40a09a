//! Where inference time goes, in numbers (docs/performance.md is made from its output): the
//! machine's matrix-multiply peak, the shipped model's arithmetic, each stage of one forward
//! pass, and `segment`'s pipeline end to end per TTA setting, with peak memory.
//!
//! ```text
//! cargo run --release --example speed                         # a 1000×1000 Kumar image
//! cargo run --release --example speed -- tile.png --runs 3 --tta none,paper
//! ```
//!
//! Run it on a quiet machine; every figure is the best of `--runs`.

mod common;

use std::{path::PathBuf, process::ExitCode, time::Instant};

use clap::Parser;
use common::{exit_code, peak_memory_bytes, read_image};
use nucseg::{
    backend::BackendKind,
    burn::tensor::{Distribution, Tensor},
    model::{heads::RoiHeadsConfig, InferenceStage, MaskRcnnConfig, StageTime},
    postprocess::TtaSet,
    pretrained::{default_model, load_bundle},
};

#[derive(Parser)]
#[command(about = "Time the shipped model stage by stage and the pipeline end to end")]
struct Args {
    /// Image to time (default: the 1000×1000 MoNuSeg image TCGA-21-5784 from ../shared).
    image: Option<PathBuf>,
    /// Model bundle; default: the shipped model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Resize each model input by this factor instead of the model's own test scale (the
    /// shipped model's is 1: inputs as given).
    #[arg(long)]
    test_scale: Option<f32>,
    /// Timed repetitions of each measurement (the best is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// TTA settings of the end-to-end runs, comma-separated (none, paper, d4).
    #[arg(long, default_value = "none,paper", value_delimiter = ',')]
    tta: Vec<TtaSet>,
    /// Side of the square matrices of the peak measurement.
    #[arg(long, default_value_t = 2048)]
    gemm: usize,
    /// Also time the torchvision peer's configuration (shared/peers/torchvision_maskrcnn_cpu.py):
    /// ResNet-50-FPN with random weights, per-image caps, score threshold 0, and at most
    /// this many detections (the count the peer printed, so both mask the same number).
    #[arg(long)]
    r50_detections: Option<usize>,
    /// Also time this many training steps (median reported, after one untimed step) of the
    /// torchvision training peer's network (shared/peers/torchvision_maskrcnn_train_cpu.py):
    /// ResNet-18-FPN with frozen batch norm, random weights, two random 256² crops of the
    /// first eight images of `--train-data`, SGD; no augmentation.
    #[arg(long)]
    train_steps: Option<usize>,
    /// Annotated images of the training-step timing (MoNuSeg layout).
    #[arg(long, default_value = "../shared/data/monuseg-kumar")]
    train_data: PathBuf,
    /// Compute device: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: BackendKind,
    /// Only one forward pass, at `--min-score` (for instruction counting under callgrind:
    /// `scripts/callgrind_forward.sh`).
    #[arg(long)]
    forward_only: bool,
    /// The pipeline's settings (`--min-score` also sets the second forward pass's).
    #[command(flatten)]
    pipeline: common::PipelineArgs,
}

fn main() -> ExitCode {
    exit_code(run(Args::parse()))
}

/// The best wall time of `runs` calls of `f`, and its last result.
fn best_of<T>(runs: usize, mut f: impl FnMut() -> nucseg::Result<T>) -> nucseg::Result<(f64, T)> {
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let out = f()?;
        best = best.min(start.elapsed().as_secs_f64());
        last = Some(out);
    }
    Ok((best, last.expect("at least one run")))
}

/// Resets the peak resident memory that [`peak_memory_bytes`] reads (Linux).
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn run(args: Args) -> nucseg::Result<()> {
    let device = args.device.device()?;
    let path = args.image.clone().unwrap_or_else(|| {
        let shared = std::env::var("NUCSEG_SHARED")
            .unwrap_or_else(|_| format!("{}/../shared", env!("CARGO_MANIFEST_DIR")));
        PathBuf::from(shared).join("data/monuseg-kumar/images/TCGA-21-5784-01Z-00-DX1.tif")
    });
    let image = read_image(&path, |line| eprintln!("{line}"))?;
    let (w, h) = image.dimensions();
    println!(
        "image {} ({w}×{h}), device {:?}, best of {} runs",
        path.display(),
        args.device,
        args.runs
    );

    // 1. The machine: one large matrix product on the same backend.
    let n = args.gemm;
    let a = Tensor::<2>::random([n, n], Distribution::Default, &device);
    let b = Tensor::<2>::random([n, n], Distribution::Default, &device);
    let (gemm, _) = best_of(args.runs, || {
        let c = a.clone().matmul(b.clone());
        let _ = device.sync();
        Ok(c)
    })?;
    let peak = 2.0 * (n as f64).powi(3) / gemm / 1e9;
    println!("\n## Machine\nf32 matmul {n}×{n}·{n}×{n}: {gemm:.3} s = {peak:.1} GFLOP/s (the measured peak)");

    // 2. The model's arithmetic.
    let bundle = common::with_test_settings(
        match &args.model {
            Some(p) => load_bundle(p, &device)?,
            None => default_model(&device)?,
        },
        &common::TestSettings {
            test_scale: args.test_scale,
            ..Default::default()
        },
    )?;
    let model = &bundle.model;
    let macs = model.config.inference_macs();
    println!(
        "\n## Model {}\ndense part (backbone + FPN + RPN head): {:.1} GFLOP per megapixel \
         (backbone {:.1}, FPN {:.1}, RPN {:.1}); box head {:.1} MFLOP per proposal; \
         mask head {:.1} MFLOP per detection",
        bundle.path.display(),
        2e-3 * macs.dense_per_pixel(),
        2e-3 * macs.backbone_per_pixel,
        2e-3 * macs.fpn_per_pixel,
        2e-3 * macs.rpn_per_pixel,
        2e-6 * macs.box_head_per_roi,
        2e-6 * macs.mask_head_per_roi,
    );

    // 3. One forward pass of the whole (unnormalized) image, stage by stage.
    let normalized = match &bundle.normalizer {
        Some(n) => nucseg::stain::StainNormalizer::transform(n, &image)?,
        None => image.clone(),
    };
    let thresholds = if args.forward_only {
        vec![args.pipeline.min_score()]
    } else {
        vec![0.0, args.pipeline.min_score()]
    };
    for min_score in thresholds {
        let mut best: Option<(f64, Vec<StageTime>)> = None;
        for _ in 0..args.runs.max(1) {
            let mut stages = Vec::new();
            let start = Instant::now();
            let found = model.predict_timed(
                std::slice::from_ref(&normalized),
                min_score,
                Some(&mut |s| stages.push(s)),
            );
            let total = start.elapsed().as_secs_f64();
            drop(found);
            if best.as_ref().is_none_or(|(t, _)| total < *t) {
                best = Some((total, stages));
            }
        }
        let (total, stages) = best.expect("one run");
        println!(
            "\n## Forward of the whole image, detections scored ≥ {min_score} masked: {total:.3} s\n\
             | stage | s | share | work | GFLOP/s |\n| --- | --- | --- | --- | --- |"
        );
        for stage in InferenceStage::ALL {
            let of: Vec<&StageTime> = stages.iter().filter(|s| s.stage == stage).collect();
            let secs: f64 = of.iter().map(|s| s.time.as_secs_f64()).sum();
            let work = match stage {
                InferenceStage::BoxRoiAlign
                | InferenceStage::BoxBranch
                | InferenceStage::MaskRoiAlign
                | InferenceStage::MaskHead
                | InferenceStage::Paste => of.iter().map(|s| s.count).sum::<usize>(),
                _ => of.first().map_or(0, |s| s.count),
            };
            let flop = 2.0
                * match stage {
                    InferenceStage::Backbone => macs.backbone_per_pixel * work as f64,
                    InferenceStage::Fpn => macs.fpn_per_pixel * work as f64,
                    InferenceStage::Rpn => macs.rpn_per_pixel * work as f64,
                    InferenceStage::BoxBranch => macs.box_head_per_roi * work as f64,
                    InferenceStage::MaskHead => macs.mask_head_per_roi * work as f64,
                    _ => 0.0,
                };
            let unit = match stage {
                InferenceStage::BoxRoiAlign | InferenceStage::BoxBranch => "proposals",
                InferenceStage::MaskRoiAlign | InferenceStage::MaskHead | InferenceStage::Paste => {
                    "detections"
                }
                _ => "px",
            };
            let rate = if flop > 0.0 {
                format!("{:.1}", flop / secs / 1e9)
            } else {
                "—".into()
            };
            println!(
                "| {} | {secs:.3} | {:.0} % | {work} {unit} | {rate} |",
                stage.name(),
                100.0 * secs / total
            );
        }
        let work_of = |stage: InferenceStage| -> usize {
            stages
                .iter()
                .filter(|s| s.stage == stage)
                .map(|s| s.count)
                .sum()
        };
        let flop = 2.0
            * macs.total(
                work_of(InferenceStage::Backbone) as f64,
                work_of(InferenceStage::BoxBranch),
                work_of(InferenceStage::MaskHead),
            );
        println!(
            "all of it: {:.1} GFLOP, {:.1} GFLOP/s; {:.2} s at the measured peak (the \
             arithmetic floor of this forward)",
            flop / 1e9,
            flop / total / 1e9,
            flop / (peak * 1e9)
        );
    }

    if args.forward_only {
        return Ok(());
    }

    // 4. The torchvision peer's network, at its detection count.
    if let Some(dets) = args.r50_detections {
        device.seed(0);
        let r50 = MaskRcnnConfig::new()
            .with_test_caps_area(None)
            .with_roi_heads(
                RoiHeadsConfig::new()
                    .with_score_thresh(0.0)
                    .with_detections_per_img(dets),
            )
            .init(&device)?;
        let mut masked = 0;
        let (secs, _) = best_of(args.runs, || {
            masked = 0;
            let count = &mut |s: StageTime| {
                if s.stage == InferenceStage::MaskHead {
                    masked += s.count
                }
            };
            Ok(r50.predict_timed(std::slice::from_ref(&image), 0.0, Some(count)))
        })?;
        println!(
            "\n## ResNet-50-FPN Mask R-CNN, random weights, the peer's settings\n\
             forward {w}×{h}: {secs:.3} s, {masked} detections through the mask head \
             (at most {dets})"
        );
    }

    // 5. The torchvision training peer's network, one SGD step at a time.
    if let Some(steps) = args.train_steps {
        train_steps(&args.train_data, steps, &device)?;
    }

    // 6. The pipeline end to end, as `segment` runs it (normalization, tiles, TTA, stitching).
    println!(
        "\n## Pipeline end to end ({}-px tiles, {}-px overlap, scores ≥ {})\n\
         | TTA | s | nuclei | peak RSS (MB) |\n| --- | --- | --- | --- |",
        args.pipeline.tile,
        args.pipeline.overlap,
        args.pipeline.min_score()
    );
    for set in &args.tta {
        let config = args.pipeline.config(*set);
        let pipeline = bundle.pipeline(config)?;
        reset_peak_memory();
        let (secs, nuclei) = best_of(args.runs, || pipeline.run(&image))?;
        let rss = peak_memory_bytes().map_or("?".into(), |b| format!("{:.0}", b as f64 / 1e6));
        println!("| {} | {secs:.2} | {} | {rss} |", set.name(), nuclei.len());
    }
    Ok(())
}

/// Median seconds per training step of the peer's ResNet-18-FPN Mask R-CNN (frozen batch
/// norm as torchvision ships it, 256-channel pyramid, its RoI sampling) on two random 256²
/// crops per step, SGD with momentum; the first step is not timed.
fn train_steps(
    data: &std::path::Path,
    steps: usize,
    device: &nucseg::burn::tensor::Device,
) -> nucseg::Result<()> {
    use nucseg::{
        data::open_dataset,
        model::backbone::ResNetConfig,
        train::{MaskRcnnTrainer, MaskRcnnTrainingConfig, TrainingImage},
    };
    let mut samples = open_dataset(data)?;
    samples.sort_by(|a, b| a.id.cmp(&b.id));
    samples.truncate(8);
    let images = TrainingImage::load_all(&samples, None)?;
    device.seed(0);
    let network = MaskRcnnConfig::new().with_backbone(ResNetConfig::new(18));
    let config = MaskRcnnTrainingConfig::new()
        .with_steps(steps + 1)
        .with_batch_size(2)
        .with_crop_size(256)
        .with_flip_rotate(false)
        .with_stain_jitter(0.0)
        .with_warmup_steps(0)
        .with_grad_clip_norm(None)
        .with_checkpoint_every(0);
    let mut trainer = MaskRcnnTrainer::new(network.init(device)?, config, device, None)?;
    let mut times = Vec::with_capacity(steps);
    let mut last = 0.0;
    for step in 0..=steps {
        let report = trainer.train_step(&images)?;
        last = report.total;
        if step > 0 {
            times.push(report.seconds);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    println!(
        "\n## Training step, the torchvision peer's ResNet-18-FPN (frozen batch norm, random \
         weights), 2 × 256² crops of {} images\nmedian of {steps}: {median:.3} s per step \
         (min {:.3}, max {:.3}; last loss {last:.3})",
        images.len(),
        times.first().copied().unwrap_or(f64::NAN),
        times.last().copied().unwrap_or(f64::NAN),
    );
    Ok(())
}
