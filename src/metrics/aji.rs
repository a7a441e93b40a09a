//! Aggregated Jaccard Index: AJI (Kumar et al. 2017) and AJI+ (Graham et al. 2019).

use super::{assignment::max_weight_matching, MetricsError, OverlapTable};
use crate::data::LabelMap;

/// The summed intersection and union behind an AJI value, kept so that a data set can be
/// pooled (`ΣI / ΣU` over images).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AjiParts {
    /// Σ |G_i ∩ S_j| over paired nuclei.
    pub intersection: u64,
    /// Σ |G_i ∪ S_j| over pairs, plus the areas of unpaired nuclei and predictions.
    pub union: u64,
    /// The part of `union` that is predictions paired with no nucleus: what false
    /// positives and leftover fragments cost (issue 10's first diagnostic).
    pub unpaired_pred: u64,
}

impl AjiParts {
    /// `intersection / union`, with the edge cases of the module docs resolved by the caller.
    pub fn value(&self) -> f64 {
        if self.union == 0 {
            1.0
        } else {
            self.intersection as f64 / self.union as f64
        }
    }

    /// AJI (Kumar et al. 2017, Algorithm 1), in the widely used "fast" form: each true
    /// nucleus `G_i` is paired with the prediction `S_j` of highest IoU (ties: the lowest
    /// prediction id); a prediction may serve several nuclei and then counts in each union.
    /// Unpaired nuclei and predictions used by no nucleus add their areas to the union.
    pub fn aji(table: &OverlapTable) -> AjiParts {
        let mut best: Vec<Option<(f64, u32, u64)>> = vec![None; table.n_true()];
        for &(ti, pi, inter) in &table.pairs {
            let iou = table.iou(ti, pi, inter);
            let slot = &mut best[ti as usize];
            // Pairs are sorted by pred index, so `>` keeps the lowest index on ties.
            if slot.is_none_or(|(b, _, _)| iou > b) {
                *slot = Some((iou, pi, inter));
            }
        }
        let mut used = vec![false; table.n_pred()];
        let mut parts = AjiParts::default();
        for (ti, b) in best.iter().enumerate() {
            match *b {
                Some((_, pi, inter)) => {
                    parts.intersection += inter;
                    parts.union += table.union(ti as u32, pi, inter);
                    used[pi as usize] = true;
                }
                None => parts.union += table.true_area[ti],
            }
        }
        parts.unpaired_pred = unused_area(&used, &table.pred_area);
        parts.union += parts.unpaired_pred;
        parts
    }

    /// AJI+ (Graham et al. 2019, HoVer-Net): the pairing is one-to-one, chosen to maximize
    /// the summed IoU (Hungarian), so no prediction is counted twice.
    pub fn aji_plus(table: &OverlapTable) -> AjiParts {
        let edges: Vec<(u32, u32, f64)> = table
            .pairs
            .iter()
            .map(|&(ti, pi, inter)| (ti, pi, table.iou(ti, pi, inter)))
            .collect();
        let matched = max_weight_matching(table.n_true(), table.n_pred(), &edges);
        let mut true_used = vec![false; table.n_true()];
        let mut pred_used = vec![false; table.n_pred()];
        let mut parts = AjiParts::default();
        for (ti, pi, _) in matched {
            let inter = table
                .pairs
                .binary_search_by_key(&(ti, pi), |p| (p.0, p.1))
                .map(|k| table.pairs[k].2)
                .expect("matched pair overlaps");
            parts.intersection += inter;
            parts.union += table.union(ti, pi, inter);
            true_used[ti as usize] = true;
            pred_used[pi as usize] = true;
        }
        parts.unpaired_pred = unused_area(&pred_used, &table.pred_area);
        parts.union += unused_area(&true_used, &table.true_area) + parts.unpaired_pred;
        parts
    }
}

fn unused_area(used: &[bool], area: &[u64]) -> u64 {
    used.iter()
        .zip(area)
        .filter(|(u, _)| !**u)
        .map(|(_, a)| a)
        .sum()
}

/// AJI value of a table with the empty-map conventions: both empty → 1, one empty → 0.
pub(crate) fn aji_value(table: &OverlapTable, parts: &AjiParts) -> f64 {
    match (table.n_true(), table.n_pred()) {
        (0, 0) => 1.0,
        (0, _) | (_, 0) => 0.0,
        _ => parts.value(),
    }
}

/// AJI of one image (see [`AjiParts::aji`]).
pub fn aji(truth: &LabelMap, pred: &LabelMap) -> Result<f64, MetricsError> {
    let table = OverlapTable::new(truth, pred)?;
    Ok(aji_value(&table, &AjiParts::aji(&table)))
}

/// AJI+ of one image (see [`AjiParts::aji_plus`]).
pub fn aji_plus(truth: &LabelMap, pred: &LabelMap) -> Result<f64, MetricsError> {
    let table = OverlapTable::new(truth, pred)?;
    Ok(aji_value(&table, &AjiParts::aji_plus(&table)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_aji_with_a_reused_prediction() {
        // Truth: two 2-px nuclei side by side; prediction: one 4-px blob over both, and a
        // stray 1-px prediction.
        let t = LabelMap::from_vec(5, 1, vec![1, 1, 2, 2, 0]).unwrap();
        let p = LabelMap::from_vec(5, 1, vec![8, 8, 8, 8, 3]).unwrap();
        // AJI: both nuclei pair with the blob: I = 2 + 2, U = 4 + 4, + stray 1 → 4/9.
        assert!((aji(&t, &p).unwrap() - 4.0 / 9.0).abs() < 1e-15);
        // AJI+: one nucleus pairs with the blob (I 2, U 4); the other and the stray add
        // 2 + 1 → 2/7.
        assert!((aji_plus(&t, &p).unwrap() - 2.0 / 7.0).abs() < 1e-15);
    }

    #[test]
    fn empty_conventions() {
        let e = LabelMap::new(3, 3);
        let one = LabelMap::from_fn(3, 3, |x, _| (x == 1) as u32);
        assert_eq!(aji(&e, &e).unwrap(), 1.0);
        assert_eq!(aji(&one, &e).unwrap(), 0.0);
        assert_eq!(aji_plus(&e, &one).unwrap(), 0.0);
        assert_eq!(aji(&one, &one).unwrap(), 1.0);
    }

    #[test]
    fn equal_iou_ties_do_not_depend_on_ids() {
        // One 10-px nucleus; prediction A covers 1 px of it (IoU 1/10), prediction B covers
        // 2 px and 10 px outside (IoU 2/20): an exact tie whose two pairings give different
        // AJI+ (1/22 with A, 2/21 with B). Swapping the ids must not change the choice.
        let t = LabelMap::from_fn(30, 1, |x, _| (x < 10) as u32);
        let pred = |a: u32, b: u32| {
            LabelMap::from_fn(30, 1, |x, _| match x {
                0 => a,
                8..=19 => b,
                _ => 0,
            })
        };
        let (x, y) = (
            aji_plus(&t, &pred(1, 2)).unwrap(),
            aji_plus(&t, &pred(2, 1)).unwrap(),
        );
        assert_eq!(x, y);
        assert!([1.0 / 22.0, 2.0 / 21.0].contains(&x), "{x}");
        assert_eq!(aji(&t, &pred(1, 2)).unwrap(), aji(&t, &pred(7, 3)).unwrap());
    }
}
