//! Segments the nuclei of whole-slide images (pyramidal TIFF / BigTIFF, OME-TIFF, Aperio
//! SVS) in bounded memory and writes, per slide, `nuclei.geojson.gz` (QuPath detections,
//! level-0 coordinates), `summary.json` and `thumbnail.png` (tissue outline, nuclei density).
//!
//! ```text
//! cargo run --release --example segment_slide -- slide.svs --out slides
//! cargo run --release --example segment_slide -- --manifest cohort.csv --index 3 --out slides
//! cargo run --release --example segment_slide -- slide.svs --shard 0/4 --out slides  # × 4, then
//! cargo run --release --example segment_slide -- slide.svs --merge --out slides
//! cargo run --release --example segment_slide -- --cohort-summary --out slides
//! ```
//!
//! A killed run continues from the tiles it finished when started again; a slide whose
//! `summary.json` exists is skipped (`--overwrite` redoes it). In a cluster array job,
//! `--index` defaults to `SLURM_ARRAY_TASK_ID` or `JOB_COMPLETION_INDEX` (see `deploy/`).

mod common;

use std::{path::PathBuf, process::ExitCode, time::Instant};

use clap::Parser;
use common::{exit_code, progress_bar};
use nucseg::{
    backend::BackendKind,
    pipeline::Pipeline,
    postprocess::TtaSet,
    slide::{
        cohort_csv, cohort_summaries, open_slide, read_manifest, task_index, Prepared, Shard,
        SlideConfig, SlideError, SlideRun, StainGroups,
    },
};

#[derive(Parser)]
#[command(about = "Segment nuclei in whole-slide images (GeoJSON for QuPath, summary, thumbnail)")]
struct Args {
    /// The slide (TIFF, BigTIFF, OME-TIFF, SVS); or use --manifest.
    slide: Option<PathBuf>,
    /// A CSV of slides (a `slide` column; optional `id` and `mpp`); runs row --index.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// The manifest row to run (0-based); default: $SLURM_ARRAY_TASK_ID or
    /// $JOB_COMPLETION_INDEX.
    #[arg(long)]
    index: Option<usize>,
    /// Output folder; each slide writes into its own subfolder (its id or file stem).
    #[arg(long, default_value = "nucseg-slides")]
    out: PathBuf,
    /// Microns per pixel at level 0, overriding the file's (needed when it has none).
    #[arg(long)]
    mpp: Option<f64>,
    /// Segment only the share k/n (0-based) of the slide's tiles; then run --merge.
    #[arg(long)]
    shard: Option<Shard>,
    /// Stitch the tiles the shards left into the slide's outputs.
    #[arg(long)]
    merge: bool,
    /// Write <out>/cohort.csv from the finished slides' summaries, and print it.
    #[arg(long)]
    cohort_summary: bool,
    /// Redo a finished slide, or restart one begun with other settings.
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    model: common::ModelArgs,
    /// Test-time augmentation: none (the default for slides: 6× faster), paper or d4.
    #[arg(long, default_value = "none")]
    tta: TtaSet,
    /// Compute device: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: BackendKind,
    /// Macenko / Reinhard source stains: estimated once per tissue piece (`piece`: a
    /// separate estimate for each part of the tissue mask, as for a microarray's cores),
    /// once per slide (`slide`), or per tile (`tile`).
    #[arg(long, value_enum, default_value_t = Stains::Piece)]
    stains: Stains,
    #[command(flatten)]
    pipeline: common::PipelineArgs,
}

/// Where the normalizer's source stains are estimated (`--stains`).
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
enum Stains {
    Piece,
    Slide,
    Tile,
}

fn main() -> ExitCode {
    exit_code(run(Args::parse()))
}

