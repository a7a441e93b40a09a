//! Where group norm takes its statistics: over the tissue of an input, not over its glass.
//!
//! Group norm (Wu & He 2018) normalizes each image by the mean and variance of its own
//! feature maps, so what lies outside the tissue changes how the tissue is seen. A model
//! trained on crops that are tissue from edge to edge, given a slide tile whose edge is
//! glass, sees its nuclei contrast-stretched: on a 1000² Kumar image with 300 px of glass
//! around it, the shipped model found 13 % more nuclei and lost 0.08 AJI. [`NormRegion`]
//! marks the glass of each input in cells of the backbone's coarsest stride, and
//! [`Norm2d::forward_in`](super::Norm2d::forward_in) takes the statistics over the other
//! cells only ([`MaskRcnnConfig::norm_glass_share`](crate::model::MaskRcnnConfig::norm_glass_share)
//! says from which share of glass). An input with less glass gets no region and is
//! normalized exactly as in training.

use burn::prelude::*;
use image::RgbImage;

/// Side of a glass cell in input pixels: the backbone's coarsest stride (C5), so that every
/// feature map sees whole cells.
pub const GLASS_CELL: usize = 32;

/// A pixel is background when each of its channels is at least this bright (optical
/// density below about 0.15, Macenko's tissue threshold `β`).
pub const GLASS_MIN_INTENSITY: u8 = 220;

/// A cell is glass when at least this fraction of its pixels is background (dust, a
/// scanner's noise and a tissue fold's edge leave a few).
pub const GLASS_CELL_FRACTION: f32 = 0.98;

/// Which [`GLASS_CELL`]² cells of an image are glass: at least [`GLASS_CELL_FRACTION`] of
/// their pixels are at least [`GLASS_MIN_INTENSITY`] in every channel.
#[derive(Debug, Clone, PartialEq)]
pub struct GlassCells {
    /// Cells per row, `⌈W / GLASS_CELL⌉` (the last may be narrower).
    pub cols: usize,
    /// Rows of cells, `⌈H / GLASS_CELL⌉`.
    pub rows: usize,
    /// Row by row: whether the cell is glass.
    pub glass: Vec<bool>,
}

impl GlassCells {
    /// The glass cells of `image`.
    pub fn of(image: &RgbImage) -> Self {
        let cols = (image.width() as usize).div_ceil(GLASS_CELL);
        let rows = (image.height() as usize).div_ceil(GLASS_CELL);
        // Background and all pixels per cell.
        let mut background = vec![0u32; cols * rows];
        let mut pixels = vec![0u32; cols * rows];
        for (x, y, p) in image.enumerate_pixels() {
            let k = (y as usize / GLASS_CELL) * cols + x as usize / GLASS_CELL;
            pixels[k] += 1;
            if p.0.iter().all(|&v| v >= GLASS_MIN_INTENSITY) {
                background[k] += 1;
            }
        }
        let glass = background
            .iter()
            .zip(&pixels)
            .map(|(&b, &n)| b as f32 >= GLASS_CELL_FRACTION * n as f32)
            .collect();
        GlassCells { cols, rows, glass }
    }

    /// Whether the pixel `(x, y)` lies in a glass cell.
    pub fn at(&self, x: u32, y: u32) -> bool {
        self.glass[(y as usize / GLASS_CELL) * self.cols + x as usize / GLASS_CELL]
    }

    /// The pixels of `image` outside its glass cells, appended to `pixels` (RGB bytes).
    pub fn append_tissue(image: &RgbImage, pixels: &mut Vec<u8>) {
        let cells = GlassCells::of(image);
        for (x, y, p) in image.enumerate_pixels() {
            if !cells.at(x, y) {
                pixels.extend(p.0);
            }
        }
    }
}

/// The cells of a batch whose pixels enter group norm's statistics.
///
/// # Shapes
/// One `[N, 1, H/s, W/s]` 0/1 mask per stride `s` = 2, 4, 8, 16, 32 of an `[N, 3, H, W]`
/// input (`H`, `W` multiples of [`GLASS_CELL`]).
#[derive(Debug, Clone)]
pub struct NormRegion {
    masks: Vec<Tensor<4>>,
}

