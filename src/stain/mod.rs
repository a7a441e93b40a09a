//! Stain colour normalization: map an H&E image onto the colours of a template image.
//!
//! H&E colour varies between labs, organs and scanners. Jung et al. (2019) normalize every
//! image before segmentation with the deep convolutional Gaussian mixture model (DCGMM) of
//! Zanjani et al., *Stain normalization of histopathology images using generative neural
//! networks*, SPIE Medical Imaging 2018, with a U-Net in place of Zanjani et al.'s plain CNN.
//! This module has it ([`Dcgmm`], trained by [`DcgmmTrainer`](crate::train::DcgmmTrainer), applied by
//! [`DcgmmNormalizer`]) and the two classical normalizers most tools ship:
//!
//! | normalizer | colour space | statistics matched |
//! | --- | --- | --- |
//! | [`Reinhard`] (Reinhard et al. 2001) | CIE L\*a\*b\* | per-channel mean and std of the whole image |
//! | [`Macenko`] (Macenko et al. 2009) | optical density | H and E stain vectors, 99th-percentile concentrations |
//! | [`DcgmmNormalizer`] (Zanjani et al. 2018) | HSD | per-cluster mean and std, clusters learned by a U-Net |
//!
//! All three implement [`StainNormalizer`] (`fit` a template, `transform` an image), and
//! [`NormalizerKind`] names them for configuration (`"dcgmm" | "macenko" | "reinhard" | "none"`).
//!
//! **Images without tissue.** `fit` on a template without tissue is an error
//! ([`StainError::NoTissue`]); `transform` of an image with fewer than
//! [`MIN_TISSUE_PIXELS`] tissue pixels returns the image unchanged (a blank tile of a
//! whole-slide image has no stain to normalize). "Tissue" is Macenko et al.'s criterion:
//! optical density at least [`TISSUE_OD_THRESHOLD`] in every channel.

mod dcgmm;
mod error;
mod fitted;
pub mod hsd;
pub mod lab;
pub mod linalg;
mod macenko;
mod normalizer;
mod reinhard;

pub use dcgmm::{
    ClusterPurity, CovarianceKind, Dcgmm, DcgmmConfig, DcgmmNormalizer, DcgmmOutput, DcgmmTemplate,
    GaussianMixture, UNet, UNetConfig, TILE_MARGIN,
};
pub use error::StainError;
pub use fitted::{
    build_normalizer, fit_classical, load_dcgmm, read_normalizer_json, FittedClassical,
};
pub use macenko::{Macenko, MacenkoConfig, MacenkoStains};
pub use normalizer::{
    count_tissue_pixels, has_tissue, IdentityNormalizer, NormalizerKind, StainNormalizer,
    MIN_TISSUE_PIXELS, TISSUE_OD_THRESHOLD,
};
pub use reinhard::{LabStats, Reinhard};
