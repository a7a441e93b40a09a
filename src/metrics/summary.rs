//! All metrics of one image, and their summary over a data set.

use serde::Serialize;

use super::{
    aji::aji_value, AjiParts, DetectionScores, DiceParts, MatchCriterion, MetricsError,
    OverlapTable, PanopticQuality,
};
use crate::data::LabelMap;

/// Every metric for one image, with the counts needed to pool a data set.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageMetrics {
    /// AJI (Kumar et al. 2017).
    pub aji: f64,
    /// AJI+ (one-to-one pairing).
    pub aji_plus: f64,
    /// Binary pixel Dice.
    pub dice: f64,
    /// PQ / DQ / SQ at IoU > 0.5.
    pub pq: PanopticQuality,
    /// Object scores with one-to-one matching at IoU ≥ 0.5.
    pub f1_iou50: DetectionScores,
    /// Object scores with one-to-one matching at Dice > 0.2 (Jung et al. 2019).
    pub f1_dice20: DetectionScores,
    /// Number of true nuclei.
    pub n_true: usize,
    /// Number of predicted nuclei.
    pub n_pred: usize,
    /// AJI's intersection and union.
    pub aji_parts: AjiParts,
    /// AJI+'s intersection and union.
    pub aji_plus_parts: AjiParts,
    /// Dice's counts.
    pub dice_parts: DiceParts,
}

impl ImageMetrics {
    /// All metrics of `pred` against `truth` (same size).
    pub fn compute(truth: &LabelMap, pred: &LabelMap) -> Result<Self, MetricsError> {
        Ok(Self::from_table(&OverlapTable::new(truth, pred)?))
    }

    /// All metrics from an overlap table.
    pub fn from_table(table: &OverlapTable) -> Self {
        let aji_parts = AjiParts::aji(table);
        let aji_plus_parts = AjiParts::aji_plus(table);
        let dice_parts = DiceParts::from_table(table);
        ImageMetrics {
            aji: aji_value(table, &aji_parts),
            aji_plus: aji_value(table, &aji_plus_parts),
            dice: dice_parts.value(),
            pq: PanopticQuality::from_table(table),
            f1_iou50: DetectionScores::from_table(table, MatchCriterion::IouAtLeast(0.5)),
            f1_dice20: DetectionScores::from_table(table, MatchCriterion::DiceAbove(0.2)),
            n_true: table.n_true(),
            n_pred: table.n_pred(),
            aji_parts,
            aji_plus_parts,
            dice_parts,
        }
    }

    /// The metrics under the names of `shared/metrics-golden/expected.json`: `aji`,
    /// `aji_plus`, `dice`, `pq_{dq,sq,pq,tp,fp,fn}`, `f1_iou50_*` and `f1_dice20_*`
    /// (`tp, fp, fn, precision, recall, f1`).
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::json;
        let mut m = serde_json::Map::new();
        m.insert("aji".into(), json!(self.aji));
        m.insert("aji_plus".into(), json!(self.aji_plus));
        m.insert("dice".into(), json!(self.dice));
        m.insert("pq_dq".into(), json!(self.pq.dq));
        m.insert("pq_sq".into(), json!(self.pq.sq));
        m.insert("pq_pq".into(), json!(self.pq.pq));
        m.insert("pq_tp".into(), json!(self.pq.tp));
        m.insert("pq_fp".into(), json!(self.pq.fp));
        m.insert("pq_fn".into(), json!(self.pq.fn_));
        for (prefix, s) in [("f1_iou50", &self.f1_iou50), ("f1_dice20", &self.f1_dice20)] {
            m.insert(format!("{prefix}_tp"), json!(s.tp));
            m.insert(format!("{prefix}_fp"), json!(s.fp));
            m.insert(format!("{prefix}_fn"), json!(s.fn_));
            m.insert(format!("{prefix}_precision"), json!(s.precision));
            m.insert(format!("{prefix}_recall"), json!(s.recall));
            m.insert(format!("{prefix}_f1"), json!(s.f1));
        }
        m.insert("n_true".into(), json!(self.n_true));
        m.insert("n_pred".into(), json!(self.n_pred));
        m
    }
}

/// The headline values of a data set summary (one of its two aggregations).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
#[allow(missing_docs)]
pub struct SummaryValues {
    pub aji: f64,
    pub aji_plus: f64,
    /// Binary Dice; as a mean over images this is the paper's average Dice (ADC).
    pub dice: f64,
    pub pq_dq: f64,
    pub pq_sq: f64,
    pub pq_pq: f64,
    pub f1_iou50_precision: f64,
    pub f1_iou50_recall: f64,
    pub f1_iou50_f1: f64,
    pub f1_dice20_precision: f64,
    pub f1_dice20_recall: f64,
    pub f1_dice20_f1: f64,
}

