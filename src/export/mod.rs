//! Results in the formats other tools read: nucleus outlines as polygons, per-nucleus
//! measurements (CSV for Excel / pandas), GeoJSON that QuPath imports as detections, and
//! overlays for an image viewer.
//!
//! Everything starts from [`Nuclei`]: the instance label map that is written to disk
//! together with each nucleus's pixels cropped to its box, so that the CSV rows, the GeoJSON
//! features and the label map's ids describe exactly the same pixels.
//!
//! - contours: outer boundary of a mask as a polygon through pixel corners
//!   ([`outer_contour`]);
//! - measurements: area, perimeter, moments, solidity, colour and haematoxylin per
//!   nucleus ([`NucleusMeasurements`], [`measurements_csv`]);
//! - GeoJSON: a QuPath-compatible `FeatureCollection` ([`feature_collection`]);
//! - overlays: outlines and the paper's Figure 6 comparison colours ([`outline_overlay`],
//!   [`comparison_overlay`]);
//! - [`write_all`]: all of it for one image, into an [`OutputDir`].
//!
//! Coordinates are image pixels: pixel `(x, y)` covers the square `[x, x + 1] × [y, y + 1]`
//! and has its centre at `(x + 0.5, y + 0.5)` in polygon coordinates. Centroids follow
//! scikit-image and [`LabelMap::stats`] instead: pixel `(x, y)` has centroid `(x, y)`.
//!
//! ```
//! use nucseg::{export, Instance, InstanceMask, Instances, Nuclei};
//!
//! let image = nucseg::data::RgbImage::from_pixel(8, 8, image::Rgb([120, 60, 160]));
//! let mut found = Instances::new(8, 8);
//! let square = InstanceMask::from_pixels((2..5).flat_map(|y| (2..5).map(move |x| (x, y))));
//! found.items.push(Instance::from_mask(square));
//! let nuclei = Nuclei::from_instances(&found);
//! let rows = export::measure_nuclei(&image, &nuclei)?;
//! assert_eq!((rows[0].id, rows[0].area), (1, 9));
//! let csv = export::measurements_csv(&rows);
//! assert!(csv.starts_with("id,centroid_x,centroid_y,area,perimeter"));
//! let json = export::feature_collection(&nuclei, &rows, &export::GeoJsonConfig::new())?;
//! assert_eq!(json["features"][0]["id"], "nucleus-1");
//! # Ok::<(), nucseg::Error>(())
//! ```

mod contours;
mod error;
mod geojson;
mod measurements;
mod overlay;

use std::path::PathBuf;

use burn::config::Config;
use image::RgbImage;

use crate::{
    data::{write_bytes_atomically, write_label_map, write_rgb_png, LabelMap},
    instances::Nuclei,
    output::OutputDir,
};

pub use contours::{outer_contour, Contour};
pub use error::ExportError;
pub use geojson::{feature_collection, nucleus_feature, GeoJsonConfig};
pub use measurements::{
    crofton_perimeter, hull_area_of_pixel_corners, measure_nuclei, measure_nucleus,
    measurements_csv, skimage_perimeter, NucleusMeasurements, CSV_COLUMNS,
};
pub use overlay::{
    comparison_overlay, comparison_overlay_with, instance_outline_overlay, outline_overlay,
    side_by_side, OverlayConfig,
};

impl Nuclei {
    /// The outline of each nucleus ([`outer_contour`] of its mask), in id order.
    pub fn contours(&self) -> Vec<Contour> {
        self.items
            .iter()
            .map(|n| outer_contour(&n.mask).expect("every nucleus has a pixel"))
            .collect()
    }
}

/// What [`write_all_with`] writes and how it draws it.
#[derive(Config, Debug, PartialEq)]
pub struct ExportConfig {
    /// Overlay colours and opacity.
    #[config(default = "OverlayConfig::new()")]
    pub overlay: OverlayConfig,
    /// GeoJSON class, colour, ids and origin.
    #[config(default = "GeoJsonConfig::new()")]
    pub geojson: GeoJsonConfig,
}

/// The files [`write_all`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedFiles {
    /// `<stem>_labels.png` (16-bit), or `<stem>_labels.tif` (32-bit) above 65535 nuclei.
    pub labels: PathBuf,
    /// `<stem>_overlay.png`: the predicted outlines over the image.
    pub overlay: PathBuf,
    /// `<stem>_comparison.png`: true / false positive and false negative pixels (Figure 6
    /// colours), when ground truth was given.
    pub comparison: Option<PathBuf>,
    /// `<stem>.geojson`: the outlines for QuPath.
    pub geojson: PathBuf,
    /// `<stem>_nuclei.csv`: one row of measurements per nucleus.
    pub csv: PathBuf,
    /// Number of nuclei written.
    pub count: usize,
}

/// The names [`write_all`] gives the files of image `stem` (the label map as `.png`, which
/// becomes `.tif` above 65535 nuclei), with the comparison overlay when `with_truth`: what
/// a program claims up front with [`OutputDir::for_inputs`].
pub fn file_names(stem: &str, with_truth: bool) -> Vec<String> {
    let mut names = vec![
        format!("{stem}_labels.png"),
        format!("{stem}_overlay.png"),
        format!("{stem}.geojson"),
        format!("{stem}_nuclei.csv"),
    ];
    if with_truth {
        names.push(format!("{stem}_comparison.png"));
    }
    names
}

/// Writes everything for one image into `out`, with the default [`ExportConfig`]: see
/// [`write_all_with`].
pub fn write_all(
    out: &OutputDir,
    stem: &str,
    image: &RgbImage,
    nuclei: &Nuclei,
    truth: Option<&LabelMap>,
) -> crate::Result<ExportedFiles> {
    write_all_with(out, stem, image, nuclei, truth, &ExportConfig::new())
}

