//! The one entry point from an H&E image to nuclei: stain normalization → segmenter
//! (e.g. Mask R-CNN) with test-time augmentation → tiling and stitching (Jung et al. 2019,
//! Fig. 1).
//!
//! The paper's four setups are the [`Preset`]s (`Preset::NucSeg.config()`, or
//! `"NucSeg-P".parse::<Preset>()` from a command line).
//!
//! The whole image is normalized once (Macenko and Reinhard estimate the image's stains
//! globally; DCGMM works in tiles internally), then cut into overlapping tiles, each tile
//! segmented with its augmented views, and the tiles stitched. Only a batch of tiles is
//! given to the model at a time, so memory is bounded by the tile size.

use burn::config::Config;
use image::RgbImage;

mod preset;

pub use preset::{Preset, UnknownPreset};

use crate::{
    data::SampleInfo,
    instances::{InstanceSegmenter, Instances, Nuclei, OverlapConfig},
    metrics::{EvaluatedImage, Evaluation, ImageMetrics},
    output::OutputDir,
    postprocess::{TiledSegmenter, TilerConfig, TtaConfig, TtaEnsemble},
    stain::StainNormalizer,
};

/// The default score threshold ([`PipelineConfig::min_score`], and the slide runner's).
pub const DEFAULT_MIN_SCORE: f32 = 0.7;

/// What the pipeline does; the defaults are the paper's full method ([`Preset::NucSeg`]).
#[derive(Config, Debug, PartialEq)]
pub struct PipelineConfig {
    /// Apply the stain normalizer given to [`Pipeline::new`] (when there is one).
    #[config(default = true)]
    pub normalize: bool,
    /// Test-time augmentation (views, matching, voting); `set = None` turns it off. The
    /// paper's merge, except that its overlaps are left to [`overlaps`](Self::overlaps)
    /// (`keep_overlaps`; chosen on a hold-out of four Kumar training images and checked on
    /// CPM-15: NucSeg AJI 0.5676 → 0.5735, PQ 0.5438 → 0.5668, with absorption).
    #[config(default = "TtaConfig::new().with_keep_overlaps(true)")]
    pub tta: TtaConfig,
    /// Tile size, overlap and batch: 1024-px tiles at stride 768 (256 px of overlap), one
    /// at a time. A 1000×1000 image is one tile, segmented whole: 2× faster than the
    /// paper's nine 500-px tiles and more accurate on the validation set (CPM-15, AJI 0.509
    /// against 0.504; `docs/performance.md`). `TilerConfig::new()` is the paper's tiling.
    #[config(
        default = "TilerConfig::new().with_tile_size(1024).with_stride(768).with_batch_size(1)"
    )]
    pub tiling: TilerConfig,
    /// Nuclei with a lower final score are dropped: after TTA voting, before stitching (so
    /// Mask R-CNN computes masks only for the nuclei it keeps without TTA). 0.7, chosen
    /// with the models-v7 weights on CPM-15 and TNBC (mean AJI of three validation rows
    /// 0.5334 at 0.6, 0.5365 at 0.65, 0.5375 at 0.7); 0.6 for models-v4 to v6, 0.5 before
    /// (`models/MODEL_CARD.md`).
    #[config(default = "DEFAULT_MIN_SCORE")]
    pub min_score: f32,
    /// How overlapping nuclei are made disjoint after stitching
    /// ([`Nuclei::from_instances_with`]): by default mask-level NMS at 90 %, largest piece,
    /// 30 px minimum (chosen on CPM-15 at 95 %: AJI 0.509 → 0.521 / PQ 0.434 → 0.477
    /// without TTA, 0.525 → 0.525 / 0.479 → 0.486 with it; 90 % with the models-v4
    /// weights), and a dropped duplicate's free pixels
    /// absorbed by the nucleus holding at least 20 % of it (chosen on the Kumar hold-out:
    /// NucSeg-P AJI 0.5587 → 0.5672, PQ 0.5428 → 0.5514); [`OverlapConfig::cleanup`].
    #[config(default = "OverlapConfig::cleanup()")]
    pub overlaps: OverlapConfig,
    /// Every image is resized by this factor before it is segmented, and the nuclei are
    /// mapped back onto its pixels, as Cellpose rescales by `diameter` and StarDist by
    /// `scale`: the shipped model was trained at 40× (about 0.25 µm per pixel), and a 20×
    /// image (0.5 µm) is nominally 2, though on CPM-15's 20× images 1.5 scored best and 2
    /// worse than 1 (model card, "Test scale"). 1: as given.
    #[config(default = 1.0)]
    pub input_scale: f32,
}

