//! Test-time augmentation ("multiple inference", Sec. 2.4 of Jung et al. 2019): segment
//! several pixel-exact symmetric views of an image, map every prediction back to the original
//! frame and merge them by matching and pixel-wise voting ([`merge_views`]).
//!
//! [`TtaEnsemble`] wraps any [`InstanceSegmenter`] (Mask R-CNN, the classical baseline, a
//! [`TiledSegmenter`](super::TiledSegmenter)) and is one itself, so tiling and augmentation
//! compose in either order.

mod config;
mod ensemble;
mod merge;

pub use config::{TtaConfig, TtaSet, UnmatchedPolicy};
pub use ensemble::TtaEnsemble;
pub use merge::merge_views;
