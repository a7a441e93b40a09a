use std::path::PathBuf;

/// Errors from reading whole-slide images and segmenting them. Every variant names the
/// file (slide, manifest or output folder) and what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum SlideError {
    /// The file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not a TIFF the reader understands (bad header, broken directory).
    #[error("{}: not a readable TIFF slide: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A pyramid level uses a layout or compression the pure-Rust reader does not decode.
    #[error("{}: level {level}: {what}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The pyramid level (0 = full resolution).
        level: usize,
        /// What is not supported, and what to do instead.
        what: String,
    },
    /// One tile (or strip) of a level could not be read or decoded.
    #[error("{}: level {level}, tile {tile}: {message}", path.display())]
    Tile {
        /// The file.
        path: PathBuf,
        /// The pyramid level.
        level: usize,
        /// The tile's index in the level (row-major).
        tile: u64,
        /// The decoder's message.
        message: String,
    },
    /// The pixel size is missing where it is needed, or not a plausible microscope value.
    #[error("{}: {message}", path.display())]
    PixelSize {
        /// The file.
        path: PathBuf,
        /// What was wrong, and the option that overrides it.
        message: String,
    },
    /// A region request outside what the reader allows (empty, or over the pixel budget).
    #[error("{}: region {width}x{height} at ({x}, {y}) of level {level}: {reason}", path.display())]
    Region {
        /// The file.
        path: PathBuf,
        /// The level.
        level: usize,
        /// Left column.
        x: i64,
        /// Top row.
        y: i64,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A run's settings or its input (manifest row, shard spec, work folder) are invalid.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file or folder concerned.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

impl SlideError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SlideError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        SlideError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}
