//! Errors from building the network or reading and writing its weights.

use std::path::PathBuf;

/// Errors from building the network or loading its weights. Each variant names the
/// offending setting, file, key or shape.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration value the network cannot be built with.
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
    /// The weight file could not be opened or parsed as safetensors.
    #[error("cannot read weight file {}: {reason}", path.display())]
    WeightFile {
        /// The file.
        path: PathBuf,
        /// What went wrong (I/O error, corrupt header, ...).
        reason: String,
    },
    /// A new training run in a folder that holds another run's checkpoints.
    #[error(
        "{} holds {found} checkpoint entr{} of an earlier run; resume that run, or allow \
         replacing it",
        dir.display(), if *found == 1 { "y" } else { "ies" }
    )]
    CheckpointsExist {
        /// The checkpoint folder.
        dir: PathBuf,
        /// `step-*` folders and `latest` files found.
        found: usize,
    },
    /// A resumed run whose settings or data differ from the saved run's.
    #[error(
        "cannot resume {} exactly: the saved run differs in {differences}; use the saved \
         settings, or allow the changes",
        dir.display()
    )]
    ResumeMismatch {
        /// The checkpoint.
        dir: PathBuf,
        /// What differs, `name saved → now`.
        differences: String,
    },
    /// A key remap pattern is not a valid regular expression.
    #[error("invalid key remap pattern `{pattern}`: {reason}")]
    BadRemap {
        /// The pattern.
        pattern: String,
        /// The regex compiler's message.
        reason: String,
    },
    /// Two file keys are renamed to the same key by the remaps.
    #[error("key remaps rename both `{first}` and `{second}` to `{key}`")]
    RemapCollision {
        /// The common new name.
        key: String,
        /// One original key.
        first: String,
        /// The other original key.
        second: String,
    },
    /// The file's keys do not match the model's parameters (strict loading).
    #[error(
        "weight file {} does not match the model: {} missing key(s) [{}]; {} unexpected key(s) [{}]",
        path.display(), missing.len(), short_list(missing), unexpected.len(), short_list(unexpected)
    )]
    KeyMismatch {
        /// The file.
        path: PathBuf,
        /// Model parameter paths the file does not provide.
        missing: Vec<String>,
        /// File keys (as stored in the file) that no model parameter takes.
        unexpected: Vec<String>,
    },
    /// Tensors in the file have different shapes from the parameters they map to.
    #[error(
        "weight file {}: {}{}",
        path.display(),
        mismatches.first().map(ToString::to_string).unwrap_or_default(),
        if mismatches.len() > 1 { format!(" (and {} more shape mismatch(es))", mismatches.len() - 1) } else { String::new() }
    )]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// Every mismatched tensor, sorted by model path.
        mismatches: Vec<TensorShapeMismatch>,
    },
    /// A network to average ([`crate::train::average_weights`]) is not built like the
    /// first.
    #[error("cannot average the networks: network {index} (counting from 1) {reason}")]
    AverageMismatch {
        /// Its position among the networks, counting from 1.
        index: usize,
        /// How it differs from the first.
        reason: String,
    },
    /// A tensor could not be converted or read (wrong dtype kind, corrupt data, ...).
    #[error("weight file {}: {reason}", path.display())]
    WeightLoad {
        /// The file.
        path: PathBuf,
        /// What went wrong, naming the tensor.
        reason: String,
    },
}

/// One tensor whose shape in a weight file differs from its model parameter's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorShapeMismatch {
    /// The model parameter path.
    pub key: String,
    /// The key as stored in the file (before remapping).
    pub file_key: String,
    /// The parameter's shape.
    pub expected: Vec<usize>,
    /// The file tensor's shape.
    pub found: Vec<usize>,
}

impl std::fmt::Display for TensorShapeMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tensor `{}` has shape {:?} but model parameter `{}` has shape {:?}",
            self.file_key, self.found, self.key, self.expected
        )
    }
}

/// The first few names of a list, then how many more: keeps an error on one line.
fn short_list(names: &[String]) -> String {
    let mut s = names.iter().take(4).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 4 {
        s.push_str(&format!(", … {} more", names.len() - 4));
    }
    s
}
