//! Reinhard colour transfer: match the per-channel mean and standard deviation of an
//! image to a template's (Reinhard, Ashikhmin, Gooch & Shirley, *Color transfer between
//! images*, IEEE CG&A 21(5), 2001, Eq. (11)).
//!
//! Reinhard et al. work in Ruderman's lαβ space; like staintools and TIAToolbox we use CIE
//! L\*a\*b\*, which serves the same purpose (decorrelated lightness and opponent colours).

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::{
    has_tissue,
    lab::{lab_to_rgb, rgb_to_lab},
    normalizer::{check_non_empty, check_template},
    StainError, StainNormalizer,
};

/// Standard deviations below this (in Lab units) are treated as this value, so a flat
/// channel neither divides by zero nor is stretched without bound.
pub const MIN_LAB_STD: f64 = 1e-3;

/// Per-channel mean and standard deviation of an image in CIE L\*a\*b\*.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabStats {
    /// Mean of `[L, a, b]`.
    pub mean: [f64; 3],
    /// Population standard deviation of `[L, a, b]`.
    pub std: [f64; 3],
}

impl LabStats {
    /// The statistics of every pixel of `image` (Welford's online algorithm).
    pub fn of(image: &RgbImage) -> LabStats {
        let mut n = 0.0;
        let mut mean = [0.0; 3];
        let mut m2 = [0.0; 3];
        for p in image.pixels() {
            let lab = rgb_to_lab(p.0);
            n += 1.0;
            for c in 0..3 {
                let delta = lab[c] - mean[c];
                mean[c] += delta / n;
                m2[c] += delta * (lab[c] - mean[c]);
            }
        }
        let std = m2.map(|v| if n > 0.0 { (v / n).sqrt() } else { 0.0 });
        LabStats { mean, std }
    }
}

/// The Reinhard normalizer. `fit` stores the template's [`LabStats`]; `transform` maps
/// every pixel's Lab value `x` to `(x − μ_src) · σ_tmpl / σ_src + μ_tmpl` per channel.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reinhard {
    /// The template's statistics (`None` before `fit`).
    pub template: Option<LabStats>,
    /// The source's statistics, fixed in advance (see [`StainNormalizer::with_source`]);
    /// `None` takes each image's own.
    #[serde(default)]
    pub source: Option<LabStats>,
}

impl Reinhard {
    /// A normalizer for known template statistics.
    pub fn with_template(template: LabStats) -> Self {
        Reinhard {
            template: Some(template),
            source: None,
        }
    }
}

impl StainNormalizer for Reinhard {
    fn name(&self) -> &'static str {
        "reinhard"
    }

    fn fit(&mut self, template: &RgbImage) -> Result<(), StainError> {
        check_template(template, "Reinhard template")?;
        self.template = Some(LabStats::of(template));
        Ok(())
    }

    fn transform(&self, image: &RgbImage) -> Result<RgbImage, StainError> {
        let target = self
            .template
            .ok_or(StainError::NotFitted { method: "reinhard" })?;
        check_non_empty(image)?;
        if !has_tissue(image) {
            return Ok(image.clone());
        }
        let source = self.source.unwrap_or_else(|| LabStats::of(image));
        let scale: [f64; 3] = std::array::from_fn(|c| {
            target.std[c].max(MIN_LAB_STD) / source.std[c].max(MIN_LAB_STD)
        });
        let mut out = image.clone();
        for p in out.pixels_mut() {
            let lab = rgb_to_lab(p.0);
            let mapped: [f64; 3] =
                std::array::from_fn(|c| (lab[c] - source.mean[c]) * scale[c] + target.mean[c]);
            p.0 = lab_to_rgb(mapped);
        }
        Ok(out)
    }

    fn with_source(
        &self,
        sample: &RgbImage,
    ) -> Result<Option<Box<dyn StainNormalizer>>, StainError> {
        check_non_empty(sample)?;
        Ok(has_tissue(sample).then(|| {
            Box::new(Reinhard {
                source: Some(LabStats::of(sample)),
                ..*self
            }) as Box<dyn StainNormalizer>
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transformed_image_has_the_template_statistics() {
        let template = RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([
                150 + (x % 50) as u8,
                80 + y as u8,
                170 + ((x * y) % 40) as u8,
            ])
        });
        let source = RgbImage::from_fn(32, 32, |x, y| {
            image::Rgb([90 + 2 * x as u8, 120 + (y % 20) as u8, 140 + (x ^ y) as u8])
        });
        let mut r = Reinhard::default();
        assert!(matches!(
            r.transform(&source),
            Err(StainError::NotFitted { .. })
        ));
        r.fit(&template).unwrap();
        let out = r.transform(&source).unwrap();
        let (got, want) = (LabStats::of(&out), LabStats::of(&template));
        for c in 0..3 {
            // 8-bit rounding and gamut clamping leave a small residue.
            assert!(
                (got.mean[c] - want.mean[c]).abs() < 0.5,
                "{got:?} vs {want:?}"
            );
            assert!(
                (got.std[c] - want.std[c]).abs() < 0.5,
                "{got:?} vs {want:?}"
            );
        }
    }
}
