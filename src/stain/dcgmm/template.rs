//! The template a DCGMM maps images onto: its per-cluster colour statistics.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::mixture::GaussianMixture;
use crate::stain::StainError;

/// A template's per-cluster colour statistics, fitted once by [`Dcgmm::fit_template`](super::Dcgmm::fit_template) and
/// stored as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DcgmmTemplate {
    /// The template's mixture (`π_k`, `μ_k`, `Σ_k` in HSD).
    pub mixture: GaussianMixture,
}

impl DcgmmTemplate {
    /// Writes the template as JSON (atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), StainError> {
        let path = path.as_ref();
        crate::io::write_json(path, self).map_err(|e| StainError::io(path, e))
    }

    /// Reads a template written by [`save`](Self::save).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, StainError> {
        let path = path.as_ref();
        crate::io::read_json(path).map_err(|e| StainError::json(path, e))
    }
}
