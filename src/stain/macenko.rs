//! Macenko stain normalization (Macenko et al., *A method for normalizing histology slides
//! for quantitative analysis*, ISBI 2009, Sec. 2): find the plane of the two strongest
//! optical-density directions, take the extreme angles in it as the haematoxylin and eosin
//! stain vectors, and rescale each pixel's stain concentrations so that their 99th
//! percentiles match the template's.

use burn::config::Config;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::{
    linalg::{dot3, normalize3, percentile, symmetric_eigen3},
    normalizer::{check_non_empty, check_template, MIN_TISSUE_PIXELS},
    StainError, StainNormalizer,
};
use crate::colour::{intensity, optical_density};

/// Parameters of the Macenko normalizer, with the paper's defaults.
#[derive(Config, Debug, PartialEq)]
pub struct MacenkoConfig {
    /// Optical-density threshold `β`: pixels below it in any channel are background and do
    /// not take part in the stain-vector estimate (Sec. 2, "β = 0.15").
    #[config(default = 0.15)]
    pub beta: f64,
    /// Angle percentile `α` (in %): the stain vectors are the directions at the `α`-th and
    /// `(100 − α)`-th percentiles of the angle in the plane, robust extremes (Sec. 2, "α = 1").
    #[config(default = 1.0)]
    pub alpha: f64,
    /// Percentile of the concentrations matched between image and template
    /// ("pseudo-maximum", Sec. 2: 99th).
    #[config(default = 99.0)]
    pub max_concentration_percentile: f64,
    /// Take that percentile over the tissue pixels only (optical density ≥ `β` in every
    /// channel), not over all pixels as the paper does. Over all pixels, background lowers
    /// it: a tile that is half glass has its 99th percentile fall to the tissue's 98th, and
    /// an image that is mostly fat or glass gets its concentrations multiplied many times
    /// (its white turns purple). `false` in files written before the option existed.
    #[config(default = false)]
    pub max_concentration_over_tissue: bool,
}

/// The stains of one image: the H and E unit vectors in optical-density space and the
/// robust maximum concentration of each.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MacenkoStains {
    /// Rows: haematoxylin, eosin; each a unit vector `[OD_r, OD_g, OD_b]` (natural log,
    /// `I_0 = 255`). Haematoxylin is the one with the larger red component.
    pub stain_matrix: [[f64; 3]; 2],
    /// The [`MacenkoConfig::max_concentration_percentile`]-th percentile of each stain's
    /// concentration, over all pixels or over the tissue
    /// ([`MacenkoConfig::max_concentration_over_tissue`]).
    pub max_concentrations: [f64; 2],
}

impl MacenkoStains {
    /// Estimates the stains of `image`. An error if it has fewer than
    /// [`MIN_TISSUE_PIXELS`] pixels above `β` or if its tissue is a single colour.
    pub fn estimate(image: &RgbImage, config: &MacenkoConfig) -> Result<Self, StainError> {
        check_non_empty(image)?;
        let beta = config.beta as f32;
        let od: Vec<[f64; 3]> = image
            .pixels()
            .map(|p| p.0.map(|v| optical_density(v) as f64))
            .collect();
        let tissue: Vec<[f64; 3]> = od
            .iter()
            .filter(|o| o.iter().all(|&v| v >= beta as f64))
            .copied()
            .collect();
        if tissue.len() < MIN_TISSUE_PIXELS {
            return Err(StainError::NoTissue {
                what: "Macenko stain estimate".into(),
                tissue: tissue.len(),
                total: od.len(),
                threshold: beta,
                min: MIN_TISSUE_PIXELS,
            });
        }
        let degenerate = |message: &str| StainError::Degenerate {
            what: "Macenko stain estimate".into(),
            message: message.into(),
        };

        // Plane of the two largest eigenvectors of the OD covariance (the SVD step).
        let n = tissue.len() as f64;
        let mean: [f64; 3] = std::array::from_fn(|c| tissue.iter().map(|o| o[c]).sum::<f64>() / n);
        let mut cov = [[0.0; 3]; 3];
        for o in &tissue {
            for r in 0..3 {
                for c in 0..3 {
                    cov[r][c] += (o[r] - mean[r]) * (o[c] - mean[c]);
                }
            }
        }
        cov.iter_mut()
            .flatten()
            .for_each(|v| *v /= (n - 1.0).max(1.0));
        let (values, vectors) = symmetric_eigen3(&cov);
        if values[1] <= 1e-12 * values[2].max(1e-300) {
            return Err(degenerate(
                "the tissue's optical densities span less than a plane",
            ));
        }
        // Point both basis vectors into the positive octant (OD is non-negative).
        let orient = |v: [f64; 3]| {
            if v[0] + v[1] + v[2] < 0.0 {
                v.map(|x| -x)
            } else {
                v
            }
        };
        let (e1, e2) = (orient(vectors[2]), orient(vectors[1]));

        // Angle of each tissue pixel in the plane, and its robust extremes.
        let mut phi: Vec<f64> = tissue
            .iter()
            .map(|o| dot3(o, &e2).atan2(dot3(o, &e1)))
            .collect();
        let min_phi = percentile(&mut phi, config.alpha).expect("non-empty");
        let max_phi = percentile(&mut phi, 100.0 - config.alpha).expect("non-empty");
        let along = |a: f64| normalize3(std::array::from_fn(|c| e1[c] * a.cos() + e2[c] * a.sin()));
        let (v_min, v_max) = (along(min_phi), along(max_phi));
        // Haematoxylin absorbs more red than eosin.
        let stain_matrix = if v_min[0] > v_max[0] {
            [v_min, v_max]
        } else {
            [v_max, v_min]
        };
        let solver = ConcentrationSolver::new(&stain_matrix)
            .ok_or_else(|| degenerate("the two stain vectors are collinear"))?;

        // Robust maximum concentrations, over all pixels or over the tissue.
        let over = if config.max_concentration_over_tissue {
            &tissue
        } else {
            &od
        };
        let (mut c_h, mut c_e): (Vec<f64>, Vec<f64>) = over.iter().map(|o| solver.solve(o)).unzip();
        let q = config.max_concentration_percentile;
        let max_concentrations = [
            percentile(&mut c_h, q).expect("non-empty"),
            percentile(&mut c_e, q).expect("non-empty"),
        ];
        if max_concentrations
            .iter()
            .any(|&m| m <= 1e-9 || !m.is_finite())
        {
            return Err(degenerate("a stain has no positive concentration"));
        }
        Ok(MacenkoStains {
            stain_matrix,
            max_concentrations,
        })
    }
}

