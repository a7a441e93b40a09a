//! Scores nuclei segmentations, in two ways.
//!
//! Score a folder of predicted label maps against ground truth (label maps or MoNuSeg XML;
//! a missing prediction counts as empty):
//! ```text
//! cargo run --example evaluate -- --truth ../shared/data/monuseg-kumar/labels --pred out/ [--split test] [--json]
//! ```
//! Run the paper's four setups (NucSeg, NucSeg-P, NucSeg-N, NucSeg-NP) of a model over the
//! Kumar test split and print the paper-style table per organ and overall:
//! ```text
//! cargo run --release --example evaluate -- --setups all [--model models/nucseg-default.safetensors] --csv results.csv
//! ```

mod common;

use std::{path::PathBuf, process::ExitCode};

use clap::{ArgGroup, Parser};
use common::{exit_code, progress_bar};
use nucseg::{
    backend::BackendKind,
    data::{KumarSplit, MonusegDataset},
    metrics::{evaluate_folders_where, results_csv, results_table, ResultRow},
    pipeline::Preset,
    pretrained::{default_model, load_bundle},
};

#[derive(Parser)]
#[command(
    about = "Score nuclei segmentations (AJI, AJI+, PQ, Dice, F1), or run the paper's four setups"
)]
#[command(group(ArgGroup::new("mode").required(true).args(["pred", "setups"])))]
struct Args {
    /// Folder of ground-truth label maps or MoNuSeg XML annotations (folder mode).
    #[arg(long, requires = "pred")]
    truth: Option<PathBuf>,
    /// Folder of predicted label maps with the truth's file stems (folder mode).
    #[arg(long, requires = "truth")]
    pred: Option<PathBuf>,
    /// Print one JSON object keyed by image stem (metric names as in
    /// shared/metrics-golden/expected.json) instead of the table; summaries go to stderr.
    #[arg(long)]
    json: bool,
    /// Score only the images of this Kumar split (train, test, test_same_organ,
    /// test_unseen_organ).
    #[arg(long)]
    split: Option<KumarSplit>,
    /// Setups to run (setup mode): comma-separated presets or `all`.
    #[arg(long, conflicts_with = "truth")]
    setups: Option<String>,
    /// Model bundle (weights + .json, optional .normalizer.json); default: the shipped model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// MoNuSeg / Kumar folder (setup mode).
    #[arg(long, default_value = "../shared/data/monuseg-kumar")]
    data: PathBuf,
    /// Write the setup results as CSV here.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Replace an existing --csv file.
    #[arg(long)]
    overwrite: bool,
    /// Tile side of the setups (px); default: the pipeline's (1024, stride 768). The paper
    /// tiled with `--tile 500 --overlap 250`.
    #[arg(long)]
    tile: Option<u32>,
    /// Overlap between neighbouring tiles (px), with --tile.
    #[arg(long, default_value_t = 250, requires = "tile")]
    overlap: u32,
    /// Compute device: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: BackendKind,
    #[command(flatten)]
    limits: common::ReadLimits,
}

fn main() -> ExitCode {
    exit_code(run(Args::parse()))
}

fn run(args: Args) -> nucseg::Result<()> {
    args.limits.apply();
    if let (Some(truth), Some(pred)) = (&args.truth, &args.pred) {
        let ids = args.split.map(|s| s.ids());
        let keep = |stem: &str| ids.as_ref().is_none_or(|ids| ids.contains(&stem));
        let evaluation = evaluate_folders_where(truth, pred, keep)?;
        if args.json {
            let json = serde_json::to_string_pretty(&evaluation.to_json()).expect("JSON value");
            println!("{json}");
            let summary = serde_json::to_string(&evaluation.summary).expect("plain numbers");
            eprintln!("{summary}");
        } else {
            print!("{}", evaluation.table());
        }
        return Ok(());
    }
    if let Some(path) = args.csv.as_ref().filter(|p| p.exists() && !args.overwrite) {
        return Err(nucseg::data::DataError::WouldOverwrite { path: path.clone() }.into());
    }
    let setups: Vec<Preset> = match args.setups.as_deref() {
        None | Some("all") => Preset::ALL.to_vec(),
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
    };
    let device = args.device.device()?;
    let bundle = match &args.model {
        Some(p) => load_bundle(p, &device)?,
        None => default_model(&device)?,
    };
    let dataset = MonusegDataset::open(&args.data)?;
    let samples = dataset.split(args.split.unwrap_or(KumarSplit::Test))?;
    let organ = |stem: &str| {
        samples
            .iter()
            .find(|s| s.id == stem)
            .and_then(|s| s.organ)
            .map_or("?".into(), |o| o.name().to_string())
    };
    let mut rows = Vec::new();
    for setup in setups {
        let mut config = setup.config();
        if let Some(tile) = args.tile {
            config.tiling = config
                .tiling
                .with_tile_size(tile)
                .with_stride(tile.saturating_sub(args.overlap));
        }
        let pipeline = bundle.pipeline(config)?;
        let bar = progress_bar(samples.len() as u64, setup.name(), true);
        let mut secs = 0.0;
        let evaluation = pipeline.evaluate(&samples, None, |done, _, _, image_secs| {
            secs += image_secs;
            bar.set_position(done as u64)
        })?;
        bar.finish_and_clear();
        eprintln!(
            "{setup}: {} images, {:.1} s per image",
            samples.len(),
            secs / samples.len().max(1) as f64
        );
        for (group, summary) in evaluation.grouped(organ) {
            rows.push(ResultRow {
                setup: setup.to_string(),
                group,
                summary,
            });
        }
    }
    print!("{}", results_table(&rows));
    if let Some(path) = &args.csv {
        nucseg::data::write_bytes_atomically(path, results_csv(&rows).as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