fn run(args: Args) -> nucseg::Result<()> {
    if args.cohort_summary {
        let summaries = cohort_summaries(&args.out)?;
        let csv = cohort_csv(&summaries);
        let path = args.out.join("cohort.csv");
        nucseg::io::write_atomic_bytes(&path, csv.as_bytes()).map_err(|e| SlideError::Io {
            path: path.clone(),
            source: e,
        })?;
        print!("{csv}");
        println!("{} finished slide(s) → {}", summaries.len(), path.display());
        return Ok(());
    }
    let (slide_path, id, mpp) = match (&args.slide, &args.manifest) {
        (Some(slide), None) => (slide.clone(), nucseg::output::stem(slide), args.mpp),
        (None, Some(manifest)) => {
            let rows = read_manifest(manifest)?;
            let index = task_index(args.index).ok_or_else(|| SlideError::Invalid {
                path: manifest.clone(),
                message: "which row? give --index (or set SLURM_ARRAY_TASK_ID)".into(),
            })?;
            let row = rows.get(index).ok_or_else(|| SlideError::Invalid {
                path: manifest.clone(),
                message: format!(
                    "row {index} asked for; the manifest has {} slide(s)",
                    rows.len()
                ),
            })?;
            (row.slide.clone(), row.id.clone(), args.mpp.or(row.mpp))
        }
        _ => {
            return Err(SlideError::Invalid {
                path: args.out.clone(),
                message: "give one slide or --manifest (or --cohort-summary)".into(),
            }
            .into())
        }
    };
    let slide = open_slide(&slide_path)?;
    let pipeline_config = args.pipeline.config(args.tta);
    let config = SlideConfig::new()
        .with_tiling(pipeline_config.tiling.clone())
        .with_min_score(pipeline_config.min_score)
        .with_overlaps(pipeline_config.overlaps.clone());
    let out = args.out.join(&id);
    let device = args.device.device()?;
    let (bundle, normalizer) = args.model.load(&device)?;
    let normalizer_name = normalizer.as_ref().map_or("none", |n| n.name());
    let segmenter = format!(
        "model {} · normalization {} (stains per {:?}) · TTA {} (views ≥ {}, unmatched {:?}, \
         overlaps kept {}) · tile {} overlap {}",
        bundle.path.display(),
        normalizer_name,
        args.stains,
        args.tta.name(),
        args.pipeline.view_min_score,
        pipeline_config.tta.unmatched,
        pipeline_config.tta.keep_overlaps,
        args.pipeline.tile,
        args.pipeline.overlap
    );
    let start = Instant::now();
    let run = match SlideRun::prepare(
        slide.as_ref(),
        config,
        &out,
        mpp,
        &segmenter,
        args.overwrite,
    )? {
        Prepared::Complete(summary) => {
            println!(
                "{}: finished before ({} nuclei, {}); --overwrite redoes it",
                slide_path.display(),
                summary.nuclei,
                out.join(nucseg::slide::SUMMARY_FILE).display()
            );
            return Ok(());
        }
        Prepared::Ready(run) => run,
    };
    let plan = run.plan();
    let (w, h) = slide.dimensions();
    println!(
        "{}: {} {w}×{h}, {} · level {} at {:.3}× · {} of {} tiles with tissue ({:.0}% of the \
         thumbnail) · {} → {}",
        slide_path.display(),
        plan.format,
        match plan.mpp {
            Some(m) => format!("{m:.4} µm/px ({})", plan.mpp_source),
            None => "pixel size unknown".into(),
        },
        plan.level,
        plan.scale,
        plan.tissue_tiles.len(),
        plan.tiles_total,
        run.tissue().fraction() * 100.0,
        segmenter,
        out.display()
    );
    if plan.mpp.is_none() {
        eprintln!(
            "warning: {}: the file gives no pixel size; segmenting at its own resolution as if \
             it were the model's 0.25 µm/px (give --mpp if it is not)",
            slide_path.display()
        );
    }
    if !args.merge {
        // One pipeline per stain group, each with the group's source stains fixed; one with
        // the normalizer as it is for --stains tile, or a normalizer with nothing to fix.
        let groups = match args.stains {
            Stains::Tile => None,
            Stains::Piece => Some(run.stain_groups()?),
            Stains::Slide => run.stain_sample()?.map(|sample| {
                let mut group_of_tile = vec![None; plan.tiles_total];
                plan.tissue_tiles
                    .iter()
                    .for_each(|&i| group_of_tile[i] = Some(0));
                StainGroups {
                    samples: vec![sample],
                    group_of_tile,
                }
            }),
        };
        let fixed = match (&groups, &normalizer) {
            (Some(g), Some(n)) if !g.samples.is_empty() => g
                .samples
                .iter()
                .map(|sample| n.with_source(sample))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .collect::<Option<Vec<_>>>(),
            _ => None,
        };
        let (pipelines, group_of_tile) = match (fixed, groups) {
            (Some(fixed), Some(groups)) => {
                println!(
                    "{normalizer_name} stains estimated {} from {} px of tissue",
                    match fixed.len() {
                        1 => "once".to_string(),
                        n => format!("for {n} tissue pieces"),
                    },
                    groups.samples.iter().map(|s| s.width() as u64).sum::<u64>()
                );
                let pipelines = fixed
                    .into_iter()
                    .map(|n| Pipeline::new(pipeline_config.clone(), &bundle.model, Some(n)))
                    .collect::<nucseg::Result<Vec<_>>>()?;
                (pipelines, groups.group_of_tile)
            }
            _ => (
                vec![Pipeline::new(pipeline_config, &bundle.model, normalizer)?],
                Vec::new(),
            ),
        };
        let shard = args.shard.unwrap_or(Shard::ALL);
        let missing = run.missing_tiles().len();
        let bar = progress_bar(0, "tiles", true);
        let of_tile = |i: usize| &pipelines[group_of_tile.get(i).copied().flatten().unwrap_or(0)];
        let segmented = run.segment_tiles_by(of_tile, shard, |p| {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
            bar.set_message(format!("{} nuclei", p.nuclei));
        })?;
        bar.finish_and_clear();
        println!(
            "{segmented} tile(s) segmented now ({} were left before) in {:.1} s",
            missing,
            start.elapsed().as_secs_f64()
        );
        if args.shard.is_some() {
            let left = run.missing_tiles().len();
            println!(
                "shard {}/{} done; {left} tile(s) of other shards left; then run with --merge",
                shard.index, shard.count
            );
            return Ok(());
        }
    }
    let bar = progress_bar(0, "stitch", true);
    let summary = run.stitch(|p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        bar.set_message(format!("{} nuclei", p.nuclei));
    })?;
    bar.finish_and_clear();
    println!(
        "{} nuclei{} · segmentation {:.1} s ({:.3} Mpx of tissue/s) · stitching {:.1} s · peak \
         RSS {} → {}",
        summary.nuclei,
        match (summary.tissue_area_mm2, summary.density_per_mm2) {
            (Some(a), Some(d)) => format!(" in {a:.2} mm² of tissue ({d:.0}/mm²)"),
            _ => String::new(),
        },
        summary.segment_seconds,
        summary.tissue_mpx_per_second,
        summary.stitch_seconds,
        common::peak_memory_bytes()
            .map(|b| format!("{:.0} MB", b as f64 / 1e6))
            .unwrap_or_else(|| "?".into()),
        out.display()
    );
    Ok(())
}
