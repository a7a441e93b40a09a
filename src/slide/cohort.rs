//! Cohorts: a manifest of slides whose `N`-th row one cluster task runs (a Slurm array
//! task's `SLURM_ARRAY_TASK_ID`, a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX`), and
//! the table of every finished slide's summary.
//!
//! A manifest is a CSV file with a header row naming at least a `slide` column (a path,
//! relative to the manifest's folder unless absolute); an `id` column names the slide's
//! output folder (default: the slide's file stem) and an `mpp` column overrides its pixel
//! size. Fields are plain (no quotes or commas inside a field); `#` starts a comment line.

use std::path::{Path, PathBuf};

use super::{SlideError, SlideSummary, SUMMARY_FILE};

/// One slide of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRow {
    /// The slide file.
    pub slide: PathBuf,
    /// Its output folder's name.
    pub id: String,
    /// Pixel size override (µm).
    pub mpp: Option<f64>,
}

/// Reads a manifest (see the module docs).
///
/// # Errors
/// The file cannot be read; no `slide` column; a row with the wrong number of fields, an
/// empty slide, a quoted field, an `mpp` that is not a number; two rows with one id.
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestRow>, SlideError> {
    let text = std::fs::read_to_string(path).map_err(|e| SlideError::io(path, e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let (_, header) = lines.next().ok_or_else(|| {
        SlideError::invalid(
            path,
            "empty manifest (a header with a `slide` column is needed)",
        )
    })?;
    let columns: Vec<String> = header.split(',').map(|c| c.trim().to_lowercase()).collect();
    let col = |name: &str| columns.iter().position(|c| c == name);
    let slide_col = col("slide").ok_or_else(|| {
        SlideError::invalid(path, format!("no `slide` column in the header ({header})"))
    })?;
    let (id_col, mpp_col) = (col("id"), col("mpp"));
    let mut rows: Vec<ManifestRow> = Vec::new();
    for (n, line) in lines {
        let bad = |what: String| SlideError::invalid(path, format!("line {}: {what}", n + 1));
        if line.contains('"') {
            return Err(bad("quoted fields are not supported".into()));
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != columns.len() {
            return Err(bad(format!(
                "{} fields, the header has {}",
                fields.len(),
                columns.len()
            )));
        }
        let slide = fields[slide_col];
        if slide.is_empty() {
            return Err(bad("empty slide path".into()));
        }
        let slide = base.join(slide);
        let id = match id_col.map(|c| fields[c]) {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => crate::output::stem(&slide),
        };
        if id.contains(['/', '\\']) || id == "." || id == ".." {
            return Err(bad(format!("id '{id}' is not a folder name")));
        }
        let mpp = match mpp_col.map(|c| fields[c]) {
            Some("") | None => None,
            Some(v) => Some(
                v.parse::<f64>()
                    .map_err(|_| bad(format!("mpp '{v}' is not a number")))?,
            ),
        };
        if let Some(other) = rows.iter().find(|r| r.id == id) {
            return Err(bad(format!(
                "id '{id}' is also {}'s; give each slide its own id",
                other.slide.display()
            )));
        }
        rows.push(ManifestRow { slide, id, mpp });
    }
    Ok(rows)
}

/// The manifest index a cluster task runs: `index` if given, else the environment's
/// `SLURM_ARRAY_TASK_ID` or `JOB_COMPLETION_INDEX`.
pub fn task_index(index: Option<usize>) -> Option<usize> {
    index.or_else(|| {
        ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"]
            .iter()
            .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
    })
}

/// The summaries of the finished slides under `out` (each `out/<id>/summary.json`), by id.
///
/// # Errors
/// `out` cannot be listed, or a summary cannot be read.
pub fn cohort_summaries(out: &Path) -> Result<Vec<(String, SlideSummary)>, SlideError> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(out).map_err(|e| SlideError::io(out, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SlideError::io(out, e))?;
        let summary = entry.path().join(SUMMARY_FILE);
        if summary.is_file() {
            let s: SlideSummary =
                crate::io::read_json(&summary).map_err(|e| SlideError::io(&summary, e))?;
            found.push((entry.file_name().to_string_lossy().into_owned(), s));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// The cohort table as CSV: one row per finished slide.
pub fn cohort_csv(summaries: &[(String, SlideSummary)]) -> String {
    let mut csv = String::from(
        "id,slide,width,height,mpp,tissue_area_mm2,nuclei,density_per_mm2,area_median,\
         area_unit,segment_seconds,tissue_mpx_per_second\n",
    );
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
    for (id, s) in summaries {
        csv.push_str(&format!(
            "{id},{},{},{},{},{},{},{},{},{},{:.1},{:.4}\n",
            s.plan.slide,
            s.plan.width,
            s.plan.height,
            opt(s.plan.mpp),
            opt(s.tissue_area_mm2),
            s.nuclei,
            opt(s.density_per_mm2),
            opt(s.area.as_ref().map(|a| a.median)),
            s.area_unit,
            s.segment_seconds,
            s.tissue_mpx_per_second
        ));
    }
    csv
}
