//! What the example programs share: exit codes, the lookup of a ground-truth file for an
//! image, and progress bars. The library itself reports progress through callbacks and
//! prints nothing; these helpers turn the callbacks into bars (on a terminal) or plain
//! lines (in a log).
// Each example uses a different part of this module.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use indicatif::{ProgressBar, ProgressStyle};
use nucseg::data::{read_rgb_reporting, DataError, MaskKind, ReadOptions, RgbImage, TruthFile};

/// The exit code of a program's `run`: on error, prints `error: <message>` on one line to
/// stderr (with the command-line option that helps, where one does) and returns failure (1).
pub fn exit_code(result: nucseg::Result<()>) -> ExitCode {
    use nucseg::{model::ModelError, stain::StainError, Error};
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let hint = match &e {
                Error::Data(DataError::WouldOverwrite { .. }) => {
                    " (pass --overwrite to replace it)"
                }
                Error::Data(DataError::TooLarge { .. }) => " (with --max-pixels)",
                Error::Stain(StainError::TemplateNeeded { .. }) => " (give one with --template)",
                Error::Model(ModelError::CheckpointsExist { .. }) => {
                    " (--resume continues it, --overwrite starts over)"
                }
                Error::Model(ModelError::ResumeMismatch { .. }) => {
                    " (--allow-changes accepts them)"
                }
                _ => "",
            };
            eprintln!("error: {e}{hint}");
            ExitCode::FAILURE
        }
    }
}

/// Reads `path` as 8-bit RGB; `note` gets one line (`path: what was done`) when reading
/// changed more than the container (16-bit range scaled, alpha composited, grey copied).
pub fn read_image(path: &Path, note: impl FnOnce(String)) -> Result<RgbImage, DataError> {
    let (image, report) = read_rgb_reporting(path, ReadOptions::default())?;
    if report.changed_anything() {
        note(format!("{}: {report}", path.display()));
    }
    Ok(image)
}

/// The ground truth for `image` given a `--truth` argument: the file itself, or in a
/// folder the label map (`.png`, `.tif`) or MoNuSeg annotation (`.xml`) with the image's
/// file stem. `Ok(None)` when a folder has no such file.
pub fn truth_for(truth: &Path, image: &Path) -> Result<Option<TruthFile>, DataError> {
    let as_truth = |p: PathBuf| {
        if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml")) {
            TruthFile::Xml(p)
        } else {
            TruthFile::LabelMap(p, MaskKind::Auto)
        }
    };
    if truth.is_file() {
        return Ok(Some(as_truth(truth.to_path_buf())));
    }
    if !truth.is_dir() {
        return Err(DataError::Io {
            path: truth.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        });
    }
    let stem = nucseg::output::stem(image);
    let found: Vec<PathBuf> = ["png", "tif", "tiff", "xml"]
        .iter()
        .map(|ext| truth.join(format!("{stem}.{ext}")))
        .filter(|p| p.is_file())
        .collect();
    if let [first, second, ..] = found.as_slice() {
        return Err(DataError::DuplicateStem {
            dir: truth.to_path_buf(),
            stem,
            first: first.clone(),
            second: second.clone(),
        });
    }
    Ok(found.into_iter().next().map(as_truth))
}

/// `--max-pixels`, shared by every program that reads images.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Largest image decoded, in pixels (width × height); a file declaring more is refused
    /// before decoding (a corrupt header or a decompression bomb would exhaust memory).
    #[arg(long, default_value_t = nucseg::data::DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
}

impl ReadLimits {
    /// Makes this the process-wide budget ([`nucseg::data::set_max_pixels`]).
    pub fn apply(&self) {
        nucseg::data::set_max_pixels(self.max_pixels);
    }
}

/// Which model and normalization to run (`segment`, `segment_slide`).
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model bundle (weights + .json, optional .normalizer.json); default: the shipped model.
    #[arg(long)]
    pub model: Option<std::path::PathBuf>,
    /// Stain normalization: model (the one the model was trained with), dcgmm, macenko,
    /// reinhard or none.
    #[arg(long, default_value = "model")]
    pub normalize: nucseg::pretrained::NormalizerChoice,
    /// Template image for --normalize macenko / reinhard (and dcgmm, instead of its own).
    #[arg(long)]
    pub template: Option<std::path::PathBuf>,
    /// DCGMM network for --normalize dcgmm (default: models/dcgmm-kumar.bpk).
    #[arg(long)]
    pub dcgmm_model: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub test: TestSettings,
}

