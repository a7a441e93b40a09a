//! Saving and loading a [`MaskRcnn`]: weights in Burn's burnpack format (`<name>.bpk`) next
//! to the configuration that builds the network (`<name>.json`), so a file names its own
//! architecture. The two are written as one unit: a crash leaves the old pair or the new one.

use std::path::Path;

use burn::{config::Config, module::Module, tensor::Device};

use crate::io::config_path;
use crate::model::{MaskRcnn, MaskRcnnConfig, ModelError};

/// Writes `model`'s weights to `path` (a `.bpk` file) and its configuration beside it.
pub fn save_model(model: &MaskRcnn, path: &Path) -> Result<(), ModelError> {
    save_atomically(model, path, |tmp| {
        model.clone().save_file(tmp).map_err(|e| e.to_string())
    })
}

/// Builds the network described by `path`'s configuration file on `device` and loads the
/// weights. A weight file that does not fit that architecture (missing or extra tensors,
/// other shapes) is an error naming both files.
pub fn load_model(path: &Path, device: &Device) -> Result<MaskRcnn, ModelError> {
    load_with(path, device, |model| {
        model.try_load_file(path).map_err(|e| e.to_string())
    })
}

/// Writes `model`'s weights to a safetensors file with half-precision (f16) storage for
/// convolution, linear and group-norm weights (frozen batch-norm statistics stay f32, where
/// f16 would underflow), and its configuration beside it (`.json`). Half the size of f32;
/// inference results change by f16 rounding only.
pub fn save_model_f16(model: &MaskRcnn, path: &Path) -> Result<(), ModelError> {
    use burn::store::{HalfPrecisionAdapter, ModuleSnapshot, SafetensorsStore};
    save_atomically(model, path, |tmp| {
        let mut store = SafetensorsStore::from_file(tmp)
            .overwrite(true)
            .with_to_adapter(HalfPrecisionAdapter::new());
        model.save_into(&mut store).map_err(|e| e.to_string())
    })
}

/// Loads a model written by [`save_model_f16`] (or any safetensors file with this crate's
/// parameter names) onto `device`, building the architecture from the `.json` beside it.
pub fn load_model_safetensors(path: &Path, device: &Device) -> Result<MaskRcnn, ModelError> {
    use burn::store::{HalfPrecisionAdapter, ModuleSnapshot, SafetensorsStore};
    load_with(path, device, |mut model| {
        // Partial loading reports missing tensors instead of failing with a hint about a
        // library call; the check below refuses them, and also tensors the network does
        // not use (a file of a bigger network would otherwise load silently).
        let mut store = SafetensorsStore::from_file(path)
            .with_from_adapter(HalfPrecisionAdapter::new())
            .allow_partial(true);
        let result = model.load_from(&mut store).map_err(|e| e.to_string())?;
        if !result.errors.is_empty() {
            return Err(format!("{:?}", result.errors));
        }
        if !result.missing.is_empty() || !result.unused.is_empty() {
            return Err(ModelError::KeyMismatch {
                path: path.to_path_buf(),
                missing: result.missing.into_iter().map(|(p, _)| p).collect(),
                unexpected: result.unused,
            }
            .to_string());
        }
        Ok(model)
    })
}

/// Writes the weights (with `write`, given a temporary path) to `path` and the
/// configuration beside it as one unit ([`crate::io::write_with_config`]): durable, and a
/// crash at any point leaves the old pair or the new one, never a mix.
fn save_atomically(
    model: &MaskRcnn,
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), ModelError> {
    let err = |p: &Path, e: std::io::Error| ModelError::WeightFile {
        path: p.to_path_buf(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    }
    crate::io::write_with_config(path, Box::new(write), &model.config).map_err(|e| err(path, e))
}

/// Builds the architecture from the `.json` beside `path` on `device` and fills it with
/// `load`; a missing file, an unreadable configuration or weights that do not fit are
/// errors naming the file.
fn load_with(
    path: &Path,
    device: &Device,
    load: impl FnOnce(MaskRcnn) -> Result<MaskRcnn, String>,
) -> Result<MaskRcnn, ModelError> {
    let cfg_path = config_path(path);
    crate::io::finish_interrupted_with_config(path).map_err(|e| ModelError::WeightFile {
        path: path.to_path_buf(),
        reason: format!("cannot complete the interrupted save of this model: {e}"),
    })?;
    if !path.is_file() {
        return Err(ModelError::WeightFile {
            path: path.to_path_buf(),
            reason: "no such weight file".into(),
        });
    }
    let config = MaskRcnnConfig::load(&cfg_path).map_err(|e| ModelError::WeightFile {
        path: cfg_path.clone(),
        reason: format!("cannot read the model configuration: {e}"),
    })?;
    load(config.init(device)?).map_err(|e| ModelError::WeightFile {
        path: path.to_path_buf(),
        reason: format!(
            "weights do not fit the architecture in {}: {e}",
            cfg_path.display()
        ),
    })
}

/// Loads a model file by extension: `.bpk` ([`load_model`]) or `.safetensors`
/// ([`load_model_safetensors`]), each with its `.json` configuration beside it.
pub fn load_any(path: &Path, device: &Device) -> Result<MaskRcnn, ModelError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => load_model_safetensors(path, device),
        _ => load_model(path, device),
    }
}
