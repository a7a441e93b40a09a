//! Nuclei as a GeoJSON `FeatureCollection` that QuPath (0.4 and later, *File › Import
//! objects from file*, or drag and drop) reads as detection objects with a class and
//! measurements.
//!
//! Each nucleus is one feature:
//!
//! ```json
//! { "type": "Feature", "id": "nucleus-12",
//!   "geometry": { "type": "Polygon", "coordinates": [[[x, y], …, [x, y]]] },
//!   "properties": { "objectType": "detection", "name": "nucleus-12",
//!                   "classification": { "name": "Nucleus", "color": [0, 255, 255] },
//!                   "measurements": { "Area": 312.0, "Perimeter": 64.2, "Score": 0.98, … } } }
//! ```
//!
//! - The ring is the nucleus's [outer contour](super::outer_contour), closed (first point
//!   repeated last), in full-resolution pixel coordinates with the origin at the image's
//!   top-left corner, shifted by [`GeoJsonConfig::origin`] so that the tiles of a
//!   whole-slide image land in place.
//! - `id` is a stable string, `<id_prefix><label id>`, matching the CSV's `id` column.
//!   QuPath keeps its own object ids (UUIDs) and ignores others, so the same string is also
//!   the object's `name`, which QuPath shows and keeps.
//! - `measurements` is a name → number map (QuPath 0.4's format), in pixel units:
//!   `Area` (px²), `Perimeter`, `Equivalent diameter`, `Major axis length`,
//!   `Minor axis length` (px), `Eccentricity`, `Solidity`, `Mean R`, `Mean G`, `Mean B`,
//!   `Hematoxylin OD mean` (QuPath's name for the Ruifrok & Johnston haematoxylin
//!   channel) and `Score`; definitions in [`measurements`](super::measurements). QuPath
//!   computes centroids itself from the polygon.

use burn::config::Config;
use serde_json::{json, Map, Value};

use super::{ExportError, NucleusMeasurements};
use crate::instances::Nuclei;

/// How nuclei appear in QuPath.
#[derive(Config, Debug, PartialEq)]
pub struct GeoJsonConfig {
    /// QuPath classification name.
    #[config(default = "String::from(\"Nucleus\")")]
    pub class_name: String,
    /// Classification colour (RGB), the colour QuPath draws the class in.
    #[config(default = "[0, 255, 255]")]
    pub class_color: [u8; 3],
    /// Feature ids and names are this prefix followed by the label id.
    #[config(default = "String::from(\"nucleus-\")")]
    pub id_prefix: String,
    /// Added to every coordinate: the image's top-left corner in the slide (px).
    #[config(default = "[0.0, 0.0]")]
    pub origin: [f64; 2],
}

/// The nuclei as a GeoJSON `FeatureCollection` (see the module docs), one feature per
/// nucleus in id order. `rows` are the nuclei's measurements, in the same order (as
/// [`measure_nuclei`](super::measure_nuclei) returns them).
///
/// # Errors
/// [`ExportError::MeasurementMismatch`] when `rows` are not the nuclei's rows.
pub fn feature_collection(
    nuclei: &Nuclei,
    rows: &[NucleusMeasurements],
    config: &GeoJsonConfig,
) -> Result<Value, ExportError> {
    let first_mismatch = nuclei
        .items
        .iter()
        .zip(rows)
        .enumerate()
        .find(|(_, (n, r))| n.id != r.id)
        .map(|(i, (n, r))| (i, r.id, n.id));
    if rows.len() != nuclei.len() || first_mismatch.is_some() {
        return Err(ExportError::MeasurementMismatch {
            rows: rows.len(),
            nuclei: nuclei.len(),
            first_mismatch,
        });
    }
    let features: Vec<Value> = nuclei
        .items
        .iter()
        .zip(rows)
        .map(|(n, r)| {
            let ring = super::outer_contour(&n.mask)
                .expect("every nucleus has a pixel")
                .closed_ring(config.origin);
            let name = format!("{}{}", config.id_prefix, n.id);
            nucleus_feature(&ring, &name, &name, r, config)
        })
        .collect();
    Ok(json!({ "type": "FeatureCollection", "features": features }))
}

/// One nucleus as a QuPath detection feature (see the module docs): its closed outer
/// `ring`, feature `id` (QuPath ≥ 0.4 takes a UUID string as the object's id), `name` and
/// measurements.
pub fn nucleus_feature(
    ring: &[[f64; 2]],
    id: &str,
    name: &str,
    r: &NucleusMeasurements,
    config: &GeoJsonConfig,
) -> Value {
    json!({
        "type": "Feature",
        "id": id,
        "geometry": { "type": "Polygon", "coordinates": [ring] },
        "properties": {
            "objectType": "detection",
            "name": name,
            "classification": {
                "name": config.class_name,
                "color": config.class_color,
            },
            "measurements": measurement_map(r),
        }
    })
}

/// The QuPath measurement names and values of one nucleus.
fn measurement_map(r: &NucleusMeasurements) -> Map<String, Value> {
    let pairs: [(&str, f64); 12] = [
        ("Area", r.area as f64),
        ("Perimeter", r.perimeter),
        ("Equivalent diameter", r.equivalent_diameter),
        ("Major axis length", r.major_axis_length),
        ("Minor axis length", r.minor_axis_length),
        ("Eccentricity", r.eccentricity),
        ("Solidity", r.solidity),
        ("Mean R", r.mean_r),
        ("Mean G", r.mean_g),
        ("Mean B", r.mean_b),
        ("Hematoxylin OD mean", r.mean_haematoxylin),
        ("Score", r.score),
    ];
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect()
}
