//! Object-level precision, recall and F1 under a one-to-one matching.

use super::{assignment::max_weight_matching, MetricsError, OverlapTable};
use crate::data::LabelMap;

/// When a true and a predicted nucleus count as the same object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MatchCriterion {
    /// `IoU >= t` (the common detection criterion; `t = 0.5` by default).
    IouAtLeast(f64),
    /// `Dice > t`; Jung et al. (2019) count a detection when Dice > 0.2.
    DiceAbove(f64),
}

impl Default for MatchCriterion {
    fn default() -> Self {
        MatchCriterion::IouAtLeast(0.5)
    }
}

/// Object counts and the scores derived from them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DetectionScores {
    /// Matched pairs.
    pub tp: usize,
    /// Unmatched predictions.
    pub fp: usize,
    /// Unmatched true nuclei.
    pub fn_: usize,
    /// `TP / (TP + FP)`; with no prediction, 1 if there is also no nucleus, else 0.
    pub precision: f64,
    /// `TP / (TP + FN)`; with no nucleus, 1 if there is also no prediction, else 0.
    pub recall: f64,
    /// `2TP / (2TP + FP + FN)`; 1 when all three are 0.
    pub f1: f64,
}

impl DetectionScores {
    /// Scores from counts.
    pub fn from_counts(tp: usize, fp: usize, fn_: usize) -> Self {
        let ratio = |num: usize, den: usize, empty: f64| {
            if den == 0 {
                empty
            } else {
                num as f64 / den as f64
            }
        };
        DetectionScores {
            tp,
            fp,
            fn_,
            precision: ratio(tp, tp + fp, if fn_ == 0 { 1.0 } else { 0.0 }),
            recall: ratio(tp, tp + fn_, if fp == 0 { 1.0 } else { 0.0 }),
            f1: ratio(2 * tp, 2 * tp + fp + fn_, 1.0),
        }
    }

    /// Matches nuclei one-to-one, maximizing the summed criterion score (IoU or Dice) over
    /// the pairs that satisfy it (Hungarian algorithm), then counts.
    pub fn from_table(table: &OverlapTable, criterion: MatchCriterion) -> Self {
        let edges: Vec<(u32, u32, f64)> = table
            .pairs
            .iter()
            .filter_map(|&(ti, pi, inter)| {
                let score = match criterion {
                    MatchCriterion::IouAtLeast(t) => {
                        Some(table.iou(ti, pi, inter)).filter(|s| *s >= t)
                    }
                    MatchCriterion::DiceAbove(t) => {
                        Some(table.pair_dice(ti, pi, inter)).filter(|s| *s > t)
                    }
                };
                score.map(|s| (ti, pi, s))
            })
            .collect();
        let tp = max_weight_matching(table.n_true(), table.n_pred(), &edges).len();
        Self::from_counts(tp, table.n_pred() - tp, table.n_true() - tp)
    }
}

/// Object precision / recall / F1 of one image under `criterion`.
pub fn detection_scores(
    truth: &LabelMap,
    pred: &LabelMap,
    criterion: MatchCriterion,
) -> Result<DetectionScores, MetricsError> {
    Ok(DetectionScores::from_table(
        &OverlapTable::new(truth, pred)?,
        criterion,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_differ_on_a_loose_match() {
        // Nucleus of 4 px, prediction covering 1 of them plus 1 more: IoU 1/5, Dice 2/6.
        let t = LabelMap::from_vec(6, 1, vec![1, 1, 1, 1, 0, 0]).unwrap();
        let p = LabelMap::from_vec(6, 1, vec![0, 0, 0, 5, 5, 0]).unwrap();
        let iou = detection_scores(&t, &p, MatchCriterion::IouAtLeast(0.5)).unwrap();
        assert_eq!((iou.tp, iou.fp, iou.fn_), (0, 1, 1));
        let dice = detection_scores(&t, &p, MatchCriterion::DiceAbove(0.2)).unwrap();
        assert_eq!((dice.tp, dice.fp, dice.fn_), (1, 0, 0));
        assert_eq!(dice.f1, 1.0);
    }

    #[test]
    fn empty_conventions() {
        let s = DetectionScores::from_counts(0, 0, 0);
        assert_eq!((s.precision, s.recall, s.f1), (1.0, 1.0, 1.0));
        let s = DetectionScores::from_counts(0, 0, 5);
        assert_eq!((s.precision, s.recall, s.f1), (0.0, 0.0, 0.0));
        let s = DetectionScores::from_counts(0, 3, 0);
        assert_eq!((s.precision, s.recall, s.f1), (0.0, 0.0, 0.0));
    }
}
