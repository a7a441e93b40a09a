//! Two morphological kernels shared by the classical baseline, the model's splitting of
//! touching nuclei and its training targets: the exact Euclidean distance transform and
//! marker-controlled watershed.

use std::{cmp::Reverse, collections::BinaryHeap};

use ndarray::Array2;

use super::LabelMap;

/// Exact Euclidean distance from every foreground pixel to the nearest background pixel
/// (0 on background), by the separable lower-envelope algorithm of Felzenszwalb &
/// Huttenlocher (Theory of Computing 8, 2012). Pixels beyond the border count as
/// background only if `border_is_background`.
pub fn distance_transform(mask: &Array2<bool>, border_is_background: bool) -> Array2<f32> {
    let (h, w) = mask.dim();
    const INF: f64 = 1e20;
    // Squared distances, columns first then rows.
    let mut f = vec![0.0f64; h.max(w) + 2];
    let mut d = vec![0.0f64; h.max(w) + 2];
    let mut v = vec![0usize; h.max(w) + 2];
    let mut z = vec![0.0f64; h.max(w) + 3];
    let mut sq = Array2::<f64>::zeros((h, w));
    let pad = border_is_background as usize;
    for x in 0..w {
        // Padded column: index 0 and n+1 are background when the border counts.
        let n = h + 2 * pad;
        for i in 0..n {
            f[i] = if pad == 1 && (i == 0 || i == n - 1) {
                0.0
            } else if mask[[i - pad, x]] {
                INF
            } else {
                0.0
            };
        }
        dt1d(&f[..n], &mut d[..n], &mut v, &mut z);
        for y in 0..h {
            sq[[y, x]] = d[y + pad];
        }
    }
    let mut out = Array2::<f32>::zeros((h, w));
    for y in 0..h {
        let n = w + 2 * pad;
        for i in 0..n {
            f[i] = if pad == 1 && (i == 0 || i == n - 1) {
                0.0
            } else {
                sq[[y, i - pad]]
            };
        }
        dt1d(&f[..n], &mut d[..n], &mut v, &mut z);
        for x in 0..w {
            out[[y, x]] = if mask[[y, x]] {
                d[x + pad].sqrt() as f32
            } else {
                0.0
            };
        }
    }
    out
}

/// 1-D squared distance transform of sampled function `f` (lower envelope of parabolas).
fn dt1d(f: &[f64], d: &mut [f64], v: &mut [usize], z: &mut [f64]) {
    let n = f.len();
    if n == 0 {
        return;
    }
    let parabola_cut = |q: usize, p: usize| {
        ((f[q] + (q * q) as f64) - (f[p] + (p * p) as f64)) / (2.0 * q as f64 - 2.0 * p as f64)
    };
    let mut k = 0usize;
    v[0] = 0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in 1..n {
        let mut s = parabola_cut(q, v[k]);
        while s <= z[k] {
            k -= 1;
            s = parabola_cut(q, v[k]);
        }
        k += 1;
        v[k] = q;
        z[k] = s;
        z[k + 1] = f64::INFINITY;
    }
    k = 0;
    for (q, dq) in d.iter_mut().enumerate().take(n) {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let p = v[k];
        *dq = (q as f64 - p as f64).powi(2) + f[p];
    }
}

/// Floods `elevation` from the labelled `markers` (non-zero ids), in order of increasing
/// elevation, within `mask`: every masked pixel reachable from a marker through masked
/// 4-neighbours gets the id of the basin that reaches it first. Equal elevations are
/// processed first-in first-out, which splits plateaus evenly between basins.
/// Unreached masked pixels stay 0.
pub fn watershed(elevation: &Array2<f32>, markers: &LabelMap, mask: &Array2<bool>) -> LabelMap {
    let (h, w) = elevation.dim();
    assert_eq!(
        (markers.width() as usize, markers.height() as usize),
        (w, h)
    );
    assert_eq!(mask.dim(), (h, w));
    let mut labels = markers.clone();
    let out = labels.as_mut_slice();
    // Order-preserving map of f32 to u32 so the heap can use integer keys.
    let key = |v: f32| -> u32 {
        let b = v.to_bits();
        if b >> 31 == 1 {
            !b
        } else {
            b | 0x8000_0000
        }
    };
    let mut heap: BinaryHeap<Reverse<(u32, u64, u32)>> = BinaryHeap::new();
    let mut age = 0u64;
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if out[i] != 0 {
                heap.push(Reverse((key(elevation[[y, x]]), age, i as u32)));
                age += 1;
            }
        }
    }
    while let Some(Reverse((_, _, i))) = heap.pop() {
        let i = i as usize;
        let (x, y) = (i % w, i / w);
        let id = out[i];
        let neighbours = [
            (x > 0).then(|| i - 1),
            (x + 1 < w).then(|| i + 1),
            (y > 0).then(|| i - w),
            (y + 1 < h).then(|| i + w),
        ];
        for n in neighbours.into_iter().flatten() {
            let (nx, ny) = (n % w, n / w);
            if out[n] == 0 && mask[[ny, nx]] {
                out[n] = id;
                heap.push(Reverse((key(elevation[[ny, nx]]), age, n as u32)));
                age += 1;
            }
        }
    }
    labels
}
