//! Matching predictions (anchors, proposals) to ground-truth boxes by IoU
//! (Faster R-CNN, Sec. 3.1.2; torchvision's `det_utils.Matcher`).

/// What a prediction was matched to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Foreground, assigned to ground-truth box `g`.
    Gt(usize),
    /// Background (IoU below the low threshold with every box).
    Negative,
    /// Between the thresholds: neither foreground nor background, left out of the loss.
    Ignore,
}

/// IoU thresholds of a matcher: IoU ≥ `high` is foreground, IoU < `low` background, in
/// between ignored. With `allow_low_quality_matches`, every ground-truth box also gets the
/// predictions with which it has its highest IoU, even below `high` (Faster R-CNN's "anchor
/// with the highest IoU" rule), so no box is left without a positive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Matcher {
    /// Foreground threshold (RPN 0.7, box head 0.5).
    pub high: f32,
    /// Background threshold (RPN 0.3, box head 0.5).
    pub low: f32,
    /// Keep each ground truth's best predictions as foreground.
    pub allow_low_quality_matches: bool,
}

impl Matcher {
    /// Matches each of `n_pred` predictions given the `[n_gt, n_pred]` row-major IoU matrix.
    /// With no ground truth every prediction is background (detectron2's convention).
    pub fn assign(&self, iou: &[f32], n_gt: usize, n_pred: usize) -> Vec<Match> {
        assert_eq!(iou.len(), n_gt * n_pred, "IoU matrix must be n_gt × n_pred");
        if n_gt == 0 {
            return vec![Match::Negative; n_pred];
        }
        // Best ground truth for every prediction (ties: the lowest index).
        let mut best = vec![(0usize, f32::NEG_INFINITY); n_pred];
        for g in 0..n_gt {
            let row = &iou[g * n_pred..(g + 1) * n_pred];
            for (p, &v) in row.iter().enumerate() {
                if v > best[p].1 {
                    best[p] = (g, v);
                }
            }
        }
        let mut out: Vec<Match> = best
            .iter()
            .map(|&(g, v)| {
                if v >= self.high {
                    Match::Gt(g)
                } else if v < self.low {
                    Match::Negative
                } else {
                    Match::Ignore
                }
            })
            .collect();
        if self.allow_low_quality_matches {
            for g in 0..n_gt {
                let row = &iou[g * n_pred..(g + 1) * n_pred];
                let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                if top <= 0.0 {
                    continue;
                }
                for (p, &v) in row.iter().enumerate() {
                    if v == top {
                        // As torchvision: the prediction keeps its own best box.
                        out[p] = Match::Gt(best[p].0);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_and_low_quality_rule() {
        // 2 gt × 4 predictions.
        let iou = [
            0.8, 0.5, 0.1, 0.0, //
            0.0, 0.2, 0.25, 0.0,
        ];
        let strict = Matcher {
            high: 0.7,
            low: 0.3,
            allow_low_quality_matches: false,
        };
        assert_eq!(
            strict.assign(&iou, 2, 4),
            vec![
                Match::Gt(0),
                Match::Ignore,
                Match::Negative,
                Match::Negative
            ]
        );
        let rpn = Matcher {
            allow_low_quality_matches: true,
            ..strict
        };
        // gt 1's best prediction (IoU 0.25, index 2) becomes foreground.
        assert_eq!(
            rpn.assign(&iou, 2, 4),
            vec![Match::Gt(0), Match::Ignore, Match::Gt(1), Match::Negative]
        );
        assert_eq!(rpn.assign(&[], 0, 3), vec![Match::Negative; 3]);
    }
}
