//! Pictures for an image viewer: nucleus outlines over the image, and the comparison of a
//! prediction with ground truth in the colours of Figure 6 of Jung, Lodhi & Kang (2019).
//!
//! An outline pixel is a pixel of a nucleus with a 4-neighbour outside that nucleus
//! (another id, background, or beyond the image edge, so nuclei cut by the edge are
//! closed): a 1-pixel line just inside each nucleus, drawn opaque.

use burn::config::Config;
use image::{Rgb, RgbImage};

use super::{check_size, ExportError};
use crate::{data::LabelMap, instances::Instances};

/// Colours and opacity of the overlays.
#[derive(Config, Debug, PartialEq)]
pub struct OverlayConfig {
    /// Colour of predicted outlines.
    #[config(default = "[0, 255, 255]")]
    pub outline_color: [u8; 3],
    /// Opacity of the comparison colours: `out = (1 − α)·image + α·colour`.
    #[config(default = 0.45)]
    pub alpha: f32,
    /// True-positive pixels (in both truth and prediction): yellow, as in Figure 6.
    #[config(default = "[255, 255, 0]")]
    pub true_positive: [u8; 3],
    /// False-positive pixels (predicted only): red.
    #[config(default = "[255, 0, 0]")]
    pub false_positive: [u8; 3],
    /// False-negative pixels (truth only): green.
    #[config(default = "[0, 255, 0]")]
    pub false_negative: [u8; 3],
    /// Also draw the predicted outlines (in `outline_color`) on the comparison, so that
    /// touching nuclei stay distinguishable.
    #[config(default = false)]
    pub predicted_outlines: bool,
}

impl OverlayConfig {
    /// An error unless `alpha` is in `[0, 1]`.
    pub fn validate(&self) -> Result<(), ExportError> {
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(ExportError::InvalidConfig {
                config: "OverlayConfig",
                field: "alpha",
                value: self.alpha.to_string(),
                reason: "expected an opacity in [0, 1]",
            });
        }
        Ok(())
    }
}

/// The image with every nucleus's outline pixels (see the module docs) painted `color`.
///
/// # Errors
/// [`ExportError::SizeMismatch`] when the label map is not the image's size.
pub fn outline_overlay(
    image: &RgbImage,
    labels: &LabelMap,
    color: [u8; 3],
) -> Result<RgbImage, ExportError> {
    check_size(image, "label map", labels.dimensions())?;
    let mut out = image.clone();
    draw_label_outlines(&mut out, labels, color);
    Ok(out)
}

/// The image with each instance's outline painted `color`, mask by mask: where instances
/// overlap, both outlines are drawn (unlike [`outline_overlay`] of their label map). Mask
/// pixels outside the image are ignored.
///
/// # Errors
/// [`ExportError::SizeMismatch`] when the instances are for another image size.
pub fn instance_outline_overlay(
    image: &RgbImage,
    instances: &Instances,
    color: [u8; 3],
) -> Result<RgbImage, ExportError> {
    check_size(image, "instances", (instances.width, instances.height))?;
    let (w, h) = image.dimensions();
    let mut out = image.clone();
    for inst in &instances.items {
        let m = &inst.mask;
        let (x1, y1) = crate::instances::clipped_end(m, w, h);
        for y in m.y0.min(y1)..y1 {
            for x in m.x0.min(x1)..x1 {
                if !m.contains(x, y) {
                    continue;
                }
                let edge = x == 0
                    || y == 0
                    || x + 1 == w
                    || y + 1 == h
                    || !m.contains(x - 1, y)
                    || !m.contains(x + 1, y)
                    || !m.contains(x, y - 1)
                    || !m.contains(x, y + 1);
                if edge {
                    out.put_pixel(x, y, Rgb(color));
                }
            }
        }
    }
    Ok(out)
}

