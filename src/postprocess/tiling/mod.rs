//! Tiled inference: cut an image of any size into overlapping square tiles, segment them a
//! batch at a time, and stitch the nuclei back without cut or duplicated ones
//! ([`Stitcher`]).
//!
//! # Tile layout
//! Along each axis of length `L`, tiles of side `t` ([`TilerConfig::tile_size`]) start at
//! `0, s, 2s, …` ([`TilerConfig::stride`]) while they fit, and one more tile flush with the
//! far edge (`L - t`) is added when those leave a remainder. Neighbours therefore overlap by
//! at least `t - s` pixels. The paper's setting (Sec. 2.5 of Jung et al. 2019: 500 × 500
//! tiles at offsets 0, 250 and 500 of a 1000 × 1000 image, 9 tiles) is
//! [`TilerConfig`]'s default: `tile_size = 500`, `stride = 250`. The pipeline uses larger
//! tiles by default ([`PipelineConfig`](crate::pipeline::PipelineConfig)).
//!
//! An axis shorter than a tile gets a single tile as long as the axis: it is not padded.
//! (Padding a small image with white glass up to the tile changes the group-norm
//! statistics of the network: on CPM-15 it cost 0.012 AJI, see `docs/performance.md`.)
//! Tiles of one image have at most four sizes; the segmenter pads a batch itself.
//!
//! # Ownership and the size guarantee
//! Each tile owns a *core*: the overlap between two neighbours is split at its middle
//! (`o_next + ⌊overlap / 2⌋`), and the outer cores reach the image edges, so the cores
//! partition the image. A nucleus is taken from the tile whose core holds its centroid
//! (exactly, in integer arithmetic, so neighbours never disagree about the same mask), and
//! only if it does not touch one of that tile's *inner* edges (an edge that is not the image
//! border), where it may have been cut.
//!
//! Guarantee: with a segmenter that is exact on each tile, every nucleus whose pixels lie
//! within `⌊(t - s) / 2⌋ - 1` px of its centroid, along x and along y, is returned whole and
//! exactly once ([`Tiler::guaranteed_reach`]: 124 px for the paper's setting, i.e. nuclei up
//! to about 248 px across; nuclei at 40× are 10–40 px). Beyond that the stitcher falls back
//! on IoU matching across seams (see [`Stitcher`]).
//!
//! # Memory
//! Only `batch_size` tiles of `t × t` pixels, and their predictions, exist at a time; the
//! predictions are folded into the stitcher (as instance lists, not full-size maps) before
//! the next batch is cut. The returned [`Instances`] is the only full-image structure.

mod stitch;
mod tile;
mod tiler;

pub use stitch::Stitcher;
pub use tile::Tile;
pub use tiler::{TiledSegmenter, Tiler, TilerConfig};
