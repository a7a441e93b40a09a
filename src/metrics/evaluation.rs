//! Scoring a folder of predicted label maps against a folder of ground truth.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use super::{DatasetSummary, ImageMetrics, SummaryValues};
use crate::{
    data::{read_label_map, read_monuseg_xml, LabelMap, MaskKind, TruthFile},
    Error,
};

/// One scored image.
#[derive(Debug, Clone)]
pub struct EvaluatedImage {
    /// The file stem shared by truth and prediction.
    pub stem: String,
    /// Its metrics.
    pub metrics: ImageMetrics,
    /// True when no prediction file existed: it was scored as an empty prediction.
    pub prediction_missing: bool,
}

/// The result of [`evaluate_folders`].
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Per image, sorted by stem.
    pub images: Vec<EvaluatedImage>,
    /// Mean and pooled summaries.
    pub summary: DatasetSummary,
    /// Prediction files with no truth of the same stem (ignored).
    pub unmatched_predictions: Vec<PathBuf>,
}

/// Scores every truth file in `truth_dir` (label maps `.png` / `.tif`, or MoNuSeg `.xml`
/// rasterized at the prediction's size) against the prediction of the same stem in
/// `pred_dir` (`<stem>.png` or `segment`'s `<stem>_labels.png`; `.tif` alike). A missing
/// prediction counts as an empty one and is flagged, not skipped; a folder where no
/// prediction matches any truth is an error (the wrong folder, or other names).
pub fn evaluate_folders(
    truth_dir: impl AsRef<Path>,
    pred_dir: impl AsRef<Path>,
) -> Result<Evaluation, Error> {
    evaluate_folders_where(truth_dir, pred_dir, |_| true)
}

/// [`evaluate_folders`] restricted to the truth files whose stem passes `keep` (e.g. the
/// ids of a [`KumarSplit`](crate::data::KumarSplit)).
pub fn evaluate_folders_where(
    truth_dir: impl AsRef<Path>,
    pred_dir: impl AsRef<Path>,
    keep: impl Fn(&str) -> bool,
) -> Result<Evaluation, Error> {
    use crate::data::files_by_stem;
    let (truth_dir, pred_dir) = (truth_dir.as_ref(), pred_dir.as_ref());
    let mut truths = files_by_stem(truth_dir, &["png", "tif", "tiff", "xml"])?;
    truths.retain(|stem, _| keep(stem));
    let preds = files_by_stem(pred_dir, &["png", "tif", "tiff"])?;
    if truths.is_empty() {
        return Err(crate::data::DataError::Dataset {
            dir: truth_dir.to_path_buf(),
            message:
                "no truth files (.png, .tif label maps or .xml annotations) found, or none selected"
                    .into(),
        }
        .into());
    }
    // A prediction is `<stem>.png` (what `baseline` and `Pipeline::evaluate` write) or
    // `<stem>_labels.png` (what `segment` writes); `.tif` alike.
    let mut paired = BTreeMap::new();
    for stem in truths.keys() {
        let plain = preds.get(stem.as_str());
        let labels = preds.get(format!("{stem}{LABELS_SUFFIX}").as_str());
        if let (Some(a), Some(b)) = (plain, labels) {
            return Err(crate::data::DataError::DuplicateStem {
                dir: pred_dir.to_path_buf(),
                stem: stem.clone(),
                first: a.clone(),
                second: b.clone(),
            }
            .into());
        }
        if let Some(p) = plain.or(labels) {
            paired.insert(stem.clone(), p.clone());
        }
    }
    if paired.is_empty() {
        return Err(crate::data::DataError::Pairing {
            dir: pred_dir.to_path_buf(),
            message: format!(
                "no prediction matches any of the {} truth file(s) in {} (expected \
                 <stem>.png or <stem>{LABELS_SUFFIX}.png / .tif for a truth <stem>, e.g. {})",
                truths.len(),
                truth_dir.display(),
                truths.keys().next().map_or("", String::as_str)
            ),
        }
        .into());
    }
    let mut images = Vec::new();
    for (stem, truth_path) in &truths {
        let truth_file = if truth_path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("xml"))
        {
            TruthFile::Xml(truth_path.clone())
        } else {
            TruthFile::LabelMap(truth_path.clone(), MaskKind::Auto)
        };
        let pred_path = paired.get(stem);
        let pred = pred_path.map(read_label_map).transpose()?;
        let truth = match (&truth_file, &pred) {
            (TruthFile::Xml(p), None) => {
                // No prediction to take the size from: any canvas holding every polygon
                // gives the same scores against an empty prediction.
                let annotation = read_monuseg_xml(p)?;
                let (w, h) = annotation.extent(p)?;
                annotation.to_label_map(w, h)
            }
            (t, Some(p)) => t.read(p.dimensions())?,
            (t, None) => t.read((0, 0))?,
        };
        let prediction_missing = pred.is_none();
        let pred = pred.unwrap_or_else(|| LabelMap::new(truth.width(), truth.height()));
        if let (Some(pred_path), false) = (pred_path, pred.dimensions() == truth.dimensions()) {
            return Err(crate::data::DataError::SizeMismatch {
                a: truth_path.clone(),
                a_size: truth.dimensions(),
                b: pred_path.clone(),
                b_size: pred.dimensions(),
            }
            .into());
        }
        images.push(EvaluatedImage {
            stem: stem.clone(),
            metrics: ImageMetrics::compute(&truth, &pred)?,
            prediction_missing,
        });
    }
    let used: Vec<&PathBuf> = paired.values().collect();
    let unmatched_predictions = preds.into_values().filter(|p| !used.contains(&p)).collect();
    let mut evaluation = Evaluation::from_images(images);
    evaluation.unmatched_predictions = unmatched_predictions;
    Ok(evaluation)
}

