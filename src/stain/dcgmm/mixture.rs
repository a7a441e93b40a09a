//! The Gaussian mixture of DCGMM: the M-step (mixture parameters from soft assignments) and
//! the negative log-likelihood loss, in differentiable tensor ops, plus an `f64`
//! accumulator of the same statistics for normalizing images of any size.
//!
//! Zanjani et al. (2018), Sec. 2.2: given the network's soft assignments `γ_nk` of pixel
//! `n` to cluster `k` and the pixels' HSD values `x_n`, the M-step is
//!
//! ```text
//! N_k = Σ_n γ_nk,   π_k = N_k / N,   μ_k = Σ_n γ_nk x_n / N_k,
//! Σ_k = Σ_n γ_nk (x_n − μ_k)(x_n − μ_k)ᵀ / N_k + εI
//! ```
//!
//! (one mixture per image), and the loss is the negative log-likelihood
//! `−(1/N) Σ_n log Σ_k π_k 𝒩(x_n | μ_k, Σ_k)`, computed with log-sum-exp. Gradients flow
//! from the loss through `π, μ, Σ` into `γ` and the network. Burn has no batched matrix
//! inverse, so `Σ_k⁻¹` and `log det Σ_k` are written in closed form (cofactors of the
//! symmetric 3×3 matrix). `εI` keeps every `Σ_k` positive definite, which bounds the
//! likelihood of a cluster that collapses onto identical pixels (e.g. pure white).

use burn::{prelude::*, tensor::s};
use serde::{Deserialize, Serialize};

/// Covariance model of each mixture component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CovarianceKind {
    /// Full 3×3 covariance.
    #[default]
    Full,
    /// Diagonal covariance (HSD channels independent within a cluster), as in Zanjani et
    /// al.'s reference implementation.
    Diagonal,
}

/// Added to `N_k` before dividing by it, so that an empty cluster has finite statistics.
/// (`det Σ_k` is likewise clamped below at `ε³`, its value for a collapsed cluster, which
/// guards the cofactor formula against round-off.)
const MIN_WEIGHT: f32 = 1e-6;
const LN_2PI: f32 = 1.837_877_1;

/// Mixture parameters of a batch of images, as tensors.
#[derive(Debug, Clone)]
pub(crate) struct MixtureTensors {
    /// Mixture weights `π_k`. Shape `[batch, K]`.
    pub pi: Tensor<2>,
    /// Means `μ_k` (HSD `[D, cx, cy]`). Shape `[batch, K, 3]`.
    pub mu: Tensor<3>,
    /// Covariances `Σ_k` (with `εI` added). Shape `[batch, K, 3, 3]`.
    pub sigma: Tensor<4>,
}

/// The M-step: mixture parameters of each image from its pixels and soft assignments.
///
/// # Shapes
/// - `x`: `[batch, 3, height, width]`, HSD
/// - `gamma`: `[batch, K, height, width]`, each pixel's assignments summing to 1
pub(crate) fn m_step(
    x: Tensor<4>,
    gamma: Tensor<4>,
    kind: CovarianceKind,
    epsilon: f64,
) -> MixtureTensors {
    let [b, c, h, w] = x.dims();
    let k = gamma.dims()[1];
    let n = h * w;
    let device = x.device();
    let x = x.reshape([b, c, n]);
    let g = gamma.reshape([b, k, n]);
    let nk = g.clone().sum_dim(2); // [b, k, 1]
    let pi = nk.clone().div_scalar(n as f32).reshape([b, k]);
    let nk = nk.add_scalar(MIN_WEIGHT);
    let mu = g.clone().matmul(x.clone().swap_dims(1, 2)) / nk.clone(); // [b, k, c]
    let diff = x.unsqueeze_dim::<4>(1) - mu.clone().unsqueeze_dim::<4>(3); // [b, k, c, n]
    let weighted = diff.clone() * g.unsqueeze_dim::<4>(2);
    let mut sigma = weighted.matmul(diff.swap_dims(2, 3)) / nk.unsqueeze_dim::<4>(3); // [b, k, c, c]
    let eye = Tensor::<2>::eye(c, &device).reshape([1, 1, c, c]);
    if kind == CovarianceKind::Diagonal {
        sigma = sigma * eye.clone();
    }
    let sigma = sigma + eye.mul_scalar(epsilon as f32);
    MixtureTensors { pi, mu, sigma }
}

