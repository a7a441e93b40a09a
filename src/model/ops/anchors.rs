//! Anchor boxes (Faster R-CNN, Sec. 3.1.1; FPN, Sec. 4.1): one size per pyramid level and
//! several aspect ratios at every feature-map position. For nuclei, Jung et al. (2019)
//! use areas 8², 16², 32², 64², 128² on P2–P6 with ratios 1:2, 1:1, 2:1. Optionally several
//! sizes per level, `size · 2^(i/n)` for `i < n` (RetinaNet, Lin et al. 2017, Sec. 4: three
//! scales per octave), so that objects between two levels' sizes also find a close anchor.

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
    /// Sizes per level (RetinaNet's scales per octave): level size `s` gives `s · 2^(i/n)`
    /// for `i = 0 … n−1`. `None` (or 1) is one size per level, as Jung et al.
    pub scales_per_octave: Option<usize>,
}

/// Generates the anchors of every level for an image and its feature-map sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorGenerator {
    /// Per level, the zero-centred base anchors (one per ratio).
    cell_anchors: Vec<Vec<BoxXyxy>>,
}

impl AnchorGeneratorConfig {
    /// Sizes per level (1 when unset).
    pub fn scales(&self) -> usize {
        self.scales_per_octave.unwrap_or(1)
    }

    /// Anchors per feature-map position: sizes per level × aspect ratios.
    pub fn anchors_per_location(&self) -> usize {
        self.scales() * self.aspect_ratios.len()
    }

    /// Builds the generator; sizes and ratios must be positive and non-empty, and the
    /// scales per octave at least 1.
    pub fn init(&self) -> Result<AnchorGenerator, ModelError> {
        let scales = self.scales();
        if scales == 0 {
            return Err(ModelError::InvalidConfig(
                "anchor scales per octave must be at least 1".into(),
            ));
        }
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
            .map(|&level_size| {
                let sizes =
                    (0..scales).map(move |i| level_size * (2f32).powf(i as f32 / scales as f32));
                sizes
                    .flat_map(|size| self.aspect_ratios.iter().map(move |&ratio| (size, ratio)))
                    .map(|(size, ratio)| {
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
    /// Anchors per feature-map position (scales per octave × aspect ratios).
    pub fn num_anchors_per_location(&self) -> usize {
        self.cell_anchors[0].len()
    }

    /// Number of pyramid levels the generator expects.
    pub fn num_levels(&self) -> usize {
        self.cell_anchors.len()
    }

    /// The anchors of each level for an image of `image_size = (height, width)` and the
    /// feature maps' `(height, width)`, in the order the RPN head's outputs are flattened:
    /// row `y`, column `x`, anchor `a` (scale-major, then ratio) → index
    /// `(y · W + x) · A + a`. A level's stride is `image size / feature size` (integer
    /// division, as torchvision); anchors are centred on `(x · stride, y · stride)`.
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
    use super::super::box_ops::iou;
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
    fn scales_per_octave_fill_the_octave_between_levels() {
        let g = AnchorGeneratorConfig::new()
            .with_scales_per_octave(Some(3))
            .init()
            .unwrap();
        assert_eq!(g.num_anchors_per_location(), 9);
        let config = AnchorGeneratorConfig::new().with_scales_per_octave(Some(3));
        assert_eq!(config.anchors_per_location(), 9);
        let a = g.anchors_per_level((64, 64), &[(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]);
        assert_eq!(a[0].len(), 16 * 16 * 9);
        // P3 at (0, 0), ratio 1: sides 16, 16·2^(1/3) ≈ 20.16, 16·2^(2/3) ≈ 25.40 → rounded
        // half-sides 8, 10, 13; the next level starts again at the octave, 32.
        let sides: Vec<f32> = [1, 4, 7].iter().map(|&i| a[1][i][2]).collect();
        assert_eq!(sides, vec![8.0, 10.0, 13.0]);
        assert_eq!(a[2][1], [-16.0, -16.0, 16.0, 16.0]);
        // One scale is the paper's generator, anchor for anchor.
        let one = AnchorGeneratorConfig::new().with_scales_per_octave(Some(1));
        assert_eq!(
            one.init().unwrap(),
            AnchorGeneratorConfig::new().init().unwrap()
        );
        // A 25×25 nucleus centred on an anchor position: best anchor IoU 0.61 with the
        // paper's sizes (32²), 0.92 with three per octave (25.4², rounded to 26²).
        let nucleus = [-12.5f32, -12.5, 12.5, 12.5];
        let paper = AnchorGeneratorConfig::new().init().unwrap();
        let max_iou = |g: &AnchorGenerator| {
            let levels = g.anchors_per_level((64, 64), &[(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]);
            let a = g.num_anchors_per_location();
            levels
                .iter()
                .flat_map(|l| l[..a].to_vec())
                .map(|b| iou(&b, &nucleus))
                .fold(0f32, f32::max)
        };
        assert!((max_iou(&paper) - 0.61).abs() < 0.01, "{}", max_iou(&paper));
        assert!((max_iou(&g) - 0.92).abs() < 0.01, "{}", max_iou(&g));
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
        assert!(AnchorGeneratorConfig::new()
            .with_scales_per_octave(Some(0))
            .init()
            .is_err());
    }
}