/// The suffix `segment` gives its label maps (`<stem>_labels.png`).
const LABELS_SUFFIX: &str = "_labels";

impl Evaluation {
    /// Summarizes already scored images.
    pub fn from_images(images: Vec<EvaluatedImage>) -> Self {
        let per_image: Vec<ImageMetrics> = images.iter().map(|i| i.metrics.clone()).collect();
        Evaluation {
            summary: DatasetSummary::new(&per_image),
            images,
            unmatched_predictions: Vec::new(),
        }
    }

    /// A fixed-width table: one row per image, then the mean and pooled summaries.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let header = format!(
            "{:<28} {:>5} {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}",
            "image", "true", "pred", "AJI", "AJI+", "Dice", "PQ", "DQ", "SQ", "F1@.5", "F1@D.2"
        );
        let _ = writeln!(s, "{header}");
        let _ = writeln!(s, "{}", "-".repeat(header.len()));
        for img in &self.images {
            let m = &img.metrics;
            let name = if img.prediction_missing {
                format!("{} (no pred)", img.stem)
            } else {
                img.stem.clone()
            };
            let values: Vec<String> = headline(m).iter().map(|v| format!("{v:>6.4}")).collect();
            let _ = writeln!(
                s,
                "{:<28} {:>5} {:>5} {}",
                truncate(&name, 28),
                m.n_true,
                m.n_pred,
                values.join(" ")
            );
        }
        let _ = writeln!(s, "{}", "-".repeat(header.len()));
        let n_true: usize = self.images.iter().map(|i| i.metrics.n_true).sum();
        let n_pred: usize = self.images.iter().map(|i| i.metrics.n_pred).sum();
        for (label, v) in [
            ("mean of images", &self.summary.mean),
            ("pooled over images", &self.summary.pooled),
        ] {
            let _ = writeln!(s, "{}", summary_row(label, n_true, n_pred, v));
        }
        let missing = self.images.iter().filter(|i| i.prediction_missing).count();
        if missing > 0 {
            let _ = writeln!(
                s,
                "{missing} truth file(s) had no prediction and were scored as empty predictions"
            );
        }
        if !self.unmatched_predictions.is_empty() {
            let _ = writeln!(
                s,
                "{} prediction file(s) without truth were ignored",
                self.unmatched_predictions.len()
            );
        }
        s
    }

    /// One JSON object keyed by image stem, each value holding the metrics under the
    /// names of `shared/metrics-golden/expected.json`, plus `n_true`, `n_pred` and
    /// `prediction_missing`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut root = serde_json::Map::new();
        for img in &self.images {
            let mut m = img.metrics.to_json();
            m.insert("prediction_missing".into(), img.prediction_missing.into());
            root.insert(img.stem.clone(), m.into());
        }
        root.into()
    }
}

