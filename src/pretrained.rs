//! The trained model shipped with nucseg, and model bundles in general: the Mask R-CNN
//! weights, the configuration that builds them, and the stain normalizer the model was
//! trained with.
//!
//! A bundle named `NAME` in a folder is `NAME.safetensors` (or `NAME.bpk`) + `NAME.json`
//! (the [`MaskRcnnConfig`](crate::model::MaskRcnnConfig)) + optionally
//! `NAME.normalizer.json` (a [`FittedClassical`] normalizer, or a [`SavedDcgmm`] naming the
//! DCGMM network kept beside it). See `models/MODEL_CARD.md`.
//!
//! ## Where the default model is found
//!
//! [`default_model`] looks for [`DEFAULT_MODEL_NAME`]`.safetensors` in these folders, in
//! order, and uses the first that has it ([`model_search_path`]):
//! 1. `$NUCSEG_MODEL_DIR`, when set;
//! 2. the user cache folder, `nucseg/models` inside `$XDG_CACHE_HOME` or `~/.cache` (Linux),
//!    `~/Library/Caches` (macOS), `%LOCALAPPDATA%` (Windows) ([`cache_dir`]);
//! 3. the `models/` folder of this crate's source, which a git checkout has (the crates.io
//!    package leaves the weights out to stay under its size limit).
//!
//! [`default_model_in`] takes an explicit folder instead. Every file of the model (weights,
//! configuration, normalizer) is checked against its SHA-256 in [`DEFAULT_MODEL_FILES`]
//! before it is used. With the `download` feature, a model found nowhere is fetched from
//! [`DEFAULT_MODEL_URL`] (or `$NUCSEG_MODEL_URL`) into the cache folder, each file checked
//! before it is kept (`download_default_model`, present with the feature).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{
    backend::Device,
    io::config_path,
    model::{io::load_any, MaskRcnn, ModelError},
    pipeline::{Pipeline, PipelineConfig},
    stain::{
        build_normalizer, Dcgmm, DcgmmNormalizer, DcgmmTemplate, FittedClassical, NormalizerKind,
        StainError, StainNormalizer,
    },
};

/// File stem of the shipped model.
pub const DEFAULT_MODEL_NAME: &str = "nucseg-default";

/// The files of the shipped model with their SHA-256: a file with another digest
/// (truncated download, a Git LFS pointer, a local edit) is rejected with
/// [`ModelError::WeightFile`].
pub const DEFAULT_MODEL_FILES: [(&str, &str); 3] = [
    (
        "nucseg-default.safetensors",
        "a55edadcd10b28357e890046603b3b93c27a4080cd2152237be8d4f7b7d839d4",
    ),
    (
        "nucseg-default.json",
        "3cd7f67b64071a72d4f1d9d84ce99fbcda361b1c74180e66bfa2e7d8a19e2554",
    ),
    (
        "nucseg-default.normalizer.json",
        "97997aa1506d6eb8350c41cf2783b04622880f0085366e11e42af5854e94673f",
    ),
];

/// Where the `download` feature fetches the shipped model's files from (`<url>/<file>`),
/// unless `$NUCSEG_MODEL_URL` names another location.
pub const DEFAULT_MODEL_URL: &str = "https://github.com/nucseg/nucseg/releases/download/models-v8";

/// File name of the shipped DCGMM normalizer (its `.json` configuration and
/// `.template.json` template sit beside it).
pub const DEFAULT_DCGMM_NAME: &str = "dcgmm-kumar.bpk";

/// The files of the shipped DCGMM normalizer with their SHA-256, checked whenever it
/// serves by default (no network named): the network, its configuration and its template
/// (a stale template in a model folder would map onto other colours without a word).
pub const DEFAULT_DCGMM_FILES: [(&str, &str); 3] = [
    (
        DEFAULT_DCGMM_NAME,
        "fe98bf8f5274900b7692f89ece9d0523fe3713abb46cc6d08b0c074a4da0ae88",
    ),
    (
        "dcgmm-kumar.json",
        "d5e66f3187f792b2b6a6c049153c356d6d764be293c25da746455fc0f2e5fc38",
    ),
    (
        "dcgmm-kumar.template.json",
        "6532197cf7b28ebd070695071b7a85f389fca13869b2482e000d4069a47490df",
    ),
];

/// A model ready for inference with the normalization it was trained with.
#[derive(Debug)]
pub struct ModelBundle {
    /// The network (on the device it was loaded to, without autodiff).
    pub model: MaskRcnn,
    /// The fitted stain normalizer used in training, if any.
    pub normalizer: Option<BundleNormalizer>,
    /// The weight file.
    pub path: PathBuf,
}

