//! The test-time augmentation merge of Sec. 2.4 of Jung et al. (2019): match each nucleus of
//! the original view with its counterpart in every augmented view, then vote pixel-wise.
//!
//! Steps, for `n` views already mapped back to the original frame (view 0 = the original):
//! 1. **Match.** For each nucleus of view 0 and each other view, the nucleus of that view
//!    with the highest IoU, if the IoU is above [`TtaConfig::match_iou`] (0.2), joins its
//!    group. Candidates come from a spatial grid over the boxes, and IoUs are counted on the
//!    intersection of the two boxes only. An augmented nucleus may join several groups.
//! 2. **Nuclei missed by the original** ([`UnmatchedPolicy`]). Augmented nuclei that match no
//!    nucleus of view 0 above the threshold are, under `Majority`, grouped greedily (most
//!    confident first, one nucleus per view, best IoU above the threshold with the group's
//!    anchor); a group is kept if it holds more than `vote_fraction × n` nuclei. Under `Drop`
//!    they are ignored.
//! 3. **Vote.** A pixel belongs to the merged nucleus when more than `vote_fraction × n`
//!    members of its group cover it (views that missed the nucleus count as votes against;
//!    a view listed twice votes twice). Score = sum of member scores / `n` (mean over the
//!    views, 0 for views that missed it); class = the most frequent member class (ties: the
//!    smaller id); box = the tight box of the voted mask.
//! 4. **Overlaps.** Merged nuclei are visited by decreasing score (ties: group order); each
//!    loses the pixels already taken by a higher-scored one. A nucleus left empty is dropped,
//!    and so is one left with fewer than [`TtaConfig::min_area`] pixels when that is fewer
//!    than the prediction it grew from (its original-view nucleus, or its anchor), i.e. when
//!    voting or overlaps shrank it to a sliver; a nucleus the model itself predicted that
//!    small, and that lost nothing, stays.
//!
//! With [`TtaConfig::keep_overlaps`] step 4 only drops the nuclei that voting shrank to a
//! sliver (below `min_area` and their original prediction), and the overlaps stay for the
//! caller to resolve (the pipeline's clean-up).
//!
//! The output lists the surviving nuclei in group order: the original view's nuclei first,
//! in their order, then the recovered ones. With identical views the output equals view 0
//! (up to masks being cropped to their tight box).

use crate::instances::{Instance, InstanceMask, Instances};

use super::config::{TtaConfig, UnmatchedPolicy};
use crate::postprocess::{
    grid::SpatialGrid,
    masks::{intersection, iou, mask_rect, rect_intersection, rect_union, tight_box_f32, tighten},
    PostprocessError,
};

/// The least number of votes (out of `n`) that is more than `fraction × n`.
pub(crate) fn min_votes(fraction: f64, n: usize) -> usize {
    ((fraction * n as f64).floor() as usize + 1).max(1)
}

/// A nucleus of one view: `(view, index in that view)`.
type Member = (usize, usize);

/// Every view's nuclei with what matching needs: their areas and a spatial grid over their
/// boxes.
struct ViewIndex<'a> {
    views: &'a [Instances],
    areas: Vec<Vec<u64>>,
    grids: Vec<SpatialGrid>,
    threshold: f64,
    candidates: Vec<u32>,
}

impl<'a> ViewIndex<'a> {
    fn new(views: &'a [Instances], threshold: f64) -> Self {
        ViewIndex {
            views,
            areas: views
                .iter()
                .map(|v| v.items.iter().map(|i| i.mask.area()).collect())
                .collect(),
            grids: views
                .iter()
                .map(|v| SpatialGrid::new(v.items.iter().map(|i| mask_rect(&i.mask)).collect()))
                .collect(),
            threshold,
            candidates: Vec::new(),
        }
    }

    fn item(&self, (v, i): Member) -> &'a Instance {
        &self.views[v].items[i]
    }

    /// The nucleus of view `v` among `eligible` ones with the highest IoU above the
    /// threshold with `anchor`; every nucleus above the threshold is reported to `seen`.
    fn best_match(
        &mut self,
        anchor: &InstanceMask,
        anchor_area: u64,
        v: usize,
        eligible: impl Fn(usize) -> bool,
        mut seen: impl FnMut(usize),
    ) -> Option<usize> {
        self.grids[v].query(mask_rect(anchor), &mut self.candidates);
        let mut best: Option<(f64, usize)> = None;
        for &c in &self.candidates {
            let c = c as usize;
            if !eligible(c) {
                continue;
            }
            let inter = intersection(anchor, &self.views[v].items[c].mask);
            if inter == 0 {
                continue;
            }
            let score = iou(inter, anchor_area, self.areas[v][c]);
            if score > self.threshold {
                seen(c);
                if best.is_none_or(|(b, _)| score > b) {
                    best = Some((score, c));
                }
            }
        }
        best.map(|(_, c)| c)
    }
}

