//! Tissue detection on a low-resolution view of the slide, so that glass is never given to
//! the model: HSV saturation (stained tissue is coloured, glass is grey-white) thresholded
//! by Otsu's method with a floor, closed, small specks removed and holes filled, then
//! grown by a margin so that nuclei on the tissue's edge keep their tiles.

use burn::config::Config;
use image::{imageops, RgbImage};
use ndarray::Array2;

use super::{SlideError, SlideReader};
use crate::baseline::filters::{distance_transform, fill_holes, otsu_threshold, remove_small};

/// Parameters of [`TissueMask::detect`].
#[derive(Config, Debug, PartialEq)]
pub struct TissueConfig {
    /// Level-0 pixels per thumbnail pixel (32: a 100k-px slide gives a ~3k-px thumbnail).
    #[config(default = 32.0)]
    pub downsample: f64,
    /// Saturation below this is never tissue, whatever Otsu says (glass with JPEG noise
    /// reaches ~0.05; eosin-stained stroma is above 0.15).
    #[config(default = 0.08)]
    pub min_saturation: f32,
    /// Radius (thumbnail px) of the closing that joins tissue fragments.
    #[config(default = 2.0)]
    pub close_radius: f32,
    /// Tissue pieces smaller than this (thumbnail px) are specks of dust and dropped.
    #[config(default = 16)]
    pub min_area: u64,
    /// Holes in the tissue up to this area (thumbnail px) are filled.
    #[config(default = 256)]
    pub max_hole_area: u64,
    /// Margin (thumbnail px) added around the tissue.
    #[config(default = 2.0)]
    pub margin: f32,
}

/// Where the tissue is, on a grid of thumbnail pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct TissueMask {
    /// Level-0 pixels per mask pixel along each axis.
    pub downsample: f64,
    /// `[height, width]`, true on tissue.
    pub mask: Array2<bool>,
    /// The saturation threshold used.
    pub threshold: f32,
}

impl TissueMask {
    /// Reads a thumbnail of `slide` at `config.downsample` (from the coarsest level that is
    /// at least that fine, in blocks, so memory stays small) and finds the tissue on it.
    /// Returns the mask and the thumbnail.
    ///
    /// # Errors
    /// A tile of the slide cannot be read.
    pub fn detect(
        slide: &dyn SlideReader,
        config: &TissueConfig,
    ) -> Result<(Self, RgbImage), SlideError> {
        let thumbnail = thumbnail(slide, config.downsample)?;
        Ok((Self::from_thumbnail(&thumbnail, config), thumbnail))
    }

    /// The tissue of a thumbnail taken at `config.downsample`.
    pub fn from_thumbnail(thumbnail: &RgbImage, config: &TissueConfig) -> Self {
        let (w, h) = thumbnail.dimensions();
        let saturation: Vec<f32> = thumbnail
            .pixels()
            .map(|p| {
                let max = *p.0.iter().max().expect("3 channels") as f32;
                let min = *p.0.iter().min().expect("3 channels") as f32;
                if max == 0.0 {
                    0.0
                } else {
                    (max - min) / max
                }
            })
            .collect();
        let threshold = otsu_threshold(&saturation)
            .unwrap_or(1.0)
            .max(config.min_saturation);
        let mut mask = Array2::from_shape_fn((h as usize, w as usize), |(y, x)| {
            saturation[y * w as usize + x] > threshold
        });
        mask = erode(&dilate(&mask, config.close_radius), config.close_radius);
        remove_small(&mut mask, config.min_area);
        fill_holes(&mut mask, config.max_hole_area);
        mask = dilate(&mask, config.margin);
        TissueMask {
            downsample: config.downsample,
            mask,
            threshold,
        }
    }

    /// Whether any tissue lies in the level-0 rectangle `[x0, y0, x1, y1)`.
    pub fn covers(&self, rect: [f64; 4]) -> bool {
        let ([x0, y0], [x1, y1]) = self.cells(rect);
        (y0..y1).any(|y| (x0..x1).any(|x| self.mask[[y, x]]))
    }