/// The stain normalizer of a bundle: a fitted classical one, or DCGMM (the paper's) with
/// its network loaded.
#[derive(Debug, Clone)]
pub enum BundleNormalizer {
    /// Macenko or Reinhard, fitted to the training template.
    Classical(FittedClassical),
    /// DCGMM: the network named by the bundle's [`SavedDcgmm`], with its template.
    Dcgmm {
        /// The network on its device, with the template.
        normalizer: Box<DcgmmNormalizer>,
        /// The network's `.bpk` (its `.json` beside it).
        network: PathBuf,
    },
}

impl BundleNormalizer {
    /// The normalizer `kind` for training (`None` for [`NormalizerKind::None`]): Macenko or
    /// Reinhard fitted to the image `template`; DCGMM with the network `dcgmm_model`
    /// (default: the shipped [`DEFAULT_DCGMM_NAME`]) on `device` and `template` (an image
    /// to fit, or a template `.json`; default: the network's own `.template.json`).
    pub fn for_training(
        kind: NormalizerKind,
        template: Option<&Path>,
        dcgmm_model: Option<&Path>,
        device: &Device,
    ) -> crate::Result<Option<BundleNormalizer>> {
        if kind != NormalizerKind::Dcgmm {
            return Ok(
                crate::stain::fit_classical(kind, template)?.map(BundleNormalizer::Classical)
            );
        }
        let network = match dcgmm_model {
            Some(path) => path.to_path_buf(),
            None => shipped_dcgmm(template.is_none())?,
        };
        let device = device.clone().without_autodiff();
        Ok(Some(BundleNormalizer::Dcgmm {
            normalizer: Box::new(crate::stain::load_dcgmm(&network, template, &device)?),
            network,
        }))
    }

    /// What it is, as one line of JSON (a training run records it to refuse a resume with
    /// another normalizer): the fitted classical normalizer, or the DCGMM network's
    /// SHA-256 and template.
    pub fn record(&self) -> crate::Result<String> {
        Ok(match self {
            BundleNormalizer::Classical(n) => serde_json::to_string(n).expect("plain numbers"),
            BundleNormalizer::Dcgmm {
                normalizer,
                network,
            } => serde_json::to_string(&SavedDcgmm::new(
                network,
                normalizer.template.clone().expect("fitted"),
            )?)
            .expect("plain numbers"),
        })
    }

    /// Writes it as the normalizer file `path` of a bundle (atomically). DCGMM writes a
    /// [`SavedDcgmm`] and, unless the same network is already there, a copy of the network
    /// (`.bpk` and `.json`) beside it, so the bundle's folder holds everything it needs.
    pub fn save(&self, path: &Path) -> crate::Result<()> {
        let (normalizer, network) = match self {
            BundleNormalizer::Classical(n) => return n.save(path),
            BundleNormalizer::Dcgmm {
                normalizer,
                network,
            } => (normalizer, network),
        };
        let saved = SavedDcgmm::new(network, normalizer.template.clone().expect("fitted"))?;
        let folder = path.parent().unwrap_or(Path::new("."));
        let copy = folder.join(&saved.network);
        if verify_sha256(&copy, &saved.network_sha256).is_err() {
            for (from, to) in [
                (network.clone(), copy.clone()),
                (config_path(network), config_path(&copy)),
            ] {
                let bytes = std::fs::read(&from).map_err(|source| crate::data::DataError::Io {
                    path: from.clone(),
                    source,
                })?;
                crate::data::write_bytes_atomically(&to, &bytes)?;
            }
        }
        saved.save(path)
    }
}

impl StainNormalizer for BundleNormalizer {
    fn name(&self) -> &'static str {
        match self {
            BundleNormalizer::Classical(n) => n.name(),
            BundleNormalizer::Dcgmm { normalizer, .. } => normalizer.name(),
        }
    }

    fn fit(&mut self, template: &image::RgbImage) -> Result<(), StainError> {
        match self {
            BundleNormalizer::Classical(n) => n.fit(template),
            BundleNormalizer::Dcgmm { normalizer, .. } => normalizer.fit(template),
        }
    }

    fn transform(&self, image: &image::RgbImage) -> Result<image::RgbImage, StainError> {
        match self {
            BundleNormalizer::Classical(n) => n.transform(image),
            BundleNormalizer::Dcgmm { normalizer, .. } => normalizer.transform(image),
        }
    }

    fn with_source(
        &self,
        sample: &image::RgbImage,
    ) -> Result<Option<Box<dyn StainNormalizer>>, StainError> {
        match self {
            BundleNormalizer::Classical(n) => n.with_source(sample),
            BundleNormalizer::Dcgmm { normalizer, .. } => normalizer.with_source(sample),
        }
    }
}

