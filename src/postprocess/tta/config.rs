//! The settings of test-time augmentation: which views, and how their predictions are
//! matched and voted.

use std::str::FromStr;

use burn::config::Config;

use crate::postprocess::{Dihedral, PostprocessError};

/// Which views of the image are segmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TtaSet {
    /// The original image only: the ensemble returns the wrapped segmenter's prediction
    /// unchanged (no merge, no overlap resolution).
    None,
    /// The paper's seven images: original, rotations by 90°, 180° and 270°, horizontal flip,
    /// vertical flip, and horizontal + vertical flip. The last equals the 180° rotation
    /// pixel for pixel, so it is segmented once and **counts twice in the vote** (the paper's
    /// list, kept faithfully: with 7 views a pixel needs 4 votes, and the 180° view supplies
    /// 2 of them).
    #[default]
    Paper,
    /// The whole dihedral group: the four rotations and the four mirrors (8 distinct views,
    /// a pixel needs 5 votes).
    D4,
}

impl TtaSet {
    /// The views, in vote order (the original first). `Paper` lists `Rot180` twice.
    pub fn views(self) -> Vec<Dihedral> {
        use Dihedral::*;
        match self {
            TtaSet::None => vec![Identity],
            // FlipH then FlipV == Rot180 (see `Dihedral::then`).
            TtaSet::Paper => vec![Identity, Rot90, Rot180, Rot270, FlipH, FlipV, Rot180],
            TtaSet::D4 => Dihedral::ALL.to_vec(),
        }
    }

    /// The name accepted by [`FromStr`]: `none`, `paper` or `d4`.
    pub fn name(self) -> &'static str {
        match self {
            TtaSet::None => "none",
            TtaSet::Paper => "paper",
            TtaSet::D4 => "d4",
        }
    }
}

impl FromStr for TtaSet {
    type Err = PostprocessError;

    /// Parses `none`, `paper` or `d4` (any case, surrounding spaces ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(TtaSet::None),
            "paper" => Ok(TtaSet::Paper),
            "d4" => Ok(TtaSet::D4),
            _ => Err(PostprocessError::UnknownTtaSet(s.to_string())),
        }
    }
}

impl std::fmt::Display for TtaSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What happens to nuclei found in augmented views but not in the original view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnmatchedPolicy {
    /// Ignore them: the original view decides which nuclei exist (the paper's literal
    /// procedure, which only starts from the original's nuclei).
    Drop,
    /// Keep one when more than `vote_fraction` of all views (the original counting as a
    /// miss) found it, then vote its pixels like any other nucleus. The default: a nucleus
    /// that most views see should not be lost because the original view missed it.
    #[default]
    Majority,
}

impl FromStr for UnmatchedPolicy {
    type Err = PostprocessError;

    /// Parses `drop` or `majority` (any case, surrounding spaces ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "drop" => Ok(UnmatchedPolicy::Drop),
            "majority" => Ok(UnmatchedPolicy::Majority),
            _ => Err(PostprocessError::UnknownUnmatchedPolicy(s.to_string())),
        }
    }
}

/// Settings of [`TtaEnsemble`](super::TtaEnsemble); the defaults are the paper's (Sec. 2.4).
#[derive(Config, Debug, PartialEq)]
pub struct TtaConfig {
    /// Which views are segmented and voted.
    #[config(default = "TtaSet::Paper")]
    pub set: TtaSet,
    /// A view's nucleus matches when its IoU with the original's nucleus is above this.
    #[config(default = 0.2)]
    pub match_iou: f64,
    /// A pixel (or a recovered nucleus) is kept when more than this fraction of the views
    /// vote for it; the original view counts.
    #[config(default = 0.5)]
    pub vote_fraction: f64,
    /// Nuclei seen in augmented views but missed by the original.
    #[config(default = "UnmatchedPolicy::Majority")]
    pub unmatched: UnmatchedPolicy,
    /// Merged nuclei that voting or overlap resolution shrank below this many pixels (and
    /// below their original prediction's size) are dropped (with `keep_overlaps`, those
    /// that voting shrank).
    #[config(default = 10)]
    pub min_area: u64,
    /// Skip step 4 of the merge: merged nuclei keep their voted masks, overlaps and all,
    /// and whoever takes the nuclei resolves them (the pipeline, with its
    /// [`OverlapConfig`](crate::OverlapConfig): mask-level NMS, absorption). `false`: the
    /// merge resolves overlaps by score itself, as the paper's pipeline paints nuclei.
    #[config(default = false)]
    pub keep_overlaps: bool,
    /// Each view's nuclei scored below this are left out before matching, and the
    /// segmenter may skip their work ([`InstanceSegmenter::segment_batch_above`]: Mask
    /// R-CNN computes no mask for them). 0 keeps all it returns (Mask R-CNN's own
    /// `score_thresh`, 0.05), as the paper votes. Chosen on the validation set (CPM-15,
    /// shipped model, NucSeg): 0 → AJI 0.521 / PQ 0.461, 0.3 → 0.522 / 0.467, 0.5 →
    /// 0.524 / 0.479, and half the time of 0 (`docs/performance.md`).
    ///
    /// [`InstanceSegmenter::segment_batch_above`]: crate::instances::InstanceSegmenter::segment_batch_above
    #[config(default = 0.5)]
    pub view_min_score: f32,
    /// Views given to the segmenter per call (bounds memory: the six distinct views of a
    /// 1024-px tile in one batch peak at 1.7 GB on the CPU, one at a time at 0.5 GB, for
    /// the same time; a GPU may prefer more).
    #[config(default = 1)]
    pub views_per_batch: usize,
}