/// Least-squares concentrations `c = argmin ‖OD − Mᵀ c‖` for a 2-stain matrix `M`
/// (normal equations, 2×2, closed form).
struct ConcentrationSolver {
    stains: [[f64; 3]; 2],
    inv_gram: [[f64; 2]; 2],
}

impl ConcentrationSolver {
    fn new(stains: &[[f64; 3]; 2]) -> Option<Self> {
        let g01 = dot3(&stains[0], &stains[1]);
        let (g00, g11) = (dot3(&stains[0], &stains[0]), dot3(&stains[1], &stains[1]));
        let det = g00 * g11 - g01 * g01;
        if det.abs() < 1e-9 {
            return None;
        }
        Some(ConcentrationSolver {
            stains: *stains,
            inv_gram: [[g11 / det, -g01 / det], [-g01 / det, g00 / det]],
        })
    }

    #[inline]
    fn solve(&self, od: &[f64; 3]) -> (f64, f64) {
        let r = [dot3(&self.stains[0], od), dot3(&self.stains[1], od)];
        (
            self.inv_gram[0][0] * r[0] + self.inv_gram[0][1] * r[1],
            self.inv_gram[1][0] * r[0] + self.inv_gram[1][1] * r[1],
        )
    }
}

/// The Macenko normalizer: `fit` estimates the template's [`MacenkoStains`]; `transform`
/// estimates the image's, scales each pixel's concentrations by
/// `max_c(template) / max_c(image)` and recomposes them with the template's stain vectors.
#[derive(Debug, Clone)]
pub struct Macenko {
    /// Parameters.
    pub config: MacenkoConfig,
    /// The template's stains (`None` before `fit`).
    pub template: Option<MacenkoStains>,
    /// The source's stains, fixed in advance (see [`StainNormalizer::with_source`]);
    /// `None` estimates each image's own.
    pub source: Option<MacenkoStains>,
}

impl Default for Macenko {
    fn default() -> Self {
        Macenko::new(MacenkoConfig::new())
    }
}

impl Macenko {
    /// An unfitted normalizer.
    pub fn new(config: MacenkoConfig) -> Self {
        Macenko {
            config,
            template: None,
            source: None,
        }
    }
}

impl StainNormalizer for Macenko {
    fn name(&self) -> &'static str {
        "macenko"
    }

    fn fit(&mut self, template: &RgbImage) -> Result<(), StainError> {
        check_template(template, "Macenko template")?;
        self.template = Some(MacenkoStains::estimate(template, &self.config)?);
        Ok(())
    }

    fn transform(&self, image: &RgbImage) -> Result<RgbImage, StainError> {
        let target = self
            .template
            .ok_or(StainError::NotFitted { method: "macenko" })?;
        let source = match self.source {
            Some(s) => s,
            None => match MacenkoStains::estimate(image, &self.config) {
                Ok(s) => s,
                // Blank tile: nothing to normalize.
                Err(StainError::NoTissue { .. }) => return Ok(image.clone()),
                Err(e) => return Err(e),
            },
        };
        let solver = ConcentrationSolver::new(&source.stain_matrix).expect("checked in estimate");
        let scale = [
            target.max_concentrations[0] / source.max_concentrations[0],
            target.max_concentrations[1] / source.max_concentrations[1],
        ];
        let m = target.stain_matrix;
        let mut out = image.clone();
        for p in out.pixels_mut() {
            let od = p.0.map(|v| optical_density(v) as f64);
            let (h, e) = solver.solve(&od);
            let (h, e) = (h * scale[0], e * scale[1]);
            p.0 = std::array::from_fn(|c| intensity((m[0][c] * h + m[1][c] * e) as f32));
        }
        Ok(out)
    }

    fn with_source(
        &self,
        sample: &RgbImage,
    ) -> Result<Option<Box<dyn StainNormalizer>>, StainError> {
        match MacenkoStains::estimate(sample, &self.config) {
            Ok(source) => Ok(Some(Box::new(Macenko {
                source: Some(source),
                ..self.clone()
            }))),
            Err(StainError::NoTissue { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
