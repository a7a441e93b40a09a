//! Chooses the pipeline's clean-up settings on a validation set: segments each annotated
//! image once (at the lowest score threshold asked for), then scores every combination of
//! score threshold and overlap rule (`OverlapConfig`) on the kept instances. With
//! `--box-nms`, `--proposals`, `--mask-thresholds`, `--mask-box-scales`, `--maskness` and
//! `--split` it does so for each
//! combination of those model settings (one segmentation of the folder each).
//!
//! ```text
//! cargo run --release --example sweep_postprocess -- --data ../shared/data/cpm15 --tta none \
//!     --min-scores 0.4,0.5,0.6 --kept-fractions 0,0.3,0.5 --largest-components false,true --min-areas 0,16
//! ```
//! Exact without TTA for images that fit one tile (≤ 1024 px a side: CPM-15, Kumar); on
//! larger ones the pipeline applies the threshold before stitching, which this does not
//! repeat, and with TTA the views are merged once at the lowest threshold, so a higher one
//! can differ from the pipeline's in the fourth decimal (model card). Never point
//! it at the Kumar test images: choosing on them is what the validation set is for.
//!
//! Prints one row per combination: means over images of AJI, AJI+, PQ, F1 at IoU 0.5, the
//! ratio of predicted to true nuclei, the share of AJI's union that is predicted area
//! paired with no nucleus (pooled), and where the true nuclei went (pooled): missed (no
//! prediction at IoU 0.1) and merged (in a prediction holding most of two or more).
//! `--oracle-split` adds a row per combination with every nucleus split by the true
//! distance map: the most a perfect dense cue could gain. The last column compares mask
//! sizes: pooled predicted over true area of the pairs matched at IoU > 0.5.

mod common;

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use common::{exit_code, progress_bar};
use nucseg::{
    backend::BackendKind,
    data::open_dataset,
    data::LabelMap,
    metrics::{EvaluatedImage, Evaluation, ImageMetrics, OverlapTable},
    model::{
        ops::{split_touching, DistanceMap, SplitConfig},
        TrainingTarget,
    },
    postprocess::TtaSet,
    InstanceSegmenter, Instances, Nuclei, OverlapConfig,
};

