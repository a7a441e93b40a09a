//! The trained model shipped with nucseg, and model bundles in general: the Mask R-CNN
//! weights, the configuration that builds them, and the stain normalizer the model was
//! trained with.
//!
//! A bundle named `NAME` in a folder is `NAME.safetensors` (or `NAME.bpk`) + `NAME.json`
//! (the [`MaskRcnnConfig`](crate::model::MaskRcnnConfig)) + optionally
//! `NAME.normalizer.json` (a [`FittedClassical`] normalizer). The default model lives in the
//! repository's `models/` folder (see its `MODEL_CARD.md`); the folder can be moved and
//! named with `NUCSEG_MODEL_DIR`.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{
    backend::Device,
    model::{load_any, MaskRcnn, ModelError},
    pipeline::{Pipeline, PipelineConfig},
    stain::{build_normalizer, FittedClassical, NormalizerKind, StainError, StainNormalizer},
};

/// File stem of the shipped model.
pub const DEFAULT_MODEL_NAME: &str = "nucseg-default";

/// SHA-256 of the shipped weight file; a file with another digest (truncated download, a
/// Git LFS pointer, a local edit) is rejected with [`ModelError::WeightFile`].
pub const DEFAULT_MODEL_SHA256: &str =
    "936e26cb6c711ff85083565fede5c176bc12aa51bd75496adcb76e31046ff3ca";

/// A model ready for inference with the normalization it was trained with.
#[derive(Debug)]
pub struct ModelBundle {
    /// The network (on the device it was loaded to, without autodiff).
    pub model: MaskRcnn,
    /// The fitted stain normalizer used in training, if any.
    pub normalizer: Option<FittedClassical>,
    /// The weight file.
    pub path: PathBuf,
}

/// Which stain normalization to put in front of a model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NormalizerChoice {
    /// The one the model was trained with (its `.normalizer.json`), or none.
    #[default]
    Bundled,
    /// A named method, fitted to `template` (Macenko and Reinhard need one; DCGMM uses its
    /// model's saved template unless one is given).
    Method(NormalizerKind),
}

impl std::str::FromStr for NormalizerChoice {
    type Err = StainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "model" | "bundled" | "default" => Ok(NormalizerChoice::Bundled),
            other => Ok(NormalizerChoice::Method(other.parse()?)),
        }
    }
}

impl ModelBundle {
    /// A [`Pipeline`] around this model with its own normalizer (see
    /// [`PipelineConfig::preset`] for the paper's setups).
    pub fn pipeline(&self, config: PipelineConfig) -> crate::Result<Pipeline<&MaskRcnn>> {
        let normalizer = self
            .normalizer
            .clone()
            .map(|n| Box::new(n) as Box<dyn StainNormalizer>);
        Pipeline::new(config, &self.model, normalizer)
    }

    /// The stain normalizer for `choice`: the bundle's own, or `kind` fitted to `template`.
    /// DCGMM loads the network at `dcgmm_model` (default: `models/dcgmm-kumar.bpk`) on
    /// `device`, with that model's template (`.template.json`) unless `template` is given.
    pub fn normalizer_for(
        &self,
        choice: &NormalizerChoice,
        template: Option<&Path>,
        dcgmm_model: Option<&Path>,
        device: &Device,
    ) -> crate::Result<Option<Box<dyn StainNormalizer>>> {
        Ok(match choice {
            NormalizerChoice::Bundled => self
                .normalizer
                .clone()
                .map(|n| Box::new(n) as Box<dyn StainNormalizer>),
            NormalizerChoice::Method(kind) => {
                let default_dcgmm = default_model_dir().join(DEFAULT_DCGMM_NAME);
                build_normalizer(
                    *kind,
                    template,
                    Some(dcgmm_model.unwrap_or(&default_dcgmm)),
                    device,
                )?
            }
        })
    }
}

/// File name of the shipped DCGMM normalizer (its `.json` configuration and
/// `.template.json` template sit beside it).
pub const DEFAULT_DCGMM_NAME: &str = "dcgmm-kumar.bpk";

/// The folder holding the shipped model: `$NUCSEG_MODEL_DIR`, else `models/` of this
/// crate's source tree.
pub fn default_model_dir() -> PathBuf {
    std::env::var_os("NUCSEG_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"))
}

/// The shipped model on `device`, after checking its SHA-256.
pub fn default_model(device: &Device) -> crate::Result<ModelBundle> {
    let path = default_model_dir().join(format!("{DEFAULT_MODEL_NAME}.safetensors"));
    verify_sha256(&path, DEFAULT_MODEL_SHA256)?;
    load_bundle(&path, device)
}

/// Loads a bundle from its weight file (`.safetensors` or `.bpk`; the `.json`
/// configuration beside it; the `.normalizer.json` beside it if present).
pub fn load_bundle(weights: &Path, device: &Device) -> crate::Result<ModelBundle> {
    let model = load_any(weights, &device.clone().without_autodiff())?;
    let normalizer_path = normalizer_path(weights);
    let normalizer = if normalizer_path.is_file() {
        Some(FittedClassical::load(&normalizer_path)?)
    } else {
        None
    };
    Ok(ModelBundle {
        model,
        normalizer,
        path: weights.to_path_buf(),
    })
}

/// Where a bundle's normalizer is stored: `NAME.normalizer.json` beside `NAME.*`.
pub fn normalizer_path(weights: &Path) -> PathBuf {
    weights.with_extension("normalizer.json")
}

/// Checks a file's SHA-256 against `expected` (lower-case hex).
pub fn verify_sha256(path: &Path, expected: &str) -> Result<(), ModelError> {
    let actual = sha256_file(path)?;
    if actual != expected {
        return Err(ModelError::WeightFile {
            path: path.to_path_buf(),
            reason: format!(
                "checksum mismatch: SHA-256 is {actual}, expected {expected} (corrupt or partial file, \
                 or a Git LFS pointer instead of the weights)"
            ),
        });
    }
    Ok(())
}

/// The SHA-256 of a file, as lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::WeightFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_detects_a_changed_file() {
        let dir = std::env::temp_dir().join(format!("nucseg-sha-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("w.bin");
        std::fs::write(&p, b"abc").unwrap();
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        verify_sha256(&p, abc).unwrap();
        std::fs::write(&p, b"abd").unwrap();
        let err = verify_sha256(&p, abc).unwrap_err().to_string();
        assert!(
            err.contains("checksum mismatch") && err.contains("w.bin"),
            "{err}"
        );
        assert!(verify_sha256(&dir.join("none.bin"), abc).is_err());
    }
}
