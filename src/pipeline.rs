//! The one entry point from an H&E image to nuclei: stain normalization → segmenter
//! (e.g. Mask R-CNN) with test-time augmentation → tiling and stitching (Jung et al. 2019,
//! Fig. 1).
//!
//! The paper's four setups are named presets of [`PipelineConfig`]:
//!
//! | preset | normalization | multiple inference (TTA) |
//! | --- | --- | --- |
//! | `NucSeg` | yes | yes |
//! | `NucSeg-P` | yes | no |
//! | `NucSeg-N` | no | yes |
//! | `NucSeg-NP` | no | no |
//!
//! The whole image is normalized once (Macenko and Reinhard estimate the image's stains
//! globally; DCGMM works in tiles internally), then cut into overlapping tiles, each tile
//! segmented with its augmented views, and the tiles stitched. Only a batch of tiles is
//! given to the model at a time, so memory is bounded by the tile size.

use burn::config::Config;
use image::RgbImage;

use crate::{
    data::{LabelMap, SampleInfo},
    instances::{InstanceSegmenter, Instances},
    metrics::{EvaluatedImage, Evaluation, ImageMetrics},
    output::OutputDir,
    postprocess::{TiledSegmenter, TilerConfig, TtaConfig, TtaEnsemble, TtaSet},
    stain::StainNormalizer,
};

/// What the pipeline does; see the module docs for the presets.
#[derive(Config, Debug, PartialEq)]
pub struct PipelineConfig {
    /// Apply the stain normalizer given to [`Pipeline::new`] (when there is one).
    #[config(default = true)]
    pub normalize: bool,
    /// Test-time augmentation (views, matching, voting); `set = None` turns it off.
    #[config(default = "TtaConfig::new()")]
    pub tta: TtaConfig,
    /// Tile size, overlap and batch.
    #[config(default = "TilerConfig::new()")]
    pub tiling: TilerConfig,
    /// Nuclei with a lower final score are dropped (after TTA voting).
    #[config(default = 0.5)]
    pub min_score: f32,
}

impl PipelineConfig {
    /// The paper's setups: `NucSeg` (normalization + TTA), `NucSeg-P` (no TTA), `NucSeg-N`
    /// (no normalization), `NucSeg-NP` (neither). Case-insensitive.
    pub fn preset(name: &str) -> crate::Result<Self> {
        let (normalize, tta) = match name.to_ascii_lowercase().as_str() {
            "nucseg" => (true, true),
            "nucseg-p" => (true, false),
            "nucseg-n" => (false, true),
            "nucseg-np" => (false, false),
            other => {
                return Err(crate::postprocess::PostprocessError::InvalidConfig {
                    config: "PipelineConfig",
                    field: "preset",
                    value: other.to_string(),
                    reason: "expected NucSeg, NucSeg-P, NucSeg-N or NucSeg-NP",
                }
                .into())
            }
        };
        let set = if tta { TtaSet::Paper } else { TtaSet::None };
        Ok(PipelineConfig::new()
            .with_normalize(normalize)
            .with_tta(TtaConfig::new().with_set(set)))
    }

    /// The names of the four presets, in the paper's order.
    pub const PRESETS: [&'static str; 4] = ["NucSeg", "NucSeg-P", "NucSeg-N", "NucSeg-NP"];
}

/// The nuclei of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineOutput {
    /// Every nucleus, with mask, box and score.
    pub instances: Instances,
    /// The instance label map (ids `1..=N` by decreasing score).
    pub labels: LabelMap,
}

/// Normalization → segmenter with TTA → tiling. Generic over the segmenter, so it runs
/// Mask R-CNN, the classical baseline or anything implementing [`InstanceSegmenter`].
pub struct Pipeline<S: InstanceSegmenter> {
    config: PipelineConfig,
    normalizer: Option<Box<dyn StainNormalizer>>,
    segmenter: TiledSegmenter<TtaEnsemble<S>>,
}

