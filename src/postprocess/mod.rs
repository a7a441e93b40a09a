//! Post-processing around any [`InstanceSegmenter`](crate::InstanceSegmenter): test-time augmentation with the
//! paper's matching and pixel-wise voting, and tiled inference with seam-free stitching
//! (Secs. 2.4 and 2.5 of Jung, Lodhi & Kang 2019).
//!
//! - [`Dihedral`]: the eight pixel-exact symmetries of the image grid, on images, masks and
//!   boxes;
//! - [`TtaEnsemble`] / [`TtaConfig`]: segment several views, map them back, merge them
//!   ([`merge_views`]);
//! - [`Tiler`] / [`TilerConfig`] / [`TiledSegmenter`]: overlapping tiles, segmented a batch
//!   at a time and stitched by [`Stitcher`].
//!
//! Both wrappers are [`InstanceSegmenter`](crate::InstanceSegmenter)s themselves, so they compose either way round:
//! `TiledSegmenter<TtaEnsemble<M>>` augments each tile, `TtaEnsemble<TiledSegmenter<M>>`
//! augments the whole image.
//!
//! ```
//! use nucseg::postprocess::{TilerConfig, TtaConfig, TtaSet, TiledSegmenter};
//! use nucseg::{baseline::ClassicalBaseline, InstanceSegmenter};
//!
//! let tta = TtaConfig::new().with_set("d4".parse::<TtaSet>()?).init(ClassicalBaseline::default())?;
//! let tiled = TiledSegmenter::new(TilerConfig::new().init()?, tta);
//! let image = nucseg::data::RgbImage::from_pixel(64, 48, image::Rgb([255, 255, 255]));
//! assert!(tiled.segment_instances(&image)?.is_empty());
//! # Ok::<(), nucseg::Error>(())
//! ```
//!
//! Everything here runs on the host, on instance lists whose masks are cropped to their
//! boxes: matching uses spatial grids over the boxes and never compares all pairs or scans
//! full-size images.

mod dihedral;
mod error;
mod grid;
mod masks;
mod tiling;
mod tta;

pub use dihedral::Dihedral;
pub use error::PostprocessError;
pub use masks::exclusive_masks;
pub use tiling::{Stitcher, Tile, TiledSegmenter, Tiler, TilerConfig};
pub use tta::{merge_views, TtaConfig, TtaEnsemble, TtaSet, UnmatchedPolicy};