/// A group's voted nucleus, before overlaps are resolved.
struct Voted {
    mask: InstanceMask,
    score: f32,
    class_id: u32,
    /// Area of the prediction the group grew from.
    anchor_area: u64,
}

/// Merges the predictions of several views of one image (all in the original image's frame;
/// `views[0]` is the original view) into one set of nuclei. See the module docs for the rule.
/// `config.set` is not read: the views are given.
///
/// # Errors
/// No views, more than 65535 views, or views of different image sizes.
pub fn merge_views(views: &[Instances], config: &TtaConfig) -> Result<Instances, PostprocessError> {
    let (width, height) = check_views(views)?;
    let n = views.len();
    let needed = min_votes(config.vote_fraction, n);
    let mut index = ViewIndex::new(views, config.match_iou);
    let mut covered: Vec<Vec<bool>> = views.iter().map(|v| vec![false; v.len()]).collect();
    let mut groups = seed_groups(&mut index, &mut covered);
    if config.unmatched == UnmatchedPolicy::Majority && n > 1 {
        groups.extend(recover_missed(&mut index, &mut covered, needed));
    }
    let mut counts = Vec::new();
    let voted: Vec<Voted> = groups
        .iter()
        .map(|members| vote(&index, members, needed, &mut counts))
        .collect();
    let items = if config.keep_overlaps {
        voted
            .into_iter()
            .filter(|v| {
                let area = v.mask.area();
                area > 0 && !(area < config.min_area && area < v.anchor_area)
            })
            .map(Voted::into_instance)
            .collect()
    } else {
        resolve_overlaps(voted, config.min_area)
    };
    Ok(Instances {
        width,
        height,
        items,
    })
}

/// The common image size of the views.
fn check_views(views: &[Instances]) -> Result<(u32, u32), PostprocessError> {
    let Some(first) = views.first() else {
        return Err(PostprocessError::NoViews);
    };
    if views.len() > u16::MAX as usize {
        return Err(PostprocessError::TooManyViews(views.len()));
    }
    let (width, height) = (first.width, first.height);
    for (v, view) in views.iter().enumerate() {
        if (view.width, view.height) != (width, height) {
            return Err(PostprocessError::SizeMismatch {
                context: format!("TTA merge, view {v}"),
                width,
                height,
                got_width: view.width,
                got_height: view.height,
            });
        }
    }
    Ok((width, height))
}

/// Step 1: one group per non-empty nucleus of the original view, with its best match in
/// every other view; every augmented nucleus above the threshold is marked `covered`.
fn seed_groups(index: &mut ViewIndex, covered: &mut [Vec<bool>]) -> Vec<Vec<Member>> {
    let views = index.views;
    let mut groups = Vec::new();
    for (i, seed) in views[0].items.iter().enumerate() {
        let area = index.areas[0][i];
        if area == 0 {
            continue;
        }
        let mut members = vec![(0, i)];
        for v in 1..views.len() {
            let cov = &mut covered[v];
            if let Some(c) = index.best_match(&seed.mask, area, v, |_| true, |c| cov[c] = true) {
                members.push((v, c));
            }
        }
        groups.push(members);
    }
    groups
}

/// Step 2 (`Majority`): groups of augmented nuclei that no original nucleus matched, most
/// confident first, one nucleus per view; kept when they hold at least `needed` nuclei.
/// `covered` then also marks nuclei already used by a group.
fn recover_missed(
    index: &mut ViewIndex,
    covered: &mut [Vec<bool>],
    needed: usize,
) -> Vec<Vec<Member>> {
    let (views, n) = (index.views, index.views.len());
    let mut pool: Vec<Member> = (1..n)
        .flat_map(|v| (0..views[v].len()).map(move |i| (v, i)))
        .filter(|&(v, i)| !covered[v][i] && index.areas[v][i] > 0)
        .collect();
    pool.sort_by(|&(va, ia), &(vb, ib)| {
        let (sa, sb) = (views[va].items[ia].score, views[vb].items[ib].score);
        sb.total_cmp(&sa).then((va, ia).cmp(&(vb, ib)))
    });
    let mut groups = Vec::new();
    for (va, ia) in pool {
        if covered[va][ia] {
            continue;
        }
        covered[va][ia] = true;
        let anchor = &views[va].items[ia].mask;
        let anchor_area = index.areas[va][ia];
        let mut members = vec![(va, ia)];
        for v in (1..n).filter(|&v| v != va) {
            let cov = &covered[v];
            if let Some(c) = index.best_match(anchor, anchor_area, v, |c| !cov[c], |_| {}) {
                members.push((v, c));
            }
        }
        for &(v, c) in &members {
            covered[v][c] = true;
        }
        if members.len() >= needed {
            groups.push(members);
        }
    }
    groups
}