/// The model's inference settings that a command line may replace.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TestSettings {
    /// Resize each model input by this factor instead of the model's own test scale (the
    /// shipped model's is 1: inputs as given).
    #[arg(long)]
    pub test_scale: Option<f32>,
    /// Mask probability at which a pixel joins its nucleus, instead of the model's own
    /// (Mask R-CNN binarizes at 0.5); lower gives larger nuclei, for annotations drawn
    /// wider than the model's.
    #[arg(long)]
    pub mask_threshold: Option<f32>,
    /// Factor in [1, 2] by which each detection's box is enlarged for its mask, instead of
    /// the model's own (1: the detection's box, as Mask R-CNN).
    #[arg(long)]
    pub mask_box_scale: Option<f32>,
}

/// `bundle` with its model's test scale, mask threshold and mask box scale replaced by
/// `settings` (`--test-scale`, `--mask-threshold`, `--mask-box-scale`), where given.
pub fn with_test_settings(
    mut bundle: nucseg::pretrained::ModelBundle,
    settings: &TestSettings,
) -> nucseg::Result<nucseg::pretrained::ModelBundle> {
    let invalid = |problem| Err(nucseg::model::ModelError::InvalidConfig(problem).into());
    if let Some(s) = settings.test_scale {
        if let Some(problem) = nucseg::data::resize_problem("--test-scale", s) {
            return invalid(problem);
        }
        bundle.model.config.test_scale = Some(s);
    }
    if let Some(t) = settings.mask_threshold {
        if let Some(problem) = nucseg::model::heads::mask_threshold_problem("--mask-threshold", t) {
            return invalid(problem);
        }
        bundle.model.config.roi_heads.mask_thresh = t;
    }
    if let Some(f) = settings.mask_box_scale {
        if let Some(problem) = nucseg::model::mask_box_scale_problem("--mask-box-scale", f) {
            return invalid(problem);
        }
        bundle.model.config.mask_box_scale = Some(f);
    }
    Ok(bundle)
}

/// A model bundle and the stain normalizer chosen for it.
pub type LoadedModel = (
    nucseg::pretrained::ModelBundle,
    Option<Box<dyn nucseg::stain::StainNormalizer>>,
);

/// Says once per process, on stderr, when `--normalize dcgmm` without `--template` is asked
/// of a model trained behind Macenko or Reinhard: DCGMM then maps onto its network's
/// template, which need not be the colours the model was trained on (the shipped model
/// behind the shipped network's template before 2026-12-07, another training image's, lost
/// 0.07 AJI on the Kumar test images; model card, "The paper's normalizer"). Quiet for the
/// shipped model (`shipped_model`: loaded as the default, behind its checksum) with the
/// shipped DCGMM network: that network's template is the model's, TCGA-G9-6356.
pub fn note_dcgmm_template(
    bundle: &nucseg::pretrained::ModelBundle,
    normalize: &nucseg::pretrained::NormalizerChoice,
    template: Option<&Path>,
    dcgmm_model: Option<&Path>,
    shipped_model: bool,
) {
    use nucseg::{
        pretrained::{default_dcgmm_path, BundleNormalizer, NormalizerChoice},
        stain::NormalizerKind,
    };
    static ONCE: std::sync::Once = std::sync::Once::new();
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let shipped_pair = shipped_model && dcgmm_model.is_none_or(|p| same(p, &default_dcgmm_path()));
    if template.is_none()
        && !shipped_pair
        && matches!(normalize, NormalizerChoice::Method(NormalizerKind::Dcgmm))
        && matches!(bundle.normalizer, Some(BundleNormalizer::Classical(_)))
    {
        ONCE.call_once(|| {
            eprintln!(
                "note: DCGMM maps onto its network's own template, which may not be the \
                 colours {} was trained on; give the model's training template with \
                 --template (the shipped model's and the shipped DCGMM's: \
                 TCGA-G9-6356-01Z-00-DX1 of the Kumar training images)",
                bundle.path.display()
            )
        });
    }
}