/// Per-pixel log-likelihood `log Σ_k π_k 𝒩(x_n | μ_k, Σ_k)` under each image's mixture.
///
/// # Shapes
/// - `x`: `[batch, 3, height, width]`, HSD
/// - output: `[batch, height · width]`
pub(crate) fn log_likelihood(x: Tensor<4>, mixture: &MixtureTensors, epsilon: f64) -> Tensor<2> {
    let [b, c, h, w] = x.dims();
    assert_eq!(c, 3, "HSD has 3 channels");
    let k = mixture.pi.dims()[1];
    let n = h * w;
    let x = x.reshape([b, 1, c, n]);
    let diff = x - mixture.mu.clone().unsqueeze_dim::<4>(3); // [b, k, 3, n]
    let d = |i: usize| diff.clone().slice(s![.., .., i..i + 1, ..]); // [b, k, 1, n]
    let (d0, d1, d2) = (d(0), d(1), d(2));
    let sg = |i: usize, j: usize| mixture.sigma.clone().slice(s![.., .., i..i + 1, j..j + 1]); // [b, k, 1, 1]
    let (s00, s01, s02, s11, s12, s22) =
        (sg(0, 0), sg(0, 1), sg(0, 2), sg(1, 1), sg(1, 2), sg(2, 2));
    // Cofactors of the symmetric Σ (adjugate = cofactor matrix, symmetric).
    let c00 = s11.clone() * s22.clone() - s12.clone() * s12.clone();
    let c01 = s02.clone() * s12.clone() - s01.clone() * s22.clone();
    let c02 = s01.clone() * s12.clone() - s02.clone() * s11.clone();
    let c11 = s00.clone() * s22 - s02.clone() * s02.clone();
    let c12 = s01.clone() * s02.clone() - s00.clone() * s12;
    let c22 = s00.clone() * s11 - s01.clone() * s01.clone();
    let det = (s00 * c00.clone() + s01 * c01.clone() + s02 * c02.clone())
        .clamp_min(epsilon.powi(3) as f32);
    let quad = c00 * d0.clone().powi_scalar(2)
        + c11 * d1.clone().powi_scalar(2)
        + c22 * d2.clone().powi_scalar(2)
        + (c01 * d0.clone() * d1.clone() + c02 * d0 * d2.clone() + c12 * d1 * d2).mul_scalar(2.0);
    let mahalanobis = quad / det.clone(); // [b, k, 1, n]
    let log_normal = (mahalanobis + det.log())
        .add_scalar(3.0 * LN_2PI)
        .mul_scalar(-0.5);
    let log_pi = mixture
        .pi
        .clone()
        .add_scalar(1e-12)
        .log()
        .reshape([b, k, 1, 1]);
    let a = log_normal + log_pi; // [b, k, 1, n]
    let m = a.clone().max_dim(1).detach(); // [b, 1, 1, n]
    let lse = (a - m.clone()).exp().sum_dim(1).log() + m;
    lse.reshape([b, n])
}

/// The DCGMM loss: mean negative log-likelihood per pixel over the batch.
///
/// # Shapes
/// - `x`: `[batch, 3, height, width]`, HSD
/// - output: `[1]`
pub(crate) fn negative_log_likelihood(
    x: Tensor<4>,
    mixture: &MixtureTensors,
    epsilon: f64,
) -> Tensor<1> {
    log_likelihood(x, mixture, epsilon).mean().neg()
}

/// A Gaussian mixture in HSD space, in `f64`: the statistics of one image (or a template).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GaussianMixture {
    /// `π_k`, summing to 1.
    pub weights: Vec<f64>,
    /// `μ_k`, HSD `[D, cx, cy]`.
    pub means: Vec<[f64; 3]>,
    /// `Σ_k` (with `εI` added).
    pub covariances: Vec<[[f64; 3]; 3]>,
}

impl GaussianMixture {
    /// Number of clusters `K`.
    pub fn clusters(&self) -> usize {
        self.weights.len()
    }

    /// Per-channel standard deviations of cluster `k`, `sqrt(diag Σ_k)`.
    pub fn std(&self, k: usize) -> [f64; 3] {
        std::array::from_fn(|c| self.covariances[k][c][c].max(0.0).sqrt())
    }

