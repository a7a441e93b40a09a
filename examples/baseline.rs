//! The classical baseline (colour deconvolution → Otsu → watershed) on a folder of images.
//!
//! ```text
//! cargo run --example baseline -- --images ../shared/data/monuseg-kumar/images --out baseline-out
//! ```
//! Writes one label map per image, `<stem>.png` (16-bit; `.tif` above 65535 nuclei).
//! Existing outputs are not overwritten unless `--overwrite` is given.

mod common;

use std::{path::PathBuf, process::ExitCode, time::Instant};

use clap::Parser;
use nucseg::{baseline::ClassicalBaseline, data, output::OutputDir};

#[derive(Parser)]
#[command(about = "Segment nuclei with the classical baseline (no learning)")]
struct Args {
    /// An image or a folder of images (PNG, JPEG, TIFF).
    #[arg(long)]
    images: PathBuf,
    /// Output folder for the label maps.
    #[arg(long, default_value = "baseline-out")]
    out: PathBuf,
    /// Only the images of this Kumar split (by file stem).
    #[arg(long)]
    split: Option<data::KumarSplit>,
    /// Replace existing outputs.
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
    let mut inputs = data::image_inputs(&args.images)?;
    if let Some(split) = args.split {
        let ids = split.ids();
        inputs.retain(|p| ids.contains(&nucseg::output::stem(p).as_str()));
    }
    if inputs.is_empty() {
        return Err(data::DataError::Dataset {
            dir: args.images.clone(),
            message: "no image of the selected split".into(),
        }
        .into());
    }
    let out = OutputDir::for_inputs(&args.out, args.overwrite, &inputs, |stem| {
        vec![format!("{stem}.png")]
    })?;
    let baseline = ClassicalBaseline::default();
    let start = Instant::now();
    let mut total = 0;
    for (k, path) in inputs.iter().enumerate() {
        let t = Instant::now();
        let image = common::read_image(path, |line| println!("{line}"))?;
        let labels = baseline.segment_labels(&image);
        let written = out.write_label_map(path, &labels)?;
        total += labels.count();
        println!(
            "[{}/{}] {} → {} ({} nuclei, {:.2} s)",
            k + 1,
            inputs.len(),
            path.display(),
            written.display(),
            labels.count(),
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "{} image(s), {} nuclei, {:.2} s per image",
        inputs.len(),
        total,
        start.elapsed().as_secs_f64() / inputs.len() as f64
    );
    Ok(())
}
