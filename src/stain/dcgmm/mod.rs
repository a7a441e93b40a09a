//! The deep convolutional Gaussian mixture model (DCGMM) of Zanjani et al., *Stain
//! normalization of histopathology images using generative neural networks* (SPIE Medical
//! Imaging 2018; MIDL 2018 "Histopathology stain-color normalization using deep generative
//! models"), with the U-Net of Jung et al. (2019) as its E-step network.
//!
//! - **E-step (a network).** A [`UNet`] reads an image's density channel `D` (as in
//!   Zanjani et al.'s code: the assignment then depends on structure and amount of stain,
//!   not on the hue that varies between labs) and outputs a softmax over `K` clusters per
//!   pixel, the soft assignments `γ_nk` (K = 3: nuclei, surrounding tissue, background).
//! - **M-step (closed form, in the forward pass).** [`m_step`] gives each image's `π_k`,
//!   `μ_k`, `Σ_k` from `γ` and its HSD pixels; the loss is the negative log-likelihood of the
//!   pixels under that mixture ([`negative_log_likelihood`]). Training is unsupervised.
//! - **Normalization.** Fit a template's mixture once ([`DcgmmTemplate`]); for an input
//!   image, compute its own mixture, map each pixel cluster by cluster from the input's
//!   statistics onto the template's, `x' = Σ_k γ_nk (μ_k^t + σ_k^t / σ_k^s ⊙ (x − μ_k^s))`
//!   (per HSD channel, `σ = sqrt(diag Σ)`, as Zanjani et al.'s `image_dist_transform`),
//!   clamp to the HSD gamut and convert back to RGB.
//!
//! Images of any size are processed in overlapping tiles of [`DcgmmConfig::tile_size`]
//! (with [`TILE_MARGIN`] or more of context, reflect-padded at the image border, sizes
//! rounded up to multiples of `2^depth`), so memory on the device stays bounded. The
//! assignments of the whole image are kept on the host (`K` floats per pixel) and the
//! statistics are accumulated over the whole image in `f64`.

use std::path::Path;

use burn::{prelude::*, tensor::activation::softmax};
use image::RgbImage;

mod mixture;
mod normalizer;
mod purity;
mod template;
mod unet;

pub(crate) use mixture::negative_log_likelihood;
use mixture::{m_step, sufficient_statistics};
pub use mixture::{CovarianceKind, GaussianMixture};
pub use normalizer::DcgmmNormalizer;
pub use purity::ClusterPurity;
pub use template::DcgmmTemplate;
pub use unet::{UNet, UNetConfig};

use crate::io::config_path;
use crate::stain::{
    has_tissue,
    hsd::{self, clamp_to_gamut, hsd_to_rgb, image_to_hsd},
    normalizer::{check_non_empty, check_template},
    StainError,
};

/// Least context (pixels) added on every side of a tile, so that the U-Net sees the
/// neighbourhood of the pixels it labels and tile seams do not show. Deeper nets get more:
/// `max(TILE_MARGIN, 4 · 2^depth)`, a bit over half the receptive field of a U-Net level.
pub const TILE_MARGIN: usize = 32;

/// Configuration of a [`Dcgmm`].
#[derive(Config, Debug)]
pub struct DcgmmConfig {
    /// Number of mixture components `K` (Zanjani et al.: 3 – nuclei, surrounding tissue,
    /// background). Overrides [`UNetConfig::out_channels`].
    #[config(default = 3)]
    pub clusters: usize,
    /// The E-step network. Its `in_channels` is set to 1 (the density channel) and its
    /// `out_channels` to `clusters` by [`init`](Self::init).
    #[config(default = "UNetConfig::new()")]
    pub unet: UNetConfig,
    /// Full or diagonal `Σ_k`.
    #[config(default = "CovarianceKind::Full")]
    pub covariance: CovarianceKind,
    /// `ε` of the regularization `Σ_k + εI` (HSD units²).
    #[config(default = 1e-4)]
    pub epsilon: f64,
    /// Side of the square tiles (before margins) in which large images are processed.
    #[config(default = 512)]
    pub tile_size: usize,
}

