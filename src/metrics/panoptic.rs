//! Panoptic quality (Kirillov et al. 2019) for one class: PQ = DQ × SQ.

use super::{MetricsError, OverlapTable};
use crate::data::LabelMap;

/// PQ with its factors and counts. Pairs are true/predicted nuclei with IoU > 0.5, which
/// makes the matching unique (Kirillov et al. 2019, Theorem 1).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PanopticQuality {
    /// Detection quality `TP / (TP + ½FP + ½FN)`.
    pub dq: f64,
    /// Segmentation quality: mean IoU of the matched pairs (0 when there is none).
    pub sq: f64,
    /// `DQ × SQ`.
    pub pq: f64,
    /// Matched pairs.
    pub tp: usize,
    /// Unmatched predictions.
    pub fp: usize,
    /// Unmatched true nuclei.
    pub fn_: usize,
    /// Summed IoU of the matched pairs (for pooling).
    pub iou_sum: f64,
}

impl PanopticQuality {
    /// PQ from counts; both maps empty (no TP, FP or FN) gives 1.
    pub fn from_counts(tp: usize, fp: usize, fn_: usize, iou_sum: f64) -> Self {
        if tp + fp + fn_ == 0 {
            return PanopticQuality {
                dq: 1.0,
                sq: 1.0,
                pq: 1.0,
                tp,
                fp,
                fn_,
                iou_sum,
            };
        }
        let dq = tp as f64 / (tp as f64 + 0.5 * fp as f64 + 0.5 * fn_ as f64);
        let sq = if tp == 0 { 0.0 } else { iou_sum / tp as f64 };
        PanopticQuality {
            dq,
            sq,
            pq: dq * sq,
            tp,
            fp,
            fn_,
            iou_sum,
        }
    }

    /// PQ from an overlap table, matching pairs with IoU > 0.5.
    pub fn from_table(table: &OverlapTable) -> Self {
        let mut tp = 0;
        let mut iou_sum = 0.0;
        for &(ti, pi, inter) in &table.pairs {
            let iou = table.iou(ti, pi, inter);
            if iou > 0.5 {
                tp += 1;
                iou_sum += iou;
            }
        }
        Self::from_counts(tp, table.n_pred() - tp, table.n_true() - tp, iou_sum)
    }
}

/// PQ of one image.
pub fn panoptic_quality(
    truth: &LabelMap,
    pred: &LabelMap,
) -> Result<PanopticQuality, MetricsError> {
    Ok(PanopticQuality::from_table(&OverlapTable::new(
        truth, pred,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        // Nucleus 1 (3 px) matched by 7 (IoU 3/4); nucleus 2 missed; prediction 9 spurious.
        let t = LabelMap::from_vec(8, 1, vec![1, 1, 1, 0, 2, 2, 0, 0]).unwrap();
        let p = LabelMap::from_vec(8, 1, vec![7, 7, 7, 7, 0, 0, 0, 9]).unwrap();
        let q = panoptic_quality(&t, &p).unwrap();
        assert_eq!((q.tp, q.fp, q.fn_), (1, 1, 1));
        assert!((q.dq - 0.5).abs() < 1e-15);
        assert!((q.sq - 0.75).abs() < 1e-15);
        assert!((q.pq - 0.375).abs() < 1e-15);
    }
}
