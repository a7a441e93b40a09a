//! Test slides from the MoNuSeg images, and the slide path checked against their truth.
//!
//! `build` lays annotated images out on glass (a grid with margins) and writes the mosaic
//! as a pyramidal BigTIFF (`<name>.tif`, deflate) and an Aperio SVS (`<name>.svs`, JPEG
//! tiles with shared tables, `MPP` and `AppMag`), plus `<name>.layout.json` (where each
//! image lies, and its truth). `score` reads a slide run's `nuclei.geojson.gz`, rasterizes the outlines,
//! and scores each image's region against that image's own annotation, so the figures sit
//! beside `evaluate`'s per-image ones.
//!
//! ```text
//! cargo run --release --example slide_mosaic -- build --cols 2 --count 4 --out test-slides
//! cargo run --release --example segment_slide -- test-slides/mosaic-2x2.tif --out slides
//! cargo run --release --example slide_mosaic -- score test-slides/mosaic-2x2.layout.json slides/mosaic-2x2
//! ```

mod common;

use std::{io::Read, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use common::exit_code;
use nucseg::{
    data::{
        read_rgb, DataError, KumarSplit, LabelMap, MaskKind, MonusegDataset, Polygon, RgbImage,
        TruthFile,
    },
    metrics::ImageMetrics,
    slide::{write_pyramid, PyramidOptions, SlideError, GEOJSON_FILE},
    stain::{Macenko, StainNormalizer},
};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(about = "Build mosaic test slides from MoNuSeg images; score a slide run on them")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lay images out on glass and write them as a pyramidal BigTIFF and an SVS.
    Build {
        /// The MoNuSeg / Kumar folder (images/, annotations/).
        #[arg(long, default_value = "../shared/data/monuseg-kumar")]
        data: PathBuf,
        /// How many of the Kumar training images (in split order).
        #[arg(long, default_value_t = 4)]
        count: usize,
        /// Images per row.
        #[arg(long, default_value_t = 2)]
        cols: usize,
        /// Glass around and between the images (px).
        #[arg(long, default_value_t = 300)]
        margin: u32,
        /// Microns per pixel written into the files (the Kumar images: 0.25).
        #[arg(long, default_value_t = 0.25)]
        mpp: f64,
        /// Output folder.
        #[arg(long, default_value = "test-slides")]
        out: PathBuf,
        /// File name (default: mosaic-<cols>x<rows>).
        #[arg(long)]
        name: Option<String>,
        /// Map every image onto this image's stains (Macenko) first, so the mosaic has one
        /// staining, as a real slide does (the Kumar images come from different slides);
        /// the mapped images are written to `<out>/<name>-images/` for the per-image run.
        #[arg(long)]
        one_stain: Option<PathBuf>,
    },
    /// Score a slide run (its output folder) against the mosaic's annotations.
    Score {
        /// The `<name>.layout.json` written by `build`.
        layout: PathBuf,
        /// The slide's output folder (holding nuclei.geojson.gz).
        run: PathBuf,
    },
}

#[derive(Serialize, Deserialize)]
struct Layout {
    width: u32,
    height: u32,
    images: Vec<Placed>,
}

#[derive(Serialize, Deserialize)]
struct Placed {
    id: String,
    /// Its ground truth (label map or MoNuSeg XML).
    truth: PathBuf,
    x: u32,
    y: u32,
    width: u32,
    height: u32,
}

fn main() -> ExitCode {
    exit_code(match Args::parse().command {
        Command::Build {
            data,
            count,
            cols,
            margin,
            mpp,
            out,
            name,
            one_stain,
        } => build(data, count, cols, margin, mpp, out, name, one_stain),
        Command::Score { layout, run } => score(layout, run),
    })
}

