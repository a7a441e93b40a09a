//! Pasting a predicted `M × M` mask into the image (Mask R-CNN, Sec. 3: "the m×m floating
//! number mask output is then resized to the RoI size, and binarized at a threshold of 0.5").

use super::box_ops::BoxXyxy;
use crate::instances::InstanceMask;

/// Resizes mask probabilities `probs` (`m × m`, row-major) to the box `b` by bilinear
/// interpolation (mask pixel `i` centred at `x1 + (i + 0.5) · w / m`; beyond the mask's
/// border the probability falls to 0 within one mask pixel, as with torchvision's one-pixel
/// zero padding) and keeps the image pixels whose centre reaches `threshold`, clipped to a
/// `width × height` image.
pub fn paste_mask(
    probs: &[f32],
    m: usize,
    b: &BoxXyxy,
    (width, height): (u32, u32),
    threshold: f32,
) -> InstanceMask {
    assert_eq!(probs.len(), m * m, "mask must be m × m");
    let (bw, bh) = ((b[2] - b[0]).max(1e-3), (b[3] - b[1]).max(1e-3));
    let x0 = b[0].floor().max(0.0) as u32;
    let y0 = b[1].floor().max(0.0) as u32;
    let x1 = (b[2].ceil().max(0.0) as u32).min(width);
    let y1 = (b[3].ceil().max(0.0) as u32).min(height);
    let at = |i: isize, j: isize| -> f32 {
        if i < 0 || j < 0 || i >= m as isize || j >= m as isize {
            0.0
        } else {
            probs[i as usize * m + j as usize]
        }
    };
    let mut pixels = Vec::new();
    for y in y0..y1 {
        let v = (y as f32 + 0.5 - b[1]) / bh * m as f32 - 0.5;
        if v <= -1.0 || v >= m as f32 {
            continue;
        }
        let (i0, fy) = (v.floor() as isize, v - v.floor());
        for x in x0..x1 {
            let u = (x as f32 + 0.5 - b[0]) / bw * m as f32 - 0.5;
            if u <= -1.0 || u >= m as f32 {
                continue;
            }
            let (j0, fx) = (u.floor() as isize, u - u.floor());
            let p = (1.0 - fy) * ((1.0 - fx) * at(i0, j0) + fx * at(i0, j0 + 1))
                + fy * ((1.0 - fx) * at(i0 + 1, j0) + fx * at(i0 + 1, j0 + 1));
            if p >= threshold {
                pixels.push((x, y));
            }
        }
    }
    InstanceMask::from_pixels(pixels)
}

/// The *maskness* of mask probabilities `probs`: their mean over the pixels that reach
/// `threshold` (SOLOv2, Wang et al. 2020: `Σ pᵢ · [pᵢ ≥ t] / Σ [pᵢ ≥ t]`, the confidence of
/// the kept pixels), in `[threshold, 1]`; 0 when no pixel reaches it.
pub fn maskness(probs: &[f32], threshold: f32) -> f32 {
    let (sum, count) = probs
        .iter()
        .filter(|&&p| p >= threshold)
        .fold((0.0f32, 0usize), |(s, n), &p| (s + p, n + 1));
    if count == 0 {
        0.0
    } else {
        sum / count as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maskness_is_the_mean_of_the_kept_probabilities() {
        assert!((maskness(&[0.9, 0.7, 0.2, 0.1], 0.5) - 0.8).abs() < 1e-6);
        assert_eq!(maskness(&[1.0; 16], 0.5), 1.0);
        assert_eq!(maskness(&[0.49, 0.3], 0.5), 0.0);
        // The threshold counts as kept, as in `paste_mask`.
        assert_eq!(maskness(&[0.5, 0.1], 0.5), 0.5);
    }

    #[test]
    fn full_mask_fills_its_box_and_clips() {
        let ones = vec![1.0f32; 28 * 28];
        let m = paste_mask(&ones, 28, &[2.0, 3.0, 12.0, 9.0], (100, 100), 0.5);
        assert_eq!(m.area(), 10 * 6);
        assert_eq!(m.tight_bbox(), Some([2, 3, 12, 9]));
        let clipped = paste_mask(&ones, 28, &[-4.0, 95.0, 6.0, 110.0], (100, 100), 0.5);
        assert_eq!(clipped.tight_bbox(), Some([0, 95, 6, 100]));
    }

    #[test]
    fn disk_mask_pastes_to_a_disk() {
        let m = 28;
        let probs: Vec<f32> = (0..m * m)
            .map(|k| {
                let (i, j) = ((k / m) as f32 + 0.5 - 14.0, (k % m) as f32 + 0.5 - 14.0);
                if i * i + j * j <= 14.0 * 14.0 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let mask = paste_mask(&probs, m, &[10.0, 10.0, 30.0, 30.0], (64, 64), 0.5);
        // Area of a radius-10 disk ≈ 314.
        assert!((mask.area() as f32 - 314.0).abs() < 20.0, "{}", mask.area());
        assert!(mask.contains(20, 20) && !mask.contains(10, 10));
    }
}