#[derive(Parser)]
#[command(about = "Score threshold and overlap-rule sweep on an annotated validation folder")]
struct Args {
    /// Annotated folder (MoNuSeg layout, images/ + labels/, or images/ + masks/).
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    model: common::ModelArgs,
    /// More networks that share the views with the model (`Pipeline::with_members`): the
    /// distinct views go to the models in turn, and their nuclei are voted as one model's
    /// views are. Each must have been trained behind the model's normalizer.
    #[arg(long = "ensemble-with", value_delimiter = ',')]
    ensemble_with: Vec<PathBuf>,
    /// Test-time augmentation: none, paper or d4.
    #[arg(long, default_value = "paper")]
    tta: TtaSet,
    #[command(flatten)]
    pipeline: common::PipelineArgs,
    #[command(flatten)]
    scale: common::ScaleArgs,
    /// Score thresholds to try.
    #[arg(long, value_delimiter = ',', default_value = "0.5")]
    min_scores: Vec<f32>,
    /// Mask-NMS fractions to try (0: off).
    #[arg(long = "kept-fractions", value_delimiter = ',', default_value = "0")]
    kept_fractions: Vec<f32>,
    /// Largest-piece settings to try.
    #[arg(
        long = "largest-components",
        value_delimiter = ',',
        default_value = "false"
    )]
    largest: Vec<bool>,
    /// Minimum areas to try (px).
    #[arg(long = "min-areas", value_delimiter = ',', default_value = "0")]
    min_areas: Vec<u32>,
    /// Absorption shares to try: `off`, or the share of a dropped instance's mask its
    /// nucleus must hold to take the instance's free pixels (`OverlapConfig::absorb_share`).
    #[arg(long = "absorb-shares", value_delimiter = ',', default_value = "off")]
    absorb_shares: Vec<common::OptionalShare>,
    /// Parts-over-wholes covers to try: `off`, or the share of an instance's mask that two or
    /// more smaller instances inside it must cover for it to yield to them
    /// (`OverlapConfig::parts_cover`).
    #[arg(long = "parts-covers", value_delimiter = ',', default_value = "off")]
    parts_covers: Vec<common::OptionalShare>,
    /// Box-head NMS IoU thresholds to try (each segments the folder again; default: the
    /// model's).
    #[arg(long = "box-nms", value_delimiter = ',')]
    box_nms: Vec<f32>,
    /// RPN proposals kept after NMS per 512² of input at test time to try (the pre-NMS
    /// top-k scales with it; each segments the folder again; default: the model's).
    #[arg(long = "proposals", value_delimiter = ',')]
    proposals: Vec<usize>,
    /// Marker thresholds of the dense-head split to try (0: off; each segments the folder
    /// again; default: the model's setting). Needs a model with a dense head.
    #[arg(long = "split", value_delimiter = ',')]
    split: Vec<f32>,
    /// Mask probability thresholds of the pasted masks to try (Mask R-CNN's binarization
    /// at 0.5; each segments the folder again; default: the model's).
    #[arg(long = "mask-thresholds", value_delimiter = ',')]
    mask_thresholds: Vec<f32>,
    /// Factors by which detection boxes are enlarged for the mask branch to try
    /// (`MaskRcnnConfig::mask_box_scale`; each segments the folder again; default: the
    /// model's).
    #[arg(long = "mask-box-scales", value_delimiter = ',')]
    mask_box_scales: Vec<f32>,
    /// Whether scores are rescored by the masks' maskness (`MaskRcnnConfig::maskness`), to
    /// try (each segments the folder again; default: the model's).
    #[arg(long, value_delimiter = ',')]
    maskness: Vec<bool>,
    /// Minimum marker areas (px) of the split to try.
    #[arg(long = "split-min-areas", value_delimiter = ',', default_value = "12")]
    split_min_areas: Vec<u32>,
    /// Also score each combination with its nuclei split by the truth's distance map
    /// (`split_touching` with a perfect map).
    #[arg(long)]
    oracle_split: bool,
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
    let device = args.device.device()?;
    let (bundle, _) = args.model.load(&device)?;
    let lowest = args
        .min_scores
        .iter()
        .copied()
        .fold(f32::INFINITY, f32::min);
    let mut config = args.scale.apply(args.pipeline.config(args.tta));
    config.min_score = if lowest.is_finite() { lowest } else { 0.5 };
    let samples = open_dataset(&args.data)?;
    let base = &bundle.model;
    let others = common::load_members(&bundle, &args.ensemble_with, &device)?;
    println!(
        "{} images of {}, TTA {}, model {}",
        samples.len(),
        args.data.display(),
        args.tta.name(),
        bundle.path.display()
    );
    for other in &args.ensemble_with {
        println!("with {}", other.display());
    }
    let split_values: Vec<Option<SplitConfig>> = if args.split.is_empty() {
        vec![base.config.split.clone()]
    } else {
        if base.dense_head.is_none() {
            return Err(nucseg::model::ModelError::InvalidConfig(format!(
                "--split needs a model with a dense head; {} has none",
                bundle.path.display()
            ))
            .into());
        }
        let mut values = Vec::new();
        for &t in &args.split {
            if t <= 0.0 {
                values.push(None);
                continue;
            }
            for &a in &args.split_min_areas {
                values.push(Some(
                    SplitConfig::new()
                        .with_marker_threshold(t)
                        .with_min_marker_area(a),
                ));
            }
        }
        values
    };
    // The model's own settings, then every combination of those asked for (the first
    // varying slowest), each one segmentation of the folder.
    let own = ModelSettings {
        split: base.config.split.clone(),
        nms: base.config.roi_heads.nms_thresh,
        proposals: base.rpn.config.post_nms_top_n_test,
        mask: base.config.roi_heads.mask_thresh,
        grow: base.config.mask_box_scale.unwrap_or(1.0),
        rescore: base.config.maskness == Some(true),
    };
    let nms_values = to_try(&args.box_nms, own.nms, no_check)?;
    let proposal_values = to_try(&args.proposals, own.proposals, no_check)?;
    let mask_values = to_try(&args.mask_thresholds, own.mask, |t| {
        nucseg::model::heads::mask_threshold_problem("--mask-thresholds:", t)
    })?;
    let box_scale_values = to_try(&args.mask_box_scales, own.grow, |f| {
        nucseg::model::mask_box_scale_problem("--mask-box-scales:", f)
    })?;
    let maskness_values = to_try(&args.maskness, own.rescore, no_check)?;
    let variants = times(vec![own], &split_values, |v, x| v.split = x.clone());
    let variants = times(variants, &nms_values, |v, &x| v.nms = x);
    let variants = times(variants, &proposal_values, |v, &x| v.proposals = x);
    let variants = times(variants, &mask_values, |v, &x| v.mask = x);
    let variants = times(variants, &box_scale_values, |v, &x| v.grow = x);
    let variants = times(variants, &maskness_values, |v, &x| v.rescore = x);
    println!("| split | box NMS | proposals / 512² | mask threshold | mask box scale | maskness | min score | min kept | largest piece | min area | absorb share | parts cover | AJI | AJI+ | PQ | F1@0.5 | pred/true | unpaired pred / union | missed | merged | matched area pred/true |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for variant in variants {
        let ModelSettings {
            split,
            nms,
            proposals,
            mask,
            grow,
            rescore,
        } = variant;
        let mut model = base.clone();
        model.config.maskness = Some(rescore);
        model.config.mask_box_scale = Some(grow);
        model.config.split = split.clone();
        model.config.roi_heads.nms_thresh = nms;
        model.config.roi_heads.mask_thresh = mask;
        let rpn = &mut model.rpn.config;
        // The pre-NMS top-k keeps its ratio to the post-NMS count.
        rpn.pre_nms_top_n_test =
            rpn.pre_nms_top_n_test * proposals / rpn.post_nms_top_n_test.max(1);
        rpn.post_nms_top_n_test = proposals;
        // A pipeline owns its normalizer: each gets its own from the loaded bundle.
        let normalizer = bundle.normalizer_for(
            &args.model.normalize,
            args.model.template.as_deref(),
            args.model.dcgmm_model.as_deref(),
            &device,
        )?;
        let mut members = vec![&model];
        members.extend(others.iter());
        let pipeline =
            nucseg::pipeline::Pipeline::with_members(config.clone(), members, normalizer)?;
        let bar = progress_bar(samples.len() as u64, "segment", true);
        let mut found: Vec<(String, nucseg::data::LabelMap, Instances)> = Vec::new();
        for info in &samples {
            let (image, truth) = info.load_annotated("validation")?;
            found.push((info.id.clone(), truth, pipeline.segment_instances(&image)?));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let split_cell = split.as_ref().map_or("off".to_string(), |s| {
            format!("{} / {} px", s.marker_threshold, s.min_marker_area)
        });
        score_rules(
            &args,
            &found,
            &format!("| {split_cell} | {nms} | {proposals} | {mask} | {grow} | {rescore} "),
        )?;
    }
    Ok(())
}