/// The header of [`Evaluation::per_image_csv`]'s lines.
pub const PER_IMAGE_CSV_HEADER: &str =
    "setup,image,group,n_true,n_pred,aji,aji_plus,dice,pq,dq,sq,\
f1_iou50,f1_dice20,prediction_missing\n";

impl Evaluation {
    /// One CSV line per image under [`PER_IMAGE_CSV_HEADER`] (no header): the setup, the
    /// image's stem, its group (`group_of(stem)`, e.g. the organ), the counts of true and
    /// predicted nuclei and the image's metrics. Text fields holding a comma or a quote are
    /// quoted.
    pub fn per_image_csv(&self, setup: &str, group_of: impl Fn(&str) -> String) -> String {
        let mut s = String::new();
        for img in &self.images {
            let m = &img.metrics;
            let values: Vec<String> = headline(m).iter().map(|v| format!("{v:.6}")).collect();
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{}",
                csv_field(setup),
                csv_field(&img.stem),
                csv_field(&group_of(&img.stem)),
                m.n_true,
                m.n_pred,
                values.join(","),
                img.prediction_missing
            );
        }
        s
    }

    /// How many images have a predicted count within `tolerance` (a fraction: 0.1 for
    /// ±10 %) of their true count; an image without true nuclei counts when it has no
    /// predictions either.
    pub fn counts_within(&self, tolerance: f64) -> usize {
        self.images
            .iter()
            .filter(|i| {
                let (t, p) = (i.metrics.n_true as f64, i.metrics.n_pred as f64);
                (p - t).abs() <= tolerance * t
            })
            .count()
    }
}

/// An image's metrics in the order of its table's and CSV's columns: AJI, AJI+, Dice, PQ,
/// DQ, SQ, F1 at IoU 0.5, F1 at Dice 0.2.
fn headline(m: &ImageMetrics) -> [f64; 8] {
    let (pq, f1) = (&m.pq, (m.f1_iou50.f1, m.f1_dice20.f1));
    [m.aji, m.aji_plus, m.dice, pq.pq, pq.dq, pq.sq, f1.0, f1.1]
}

/// A CSV text field: quoted (quotes doubled) when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn summary_row(label: &str, n_true: usize, n_pred: usize, v: &SummaryValues) -> String {
    format!(
        "{:<28} {:>5} {:>5} {:>6.4} {:>6.4} {:>6.4} {:>6.4} {:>6.4} {:>6.4} {:>6.4} {:>6.4}",
        label,
        n_true,
        n_pred,
        v.aji,
        v.aji_plus,
        v.dice,
        v.pq_pq,
        v.pq_dq,
        v.pq_sq,
        v.f1_iou50_f1,
        v.f1_dice20_f1
    )
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::write_label_map;

    #[test]
    fn missing_prediction_is_scored_empty_and_flagged() {
        let root = crate::test_util::temp_dir("eval-missing");
        let (t, p) = (root.join("truth"), root.join("pred"));
        std::fs::create_dir_all(&t).unwrap();
        std::fs::create_dir_all(&p).unwrap();
        let a = LabelMap::from_fn(6, 6, |x, y| (x < 3 && y < 3) as u32 * 5);
        write_label_map(t.join("a.png"), &a).unwrap();
        write_label_map(t.join("b.png"), &a).unwrap();
        write_label_map(p.join("a.png"), &a).unwrap();
        write_label_map(p.join("extra.png"), &a).unwrap();
        let e = evaluate_folders(&t, &p).unwrap();
        assert_eq!(e.images.len(), 2);
        assert_eq!(e.images[0].metrics.aji, 1.0);
        assert!(e.images[1].prediction_missing);
        assert_eq!(e.images[1].metrics.aji, 0.0);
        assert_eq!(e.summary.mean.aji, 0.5);
        assert_eq!(e.unmatched_predictions.len(), 1);
        let table = e.table();
        assert!(
            table.contains("b (no pred)") && table.contains("pooled"),
            "{table}"
        );
        assert_eq!(e.to_json()["b"]["prediction_missing"], true);

        let csv = e.per_image_csv("Nuc,Seg", |stem| format!("g-{stem}"));
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            "\"Nuc,Seg\",a,g-a,1,1,1.000000,1.000000,1.000000,1.000000,1.000000,1.000000,\
             1.000000,1.000000,false"
        );
        assert!(
            lines[1].starts_with("\"Nuc,Seg\",b,g-b,1,0,0.000000,"),
            "{csv}"
        );
        assert!(lines[1].ends_with(",true"), "{csv}");
        let columns = PER_IMAGE_CSV_HEADER.trim_end().split(',').count();
        // One more comma-separated piece than columns: the quoted comma.
        assert!(lines.iter().all(|l| l.split(',').count() == columns + 1));
        // a: 1 of 1 predicted; b: 0 of 1, inside ±100 % but not ±99 %.
        assert_eq!(e.counts_within(0.1), 1);
        assert_eq!(e.counts_within(0.99), 1);
        assert_eq!(e.counts_within(1.0), 2);

        write_label_map(p.join("b.png"), &LabelMap::new(5, 6)).unwrap();
        let err = evaluate_folders(&t, &p).unwrap_err();
        assert!(err.to_string().contains("5x6"), "{err}");
    }
}

