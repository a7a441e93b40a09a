//! [`TtaEnsemble`]: segment every view, map the predictions back, merge them.

use image::RgbImage;

use super::{config::TtaSet, merge::merge_views, TtaConfig};
use crate::instances::{keep_above, InstanceSegmenter, Instances};
use crate::postprocess::{masks::sanitize, Dihedral, PostprocessError};

impl TtaConfig {
    /// Checks the settings and wraps `segmenter`.
    ///
    /// # Errors
    /// `match_iou` or `vote_fraction` outside `[0, 1)` (or not finite).
    pub fn init<S: InstanceSegmenter>(
        &self,
        segmenter: S,
    ) -> Result<TtaEnsemble<S>, PostprocessError> {
        self.init_members(vec![segmenter])
    }

    /// Checks the settings and wraps several segmenters (e.g. snapshots of one training
    /// run) that share the views: the distinct views go to the members in turn, in vote
    /// order (the original to the first), so segmenting costs what it costs with one; with
    /// [`TtaSet::None`] every member segments the original. Their predictions are then
    /// matched and voted as the views of one model are ([`merge_views`]): a snapshot
    /// ensemble (Huang et al. 2017) at the price of test-time augmentation.
    ///
    /// # Errors
    /// As [`init`](Self::init); [`PostprocessError::Members`] for no members, or more
    /// members than distinct views (some would never run).
    pub fn init_members<S: InstanceSegmenter>(
        &self,
        members: Vec<S>,
    ) -> Result<TtaEnsemble<S>, PostprocessError> {
        self.validate()?;
        let distinct = match self.set {
            TtaSet::None => members.len().max(1),
            set => distinct_views(&set.views()).len(),
        };
        if members.is_empty() || members.len() > distinct {
            return Err(PostprocessError::Members {
                members: members.len(),
                views: distinct,
            });
        }
        Ok(TtaEnsemble {
            members,
            config: self.clone(),
        })
    }
}

/// The views in vote order without repeats (the paper set's second 180° view is dropped).
fn distinct_views(views: &[Dihedral]) -> Vec<Dihedral> {
    let mut distinct: Vec<Dihedral> = Vec::new();
    for &v in views {
        if !distinct.contains(&v) {
            distinct.push(v);
        }
    }
    distinct
}

/// Test-time augmentation around any segmenter: segments every view of
/// [`TtaConfig::set`], maps the predictions back exactly and merges them with
/// [`merge_views`].
///
/// The distinct views are segmented once each (the paper set's repeated 180° view is not
/// segmented twice), in calls of [`TtaConfig::views_per_batch`] views of one size (a
/// non-square image's rotated views are transposed, so they go in calls of their own).
///
/// With several members ([`TtaConfig::init_members`]) the views are shared among them.
///
/// Predictions are checked ([`PostprocessError::SizeMismatch`],
/// [`PostprocessError::MalformedMask`]), clipped to the view, and mapped back exactly by the
/// inverse transform before merging.
#[derive(Debug, Clone)]
pub struct TtaEnsemble<S> {
    /// At least one; the first segments the original view.
    members: Vec<S>,
    config: TtaConfig,
}

