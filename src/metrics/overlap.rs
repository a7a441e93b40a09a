//! The sparse overlap (contingency) table between a truth and a prediction label map.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::MetricsError;
use crate::data::LabelMap;

/// Pixel overlaps between the instances of a truth and a prediction label map.
///
/// Instances are indexed `0..n` in raster order of their first pixel (index `i` of
/// [`true_ids`](Self::true_ids) is true nucleus `i`), not by id: every tie-break downstream
/// (AJI's first-best prediction, AJI+'s and the detection matching's equal-weight
/// assignments) then depends on the geometry only, so all metrics are invariant under
/// relabelling. Only overlapping pairs are stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OverlapTable {
    /// Truth ids, in raster order of their first pixel.
    pub true_ids: Vec<u32>,
    /// Prediction ids, in raster order of their first pixel.
    pub pred_ids: Vec<u32>,
    /// Pixel count of each true nucleus.
    pub true_area: Vec<u64>,
    /// Pixel count of each predicted nucleus.
    pub pred_area: Vec<u64>,
    /// `(true index, pred index, intersection)` for every overlapping pair, sorted by true
    /// index then pred index.
    pub pairs: Vec<(u32, u32, u64)>,
    /// Foreground pixels in both maps (binary intersection).
    pub foreground_intersection: u64,
}

/// A multiplicative hasher for the `(truth id, pred id)` keys: the table is built per image
/// in a hot loop, where SipHash would dominate the cost.
#[derive(Default)]
struct PairHasher(u64);

impl Hasher for PairHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, k: u64) {
        let k = (k ^ (k >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = k ^ (k >> 29);
    }
}

impl OverlapTable {
    /// Builds the table in one pass over the pixels (runs of equal `(truth, pred)` pairs are
    /// counted together, so the cost is dominated by one comparison per pixel).
    pub fn new(truth: &LabelMap, pred: &LabelMap) -> Result<Self, MetricsError> {
        if truth.dimensions() != pred.dimensions() {
            return Err(MetricsError::ShapeMismatch {
                truth: truth.dimensions(),
                pred: pred.dimensions(),
            });
        }
        type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<PairHasher>>;
        let mut counts: FastMap<u64, u64> = HashMap::default();
        // First pixel of every id: a first appearance is always the first run of a new pair.
        let (mut true_first, mut pred_first): (FastMap<u32, usize>, FastMap<u32, usize>) =
            Default::default();
        let (t, p) = (truth.as_slice(), pred.as_slice());
        let mut i = 0;
        while i < t.len() {
            let (a, b) = (t[i], p[i]);
            let start = i;
            i += 1;
            while i < t.len() && t[i] == a && p[i] == b {
                i += 1;
            }
            if a != 0 || b != 0 {
                let count = counts
                    .entry(((a as u64) << 32) | b as u64)
                    .or_insert_with(|| {
                        if a != 0 {
                            true_first.entry(a).or_insert(start);
                        }
                        if b != 0 {
                            pred_first.entry(b).or_insert(start);
                        }
                        0
                    });
                *count += (i - start) as u64;
            }
        }
        let raster_order = |first: &FastMap<u32, usize>| -> (Vec<u32>, FastMap<u32, usize>) {
            let mut ids: Vec<(usize, u32)> = first.iter().map(|(&id, &pos)| (pos, id)).collect();
            ids.sort_unstable();
            let index = ids
                .iter()
                .enumerate()
                .map(|(k, &(_, id))| (id, k))
                .collect();
            (ids.into_iter().map(|(_, id)| id).collect(), index)
        };
        let (true_ids, true_index) = raster_order(&true_first);
        let (pred_ids, pred_index) = raster_order(&pred_first);
        let mut true_area = vec![0u64; true_ids.len()];
        let mut pred_area = vec![0u64; pred_ids.len()];
        let mut pairs = Vec::new();
        let mut foreground_intersection = 0;
        for (&key, &n) in &counts {
            let (a, b) = ((key >> 32) as u32, key as u32);
            let ti = (a != 0).then(|| true_index[&a]);
            let pi = (b != 0).then(|| pred_index[&b]);
            if let Some(ti) = ti {
                true_area[ti] += n;
            }
            if let Some(pi) = pi {
                pred_area[pi] += n;
            }
            if let (Some(ti), Some(pi)) = (ti, pi) {
                pairs.push((ti as u32, pi as u32, n));
                foreground_intersection += n;
            }
        }
        pairs.sort_unstable();
        Ok(OverlapTable {
            true_ids,
            pred_ids,
            true_area,
            pred_area,
            pairs,
            foreground_intersection,
        })
    }

    /// Number of true nuclei.
    pub fn n_true(&self) -> usize {
        self.true_ids.len()
    }

    /// Number of predicted nuclei.
    pub fn n_pred(&self) -> usize {
        self.pred_ids.len()
    }

    /// Union of a stored pair: `|T| + |P| - |T ∩ P|`.
    pub fn union(&self, ti: u32, pi: u32, inter: u64) -> u64 {
        self.true_area[ti as usize] + self.pred_area[pi as usize] - inter
    }

    /// IoU of a stored pair.
    pub fn iou(&self, ti: u32, pi: u32, inter: u64) -> f64 {
        inter as f64 / self.union(ti, pi, inter) as f64
    }

    /// Dice of a stored pair: `2|T ∩ P| / (|T| + |P|)`.
    pub fn pair_dice(&self, ti: u32, pi: u32, inter: u64) -> f64 {
        2.0 * inter as f64 / (self.true_area[ti as usize] + self.pred_area[pi as usize]) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_areas_and_intersections_with_sparse_ids() {
        let t = LabelMap::from_vec(4, 2, vec![7, 7, 0, 3, 7, 0, 0, 3]).unwrap();
        let p = LabelMap::from_vec(4, 2, vec![0, 100, 100, 100, 9, 9, 0, 0]).unwrap();
        let table = OverlapTable::new(&t, &p).unwrap();
        // Indexed in raster order of the first pixel, not by id.
        assert_eq!(table.true_ids, vec![7, 3]);
        assert_eq!(table.pred_ids, vec![100, 9]);
        assert_eq!(table.true_area, vec![3, 2]);
        assert_eq!(table.pred_area, vec![3, 2]);
        // (7,100): 1 px; (7,9): 1 px; (3,100): 1 px.
        assert_eq!(table.pairs, vec![(0, 0, 1), (0, 1, 1), (1, 0, 1)]);
        assert_eq!(table.foreground_intersection, 3);
        assert_eq!(table.iou(0, 0, 1), 1.0 / 5.0);
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let err = OverlapTable::new(&LabelMap::new(3, 2), &LabelMap::new(2, 3)).unwrap_err();
        assert_eq!(err.to_string(), "truth is 3x2 but prediction is 2x3");
    }
}