/// Writes the label map, the outline overlay, the GeoJSON outlines, the measurements CSV and
/// (with `truth`) the comparison overlay of one image into `out` (names in
/// [`ExportedFiles`]). Every name is claimed before anything is written, so an existing
/// file (without overwriting) stops the export before it starts; each file is written
/// atomically.
///
/// # Errors
/// [`ExportError::SizeMismatch`] when the image, the instances and the truth are not the
/// same size; [`DataError::WouldOverwrite`](crate::data::DataError::WouldOverwrite) and I/O
/// errors from writing.
pub fn write_all_with(
    out: &OutputDir,
    stem: &str,
    image: &RgbImage,
    nuclei: &Nuclei,
    truth: Option<&LabelMap>,
    config: &ExportConfig,
) -> crate::Result<ExportedFiles> {
    check_size(image, "nuclei", nuclei.labels.dimensions())?;
    if let Some(t) = truth {
        check_size(image, "ground-truth label map", t.dimensions())?;
    }
    config.overlay.validate()?;
    let label_ext = if nuclei.labels.max_id() > u16::MAX as u32 {
        "tif"
    } else {
        "png"
    };
    let labels_path = out.claim(&format!("{stem}_labels.{label_ext}"))?;
    let overlay_path = out.claim(&format!("{stem}_overlay.png"))?;
    let comparison_path = match truth {
        Some(_) => Some(out.claim(&format!("{stem}_comparison.png"))?),
        None => None,
    };
    let geojson_path = out.claim(&format!("{stem}.geojson"))?;
    let csv_path = out.claim(&format!("{stem}_nuclei.csv"))?;

    let rows = measure_nuclei(image, nuclei)?;
    let json = feature_collection(nuclei, &rows, &config.geojson)?;
    let overlay = outline_overlay(image, &nuclei.labels, config.overlay.outline_color)?;
    let comparison = match truth {
        Some(t) => Some(comparison_overlay_with(
            image,
            t,
            &nuclei.labels,
            &config.overlay,
        )?),
        None => None,
    };

    write_label_map(&labels_path, &nuclei.labels)?;
    write_rgb_png(&overlay_path, &overlay)?;
    if let (Some(path), Some(img)) = (&comparison_path, &comparison) {
        write_rgb_png(path, img)?;
    }
    let json_text = serde_json::to_string(&json).expect("a JSON value always serializes");
    write_bytes_atomically(&geojson_path, json_text.as_bytes())?;
    write_bytes_atomically(&csv_path, measurements_csv(&rows).as_bytes())?;
    Ok(ExportedFiles {
        labels: labels_path,
        overlay: overlay_path,
        comparison: comparison_path,
        geojson: geojson_path,
        csv: csv_path,
        count: nuclei.len(),
    })
}

/// An error unless `other` (named `what`) has the image's size.
pub(crate) fn check_size(
    image: &RgbImage,
    what: &'static str,
    other: (u32, u32),
) -> Result<(), ExportError> {
    if image.dimensions() != other {
        return Err(ExportError::SizeMismatch {
            what,
            image: image.dimensions(),
            other,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Instance, InstanceMask, Instances};

    fn inst(px: &[(u32, u32)], score: f32) -> Instance {
        Instance {
            score,
            ..Instance::from_mask(InstanceMask::from_pixels(px.to_vec()))
        }
    }

    #[test]
    fn from_instances_matches_to_label_map() {
        let mut list = Instances::new(6, 4);
        list.items.push(inst(&[(0, 0), (1, 0), (1, 1)], 0.5));
        list.items.push(inst(&[(1, 0), (2, 0), (2, 1)], 0.9));
        // Wholly covered by the 0.9 instance: dropped.
        list.items.push(inst(&[(2, 0)], 0.3));
        // Same score as the first: after it (list order).
        list.items.push(inst(&[(4, 2), (5, 3)], 0.5));
        // Partly outside the image: clipped.
        list.items.push(inst(&[(5, 0), (6, 0), (7, 1)], 0.7));
        let nuclei = Nuclei::from_instances(&list);
        assert_eq!(nuclei.labels, list.to_label_map());
        let ids: Vec<(u32, f32, u64)> = nuclei
            .items
            .iter()
            .map(|n| (n.id, n.score, n.mask.area()))
            .collect();
        assert_eq!(
            ids,
            vec![(1, 0.9, 3), (2, 0.7, 1), (3, 0.5, 2), (4, 0.5, 2)]
        );
        // The 0.5 instance lost pixel (1, 0) to the 0.9 one.
        assert_eq!(
            nuclei.items[2].mask,
            InstanceMask::from_pixels([(0, 0), (1, 1)])
        );
    }

    #[test]
    fn from_label_map_keeps_ids_and_pixels() {
        let labels = LabelMap::from_vec(4, 3, vec![0, 7, 7, 0, 3, 0, 7, 0, 3, 0, 0, 900]).unwrap();
        let nuclei = Nuclei::from_label_map(labels.clone());
        let ids: Vec<u32> = nuclei.items.iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![3, 7, 900]);
        assert_eq!(
            nuclei.items[1].mask,
            InstanceMask::from_pixels([(1, 0), (2, 0), (2, 1)])
        );
        assert_eq!(nuclei.items[2].mask.x0, 3);
        assert_eq!(nuclei.labels, labels);
        assert!(Nuclei::from_label_map(LabelMap::new(3, 3)).is_empty());
    }
}
