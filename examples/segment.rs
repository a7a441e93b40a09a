//! Segments nuclei in H&E images with the trained model and writes outputs other tools
//! read: a label map, an outline overlay, GeoJSON outlines (QuPath: File › Import objects)
//! and a CSV of per-nucleus measurements.
//!
//! ```text
//! cargo run --example segment                      # the bundled sample → ./nucseg-out/
//! cargo run --release --example segment -- slide1.tif more-tiles/ --out results --tta d4
//! cargo run --release --example segment -- tile.png --truth tile_labels.png   # + comparison overlay
//! ```

mod common;

use std::{path::PathBuf, process::ExitCode, time::Instant};

use clap::Parser;
use common::{exit_code, progress_bar, read_image, truth_for};
use nucseg::{
    backend::BackendKind,
    data::image_inputs,
    export::{file_names, write_all},
    output::{stem, OutputDir},
    pipeline::Pipeline,
    postprocess::TtaSet,
};

#[derive(Parser)]
#[command(about = "Segment nuclei in H&E images (label map, overlay, GeoJSON, CSV per image)")]
struct Args {
    /// Images or folders of images (PNG, JPEG, TIFF); default: the bundled sample tile.
    images: Vec<PathBuf>,
    #[command(flatten)]
    model: common::ModelArgs,
    /// Test-time augmentation: none, paper (7 views) or d4 (all 8 flips/rotations).
    #[arg(long, default_value = "paper")]
    tta: TtaSet,
    /// Ground truth: a label map or MoNuSeg XML, or a folder of them named like the images;
    /// adds a true/false positive comparison overlay.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Output folder.
    #[arg(long, default_value = "nucseg-out")]
    out: PathBuf,
    /// Replace existing outputs.
    #[arg(long)]
    overwrite: bool,
    /// Compute device: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: BackendKind,
    #[command(flatten)]
    pipeline: common::PipelineArgs,
    #[command(flatten)]
    scale: common::ScaleArgs,
    #[command(flatten)]
    limits: common::ReadLimits,
}

fn main() -> ExitCode {
    exit_code(run(Args::parse()))
}

fn run(args: Args) -> nucseg::Result<()> {
    args.limits.apply();
    let images = if args.images.is_empty() {
        vec![PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("assets/sample/TCGA-21-5784-01Z-00-DX1_crop.png")]
    } else {
        args.images
            .iter()
            .map(image_inputs)
            .collect::<Result<Vec<_>, _>>()?
            .concat()
    };
    // Every output name is checked before the model loads.
    let with_truth = args.truth.is_some();
    let out = OutputDir::for_inputs(&args.out, args.overwrite, &images, |stem| {
        file_names(stem, with_truth)
    })?;
    let device = args.device.device()?;
    let (bundle, normalizer) = args.model.load(&device)?;
    let config = args.scale.apply(args.pipeline.config(args.tta));
    let pipeline = Pipeline::new(config, &bundle.model, normalizer)?;
    println!(
        "model {} · normalization {} · TTA {} · {} image(s) → {}",
        bundle.path.display(),
        pipeline.normalizer_name(),
        args.tta.name(),
        images.len(),
        out.path().display()
    );
    let bar = progress_bar(images.len() as u64, "images", true);
    let (start, mut nuclei) = (Instant::now(), 0);
    for path in &images {
        let image = read_image(path, |line| bar.println(line))?;
        let truth = match &args.truth {
            Some(t) => truth_for(t, path)?
                .map(|t| t.read(image.dimensions()))
                .transpose()?,
            None => None,
        };
        let result = pipeline.run_with_progress(&image, |done, total| {
            bar.set_message(format!("{}: tile {done}/{total}", stem(path)))
        })?;
        let files = write_all(&out, &stem(path), &image, &result, truth.as_ref())?;
        nuclei += files.count;
        bar.println(format!(
            "{}: {} nuclei → {}",
            path.display(),
            files.count,
            files.labels.display()
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "{} nuclei in {} image(s), {:.1} s per image; outputs in {}",
        nuclei,
        images.len(),
        start.elapsed().as_secs_f64() / images.len() as f64,
        out.path().display()
    );
    Ok(())
}