/// How a bundle trained on DCGMM-normalized images records its normalizer
/// (`NAME.normalizer.json`, `"kind": "dcgmm"`): the DCGMM network by file name and
/// SHA-256, and the template's Gaussians (Zanjani et al. 2018; the paper's §"Stain color
/// normalization"). The network is looked up beside the bundle, then as the shipped DCGMM.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedDcgmm {
    /// Always `"dcgmm"`.
    pub kind: String,
    /// File name of the network (`.bpk`; its `.json` configuration beside it).
    pub network: String,
    /// SHA-256 of the network's `.bpk`.
    pub network_sha256: String,
    /// The template's mixture.
    pub template: DcgmmTemplate,
}

impl SavedDcgmm {
    /// The record of `network` (a DCGMM `.bpk`) with `template`.
    pub fn new(network: &Path, template: DcgmmTemplate) -> crate::Result<SavedDcgmm> {
        let name = network
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| StainError::Config(format!("{}: not a file name", network.display())))?
            .to_string();
        Ok(SavedDcgmm {
            kind: "dcgmm".into(),
            network: name,
            network_sha256: sha256_file(network)?,
            template,
        })
    }

    /// Writes it as JSON (atomically).
    pub fn save(&self, path: &Path) -> crate::Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("serializable");
        crate::data::write_bytes_atomically(path, &json)?;
        Ok(())
    }

    /// The normalizer it records for the bundle whose normalizer file is `path`: the network
    /// from the bundle's folder, else the shipped DCGMM of that name, checked against its
    /// SHA-256, loaded on `device`.
    pub fn load_normalizer(&self, path: &Path, device: &Device) -> crate::Result<BundleNormalizer> {
        let beside = path.parent().unwrap_or(Path::new(".")).join(&self.network);
        let network = if beside.is_file() {
            beside
        } else if self.network == DEFAULT_DCGMM_NAME {
            default_dcgmm_path()
        } else {
            beside
        };
        if !network.is_file() {
            return Err(ModelError::WeightFile {
                path: path.to_path_buf(),
                reason: format!(
                    "names the DCGMM network {}, which is not beside it{}",
                    self.network,
                    if self.network == DEFAULT_DCGMM_NAME {
                        " nor among the shipped models"
                    } else {
                        ""
                    }
                ),
            }
            .into());
        }
        verify_sha256(&network, &self.network_sha256)?;
        let model = Dcgmm::load(&network, device)?;
        Ok(BundleNormalizer::Dcgmm {
            normalizer: Box::new(
                DcgmmNormalizer::new(model, device).with_template(self.template.clone()),
            ),
            network,
        })
    }
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
    /// [`Preset`](crate::pipeline::Preset) for the paper's setups).
    pub fn pipeline(&self, config: PipelineConfig) -> crate::Result<Pipeline<&MaskRcnn>> {
        let normalizer = self
            .normalizer
            .clone()
            .map(|n| Box::new(n) as Box<dyn StainNormalizer>);
        Pipeline::new(config, &self.model, normalizer)
    }

    /// The stain normalizer for `choice`: the bundle's own, or `kind` fitted to `template`.
    /// DCGMM loads the network at `dcgmm_model` (default: the shipped
    /// [`DEFAULT_DCGMM_NAME`], found like the default model) on `device`, with that model's
    /// template (`.template.json`) unless `template` is given.
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
                let default_dcgmm = match (kind, dcgmm_model) {
                    (NormalizerKind::Dcgmm, None) => Some(shipped_dcgmm(template.is_none())?),
                    _ => None,
                };
                build_normalizer(
                    *kind,
                    template,
                    dcgmm_model.or(default_dcgmm.as_deref()),
                    device,
                )?
            }
        })
    }
}

/// The folders searched for the shipped model, in order (see the module docs).
pub fn model_search_path() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("NUCSEG_MODEL_DIR").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(dir));
    }
    if let Some(dir) = cache_dir() {
        dirs.push(dir);
    }
    dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"));
    dirs
}

/// The user cache folder for models: `nucseg/models` inside `$XDG_CACHE_HOME` or
/// `$HOME/.cache` (Linux and other Unix), `$HOME/Library/Caches` (macOS) or
/// `%LOCALAPPDATA%` (Windows); `None` when the environment names no home.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = if cfg!(windows) {
        var("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        var("HOME").map(|h| h.join("Library").join("Caches"))
    } else {
        var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|h| h.join(".cache")))
    }?;
    Some(base.join("nucseg").join("models"))
}

