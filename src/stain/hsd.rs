//! Optical density and the hue-saturation-density (HSD) colour space of van der Laak et al.
//! (Cytometry 39(4), 2000), the space in which Zanjani et al. (2018) fit their mixture.
//!
//! Beer–Lambert: the optical density of channel `c` is `OD_c = -ln(I_c / I_0)` with
//! `I_0 = 255` the background (white) intensity of an 8-bit image. HSD separates the amount
//! of stain from its colour (Zanjani et al. 2018, Sec. 2.1):
//!
//! ```text
//! D  = (OD_r + OD_g + OD_b) / 3           density
//! cx = OD_r / D - 1                       chromaticity (x)
//! cy = (OD_g - OD_b) / (√3 · D)           chromaticity (y)
//! ```
//!
//! and back: `OD_r = D (cx + 1)`, `OD_g = D/2 (2 - cx + √3 cy)`, `OD_b = D/2 (2 - cx - √3 cy)`.
//!
//! **White (D → 0).** Pure white has no chromaticity; it is mapped to `cx = cy = 0` (the
//! achromatic point) instead of `0/0`, so no NaN ever leaves this module, and the inverse
//! still gives white because every OD is `D · (…) = 0`. A zero intensity (saturated black)
//! is read as 1 to keep `ln` finite, which is the only lossy step: the round trip
//! RGB → HSD → RGB is exact to rounding for every other colour.
//!
//! Channel order of HSD tensors and arrays: `[D, cx, cy]` (the order of Zanjani et al.'s
//! code), see [`D`], [`CX`], [`CY`].

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;

use crate::colour::{intensity, optical_density};

/// Index of the density channel in HSD arrays and tensors.
pub const D: usize = 0;
/// Index of the `cx` chromaticity channel.
pub const CX: usize = 1;
/// Index of the `cy` chromaticity channel.
pub const CY: usize = 2;

/// Densities below this are treated as white (chromaticity set to the achromatic point).
/// The smallest non-zero density of an 8-bit pixel is `ln(255/254)/3 ≈ 1.3e-3`.
pub const D_MIN: f32 = 1e-6;

const SQRT3: f32 = 1.732_050_8;

/// HSD `[D, cx, cy]` of an optical-density triple `[OD_r, OD_g, OD_b]`.
#[inline]
pub fn od_to_hsd(od: [f32; 3]) -> [f32; 3] {
    let d = (od[0] + od[1] + od[2]) / 3.0;
    if d < D_MIN {
        return [d.max(0.0), 0.0, 0.0];
    }
    [d, od[0] / d - 1.0, (od[1] - od[2]) / (SQRT3 * d)]
}

/// Optical densities `[OD_r, OD_g, OD_b]` of an HSD triple `[D, cx, cy]`.
#[inline]
pub fn hsd_to_od(hsd: [f32; 3]) -> [f32; 3] {
    let [d, cx, cy] = hsd;
    [
        d * (cx + 1.0),
        0.5 * d * (2.0 - cx + SQRT3 * cy),
        0.5 * d * (2.0 - cx - SQRT3 * cy),
    ]
}

/// HSD `[D, cx, cy]` of an 8-bit RGB colour.
#[inline]
pub fn rgb_to_hsd(rgb: [u8; 3]) -> [f32; 3] {
    od_to_hsd(rgb.map(optical_density))
}

/// The 8-bit RGB colour of an HSD triple (rounded, clamped; see [`intensity`]).
#[inline]
pub fn hsd_to_rgb(hsd: [f32; 3]) -> [u8; 3] {
    hsd_to_od(hsd).map(intensity)
}

/// Projects an HSD triple onto the set of physically possible colours: `D ≥ 0` and the
/// chromaticity triangle where every optical density is non-negative (`cx ∈ [-1, 2]`,
/// `|√3 cy| ≤ 2 - cx`). Zanjani et al.'s reference code clamps `cx` to `[-1, 2]` after the
/// transform; this also bounds `cy`.
#[inline]
pub fn clamp_to_gamut(hsd: [f32; 3]) -> [f32; 3] {
    let d = if hsd[D].is_finite() {
        hsd[D].max(0.0)
    } else {
        0.0
    };
    let cx = if hsd[CX].is_finite() {
        hsd[CX].clamp(-1.0, 2.0)
    } else {
        0.0
    };
    let cy_max = (2.0 - cx) / SQRT3;
    let cy = if hsd[CY].is_finite() {
        hsd[CY].clamp(-cy_max, cy_max)
    } else {
        0.0
    };
    [d, cx, cy]
}

