//! Splitting an instance that covers touching nuclei by the dense head's distance map
//! (issue 10, lever 5): the map's peaks inside the mask are markers, and a marker-controlled
//! watershed on the negated map (as the DIST method of Naylor et al. 2019 post-processes
//! its maps) divides the mask between them. Pure geometry on host values.

use burn::config::Config;
use ndarray::Array2;

use crate::data::{connected_components, watershed, Connectivity, LabelMap};
use crate::instances::{Instance, InstanceMask};

/// When and how an instance is split.
#[derive(Config, Debug, PartialEq)]
pub struct SplitConfig {
    /// A marker is a connected region of the mask where the normalized distance exceeds
    /// this (the map is 1 at a nucleus's centre, 0 at its edge).
    #[config(default = 0.5)]
    pub marker_threshold: f32,
    /// Markers smaller than this many pixels are ignored (noise on one nucleus's plateau).
    #[config(default = 12)]
    pub min_marker_area: u32,
}

impl SplitConfig {
    /// Checks the values.
    pub fn problem(&self) -> Option<String> {
        (!(self.marker_threshold > 0.0 && self.marker_threshold < 1.0)).then(|| {
            format!(
                "split: marker threshold {} must lie in (0, 1)",
                self.marker_threshold
            )
        })
    }
}

/// A map sampled every `stride` pixels (cell `(i, j)` covers pixels
/// `[stride·j, stride·(j+1)) × [stride·i, stride·(i+1))`), read at pixel centres by
/// bilinear interpolation.
#[derive(Debug, Clone, PartialEq)]
pub struct DistanceMap {
    /// Cells per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Pixels per cell side.
    pub stride: usize,
    /// Row-major values.
    pub values: Vec<f32>,
}

impl DistanceMap {
    /// The value at the centre of pixel `(x, y)`.
    pub fn at(&self, x: u32, y: u32) -> f32 {
        if self.width == 0 || self.height == 0 {
            return 0.0;
        }
        let s = self.stride as f32;
        let gx = ((x as f32 + 0.5) / s - 0.5).clamp(0.0, (self.width - 1) as f32);
        let gy = ((y as f32 + 0.5) / s - 0.5).clamp(0.0, (self.height - 1) as f32);
        let (x0, y0) = (gx.floor() as usize, gy.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(self.width - 1), (y0 + 1).min(self.height - 1));
        let (fx, fy) = (gx - x0 as f32, gy - y0 as f32);
        let v = |x: usize, y: usize| self.values[y * self.width + x];
        let top = v(x0, y0) * (1.0 - fx) + v(x1, y0) * fx;
        let bottom = v(x0, y1) * (1.0 - fx) + v(x1, y1) * fx;
        top * (1.0 - fy) + bottom * fy
    }
}

