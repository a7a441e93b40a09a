//! Anchor boxes (Faster R-CNN, Sec. 3.1.1; FPN, Sec. 4.1): one size per pyramid level and
//! several aspect ratios at every feature-map position. For nuclei, Jung et al. (2019)
//! use areas 8², 16², 32², 64², 128² on P2–P6 with ratios 1:2, 1:1, 2:1.

use burn::config::Config;

use super::box_ops::BoxXyxy;
use crate::model::ModelError;

/// Sizes and ratios of the anchors; `init` checks them.
#[derive(Config, Debug, PartialEq)]
pub struct AnchorGeneratorConfig {
    /// Anchor side (√area) per pyramid level, P2 first.
    #[config(default = "vec![8.0, 16.0, 32.0, 64.0, 128.0]")]
    pub sizes: Vec<f32>,
    /// Height / width ratios, shared by all levels.
    #[config(default = "vec![0.5, 1.0, 2.0]")]
    pub aspect_ratios: Vec<f32>,
}

/// Generates the anchors of every level for an image and its feature-map sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorGenerator {
    /// Per level, the zero-centred base anchors (one per ratio).
    cell_anchors: Vec<Vec<BoxXyxy>>,
}

impl AnchorGeneratorConfig {
    /// Builds the generator; sizes and ratios must be positive and non-empty.
    pub fn init(&self) -> Result<AnchorGenerator, ModelError> {
        if self.sizes.is_empty() || self.aspect_ratios.is_empty() {
            return Err(ModelError::InvalidConfig(
                "anchor sizes and aspect ratios must be non-empty".into(),
            ));
        }
        if self
            .sizes
            .iter()
            .chain(&self.aspect_ratios)
            .any(|&v| !(v > 0.0 && v.is_finite()))
        {
            return Err(ModelError::InvalidConfig(format!(
                "anchor sizes {:?} and ratios {:?} must be positive",
                self.sizes, self.aspect_ratios
            )));
        }
        let cell_anchors = self
            .sizes
            .iter()
            .map(|&size| {
                self.aspect_ratios
                    .iter()
                    .map(|&ratio| {
                        // torchvision's AnchorGenerator.generate_anchors: h/w = ratio, area = size².
                        let h_ratio = ratio.sqrt();
                        let w_ratio = 1.0 / h_ratio;
                        let (ws, hs) = (w_ratio * size, h_ratio * size);
                        [
                            (-ws / 2.0).round(),
                            (-hs / 2.0).round(),
                            (ws / 2.0).round(),
                            (hs / 2.0).round(),
                        ]
                    })
                    .collect()
            })
            .collect();
        Ok(AnchorGenerator { cell_anchors })
    }
}

impl AnchorGenerator {
    /// Anchors per feature-map position (the number of aspect ratios).
    pub fn num_anchors_per_location(&self) -> usize {
        self.cell_anchors[0].len()
    }

    /// Number of pyramid levels the generator expects.
    pub fn num_levels(&self) -> usize {
        self.cell_anchors.len()
    }

    /// The anchors of each level for an image of `image_size = (height, width)` and the
    /// feature maps' `(height, width)`, in the order the RPN head's outputs are flattened:
    /// row `y`, column `x`, ratio `a` → index `(y · W + x) · A + a`. A level's stride is
    /// `image size / feature size` (integer division, as torchvision); anchors are centred
    /// on `(x · stride, y · stride)`.
    ///
    /// # Panics
    /// If `feature_sizes` has another length than the configured levels.
    pub fn anchors_per_level(
        &self,
        image_size: (usize, usize),
        feature_sizes: &[(usize, usize)],
    ) -> Vec<Vec<BoxXyxy>> {
        assert_eq!(
            feature_sizes.len(),
            self.cell_anchors.len(),
            "one feature map per anchor size"
        );
        feature_sizes
            .iter()
            .zip(&self.cell_anchors)
            .map(|(&(fh, fw), base)| {
                let sy = (image_size.0 / fh.max(1)) as f32;
                let sx = (image_size.1 / fw.max(1)) as f32;
                let mut out = Vec::with_capacity(fh * fw * base.len());
                for y in 0..fh {
                    for x in 0..fw {
                        let (cx, cy) = (x as f32 * sx, y as f32 * sy);
                        for b in base {
                            out.push([b[0] + cx, b[1] + cy, b[2] + cx, b[3] + cy]);
                        }
                    }
                }
                out
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_anchors_counts_and_positions() {
        let g = AnchorGeneratorConfig::new().init().unwrap();
        assert_eq!(g.num_anchors_per_location(), 3);
        // 64×64 image: P2 16×16 (stride 4) … P6 1×1 (stride 64).
        let sizes = [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)];
        let a = g.anchors_per_level((64, 64), &sizes);
        let counts: Vec<usize> = a.iter().map(|l| l.len()).collect();
        assert_eq!(counts, vec![768, 192, 48, 12, 3]);
        // P2, ratio 1:1, position (y=1, x=2): centre (8, 4), 8×8 → [4, 0, 12, 8].
        assert_eq!(a[0][(16 + 2) * 3 + 1], [4.0, 0.0, 12.0, 8.0]);
        // Ratio 0.5 (h/w): w = 8/√0.5 ≈ 11.31, h ≈ 5.66 → rounded half-sides 6 and 3.
        assert_eq!(a[0][0], [-6.0, -3.0, 6.0, 3.0]);
        // P6 anchors have area 128²: [-64, -64, 64, 64] for ratio 1.
        assert_eq!(a[4][1], [-64.0, -64.0, 64.0, 64.0]);
    }

    #[test]
    fn bad_config_is_an_error() {
        assert!(AnchorGeneratorConfig::new()
            .with_sizes(vec![])
            .init()
            .is_err());
        assert!(AnchorGeneratorConfig::new()
            .with_aspect_ratios(vec![1.0, -2.0])
            .init()
            .is_err());
    }
}