    /// The share of the mask pixels touching the level-0 rectangle `[x0, y0, x1, y1)` that
    /// are tissue (0 for a rectangle off the mask).
    pub fn share(&self, rect: [f64; 4]) -> f64 {
        let ([x0, y0], [x1, y1]) = self.cells(rect);
        let total = (x1 - x0) * (y1 - y0);
        let tissue = (y0..y1)
            .map(|y| (x0..x1).filter(|&x| self.mask[[y, x]]).count())
            .sum::<usize>();
        tissue as f64 / total.max(1) as f64
    }

    /// The mask pixels touching a level-0 rectangle: `([x0, y0], [x1, y1])`, end exclusive.
    pub(crate) fn cells(&self, rect: [f64; 4]) -> ([usize; 2], [usize; 2]) {
        let (h, w) = self.mask.dim();
        let to = |v: f64, n: usize| ((v / self.downsample).max(0.0) as usize).min(n);
        (
            [to(rect[0], w), to(rect[1], h)],
            [
                to(rect[2] + self.downsample - 1e-9, w),
                to(rect[3] + self.downsample - 1e-9, h),
            ],
        )
    }

    /// Tissue area in level-0 pixels.
    pub fn area_level0(&self) -> f64 {
        self.mask.iter().filter(|&&m| m).count() as f64 * self.downsample * self.downsample
    }

    /// The fraction of the thumbnail that is tissue.
    pub fn fraction(&self) -> f64 {
        self.mask.iter().filter(|&&m| m).count() as f64 / self.mask.len().max(1) as f64
    }
}

/// Pixels within `radius` of the mask.
fn dilate(mask: &Array2<bool>, radius: f32) -> Array2<bool> {
    if radius <= 0.0 {
        return mask.clone();
    }
    let outside = distance_transform(&mask.mapv(|m| !m), false);
    Array2::from_shape_fn(mask.dim(), |i| mask[i] || outside[i] <= radius)
}

/// Pixels farther than `radius` from the background (the border is not background).
fn erode(mask: &Array2<bool>, radius: f32) -> Array2<bool> {
    if radius <= 0.0 {
        return mask.clone();
    }
    let inside = distance_transform(mask, false);
    inside.mapv(|d| d > radius)
}

/// A thumbnail of level 0 at `downsample`, read from the coarsest level at least that fine
/// in blocks of at most 4096² level pixels.
pub fn thumbnail(slide: &dyn SlideReader, downsample: f64) -> Result<RgbImage, SlideError> {
    let levels = slide.levels();
    let (w0, h0) = slide.dimensions();
    let (tw, th) = (
        ((w0 as f64 / downsample).ceil() as u32).max(1),
        ((h0 as f64 / downsample).ceil() as u32).max(1),
    );
    let level = (0..levels.len())
        .rev()
        .find(|&l| levels[l].downsample <= downsample * 1.01)
        .unwrap_or(0);
    let scale = downsample / levels[level].downsample; // level px per thumbnail px
    let mut out = RgbImage::from_pixel(tw, th, image::Rgb([255, 255, 255]));
    let block = ((4096.0 / scale).floor() as u32).max(1); // thumbnail px per block
    for by in (0..th).step_by(block as usize) {
        for bx in (0..tw).step_by(block as usize) {
            let (bw, bh) = (block.min(tw - bx), block.min(th - by));
            let lx = (bx as f64 * scale).round() as i64;
            let ly = (by as f64 * scale).round() as i64;
            let lw = ((bw as f64 * scale).round() as u32).max(1);
            let lh = ((bh as f64 * scale).round() as u32).max(1);
            let region = slide.read_region(level, lx, ly, lw, lh)?;
            let small = if (lw, lh) == (bw, bh) {
                region
            } else {
                imageops::resize(&region, bw, bh, imageops::FilterType::Triangle)
            };
            imageops::replace(&mut out, &small, bx as i64, by as i64);
        }
    }
    Ok(out)
}
