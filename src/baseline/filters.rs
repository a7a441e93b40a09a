//! Small image-processing kernels on `[height, width]` planes: Gaussian blur, Otsu
//! threshold, exact Euclidean distance transform, hole filling and small-object removal.

use ndarray::Array2;

use crate::data::{connected_components, Connectivity};

/// Moved to [`crate::data`] (the model's splitting uses it too); re-exported here.
pub use crate::data::distance_transform;

/// Separable Gaussian blur with standard deviation `sigma` (pixels), kernel radius
/// `ceil(3σ)`, borders mirrored. `sigma <= 0` returns a copy.
pub fn gaussian_blur(plane: &Array2<f32>, sigma: f32) -> Array2<f32> {
    if sigma <= 0.0 {
        return plane.clone();
    }
    let radius = (3.0 * sigma).ceil() as isize;
    let mut kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= sum);
    let (h, w) = plane.dim();
    let mirror = |i: isize, n: usize| -> usize {
        let n = n as isize;
        let mut i = i;
        if n == 1 {
            return 0;
        }
        loop {
            if i < 0 {
                i = -i - 1;
            } else if i >= n {
                i = 2 * n - i - 1;
            } else {
                return i as usize;
            }
        }
    };
    let mut tmp = Array2::<f32>::zeros((h, w));
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (k, &kv) in kernel.iter().enumerate() {
                acc += kv * plane[[y, mirror(x as isize + k as isize - radius, w)]];
            }
            tmp[[y, x]] = acc;
        }
    }
    let mut out = Array2::<f32>::zeros((h, w));
    for y in 0..h {
        for (k, &kv) in kernel.iter().enumerate() {
            let yy = mirror(y as isize + k as isize - radius, h);
            for x in 0..w {
                out[[y, x]] += kv * tmp[[yy, x]];
            }
        }
    }
    out
}

/// Otsu's threshold (Otsu 1979): the value maximizing the between-class variance of a
/// 256-bin histogram spanning `[min, max]` of `values`. Pixels `> threshold` are the
/// upper class. Returns `None` when all values are equal.
pub fn otsu_threshold(values: &[f32]) -> Option<f32> {
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if hi <= lo {
        return None;
    }
    const BINS: usize = 256;
    let scale = (BINS - 1) as f32 / (hi - lo);
    let mut hist = [0u64; BINS];
    for &v in values.iter().filter(|v| v.is_finite()) {
        hist[((v - lo) * scale).round() as usize] += 1;
    }
    let total: u64 = hist.iter().sum();
    let sum_all: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &c)| i as f64 * c as f64)
        .sum();
    let (mut w0, mut sum0) = (0u64, 0.0f64);
    let (mut best, mut best_bin) = (-1.0f64, 0usize);
    for (i, &c) in hist.iter().enumerate().take(BINS - 1) {
        w0 += c;
        sum0 += i as f64 * c as f64;
        let w1 = total - w0;
        if w0 == 0 || w1 == 0 {
            continue;
        }
        let m0 = sum0 / w0 as f64;
        let m1 = (sum_all - sum0) / w1 as f64;
        let between = w0 as f64 * w1 as f64 * (m0 - m1) * (m0 - m1);
        if between > best {
            best = between;
            best_bin = i;
        }
    }
    // Threshold halfway between bin `best_bin` and the next.
    Some(lo + (best_bin as f32 + 0.5) / scale)
}

/// Fills background components that do not touch the border and are at most `max_area`.
pub fn fill_holes(mask: &mut Array2<bool>, max_area: u64) {
    let (h, w) = mask.dim();
    let background: Vec<bool> = mask.iter().map(|&m| !m).collect();
    let holes = connected_components(w as u32, h as u32, &background, Connectivity::Four);
    let mut touches_border = vec![false; holes.max_id() as usize + 1];
    for y in 0..h as u32 {
        for x in 0..w as u32 {
            if x == 0 || y == 0 || x + 1 == w as u32 || y + 1 == h as u32 {
                touches_border[holes.get(x, y) as usize] = true;
            }
        }
    }
    let mut area = vec![0u64; holes.max_id() as usize + 1];
    for &id in holes.as_slice() {
        area[id as usize] += 1;
    }
    for (m, &id) in mask.iter_mut().zip(holes.as_slice()) {
        if id != 0 && !touches_border[id as usize] && area[id as usize] <= max_area {
            *m = true;
        }
    }
}

/// Clears 8-connected foreground components smaller than `min_area`.
pub fn remove_small(mask: &mut Array2<bool>, min_area: u64) {
    let (h, w) = mask.dim();
    let fg: Vec<bool> = mask.iter().copied().collect();
    let comps = connected_components(w as u32, h as u32, &fg, Connectivity::Eight);
    let mut area = vec![0u64; comps.max_id() as usize + 1];
    for &id in comps.as_slice() {
        area[id as usize] += 1;
    }
    for (m, &id) in mask.iter_mut().zip(comps.as_slice()) {
        if id != 0 && area[id as usize] < min_area {
            *m = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_transform_matches_brute_force() {
        let (h, w) = (13, 17);
        let mask = Array2::from_shape_fn((h, w), |(y, x)| ((x * 7 + y * 3) % 11 != 0) && x > 1);
        for border in [false, true] {
            let dt = distance_transform(&mask, border);
            for y in 0..h {
                for x in 0..w {
                    let mut best = f64::INFINITY;
                    for yy in -1..=h as isize {
                        for xx in -1..=w as isize {
                            let inside =
                                yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w;
                            let bg = if inside {
                                !mask[[yy as usize, xx as usize]]
                            } else {
                                border
                            };
                            if bg {
                                let d =
                                    ((yy - y as isize).pow(2) + (xx - x as isize).pow(2)) as f64;
                                best = best.min(d.sqrt());
                            }
                        }
                    }
                    let expect = if mask[[y, x]] { best } else { 0.0 };
                    assert!(
                        (dt[[y, x]] as f64 - expect).abs() < 1e-5,
                        "({x},{y}) {} vs {expect}",
                        dt[[y, x]]
                    );
                }
            }
        }
    }

    #[test]
    fn otsu_splits_two_modes() {
        let mut v: Vec<f32> = (0..100).map(|i| 0.1 + (i % 5) as f32 * 0.01).collect();
        v.extend((0..50).map(|i| 0.8 + (i % 5) as f32 * 0.01));
        let t = otsu_threshold(&v).unwrap();
        assert!(
            v[..100].iter().all(|&x| x <= t) && v[100..].iter().all(|&x| x > t),
            "{t}"
        );
        assert_eq!(otsu_threshold(&[1.0, 1.0]), None);
    }

    #[test]
    fn blur_preserves_constants_and_mass() {
        let c = Array2::from_elem((5, 9), 2.5f32);
        let b = gaussian_blur(&c, 1.5);
        assert!(b.iter().all(|v| (v - 2.5).abs() < 1e-5));
        let mut delta = Array2::<f32>::zeros((21, 21));
        delta[[10, 10]] = 1.0;
        let b = gaussian_blur(&delta, 2.0);
        assert!((b.sum() - 1.0).abs() < 1e-4);
        assert!(b[[10, 10]] > b[[10, 12]] && b[[10, 12]] > b[[10, 14]]);
    }
}
