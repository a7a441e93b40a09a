//! A uniform spatial grid over rectangles: "which boxes may overlap this one" in time
//! proportional to the answer, so that matching nuclei never compares all pairs.

use super::masks::{rect_intersection, rect_is_empty, Rect};

/// Rectangles bucketed by the grid cells they touch (compressed rows: `starts[c]..starts[c+1]`
/// indexes `ids` for cell `c`).
#[derive(Debug, Clone)]
pub(crate) struct SpatialGrid {
    cell: u32,
    cols: u32,
    rows: u32,
    starts: Vec<u32>,
    ids: Vec<u32>,
    rects: Vec<Rect>,
}

/// Smallest cell side (px): below this the bookkeeping costs more than it saves.
const MIN_CELL: u32 = 8;

impl SpatialGrid {
    /// Indexes `rects` (empty ones are never returned by queries). The cell side is about
    /// the mean box side, and large enough that there are at most ~4 cells per rectangle,
    /// so memory stays proportional to the number of rectangles, not to the image area.
    pub(crate) fn new(rects: Vec<Rect>) -> Self {
        let live: Vec<&Rect> = rects.iter().filter(|r| !rect_is_empty(**r)).collect();
        let (mut max_x, mut max_y, mut side_sum) = (1u64, 1u64, 0u64);
        for r in &live {
            max_x = max_x.max(r[2] as u64);
            max_y = max_y.max(r[3] as u64);
            side_sum += (r[2] - r[0]).max(r[3] - r[1]) as u64;
        }
        let mean_side = side_sum / (live.len() as u64).max(1);
        let sparse = ((max_x * max_y) as f64 / (4 * live.len().max(1)) as f64)
            .sqrt()
            .ceil() as u64;
        let cell = mean_side
            .max(sparse)
            .max(MIN_CELL as u64)
            .min(u32::MAX as u64) as u32;
        let cols = max_x.div_ceil(cell as u64) as u32;
        let rows = max_y.div_ceil(cell as u64) as u32;
        let n_cells = cols as usize * rows as usize;
        let mut counts = vec![0u32; n_cells + 1];
        let cells_of = |r: &Rect| {
            let (cx0, cy0) = (r[0] / cell, r[1] / cell);
            let (cx1, cy1) = ((r[2] - 1) / cell, (r[3] - 1) / cell);
            (cy0..=cy1).flat_map(move |cy| (cx0..=cx1).map(move |cx| (cy * cols + cx) as usize))
        };
        for r in &live {
            for c in cells_of(r) {
                counts[c + 1] += 1;
            }
        }
        for c in 0..n_cells {
            counts[c + 1] += counts[c];
        }
        let mut fill = counts.clone();
        let mut ids = vec![0u32; counts[n_cells] as usize];
        for (i, r) in rects.iter().enumerate() {
            if rect_is_empty(*r) {
                continue;
            }
            for c in cells_of(r) {
                ids[fill[c] as usize] = i as u32;
                fill[c] += 1;
            }
        }
        SpatialGrid {
            cell,
            cols,
            rows,
            starts: counts,
            ids,
            rects,
        }
    }

    /// Fills `out` with the indices, in increasing order, of the rectangles that overlap `r`
    /// (share at least one pixel).
    pub(crate) fn query(&self, r: Rect, out: &mut Vec<u32>) {
        out.clear();
        if rect_is_empty(r) || self.cols == 0 || self.rows == 0 {
            return;
        }
        let cx0 = r[0] / self.cell;
        let cy0 = r[1] / self.cell;
        if cx0 >= self.cols || cy0 >= self.rows {
            return;
        }
        let cx1 = ((r[2] - 1) / self.cell).min(self.cols - 1);
        let cy1 = ((r[3] - 1) / self.cell).min(self.rows - 1);
        for cy in cy0..=cy1 {
            for cx in cx0..=cx1 {
                let c = (cy * self.cols + cx) as usize;
                for &i in &self.ids[self.starts[c] as usize..self.starts[c + 1] as usize] {
                    if rect_intersection(self.rects[i as usize], r).is_some() {
                        out.push(i);
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_equals_brute_force() {
        // A deterministic scatter of boxes of mixed sizes, some empty.
        let mut rects = Vec::new();
        let mut s = 12345u64;
        let mut next = |m: u64| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % m) as u32
        };
        for _ in 0..300 {
            let (x, y) = (next(500), next(400));
            let (w, h) = (next(60), next(60));
            rects.push([x, y, x + w, y + h]);
        }
        let grid = SpatialGrid::new(rects.clone());
        let mut out = Vec::new();
        for q in 0..200 {
            let (x, y) = (next(560), next(460));
            let r = [x, y, x + 1 + next(80), y + 1 + next(80)];
            grid.query(r, &mut out);
            let brute: Vec<u32> = (0..rects.len() as u32)
                .filter(|&i| rect_intersection(rects[i as usize], r).is_some())
                .collect();
            assert_eq!(out, brute, "query {q}: {r:?}");
        }
        let empty = SpatialGrid::new(Vec::new());
        empty.query([0, 0, 10, 10], &mut out);
        assert!(out.is_empty());
    }
}
