//! Stain-normalizes an image or a folder of images to a template, and writes each result
//! with a side-by-side before/after picture.
//!
//! ```text
//! cargo run --example normalize -- ../shared/data/tnbc/images \
//!     --method dcgmm --model /tmp/dcgmm/dcgmm.bpk \
//!     --template ../shared/data/monuseg-kumar/images/TCGA-A7-A13E-01Z-00-DX1.tif --out /tmp/normalized
//! ```
//! For `dcgmm`, `--template` may also be a template JSON written by `train_dcgmm`;
//! `--save-template t.json` writes the template image's fitted statistics (what a DCGMM
//! network uses by default is the `.template.json` beside it):
//!
//! ```text
//! cargo run --example normalize -- ../shared/data/monuseg-kumar/images/TCGA-G9-6356-01Z-00-DX1.tif \
//!     --method dcgmm --model models/dcgmm-kumar.bpk \
//!     --template ../shared/data/monuseg-kumar/images/TCGA-G9-6356-01Z-00-DX1.tif \
//!     --save-template models/dcgmm-kumar.template.json --overwrite --out /tmp/normalized
//! ```
//! (a new shipped template's SHA-256 then goes into `DEFAULT_DCGMM_FILES` in
//! `src/pretrained.rs`, which checks the shipped DCGMM's files before it serves).
//! Writes `<stem>.png` (normalized) and `<stem>_before_after.png`; existing files are kept
//! unless `--overwrite` is given.

mod common;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use clap::Parser;
use nucseg::{
    backend::BackendKind,
    data::{image_inputs, write_rgb_png},
    export::side_by_side,
    output::{stem, OutputDir},
    stain::{build_normalizer, IdentityNormalizer, NormalizerKind},
};

#[derive(Parser)]
#[command(about = "Normalize H&E stain colours to a template")]
struct Args {
    /// An image or a folder of images.
    input: PathBuf,
    /// Normalizer: dcgmm, macenko, reinhard or none.
    #[arg(long, default_value = "macenko")]
    method: NormalizerKind,
    /// The template image (for dcgmm also a template .json).
    #[arg(long)]
    template: PathBuf,
    /// The trained DCGMM model (.bpk with its .json beside it); dcgmm only.
    #[arg(long)]
    model: Option<PathBuf>,
    /// dcgmm: also write the template image's fitted statistics to this `.json` (a
    /// network's default template is the `.template.json` beside it).
    #[arg(long)]
    save_template: Option<PathBuf>,
    /// Output folder.
    #[arg(long, default_value = "normalized")]
    out: PathBuf,
    /// Replace existing outputs.
    #[arg(long)]
    overwrite: bool,
    /// Compute device for dcgmm: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: BackendKind,
    #[command(flatten)]
    limits: common::ReadLimits,
}

fn main() -> ExitCode {
    common::exit_code(run(Args::parse()))
}

/// Checks `--save-template out` before any folder is made or file read: DCGMM only, a
/// template image, a network given, `out` free (or `--overwrite`). Returns the network.
fn check_save_template<'a>(args: &'a Args, out: &Path) -> nucseg::Result<&'a Path> {
    let config = |m: &str| nucseg::stain::StainError::Config(m.to_string());
    if args.method != NormalizerKind::Dcgmm {
        return Err(config("--save-template is for --method dcgmm").into());
    }
    if args.template.extension().is_some_and(|e| e == "json") {
        return Err(config("--save-template fits a template image, not a .json").into());
    }
    if out.exists() && !args.overwrite {
        return Err(nucseg::data::DataError::WouldOverwrite {
            path: out.to_path_buf(),
        }
        .into());
    }
    let network = args
        .model
        .as_deref()
        .ok_or_else(|| config("dcgmm needs a trained model (.bpk with its .json)"))?;
    for path in [network, args.template.as_path()] {
        std::fs::metadata(path).map_err(|source| nucseg::data::DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(network)
}

/// Fits the DCGMM template of `--template` (an image) with `network` and writes it to `out`.
fn save_template(
    args: &Args,
    network: &Path,
    out: &Path,
    device: &nucseg::backend::Device,
) -> nucseg::Result<()> {
    let network = nucseg::stain::Dcgmm::load(network, device)?;
    let image = common::read_image(&args.template, |line| println!("{line}"))?;
    network.fit_template(&image)?.save(out)?;
    println!("template {} → {}", args.template.display(), out.display());
    Ok(())
}

fn run(args: Args) -> nucseg::Result<()> {
    args.limits.apply();
    let template_job = match &args.save_template {
        Some(out) => Some((check_save_template(&args, out)?, out)),
        None => None,
    };
    let inputs = image_inputs(&args.input)?;
    let out = OutputDir::for_inputs(&args.out, args.overwrite, &inputs, |stem| {
        vec![format!("{stem}.png"), format!("{stem}_before_after.png")]
    })?;
    let device = args.device.device()?;
    if let Some((network, out)) = template_job {
        save_template(&args, network, out, &device)?;
    }
    let normalizer = build_normalizer(
        args.method,
        Some(&args.template),
        args.model.as_deref(),
        &device,
    )?
    .unwrap_or_else(|| Box::new(IdentityNormalizer));
    for (i, path) in inputs.iter().enumerate() {
        let t = Instant::now();
        let image = common::read_image(path, |line| println!("{line}"))?;
        let normalized = normalizer.transform(&image)?;
        let name = stem(path);
        let result = out.claim(&format!("{name}.png"))?;
        let pair = out.claim(&format!("{name}_before_after.png"))?;
        write_rgb_png(&result, &normalized)?;
        write_rgb_png(&pair, &side_by_side(&image, &normalized))?;
        println!(
            "[{}/{}] {} → {} ({}, {:.2} s)",
            i + 1,
            inputs.len(),
            path.display(),
            result.display(),
            normalizer.name(),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
