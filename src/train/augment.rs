//! Training-time augmentation: random crops and stain jitter. (Pixel-exact flips and
//! rotations are [`crate::postprocess::Dihedral`].)

use image::RgbImage;
use rand::Rng;

use crate::colour::{invert3, optical_density_log10, BACKGROUND_INTENSITY, RUIFROK_HED};
use crate::data::LabelMap;

/// A `size × size` crop of an image and its label map at a uniformly random position.
/// An image smaller than the crop is padded with white (and background labels).
pub fn random_crop(
    image: &RgbImage,
    labels: &LabelMap,
    size: u32,
    rng: &mut impl Rng,
) -> (RgbImage, LabelMap) {
    assert_eq!(
        image.dimensions(),
        labels.dimensions(),
        "image and labels must have the same size"
    );
    let (w, h) = image.dimensions();
    let x0 = if w > size {
        rng.random_range(0..=w - size)
    } else {
        0
    };
    let y0 = if h > size {
        rng.random_range(0..=h - size)
    } else {
        0
    };
    let crop = RgbImage::from_fn(size, size, |x, y| {
        if x0 + x < w && y0 + y < h {
            *image.get_pixel(x0 + x, y0 + y)
        } else {
            image::Rgb([255, 255, 255])
        }
    });
    let lab = LabelMap::from_fn(size, size, |x, y| {
        if x0 + x < w && y0 + y < h {
            labels.get(x0 + x, y0 + y)
        } else {
            0
        }
    });
    (crop, lab)
}

/// Stain augmentation in haematoxylin–eosin–DAB space (Tellez et al., "Whole-slide mitosis
/// detection in H&E breast histology using PHH3 as a reference to train distilled
/// stain-invariant convolutional networks", IEEE TMI 2018): each stain concentration is
/// scaled by `α ~ U(1 − σ, 1 + σ)` and shifted by `β ~ U(−σ, σ)` (σ = 0.05 is their
/// "HED-light"), then the image is recomposed. The shift is weighted by how stained the
/// pixel is (full at a total optical density of 0.3 and above), so that white background
/// stays white. `σ = 0` returns the image unchanged.
pub fn hed_jitter(image: &RgbImage, sigma: f32, rng: &mut impl Rng) -> RgbImage {
    if sigma <= 0.0 {
        return image.clone();
    }
    let alpha: [f64; 3] =
        std::array::from_fn(|_| rng.random_range(1.0 - sigma..=1.0 + sigma) as f64);
    let beta: [f64; 3] = std::array::from_fn(|_| rng.random_range(-sigma..=sigma) as f64);
    let m = RUIFROK_HED;
    let inv = invert3(&m);
    let lut: Vec<f64> = (0..=255u8).map(optical_density_log10).collect();
    let mut out = image.clone();
    for p in out.pixels_mut() {
        let od = [lut[p[0] as usize], lut[p[1] as usize], lut[p[2] as usize]];
        // Tissue weight: the shift β fades out on unstained background, which stays white.
        let tissue = ((od[0] + od[1] + od[2]) / 0.3).min(1.0);
        let mut c = [0.0f64; 3];
        for k in 0..3 {
            c[k] = od[0] * inv[0][k] + od[1] * inv[1][k] + od[2] * inv[2][k];
            c[k] = c[k] * alpha[k] + beta[k] * tissue;
        }
        for ch in 0..3 {
            let od_new = (c[0] * m[0][ch] + c[1] * m[1][ch] + c[2] * m[2][ch]).max(0.0);
            p[ch] = (BACKGROUND_INTENSITY * 10f64.powf(-od_new))
                .round()
                .clamp(0.0, 255.0) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn crop_stays_aligned_and_pads_small_images() {
        let img = RgbImage::from_fn(50, 40, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let lab = LabelMap::from_fn(50, 40, |x, y| x * 100 + y);
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let (c, l) = random_crop(&img, &lab, 32, &mut rng);
        for (x, y, p) in c.enumerate_pixels() {
            assert_eq!(l.get(x, y), p[0] as u32 * 100 + p[1] as u32);
        }
        let (c, l) = random_crop(&img, &lab, 64, &mut rng);
        assert_eq!(c.get_pixel(60, 10).0, [255, 255, 255]);
        assert_eq!(l.get(60, 10), 0);
        assert_eq!(l.get(49, 39), 49 * 100 + 39);
    }

    #[test]
    fn jitter_keeps_white_and_changes_stain() {
        let img = RgbImage::from_fn(8, 8, |x, _| {
            if x < 4 {
                image::Rgb([255, 255, 255])
            } else {
                image::Rgb([90, 50, 140])
            }
        });
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let same = hed_jitter(&img, 0.0, &mut rng);
        assert_eq!(same, img);
        let j = hed_jitter(&img, 0.2, &mut rng);
        assert_ne!(j, img);
        // Stained pixels stay plausible colours.
        let p = j.get_pixel(6, 6);
        assert!(p[0] < 200 && p[2] > 60, "{p:?}");
    }
}