/// Step 3: the pixel-wise vote of one group inside its members' union box (`counts` is
/// scratch space), with the mean score over all views and the most frequent class.
fn vote(index: &ViewIndex, members: &[Member], needed: usize, counts: &mut Vec<u16>) -> Voted {
    let rect = members
        .iter()
        .map(|&m| mask_rect(&index.item(m).mask))
        .fold([0; 4], rect_union);
    let (bw, bh) = (rect[2] - rect[0], rect[3] - rect[1]);
    counts.clear();
    counts.resize(bw as usize * bh as usize, 0);
    for &m in members {
        let mask = &index.item(m).mask;
        for y in 0..mask.height {
            let src = &mask.data[(y * mask.width) as usize..][..mask.width as usize];
            let off = ((mask.y0 + y - rect[1]) * bw + mask.x0 - rect[0]) as usize;
            for (c, &b) in counts[off..off + src.len()].iter_mut().zip(src) {
                *c += b as u16;
            }
        }
    }
    let mask = tighten(&InstanceMask {
        x0: rect[0],
        y0: rect[1],
        width: bw,
        height: bh,
        data: counts.iter().map(|&c| c as usize >= needed).collect(),
    });
    let n = index.views.len();
    let score = members
        .iter()
        .map(|&m| index.item(m).score as f64)
        .sum::<f64>()
        / n as f64;
    let mut classes: Vec<u32> = members.iter().map(|&m| index.item(m).class_id).collect();
    classes.sort_unstable();
    let class_id = classes
        .chunk_by(|a, b| a == b)
        .max_by(|a, b| a.len().cmp(&b.len()).then(b[0].cmp(&a[0])))
        .map_or(1, |c| c[0]);
    let (v0, i0) = members[0];
    Voted {
        mask,
        score: score as f32,
        class_id,
        anchor_area: index.areas[v0][i0],
    }
}

/// Step 4: overlaps go to the higher score; a nucleus left empty, or shrunk below
/// `min_area` and below the prediction it grew from, is dropped. Survivors keep group
/// order.
fn resolve_overlaps(mut voted: Vec<Voted>, min_area: u64) -> Vec<Instance> {
    let mut order: Vec<usize> = (0..voted.len()).collect();
    order.sort_by(|&a, &b| voted[b].score.total_cmp(&voted[a].score).then(a.cmp(&b)));
    let grid = SpatialGrid::new(voted.iter().map(|v| mask_rect(&v.mask)).collect());
    let mut kept = vec![false; voted.len()];
    let mut candidates = Vec::new();
    for &k in &order {
        let mut mask = std::mem::take(&mut voted[k].mask);
        if mask.width == 0 {
            continue;
        }
        let mut lost = false;
        grid.query(mask_rect(&mask), &mut candidates);
        for &j in &candidates {
            let j = j as usize;
            if kept[j] {
                lost |= subtract(&mut mask, &voted[j].mask);
            }
        }
        if lost {
            mask = tighten(&mask);
        }
        let area = mask.area();
        let shrank_to_sliver = area < min_area && area < voted[k].anchor_area;
        if area > 0 && !shrank_to_sliver {
            kept[k] = true;
        }
        voted[k].mask = mask;
    }
    voted
        .into_iter()
        .zip(kept)
        .filter(|(_, keep)| *keep)
        .map(|(v, _)| v.into_instance())
        .collect()
}

impl Voted {
    fn into_instance(self) -> Instance {
        Instance {
            bbox: tight_box_f32(&self.mask),
            mask: self.mask,
            score: self.score,
            class_id: self.class_id,
        }
    }
}

