//! [`Tiler`]: the tile layout, and segmentation tile by tile with stitching.

use burn::config::Config;
use image::RgbImage;

use super::{stitch::Stitcher, tile::Tile};
use crate::instances::{InstanceSegmenter, Instances};
use crate::postprocess::PostprocessError;

/// Settings of [`Tiler`]; the defaults are the paper's (Sec. 2.5).
#[derive(Config, Debug, PartialEq)]
pub struct TilerConfig {
    /// Side of the square tiles given to the segmenter (px).
    #[config(default = 500)]
    pub tile_size: u32,
    /// Distance between the starts of neighbouring tiles (px), `1..=tile_size`; the overlap
    /// is at least `tile_size - stride`.
    #[config(default = 250)]
    pub stride: u32,
    /// Tiles segmented per [`InstanceSegmenter::segment_batch`] call (bounds memory).
    #[config(default = 4)]
    pub batch_size: usize,
    /// Two detections from different tiles are the same nucleus when their IoU (over the
    /// area both tiles see) is above this.
    #[config(default = 0.2)]
    pub match_iou: f64,
}

impl TilerConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// `tile_size` or `batch_size` of 0, `stride` outside `1..=tile_size`, `match_iou`
    /// outside `[0, 1)`.
    pub fn init(&self) -> Result<Tiler, PostprocessError> {
        let invalid = |field, value: String, reason| PostprocessError::InvalidConfig {
            config: "TilerConfig",
            field,
            value,
            reason,
        };
        if self.tile_size == 0 {
            return Err(invalid("tile_size", "0".into(), "must be at least 1"));
        }
        if self.stride == 0 || self.stride > self.tile_size {
            return Err(invalid(
                "stride",
                self.stride.to_string(),
                "must lie in 1..=tile_size (tiles may not leave gaps)",
            ));
        }
        if self.batch_size == 0 {
            return Err(invalid("batch_size", "0".into(), "must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.match_iou) {
            return Err(invalid(
                "match_iou",
                self.match_iou.to_string(),
                "must lie in [0, 1)",
            ));
        }
        Ok(Tiler {
            config: self.clone(),
        })
    }
}

/// Cuts images into tiles, runs a segmenter on them and stitches the result. See the
/// module docs for the layout and the guarantees.
#[derive(Debug, Clone, PartialEq)]
pub struct Tiler {
    config: TilerConfig,
}

impl Tiler {
    /// Its settings.
    pub fn config(&self) -> &TilerConfig {
        &self.config
    }

    /// Tile starts along an axis of `len` pixels.
    pub fn axis_offsets(&self, len: u32) -> Vec<u32> {
        let (t, s) = (self.config.tile_size, self.config.stride);
        if len == 0 {
            return Vec::new();
        }
        if len <= t {
            return vec![0];
        }
        let mut offsets: Vec<u32> = (0..)
            .map(|i: u64| i * s as u64)
            .take_while(|&o| o + t as u64 <= len as u64)
            .map(|o| o as u32)
            .collect();
        if offsets.last().is_some_and(|&o| o + t < len) {
            offsets.push(len - t);
        }
        offsets
    }

    /// Core intervals `[start, end)` of the tiles of an axis (see the module docs).
    fn axis_cores(&self, len: u32, offsets: &[u32]) -> Vec<(u32, u32)> {
        let t = self.config.tile_size.min(len);
        let bounds: Vec<u32> = offsets
            .windows(2)
            .map(|w| w[1] + (w[0] + t - w[1]) / 2)
            .collect();
        (0..offsets.len())
            .map(|i| {
                let start = if i == 0 { 0 } else { bounds[i - 1] };
                let end = if i + 1 == offsets.len() {
                    len
                } else {
                    bounds[i]
                };
                (start, end)
            })
            .collect()
    }

    /// The tiles of a `width × height` image, row by row (none for an empty image).
    pub fn tiles(&self, width: u32, height: u32) -> Vec<Tile> {
        let t = self.config.tile_size;
        let (xs, ys) = (self.axis_offsets(width), self.axis_offsets(height));
        let (cx, cy) = (self.axis_cores(width, &xs), self.axis_cores(height, &ys));
        let (tw, th) = (t.min(width), t.min(height));
        let mut tiles = Vec::with_capacity(xs.len() * ys.len());
        for (j, &y0) in ys.iter().enumerate() {
            for (i, &x0) in xs.iter().enumerate() {
                tiles.push(Tile {
                    index: tiles.len(),
                    x0,
                    y0,
                    width: tw,
                    height: th,
                    input_size: (tw, th),
                    core: [cx[i].0, cy[j].0, cx[i].1, cy[j].1],
                    inner_edges: [x0 > 0, y0 > 0, x0 + tw < width, y0 + th < height],
                });
            }
        }
        tiles
    }

    /// The largest distance (px, along x and along y) from a nucleus's centroid to its
    /// farthest pixel edge for which the stitched result is guaranteed whole and unique,
    /// given a segmenter that is exact on each tile: `⌊(tile_size - stride) / 2⌋ - 1`.
    pub fn guaranteed_reach(&self) -> u32 {
        ((self.config.tile_size - self.config.stride) / 2).saturating_sub(1)
    }

    /// The tile's pixels.
    ///
    /// # Shapes
    /// `tile.input_size` (= `(tile.width, tile.height)`) out.
    pub fn extract(&self, image: &RgbImage, tile: &Tile) -> RgbImage {
        image::imageops::crop_imm(image, tile.x0, tile.y0, tile.width, tile.height).to_image()
    }

    /// Segments `image` tile by tile with `segmenter` and stitches the nuclei.
    pub fn segment<S: InstanceSegmenter + ?Sized>(
        &self,
        segmenter: &S,
        image: &RgbImage,
    ) -> crate::Result<Instances> {
        self.segment_with_progress(segmenter, image, |_, _| {})
    }

    /// Like [`segment`](Self::segment), calling `progress(tiles_done, tiles_total)` after
    /// every batch (e.g. to draw a progress bar).
    pub fn segment_with_progress<S: InstanceSegmenter + ?Sized>(
        &self,
        segmenter: &S,
        image: &RgbImage,
        progress: impl FnMut(usize, usize),
    ) -> crate::Result<Instances> {
        self.segment_tiles(segmenter, image, None, progress)
    }

    /// Like [`segment_with_progress`](Self::segment_with_progress), with only the tiles'
    /// nuclei scored at least `min_score` ([`InstanceSegmenter::segment_batch_above`]):
    /// the lower-scored ones take no part in stitching, and the segmenter may skip their
    /// work. The stitched nuclei are not filtered again (a nucleus joined from cut pieces
    /// scores their area-weighted mean, at least `min_score`).
    pub fn segment_above<S: InstanceSegmenter + ?Sized>(
        &self,
        segmenter: &S,
        image: &RgbImage,
        min_score: f32,
        progress: impl FnMut(usize, usize),
    ) -> crate::Result<Instances> {
        self.segment_tiles(segmenter, image, Some(min_score), progress)
    }

    fn segment_tiles<S: InstanceSegmenter + ?Sized>(
        &self,
        segmenter: &S,
        image: &RgbImage,
        min_score: Option<f32>,
        mut progress: impl FnMut(usize, usize),
    ) -> crate::Result<Instances> {
        let (width, height) = image.dimensions();
        let tiles = self.tiles(width, height);
        let mut stitcher = Stitcher::new(width, height, self.config.match_iou);
        let mut done = 0;
        for batch in tiles.chunks(self.config.batch_size) {
            let inputs: Vec<RgbImage> = batch.iter().map(|t| self.extract(image, t)).collect();
            let found = match min_score {
                Some(min) => segmenter.segment_batch_above(&inputs, min)?,
                None => segmenter.segment_batch(&inputs)?,
            };
            if found.len() != inputs.len() {
                return Err(PostprocessError::BatchLength {
                    context: "tiling",
                    expected: inputs.len(),
                    got: found.len(),
                }
                .into());
            }
            drop(inputs);
            for (tile, found) in batch.iter().zip(found) {
                stitcher.add(tile, found)?;
            }
            done += batch.len();
            progress(done, tiles.len());
        }
        Ok(stitcher.finish())
    }
}

/// A segmenter run tile by tile: [`Tiler::segment`] as an [`InstanceSegmenter`], so that it
/// can itself be wrapped (e.g. in a [`TtaEnsemble`](crate::postprocess::TtaEnsemble)).
#[derive(Debug, Clone)]
pub struct TiledSegmenter<S> {
    /// How images are tiled.
    pub tiler: Tiler,
    /// What segments the tiles.
    pub segmenter: S,
}

impl<S: InstanceSegmenter> TiledSegmenter<S> {
    /// Runs `segmenter` through `tiler`.
    pub fn new(tiler: Tiler, segmenter: S) -> Self {
        TiledSegmenter { tiler, segmenter }
    }
}

impl<S: InstanceSegmenter> InstanceSegmenter for TiledSegmenter<S> {
    fn segment_instances(&self, image: &RgbImage) -> crate::Result<Instances> {
        self.tiler.segment(&self.segmenter, image)
    }

    fn segment_batch_above(
        &self,
        images: &[RgbImage],
        min_score: f32,
    ) -> crate::Result<Vec<Instances>> {
        images
            .iter()
            .map(|i| {
                self.tiler
                    .segment_above(&self.segmenter, i, min_score, |_, _| {})
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn tiler(t: u32, s: u32) -> Tiler {
        TilerConfig::new()
            .with_tile_size(t)
            .with_stride(s)
            .init()
            .unwrap()
    }

    #[test]
    fn offsets_cover_the_axis() {
        let p = tiler(500, 250);
        assert_eq!(p.axis_offsets(1000), vec![0, 250, 500]);
        assert_eq!(
            p.axis_offsets(2048),
            vec![0, 250, 500, 750, 1000, 1250, 1500, 1548]
        );
        assert_eq!(p.axis_offsets(500), vec![0]);
        assert_eq!(p.axis_offsets(7), vec![0]);
        assert_eq!(p.axis_offsets(501), vec![0, 1]);
        assert_eq!(p.axis_offsets(0), Vec::<u32>::new());
        // Cores: overlaps split at their middle.
        assert_eq!(
            p.axis_cores(1000, &[0, 250, 500]),
            vec![(0, 375), (375, 625), (625, 1000)]
        );
        assert_eq!(p.guaranteed_reach(), 124);
        assert_eq!(tiler(64, 64).guaranteed_reach(), 0);
    }

    #[test]
    fn invalid_settings_are_errors() {
        for cfg in [
            TilerConfig::new().with_tile_size(0),
            TilerConfig::new().with_stride(0),
            TilerConfig::new().with_stride(501),
            TilerConfig::new().with_batch_size(0),
            TilerConfig::new().with_match_iou(1.5),
        ] {
            assert!(cfg.init().is_err(), "{cfg}");
        }
    }

    #[test]
    fn an_image_smaller_than_a_tile_is_one_unpadded_tile() {
        let img = RgbImage::from_fn(3, 2, |x, y| Rgb([x as u8, y as u8, 0]));
        let p = tiler(4, 2);
        let tiles = p.tiles(3, 2);
        assert_eq!(tiles.len(), 1);
        assert_eq!(tiles[0].core, [0, 0, 3, 2]);
        assert_eq!(tiles[0].inner_edges, [false; 4]);
        assert_eq!(tiles[0].input_size, (3, 2));
        assert_eq!(p.extract(&img, &tiles[0]), img);
        // Along one axis only: 3 wide, 6 high with 4-px tiles → 3×4 tiles.
        let tall = RgbImage::from_fn(3, 6, |x, y| Rgb([x as u8, y as u8, 0]));
        let tiles = p.tiles(3, 6);
        assert!(tiles.iter().all(|t| t.input_size == (3, 4)));
        assert_eq!(p.extract(&tall, &tiles[1]).get_pixel(2, 3), &Rgb([2, 5, 0]));
    }
}