/// The pixel size the shipped model was trained at (MoNuSeg, 40×), in µm.
pub const MODEL_MPP: f64 = 0.25;

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
        Self::with_members(config, vec![segmenter], normalizer)
    }

    /// A pipeline around several segmenters that share the views of test-time augmentation
    /// ([`TtaConfig::init_members`]: the distinct views go to them in turn, and their
    /// predictions are voted as one model's views are); all see images normalized by the one
    /// `normalizer`, so they must have been trained behind the same normalization.
    pub fn with_members(
        config: PipelineConfig,
        members: Vec<S>,
        normalizer: Option<Box<dyn StainNormalizer>>,
    ) -> crate::Result<Self> {
        if !(0.0..=1.0).contains(&config.min_score) {
            return Err(crate::postprocess::PostprocessError::InvalidConfig {
                config: "PipelineConfig",
                field: "min_score",
                value: config.min_score.to_string(),
                reason: "a score threshold must lie in [0, 1]",
            }
            .into());
        }
        if let Some((field, v)) = config.overlaps.out_of_range() {
            return Err(crate::postprocess::PostprocessError::InvalidConfig {
                config: "OverlapConfig",
                field,
                value: v.to_string(),
                reason: "a fraction must lie in [0, 1]",
            }
            .into());
        }
        if crate::data::resize_problem("input_scale", config.input_scale).is_some() {
            return Err(crate::postprocess::PostprocessError::InvalidConfig {
                config: "PipelineConfig",
                field: "input_scale",
                value: config.input_scale.to_string(),
                reason: "a resize factor must lie in [0.25, 4] (data::RESIZE_FACTORS)",
            }
            .into());
        }
        let tta = config.tta.init_members(members)?;
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

    /// From now on, normalizes every image with the source statistics estimated once from
    /// `sample` (see [`StainNormalizer::with_source`]) — for the tiles of one slide.
    /// Returns whether it did: not without a normalizer, with DCGMM, or when `sample` has
    /// no tissue.
    pub fn fix_source_stains(&mut self, sample: &RgbImage) -> crate::Result<bool> {
        let fixed = match &self.normalizer {
            Some(n) => n.with_source(sample)?,
            None => None,
        };
        let done = fixed.is_some();
        if fixed.is_some() {
            self.normalizer = fixed;
        }
        Ok(done)
    }

    /// Normalizes an image as the pipeline does (unchanged without a normalizer).
    pub fn normalize(&self, image: &RgbImage) -> crate::Result<RgbImage> {
        Ok(match &self.normalizer {
            Some(n) => n.transform(image)?,
            None => image.clone(),
        })
    }

    /// Segments one image.
    pub fn run(&self, image: &RgbImage) -> crate::Result<Nuclei> {
        self.run_with_progress(image, |_, _| {})
    }

    /// Segments one image, calling `progress(tiles done, tiles total)` as tiles finish.
    pub fn run_with_progress(
        &self,
        image: &RgbImage,
        progress: impl FnMut(usize, usize),
    ) -> crate::Result<Nuclei> {
        Ok(Nuclei::from_instances_with(
            &self.instances_with_progress(image, progress)?,
            &self.config.overlaps,
        ))
    }

    /// The stitched and score-filtered instances behind [`run`](Self::run), before
    /// overlapping pixels are given to the higher score.
    fn instances_with_progress(
        &self,
        image: &RgbImage,
        progress: impl FnMut(usize, usize),
    ) -> crate::Result<Instances> {
        let normalized = self.normalize(image)?;
        let tiled = &self.segmenter;
        let scale = self.config.input_scale;
        if scale == 1.0 {
            return tiled.tiler.segment_above(
                &tiled.segmenter,
                &normalized,
                self.config.min_score,
                progress,
            );
        }
        let (w, h) = normalized.dimensions();
        let resized = crate::data::resize_by(&normalized, scale);
        let found = tiled.tiler.segment_above(
            &tiled.segmenter,
            &resized,
            self.config.min_score,
            progress,
        )?;
        Ok(found.resampled(w, h))
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
            let (image, truth) = info.load_annotated("evaluation")?;
            let start = std::time::Instant::now();
            let result = self.run(&image)?;
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
        self.instances_with_progress(image, |_, _| {})
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
    fn without_tta_and_normalization_it_is_the_tiled_segmenter() {
        let image = scene(330, 270);
        let config = Preset::NucSegNp
            .config()
            .with_tiling(TilerConfig::new().with_tile_size(128).with_stride(64));
        let pipeline = Pipeline::new(config, ClassicalBaseline::default(), None).unwrap();
        let out = pipeline.run(&image).unwrap();
        let direct = ClassicalBaseline::default().segment_labels(&image);
        // Disks away from the border are found whole, once each, exactly as on the full image.
        assert_eq!(out.labels.count(), direct.count());
        let m = crate::metrics::ImageMetrics::compute(&direct, &out.labels).unwrap();
        assert_eq!(m.aji, 1.0);
    }

    #[test]
    fn an_input_scale_segments_a_resized_image_and_maps_nuclei_back() {
        let image = scene(200, 160);
        let direct = ClassicalBaseline::default().segment_labels(&image);
        let config = Preset::NucSegNp.config().with_input_scale(2.0);
        let pipeline = Pipeline::new(config, ClassicalBaseline::default(), None).unwrap();
        let out = pipeline.run(&image).unwrap();
        assert_eq!(out.labels.dimensions(), (200, 160));
        assert_eq!(out.labels.count(), direct.count());
        let m = crate::metrics::ImageMetrics::compute(&direct, &out.labels).unwrap();
        assert!(m.aji > 0.9, "AJI {}", m.aji);
        for bad in [0.0, f32::NAN, 5.0] {
            let config = Preset::NucSegNp.config().with_input_scale(bad);
            let err = Pipeline::new(config, ClassicalBaseline::default(), None)
                .err()
                .expect("refused")
                .to_string();
            assert!(err.contains("input_scale"), "{err}");
        }
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
            Preset::NucSegP.config(),
            ClassicalBaseline::default(),
            Some(Box::new(reinhard.clone())),
        )
        .unwrap();
        assert_eq!(on.normalizer_name(), "reinhard");
        assert_ne!(on.normalize(&image).unwrap(), image);
        let off = Pipeline::new(
            Preset::NucSegNp.config(),
            ClassicalBaseline::default(),
            Some(Box::new(reinhard)),
        )
        .unwrap();
        assert_eq!(off.normalizer_name(), "none");
        assert_eq!(off.normalize(&image).unwrap(), image);
    }

    #[test]
    fn fixed_source_stains_map_a_part_as_the_whole() {
        let image = scene(96, 96);
        let mut reinhard = Reinhard::default();
        let template = RgbImage::from_fn(64, 64, |x, _| {
            image::Rgb(if x % 5 < 2 {
                [110, 50, 150]
            } else {
                [225, 160, 200]
            })
        });
        reinhard.fit(&template).unwrap();
        let mut on = Pipeline::new(
            Preset::NucSegP.config(),
            ClassicalBaseline::default(),
            Some(Box::new(reinhard.clone())),
        )
        .unwrap();
        let part = image::imageops::crop_imm(&image, 0, 0, 30, 96).to_image();
        // Each image's own statistics: the part (little nucleus) is mapped otherwise.
        let whole = on.normalize(&image).unwrap();
        let crop = |img: &RgbImage| image::imageops::crop_imm(img, 0, 0, 30, 96).to_image();
        assert_ne!(on.normalize(&part).unwrap(), crop(&whole));
        assert!(on.fix_source_stains(&image).unwrap());
        assert_eq!(on.normalize(&part).unwrap(), crop(&whole));
        let mut off = Pipeline::new(
            Preset::NucSegNp.config(),
            ClassicalBaseline::default(),
            None,
        )
        .unwrap();
        assert!(!off.fix_source_stains(&image).unwrap());
    }
}
