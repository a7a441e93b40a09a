//! The crate-wide error type: one variant per area, each area with its own enum.

use crate::{
    backend::BackendError, data::DataError, export::ExportError, metrics::MetricsError,
    model::ModelError, pipeline::UnknownPreset, postprocess::PostprocessError, slide::SlideError,
    stain::StainError, train::TrainError,
};

/// Any error nucseg returns. Each area has its own error type
/// ([`DataError`], [`MetricsError`], [`BackendError`]); this enum wraps them so
/// that application code can use one `?` for all of them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing images, label maps, annotations or data sets.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Metric computation on inconsistent inputs.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// Selecting a compute device.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Building the network or loading its weights.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Test-time augmentation, tiling and stitching.
    #[error(transparent)]
    Postprocess(#[from] PostprocessError),
    /// Stain normalization.
    #[error(transparent)]
    Stain(#[from] StainError),
    /// Exporting contours, measurements, GeoJSON and overlays.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// Training stopped early (a non-finite loss, no data).
    #[error(transparent)]
    Train(#[from] TrainError),
    /// Reading whole-slide images and segmenting them.
    #[error(transparent)]
    Slide(#[from] SlideError),
    /// A name that is not one of the paper's four setups.
    #[error(transparent)]
    Preset(#[from] UnknownPreset),
}

/// `Result` with nucseg's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
