//! A classical normalizer fitted to a template, saved next to a model so that inference
//! applies exactly the normalization the model was trained with.

use std::path::Path;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::{
    LabStats, Macenko, MacenkoConfig, MacenkoStains, NormalizerKind, Reinhard, StainError,
    StainNormalizer,
};
use crate::data::read_rgb;

/// A fitted Macenko or Reinhard normalizer, serializable as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FittedClassical {
    /// Macenko et al. (2009) with the template's stains.
    Macenko {
        /// Parameters.
        config: MacenkoConfig,
        /// The template's stain vectors and maximum concentrations.
        template: MacenkoStains,
    },
    /// Reinhard et al. (2001) with the template's Lab statistics.
    Reinhard {
        /// The template's per-channel Lab mean and standard deviation.
        template: LabStats,
    },
}

/// Fits the classical normalizer `kind` to the template image at `template`; `None` for
/// [`NormalizerKind::None`]. DCGMM needs a trained network: see
/// [`DcgmmNormalizer`](super::DcgmmNormalizer).
pub fn fit_classical(
    kind: NormalizerKind,
    template: Option<&Path>,
) -> crate::Result<Option<FittedClassical>> {
    let load = || -> crate::Result<RgbImage> {
        let path = template.ok_or(StainError::TemplateNeeded { method: kind })?;
        Ok(read_rgb(path)?)
    };
    Ok(match kind {
        NormalizerKind::None => None,
        NormalizerKind::Macenko => {
            let mut m = Macenko::default();
            m.fit(&load()?)?;
            Some(FittedClassical::Macenko {
                config: m.config.clone(),
                template: m.template.expect("fitted"),
            })
        }
        NormalizerKind::Reinhard => Some(FittedClassical::Reinhard {
            template: LabStats::of(&load()?),
        }),
        NormalizerKind::Dcgmm => {
            return Err(StainError::Config(
                "DCGMM needs a trained model; use DcgmmNormalizer".into(),
            )
            .into())
        }
    })
}

impl FittedClassical {
    /// Writes it as JSON (atomically).
    pub fn save(&self, path: &Path) -> crate::Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("serializable");
        crate::data::write_bytes_atomically(path, &json)?;
        Ok(())
    }

    /// Reads a file written by [`save`](Self::save), including files written before
    /// [`MacenkoConfig::max_concentration_over_tissue`] existed (read as `false`, what they
    /// did).
    pub fn load(path: &Path) -> crate::Result<Self> {
        Self::from_value(read_normalizer_json(path)?, path)
    }

    /// A normalizer from the parsed JSON of its file `path` (named in errors); files of
    /// versions before `max_concentration_over_tissue` read with it off.
    pub fn from_value(mut value: serde_json::Value, path: &Path) -> crate::Result<Self> {
        let invalid = |e: serde_json::Error| -> crate::Error {
            StainError::Config(format!("{}: not a saved normalizer: {e}", path.display())).into()
        };
        if value.get("kind").is_some_and(|k| k == "macenko") {
            if let Some(config) = value.get_mut("config").and_then(|c| c.as_object_mut()) {
                config
                    .entry("max_concentration_over_tissue")
                    .or_insert(serde_json::Value::Bool(false));
            }
        }
        serde_json::from_value(value).map_err(invalid)
    }
}

impl StainNormalizer for FittedClassical {
    fn name(&self) -> &'static str {
        match self {
            FittedClassical::Macenko { .. } => "macenko",
            FittedClassical::Reinhard { .. } => "reinhard",
        }
    }

    fn fit(&mut self, template: &RgbImage) -> Result<(), StainError> {
        match self {
            FittedClassical::Macenko {
                config,
                template: t,
            } => {
                let mut m = Macenko::new(config.clone());
                m.fit(template)?;
                *t = m.template.expect("fitted");
            }
            FittedClassical::Reinhard { template: t } => *t = LabStats::of(template),
        }
        Ok(())
    }

    fn transform(&self, image: &RgbImage) -> Result<RgbImage, StainError> {
        match self {
            FittedClassical::Macenko { config, template } => {
                macenko(config, template).transform(image)
            }
            FittedClassical::Reinhard { template } => {
                Reinhard::with_template(*template).transform(image)
            }
        }
    }

    fn with_source(
        &self,
        sample: &RgbImage,
    ) -> Result<Option<Box<dyn StainNormalizer>>, StainError> {
        match self {
            FittedClassical::Macenko { config, template } => {
                macenko(config, template).with_source(sample)
            }
            FittedClassical::Reinhard { template } => {
                Reinhard::with_template(*template).with_source(sample)
            }
        }
    }
}

/// A Macenko normalizer fitted to `template`.
fn macenko(config: &MacenkoConfig, template: &MacenkoStains) -> Macenko {
    Macenko {
        template: Some(*template),
        ..Macenko::new(config.clone())
    }
}

/// Builds the normalizer `kind` for use on images (`None` for [`NormalizerKind::None`]):
/// Macenko and Reinhard are fitted to the template image at `template`; DCGMM loads the
/// network at `dcgmm_model` on `device` and takes its template from `template` (an image
/// to fit, or a template `.json`) or, without one, from the `.template.json` saved beside
/// the network.
pub fn build_normalizer(
    kind: NormalizerKind,
    template: Option<&Path>,
    dcgmm_model: Option<&Path>,
    device: &crate::backend::Device,
) -> crate::Result<Option<Box<dyn StainNormalizer>>> {
    let is_json = template.is_some_and(|t| t.extension().is_some_and(|e| e == "json"));
    if kind != NormalizerKind::Dcgmm && is_json {
        return Err(
            StainError::Config(format!("a template .json is only for dcgmm, not {kind}")).into(),
        );
    }
    if kind != NormalizerKind::Dcgmm {
        return Ok(fit_classical(kind, template)?.map(|n| Box::new(n) as Box<dyn StainNormalizer>));
    }
    let path = dcgmm_model.ok_or_else(|| {
        StainError::Config("dcgmm needs a trained model (.bpk with its .json)".into())
    })?;
    Ok(Some(Box::new(load_dcgmm(path, template, device)?)))
}

/// A normalizer file's JSON, unparsed into a type (so a caller can look at its `"kind"`
/// first); an unreadable file or invalid JSON is an error naming it.
pub fn read_normalizer_json(path: &Path) -> crate::Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::data::DataError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    Ok(serde_json::from_str(&text).map_err(|e| {
        StainError::Config(format!("{}: not a saved normalizer: {e}", path.display()))
    })?)
}

/// The DCGMM network at `path` on `device` with a template: `template` (an image to fit,
/// or a template `.json`) or, without one, the `.template.json` saved beside the network.
pub fn load_dcgmm(
    path: &Path,
    template: Option<&Path>,
    device: &crate::backend::Device,
) -> crate::Result<super::DcgmmNormalizer> {
    use super::{Dcgmm, DcgmmNormalizer, DcgmmTemplate};
    let model = Dcgmm::load(path, device)?;
    let template = match template {
        Some(t) if t.extension().is_some_and(|e| e == "json") => DcgmmTemplate::load(t)?,
        Some(t) => model.fit_template(&read_rgb(t)?)?,
        None => DcgmmTemplate::load(path.with_extension("template.json"))?,
    };
    Ok(DcgmmNormalizer::new(model, device).with_template(template))
}