/// The first folder of [`model_search_path`] holding the shipped weights.
fn find_default_model_dir() -> Option<PathBuf> {
    let weights = DEFAULT_MODEL_FILES[0].0;
    model_search_path()
        .into_iter()
        .find(|d| d.join(weights).is_file())
}

/// The shipped DCGMM: the first folder of [`model_search_path`] that has
/// [`DEFAULT_DCGMM_NAME`], else its place in the source tree's `models/`.
pub fn default_dcgmm_path() -> PathBuf {
    let dirs = model_search_path();
    dirs.iter()
        .map(|d| d.join(DEFAULT_DCGMM_NAME))
        .find(|p| p.is_file())
        .unwrap_or_else(|| dirs[dirs.len() - 1].join(DEFAULT_DCGMM_NAME))
}

/// The shipped DCGMM network ([`default_dcgmm_path`]) after checking its files
/// ([`DEFAULT_DCGMM_FILES`]) against their SHA-256; its template only when `own_template`
/// (it will serve: no other template is given).
pub fn shipped_dcgmm(own_template: bool) -> Result<PathBuf, ModelError> {
    let network = default_dcgmm_path();
    let dir = network.parent().unwrap_or(Path::new("."));
    let files = if own_template {
        &DEFAULT_DCGMM_FILES[..]
    } else {
        &DEFAULT_DCGMM_FILES[..2]
    };
    for (name, sha) in files {
        verify_sha256(&dir.join(name), sha).map_err(|e| match e {
            ModelError::WeightFile { path, reason } => ModelError::WeightFile {
                path,
                reason: format!(
                    "{reason}; the shipped DCGMM is used only as shipped (a network or \
                     template of your own: name the network explicitly)"
                ),
            },
            other => other,
        })?;
    }
    Ok(network)
}

/// The shipped model on `device`, from the first folder of [`model_search_path`] that has
/// it (with the `download` feature, downloaded into [`cache_dir`] when none has), after
/// checking every file's SHA-256.
///
/// # Errors
/// [`ModelError::WeightFile`] naming the folders searched when no folder has the model, or
/// the file whose checksum differs.
pub fn default_model(device: &Device) -> crate::Result<ModelBundle> {
    let dir = match find_default_model_dir() {
        Some(dir) => dir,
        None => fetch_default_model()?,
    };
    default_model_in(&dir, device)
}

/// The shipped model from `dir` on `device`, after checking every file's SHA-256.
pub fn default_model_in(dir: &Path, device: &Device) -> crate::Result<ModelBundle> {
    verify_default_model(dir)?;
    load_bundle(&dir.join(DEFAULT_MODEL_FILES[0].0), device)
}

/// Checks each file of [`DEFAULT_MODEL_FILES`] in `dir` against its SHA-256.
pub fn verify_default_model(dir: &Path) -> Result<(), ModelError> {
    for (name, sha) in DEFAULT_MODEL_FILES {
        verify_sha256(&dir.join(name), sha)?;
    }
    Ok(())
}

#[cfg(not(feature = "download"))]
fn fetch_default_model() -> Result<PathBuf, ModelError> {
    let searched: Vec<String> = model_search_path()
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    Err(ModelError::WeightFile {
        path: PathBuf::from(DEFAULT_MODEL_FILES[0].0),
        reason: format!(
            "the default model is in none of [{}]: put its files ({DEFAULT_MODEL_URL}) in one of \
             them or set NUCSEG_MODEL_DIR, or build nucseg with the `download` feature",
            searched.join(", ")
        ),
    })
}

