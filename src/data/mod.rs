//! Data in and out: H&E images, instance label maps, MoNuSeg / Kumar XML annotations,
//! Naylor-style masks and the data sets built from them.
//!
//! Conventions used throughout nucseg:
//! - images are 8-bit RGB ([`RgbImage`], row-major, `(x, y)` with `x` the column);
//! - an instance label map ([`LabelMap`]) holds one `u32` per pixel: `0` is background and
//!   every other value is one nucleus (ids need not be contiguous).

mod components;
mod dataset;
mod error;
mod image_io;
mod label_map;
mod monuseg_xml;
mod morphology;

pub use components::{connected_components, Connectivity};
pub(crate) use dataset::files_by_stem;
pub use dataset::{
    image_inputs, list_images, open_dataset, KumarSplit, MonusegDataset, Organ,
    PairedFolderDataset, Sample, SampleInfo, TruthFile, IMAGE_EXTENSIONS, KUMAR_IMAGES,
};
pub use error::DataError;
pub use image::RgbImage;
pub use image_io::{
    max_pixels, read_rgb, read_rgb_reporting, read_rgb_with, resize_by, resize_problem,
    set_max_pixels, write_rgb_png, GreyPolicy, ReadOptions, ReadReport, DEFAULT_MAX_PIXELS,
    RESIZE_FACTORS,
};
pub use label_map::{
    read_instance_mask, read_label_map, write_label_map, InstanceStats, LabelMap, MaskKind,
};
pub use monuseg_xml::{parse_monuseg_xml, read_monuseg_xml, MonusegAnnotation, Polygon};
pub use morphology::{distance_transform, watershed};

use std::path::Path;

/// Writes `bytes` to `path` atomically and durably ([`crate::io::write_atomic_bytes`]), an
/// error naming the file.
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    crate::io::write_atomic_bytes(path, bytes).map_err(|e| DataError::io(path, e))
}

/// [`crate::io::write_atomic`] for writers that fail with a [`DataError`] (an encoder's
/// error is returned as it is; I/O errors name the file).
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let mut inner = None;
    crate::io::write_atomic(path, |w| {
        write(w).map_err(|e| {
            inner = Some(e);
            std::io::Error::other("encoder failed")
        })
    })
    .map_err(|e| inner.take().unwrap_or_else(|| DataError::io(path, e)))
}
