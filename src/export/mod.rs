//! Results in the formats other tools read: nucleus outlines as polygons, per-nucleus
//! measurements (CSV for Excel / pandas), GeoJSON that QuPath imports as detections, and
//! overlays for an image viewer.
//!
//! Everything starts from [`Nuclei`]: the instance label map that is written to disk
//! together with each nucleus's pixels cropped to its box, so that the CSV rows, the GeoJSON
//! features and the label map's ids describe exactly the same pixels.
//!
//! - [`contours`]: outer boundary of a mask as a polygon through pixel corners;
//! - [`measurements`]: area, perimeter, moments, solidity, colour and haematoxylin per
//!   nucleus ([`NucleusMeasurements`], [`measurements_csv`]);
//! - [`geojson`]: a QuPath-compatible `FeatureCollection` ([`feature_collection`]);
//! - [`overlay`]: outlines and the paper's Figure 6 comparison colours;
//! - [`write_all`]: all of it for one image, into an [`OutputDir`].
//!
//! Coordinates are image pixels: pixel `(x, y)` covers the square `[x, x + 1] × [y, y + 1]`
//! and has its centre at `(x + 0.5, y + 0.5)` in polygon coordinates. Centroids follow
//! scikit-image and [`LabelMap::stats`] instead: pixel `(x, y)` has centroid `(x, y)`.
//!
//! ```
//! use nucseg::{export, Instance, InstanceMask, Instances};
//!
//! let image = nucseg::data::RgbImage::from_pixel(8, 8, image::Rgb([120, 60, 160]));
//! let mut found = Instances::new(8, 8);
//! let square = InstanceMask::from_pixels((2..5).flat_map(|y| (2..5).map(move |x| (x, y))));
//! found.items.push(Instance::from_mask(square));
//! let nuclei = export::Nuclei::from_instances(&found);
//! let rows = export::measure_nuclei(&image, &nuclei)?;
//! assert_eq!((rows[0].id, rows[0].area), (1, 9));
//! let csv = export::measurements_csv(&rows);
//! assert!(csv.starts_with("id,centroid_x,centroid_y,area,perimeter"));
//! let json = export::feature_collection(&nuclei, &rows, &export::GeoJsonConfig::new())?;
//! assert_eq!(json["features"][0]["id"], "nucleus-1");
//! # Ok::<(), nucseg::Error>(())
//! ```

pub mod contours;
mod error;
pub mod geojson;
pub mod measurements;
pub mod overlay;

use std::path::PathBuf;

use burn::config::Config;
use image::RgbImage;

use crate::{
    data::{write_bytes_atomically, write_label_map, write_rgb_png, LabelMap},
    instances::{InstanceMask, Instances},
    output::OutputDir,
};

pub use contours::{outer_contour, Contour};
pub use error::ExportError;
pub use geojson::{feature_collection, GeoJsonConfig};
pub use measurements::{measure_nuclei, measure_nucleus, measurements_csv, NucleusMeasurements};
pub use overlay::{
    comparison_overlay, comparison_overlay_with, instance_outline_overlay, outline_overlay,
    side_by_side, OverlayConfig,
};

/// One nucleus of a label map: its id there, its pixels and its detector score.
#[derive(Debug, Clone, PartialEq)]
pub struct Nucleus {
    /// Its id in [`Nuclei::labels`] (`1..=N` for nuclei from [`Instances`]).
    pub id: u32,
    /// Its pixels in the label map, cropped to their tight box. Where instances overlap,
    /// only the pixels the label map gives this nucleus.
    pub mask: InstanceMask,
    /// Detector confidence (1 for nuclei read from a label map).
    pub score: f32,
    /// Class id (1 = nucleus).
    pub class_id: u32,
}

/// The nuclei of one image as a label map and a list, in increasing id order.
#[derive(Debug, Clone, PartialEq)]
pub struct Nuclei {
    /// The instance label map (`0` = background).
    pub labels: LabelMap,
    /// One entry per id present in `labels`, ascending by id.
    pub items: Vec<Nucleus>,
}