/// The HSD planes of an image: a `Vec` of `3 · height · width` values, planar
/// (`[D plane, cx plane, cy plane]`, each row-major).
pub fn image_to_hsd(image: &RgbImage) -> Vec<f32> {
    let n = (image.width() * image.height()) as usize;
    let mut out = vec![0.0; 3 * n];
    for (i, p) in image.pixels().enumerate() {
        let h = rgb_to_hsd(p.0);
        out[i] = h[D];
        out[n + i] = h[CX];
        out[2 * n + i] = h[CY];
    }
    out
}

/// A batch of equally sized images as an HSD tensor.
///
/// # Shapes
/// - output: `[batch, 3, height, width]`, channels `[D, cx, cy]`
///
/// # Panics
/// If the images differ in size or `images` is empty (callers crop first).
pub fn hsd_tensor(images: &[RgbImage], device: &Device) -> Tensor<4> {
    assert!(!images.is_empty(), "hsd_tensor needs at least one image");
    let (w, h) = images[0].dimensions();
    let mut data = Vec::with_capacity(images.len() * 3 * (w * h) as usize);
    for image in images {
        assert_eq!(
            image.dimensions(),
            (w, h),
            "hsd_tensor: images differ in size"
        );
        data.extend(image_to_hsd(image));
    }
    Tensor::from_data(
        TensorData::new(data, [images.len(), 3, h as usize, w as usize]),
        device,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(rgb_to_hsd([255, 255, 255]), [0.0, 0.0, 0.0]);
        assert_eq!(hsd_to_rgb([0.0, 0.0, 0.0]), [255, 255, 255]);
        // Grey: equal densities, achromatic.
        let g = rgb_to_hsd([100, 100, 100]);
        assert!((g[D] - (255.0f32 / 100.0).ln()).abs() < 1e-6);
        assert!(g[CX].abs() < 1e-6 && g[CY].abs() < 1e-6);
        // Pure red absorption only: OD = (a, 0, 0) → D = a/3, cx = 2, cy = 0.
        let r = od_to_hsd([0.9, 0.0, 0.0]);
        assert!((r[D] - 0.3).abs() < 1e-6 && (r[CX] - 2.0).abs() < 1e-6 && r[CY].abs() < 1e-6);
        // Black is clamped to intensity 1, not NaN or infinite.
        let b = rgb_to_hsd([0, 0, 0]);
        assert!((b[D] - 255f32.ln()).abs() < 1e-5);
    }

    #[test]
    fn round_trip_every_grey_and_a_colour_grid() {
        // Away from saturation (channel value ≥ 1) the round trip is exact after rounding.
        for v in 1..=255u8 {
            assert_eq!(hsd_to_rgb(rgb_to_hsd([v, v, v])), [v, v, v]);
        }
        for r in (1..=255u8).step_by(7) {
            for g in (1..=255u8).step_by(11) {
                for b in (1..=255u8).step_by(5) {
                    let back = hsd_to_rgb(rgb_to_hsd([r, g, b]));
                    for c in 0..3 {
                        let d = (back[c] as i32 - [r, g, b][c] as i32).abs();
                        assert!(d <= 1, "{:?} → {:?}", [r, g, b], back);
                    }
                }
            }
        }
        // Near-white pixels (tiny D) are handled without NaN and still invert.
        for rgb in [[255, 255, 254], [254, 255, 255], [255, 254, 255]] {
            let h = rgb_to_hsd(rgb);
            assert!(h.iter().all(|v| v.is_finite()), "{h:?}");
            assert_eq!(hsd_to_rgb(h), rgb);
        }
    }

    #[test]
    fn gamut_clamp_keeps_od_non_negative() {
        for hsd in [
            [0.5, 3.0, 0.0],
            [0.5, -2.0, 4.0],
            [-1.0, 0.0, 0.0],
            [f32::NAN, 0.1, 0.0],
        ] {
            let c = clamp_to_gamut(hsd);
            let od = hsd_to_od(c);
            assert!(
                od.iter().all(|&v| v >= -1e-6 && v.is_finite()),
                "{hsd:?} → {od:?}"
            );
        }
        // A colour already in gamut is unchanged.
        let h = rgb_to_hsd([180, 90, 200]);
        assert_eq!(clamp_to_gamut(h), h);
    }

    #[test]
    fn tensor_layout_is_planar_d_cx_cy() {
        let img = RgbImage::from_fn(3, 2, |x, y| {
            image::Rgb([50 + 40 * x as u8, 100, 150 + 20 * y as u8])
        });
        let device = Device::default();
        let t = hsd_tensor(std::slice::from_ref(&img), &device);
        assert_eq!(t.dims(), [1, 3, 2, 3]);
        let v: Vec<f32> = t.try_into_vec_as::<f32>().unwrap();
        let p = img.get_pixel(2, 1).0;
        let h = rgb_to_hsd(p);
        let idx = 3 + 2; // row 1, column 2
        assert_eq!([v[idx], v[6 + idx], v[12 + idx]], h);
    }
}
