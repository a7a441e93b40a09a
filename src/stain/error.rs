use std::path::PathBuf;

use crate::data::DataError;

/// Errors from stain normalization: fitting, transforming, training, saving and loading.
#[derive(Debug, thiserror::Error)]
pub enum StainError {
    /// A template (or training image) without enough tissue to estimate stain statistics.
    #[error(
        "{what} has no tissue: {tissue} of {total} pixels have optical density ≥ {threshold} \
         in every channel (at least {min} needed)"
    )]
    NoTissue {
        /// What was being fitted, e.g. "Macenko template".
        what: String,
        /// Tissue pixels found.
        tissue: usize,
        /// All pixels.
        total: usize,
        /// The optical-density threshold used.
        threshold: f32,
        /// The minimum required.
        min: usize,
    },
    /// Stain vectors that cannot be separated (e.g. an image of a single colour).
    #[error("{what}: cannot separate two stains: {message}")]
    Degenerate {
        /// What was being estimated.
        what: String,
        /// Why.
        message: String,
    },
    /// `transform` was called before `fit`.
    #[error("{method} normalizer has no template: call fit(template) first")]
    NotFitted {
        /// The normalizer.
        method: &'static str,
    },
    /// An image with zero width or height.
    #[error("empty image ({width}x{height})")]
    EmptyImage {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// A normalizer name that is not `dcgmm`, `macenko`, `reinhard` or `none`.
    #[error("unknown stain normalizer `{0}`: expected one of dcgmm, macenko, reinhard, none")]
    UnknownMethod(String),
    /// A normalizer that is fitted to a template was asked for without one.
    #[error("{method} normalization needs a template image to fit to")]
    TemplateNeeded {
        /// The normalizer.
        method: super::NormalizerKind,
    },
    /// An invalid configuration value.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A template whose number of clusters differs from the model's.
    #[error("template has {template} clusters but the DCGMM model has {model}")]
    ClusterMismatch {
        /// Clusters in the template.
        template: usize,
        /// Clusters of the model.
        model: usize,
    },
    /// Training images missing or too small for the crop.
    #[error("training data: {0}")]
    TrainingData(String),
    /// Training produced a non-finite loss.
    #[error("DCGMM training diverged: negative log-likelihood {nll} at step {step}")]
    Diverged {
        /// The step.
        step: usize,
        /// The loss value.
        nll: f32,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A model checkpoint that cannot be read or does not fit the configuration.
    #[error("{}: cannot load model: {message}", path.display())]
    Model {
        /// The checkpoint.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A template or configuration JSON that cannot be parsed or written.
    #[error("{}: invalid JSON: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// Reading images.
    #[error(transparent)]
    Data(#[from] DataError),
}

impl StainError {
    /// An error reading JSON: [`StainError::Json`] for malformed content, else
    /// [`StainError::Io`].
    pub(crate) fn json(path: impl Into<PathBuf>, e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::InvalidData {
            StainError::Json {
                path: path.into(),
                message: e.to_string(),
            }
        } else {
            StainError::io(path, e)
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StainError::Io {
            path: path.into(),
            source,
        }
    }
}