impl DcgmmConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), StainError> {
        if self.clusters < 2 {
            return Err(StainError::Config(format!(
                "DCGMM needs at least 2 clusters (got {})",
                self.clusters
            )));
        }
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            return Err(StainError::Config(format!(
                "DCGMM epsilon must be positive (got {})",
                self.epsilon
            )));
        }
        if self.tile_size == 0 {
            return Err(StainError::Config("DCGMM tile_size must be ≥ 1".into()));
        }
        self.network().validate()
    }

    /// The U-Net configuration actually built: one input channel, `clusters` outputs.
    pub fn network(&self) -> UNetConfig {
        self.unet
            .clone()
            .with_in_channels(1)
            .with_out_channels(self.clusters)
    }

    /// Builds a model with freshly initialized weights.
    pub fn init(&self, device: &Device) -> Result<Dcgmm, StainError> {
        self.validate()?;
        Ok(Dcgmm {
            unet: self.network().init(device)?,
            config: self.clone(),
        })
    }
}

/// Output of [`Dcgmm::forward`].
#[derive(Debug, Clone)]
pub struct DcgmmOutput {
    /// Soft assignments `γ`. Shape `[batch, K, height, width]`.
    pub gamma: Tensor<4>,
    /// Mean negative log-likelihood per pixel. Shape `[1]`.
    pub nll: Tensor<1>,
}

/// The DCGMM: a U-Net E-step and a closed-form M-step. Build with [`DcgmmConfig::init`],
/// train with [`DcgmmTrainer`](crate::train::DcgmmTrainer).
#[derive(Module, Debug)]
pub struct Dcgmm {
    unet: UNet,
    #[module(skip)]
    config: DcgmmConfig,
}

impl Dcgmm {
    /// The configuration the model was built from.
    pub fn config(&self) -> &DcgmmConfig {
        &self.config
    }

    /// Number of clusters `K`.
    pub fn clusters(&self) -> usize {
        self.config.clusters
    }

    /// Input heights and widths of the tensor methods must be multiples of this.
    pub fn size_multiple(&self) -> usize {
        self.unet.size_multiple()
    }

    /// The E-step: soft assignments `γ = softmax_k(UNet(D))`.
    ///
    /// # Shapes
    /// - `hsd`: `[batch, 3, height, width]` (channels `[D, cx, cy]`), sizes multiples of
    ///   [`size_multiple`](Self::size_multiple)
    /// - output: `[batch, K, height, width]`
    pub fn assignments(&self, hsd: Tensor<4>) -> Tensor<4> {
        let density = hsd.narrow(1, hsd::D, 1);
        softmax(self.unet.forward(density), 1)
    }

    /// E-step, M-step and loss of a batch (Zanjani et al. 2018, Sec. 2.2).
    ///
    /// # Shapes
    /// - `hsd`: `[batch, 3, height, width]`, sizes multiples of
    ///   [`size_multiple`](Self::size_multiple)
    pub fn forward(&self, hsd: Tensor<4>) -> DcgmmOutput {
        let gamma = self.assignments(hsd.clone());
        let mixture = m_step(
            hsd.clone(),
            gamma.clone(),
            self.config.covariance,
            self.config.epsilon,
        );
        let nll = negative_log_likelihood(hsd, &mixture, self.config.epsilon);
        DcgmmOutput { gamma, nll }
    }

    fn device(&self) -> Device {
        self.devices().into_iter().next().unwrap_or_default()
    }

    /// Soft assignments of every pixel of an image of any size, computed tile by tile on
    /// the model's device with the model in inference mode.
    ///
    /// Returns `K` planes of `height · width` values (planar, row-major).
    pub fn assignments_of_image(&self, image: &RgbImage) -> Result<Vec<f32>, StainError> {
        check_non_empty(image)?;
        let hsd = image_to_hsd(image);
        Ok(self.assignments_of_planes(&hsd, image.width() as usize, image.height() as usize))
    }

