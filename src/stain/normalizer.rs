//! The [`StainNormalizer`] trait, the choice of normalizer by name, and the tissue test
//! shared by all normalizers.

use std::{fmt, str::FromStr};

use image::RgbImage;

use super::StainError;
use crate::colour::optical_density;

/// Optical density (natural log, `I_0 = 255`) a pixel needs in every channel to count as
/// tissue: Macenko et al. (2009)'s `β = 0.15`.
pub const TISSUE_OD_THRESHOLD: f32 = 0.15;

/// Fewer tissue pixels than this and an image counts as blank: `fit` refuses it as a
/// template, `transform` passes it through unchanged.
pub const MIN_TISSUE_PIXELS: usize = 64;

/// Number of pixels whose optical density is at least `threshold` in every channel.
pub fn count_tissue_pixels(image: &RgbImage, threshold: f32) -> usize {
    image
        .pixels()
        .filter(|p| p.0.iter().all(|&v| optical_density(v) >= threshold))
        .count()
}

/// Whether an image has at least [`MIN_TISSUE_PIXELS`] tissue pixels.
pub fn has_tissue(image: &RgbImage) -> bool {
    count_tissue_pixels(image, TISSUE_OD_THRESHOLD) >= MIN_TISSUE_PIXELS
}

/// Checks a template: non-empty and with tissue.
pub(crate) fn check_template(image: &RgbImage, what: &str) -> Result<(), StainError> {
    check_non_empty(image)?;
    let tissue = count_tissue_pixels(image, TISSUE_OD_THRESHOLD);
    if tissue < MIN_TISSUE_PIXELS {
        return Err(StainError::NoTissue {
            what: what.to_string(),
            tissue,
            total: (image.width() * image.height()) as usize,
            threshold: TISSUE_OD_THRESHOLD,
            min: MIN_TISSUE_PIXELS,
        });
    }
    Ok(())
}

pub(crate) fn check_non_empty(image: &RgbImage) -> Result<(), StainError> {
    if image.width() == 0 || image.height() == 0 {
        return Err(StainError::EmptyImage {
            width: image.width(),
            height: image.height(),
        });
    }
    Ok(())
}

/// A stain normalizer: learns the colours of a template, then maps images onto them.
///
/// Implementations return the input unchanged for an image without tissue (see the
/// [module docs](crate::stain)) and never produce NaN.
pub trait StainNormalizer {
    /// A short name (`"reinhard"`, `"macenko"`, `"dcgmm"`, `"none"`).
    fn name(&self) -> &'static str;

    /// Estimates the template's colour statistics. An error if the template has no tissue.
    fn fit(&mut self, template: &RgbImage) -> Result<(), StainError>;

    /// Maps `image` onto the template's colours. An error before [`fit`](Self::fit).
    fn transform(&self, image: &RgbImage) -> Result<RgbImage, StainError>;

    /// This normalizer with the source's statistics (Macenko's stains, Reinhard's Lab
    /// moments) estimated once, from `sample`, and used for every image after instead of
    /// each image's own. For the tiles of one slide, which share one staining: every tile
    /// is then mapped alike, whatever share of it is glass or which tissue it shows.
    /// `Ok(None)` when there is nothing to fix (no normalization; DCGMM, whose Gaussians
    /// are per image by design) or `sample` has no tissue.
    fn with_source(
        &self,
        sample: &RgbImage,
    ) -> Result<Option<Box<dyn StainNormalizer>>, StainError> {
        let _ = sample;
        Ok(None)
    }
}

/// The normalizer that does nothing ([`NormalizerKind::None`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct IdentityNormalizer;

impl StainNormalizer for IdentityNormalizer {
    fn name(&self) -> &'static str {
        "none"
    }

    fn fit(&mut self, _template: &RgbImage) -> Result<(), StainError> {
        Ok(())
    }

    fn transform(&self, image: &RgbImage) -> Result<RgbImage, StainError> {
        Ok(image.clone())
    }
}

/// Which stain normalizer a pipeline uses, e.g. from `--method dcgmm|macenko|reinhard|none`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum NormalizerKind {
    /// Zanjani et al. (2018)'s deep convolutional Gaussian mixture model (the paper's choice).
    #[default]
    Dcgmm,
    /// Macenko et al. (2009).
    Macenko,
    /// Reinhard et al. (2001), in CIE L\*a\*b\*.
    Reinhard,
    /// No normalization.
    None,
}

impl NormalizerKind {
    /// All kinds, in the order command lines list them.
    pub const ALL: [NormalizerKind; 4] = [
        NormalizerKind::Dcgmm,
        NormalizerKind::Macenko,
        NormalizerKind::Reinhard,
        NormalizerKind::None,
    ];

    /// The name used on command lines and in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            NormalizerKind::Dcgmm => "dcgmm",
            NormalizerKind::Macenko => "macenko",
            NormalizerKind::Reinhard => "reinhard",
            NormalizerKind::None => "none",
        }
    }
}

impl fmt::Display for NormalizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NormalizerKind {
    type Err = StainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        NormalizerKind::ALL
            .into_iter()
            .find(|k| k.name() == lower)
            .ok_or_else(|| StainError::UnknownMethod(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_from_their_names() {
        for k in NormalizerKind::ALL {
            assert_eq!(k.name().parse::<NormalizerKind>().unwrap(), k);
        }
        assert_eq!(
            " Macenko ".parse::<NormalizerKind>().unwrap(),
            NormalizerKind::Macenko
        );
        let err = "vahadane".parse::<NormalizerKind>().unwrap_err();
        assert!(err.to_string().contains("vahadane"), "{err}");
        assert_eq!(
            serde_json::to_string(&NormalizerKind::Dcgmm).unwrap(),
            "\"dcgmm\""
        );
    }

    #[test]
    fn tissue_test_counts_stained_pixels_only() {
        let mut img = RgbImage::from_pixel(20, 20, image::Rgb([255, 255, 255]));
        assert_eq!(count_tissue_pixels(&img, TISSUE_OD_THRESHOLD), 0);
        assert!(!has_tissue(&img));
        // OD ≥ 0.15 ⇔ I ≤ 255·e^-0.15 ≈ 219.5
        for x in 0..10 {
            for y in 0..10 {
                img.put_pixel(x, y, image::Rgb([150, 60, 200]));
            }
        }
        img.put_pixel(15, 15, image::Rgb([220, 60, 200])); // red channel too light
        assert_eq!(count_tissue_pixels(&img, TISSUE_OD_THRESHOLD), 100);
        assert!(has_tissue(&img));
        let err = check_template(
            &RgbImage::from_pixel(5, 5, image::Rgb([255, 255, 255])),
            "test",
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                StainError::NoTissue {
                    tissue: 0,
                    total: 25,
                    ..
                }
            ),
            "{err}"
        );
    }
}