/// [`comparison_overlay_with`] with the default [`OverlayConfig`]: yellow true positives,
/// red false positives, green false negatives at α = 0.45, no outlines.
///
/// # Errors
/// As [`comparison_overlay_with`].
pub fn comparison_overlay(
    image: &RgbImage,
    truth: &LabelMap,
    predicted: &LabelMap,
) -> Result<RgbImage, ExportError> {
    comparison_overlay_with(image, truth, predicted, &OverlayConfig::new())
}

/// Pixel-level agreement of a prediction with the truth, as in Figure 6 of Jung et al.:
/// pixels that are nucleus in both are blended with `true_positive`, predicted only with
/// `false_positive`, truth only with `false_negative` (`out = (1 − α)·image + α·colour`,
/// rounded); background in both is left as is. With `predicted_outlines`, the predicted
/// nuclei's outlines are drawn on top.
///
/// # Errors
/// [`ExportError::SizeMismatch`] when a label map is not the image's size;
/// [`ExportError::InvalidConfig`] for an `alpha` outside `[0, 1]`.
pub fn comparison_overlay_with(
    image: &RgbImage,
    truth: &LabelMap,
    predicted: &LabelMap,
    config: &OverlayConfig,
) -> Result<RgbImage, ExportError> {
    check_size(image, "ground-truth label map", truth.dimensions())?;
    check_size(image, "predicted label map", predicted.dimensions())?;
    config.validate()?;
    let alpha = config.alpha;
    let blend = |p: &mut Rgb<u8>, c: [u8; 3]| {
        for k in 0..3 {
            p[k] = ((1.0 - alpha) * p[k] as f32 + alpha * c[k] as f32)
                .round()
                .clamp(0.0, 255.0) as u8;
        }
    };
    let mut out = image.clone();
    for ((p, &t), &q) in out
        .pixels_mut()
        .zip(truth.as_slice())
        .zip(predicted.as_slice())
    {
        match (t != 0, q != 0) {
            (true, true) => blend(p, config.true_positive),
            (false, true) => blend(p, config.false_positive),
            (true, false) => blend(p, config.false_negative),
            (false, false) => {}
        }
    }
    if config.predicted_outlines {
        draw_label_outlines(&mut out, predicted, config.outline_color);
    }
    Ok(out)
}

/// Paints the outline pixels of every id of `labels` (same size as `out`).
fn draw_label_outlines(out: &mut RgbImage, labels: &LabelMap, color: [u8; 3]) {
    let (w, h) = labels.dimensions();
    let ids = labels.as_slice();
    let (wu, hu) = (w as usize, h as usize);
    for y in 0..hu {
        for x in 0..wu {
            let i = y * wu + x;
            let v = ids[i];
            if v == 0 {
                continue;
            }
            let edge = x == 0
                || y == 0
                || x + 1 == wu
                || y + 1 == hu
                || ids[i - 1] != v
                || ids[i + 1] != v
                || ids[i - wu] != v
                || ids[i + wu] != v;
            if edge {
                out.put_pixel(x as u32, y as u32, Rgb(color));
            }
        }
    }
}

/// `before | after` side by side, with an 8-pixel white gap (e.g. a stain-normalized image
/// next to its original).
pub fn side_by_side(before: &RgbImage, after: &RgbImage) -> RgbImage {
    const GAP: u32 = 8;
    let (w, h) = before.dimensions();
    let (w2, h2) = after.dimensions();
    let mut canvas = RgbImage::from_pixel(w + GAP + w2, h.max(h2), image::Rgb([255, 255, 255]));
    image::imageops::replace(&mut canvas, before, 0, 0);
    image::imageops::replace(&mut canvas, after, (w + GAP) as i64, 0);
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_alpha_is_an_error() {
        let img = RgbImage::new(2, 2);
        let map = LabelMap::new(2, 2);
        let err = comparison_overlay_with(&img, &map, &map, &OverlayConfig::new().with_alpha(1.5))
            .unwrap_err();
        assert!(err.to_string().contains("alpha"), "{err}");
        let err = outline_overlay(&img, &LabelMap::new(3, 2), [0; 3]).unwrap_err();
        assert!(err.to_string().contains("2x2") && err.to_string().contains("3x2"));
    }
}