impl Nuclei {
    /// The nuclei of a segmenter's output, numbered as [`Instances::to_label_map`] numbers
    /// them: ids `1..=N` by decreasing score (ties keep list order), higher scores win
    /// overlapping pixels, instances left without a pixel are dropped; `labels` equals
    /// `instances.to_label_map()`. Mask pixels outside the image are ignored.
    ///
    /// Works inside each instance's box (plus one pass over the image to renumber).
    pub fn from_instances(instances: &Instances) -> Self {
        let (w, h) = (instances.width, instances.height);
        let order = instances.score_order();
        let mut labels = LabelMap::new(w, h);
        // Paint in increasing score order with provisional ids rank + 1, so that the higher
        // score wins.
        for (rank, &k) in order.iter().enumerate().rev() {
            let m = &instances.items[k].mask;
            let (x1, y1) = clipped_end(m, w, h);
            for y in m.y0.min(y1)..y1 {
                for x in m.x0.min(x1)..x1 {
                    if m.contains(x, y) {
                        labels.set(x, y, rank as u32 + 1);
                    }
                }
            }
        }
        // Keep the ranks that still own a pixel; they become ids 1..=N in rank order, as
        // `LabelMap::relabeled` numbers them.
        let mut new_id = vec![0u32; order.len() + 1];
        let mut items = Vec::new();
        let mut pixels = Vec::new();
        for (rank, &k) in order.iter().enumerate() {
            let inst = &instances.items[k];
            let m = &inst.mask;
            let (x1, y1) = clipped_end(m, w, h);
            pixels.clear();
            for y in m.y0.min(y1)..y1 {
                for x in m.x0.min(x1)..x1 {
                    if labels.get(x, y) == rank as u32 + 1 {
                        pixels.push((x, y));
                    }
                }
            }
            if pixels.is_empty() {
                continue;
            }
            let id = items.len() as u32 + 1;
            new_id[rank + 1] = id;
            items.push(Nucleus {
                id,
                mask: InstanceMask::from_pixels(pixels.iter().copied()),
                score: inst.score,
                class_id: inst.class_id,
            });
        }
        for v in labels.as_mut_slice() {
            *v = new_id[*v as usize];
        }
        Nuclei { labels, items }
    }

    /// The nuclei of a label map (e.g. ground truth), keeping its ids; score 1, class 1.
    /// One pass over the map to find each id's box, then work inside the boxes.
    pub fn from_label_map(labels: LabelMap) -> Self {
        let boxes = id_boxes(&labels);
        let items = boxes
            .into_iter()
            .map(|(id, [x0, y0, x1, y1])| {
                let (bw, bh) = (x1 - x0, y1 - y0);
                let mut data = vec![false; bw as usize * bh as usize];
                for y in y0..y1 {
                    for x in x0..x1 {
                        data[((y - y0) * bw + (x - x0)) as usize] = labels.get(x, y) == id;
                    }
                }
                Nucleus {
                    id,
                    mask: InstanceMask {
                        x0,
                        y0,
                        width: bw,
                        height: bh,
                        data,
                    },
                    score: 1.0,
                    class_id: 1,
                }
            })
            .collect();
        Nuclei { labels, items }
    }

    /// Number of nuclei.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The outline of each nucleus ([`outer_contour`] of its mask), in id order.
    pub fn contours(&self) -> Vec<Contour> {
        self.items
            .iter()
            .map(|n| outer_contour(&n.mask).expect("every nucleus has a pixel"))
            .collect()
    }
}

/// The end `(x1, y1)` (exclusive) of a mask's box, clipped to a `w × h` image.
fn clipped_end(m: &InstanceMask, w: u32, h: u32) -> (u32, u32) {
    (
        m.x0.saturating_add(m.width).min(w),
        m.y0.saturating_add(m.height).min(h),
    )
}

/// Each id of a label map with its box `[x0, y0, x1, y1]` (exclusive ends), ascending by
/// id, in one pass over the map.
fn id_boxes(labels: &LabelMap) -> Vec<(u32, [u32; 4])> {
    let w = labels.width() as usize;
    let mut boxes: std::collections::HashMap<u32, [u32; 4]> = Default::default();
    // Runs of equal ids are common (rows through a nucleus): one lookup per run.
    for (y, row) in labels.as_slice().chunks(w.max(1)).enumerate() {
        let y = y as u32;
        let mut x = 0;
        while x < row.len() {
            let id = row[x];
            let start = x;
            while x < row.len() && row[x] == id {
                x += 1;
            }
            if id != 0 {
                let b = boxes.entry(id).or_insert([u32::MAX, u32::MAX, 0, 0]);
                b[0] = b[0].min(start as u32);
                b[1] = b[1].min(y);
                b[2] = b[2].max(x as u32);
                b[3] = b[3].max(y + 1);
            }
        }
    }
    let mut out: Vec<(u32, [u32; 4])> = boxes.into_iter().collect();
    out.sort_unstable_by_key(|&(id, _)| id);
    out
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

/// Writes everything for one image into `out`, with the default [`ExportConfig`]: see
/// [`write_all_with`].
pub fn write_all(
    out: &OutputDir,
    stem: &str,
    image: &RgbImage,
    instances: &Instances,
    truth: Option<&LabelMap>,
) -> crate::Result<ExportedFiles> {
    write_all_with(out, stem, image, instances, truth, &ExportConfig::new())
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
    instances: &Instances,
    truth: Option<&LabelMap>,
    config: &ExportConfig,
) -> crate::Result<ExportedFiles> {
    check_size(image, "instances", (instances.width, instances.height))?;
    if let Some(t) = truth {
        check_size(image, "ground-truth label map", t.dimensions())?;
    }
    config.overlay.validate()?;
    let nuclei = Nuclei::from_instances(instances);
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

    let rows = measure_nuclei(image, &nuclei)?;
    let json = feature_collection(&nuclei, &rows, &config.geojson)?;
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
    use crate::Instance;

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
