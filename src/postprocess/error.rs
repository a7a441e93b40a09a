//! Errors of the post-processing area: invalid configurations and segmenters that return
//! something other than what they were asked for.

/// Errors from test-time augmentation, tiling and stitching. Every variant says which
/// setting, view or tile was wrong and what was found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PostprocessError {
    /// A configuration value outside its valid range.
    #[error("{config}.{field} = {value} is invalid: {reason}")]
    InvalidConfig {
        /// The configuration type, e.g. `TilerConfig`.
        config: &'static str,
        /// The field.
        field: &'static str,
        /// The value given, formatted.
        value: String,
        /// The valid range.
        reason: &'static str,
    },
    /// A string that names no [`TtaSet`](super::TtaSet).
    #[error("unknown test-time augmentation set {0:?}: expected none, paper or d4")]
    UnknownTtaSet(String),
    /// A string that names no [`UnmatchedPolicy`](super::UnmatchedPolicy).
    #[error("unknown policy for unmatched nuclei {0:?}: expected drop or majority")]
    UnknownUnmatchedPolicy(String),
    /// A segmenter returned a different number of results than images it was given.
    #[error("{context}: the segmenter returned {got} results for a batch of {expected} images")]
    BatchLength {
        /// Where (e.g. `tiling` or `test-time augmentation`).
        context: &'static str,
        /// Images in the batch.
        expected: usize,
        /// Results returned.
        got: usize,
    },
    /// Instances that describe an image of another size than the one they belong to.
    #[error(
        "{context}: instances are for a {got_width}x{got_height} image, expected {width}x{height}"
    )]
    SizeMismatch {
        /// Which view or tile, e.g. `TTA view rot90` or `tile 3 at (250, 0)`.
        context: String,
        /// Expected width.
        width: u32,
        /// Expected height.
        height: u32,
        /// Width found.
        got_width: u32,
        /// Height found.
        got_height: u32,
    },
    /// A mask whose bit vector does not match its box.
    #[error("{context}: instance {index} has a {width}x{height} box but {len} mask bits")]
    MalformedMask {
        /// Which view or tile.
        context: String,
        /// Index of the instance in its list.
        index: usize,
        /// Box width.
        width: u32,
        /// Box height.
        height: u32,
        /// Length of the bit vector.
        len: usize,
    },
    /// Merging needs at least one view.
    #[error("test-time augmentation merge: no views given")]
    NoViews,
    /// An ensemble of segmenters with none, or with more than there are views to share.
    #[error("test-time augmentation: {members} models for {views} distinct views; give between 1 and {views} (without augmentation, any number from 1)")]
    Members {
        /// Members given.
        members: usize,
        /// Distinct views of the set (with no augmentation, the members themselves).
        views: usize,
    },
    /// More views than the vote counter holds.
    #[error("test-time augmentation merge: {0} views given, at most 65535 are supported")]
    TooManyViews(usize),
}
