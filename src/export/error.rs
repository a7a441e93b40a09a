//! Errors of the export area.

/// Errors from exporting results: inputs that do not describe the same image, and invalid
/// drawing settings. Writing errors are [`DataError`](crate::data::DataError)s.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExportError {
    /// The image and a label map (or instance list) have different sizes.
    #[error(
        "the image is {}x{} but the {what} is {}x{}",
        image.0, image.1, other.0, other.1
    )]
    SizeMismatch {
        /// What has the other size, e.g. `ground-truth label map`.
        what: &'static str,
        /// The image's width and height.
        image: (u32, u32),
        /// The other's width and height.
        other: (u32, u32),
    },
    /// Measurement rows that do not belong to the nuclei they are exported with.
    #[error(
        "{rows} measurement rows for {nuclei} nuclei{}",
        match first_mismatch {
            Some((i, row, nucleus)) =>
                format!(" (row {i} has id {row}, nucleus {i} has id {nucleus})"),
            None => String::new(),
        }
    )]
    MeasurementMismatch {
        /// Number of rows given.
        rows: usize,
        /// Number of nuclei.
        nuclei: usize,
        /// The first position whose ids differ: `(index, row id, nucleus id)`.
        first_mismatch: Option<(usize, u32, u32)>,
    },
    /// A setting outside its valid range.
    #[error("{config}.{field} = {value} is invalid: {reason}")]
    InvalidConfig {
        /// The configuration type, e.g. `OverlayConfig`.
        config: &'static str,
        /// The field.
        field: &'static str,
        /// The value given, formatted.
        value: String,
        /// The valid range.
        reason: &'static str,
    },
}