#[allow(clippy::too_many_arguments)]
fn build(
    data: PathBuf,
    count: usize,
    cols: usize,
    margin: u32,
    mpp: f64,
    out: PathBuf,
    name: Option<String>,
    one_stain: Option<PathBuf>,
) -> nucseg::Result<()> {
    let samples = MonusegDataset::open(&data)?.split(KumarSplit::Train)?;
    let chosen = &samples[..count.min(samples.len())];
    let cols = cols.max(1);
    let rows = chosen.len().div_ceil(cols);
    let mut images: Vec<RgbImage> = chosen
        .iter()
        .map(|s| read_rgb(&s.image))
        .collect::<Result<_, _>>()?;
    let name = name.unwrap_or_else(|| format!("mosaic-{cols}x{rows}"));
    if let Some(template) = &one_stain {
        let mut macenko = Macenko::default();
        macenko.fit(&read_rgb(template)?)?;
        let folder = out.join(format!("{name}-images"));
        std::fs::create_dir_all(&folder).map_err(|e| DataError::Io {
            path: folder.clone(),
            source: e,
        })?;
        for (sample, image) in chosen.iter().zip(images.iter_mut()) {
            *image = macenko.transform(image)?;
            let path = folder.join(format!("{}.png", sample.id));
            image.save(&path).map_err(|e| DataError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?;
        }
        println!(
            "{}: the images mapped onto {}'s stains",
            folder.display(),
            template.display()
        );
    }
    let cell_w = images.iter().map(|i| i.width()).max().unwrap_or(0);
    let cell_h = images.iter().map(|i| i.height()).max().unwrap_or(0);
    let width = margin + cols as u32 * (cell_w + margin);
    let height = margin + rows as u32 * (cell_h + margin);
    let mut mosaic = RgbImage::from_pixel(width, height, image::Rgb([244, 244, 242]));
    let mut placed = Vec::new();
    for (k, (sample, image)) in chosen.iter().zip(&images).enumerate() {
        let x = margin + (k % cols) as u32 * (cell_w + margin);
        let y = margin + (k / cols) as u32 * (cell_h + margin);
        image::imageops::replace(&mut mosaic, image, x as i64, y as i64);
        placed.push(Placed {
            id: sample.id.clone(),
            truth: sample
                .truth
                .as_ref()
                .map(|t| t.path().to_path_buf())
                .ok_or_else(|| DataError::Io {
                    path: sample.image.clone(),
                    source: std::io::Error::other("no ground truth beside this image"),
                })?,
            x,
            y,
            width: image.width(),
            height: image.height(),
        });
    }
    std::fs::create_dir_all(&out).map_err(|e| DataError::Io {
        path: out.clone(),
        source: e,
    })?;
    let tif = out.join(format!("{name}.tif"));
    write_pyramid(&tif, &mosaic, &PyramidOptions::pyramidal(Some(mpp)))?;
    let svs = out.join(format!("{name}.svs"));
    write_pyramid(&svs, &mosaic, &PyramidOptions::aperio(mpp))?;
    let layout = out.join(format!("{name}.layout.json"));
    nucseg::io::write_json(
        &layout,
        &Layout {
            width,
            height,
            images: placed,
        },
    )
    .map_err(|e| DataError::Io {
        path: layout.clone(),
        source: e,
    })?;
    for p in [&tif, &svs, &layout] {
        let bytes = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        println!("{} ({:.1} MB)", p.display(), bytes as f64 / 1e6);
    }
    println!("{width}×{height} px, {} image(s) on glass", chosen.len());
    Ok(())
}

fn score(layout_path: PathBuf, run: PathBuf) -> nucseg::Result<()> {
    let layout: Layout = nucseg::io::read_json(&layout_path).map_err(|e| DataError::Io {
        path: layout_path.clone(),
        source: e,
    })?;
    let geojson = run.join(GEOJSON_FILE);
    let mut text = String::new();
    std::fs::File::open(&geojson)
        .map(|f| flate2::read::GzDecoder::new(f).read_to_string(&mut text))
        .and_then(|r| r)
        .map_err(|e| SlideError::Io {
            path: geojson.clone(),
            source: e,
        })?;
    let collection: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| SlideError::Invalid {
            path: geojson.clone(),
            message: format!("not GeoJSON: {e}"),
        })?;
    // Outlines trace pixel edges; the rasterizer fills pixels whose centre (integer
    // coordinates, as MoNuSeg's) lies inside, so shift by half a pixel.
    let mut predicted = LabelMap::new(layout.width, layout.height);
    let features = collection["features"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (k, f) in features.iter().enumerate() {
        let ring = f["geometry"]["coordinates"][0]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let vertices = ring
            .iter()
            .filter_map(|p| Some((p[0].as_f64()? - 0.5, p[1].as_f64()? - 0.5)))
            .collect();
        Polygon { vertices }.fill(&mut predicted, k as u32 + 1);
    }
    println!("{} nuclei in {}", features.len(), geojson.display());
    let mut sums = [0.0f64; 4];
    for p in &layout.images {
        let truth = if p.truth.extension().is_some_and(|e| e == "xml") {
            TruthFile::Xml(p.truth.clone())
        } else {
            TruthFile::LabelMap(p.truth.clone(), MaskKind::Auto)
        }
        .read((p.width, p.height))?;
        let pred = predicted.crop(p.x, p.y, p.width, p.height).relabeled();
        let m = ImageMetrics::compute(&truth, &pred)?;
        println!(
            "{}: AJI {:.4}  PQ {:.4}  Dice {:.4}  {} predicted / {} true",
            p.id,
            m.aji,
            m.pq.pq,
            m.dice,
            pred.count(),
            truth.count()
        );
        for (s, v) in sums.iter_mut().zip([m.aji, m.pq.pq, m.dice, 1.0]) {
            *s += v;
        }
    }
    let n = sums[3].max(1.0);
    println!(
        "mean over {} image(s): AJI {:.4}  PQ {:.4}  Dice {:.4}",
        layout.images.len(),
        sums[0] / n,
        sums[1] / n,
        sums[2] / n
    );
    Ok(())
}
