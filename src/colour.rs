//! Optical density and colour deconvolution: the colour science every part of nucseg
//! shares (stain normalization, the classical baseline, stain augmentation, measurements).
//!
//! Beer–Lambert: the optical density of channel `c`, `OD_c = -log(I_c / I_0)` with `I_0 =
//! 255` the background (white) intensity of an 8-bit image, is linear in the stain
//! concentrations. Two bases are in use in the literature and here, each where its source
//! defines it:
//! - natural log, f32 ([`optical_density`], [`intensity`]): Macenko et al. (2009) and the
//!   HSD space of van der Laak et al. (2000) that DCGMM works in;
//! - base 10, f64 ([`optical_density_log10`]): Ruifrok & Johnston's colour deconvolution
//!   (Anal. Quant. Cytol. Histol. 23(4), 2001), where `OD = C · M` with one unit stain vector
//!   per row of `M`; inverting `M` separates haematoxylin (nuclei) from eosin (cytoplasm,
//!   stroma).
//!
//! A zero intensity (saturated black) is read as 1 so that every density is finite.
//!
//! Also here: [`bilinear_rgb`], the one bilinear blend of 8-bit pixels that resampling
//! shares (a slide read off its level's scale, the zoom augmentation of training crops).

use std::sync::OnceLock;

use image::RgbImage;
use ndarray::Array2;

/// Bilinear blend of four neighbouring RGB pixels, `a` at `(x0, y0)`, `b` at `(x0 + 1, y0)`,
/// `c` at `(x0, y0 + 1)`, `d` at `(x0 + 1, y0 + 1)`, at fractional offsets `tx, ty ∈ [0, 1)`:
/// `(a(1 − tx) + b·tx)(1 − ty) + (c(1 − tx) + d·tx)·ty` per channel, rounded.
#[inline]
pub fn bilinear_rgb(
    a: [u8; 3],
    b: [u8; 3],
    c: [u8; 3],
    d: [u8; 3],
    tx: f64,
    ty: f64,
) -> image::Rgb<u8> {
    image::Rgb(std::array::from_fn(|k| {
        let top = a[k] as f64 * (1.0 - tx) + b[k] as f64 * tx;
        let bottom = c[k] as f64 * (1.0 - tx) + d[k] as f64 * tx;
        (top * (1.0 - ty) + bottom * ty).round().clamp(0.0, 255.0) as u8
    }))
}

/// Ruifrok & Johnston's H&E-DAB stain vectors (rows: haematoxylin, eosin, DAB), the
/// matrix `rgb_from_hed` of scikit-image.
pub const RUIFROK_HED: [[f64; 3]; 3] = [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]];

/// Background (white) intensity `I_0` of 8-bit images.
pub const BACKGROUND_INTENSITY: f64 = 255.0;

/// Optical density `-ln(max(I, 1) / 255)` of one 8-bit sample: 0 for white, `ln 255 ≈ 5.54`
/// for black.
#[inline]
pub fn optical_density(intensity: u8) -> f32 {
    static LUT: OnceLock<[f32; 256]> = OnceLock::new();
    LUT.get_or_init(|| {
        let mut lut = [0.0; 256];
        for (i, v) in lut.iter_mut().enumerate() {
            *v = -((i.max(1) as f64) / BACKGROUND_INTENSITY).ln() as f32;
        }
        lut
    })[intensity as usize]
}

/// The intensity `I_0 · exp(-OD)` of a natural-log optical density, rounded and clamped to
/// `0..=255` (a negative density, which no real stain produces, saturates at white).
#[inline]
pub fn intensity(od: f32) -> u8 {
    (BACKGROUND_INTENSITY as f32 * (-od).exp())
        .round()
        .clamp(0.0, 255.0) as u8
}

/// Ruifrok & Johnston's base-10 optical density of one 8-bit sample,
/// `-log10(max(I, 1) / 255)`: 0 for white, about 2.4 at the darkest value.
#[inline]
pub fn optical_density_log10(intensity: u8) -> f64 {
    -((intensity.max(1) as f64) / BACKGROUND_INTENSITY).log10()
}

/// The 3×3 inverse of a stain matrix (rows = stain vectors), by cofactors.
///
/// # Panics
/// If the matrix is singular (two stain vectors collinear).
pub fn invert3(m: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let c =
        |r0: usize, r1: usize, c0: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    let det = m[0][0] * c(1, 2, 1, 2) - m[0][1] * c(1, 2, 0, 2) + m[0][2] * c(1, 2, 0, 1);
    assert!(det.abs() > 1e-12, "stain matrix is singular");
    let cof = [
        [c(1, 2, 1, 2), -c(1, 2, 0, 2), c(1, 2, 0, 1)],
        [-c(0, 2, 1, 2), c(0, 2, 0, 2), -c(0, 2, 0, 1)],
        [c(0, 1, 1, 2), -c(0, 1, 0, 2), c(0, 1, 0, 1)],
    ];
    let mut inv = [[0.0; 3]; 3];
    for (i, row) in inv.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = cof[j][i] / det;
        }
    }
    inv
}

/// Per-pixel stain concentrations `C = OD · M⁻¹` for the stain matrix `stains` (rows =
/// stain vectors); returns one `[height, width]` plane per stain, negative values clamped
/// to 0.
pub fn deconvolve(image: &RgbImage, stains: &[[f64; 3]; 3]) -> [Array2<f32>; 3] {
    let inv = invert3(stains);
    let (w, h) = (image.width() as usize, image.height() as usize);
    let mut out = [
        Array2::zeros((h, w)),
        Array2::zeros((h, w)),
        Array2::zeros((h, w)),
    ];
    let lut: Vec<f64> = (0..=255u8).map(optical_density_log10).collect();
    for (x, y, p) in image.enumerate_pixels() {
        let od = [lut[p[0] as usize], lut[p[1] as usize], lut[p[2] as usize]];
        for (k, plane) in out.iter_mut().enumerate() {
            let c = od[0] * inv[0][k] + od[1] * inv[1][k] + od[2] * inv[2][k];
            plane[[y as usize, x as usize]] = c.max(0.0) as f32;
        }
    }
    out
}

/// The haematoxylin concentration plane of an H&E image (Ruifrok & Johnston vectors).
pub fn haematoxylin(image: &RgbImage) -> Array2<f32> {
    let [h, _, _] = deconvolve(image, &RUIFROK_HED);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_is_an_inverse() {
        let inv = invert3(&RUIFROK_HED);
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|k| RUIFROK_HED[i][k] * inv[k][j]).sum();
                assert!((v - (i == j) as u8 as f64).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn pure_haematoxylin_pixel_separates() {
        // Synthesize a pixel of 0.8 units of haematoxylin only: I = 255 * 10^(-0.8 * h).
        let px: Vec<u8> = RUIFROK_HED[0]
            .iter()
            .map(|&v| (255.0 * 10f64.powf(-0.8 * v)).round() as u8)
            .collect();
        let img = RgbImage::from_pixel(1, 1, image::Rgb([px[0], px[1], px[2]]));
        let [h, e, d] = deconvolve(&img, &RUIFROK_HED);
        assert!((h[[0, 0]] - 0.8).abs() < 0.01, "{}", h[[0, 0]]);
        assert!(e[[0, 0]] < 0.01 && d[[0, 0]] < 0.01);
        // White has no stain at all.
        let white = RgbImage::from_pixel(1, 1, image::Rgb([255, 255, 255]));
        assert_eq!(haematoxylin(&white)[[0, 0]], 0.0);
    }
}