impl ModelArgs {
    /// Loads the bundle (`--model`, else the shipped one) and the normalizer on `device`.
    pub fn load(&self, device: &nucseg::backend::Device) -> nucseg::Result<LoadedModel> {
        let bundle = match &self.model {
            Some(path) => nucseg::pretrained::load_bundle(path, device)?,
            None => nucseg::pretrained::default_model(device)?,
        };
        let bundle = with_test_settings(bundle, &self.test)?;
        note_dcgmm_template(
            &bundle,
            &self.normalize,
            self.template.as_deref(),
            self.dcgmm_model.as_deref(),
            self.model.is_none(),
        );
        let normalizer = bundle.normalizer_for(
            &self.normalize,
            self.template.as_deref(),
            self.dcgmm_model.as_deref(),
            device,
        )?;
        Ok((bundle, normalizer))
    }
}

/// The networks of `paths`, each checked to have been trained behind `bundle`'s normalizer
/// (the same normalizer file, or none for both), since the pipeline normalizes once for all.
pub fn load_members(
    bundle: &nucseg::pretrained::ModelBundle,
    paths: &[std::path::PathBuf],
    device: &nucseg::backend::Device,
) -> nucseg::Result<Vec<nucseg::model::MaskRcnn>> {
    let normalizer_of = |weights: &std::path::Path| {
        std::fs::read(nucseg::pretrained::normalizer_path(weights)).ok()
    };
    let reference = normalizer_of(&bundle.path);
    paths
        .iter()
        .map(|path| {
            if normalizer_of(path) != reference {
                return Err(nucseg::model::ModelError::InvalidConfig(format!(
                    "--ensemble-with {}: trained behind another normalizer than {} (its .normalizer.json differs)",
                    path.display(),
                    bundle.path.display()
                ))
                .into());
            }
            Ok(nucseg::pretrained::load_bundle(path, device)?.model)
        })
        .collect()
}

/// The pipeline's settings on the command line (`segment`, `speed`).
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct PipelineArgs {
    /// With TTA: each view's nuclei scored below this take no part in the vote (and get no
    /// mask computed); 0 keeps all the model returns, as the paper.
    #[arg(long, default_value_t = 0.5)]
    pub view_min_score: f32,
    /// Tile side for large images (px); the paper's is 500.
    #[arg(long, default_value_t = 1024)]
    pub tile: u32,
    /// Overlap between neighbouring tiles (px); the paper's is 250.
    #[arg(long, default_value_t = 256)]
    pub overlap: u32,
    /// With TTA, nuclei that augmented views find but the original misses: majority (kept
    /// when most views find them; the default) or drop (the paper's literal procedure).
    #[arg(long)]
    pub unmatched: Option<nucseg::postprocess::UnmatchedPolicy>,
    #[command(flatten)]
    pub cleanup: CleanupArgs,
}

/// The clean-up's settings on the command line (`PipelineArgs`, `evaluate`); each one left
/// out keeps the pipeline's (or the setup's) own.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct CleanupArgs {
    /// Drop nuclei scored below this (default: the pipeline's, 0.7; 0.6 and 0.5 before models-v7).
    #[arg(long)]
    pub min_score: Option<f32>,
    /// Drop a nucleus that keeps less than this fraction of its mask once higher-scored
    /// ones took theirs (mask-level NMS; default: the pipeline's, 0.9; 0.95 before
    /// 2026-12-07).
    #[arg(long)]
    pub min_kept: Option<f32>,
    /// Keep only each nucleus's largest connected piece: true or false (default: the
    /// pipeline's).
    #[arg(long)]
    pub largest_component: Option<bool>,
    /// Drop nuclei of fewer pixels (default: the pipeline's).
    #[arg(long)]
    pub min_area: Option<u32>,
    #[command(flatten)]
    pub merge: MergeArgs,
}

impl CleanupArgs {
    /// `config` with these settings, where given.
    pub fn apply(
        &self,
        mut config: nucseg::pipeline::PipelineConfig,
    ) -> nucseg::pipeline::PipelineConfig {
        if let Some(score) = self.min_score {
            config.min_score = score;
        }
        let overlaps = &mut config.overlaps;
        if let Some(kept) = self.min_kept {
            overlaps.min_kept_fraction = kept;
        }
        if let Some(largest) = self.largest_component {
            overlaps.largest_component = largest;
        }
        if let Some(area) = self.min_area {
            overlaps.min_area = area;
        }
        self.merge.apply(config)
    }

