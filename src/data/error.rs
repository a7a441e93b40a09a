use std::path::{Path, PathBuf};

/// Errors from reading or writing images, label maps, annotations and data sets.
/// Every variant names the file (or folder) and what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not a readable image (unknown format, truncated, corrupt).
    #[error("{}: cannot decode image: {message}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// The file declares more pixels than the budget allows ([`crate::data::max_pixels`]).
    #[error(
        "{}: image is {width}x{height} = {} pixels, over the limit of {max_pixels} \
         (a corrupt or malicious header, or a whole slide, which is read tile by tile); \
         raise the limit if the image is real",
        path.display(), u64::from(*width) * u64::from(*height)
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The budget.
        max_pixels: u64,
    },
    /// Two files of one folder share a stem, so which one is meant is ambiguous.
    #[error(
        "{}: {} and {} share the name '{stem}'; keep one of them",
        dir.display(),
        first.file_name().unwrap_or_default().to_string_lossy(),
        second.file_name().unwrap_or_default().to_string_lossy()
    )]
    DuplicateStem {
        /// The folder.
        dir: PathBuf,
        /// The shared stem.
        stem: String,
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// A greyscale image where an RGB H&E image was expected.
    #[error(
        "{}: greyscale image ({channels} channel(s)); nucseg expects an RGB H&E image \
         (use ReadOptions {{ grey: GreyPolicy::Replicate, .. }} to convert it)",
        path.display()
    )]
    Greyscale {
        /// The file.
        path: PathBuf,
        /// Channels found.
        channels: u8,
    },
    /// A label map whose pixel format cannot hold instance ids.
    #[error("{}: not an instance label map: {message}", path.display())]
    NotALabelMap {
        /// The file.
        path: PathBuf,
        /// What was found.
        message: String,
    },
    /// The image could not be encoded.
    #[error("{}: cannot write: {message}", path.display())]
    Encode {
        /// The file.
        path: PathBuf,
        /// The encoder's message.
        message: String,
    },
    /// A 16-bit PNG cannot hold this label map.
    #[error(
        "{}: label id {max_id} does not fit a 16-bit PNG ({count} instances); \
         write a .tif (32-bit) instead{}",
        path.display(),
        if *count <= 65535 { " or relabel the ids sequentially" } else { "" }
    )]
    TooManyInstances {
        /// The file.
        path: PathBuf,
        /// Largest id in the map.
        max_id: u32,
        /// Number of instances.
        count: usize,
    },
    /// The XML file is malformed or not an Aperio / MoNuSeg annotation.
    #[error("{}: invalid annotation XML: {message}", path.display())]
    Xml {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line where known.
        message: String,
    },
    /// An annotation file with no usable region.
    #[error("{}: annotation has no region with at least 3 vertices ({skipped} skipped)", path.display())]
    NoRegions {
        /// The file.
        path: PathBuf,
        /// Regions skipped for having fewer than 3 vertices.
        skipped: usize,
    },
    /// Two files that must describe the same pixels have different sizes.
    #[error(
        "size mismatch: {} is {}x{} but {} is {}x{}",
        a.display(), a_size.0, a_size.1, b.display(), b_size.0, b_size.1
    )]
    SizeMismatch {
        /// The first file (usually the image).
        a: PathBuf,
        /// Its width and height.
        a_size: (u32, u32),
        /// The second file (usually the annotation).
        b: PathBuf,
        /// Its width and height.
        b_size: (u32, u32),
    },
    /// Images and labels of a data set folder do not pair up by file stem.
    #[error("{}: {message}", dir.display())]
    Pairing {
        /// The data set folder.
        dir: PathBuf,
        /// Which names are unpaired.
        message: String,
    },
    /// A data set folder without the expected layout or contents.
    #[error("{}: {message}", dir.display())]
    Dataset {
        /// The folder.
        dir: PathBuf,
        /// What is missing.
        message: String,
    },
    /// An output file exists and overwriting was not allowed.
    #[error("{} already exists and overwriting was not allowed", path.display())]
    WouldOverwrite {
        /// The existing file.
        path: PathBuf,
    },
    /// An output would replace one of the inputs.
    #[error(
        "{} is one of the input files and would be replaced; write the outputs to another folder",
        path.display()
    )]
    WouldReplaceInput {
        /// The input file.
        path: PathBuf,
    },
    /// A buffer whose length does not match the stated size.
    #[error("buffer of {len} values does not match a {width}x{height} image")]
    BufferSize {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Buffer length.
        len: usize,
    },
}

impl DataError {
    pub(crate) fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub(crate) fn decode(path: impl AsRef<Path>, message: impl ToString) -> Self {
        DataError::Decode {
            path: path.as_ref().to_path_buf(),
            message: message.to_string(),
        }
    }

    pub(crate) fn encode(path: impl AsRef<Path>, message: impl ToString) -> Self {
        DataError::Encode {
            path: path.as_ref().to_path_buf(),
            message: message.to_string(),
        }
    }
}
