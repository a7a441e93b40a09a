//! Instance segmentation metrics for nuclei: AJI (Kumar et al. 2017), AJI+ (Graham et al.
//! 2019), PQ / DQ / SQ (Kirillov et al. 2019), pixel Dice, and object-level precision,
//! recall and F1 under a one-to-one matching.
//!
//! Every metric reads an [`OverlapTable`], built in one pass over the pixels of a truth and
//! a prediction label map; ids need not be contiguous. Conventions, shared with the
//! independent reference in `shared/metrics-golden/reference.py`:
//! - both maps empty → every score is 1; exactly one empty → AJI, AJI+, PQ, F1 are 0;
//! - pairings that must be one-to-one (AJI+, PQ, F1) maximize the summed score
//!   (Hungarian algorithm, solved per connected group of overlapping nuclei);
//! - AJI pairs each true nucleus with the prediction of highest IoU (ties: the lowest
//!   prediction id), and a prediction may serve several nuclei.
//!
//! [`ImageMetrics`] computes all of them for one image; [`DatasetSummary`] aggregates a
//! data set both as the mean of per-image values and pooled over all images.

mod aji;
mod assignment;
mod detection;
mod dice;
mod evaluation;
mod overlap;
mod panoptic;
mod summary;

pub use aji::{aji, aji_plus, AjiParts};
pub use assignment::max_weight_matching;
pub use detection::{detection_scores, DetectionScores, MatchCriterion};
pub use dice::{dice, DiceParts};
pub use evaluation::{
    evaluate_folders, evaluate_folders_where, results_csv, results_table, EvaluatedImage,
    Evaluation, ResultRow, PER_IMAGE_CSV_HEADER,
};
pub use overlap::OverlapTable;
pub use panoptic::{panoptic_quality, PanopticQuality};
pub use summary::{DatasetSummary, ImageMetrics, SummaryValues};

/// Errors from metric computation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetricsError {
    /// Truth and prediction differ in size.
    #[error("truth is {}x{} but prediction is {}x{}", truth.0, truth.1, pred.0, pred.1)]
    ShapeMismatch {
        /// Truth (width, height).
        truth: (u32, u32),
        /// Prediction (width, height).
        pred: (u32, u32),
    },
}