#[cfg(feature = "download")]
fn fetch_default_model() -> Result<PathBuf, ModelError> {
    let dir = cache_dir().ok_or_else(|| ModelError::WeightFile {
        path: PathBuf::from(DEFAULT_MODEL_FILES[0].0),
        reason: "no user cache folder to download the default model into (HOME is not set); \
                 set NUCSEG_MODEL_DIR"
            .into(),
    })?;
    let url = std::env::var("NUCSEG_MODEL_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_MODEL_URL.to_string());
    download_default_model(&url, &dir)?;
    Ok(dir)
}

/// Downloads the files of the shipped model from `base_url` (`<base_url>/<file name>`)
/// into `dir`; each file is kept only when its SHA-256 matches, and is written atomically,
/// so an interrupted or corrupt download never leaves a file that looks complete. Files
/// already in `dir` with the right checksum are not fetched again.
#[cfg(feature = "download")]
pub fn download_default_model(base_url: &str, dir: &Path) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::WeightFile {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    for (name, sha) in DEFAULT_MODEL_FILES {
        let path = dir.join(name);
        if verify_sha256(&path, sha).is_ok() {
            continue;
        }
        let url = format!("{}/{name}", base_url.trim_end_matches('/'));
        let failed = |reason: String| ModelError::WeightFile {
            path: path.clone(),
            reason: format!("downloading {url}: {reason}"),
        };
        let bytes = fetch(&url).map_err(failed)?;
        let actual = sha256_hex(&bytes);
        if actual != sha {
            return Err(failed(format!(
                "checksum mismatch: SHA-256 is {actual}, expected {sha}"
            )));
        }
        crate::io::write_atomic_bytes(&path, &bytes).map_err(|e| failed(e.to_string()))?;
    }
    Ok(())
}

/// The body of an HTTP(S) GET, at most 1 GiB.
#[cfg(feature = "download")]
fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let response = ureq::get(url).call().map_err(|e| e.to_string())?;
    response
        .into_body()
        .into_with_config()
        .limit(1 << 30)
        .read_to_vec()
        .map_err(|e| e.to_string())
}

/// Loads a bundle from its weight file (`.safetensors` or `.bpk`; the `.json`
/// configuration beside it; the `.normalizer.json` beside it if present).
pub fn load_bundle(weights: &Path, device: &Device) -> crate::Result<ModelBundle> {
    let model = load_any(weights, &device.clone().without_autodiff())?;
    let normalizer_path = normalizer_path(weights);
    let normalizer = if normalizer_path.is_file() {
        Some(load_normalizer(&normalizer_path, device)?)
    } else {
        None
    };
    // The configuration records what the network was trained with; the files must agree.
    let found = normalizer.as_ref().map_or("none", |n| n.name());
    if let Some(recorded) = model.config.normalizer.as_deref() {
        if recorded != found {
            let reason = match (recorded, &normalizer) {
                ("none", Some(_)) => "the model was trained without stain normalization, \
                     but this normalizer file is present (a stale file from an earlier run?); \
                     remove it"
                    .to_string(),
                (kind, None) => format!(
                    "the model was trained with {kind} normalization, but its normalizer \
                     file is missing; restore it, or choose a normalization explicitly"
                ),
                (kind, Some(_)) => format!(
                    "holds a {found} normalizer, but the model was trained with {kind} \
                     (configuration {})",
                    config_path(weights).display()
                ),
            };
            return Err(ModelError::WeightFile {
                path: normalizer_path,
                reason,
            }
            .into());
        }
    }
    Ok(ModelBundle {
        model,
        normalizer,
        path: weights.to_path_buf(),
    })
}

/// A bundle's normalizer file: a [`SavedDcgmm`] (`"kind": "dcgmm"`) or a [`FittedClassical`].
fn load_normalizer(path: &Path, device: &Device) -> crate::Result<BundleNormalizer> {
    let value = crate::stain::read_normalizer_json(path)?;
    if value.get("kind").is_none_or(|k| k != "dcgmm") {
        return Ok(BundleNormalizer::Classical(FittedClassical::from_value(
            value, path,
        )?));
    }
    let saved: SavedDcgmm = serde_json::from_value(value).map_err(|e| {
        StainError::Config(format!(
            "{}: not a saved DCGMM normalizer: {e}",
            path.display()
        ))
    })?;
    saved.load_normalizer(path, &device.clone().without_autodiff())
}

/// Writes a bundle's normalizer file `path` ([`BundleNormalizer::save`]), or, for a model
/// without one, removes a stale file of an earlier model there (it would be refused on
/// load).
pub fn write_normalizer_file(
    normalizer: Option<&BundleNormalizer>,
    path: &Path,
) -> crate::Result<()> {
    match normalizer {
        Some(n) => n.save(path),
        None if path.exists() => std::fs::remove_file(path).map_err(|source| {
            crate::data::DataError::Io {
                path: path.to_path_buf(),
                source,
            }
            .into()
        }),
        None => Ok(()),
    }
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
    Ok(sha256_hex(&bytes))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_detects_a_changed_file() {
        let dir = crate::test_util::temp_dir("sha");
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

    #[test]
    fn the_checksums_cover_every_file_of_the_checkout_model() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
        verify_default_model(&dir).unwrap();
        // The search path ends with the checkout's models/ folder.
        assert_eq!(model_search_path().last(), Some(&dir));
    }
}
