//! Data in and out: H&E images, instance label maps, MoNuSeg / Kumar XML annotations,
//! Naylor-style masks and the data sets built from them.
//!
//! Conventions used throughout nucseg:
//! - images are 8-bit RGB ([`RgbImage`], row-major, `(x, y)` with `x` the column);
//! - an instance label map ([`LabelMap`]) holds one `u32` per pixel: `0` is background and
//!   every other value is one nucleus (ids need not be contiguous).

mod augment;
mod components;
mod dataset;
mod error;
mod image_io;
mod label_map;
mod monuseg_xml;

pub use augment::{hed_jitter, random_crop};
pub use components::{connected_components, Connectivity};
pub(crate) use dataset::files_by_stem;
pub use dataset::{
    image_inputs, list_images, open_dataset, KumarSplit, MonusegDataset, Organ,
    PairedFolderDataset, Sample, SampleInfo, TruthFile, IMAGE_EXTENSIONS, KUMAR_IMAGES,
};
pub use error::DataError;
pub use image::RgbImage;
pub use image_io::{read_rgb, read_rgb_with, write_rgb_png, GreyPolicy, ReadOptions};
pub use label_map::{
    read_instance_mask, read_label_map, write_label_map, InstanceStats, LabelMap, MaskKind,
};
pub use monuseg_xml::{parse_monuseg_xml, read_monuseg_xml, MonusegAnnotation, Polygon};

use std::path::Path;

/// Writes `bytes` to `path` atomically (see [`write_atomically`]).
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    use std::io::Write;
    write_atomically(path, |w| {
        w.write_all(bytes).map_err(|e| DataError::io(path, e))
    })
}

/// Writes a file atomically: the bytes go to a temporary file beside `path`, which is then
/// renamed over it, so a crash never leaves a half-written file under the final name.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<(), DataError>,
) -> Result<(), DataError> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| DataError::io(path, std::io::Error::other("not a file path")))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let file = std::fs::File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        let mut w = std::io::BufWriter::new(file);
        write(&mut w)?;
        w.flush().map_err(|e| DataError::io(&tmp, e))?;
        w.get_ref().sync_all().map_err(|e| DataError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