    /// The mixture as tensors for a batch of one (for [`log_likelihood`]).
    #[cfg(test)]
    pub(crate) fn to_tensors(&self, device: &Device) -> MixtureTensors {
        let k = self.clusters();
        let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        let pi = f(self.weights.clone());
        let mu = f(self.means.iter().flatten().copied().collect());
        let sigma = f(self
            .covariances
            .iter()
            .flatten()
            .flatten()
            .copied()
            .collect());
        MixtureTensors {
            pi: Tensor::from_data(TensorData::new(pi, [1, k]), device),
            mu: Tensor::from_data(TensorData::new(mu, [1, k, 3]), device),
            sigma: Tensor::from_data(TensorData::new(sigma, [1, k, 3, 3]), device),
        }
    }
}

/// Running sums `Σ γ_nk`, `Σ γ_nk x_n`, `Σ γ_nk x_n x_nᵀ` per cluster, in `f64`: the M-step
/// of one image accumulated tile by tile.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SufficientStatistics {
    /// Pixels seen.
    pub pixels: f64,
    /// `N_k = Σ_n γ_nk`.
    pub weight: Vec<f64>,
    /// `Σ_n γ_nk x_n`.
    pub sum: Vec<[f64; 3]>,
    /// `Σ_n γ_nk x_n x_nᵀ`.
    pub sum_outer: Vec<[[f64; 3]; 3]>,
}

impl SufficientStatistics {
    /// Empty sums for `k` clusters.
    pub fn new(k: usize) -> Self {
        SufficientStatistics {
            pixels: 0.0,
            weight: vec![0.0; k],
            sum: vec![[0.0; 3]; k],
            sum_outer: vec![[[0.0; 3]; 3]; k],
        }
    }

    /// Adds one pixel with HSD value `x` and assignments `gamma` (length `K`).
    #[inline]
    pub fn add(&mut self, x: [f32; 3], gamma: &[f32]) {
        let x = x.map(|v| v as f64);
        self.pixels += 1.0;
        for (k, &g) in gamma.iter().enumerate() {
            let g = g as f64;
            self.weight[k] += g;
            for r in 0..3 {
                self.sum[k][r] += g * x[r];
                for c in r..3 {
                    self.sum_outer[k][r][c] += g * x[r] * x[c];
                }
            }
        }
    }

    /// The mixture: the M-step's `π_k`, `μ_k`, `Σ_k + εI` (diagonal if `kind` says so).
    pub fn to_mixture(&self, kind: CovarianceKind, epsilon: f64) -> GaussianMixture {
        let k = self.weight.len();
        let mut out = GaussianMixture {
            weights: vec![0.0; k],
            means: vec![[0.0; 3]; k],
            covariances: vec![[[0.0; 3]; 3]; k],
        };
        for j in 0..k {
            let nk = self.weight[j] + MIN_WEIGHT as f64;
            out.weights[j] = self.weight[j] / self.pixels.max(1.0);
            let mu: [f64; 3] = std::array::from_fn(|r| self.sum[j][r] / nk);
            out.means[j] = mu;
            for r in 0..3 {
                for c in r..3 {
                    let v = if kind == CovarianceKind::Diagonal && r != c {
                        0.0
                    } else {
                        // E[x xᵀ] − μμᵀ, written so that it matches the centred tensor form
                        // Σ γ (x − μ)(x − μ)ᵀ / N_k with the same regularized N_k.
                        (self.sum_outer[j][r][c] - mu[r] * self.sum[j][c] - mu[c] * self.sum[j][r]
                            + self.weight[j] * mu[r] * mu[c])
                            / nk
                    };
                    out.covariances[j][r][c] = v + if r == c { epsilon } else { 0.0 };
                    out.covariances[j][c][r] = out.covariances[j][r][c];
                }
            }
        }
        out
    }
}

