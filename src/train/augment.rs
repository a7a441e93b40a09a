//! Training-time augmentation: random crops (optionally rescaled and reaching past the
//! tissue onto synthetic glass), stain jitter, brightness/contrast and blur. (Pixel-exact
//! flips and rotations are [`crate::postprocess::Dihedral`].)

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
    let spec = CropSpec {
        size,
        scale: (1.0, 1.0),
        glass_margin: 0.0,
    };
    scaled_crop(image, labels, spec, rng)
}

/// How [`scaled_crop`] draws its window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropSpec {
    /// Side of the square output crop in pixels.
    pub size: u32,
    /// The zoom factor is drawn log-uniformly from `[scale.0, scale.1]` (output pixels per
    /// image pixel: 1.25 enlarges nuclei by 25 %).
    pub scale: (f32, f32),
    /// How far, as a fraction of the window's side, the window may reach past each edge of
    /// the image; the part outside is synthetic glass with no nuclei (0: inside only).
    pub glass_margin: f32,
}

/// A square crop of `image` and `labels` at a random position and zoom, resampled to
/// `spec.size` (image bilinear, labels nearest). Pixels that fall outside the image are a
/// near-white "glass" colour drawn per crop, with a little per-pixel noise, and background
/// labels: tiles at a tissue's edge look like that on a slide (`MODEL_CARD.md`,
/// limitations). With `scale = (1, 1)` and `glass_margin = 0` the pixels are copied
/// exactly, as [`random_crop`] does (whose white padding of small images it keeps).
pub fn scaled_crop(
    image: &RgbImage,
    labels: &LabelMap,
    spec: CropSpec,
    rng: &mut impl Rng,
) -> (RgbImage, LabelMap) {
    assert_eq!(
        image.dimensions(),
        labels.dimensions(),
        "image and labels must have the same size"
    );
    let (w, h) = image.dimensions();
    let (lo, hi) = (
        spec.scale.0.min(spec.scale.1),
        spec.scale.0.max(spec.scale.1),
    );
    let s = if hi > lo {
        rng.random_range(lo.ln()..=hi.ln()).exp()
    } else {
        lo
    };
    let src = (spec.size as f32 / s).round().max(1.0) as i64;
    let margin = (spec.glass_margin.max(0.0) * src as f32).round() as i64;
    // The window's first pixel: anywhere it lies inside the image (or covers it, when the
    // image is smaller), shifted by up to `margin` past either edge.
    fn pick(len: u32, src: i64, margin: i64, rng: &mut impl Rng) -> i64 {
        let slack = len as i64 - src;
        if slack < 0 && margin == 0 {
            return 0; // as `random_crop`: the image at the top left, padded
        }
        let (a, b) = (slack.min(0) - margin, slack.max(0) + margin);
        if b > a {
            rng.random_range(a..=b)
        } else {
            a
        }
    }
    let x0 = pick(w, src, margin, rng);
    let y0 = pick(h, src, margin, rng);
    let glass: [f32; 3] = if margin > 0 {
        let g = rng.random_range(225.0f32..=250.0);
        std::array::from_fn(|_| (g + rng.random_range(-5.0f32..=5.0)).min(255.0))
    } else {
        [255.0; 3]
    };
    let noise = margin > 0;
    let step = src as f32 / spec.size as f32;
    let mut out = RgbImage::new(spec.size, spec.size);
    let mut lab = LabelMap::new(spec.size, spec.size);
    let (wf, hf) = (w as f32, h as f32);
    for v in 0..spec.size {
        let sy = y0 as f32 + (v as f32 + 0.5) * step - 0.5;
        for u in 0..spec.size {
            let sx = x0 as f32 + (u as f32 + 0.5) * step - 0.5;
            let inside = sx > -0.5 && sy > -0.5 && sx < wf - 0.5 && sy < hf - 0.5;
            if !inside {
                let mut p = glass;
                if noise {
                    let n = rng.random_range(-3.0f32..=3.0);
                    p.iter_mut().for_each(|c| *c = (*c + n).clamp(0.0, 255.0));
                }
                out.put_pixel(u, v, image::Rgb(p.map(|c| c.round() as u8)));
                continue;
            }
            let (nx, ny) = (sx.round() as u32, sy.round() as u32);
            lab.set(u, v, labels.get(nx.min(w - 1), ny.min(h - 1)));
            out.put_pixel(u, v, bilinear(image, sx, sy));
        }
    }
    (out, lab)
}

/// The colour at a sub-pixel position (clamped to the image).
fn bilinear(image: &RgbImage, x: f32, y: f32) -> image::Rgb<u8> {
    let (w, h) = image.dimensions();
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let (xa, ya) = (x.floor() as u32, y.floor() as u32);
    let (xb, yb) = ((xa + 1).min(w - 1), (ya + 1).min(h - 1));
    let px = |x, y| image.get_pixel(x, y).0;
    crate::colour::bilinear_rgb(
        px(xa, ya),
        px(xb, ya),
        px(xa, yb),
        px(xb, yb),
        f64::from(x - xa as f32),
        f64::from(y - ya as f32),
    )
}

