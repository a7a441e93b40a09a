//! # nucseg
//!
//! Nuclei instance segmentation in H&E histopathology images, in pure Rust on
//! [Burn](https://burn.dev).
//!
//! nucseg implements the method of Jung, Lodhi & Kang, *An automatic nuclei
//! segmentation method based on deep convolutional neural networks for
//! histopathology images*, BMC Biomedical Engineering 1:24 (2019), and the tools
//! around it: readers for the MoNuSeg / Kumar and Naylor data sets, the field's
//! metrics (AJI, AJI+, PQ, Dice, object F1) and a classical baseline.
//!
//! ```no_run
//! use nucseg::{baseline::ClassicalBaseline, data, metrics};
//!
//! let image = data::read_rgb("slide_tile.png")?;
//! let predicted = ClassicalBaseline::default().segment_labels(&image);
//! let truth = data::read_label_map("slide_tile_labels.png")?;
//! let scores = metrics::ImageMetrics::compute(&truth, &predicted)?;
//! println!("AJI {:.3}  PQ {:.3}  {} nuclei", scores.aji, scores.pq.pq, predicted.count());
//! # Ok::<(), nucseg::Error>(())
//! ```
//!
//! ## Layers
//!
//! Each module uses only modules of the layers below its own (and its own layer's
//! foundations); nothing points up.
//!
//! | layer | modules |
//! | --- | --- |
//! | 6. applications | [`train`] (trainers), [`pretrained`] (the shipped model), [`export`] (files other tools read), [`slide`] (whole slides, cohorts) |
//! | 5. the method | [`pipeline`]: normalization → segmenter with TTA → tiling |
//! | 4. around any segmenter | [`postprocess`]: test-time augmentation, tiling and stitching |
//! | 3. segmenters and normalizers | [`model`] (Mask R-CNN), [`baseline`] (classical), [`stain`] (DCGMM, Macenko, Reinhard) |
//! | 2. data and scores | [`data`] (images, label maps, annotations, data sets), [`metrics`], [`output`]; the nuclei types ([`Instances`], [`Nuclei`], [`InstanceSegmenter`]) |
//! | 1. foundations | [`io`] (atomic files, JSON), [`colour`] (optical density, deconvolution), [`backend`] (devices) |
#![warn(missing_docs)]
// Index loops read better than iterator chains in matrix and image code.
#![allow(clippy::needless_range_loop)]

pub mod backend;
pub mod baseline;
pub mod colour;
pub mod data;
mod error;
pub mod export;
mod instances;
pub mod io;
pub mod metrics;
pub mod model;
pub mod output;
pub mod pipeline;
pub mod postprocess;
pub mod pretrained;
pub mod slide;
pub mod stain;
#[cfg(test)]
mod test_util;
pub mod train;
mod union_find;

pub use burn;
pub use error::{Error, Result};
pub use instances::{
    Instance, InstanceMask, InstanceSegmenter, Instances, Nuclei, Nucleus, OverlapConfig,
};

/// The README's code examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
