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
//! cargo run --release --example evaluate -- --setups all [--model models/nucseg-default.safetensors] --csv results.csv [--per-image-csv images.csv]
//! ```
//! The paper's own configuration (DCGMM normalization, Mask R-CNN, multiple inference) is
//! `--setups NucSeg --normalize dcgmm`.
//! Or over another annotated set (`images/` + `masks/`, e.g. Naylor's TNBC), optionally leave
//! one patient out with a model per patient (`scripts/bns_lopo.sh` trains them):
//! ```text
//! cargo run --release --example evaluate -- --setups all --data ../shared/data/tnbc --fold-models bns-folds
//! ```

mod common;

use std::{collections::BTreeSet, path::PathBuf, process::ExitCode};

use clap::{ArgGroup, Parser};
use common::{exit_code, progress_bar};
use nucseg::{
    backend::BackendKind,
    data::{open_dataset, KumarSplit, MonusegDataset},
    metrics::{
        evaluate_folders_where, results_csv, results_table, Evaluation, ResultRow,
        PER_IMAGE_CSV_HEADER,
    },
    pipeline::{Pipeline, Preset},
    pretrained::{default_model, load_bundle, NormalizerChoice},
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
    /// Stain normalization of the normalizing setups (NucSeg, NucSeg-P): model (the one the
    /// model was trained with), dcgmm (the paper's), macenko, reinhard or none.
    #[arg(long, default_value = "model", requires = "setups")]
    normalize: NormalizerChoice,
    /// Template image for --normalize macenko / reinhard (and dcgmm, instead of its own).
    #[arg(long, requires = "setups")]
    template: Option<PathBuf>,
    /// DCGMM network for --normalize dcgmm (default: models/dcgmm-kumar.bpk).
    #[arg(long, requires = "setups")]
    dcgmm_model: Option<PathBuf>,
    /// Setup mode: a MoNuSeg / Kumar folder (scored on --split, default test; a folder in
    /// that layout without the Kumar test images, such as CPM-15, on every image), or a
    /// folder of `images/` + `masks/` (every image; binary masks are split into components).
    #[arg(long, default_value = "../shared/data/monuseg-kumar")]
    data: PathBuf,
    /// Leave one patient out: each image is segmented by `<folder>/<patient>/model.safetensors`,
    /// the patient being its name up to the first `_` (Naylor's `03_2.png`: patient 03).
    #[arg(long, conflicts_with = "model", requires = "setups")]
    fold_models: Option<PathBuf>,
    /// Write the setup results as CSV here.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write one CSV line per setup and image here (counts of true and predicted nuclei,
    /// AJI, AJI+, Dice, PQ, DQ, SQ, F1).
    #[arg(long, requires = "setups")]
    per_image_csv: Option<PathBuf>,
    /// Replace an existing --csv / --per-image-csv file.
    #[arg(long)]
    overwrite: bool,
    /// Tile side of the setups (px); default: the pipeline's (1024, stride 768). The paper
    /// tiled with `--tile 500 --overlap 250`.
    #[arg(long)]
    tile: Option<u32>,
    /// Overlap between neighbouring tiles (px), with --tile.
    #[arg(long, default_value_t = 250, requires = "tile")]
    overlap: u32,
    #[command(flatten)]
    scale: common::ScaleArgs,
    #[command(flatten)]
    test: common::TestSettings,
    /// The clean-up of the setups (the figures measured before 2026-12-07 used
    /// `--min-score 0.5 --min-kept 0.95`).
    #[command(flatten)]
    cleanup: common::CleanupArgs,
    /// Compute device: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: BackendKind,
    #[command(flatten)]
    limits: common::ReadLimits,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let (None, Some(flag)) = (&args.setups, args.cleanup.given()) {
        use clap::CommandFactory;
        Args::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                format!("{flag} applies to --setups runs (predictions in --pred are scored as they are)"),
            )
            .exit();
    }
    exit_code(run(args))
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
    for path in [&args.csv, &args.per_image_csv].into_iter().flatten() {
        if path.exists() && !args.overwrite {
            return Err(nucseg::data::DataError::WouldOverwrite { path: path.clone() }.into());
        }
    }
    let setups: Vec<Preset> = match args.setups.as_deref() {
        None | Some("all") => Preset::ALL.to_vec(),
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
    };
    let device = args.device.device()?;
    let samples = if args.data.join("masks").is_dir() {
        if let Some(split) = args.split {
            return Err(nucseg::data::DataError::Dataset {
                dir: args.data.clone(),
                message: format!(
                    "--split {} applies to Kumar folders, not images/ + masks/",
                    split.name()
                ),
            }
            .into());
        }
        open_dataset(&args.data)?
    } else {
        let dataset = MonusegDataset::open(&args.data)?;
        let test_ids = KumarSplit::Test.ids();
        let holds_kumar_test = dataset
            .samples()
            .iter()
            .any(|s| test_ids.contains(&s.id.as_str()));
        match args.split {
            Some(split) => dataset.split(split)?,
            // Another annotated set in the MoNuSeg layout (e.g. CPM-15): every image.
            None if !holds_kumar_test => {
                eprintln!(
                    "{}: no Kumar test image, scoring all {} images",
                    args.data.display(),
                    dataset.samples().len()
                );
                dataset.samples().to_vec()
            }
            None => dataset.split(KumarSplit::Test)?,
        }
    };
    // The models and the images each segments: one model for all, or one per patient.
    let patient = |id: &str| id.split('_').next().unwrap_or(id).to_string();
    let folds = match &args.fold_models {
        Some(dir) => samples
            .iter()
            .map(|s| patient(&s.id))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|p| {
                Ok((
                    Some(p.clone()),
                    common::with_test_settings(
                        load_bundle(&dir.join(&p).join("model.safetensors"), &device)?,
                        &args.test,
                    )?,
                ))
            })
            .collect::<nucseg::Result<Vec<_>>>()?,
        None => vec![(
            None,
            common::with_test_settings(
                match &args.model {
                    Some(p) => load_bundle(p, &device)?,
                    None => default_model(&device)?,
                },
                &args.test,
            )?,
        )],
    };
    if let Some(dir) = &args.fold_models {
        eprintln!(
            "{} patients, each segmented by its model in {}",
            folds.len(),
            dir.display()
        );
    }
    let organ = |stem: &str| {
        samples
            .iter()
            .find(|s| s.id == stem)
            .and_then(|s| s.organ)
            .map_or("?".into(), |o| o.name().to_string())
    };
    let mut rows = Vec::new();
    let mut per_image = PER_IMAGE_CSV_HEADER.to_string();
    for setup in setups {
        let mut config = args.cleanup.apply(args.scale.apply(setup.config()));
        if let Some(tile) = args.tile {
            config.tiling = config
                .tiling
                .with_tile_size(tile)
                .with_stride(tile.saturating_sub(args.overlap));
        }
        let bar = progress_bar(samples.len() as u64, setup.name(), true);
        let mut secs = 0.0;
        let mut scored = Vec::new();
        let mut normalization = String::new();
        for (fold, bundle) in &folds {
            // Only a normalizing setup loads (and for DCGMM, fits) its normalizer.
            if config.normalize {
                common::note_dcgmm_template(
                    bundle,
                    &args.normalize,
                    args.template.as_deref(),
                    args.dcgmm_model.as_deref(),
                    args.model.is_none() && args.fold_models.is_none(),
                );
            }
            let normalizer = match config.normalize {
                true => bundle.normalizer_for(
                    &args.normalize,
                    args.template.as_deref(),
                    args.dcgmm_model.as_deref(),
                    &device,
                )?,
                false => None,
            };
            let pipeline = Pipeline::new(config.clone(), &bundle.model, normalizer)?;
            normalization = pipeline.normalizer_name().to_string();
            let mine: Vec<_> = samples
                .iter()
                .filter(|s| fold.as_ref().is_none_or(|p| *p == patient(&s.id)))
                .cloned()
                .collect();
            let before = scored.len();
            let evaluation = pipeline.evaluate(&mine, None, |done, _, _, image_secs| {
                secs += image_secs;
                bar.set_position((before + done) as u64)
            })?;
            scored.extend(evaluation.images);
        }
        let evaluation = Evaluation::from_images(scored);
        bar.finish_and_clear();
        // A normalization other than the model's own is named in the setup's rows.
        let label = match args.normalize {
            NormalizerChoice::Method(_) if setup.normalizes() => {
                format!("{setup} ({normalization})")
            }
            _ => setup.to_string(),
        };
        eprintln!(
            "{label}: {} images, {:.1} s per image; predicted count within ±10 % of the true \
             count on {} of them",
            samples.len(),
            secs / samples.len().max(1) as f64,
            evaluation.counts_within(0.1)
        );
        // Kumar: per organ and overall; a set without organs: overall only.
        let has_organs = samples.iter().any(|s| s.organ.is_some());
        per_image.push_str(&evaluation.per_image_csv(&label, |stem| match has_organs {
            true => organ(stem),
            false => String::new(),
        }));
        let groups = if has_organs {
            evaluation.grouped(organ)
        } else {
            vec![("overall".to_string(), evaluation.summary.clone())]
        };
        for (group, summary) in groups {
            rows.push(ResultRow {
                setup: label.clone(),
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
    if let Some(path) = &args.per_image_csv {
        nucseg::data::write_bytes_atomically(path, per_image.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