/// One row of a results table: a setup (method), a group of images (an organ, or
/// "overall") and the summary of that group.
#[derive(Debug, Clone)]
pub struct ResultRow {
    /// The method or setup, e.g. `NucSeg-P`.
    pub setup: String,
    /// The image group, e.g. `kidney` or `overall`.
    pub group: String,
    /// The group's summary.
    pub summary: DatasetSummary,
}

impl Evaluation {
    /// Summaries per group of images (`group_of(stem)`, e.g. the organ), sorted by group
    /// name, followed by `"overall"`.
    pub fn grouped(&self, group_of: impl Fn(&str) -> String) -> Vec<(String, DatasetSummary)> {
        let mut groups: std::collections::BTreeMap<String, Vec<ImageMetrics>> = Default::default();
        for img in &self.images {
            groups
                .entry(group_of(&img.stem))
                .or_default()
                .push(img.metrics.clone());
        }
        let mut out: Vec<(String, DatasetSummary)> = groups
            .into_iter()
            .map(|(g, m)| (g, DatasetSummary::new(&m)))
            .collect();
        out.push(("overall".into(), self.summary.clone()));
        out
    }
}

/// The paper-style table (Jung et al. 2019, Tables 2–3: precision, recall and F1 at the
/// paper's Dice > 0.2 matching, Dice, AJI), plus AJI+, PQ and F1 at IoU ≥ 0.5; means of
/// per-image values.
pub fn results_table(rows: &[ResultRow]) -> String {
    let mut s = String::new();
    let header = format!(
        "{:<11} {:<10} {:>4} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}",
        "setup", "organ", "n", "P", "R", "F1", "Dice", "AJI", "AJI+", "PQ", "F1@.5"
    );
    let _ = writeln!(s, "{header}");
    let _ = writeln!(s, "{}", "-".repeat(header.len()));
    for r in rows {
        let m = &r.summary.mean;
        let _ = writeln!(
            s,
            "{:<11} {:<10} {:>4} {:>6.4} {:>6.4} {:>6.4} {:>6.4} {:>6.4} {:>6.4} {:>6.4} {:>6.4}",
            r.setup,
            truncate(&r.group, 10),
            r.summary.images,
            m.f1_dice20_precision,
            m.f1_dice20_recall,
            m.f1_dice20_f1,
            m.dice,
            m.aji,
            m.aji_plus,
            m.pq_pq,
            m.f1_iou50_f1
        );
    }
    s
}

/// The rows as CSV: `setup,group,images,aggregation,<metric>...` with one line for the mean
/// of images and one for the pooled values of each row.
pub fn results_csv(rows: &[ResultRow]) -> String {
    let names: Vec<&str> = SummaryValues::default()
        .named()
        .iter()
        .map(|(n, _)| *n)
        .collect();
    let mut s = format!("setup,group,images,aggregation,{}\n", names.join(","));
    for r in rows {
        for (agg, v) in [("mean", &r.summary.mean), ("pooled", &r.summary.pooled)] {
            let values: Vec<String> = v.named().iter().map(|(_, x)| format!("{x:.6}")).collect();
            let _ = writeln!(
                s,
                "{},{},{},{agg},{}",
                r.setup,
                r.group,
                r.summary.images,
                values.join(",")
            );
        }
    }
    s
}