/// `instance` split into one instance per marker of `map` inside its mask (score and class
/// kept, box = the piece's tight box), or `instance` alone when the mask holds fewer than two
/// markers. Mask pixels no marker reaches through the mask are dropped.
pub fn split_touching(
    instance: &Instance,
    map: &DistanceMap,
    config: &SplitConfig,
) -> Vec<Instance> {
    let m = &instance.mask;
    let (w, h) = (m.width as usize, m.height as usize);
    if w == 0 || h == 0 {
        return vec![instance.clone()];
    }
    let distance = Array2::from_shape_fn((h, w), |(y, x)| map.at(m.x0 + x as u32, m.y0 + y as u32));
    let inside = Array2::from_shape_fn((h, w), |(y, x)| m.data[y * w + x]);
    let peaks: Vec<bool> = inside
        .iter()
        .zip(distance.iter())
        .map(|(&i, &d)| i && d > config.marker_threshold)
        .collect();
    let mut markers = connected_components(m.width, m.height, &peaks, Connectivity::Eight);
    let mut area = vec![0u32; markers.max_id() as usize + 1];
    for &id in markers.as_slice() {
        area[id as usize] += 1;
    }
    let mut kept = vec![0u32; area.len()];
    let mut n = 0;
    for id in 1..area.len() {
        if area[id] >= config.min_marker_area {
            n += 1;
            kept[id] = n;
        }
    }
    if n < 2 {
        return vec![instance.clone()];
    }
    for id in markers.as_mut_slice() {
        *id = kept[*id as usize];
    }
    let basins: LabelMap = watershed(&distance.mapv(|d| -d), &markers, &inside);
    let mut pixels: Vec<Vec<(u32, u32)>> = vec![Vec::new(); n as usize];
    for (i, &id) in basins.as_slice().iter().enumerate() {
        if id > 0 {
            pixels[id as usize - 1].push((m.x0 + (i % w) as u32, m.y0 + (i / w) as u32));
        }
    }
    pixels
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| Instance {
            score: instance.score,
            class_id: instance.class_id,
            ..Instance::from_mask(InstanceMask::from_pixels(p.iter().copied()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two discs of radius 8 whose edges touch, as one instance, and their true distance map.
    fn two_discs() -> (Instance, DistanceMap) {
        let (w, h) = (48u32, 24u32);
        let centres = [(14.0f32, 12.0f32), (30.0, 12.0)];
        let mut pixels = Vec::new();
        let mut values = vec![0.0f32; (w * h) as usize];
        for y in 0..h {
            for x in 0..w {
                let (px, py) = (x as f32, y as f32);
                for &(cx, cy) in &centres {
                    let r = ((px - cx).powi(2) + (py - cy).powi(2)).sqrt();
                    if r <= 8.0 {
                        pixels.push((x, y));
                        values[(y * w + x) as usize] = 1.0 - r / 8.0;
                    }
                }
            }
        }
        let map = DistanceMap {
            width: w as usize,
            height: h as usize,
            stride: 1,
            values,
        };
        (Instance::from_mask(InstanceMask::from_pixels(pixels)), map)
    }

    #[test]
    fn two_peaks_split_one_mask_into_two_halves() {
        let (merged, map) = two_discs();
        let pieces = split_touching(&merged, &map, &SplitConfig::new());
        assert_eq!(pieces.len(), 2);
        let total: u64 = pieces.iter().map(Instance::area).sum();
        assert_eq!(total, merged.area(), "every pixel goes to one piece");
        // Each piece is one disc (columns 6..=22 and 22..=38): the shared column 22 goes to
        // one of them.
        let mut spans: Vec<[u32; 4]> = pieces
            .iter()
            .map(|p| p.mask.tight_bbox().unwrap())
            .collect();
        spans.sort_by_key(|b| b[0]);
        assert_eq!((spans[0][0], spans[1][2]), (6, 39), "{spans:?}");
        assert!(
            spans[0][2] == spans[1][0] && (22..=23).contains(&spans[0][2]),
            "{spans:?}"
        );
        assert!(pieces.iter().all(|p| p.score == merged.score));
    }

    #[test]
    fn one_peak_or_small_peaks_leave_the_instance_whole() {
        let (merged, mut map) = two_discs();
        // Above any threshold only around the left centre: one marker.
        for (i, v) in map.values.iter_mut().enumerate() {
            if i % map.width > 22 {
                *v *= 0.4;
            }
        }
        assert_eq!(
            split_touching(&merged, &map, &SplitConfig::new()),
            vec![merged.clone()]
        );
        // Both peaks, but each smaller than the minimum marker.
        let (merged, map) = two_discs();
        let strict = SplitConfig::new().with_min_marker_area(400);
        assert_eq!(split_touching(&merged, &map, &strict), vec![merged]);
    }

    #[test]
    fn a_coarse_map_is_read_between_its_cells() {
        let map = DistanceMap {
            width: 2,
            height: 1,
            stride: 2,
            values: vec![0.0, 1.0],
        };
        // Pixel centres 0.5..3.5 map to cells -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
        let row: Vec<f32> = (0..4).map(|x| map.at(x, 0)).collect();
        assert_eq!(row, vec![0.0, 0.25, 0.75, 1.0]);
    }
}