impl SummaryValues {
    /// The value of each field, with its name.
    pub fn named(&self) -> [(&'static str, f64); 12] {
        [
            ("aji", self.aji),
            ("aji_plus", self.aji_plus),
            ("dice", self.dice),
            ("pq_dq", self.pq_dq),
            ("pq_sq", self.pq_sq),
            ("pq_pq", self.pq_pq),
            ("f1_iou50_precision", self.f1_iou50_precision),
            ("f1_iou50_recall", self.f1_iou50_recall),
            ("f1_iou50_f1", self.f1_iou50_f1),
            ("f1_dice20_precision", self.f1_dice20_precision),
            ("f1_dice20_recall", self.f1_dice20_recall),
            ("f1_dice20_f1", self.f1_dice20_f1),
        ]
    }
}

/// A data set's metrics, aggregated two ways (both are in use in the literature, and they
/// differ when images have very different nucleus counts):
/// - `mean`: the mean over images of each per-image value (Kumar et al. and Jung et al.
///   report AJI and Dice this way);
/// - `pooled`: the metric computed from counts summed over all images (ΣI/ΣU for AJI,
///   ΣTP, ΣFP, ΣFN for PQ and F1, pixel sums for Dice).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct DatasetSummary {
    /// Number of images.
    pub images: usize,
    /// Mean of per-image values.
    pub mean: SummaryValues,
    /// Computed from counts pooled over all images.
    pub pooled: SummaryValues,
}

impl DatasetSummary {
    /// Summarizes per-image metrics.
    pub fn new(images: &[ImageMetrics]) -> Self {
        let n = images.len();
        if n == 0 {
            return DatasetSummary::default();
        }
        let mean = |f: &dyn Fn(&ImageMetrics) -> f64| images.iter().map(f).sum::<f64>() / n as f64;
        let mean_values = SummaryValues {
            aji: mean(&|m| m.aji),
            aji_plus: mean(&|m| m.aji_plus),
            dice: mean(&|m| m.dice),
            pq_dq: mean(&|m| m.pq.dq),
            pq_sq: mean(&|m| m.pq.sq),
            pq_pq: mean(&|m| m.pq.pq),
            f1_iou50_precision: mean(&|m| m.f1_iou50.precision),
            f1_iou50_recall: mean(&|m| m.f1_iou50.recall),
            f1_iou50_f1: mean(&|m| m.f1_iou50.f1),
            f1_dice20_precision: mean(&|m| m.f1_dice20.precision),
            f1_dice20_recall: mean(&|m| m.f1_dice20.recall),
            f1_dice20_f1: mean(&|m| m.f1_dice20.f1),
        };
        let sum_parts = |f: &dyn Fn(&ImageMetrics) -> AjiParts| {
            images
                .iter()
                .map(f)
                .fold(AjiParts::default(), |a, b| AjiParts {
                    intersection: a.intersection + b.intersection,
                    union: a.union + b.union,
                    unpaired_pred: a.unpaired_pred + b.unpaired_pred,
                })
        };
        let dice = images.iter().fold(DiceParts::default(), |a, m| DiceParts {
            intersection: a.intersection + m.dice_parts.intersection,
            total: a.total + m.dice_parts.total,
        });
        let pq = PanopticQuality::from_counts(
            images.iter().map(|m| m.pq.tp).sum(),
            images.iter().map(|m| m.pq.fp).sum(),
            images.iter().map(|m| m.pq.fn_).sum(),
            images.iter().map(|m| m.pq.iou_sum).sum(),
        );
        let pooled_detection = |f: &dyn Fn(&ImageMetrics) -> DetectionScores| {
            DetectionScores::from_counts(
                images.iter().map(|m| f(m).tp).sum(),
                images.iter().map(|m| f(m).fp).sum(),
                images.iter().map(|m| f(m).fn_).sum(),
            )
        };
        let iou50 = pooled_detection(&|m| m.f1_iou50);
        let dice20 = pooled_detection(&|m| m.f1_dice20);
        let pooled = SummaryValues {
            aji: sum_parts(&|m| m.aji_parts).value(),
            aji_plus: sum_parts(&|m| m.aji_plus_parts).value(),
            dice: dice.value(),
            pq_dq: pq.dq,
            pq_sq: pq.sq,
            pq_pq: pq.pq,
            f1_iou50_precision: iou50.precision,
            f1_iou50_recall: iou50.recall,
            f1_iou50_f1: iou50.f1,
            f1_dice20_precision: dice20.precision,
            f1_dice20_recall: dice20.recall,
            f1_dice20_f1: dice20.f1,
        };
        DatasetSummary {
            images: n,
            mean: mean_values,
            pooled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_differs_from_mean_when_sizes_differ() {
        // Image A: one large nucleus predicted perfectly; image B: one small nucleus missed.
        let a_t = LabelMap::from_fn(10, 10, |_, _| 1);
        let b_t = LabelMap::from_fn(10, 10, |x, y| (x == 0 && y == 0) as u32);
        let a = ImageMetrics::compute(&a_t, &a_t).unwrap();
        let b = ImageMetrics::compute(&b_t, &LabelMap::new(10, 10)).unwrap();
        let s = DatasetSummary::new(&[a, b]);
        assert_eq!(s.images, 2);
        assert!((s.mean.aji - 0.5).abs() < 1e-15);
        assert!((s.pooled.aji - 100.0 / 101.0).abs() < 1e-15);
        assert!((s.pooled.f1_iou50_f1 - 2.0 / 3.0).abs() < 1e-15);
        let json = ImageMetrics::compute(&a_t, &a_t).unwrap().to_json();
        assert_eq!(json["f1_dice20_tp"], 1);
        assert_eq!(json["aji"], 1.0);
    }
}