/// Clears the pixels of `mask` that `taken` covers; whether any was cleared.
fn subtract(mask: &mut InstanceMask, taken: &InstanceMask) -> bool {
    let Some(r) = rect_intersection(mask_rect(mask), mask_rect(taken)) else {
        return false;
    };
    let mut lost = false;
    for y in r[1]..r[3] {
        let a = ((y - mask.y0) * mask.width + r[0] - mask.x0) as usize;
        let b = ((y - taken.y0) * taken.width + r[0] - taken.x0) as usize;
        let len = (r[2] - r[0]) as usize;
        for (p, &q) in mask.data[a..a + len]
            .iter_mut()
            .zip(&taken.data[b..b + len])
        {
            if *p && q {
                *p = false;
                lost = true;
            }
        }
    }
    lost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(cx: i32, cy: i32, r: i32) -> InstanceMask {
        let px: Vec<(u32, u32)> = (cy - r..=cy + r)
            .flat_map(|y| (cx - r..=cx + r).map(move |x| (x, y)))
            .filter(|&(x, y)| (x - cx).pow(2) + (y - cy).pow(2) <= r * r)
            .map(|(x, y)| (x as u32, y as u32))
            .collect();
        InstanceMask::from_pixels(px)
    }

    fn view(masks: &[InstanceMask], score: f32) -> Instances {
        Instances {
            width: 100,
            height: 80,
            items: masks
                .iter()
                .map(|m| Instance {
                    score,
                    ..Instance::from_mask(m.clone())
                })
                .collect(),
        }
    }

    #[test]
    fn vote_threshold() {
        // more than half of 8 is 5; of 7 is 4; of 1 is 1.
        assert_eq!(min_votes(0.5, 8), 5);
        assert_eq!(min_votes(0.5, 7), 4);
        assert_eq!(min_votes(0.5, 1), 1);
        assert_eq!(min_votes(0.0, 8), 1);
    }

    #[test]
    fn pixels_need_a_majority_and_scores_average_over_views() {
        // 4 views: the disk shifted by 0, 0, 1, 3 px to the right. A pixel needs 3 votes.
        let shifts = [0, 0, 1, 3];
        let views: Vec<Instances> = shifts
            .iter()
            .map(|&s| view(&[disk(30 + s, 30, 6)], 0.8))
            .collect();
        let merged = merge_views(&views, &TtaConfig::new()).unwrap();
        assert_eq!(merged.len(), 1);
        let m = &merged.items[0].mask;
        // Column 24 is covered by the two unshifted disks only (2 votes): out.
        assert!(!m.contains(24, 30));
        // Column 36 = 30 + 6 is covered by shifts 0, 0, 1, 3 (4 votes); 37 by shifts 1 and 3.
        assert!(m.contains(36, 30) && !m.contains(37, 30));
        assert!(m.contains(25, 30));
        assert!((merged.items[0].score - 0.8).abs() < 1e-6);
        // A view that misses the nucleus lowers the score: 3 of 4 views at 0.8 → 0.6.
        let mut views3 = views.clone();
        views3[3].items.clear();
        let merged = merge_views(&views3, &TtaConfig::new()).unwrap();
        assert!((merged.items[0].score - 0.6).abs() < 1e-6);
    }

    #[test]
    fn overlaps_go_to_the_higher_score() {
        let a = disk(30, 30, 8);
        let b = disk(40, 30, 8);
        let mut v = view(&[a.clone(), b.clone()], 1.0);
        v.items[1].score = 0.5;
        let merged = merge_views(&[v.clone(), v.clone(), v], &TtaConfig::new()).unwrap();
        assert_eq!(merged.len(), 2);
        assert_eq!(merged.items[0].mask, a);
        assert_eq!(merged.items[0].mask.intersection(&merged.items[1].mask), 0);
        assert_eq!(merged.items[1].area(), b.area() - a.intersection(&b));
        // A nucleus swallowed down to a sliver is dropped.
        let inner = disk(30, 30, 7);
        let mut v = view(&[a.clone(), inner], 1.0);
        v.items[1].score = 0.5;
        let merged = merge_views(&[v.clone()], &TtaConfig::new()).unwrap();
        assert_eq!(merged.len(), 1);
        // Left to the caller, both keep their voted masks, overlaps and all.
        let kept = merge_views(&[v.clone(), v], &TtaConfig::new().with_keep_overlaps(true));
        let kept = kept.unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(
            (&kept.items[0].mask, &kept.items[1].mask),
            (&a, &disk(30, 30, 7))
        );
        assert_eq!(kept.items[1].score, 0.5);
    }

    #[test]
    fn recovered_nuclei_follow_the_policy() {
        let a = disk(30, 30, 6);
        let b = disk(70, 50, 5);
        // b is missed by the original and one more view: 3 of 5 views have it (> 2.5).
        let views: Vec<Instances> = (0..5)
            .map(|v| {
                if v < 2 {
                    view(std::slice::from_ref(&a), 1.0)
                } else {
                    view(&[a.clone(), b.clone()], 1.0)
                }
            })
            .collect();
        let merged = merge_views(&views, &TtaConfig::new()).unwrap();
        assert_eq!(merged.len(), 2);
        assert_eq!(merged.items[1].mask, b);
        assert!((merged.items[1].score - 0.6).abs() < 1e-6);
        let drop = TtaConfig::new().with_unmatched(UnmatchedPolicy::Drop);
        assert_eq!(merge_views(&views, &drop).unwrap().len(), 1);
        // In only 2 of 5 views: not a majority.
        let mut views = views;
        views[2].items.pop();
        assert_eq!(merge_views(&views, &TtaConfig::new()).unwrap().len(), 1);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            merge_views(&[], &TtaConfig::new()),
            Err(PostprocessError::NoViews)
        ));
        let a = view(&[], 1.0);
        let b = Instances::new(3, 3);
        assert!(matches!(
            merge_views(&[a, b], &TtaConfig::new()),
            Err(PostprocessError::SizeMismatch { .. })
        ));
    }
}