impl TtaConfig {
    /// Checks that the thresholds lie in `[0, 1)` (`view_min_score` in `[0, 1]`) and that
    /// `views_per_batch` is at least 1.
    pub fn validate(&self) -> Result<(), PostprocessError> {
        if self.views_per_batch == 0 {
            return Err(PostprocessError::InvalidConfig {
                config: "TtaConfig",
                field: "views_per_batch",
                value: "0".into(),
                reason: "must be at least 1",
            });
        }
        if !(0.0..=1.0).contains(&self.view_min_score) {
            return Err(PostprocessError::InvalidConfig {
                config: "TtaConfig",
                field: "view_min_score",
                value: self.view_min_score.to_string(),
                reason: "a score threshold must lie in [0, 1]",
            });
        }
        for (field, value) in [
            ("match_iou", self.match_iou),
            ("vote_fraction", self.vote_fraction),
        ] {
            if !(0.0..1.0).contains(&value) {
                return Err(PostprocessError::InvalidConfig {
                    config: "TtaConfig",
                    field,
                    value: value.to_string(),
                    reason: "must lie in [0, 1)",
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_parse_and_print() {
        for set in [TtaSet::None, TtaSet::Paper, TtaSet::D4] {
            assert_eq!(set.to_string().parse::<TtaSet>().unwrap(), set);
        }
        assert_eq!(" D4 ".parse::<TtaSet>().unwrap(), TtaSet::D4);
        assert!(matches!(
            "rot".parse::<TtaSet>(),
            Err(PostprocessError::UnknownTtaSet(_))
        ));
        let json = burn::config::config_to_json(&TtaConfig::new().with_set(TtaSet::D4));
        assert!(json.contains("\"d4\""), "{json}");
    }

    #[test]
    fn unmatched_policies_parse() {
        assert_eq!(
            " Drop ".parse::<UnmatchedPolicy>().unwrap(),
            UnmatchedPolicy::Drop
        );
        assert_eq!(
            "majority".parse::<UnmatchedPolicy>().unwrap(),
            UnmatchedPolicy::Majority
        );
        assert!(matches!(
            "keep".parse::<UnmatchedPolicy>(),
            Err(PostprocessError::UnknownUnmatchedPolicy(_))
        ));
    }

    #[test]
    fn the_paper_set_repeats_rot180() {
        let v = TtaSet::Paper.views();
        assert_eq!(v.len(), 7);
        assert_eq!(Dihedral::FlipH.then(Dihedral::FlipV), v[6]);
        assert_eq!(v.iter().filter(|&&t| t == Dihedral::Rot180).count(), 2);
        assert_eq!(TtaSet::D4.views().len(), 8);
        let cfg = TtaConfig::new();
        assert_eq!(
            (cfg.set, cfg.match_iou, cfg.vote_fraction),
            (TtaSet::Paper, 0.2, 0.5)
        );
    }

    #[test]
    fn invalid_thresholds_are_errors() {
        let bad = TtaConfig::new().with_vote_fraction(1.0);
        assert!(bad.validate().is_err());
        assert!(TtaConfig::new()
            .with_match_iou(f64::NAN)
            .validate()
            .is_err());
        assert!(TtaConfig::new()
            .with_view_min_score(-0.1)
            .validate()
            .is_err());
        assert!(TtaConfig::new().with_views_per_batch(0).validate().is_err());
        assert!(TtaConfig::new()
            .with_view_min_score(f32::NAN)
            .validate()
            .is_err());
        assert!(TtaConfig::new().validate().is_ok());
    }
}
