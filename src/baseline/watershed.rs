//! Marker-controlled watershed (Meyer's flooding algorithm) and seed detection.

use ndarray::Array2;

use crate::data::{connected_components, Connectivity, LabelMap};

/// Moved to [`crate::data`] (the model's splitting uses it too); re-exported here.
pub use crate::data::watershed;

/// Seeds for splitting touching nuclei: the regional maxima of `distance` that are the
/// maximum of their `(2r + 1)²` window and at least `min_value`; adjacent maximum pixels
/// (8-connected plateaus) form one seed. Returns the seeds as a label map.
pub fn peak_seeds(distance: &Array2<f32>, radius: usize, min_value: f32) -> LabelMap {
    let (h, w) = distance.dim();
    let window_max = max_filter(distance, radius);
    let peaks: Vec<bool> = distance
        .iter()
        .zip(window_max.iter())
        .map(|(&d, &m)| d >= min_value && d >= m)
        .collect();
    connected_components(w as u32, h as u32, &peaks, Connectivity::Eight)
}

/// Maximum over the `(2r + 1)²` window around each pixel (separable, clipped at borders).
fn max_filter(plane: &Array2<f32>, r: usize) -> Array2<f32> {
    let (h, w) = plane.dim();
    let mut rows = Array2::<f32>::zeros((h, w));
    for y in 0..h {
        for x in 0..w {
            let (a, b) = (x.saturating_sub(r), (x + r).min(w - 1));
            rows[[y, x]] = (a..=b)
                .map(|xx| plane[[y, xx]])
                .fold(f32::NEG_INFINITY, f32::max);
        }
    }
    let mut out = Array2::<f32>::zeros((h, w));
    for y in 0..h {
        let (a, b) = (y.saturating_sub(r), (y + r).min(h - 1));
        for x in 0..w {
            out[[y, x]] = (a..=b)
                .map(|yy| rows[[yy, x]])
                .fold(f32::NEG_INFINITY, f32::max);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::filters::distance_transform;

    #[test]
    fn splits_two_touching_disks() {
        // Two overlapping disks of radius 8 centred 14 px apart.
        let (h, w) = (24, 40);
        let disk = |x: usize, y: usize, cx: f32| {
            ((x as f32 - cx).powi(2) + (y as f32 - 12.0).powi(2)).sqrt() <= 8.0
        };
        let mask = Array2::from_shape_fn((h, w), |(y, x)| disk(x, y, 12.0) || disk(x, y, 26.0));
        let dist = distance_transform(&mask, true);
        let seeds = peak_seeds(&dist, 4, 2.0);
        assert_eq!(seeds.count(), 2);
        let elevation = dist.mapv(|d| -d);
        let labels = watershed(&elevation, &seeds, &mask);
        assert_eq!(labels.count(), 2);
        // Every masked pixel is labelled, and the split is at the neck (x = 19).
        for y in 0..h {
            for x in 0..w {
                assert_eq!(labels.get(x as u32, y as u32) != 0, mask[[y, x]]);
            }
        }
        assert_ne!(labels.get(12, 12), labels.get(26, 12));
        assert_eq!(labels.get(17, 12), labels.get(12, 12));
        assert_eq!(labels.get(21, 12), labels.get(26, 12));
    }
}