/// Sufficient statistics of one image from planar HSD (`3 · n` values, see
/// [`image_to_hsd`](crate::stain::hsd::image_to_hsd)) and planar assignments (`K · n` values).
pub(crate) fn sufficient_statistics(hsd: &[f32], gamma: &[f32], k: usize) -> SufficientStatistics {
    let n = hsd.len() / 3;
    assert_eq!(
        gamma.len(),
        k * n,
        "γ must hold K planes of the image's size"
    );
    let mut stats = SufficientStatistics::new(k);
    let mut g = vec![0.0; k];
    for i in 0..n {
        for (j, gj) in g.iter_mut().enumerate() {
            *gj = gamma[j * n + i];
        }
        stats.add([hsd[i], hsd[n + i], hsd[2 * n + i]], &g);
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{activation::softmax, Distribution};

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn tensor_m_step_matches_the_f64_accumulator() {
        let device = Device::default();
        device.seed(3);
        let x = Tensor::<4>::random([1, 3, 6, 5], Distribution::Normal(0.5, 0.3), &device);
        let logits = Tensor::<4>::random([1, 2, 6, 5], Distribution::Normal(0.0, 2.0), &device);
        let gamma = softmax(logits, 1);
        for kind in [CovarianceKind::Full, CovarianceKind::Diagonal] {
            let t = m_step(x.clone(), gamma.clone(), kind, 1e-3);
            let xs: Vec<f32> = x.clone().try_into_vec_as().unwrap();
            let gs: Vec<f32> = gamma.clone().try_into_vec_as().unwrap();
            let cpu = sufficient_statistics(&xs, &gs, 2).to_mixture(kind, 1e-3);
            let pi: Vec<f32> = t.pi.clone().try_into_vec_as().unwrap();
            let mu: Vec<f32> = t.mu.clone().try_into_vec_as().unwrap();
            let sigma: Vec<f32> = t.sigma.clone().try_into_vec_as().unwrap();
            for k in 0..2 {
                assert!(close(pi[k] as f64, cpu.weights[k], 1e-5));
                for r in 0..3 {
                    assert!(close(mu[k * 3 + r] as f64, cpu.means[k][r], 1e-5));
                    for c in 0..3 {
                        let v = sigma[k * 9 + r * 3 + c] as f64;
                        assert!(
                            close(v, cpu.covariances[k][r][c], 1e-4),
                            "{kind:?} {k} {r} {c}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn log_likelihood_of_a_single_gaussian_is_the_closed_form() {
        // One cluster, Σ = diag(a, b, c) plus an off-diagonal term: compare with f64 by hand.
        let device = Device::default();
        let mixture = GaussianMixture {
            weights: vec![0.25, 0.75],
            means: vec![[0.1, 0.2, 0.3], [1.0, -0.5, 0.0]],
            covariances: vec![
                [[0.5, 0.1, 0.0], [0.1, 0.4, 0.05], [0.0, 0.05, 0.3]],
                [[0.2, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, 0.05]],
            ],
        };
        let px = [[0.3f32, 0.1, 0.2], [0.9, -0.4, 0.1]];
        let x = Tensor::<4>::from_data(
            TensorData::new(
                vec![px[0][0], px[1][0], px[0][1], px[1][1], px[0][2], px[1][2]],
                [1, 3, 1, 2],
            ),
            &device,
        );
        let ll: Vec<f32> = log_likelihood(x, &mixture.to_tensors(&device), 1e-4)
            .try_into_vec_as()
            .unwrap();
        for (i, p) in px.iter().enumerate() {
            let mut total = 0.0;
            for k in 0..2 {
                let s = mixture.covariances[k];
                let det = crate::stain::linalg::det3(&s);
                let inv = crate::colour::invert3(&s);
                let d: [f64; 3] = std::array::from_fn(|r| p[r] as f64 - mixture.means[k][r]);
                let q: f64 = (0..3)
                    .map(|r| (0..3).map(|c| d[r] * inv[r][c] * d[c]).sum::<f64>())
                    .sum();
                let log_n = -0.5 * (3.0 * (2.0 * std::f64::consts::PI).ln() + det.ln() + q);
                total += mixture.weights[k] * log_n.exp();
            }
            assert!(
                (ll[i] as f64 - total.ln()).abs() < 1e-4,
                "{} vs {}",
                ll[i],
                total.ln()
            );
        }
    }

    #[test]
    fn collapsed_cluster_stays_finite() {
        // Every pixel identical (pure white): Σ = εI, finite loss, finite gradients.
        let device = Device::default().autodiff();
        let x = Tensor::<4>::zeros([2, 3, 4, 4], &device);
        let logits = Tensor::<4>::zeros([2, 3, 4, 4], &device).require_grad();
        let mixture = m_step(
            x.clone(),
            softmax(logits.clone(), 1),
            CovarianceKind::Full,
            1e-4,
        );
        let loss = negative_log_likelihood(x, &mixture, 1e-4);
        let v: f32 = loss.clone().into_scalar();
        assert!(v.is_finite(), "{v}");
        // −log 𝒩(μ | μ, εI) = 1.5 ln(2π ε)
        assert!(
            (v as f64 - 1.5 * (2.0 * std::f64::consts::PI * 1e-4).ln()).abs() < 1e-3,
            "{v}"
        );
        let grads = loss.backward();
        let g: Vec<f32> = logits.grad(&grads).unwrap().try_into_vec_as().unwrap();
        assert!(g.iter().all(|v| v.is_finite()));
    }
}