/// The model settings of one segmentation of the folder.
#[derive(Clone)]
struct ModelSettings {
    split: Option<SplitConfig>,
    nms: f32,
    proposals: usize,
    mask: f32,
    grow: f32,
    rescore: bool,
}

/// The values `given` on the command line, or the model's own when none are, each checked
/// by `problem` (a message for a value that cannot be used).
fn to_try<T: Copy>(
    given: &[T],
    model: T,
    problem: impl Fn(T) -> Option<String>,
) -> nucseg::Result<Vec<T>> {
    let values = if given.is_empty() {
        vec![model]
    } else {
        given.to_vec()
    };
    match values.iter().find_map(|&v| problem(v)) {
        Some(problem) => Err(nucseg::model::ModelError::InvalidConfig(problem).into()),
        None => Ok(values),
    }
}

/// For [`to_try`]: every value can be used.
fn no_check<T>(_: T) -> Option<String> {
    None
}

/// Each of `variants` once with each of `values` set by `set` (the variants varying slower).
fn times<T>(
    variants: Vec<ModelSettings>,
    values: &[T],
    set: impl Fn(&mut ModelSettings, &T),
) -> Vec<ModelSettings> {
    let mut out = Vec::with_capacity(variants.len() * values.len());
    for variant in variants {
        for value in values {
            let mut v = variant.clone();
            set(&mut v, value);
            out.push(v);
        }
    }
    out
}