impl<S: InstanceSegmenter> Pipeline<S> {
    /// A pipeline around `segmenter`; `normalizer` must already be fitted to its template
    /// (it is ignored when `config.normalize` is false).
    pub fn new(
        config: PipelineConfig,
        segmenter: S,
        normalizer: Option<Box<dyn StainNormalizer>>,
    ) -> crate::Result<Self> {
        let tta = config.tta.init(segmenter)?;
        let tiler = config.tiling.init()?;
        Ok(Pipeline {
            normalizer: if config.normalize { normalizer } else { None },
            config,
            segmenter: TiledSegmenter::new(tiler, tta),
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// The name of the normalizer applied (`"none"` without one).
    pub fn normalizer_name(&self) -> &'static str {
        self.normalizer.as_ref().map_or("none", |n| n.name())
    }

    /// Normalizes an image as the pipeline does (unchanged without a normalizer).
    pub fn normalize(&self, image: &RgbImage) -> crate::Result<RgbImage> {
        Ok(match &self.normalizer {
            Some(n) => n.transform(image)?,
            None => image.clone(),
        })
    }

    /// Segments one image.
    pub fn run(&self, image: &RgbImage) -> crate::Result<PipelineOutput> {
        self.run_with_progress(image, |_, _| {})
    }

    /// Segments one image, calling `progress(tiles done, tiles total)` as tiles finish.
    pub fn run_with_progress(
        &self,
        image: &RgbImage,
        progress: impl FnMut(usize, usize),
    ) -> crate::Result<PipelineOutput> {
        let normalized = self.normalize(image)?;
        let tiled = &self.segmenter;
        let mut instances =
            tiled
                .tiler
                .segment_with_progress(&tiled.segmenter, &normalized, progress)?;
        instances.items.retain(|i| i.score >= self.config.min_score);
        let labels = instances.to_label_map();
        Ok(PipelineOutput { instances, labels })
    }
}

impl<S: InstanceSegmenter> Pipeline<S> {
    /// Runs the pipeline on annotated images and scores each against its truth, writing the
    /// label maps to `out` (as `<id>.png`) when given. `progress` is called after each
    /// image with (done, total, its scores, seconds it took).
    pub fn evaluate(
        &self,
        samples: &[SampleInfo],
        out: Option<&OutputDir>,
        mut progress: impl FnMut(usize, usize, &EvaluatedImage, f64),
    ) -> crate::Result<Evaluation> {
        let mut images = Vec::with_capacity(samples.len());
        for (k, info) in samples.iter().enumerate() {
            let sample = info.load()?;
            let truth = sample
                .labels
                .ok_or_else(|| crate::data::DataError::Dataset {
                    dir: info.image.clone(),
                    message: "no ground truth to evaluate against".into(),
                })?;
            let start = std::time::Instant::now();
            let result = self.run(&sample.image)?;
            let seconds = start.elapsed().as_secs_f64();
            if let Some(out) = out {
                out.write_label_map(&info.image, &result.labels)?;
            }
            let scored = EvaluatedImage {
                stem: info.id.clone(),
                metrics: ImageMetrics::compute(&truth, &result.labels)?,
                prediction_missing: false,
            };
            progress(k + 1, samples.len(), &scored, seconds);
            images.push(scored);
        }
        Ok(Evaluation::from_images(images))
    }
}

impl<S: InstanceSegmenter> InstanceSegmenter for Pipeline<S> {
    fn segment_instances(&self, image: &RgbImage) -> crate::Result<Instances> {
        Ok(self.run(image)?.instances)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{baseline::ClassicalBaseline, stain::Reinhard};

    fn scene(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let (cx, cy) = ((x / 40) * 40 + 20, (y / 40) * 40 + 20);
            if (x as i32 - cx as i32).pow(2) + (y as i32 - cy as i32).pow(2) < 100 {
                image::Rgb([90, 40, 150])
            } else {
                image::Rgb([235, 175, 205])
            }
        })
    }

    #[test]
    fn presets_switch_normalization_and_tta() {
        let c = PipelineConfig::preset("NucSeg").unwrap();
        assert!(c.normalize && c.tta.set == TtaSet::Paper);
        let c = PipelineConfig::preset("nucseg-np").unwrap();
        assert!(!c.normalize && c.tta.set == TtaSet::None);
        assert!(PipelineConfig::preset("NucSeg-X").is_err());
    }

    #[test]
    fn without_tta_and_normalization_it_is_the_tiled_segmenter() {
        let image = scene(330, 270);
        let config = PipelineConfig::preset("NucSeg-NP")
            .unwrap()
            .with_tiling(TilerConfig::new().with_tile_size(128).with_stride(64));
        let pipeline = Pipeline::new(config, ClassicalBaseline::default(), None).unwrap();
        let out = pipeline.run(&image).unwrap();
        let direct = ClassicalBaseline::default().segment(&image);
        // Disks away from the border are found whole, once each, exactly as on the full image.
        assert_eq!(out.labels.count(), direct.count());
        let m = crate::metrics::ImageMetrics::compute(&direct, &out.labels).unwrap();
        assert_eq!(m.aji, 1.0);
    }

    #[test]
    fn normalizer_runs_only_when_configured() {
        let image = scene(96, 96);
        let mut reinhard = Reinhard::default();
        let template = RgbImage::from_fn(96, 96, |x, _| {
            if x % 7 < 3 {
                image::Rgb([120, 60, 160])
            } else {
                image::Rgb([220, 150, 190])
            }
        });
        reinhard.fit(&template).unwrap();
        let on = Pipeline::new(
            PipelineConfig::preset("NucSeg-P").unwrap(),
            ClassicalBaseline::default(),
            Some(Box::new(reinhard.clone())),
        )
        .unwrap();
        assert_eq!(on.normalizer_name(), "reinhard");
        assert_ne!(on.normalize(&image).unwrap(), image);
        let off = Pipeline::new(
            PipelineConfig::preset("NucSeg-NP").unwrap(),
            ClassicalBaseline::default(),
            Some(Box::new(reinhard)),
        )
        .unwrap();
        assert_eq!(off.normalizer_name(), "none");
        assert_eq!(off.normalize(&image).unwrap(), image);
    }
}