    fn assignments_of_planes(&self, hsd: &[f32], width: usize, height: usize) -> Vec<f32> {
        let model = self.valid();
        let device = model.device();
        let k = self.clusters();
        let n = width * height;
        let m = self.size_multiple();
        let tile = self.config.tile_size.max(1);
        let round_up = |v: usize| v.div_ceil(m) * m;
        let margin = TILE_MARGIN.max(4 * m);
        let density = &hsd[..n];
        let mut out = vec![0.0f32; k * n];
        for y0 in (0..height).step_by(tile) {
            for x0 in (0..width).step_by(tile) {
                let (tw, th) = (tile.min(width - x0), tile.min(height - y0));
                let (ww, wh) = (round_up(tw + 2 * margin), round_up(th + 2 * margin));
                let (ox, oy) = (x0 as isize - margin as isize, y0 as isize - margin as isize);
                let mut window = Vec::with_capacity(ww * wh);
                for wy in 0..wh {
                    let sy = reflect(oy + wy as isize, height);
                    for wx in 0..ww {
                        window.push(density[sy * width + reflect(ox + wx as isize, width)]);
                    }
                }
                let input =
                    Tensor::<4>::from_data(TensorData::new(window, [1, 1, wh, ww]), &device);
                let gamma = softmax(model.unet.forward(input), 1);
                let gamma: Vec<f32> = gamma
                    .try_into_vec_as()
                    .expect("reading back a float tensor");
                for j in 0..k {
                    for y in 0..th {
                        let src = j * ww * wh + (y + margin) * ww + margin;
                        let dst = j * n + (y0 + y) * width + x0;
                        out[dst..dst + tw].copy_from_slice(&gamma[src..src + tw]);
                    }
                }
            }
        }
        out
    }

    /// The mixture (M-step statistics, in `f64`) of an image of any size.
    pub fn mixture_of_image(&self, image: &RgbImage) -> Result<GaussianMixture, StainError> {
        check_non_empty(image)?;
        let hsd = image_to_hsd(image);
        let gamma =
            self.assignments_of_planes(&hsd, image.width() as usize, image.height() as usize);
        Ok(sufficient_statistics(&hsd, &gamma, self.clusters())
            .to_mixture(self.config.covariance, self.config.epsilon))
    }

    /// Fits a template: the mixture of `image`. An error if it has no tissue.
    pub fn fit_template(&self, image: &RgbImage) -> Result<DcgmmTemplate, StainError> {
        check_template(image, "DCGMM template")?;
        Ok(DcgmmTemplate {
            mixture: self.mixture_of_image(image)?,
        })
    }

    /// Maps `image` onto the template's per-cluster colour statistics (see the module
    /// docs). An image without tissue is returned unchanged.
    pub fn normalize(
        &self,
        image: &RgbImage,
        template: &DcgmmTemplate,
    ) -> Result<RgbImage, StainError> {
        check_non_empty(image)?;
        let k = self.clusters();
        if template.mixture.clusters() != k {
            return Err(StainError::ClusterMismatch {
                template: template.mixture.clusters(),
                model: k,
            });
        }
        if !has_tissue(image) {
            return Ok(image.clone());
        }
        let (w, h) = (image.width() as usize, image.height() as usize);
        let n = w * h;
        let hsd = image_to_hsd(image);
        let gamma = self.assignments_of_planes(&hsd, w, h);
        let source = sufficient_statistics(&hsd, &gamma, k)
            .to_mixture(self.config.covariance, self.config.epsilon);
        // Per cluster and channel: x' = a·x + b with a = σ_t/σ_s, b = μ_t − a·μ_s.
        let mut gain = vec![[0.0f32; 3]; k];
        let mut offset = vec![[0.0f32; 3]; k];
        for j in 0..k {
            let (ss, st) = (source.std(j), template.mixture.std(j));
            for c in 0..3 {
                let a = st[c] / ss[c].max(1e-12);
                gain[j][c] = a as f32;
                offset[j][c] = (template.mixture.means[j][c] - a * source.means[j][c]) as f32;
            }
        }
        let mut out = RgbImage::new(image.width(), image.height());
        for (i, p) in out.pixels_mut().enumerate() {
            let x = [hsd[i], hsd[n + i], hsd[2 * n + i]];
            let mut y = [0.0f32; 3];
            for j in 0..k {
                let g = gamma[j * n + i];
                for c in 0..3 {
                    y[c] += g * (gain[j][c] * x[c] + offset[j][c]);
                }
            }
            p.0 = hsd_to_rgb(clamp_to_gamut(y));
        }
        Ok(out)
    }

