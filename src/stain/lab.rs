//! sRGB ↔ CIE L\*a\*b\* (D65 white), for the Reinhard normalizer.
//!
//! sRGB decoding and the RGB→XYZ matrix follow IEC 61966-2-1; XYZ→Lab follows CIE 15
//! (with `δ = 6/29`). `L` is in `[0, 100]`, `a`, `b` roughly in `[-128, 127]`.

use std::sync::OnceLock;

/// D65 reference white in XYZ (`Y = 1`).
pub const D65_WHITE: [f64; 3] = [0.950_47, 1.0, 1.088_83];

const RGB_TO_XYZ: [[f64; 3]; 3] = [
    [0.412_456_4, 0.357_576_1, 0.180_437_5],
    [0.212_672_9, 0.715_152_2, 0.072_175_0],
    [0.019_333_9, 0.119_192_0, 0.950_304_1],
];

const XYZ_TO_RGB: [[f64; 3]; 3] = [
    [3.240_454_2, -1.537_138_5, -0.498_531_4],
    [-0.969_266_0, 1.876_010_8, 0.041_556_0],
    [0.055_643_4, -0.204_025_9, 1.057_225_2],
];

const DELTA: f64 = 6.0 / 29.0;

/// Linear-light value of an 8-bit sRGB sample (IEC 61966-2-1 decoding).
#[inline]
pub fn srgb_to_linear(v: u8) -> f64 {
    static LUT: OnceLock<[f64; 256]> = OnceLock::new();
    LUT.get_or_init(|| {
        let mut lut = [0.0; 256];
        for (i, l) in lut.iter_mut().enumerate() {
            let c = i as f64 / 255.0;
            *l = if c <= 0.040_45 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            };
        }
        lut
    })[v as usize]
}

/// The 8-bit sRGB sample of a linear-light value (encoded, rounded, clamped).
#[inline]
pub fn linear_to_srgb(l: f64) -> u8 {
    let l = l.clamp(0.0, 1.0);
    let c = if l <= 0.003_130_8 {
        12.92 * l
    } else {
        1.055 * l.powf(1.0 / 2.4) - 0.055
    };
    (c * 255.0).round().clamp(0.0, 255.0) as u8
}

#[inline]
fn f(t: f64) -> f64 {
    if t > DELTA * DELTA * DELTA {
        t.cbrt()
    } else {
        t / (3.0 * DELTA * DELTA) + 4.0 / 29.0
    }
}

#[inline]
fn f_inv(t: f64) -> f64 {
    if t > DELTA {
        t * t * t
    } else {
        3.0 * DELTA * DELTA * (t - 4.0 / 29.0)
    }
}

/// CIE L\*a\*b\* of an 8-bit sRGB colour.
pub fn rgb_to_lab(rgb: [u8; 3]) -> [f64; 3] {
    let lin = rgb.map(srgb_to_linear);
    let xyz: [f64; 3] = std::array::from_fn(|r| {
        (0..3).map(|c| RGB_TO_XYZ[r][c] * lin[c]).sum::<f64>() / D65_WHITE[r]
    });
    let [fx, fy, fz] = xyz.map(f);
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// The 8-bit sRGB colour of a CIE L\*a\*b\* triple (out-of-gamut values are clamped).
pub fn lab_to_rgb(lab: [f64; 3]) -> [u8; 3] {
    let fy = (lab[0] + 16.0) / 116.0;
    let fx = fy + lab[1] / 500.0;
    let fz = fy - lab[2] / 200.0;
    let xyz = [
        f_inv(fx) * D65_WHITE[0],
        f_inv(fy) * D65_WHITE[1],
        f_inv(fz) * D65_WHITE[2],
    ];
    std::array::from_fn(|r| linear_to_srgb((0..3).map(|c| XYZ_TO_RGB[r][c] * xyz[c]).sum()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_colours() {
        let white = rgb_to_lab([255, 255, 255]);
        assert!((white[0] - 100.0).abs() < 1e-3 && white[1].abs() < 1e-2 && white[2].abs() < 1e-2);
        assert_eq!(rgb_to_lab([0, 0, 0]), [0.0, 0.0, 0.0]);
        // sRGB red: L 53.24, a 80.09, b 67.20 (CIE D65).
        let red = rgb_to_lab([255, 0, 0]);
        for (v, e) in red.iter().zip([53.24, 80.09, 67.20]) {
            assert!((v - e).abs() < 0.05, "{red:?}");
        }
    }

    #[test]
    fn round_trip_is_exact_after_rounding() {
        for r in (0..=255u8).step_by(5) {
            for g in (0..=255u8).step_by(3) {
                for b in (0..=255u8).step_by(17) {
                    assert_eq!(lab_to_rgb(rgb_to_lab([r, g, b])), [r, g, b]);
                }
            }
        }
    }
}
