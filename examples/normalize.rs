//! Stain-normalizes an image or a folder of images to a template, and writes each result
//! with a side-by-side before/after picture.
//!
//! ```text
//! cargo run --example normalize -- ../shared/data/tnbc/images \
//!     --method dcgmm --model /tmp/dcgmm/dcgmm.bpk \
//!     --template ../shared/data/monuseg-kumar/images/TCGA-A7-A13E-01Z-00-DX1.tif --out /tmp/normalized
//! ```
//! For `dcgmm`, `--template` may also be a template JSON written by `train_dcgmm`.
//! Writes `<stem>.png` (normalized) and `<stem>_before_after.png`; existing files are kept
//! unless `--overwrite` is given.

use std::{path::PathBuf, process::ExitCode, time::Instant};

use clap::Parser;
use image::{imageops, RgbImage};
use nucseg::{
    backend::BackendKind,
    data::{image_inputs, read_rgb, write_rgb_png},
    output::{stem, OutputDir},
    stain::{
        Dcgmm, DcgmmNormalizer, DcgmmTemplate, IdentityNormalizer, Macenko, NormalizerKind,
        Reinhard, StainError, StainNormalizer,
    },
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
    /// Output folder.
    #[arg(long, default_value = "normalized")]
    out: PathBuf,
    /// Replace existing outputs.
    #[arg(long)]
    overwrite: bool,
    /// Compute device for dcgmm: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: BackendKind,
}

fn main() -> ExitCode {
    nucseg::cli::exit_code(run(Args::parse()))
}

fn normalizer(args: &Args) -> nucseg::Result<Box<dyn StainNormalizer>> {
    let is_json = args.template.extension().is_some_and(|e| e == "json");
    let mut n: Box<dyn StainNormalizer> = match args.method {
        NormalizerKind::Reinhard => Box::new(Reinhard::default()),
        NormalizerKind::Macenko => Box::new(Macenko::default()),
        NormalizerKind::None => Box::new(IdentityNormalizer),
        NormalizerKind::Dcgmm => {
            let path = args.model.as_ref().ok_or_else(|| {
                StainError::Config("--method dcgmm needs --model <file.bpk>".into())
            })?;
            let device = args.device.device()?;
            let n = DcgmmNormalizer::new(Dcgmm::load(path, &device)?, &device);
            if is_json {
                return Ok(Box::new(
                    n.with_template(DcgmmTemplate::load(&args.template)?),
                ));
            }
            Box::new(n)
        }
    };
    if is_json {
        return Err(StainError::Config(format!(
            "a template .json is only for --method dcgmm, not {}",
            args.method
        ))
        .into());
    }
    n.fit(&read_rgb(&args.template)?)?;
    Ok(n)
}

fn run(args: Args) -> nucseg::Result<()> {
    let inputs = image_inputs(&args.input)?;
    let normalizer = normalizer(&args)?;
    let out = OutputDir::create(&args.out, args.overwrite)?;
    for (i, path) in inputs.iter().enumerate() {
        let t = Instant::now();
        let image = read_rgb(path)?;
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

/// `before | after`, with an 8-pixel white gap.
fn side_by_side(before: &RgbImage, after: &RgbImage) -> RgbImage {
    const GAP: u32 = 8;
    let (w, h) = before.dimensions();
    let mut canvas = RgbImage::from_pixel(2 * w + GAP, h, image::Rgb([255, 255, 255]));
    imageops::replace(&mut canvas, before, 0, 0);
    imageops::replace(&mut canvas, after, (w + GAP) as i64, 0);
    canvas
}