/// Brightness and contrast jitter: `I' = (I − 128)·c + 128 + b` with `c ~ U(1 − σ, 1 + σ)`
/// and `b ~ U(−64σ, 64σ)`, the same for the three channels. `σ = 0` changes nothing.
pub fn brightness_contrast(image: &mut RgbImage, sigma: f32, rng: &mut impl Rng) {
    if sigma <= 0.0 {
        return;
    }
    let c = rng.random_range(1.0 - sigma..=1.0 + sigma);
    let b = rng.random_range(-64.0 * sigma..=64.0 * sigma);
    let lut: Vec<u8> = (0..=255u8)
        .map(|v| {
            ((f32::from(v) - 128.0) * c + 128.0 + b)
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect();
    for p in image.pixels_mut() {
        p.0 = p.0.map(|v| lut[v as usize]);
    }
}

/// With probability `probability`, a Gaussian blur of σ ~ U(0.5, 1.5) px: scanners'
/// focus varies across a slide.
pub fn random_blur(image: RgbImage, probability: f32, rng: &mut impl Rng) -> RgbImage {
    if probability <= 0.0 || rng.random::<f32>() >= probability {
        return image;
    }
    let sigma = rng.random_range(0.5f32..=1.5);
    image::imageops::blur(&image, sigma)
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
    fn scaled_crop_without_zoom_or_glass_copies_pixels() {
        let img = RgbImage::from_fn(50, 40, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let lab = LabelMap::from_fn(50, 40, |x, y| x * 100 + y);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let spec = CropSpec {
            size: 32,
            scale: (1.0, 1.0),
            glass_margin: 0.0,
        };
        for _ in 0..20 {
            let (c, l) = scaled_crop(&img, &lab, spec, &mut rng);
            for (x, y, p) in c.enumerate_pixels() {
                assert_eq!(p[2], 7);
                assert_eq!(l.get(x, y), p[0] as u32 * 100 + p[1] as u32);
            }
        }
    }

    #[test]
    fn scaled_crop_zooms_and_reaches_onto_glass() {
        // A 10-px-wide dark stripe every 40 px; labels mark the stripes.
        let img = RgbImage::from_fn(200, 200, |x, _| {
            if x % 40 < 10 {
                image::Rgb([60, 30, 120])
            } else {
                image::Rgb([200, 150, 190])
            }
        });
        let lab = LabelMap::from_fn(200, 200, |x, _| u32::from(x % 40 < 10) * (1 + x / 40));
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        // 2× zoom: a stripe is 20 output pixels wide.
        let spec = CropSpec {
            size: 64,
            scale: (2.0, 2.0),
            glass_margin: 0.0,
        };
        let (_, l) = scaled_crop(&img, &lab, spec, &mut rng);
        let row: Vec<u32> = (0..64).map(|x| l.get(x, 5)).collect();
        let mut runs = Vec::new();
        let mut start = 0;
        for x in 1..=64 {
            if x == 64 || row[x] != row[start] {
                if row[start] != 0 && start > 0 && x < 64 {
                    runs.push(x - start);
                }
                start = x;
            }
        }
        assert!(
            !runs.is_empty() && runs.iter().all(|&r| r == 20),
            "{runs:?}"
        );
        // Glass: with a margin of half the window, some crops reach outside; what lies
        // outside is near-white and unlabelled.
        let spec = CropSpec {
            size: 64,
            scale: (1.0, 1.0),
            glass_margin: 0.5,
        };
        let mut saw_glass = false;
        for _ in 0..20 {
            let (c, l) = scaled_crop(&img, &lab, spec, &mut rng);
            for (x, y, p) in c.enumerate_pixels() {
                if p.0.iter().all(|&v| v >= 215) {
                    saw_glass = true;
                    assert_eq!(l.get(x, y), 0);
                }
            }
        }
        assert!(saw_glass);
    }

    #[test]
    fn photometric_jitter_keeps_order_and_blur_smooths() {
        let mut img = RgbImage::from_fn(16, 16, |x, _| image::Rgb([(x * 16) as u8, 100, 50]));
        let before = img.clone();
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        brightness_contrast(&mut img, 0.0, &mut rng);
        assert_eq!(img, before);
        brightness_contrast(&mut img, 0.2, &mut rng);
        assert_ne!(img, before);
        // A monotone map: brighter stays brighter.
        for x in 1..16 {
            assert!(img.get_pixel(x, 0)[0] >= img.get_pixel(x - 1, 0)[0]);
        }
        let sharp = RgbImage::from_fn(16, 16, |x, _| {
            if x < 8 {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([255, 255, 255])
            }
        });
        let blurred = random_blur(sharp.clone(), 1.0, &mut rng);
        let p = blurred.get_pixel(7, 8)[0];
        assert!(p > 0 && p < 255, "{p}");
        assert_eq!(random_blur(sharp.clone(), 0.0, &mut rng), sharp);
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