impl NormRegion {
    /// The region of a batch padded to `padded = (H, W)`: for an image whose glass cells are
    /// at least `min_share` of its cells, those that are neither glass nor padding; all of
    /// any other image. `None` when no image qualifies: plain group norm then, exactly as
    /// in training.
    pub fn excluding_glass(
        images: &[&RgbImage],
        padded: (usize, usize),
        min_share: f32,
        device: &Device,
    ) -> Option<Self> {
        let (hp, wp) = padded;
        if images.is_empty() || hp % GLASS_CELL != 0 || wp % GLASS_CELL != 0 {
            return None;
        }
        let (hc, wc) = (hp / GLASS_CELL, wp / GLASS_CELL);
        let mut cells = vec![0.0f32; images.len() * hc * wc];
        let mut any_region = false;
        for (b, image) in images.iter().enumerate() {
            let own = GlassCells::of(image);
            // Cells of the padded grid: `inside` the image, and glass.
            let inside: Vec<bool> = (0..hc * wc)
                .map(|k| k / wc < own.rows && k % wc < own.cols)
                .collect();
            let glass: Vec<bool> = (0..hc * wc)
                .map(|k| inside[k] && own.glass[(k / wc) * own.cols + k % wc])
                .collect();
            let out = &mut cells[b * hc * wc..(b + 1) * hc * wc];
            let image_cells = own.glass.len();
            let glass_cells = glass.iter().filter(|&&g| g).count();
            if glass_cells > 0
                && glass_cells < image_cells
                && glass_cells as f32 >= min_share * image_cells as f32
            {
                any_region = true;
                // Tissue cells only: glass and padding (not image) are left out.
                for k in 0..hc * wc {
                    out[k] = f32::from(inside[k] && !glass[k]);
                }
            } else {
                // Little or no glass (or nothing but glass): the whole padded input, as
                // plain group norm (and training) does.
                out.fill(1.0);
            }
        }
        if !any_region {
            return None;
        }
        let n = images.len();
        let masks = (1..=5)
            .map(|level| {
                let s = 1usize << level;
                let rep = GLASS_CELL / s;
                let (h, w) = (hp / s, wp / s);
                let mut m = vec![0.0f32; n * h * w];
                for b in 0..n {
                    for y in 0..h {
                        for x in 0..w {
                            m[(b * h + y) * w + x] = cells[(b * hc + y / rep) * wc + x / rep];
                        }
                    }
                }
                Tensor::from_data(TensorData::new(m, [n, 1, h, w]), device)
            })
            .collect();
        Some(NormRegion { masks })
    }

    /// The mask for a feature map of `height × width`, if the region has one of that size.
    pub fn at(&self, height: usize, width: usize) -> Option<&Tensor<4>> {
        self.masks.iter().find(|m| {
            let [_, _, h, w] = m.dims();
            h == height && w == width
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::backbone::NormKind;
    use image::Rgb;

    fn tissue_with_glass(glass_columns: u32) -> RgbImage {
        RgbImage::from_fn(64, 64, |x, y| {
            if x >= 64 - glass_columns {
                Rgb([240, 240, 242])
            } else {
                Rgb([(120 + (x * 7 + y * 3) % 60) as u8, 60, 140])
            }
        })
    }

    #[test]
    fn only_inputs_with_enough_glass_get_a_region() {
        let device = Device::flex();
        let none = tissue_with_glass(0);
        assert!(NormRegion::excluding_glass(&[&none], (64, 64), 0.05, &device).is_none());
        let half = tissue_with_glass(32);
        let region = NormRegion::excluding_glass(&[&half], (64, 64), 0.05, &device).unwrap();
        let cells: Vec<f32> = region.at(2, 2).unwrap().clone().try_into_vec_as().unwrap();
        assert_eq!(cells, vec![1.0, 0.0, 1.0, 0.0]);
        assert_eq!(region.at(32, 32).unwrap().dims(), [1, 1, 32, 32]);
        // Half glass is under a share of 0.6: plain statistics.
        assert!(NormRegion::excluding_glass(&[&half], (64, 64), 0.6, &device).is_none());
    }

    #[test]
    fn statistics_ignore_what_the_region_leaves_out() {
        let device = Device::flex();
        let norm = NormKind::GroupNorm { groups: 2 }.init(4, &device).unwrap();
        let half = tissue_with_glass(32);
        let region = NormRegion::excluding_glass(&[&half], (64, 64), 0.05, &device).unwrap();
        // A map whose left half (the region) is the same in both inputs and whose right half
        // differs: inside the region the outputs agree, as the statistics come from there.
        let left = Tensor::<4>::random([1, 4, 4, 2], burn::tensor::Distribution::Default, &device);
        let a = Tensor::cat(vec![left.clone(), Tensor::zeros([1, 4, 4, 2], &device)], 3);
        let b = Tensor::cat(vec![left, Tensor::ones([1, 4, 4, 2], &device) * 9.0], 3);
        let take = |t: Tensor<4>| -> Vec<f32> {
            t.slice([0..1, 0..4, 0..4, 0..2]).try_into_vec_as().unwrap()
        };
        let (ya, yb) = (
            take(norm.forward_in(a.clone(), Some(&region))),
            take(norm.forward_in(b, Some(&region))),
        );
        assert!(ya.iter().zip(&yb).all(|(p, q)| (p - q).abs() < 1e-5));
        // Without a region it is plain group norm, and the right half shifts the left.
        let plain = take(norm.forward(a.clone()));
        assert_eq!(plain, take(norm.forward_in(a, None)));
        assert!(plain.iter().zip(&ya).any(|(p, q)| (p - q).abs() > 1e-3));
    }
}
