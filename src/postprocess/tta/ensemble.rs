//! [`TtaEnsemble`]: segment every view, map the predictions back, merge them.

use image::RgbImage;

use super::{config::TtaSet, merge::merge_views, TtaConfig};
use crate::instances::{keep_above, InstanceSegmenter, Instances};
use crate::postprocess::{masks::sanitize, PostprocessError};

impl TtaConfig {
    /// Checks the settings and wraps `segmenter`.
    ///
    /// # Errors
    /// `match_iou` or `vote_fraction` outside `[0, 1)` (or not finite).
    pub fn init<S: InstanceSegmenter>(
        &self,
        segmenter: S,
    ) -> Result<TtaEnsemble<S>, PostprocessError> {
        self.validate()?;
        Ok(TtaEnsemble {
            segmenter,
            config: self.clone(),
        })
    }
}

/// Test-time augmentation around any segmenter: segments every view of
/// [`TtaConfig::set`], maps the predictions back exactly and merges them with
/// [`merge_views`].
///
/// The distinct views are segmented once each (the paper set's repeated 180° view is not
/// segmented twice), in calls of [`TtaConfig::views_per_batch`] views of one size (a
/// non-square image's rotated views are transposed, so they go in calls of their own).
///
/// Predictions are checked ([`PostprocessError::SizeMismatch`],
/// [`PostprocessError::MalformedMask`]), clipped to the view, and mapped back exactly by the
/// inverse transform before merging.
#[derive(Debug, Clone)]
pub struct TtaEnsemble<S> {
    segmenter: S,
    config: TtaConfig,
}

impl<S: InstanceSegmenter> TtaEnsemble<S> {
    /// The ensemble with the paper's settings.
    pub fn new(segmenter: S) -> Self {
        TtaEnsemble {
            segmenter,
            config: TtaConfig::new(),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &TtaConfig {
        &self.config
    }

    /// The wrapped segmenter.
    pub fn inner(&self) -> &S {
        &self.segmenter
    }

    /// Gives the wrapped segmenter back.
    pub fn into_inner(self) -> S {
        self.segmenter
    }

    /// The predictions of every view of every image, mapped back to each image's frame:
    /// `result[image][k]` is the prediction for `config.set.views()[k]`, without the nuclei
    /// scored below [`TtaConfig::view_min_score`].
    pub fn segment_views(&self, images: &[RgbImage]) -> crate::Result<Vec<Vec<Instances>>> {
        let views = self.config.set.views();
        let mut distinct = views.clone();
        distinct.sort();
        distinct.dedup();
        // Jobs grouped by the size of the transformed image, so each batch is uniform.
        let mut jobs: Vec<(usize, usize)> = Vec::new(); // (image, index into `distinct`)
        for i in 0..images.len() {
            for d in 0..distinct.len() {
                jobs.push((i, d));
            }
        }
        let size_of = |&(i, d): &(usize, usize)| {
            let (w, h) = images[i].dimensions();
            distinct[d].output_size(w, h)
        };
        let mut sizes: Vec<(u32, u32)> = jobs.iter().map(size_of).collect();
        sizes.sort();
        sizes.dedup();
        let mut found: Vec<Vec<Option<Instances>>> = vec![vec![None; distinct.len()]; images.len()];
        for size in sizes {
            let group: Vec<(usize, usize)> = jobs
                .iter()
                .copied()
                .filter(|j| size_of(j) == size)
                .collect();
            for part in group.chunks(self.config.views_per_batch) {
                let batch: Vec<RgbImage> = part
                    .iter()
                    .map(|&(i, d)| distinct[d].apply_image(&images[i]))
                    .collect();
                let results = self
                    .segmenter
                    .segment_batch_above(&batch, self.config.view_min_score)?;
                if results.len() != batch.len() {
                    return Err(PostprocessError::BatchLength {
                        context: "test-time augmentation",
                        expected: batch.len(),
                        got: results.len(),
                    }
                    .into());
                }
                for (&(i, d), result) in part.iter().zip(results) {
                    let t = distinct[d];
                    let result = sanitize(result, size.0, size.1, || format!("TTA view {t}"))?;
                    found[i][d] = Some(t.inverse().apply_instances(&result));
                }
            }
        }
        Ok(found
            .into_iter()
            .map(|per_view| {
                views
                    .iter()
                    .map(|t| {
                        let d = distinct.binary_search(t).expect("listed");
                        per_view[d].clone().expect("every job ran")
                    })
                    .collect()
            })
            .collect())
    }
}

impl<S: InstanceSegmenter> InstanceSegmenter for TtaEnsemble<S> {
    fn segment_instances(&self, image: &RgbImage) -> crate::Result<Instances> {
        Ok(self
            .segment_batch(std::slice::from_ref(image))?
            .pop()
            .expect("one image in, one result out"))
    }

    /// Segments the views of all images (grouped by size, [`TtaConfig::views_per_batch`]
    /// per inner call), then merges each image's views.
    fn segment_batch(&self, images: &[RgbImage]) -> crate::Result<Vec<Instances>> {
        if self.config.set == TtaSet::None {
            return self.segmenter.segment_batch(images);
        }
        self.segment_views(images)?
            .iter()
            .map(|views| Ok(merge_views(views, &self.config)?))
            .collect()
    }

    /// [`segment_batch`](Self::segment_batch) without the merged nuclei scored below
    /// `min_score` (their mean over the views); without views, the wrapped segmenter's own
    /// `segment_batch_above`.
    fn segment_batch_above(
        &self,
        images: &[RgbImage],
        min_score: f32,
    ) -> crate::Result<Vec<Instances>> {
        if self.config.set == TtaSet::None {
            return self.segmenter.segment_batch_above(images, min_score);
        }
        Ok(keep_above(self.segment_batch(images)?, min_score))
    }
}