    /// Saves the weights to `path` (burnpack, e.g. `dcgmm.bpk`) and the configuration beside
    /// it (`dcgmm.json`) as one unit ([`crate::io::write_with_config`]): durable, and a crash
    /// at any point leaves the old pair or the new one, never a mix.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), StainError> {
        let path = path.as_ref();
        let model = self.clone();
        crate::io::write_with_config(
            path,
            Box::new(move |p: &Path| model.save_file(p).map_err(|e| e.to_string())),
            &self.config,
        )
        .map_err(|e| StainError::io(path, e))
    }

    /// Loads a model saved by [`save`](Self::save) onto `device`.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Dcgmm, StainError> {
        let path = path.as_ref();
        let cfg_path = config_path(path);
        crate::io::finish_interrupted_with_config(path).map_err(|e| StainError::io(path, e))?;
        let config: DcgmmConfig =
            crate::io::read_json(&cfg_path).map_err(|e| StainError::json(&cfg_path, e))?;
        if !path.is_file() {
            return Err(StainError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such model file"),
            ));
        }
        config
            .init(device)?
            .try_load_file(path)
            .map_err(|e| StainError::Model {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
    }
}

/// Reflect-101 index (`… 2 1 | 0 1 2 … n−1 | n−2 …`) of any integer into `0..n`.
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let r = i.rem_euclid(period);
    (if r < n as isize { r } else { period - r }) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> DcgmmConfig {
        DcgmmConfig::new()
            .with_unet(UNetConfig::new().with_depth(2).with_base_width(4))
            .with_tile_size(24)
    }

    #[test]
    fn reflect_indexes_like_numpy_reflect() {
        let got: Vec<usize> = (-4..9).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, [2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]);
        assert_eq!(reflect(-7, 1), 0);
    }

    #[test]
    fn tiles_agree_with_one_big_tile_and_sum_to_one() {
        let device = Device::default();
        device.seed(1);
        let model = tiny().init(&device).unwrap();
        let image = RgbImage::from_fn(50, 37, |x, y| {
            image::Rgb([
                120 + (x * 3 % 90) as u8,
                60 + (y * 5 % 100) as u8,
                160 + ((x + y) % 60) as u8,
            ])
        });
        let tiled = model.assignments_of_image(&image).unwrap();
        assert_eq!(tiled.len(), 3 * 50 * 37);
        for i in 0..50 * 37 {
            let s: f32 = (0..3).map(|j| tiled[j * 50 * 37 + i]).sum();
            assert!((s - 1.0).abs() < 1e-5);
        }
        // Same model with one tile covering everything: the interiors of the 24-px tiles
        // see ≥ 32 px of true context, more than the depth-2 net's receptive field, so
        // both agree up to float noise.
        let mut whole = model.clone();
        whole.config.tile_size = 1000;
        let one = whole.assignments_of_image(&image).unwrap();
        let max_diff = tiled
            .iter()
            .zip(&one)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(max_diff < 1e-4, "{max_diff}");
    }

    #[test]
    fn save_load_round_trip_and_config_errors() {
        let device = Device::default();
        let dir = crate::test_util::temp_dir("dcgmm-save");
        let model = tiny().with_clusters(4).init(&device).unwrap();
        let path = dir.join("m.bpk");
        model.save(&path).unwrap();
        assert!(path.is_file() && dir.join("m.json").is_file());
        let loaded = Dcgmm::load(&path, &device).unwrap();
        assert_eq!(loaded.clusters(), 4);
        let x = hsd::hsd_tensor(
            &[RgbImage::from_pixel(8, 8, image::Rgb([150, 80, 170]))],
            &device,
        );
        let a: Vec<f32> = model
            .valid()
            .assignments(x.clone())
            .try_into_vec_as()
            .unwrap();
        let b: Vec<f32> = loaded.valid().assignments(x).try_into_vec_as().unwrap();
        assert_eq!(a, b);
        // No stray temporary files.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");

        assert!(matches!(
            Dcgmm::load(dir.join("missing.bpk"), &device),
            Err(StainError::Io { .. })
        ));
        assert!(matches!(
            DcgmmConfig::new().with_clusters(1).init(&device),
            Err(StainError::Config(_))
        ));
        let template = DcgmmTemplate {
            mixture: GaussianMixture {
                weights: vec![0.5, 0.5],
                means: vec![[0.0; 3]; 2],
                covariances: vec![[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]; 2],
            },
        };
        let tp = dir.join("t.json");
        template.save(&tp).unwrap();
        assert_eq!(DcgmmTemplate::load(&tp).unwrap(), template);
        let img = RgbImage::from_pixel(8, 8, image::Rgb([150, 80, 170]));
        assert!(matches!(
            loaded.normalize(&img, &template),
            Err(StainError::ClusterMismatch {
                template: 2,
                model: 4
            })
        ));
    }
}
