//! Pixel-level (binary) Dice coefficient.

use super::{MetricsError, OverlapTable};
use crate::data::LabelMap;

/// The counts behind a binary Dice value, for pooling over a data set.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DiceParts {
    /// `|X ∩ Y|`: pixels that are foreground in both maps.
    pub intersection: u64,
    /// `|X| + |Y|`.
    pub total: u64,
}

impl DiceParts {
    /// From an overlap table.
    pub fn from_table(table: &OverlapTable) -> Self {
        DiceParts {
            intersection: table.foreground_intersection,
            total: table.true_area.iter().sum::<u64>() + table.pred_area.iter().sum::<u64>(),
        }
    }

    /// `2|X ∩ Y| / (|X| + |Y|)`; 1 when both maps are empty.
    pub fn value(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            2.0 * self.intersection as f64 / self.total as f64
        }
    }
}

/// Binary pixel Dice between the foregrounds of two label maps (instance ids ignored).
pub fn dice(truth: &LabelMap, pred: &LabelMap) -> Result<f64, MetricsError> {
    Ok(DiceParts::from_table(&OverlapTable::new(truth, pred)?).value())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_ids() {
        let t = LabelMap::from_vec(4, 1, vec![1, 1, 2, 0]).unwrap();
        let p = LabelMap::from_vec(4, 1, vec![5, 0, 6, 6]).unwrap();
        // |X| = 3, |Y| = 3, |X ∩ Y| = 2.
        assert!((dice(&t, &p).unwrap() - 4.0 / 6.0).abs() < 1e-15);
        assert_eq!(
            dice(&LabelMap::new(2, 2), &LabelMap::new(2, 2)).unwrap(),
            1.0
        );
    }
}