/// Scores every combination of score threshold and overlap rule on segmented images,
/// one table row each, starting with `prefix` (the model settings' cells).
fn score_rules(
    args: &Args,
    found: &[(String, nucseg::data::LabelMap, Instances)],
    prefix: &str,
) -> nucseg::Result<()> {
    // The truth's distance maps, once per image, for --oracle-split.
    let oracle_maps: Vec<Option<DistanceMap>> = found
        .iter()
        .map(|(_, truth, _)| args.oracle_split.then(|| truth_distance_map(truth)))
        .collect();
    for &score in &args.min_scores {
        for &kept in &args.kept_fractions {
            for &largest in &args.largest {
                for (&area, &common::OptionalShare(absorb), &common::OptionalShare(parts)) in args
                    .min_areas
                    .iter()
                    .flat_map(|a| args.absorb_shares.iter().map(move |s| (a, s)))
                    .flat_map(|(a, s)| args.parts_covers.iter().map(move |p| (a, s, p)))
                {
                    let rule = OverlapConfig::new()
                        .with_min_kept_fraction(kept)
                        .with_largest_component(largest)
                        .with_min_area(area)
                        .with_absorb_share(absorb)
                        .with_parts_cover(parts);
                    let oracle = [false, true];
                    for &split in &oracle[..1 + args.oracle_split as usize] {
                        let mut images = Vec::with_capacity(found.len());
                        let (mut n_pred, mut n_true) = (0usize, 0usize);
                        let (mut missed, mut merged) = (0usize, 0usize);
                        let (mut matched_pred, mut matched_true) = (0u64, 0u64);
                        for ((id, truth, instances), map) in found.iter().zip(&oracle_maps) {
                            let mut kept_items = instances.clone();
                            kept_items.items.retain(|i| i.score >= score);
                            let mut labels = Nuclei::from_instances_with(&kept_items, &rule).labels;
                            if let (true, Some(map)) = (split, map) {
                                labels = split_by(map, &labels);
                            }
                            let table = OverlapTable::new(truth, &labels)?;
                            let metrics = ImageMetrics::from_table(&table);
                            let (m, g) = missed_and_merged(&table);
                            missed += m;
                            merged += g;
                            for &(t, p, inter) in &table.pairs {
                                if table.iou(t, p, inter) > 0.5 {
                                    matched_pred += table.pred_area[p as usize];
                                    matched_true += table.true_area[t as usize];
                                }
                            }
                            n_pred += metrics.n_pred;
                            n_true += metrics.n_true;
                            images.push(EvaluatedImage {
                                stem: id.clone(),
                                metrics,
                                prediction_missing: false,
                            });
                        }
                        let (unpaired, union) = images.iter().fold((0u64, 0u64), |(a, b), i| {
                            let p = &i.metrics.aji_parts;
                            (a + p.unpaired_pred, b + p.union)
                        });
                        let m = Evaluation::from_images(images).summary.mean;
                        let prefix = if split {
                            "| by the truth's distance map | | | | | ".to_string()
                        } else {
                            prefix.to_string()
                        };
                        let share = |k: usize| k as f64 / n_true.max(1) as f64;
                        println!(
                            "{prefix}| {score} | {kept} | {largest} | {area} | {} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                            absorb.map_or("off".to_string(), |s| s.to_string()),
                            parts.map_or("off".to_string(), |s| s.to_string()),
                            m.aji,
                            m.aji_plus,
                            m.pq_pq,
                            m.f1_iou50_f1,
                            n_pred as f64 / n_true.max(1) as f64,
                            unpaired as f64 / union.max(1) as f64,
                            share(missed),
                            share(merged),
                            matched_pred as f64 / matched_true.max(1) as f64,
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// True nuclei with no prediction at IoU ≥ 0.1, and true nuclei lying mostly (more than half
/// their area) inside a prediction that holds most of another one too.
fn missed_and_merged(table: &OverlapTable) -> (usize, usize) {
    let mut best = vec![0.0f64; table.true_ids.len()];
    let mut holds = vec![0usize; table.pred_ids.len()];
    for &(t, p, inter) in &table.pairs {
        best[t as usize] = best[t as usize].max(table.iou(t, p, inter));
        if 2 * inter > table.true_area[t as usize] {
            holds[p as usize] += 1;
        }
    }
    let missed = best.iter().filter(|&&b| b < 0.1).count();
    let merged = table
        .pairs
        .iter()
        .filter(|&&(t, p, inter)| 2 * inter > table.true_area[t as usize] && holds[p as usize] >= 2)
        .count();
    (missed, merged)
}

/// The truth's own distance map (the dense head's target at full resolution): what a
/// perfect dense cue would predict.
fn truth_distance_map(truth: &LabelMap) -> DistanceMap {
    let (w, h) = (truth.width() as usize, truth.height() as usize);
    DistanceMap {
        width: w,
        height: h,
        stride: 1,
        values: TrainingTarget::from_label_map(truth).distance_map(w, h, 1),
    }
}

/// `pred` with each nucleus split by `map`.
fn split_by(map: &DistanceMap, pred: &LabelMap) -> LabelMap {
    let mut split = Instances::new(pred.width(), pred.height());
    for nucleus in &Instances::from_label_map(pred).items {
        split
            .items
            .extend(split_touching(nucleus, map, &SplitConfig::new()));
    }
    split.to_label_map()
}