impl<S: InstanceSegmenter> TtaEnsemble<S> {
    /// The ensemble with the paper's settings.
    pub fn new(segmenter: S) -> Self {
        TtaEnsemble {
            members: vec![segmenter],
            config: TtaConfig::new(),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &TtaConfig {
        &self.config
    }

    /// The wrapped segmenter (the first member).
    pub fn inner(&self) -> &S {
        &self.members[0]
    }

    /// The wrapped segmenters, the first segmenting the original view.
    pub fn members(&self) -> &[S] {
        &self.members
    }

    /// Gives the wrapped segmenter (the first member) back.
    pub fn into_inner(self) -> S {
        self.members
            .into_iter()
            .next()
            .expect("at least one member")
    }

    /// The vote list: each entry a view and the member that segments it. One member: the
    /// set's views. Several: the distinct views go to the members in turn (a repeated view
    /// keeps its member and counts twice, as in the paper set); without augmentation, the
    /// original once per member.
    fn plan(&self) -> Vec<(Dihedral, usize)> {
        let views = self.config.set.views();
        let n = self.members.len();
        if self.config.set == TtaSet::None {
            return (0..n).map(|m| (Dihedral::Identity, m)).collect();
        }
        let distinct = distinct_views(&views);
        views
            .iter()
            .map(|v| {
                let rank = distinct.iter().position(|d| d == v).expect("listed");
                (*v, rank % n)
            })
            .collect()
    }

    /// Whether there is nothing to merge: one member and no augmentation.
    fn single(&self) -> bool {
        self.config.set == TtaSet::None && self.members.len() == 1
    }

    /// The predictions of every view of every image, mapped back to each image's frame:
    /// `result[image][k]` is the prediction for the `k`-th entry of the vote list (the
    /// views of `config.set`, or with several members the original once per member when
    /// there are no views), without the nuclei scored below [`TtaConfig::view_min_score`].
    pub fn segment_views(&self, images: &[RgbImage]) -> crate::Result<Vec<Vec<Instances>>> {
        let plan = self.plan();
        let mut distinct = plan.clone();
        distinct.sort();
        distinct.dedup();
        // Jobs grouped by member and the size of the transformed image, so each batch is
        // uniform and goes to one segmenter.
        let mut jobs: Vec<(usize, usize)> = Vec::new(); // (image, index into `distinct`)
        for i in 0..images.len() {
            for d in 0..distinct.len() {
                jobs.push((i, d));
            }
        }
        let key_of = |&(i, d): &(usize, usize)| {
            let (w, h) = images[i].dimensions();
            let (view, member) = distinct[d];
            (member, view.output_size(w, h))
        };
        let mut keys: Vec<(usize, (u32, u32))> = jobs.iter().map(key_of).collect();
        keys.sort();
        keys.dedup();
        let mut found: Vec<Vec<Option<Instances>>> = vec![vec![None; distinct.len()]; images.len()];
        for key in keys {
            let (member, size) = key;
            let group: Vec<(usize, usize)> =
                jobs.iter().copied().filter(|j| key_of(j) == key).collect();
            for part in group.chunks(self.config.views_per_batch) {
                let batch: Vec<RgbImage> = part
                    .iter()
                    .map(|&(i, d)| distinct[d].0.apply_image(&images[i]))
                    .collect();
                let results =
                    self.members[member].segment_batch_above(&batch, self.config.view_min_score)?;
                if results.len() != batch.len() {
                    return Err(PostprocessError::BatchLength {
                        context: "test-time augmentation",
                        expected: batch.len(),
                        got: results.len(),
                    }
                    .into());
                }
                for (&(i, d), result) in part.iter().zip(results) {
                    let t = distinct[d].0;
                    let result = sanitize(result, size.0, size.1, || format!("TTA view {t}"))?;
                    found[i][d] = Some(t.inverse().apply_instances(&result));
                }
            }
        }
        Ok(found
            .into_iter()
            .map(|per_view| {
                plan.iter()
                    .map(|job| {
                        let d = distinct.binary_search(job).expect("listed");
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
        if self.single() {
            return self.members[0].segment_batch(images);
        }
        self.segment_views(images)?
            .iter()
            .map(|views| Ok(merge_views(views, &self.config)?))
            .collect()
    }

    /// [`segment_batch`](Self::segment_batch) without the merged nuclei scored below
    /// `min_score` (their mean over the views); with one member and no views, the wrapped
    /// segmenter's own `segment_batch_above`.
    fn segment_batch_above(
        &self,
        images: &[RgbImage],
        min_score: f32,
    ) -> crate::Result<Vec<Instances>> {
        if self.single() {
            return self.members[0].segment_batch_above(images, min_score);
        }
        Ok(keep_above(self.segment_batch(images)?, min_score))
    }
}