    /// The first of these flags given, if any.
    pub fn given(&self) -> Option<&'static str> {
        [
            (self.min_score.is_some(), "--min-score"),
            (self.min_kept.is_some(), "--min-kept"),
            (self.largest_component.is_some(), "--largest-component"),
            (self.min_area.is_some(), "--min-area"),
            (self.merge.absorb_share.is_some(), "--absorb-share"),
            (
                self.merge.tta_keep_overlaps.is_some(),
                "--tta-keep-overlaps",
            ),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

/// How overlapping nuclei end, on the command line (`CleanupArgs`).
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct MergeArgs {
    /// What a dropped instance leaves: `off` (nothing), or the share of its mask that the
    /// nucleus it overlaps most must hold to take its free pixels (default: the pipeline's,
    /// 0.2).
    #[arg(long)]
    pub absorb_share: Option<OptionalShare>,
    /// With TTA, leave the merged nuclei's overlaps to the clean-up (mask-level NMS and
    /// absorption) instead of resolving them by score in the merge: true or false (default:
    /// the pipeline's, true; false is the paper's merge, as before 2026-12-03).
    #[arg(long)]
    pub tta_keep_overlaps: Option<bool>,
}

impl MergeArgs {
    /// `config` with these settings, where given.
    pub fn apply(
        &self,
        mut config: nucseg::pipeline::PipelineConfig,
    ) -> nucseg::pipeline::PipelineConfig {
        if let Some(OptionalShare(share)) = self.absorb_share {
            config.overlaps.absorb_share = share;
        }
        if let Some(keep) = self.tta_keep_overlaps {
            config.tta.keep_overlaps = keep;
        }
        config
    }
}

impl PipelineArgs {
    /// `--min-score`, else the pipeline's default.
    pub fn min_score(&self) -> f32 {
        self.cleanup
            .min_score
            .unwrap_or(nucseg::pipeline::DEFAULT_MIN_SCORE)
    }

    /// The pipeline's configuration with these settings and the TTA views `tta`.
    pub fn config(&self, tta: nucseg::postprocess::TtaSet) -> nucseg::pipeline::PipelineConfig {
        let defaults = nucseg::pipeline::PipelineConfig::new();
        let unmatched = defaults.tta.unmatched;
        let config = defaults
            .clone()
            .with_tta(
                defaults
                    .tta
                    .with_set(tta)
                    .with_view_min_score(self.view_min_score)
                    .with_unmatched(self.unmatched.unwrap_or(unmatched)),
            )
            .with_tiling(
                defaults
                    .tiling
                    .with_tile_size(self.tile)
                    .with_stride(self.tile.saturating_sub(self.overlap)),
            );
        self.cleanup.apply(config)
    }
}

/// An optional share on the command line (`OverlapConfig::absorb_share`,
/// `OverlapConfig::parts_cover`): `off`, or a share in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptionalShare(pub Option<f32>);

impl std::str::FromStr for OptionalShare {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "off" {
            return Ok(OptionalShare(None));
        }
        s.parse::<f32>()
            .ok()
            .filter(|v| (0.0..=1.0).contains(v))
            .map(|v| OptionalShare(Some(v)))
            .ok_or_else(|| format!("{s:?} is neither `off` nor a share in [0, 1]"))
    }
}

/// The magnification of the input images, for programs that segment images (a slide
/// carries its own pixel size).
#[derive(clap::Args, Debug, Clone)]
pub struct ScaleArgs {
    /// Resize every image by this factor before segmenting (nuclei are mapped back onto
    /// its pixels), e.g. to bring 20× images nearer the shipped model's 40×; check the
    /// factor on annotated images (CPM-15's 20× images: 1.5 best, 2 worse than none).
    #[arg(long, conflicts_with = "mpp")]
    pub scale: Option<f32>,
    /// The images' pixel size in µm (0.5 at 20×, 0.25 at 40×): sets --scale to mpp / 0.25,
    /// the pixel size the shipped model was trained at.
    #[arg(long)]
    pub mpp: Option<f64>,
}

impl ScaleArgs {
    /// `config` with its input scale set as asked (unchanged when neither option is given).
    pub fn apply(
        &self,
        config: nucseg::pipeline::PipelineConfig,
    ) -> nucseg::pipeline::PipelineConfig {
        match (self.scale, self.mpp) {
            (Some(s), _) => config.with_input_scale(s),
            (None, Some(mpp)) => {
                config.with_input_scale((mpp / nucseg::pipeline::MODEL_MPP) as f32)
            }
            (None, None) => config,
        }
    }
}

/// A terminal progress bar over `len` items, labelled `what`, with elapsed time, rate and
/// ETA; hidden when `visible` is false (e.g. in tests or when output is piped).
pub fn progress_bar(len: u64, what: &str, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} {elapsed_precise} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta}) {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// Peak resident memory of this process in bytes (`VmHWM` on Linux), if known.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Progress of a training run: a bar with the loss terms when the output is a terminal,
/// and a plain line every 50 steps otherwise (logs, CI), so a run can be followed either way.
pub struct TrainingProgress {
    bar: ProgressBar,
    recent: Vec<f32>,
}

impl TrainingProgress {
    /// For a run of `total` steps starting at step `first`.
    pub fn new(total: usize, first: usize) -> Self {
        let bar = progress_bar(total as u64, "train", true);
        bar.set_position(first as u64);
        TrainingProgress {
            bar,
            recent: Vec::new(),
        }
    }

    /// Records one step.
    pub fn step(&mut self, r: &nucseg::train::StepReport) {
        self.recent.push(r.total);
        if self.recent.len() > 50 {
            self.recent.remove(0);
        }
        let avg = self.recent.iter().sum::<f32>() / self.recent.len() as f32;
        let parts: Vec<String> = r
            .losses
            .iter()
            .map(|(n, v)| format!("{}={v:.3}", n.trim_start_matches("loss_")))
            .collect();
        let line = format!(
            "step {} loss {:.4} (mean of last {} {:.4}) {} lr {:.2e} {:.2} s/step",
            r.step,
            r.total,
            self.recent.len(),
            avg,
            parts.join(" "),
            r.lr,
            r.seconds
        );
        self.bar.set_position(r.step as u64);
        if self.bar.is_hidden() {
            if r.step.is_multiple_of(50) {
                println!("{line}");
            }
        } else {
            self.bar
                .set_message(format!("loss {avg:.3} {}", parts.join(" ")));
            if r.step.is_multiple_of(50) {
                self.bar.println(line);
            }
        }
    }

    /// Prints a line (e.g. a validation result) without breaking the bar.
    pub fn note(&self, line: &str) {
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// Closes the bar.
    pub fn finish(&self) {
        self.bar.finish();
    }
}

/// Progress of DCGMM training (a [`DcgmmStepReport`](nucseg::train::DcgmmStepReport) per
/// step): a bar with the NLL on a terminal, a line every 5 % of the steps otherwise.
pub struct DcgmmProgress {
    bar: ProgressBar,
}

impl DcgmmProgress {
    /// For a run of `steps` steps.
    pub fn new(steps: usize) -> Self {
        DcgmmProgress {
            bar: progress_bar(steps as u64, "dcgmm", true),
        }
    }

    /// Records one step.
    pub fn step(&self, r: &nucseg::train::DcgmmStepReport) {
        self.bar.set_position(r.step as u64);
        self.bar.set_message(format!("NLL {:.4}", r.nll));
        let line = format!(
            "step {}/{}: NLL {:.4} ({:.0} s)",
            r.step, r.steps, r.nll, r.elapsed
        );
        if self.bar.is_hidden() && r.step.is_multiple_of((r.steps / 20).max(1)) {
            eprintln!("{line}");
        }
        if let Some(path) = &r.checkpoint {
            let line = format!("step {}: checkpoint {}", r.step, path.display());
            if self.bar.is_hidden() {
                eprintln!("{line}");
            } else {
                self.bar.println(line);
            }
        }
    }

    /// Closes the bar.
    pub fn finish(&self) {
        self.bar.finish();
    }
}
