//! Test-time augmentation end to end, with segmenters whose behaviour in each view is known:
//! an exactly equivariant one is a fixed point of the ensemble; a nucleus dropped by one view
//! survives; a nucleus invented by one view does not; nuclei missed by the original follow
//! the configured policy.

mod tta_support;

use nucseg::postprocess::{
    Dihedral, PostprocessError, TiledSegmenter, TilerConfig, TtaConfig, TtaEnsemble, TtaSet,
    UnmatchedPolicy,
};
use nucseg::{Error, InstanceSegmenter, Instances};
use tta_support::*;

/// Where tests invent a nucleus: free in [`scene`].
const GHOST: Disk = Disk {
    cx: 60.0,
    cy: 10.0,
    r: 5.0,
};

/// A non-square scene: 12 disks, some cut by the image border, none touching another.
fn scene() -> (Vec<Disk>, nucseg::data::RgbImage) {
    let (w, h) = (96, 64);
    let mut disks = Vec::new();
    let mut rng = SplitMix(7);
    // Kept free for the disk some tests invent (GHOST), removed below.
    place(&mut disks, GHOST, 2.0);
    for &(cx, cy, r) in &[(0.0, 30.0, 6.0), (95.5, 63.0, 7.0), (48.0, 0.5, 5.0)] {
        place(&mut disks, Disk { cx, cy, r }, 2.0);
    }
    while disks.len() < 13 {
        let d = Disk {
            cx: rng.uniform(4.0, 92.0),
            cy: rng.uniform(10.0, 60.0),
            r: rng.uniform(3.0, 8.0),
        };
        place(&mut disks, d, 2.0);
    }
    disks.remove(0);
    let img = with_markers(disk_image(w, h, &disks));
    (disks, img)
}

fn ensemble<S: InstanceSegmenter>(set: TtaSet, s: S) -> TtaEnsemble<S> {
    TtaConfig::new().with_set(set).init(s).unwrap()
}

#[test]
fn an_equivariant_segmenter_is_a_fixed_point() {
    let (_, img) = scene();
    let single = DarkSegmenter.segment_instances(&img).unwrap();
    assert_eq!(single.len(), 12);
    for set in [TtaSet::None, TtaSet::Paper, TtaSet::D4] {
        let merged = ensemble(set, DarkSegmenter)
            .segment_instances(&img)
            .unwrap();
        assert_eq!(merged, single, "{set}");
    }
    // A batch of images of different sizes (each non-square) gives the same per image.
    let small = with_markers(disk_image(
        40,
        70,
        &[Disk {
            cx: 20.0,
            cy: 35.0,
            r: 9.0,
        }],
    ));
    let batch = ensemble(TtaSet::D4, DarkSegmenter)
        .segment_batch(&[img.clone(), small.clone()])
        .unwrap();
    assert_eq!(batch[0], single);
    assert_eq!(batch[1], DarkSegmenter.segment_instances(&small).unwrap());
}

#[test]
fn each_distinct_view_is_segmented_once() {
    let (_, img) = scene();
    let seg = ViewAware::default();
    ensemble(TtaSet::Paper, &seg)
        .segment_instances(&img)
        .unwrap();
    let mut seen = seg.seen.borrow().clone();
    seen.sort();
    use Dihedral::*;
    // The paper's H+V flip is Rot180, segmented once and counted twice.
    assert_eq!(seen, vec![Identity, Rot90, Rot180, Rot270, FlipH, FlipV]);
    let seg = ViewAware::default();
    ensemble(TtaSet::D4, &seg).segment_instances(&img).unwrap();
    assert_eq!(seg.seen.borrow().len(), 8);
}

#[test]
fn a_nucleus_dropped_by_one_view_survives() {
    let (disks, img) = scene();
    let target = disks[5];
    let at = (target.cx as u32, target.cy as u32);
    let truth = DarkSegmenter.segment_instances(&img).unwrap();
    for t in Dihedral::ALL {
        let seg = ViewAware {
            drop_in: vec![t],
            drop_at: at,
            ..Default::default()
        };
        let merged = ensemble(TtaSet::D4, &seg).segment_instances(&img).unwrap();
        assert_eq!(canonical(&merged), canonical(&truth), "dropped in {t}");
        // 7 of 8 views found it: mean score 7/8.
        let k = merged
            .items
            .iter()
            .position(|i| i.mask.contains(at.0, at.1))
            .expect("present");
        assert!((merged.items[k].score - 7.0 / 8.0).abs() < 1e-6, "{t}");
    }
    // Paper set: dropped in the doubled 180° view, 5 of 7 votes remain (4 needed).
    let seg = ViewAware {
        drop_in: vec![Dihedral::Rot180],
        drop_at: at,
        ..Default::default()
    };
    let merged = ensemble(TtaSet::Paper, &seg)
        .segment_instances(&img)
        .unwrap();
    assert_eq!(canonical(&merged), canonical(&truth));
    // Dropped in four of eight views: no majority.
    let seg = ViewAware {
        drop_in: vec![
            Dihedral::Identity,
            Dihedral::Rot90,
            Dihedral::FlipH,
            Dihedral::Transpose,
        ],
        drop_at: at,
        ..Default::default()
    };
    let merged = ensemble(TtaSet::D4, &seg).segment_instances(&img).unwrap();
    assert_eq!(merged.len(), truth.len() - 1);
    assert!(merged.items.iter().all(|i| !i.mask.contains(at.0, at.1)));
}

#[test]
fn a_nucleus_invented_by_one_view_is_removed() {
    let (_, img) = scene();
    let truth = DarkSegmenter.segment_instances(&img).unwrap();
    let ghost = GHOST;
    assert!(truth
        .items
        .iter()
        .all(|i| i.mask.iou(&ghost.mask(96, 64)) == 0.0));
    for t in Dihedral::ALL {
        let seg = ViewAware {
            add_in: vec![t],
            added: Some(ghost),
            ..Default::default()
        };
        let merged = ensemble(TtaSet::D4, &seg).segment_instances(&img).unwrap();
        assert_eq!(merged, truth, "invented in {t}");
    }
}

#[test]
fn nuclei_missed_by_the_original_follow_the_policy() {
    let (_, img) = scene();
    let truth = DarkSegmenter.segment_instances(&img).unwrap();
    let extra = GHOST;
    // Seen by 5 of the 8 views, not by the original.
    let seg = ViewAware {
        add_in: vec![
            Dihedral::Rot90,
            Dihedral::Rot180,
            Dihedral::Rot270,
            Dihedral::FlipH,
            Dihedral::FlipV,
        ],
        added: Some(extra),
        ..Default::default()
    };
    let merged = ensemble(TtaSet::D4, &seg).segment_instances(&img).unwrap();
    assert_eq!(merged.len(), truth.len() + 1);
    let last = merged.items.last().unwrap();
    assert_eq!(last.mask, extra.mask(96, 64));
    assert!((last.score - 0.9 * 5.0 / 8.0).abs() < 1e-6);
    let drop = TtaConfig::new()
        .with_set(TtaSet::D4)
        .with_unmatched(UnmatchedPolicy::Drop)
        .init(&seg)
        .unwrap();
    assert_eq!(drop.segment_instances(&img).unwrap(), truth);
}

#[test]
fn the_none_set_passes_the_prediction_through() {
    let (_, img) = scene();
    let ghost = GHOST;
    let seg = ViewAware {
        add_in: vec![Dihedral::Identity],
        added: Some(ghost),
        ..Default::default()
    };
    let direct = seg.segment_instances(&img).unwrap();
    let merged = ensemble(TtaSet::None, &seg)
        .segment_instances(&img)
        .unwrap();
    assert_eq!(merged, direct);
}

#[test]
fn tta_and_tiling_compose_either_way() {
    let (w, h) = (300, 200);
    let mut disks = Vec::new();
    let mut rng = SplitMix(3);
    while disks.len() < 40 {
        let d = Disk {
            cx: rng.uniform(0.0, w as f64),
            cy: rng.uniform(0.0, h as f64),
            r: rng.uniform(3.0, 12.0),
        };
        place(&mut disks, d, 2.0);
    }
    let img = disk_image(w, h, &disks);
    let truth = canonical(&dark_components(&img));
    let tiler = TilerConfig::new()
        .with_tile_size(128)
        .with_stride(64)
        .init()
        .unwrap();
    let per_tile = TiledSegmenter::new(tiler.clone(), ensemble(TtaSet::D4, DarkSegmenter));
    assert_eq!(canonical(&per_tile.segment_instances(&img).unwrap()), truth);
    let whole = ensemble(TtaSet::Paper, TiledSegmenter::new(tiler, DarkSegmenter));
    assert_eq!(canonical(&whole.segment_instances(&img).unwrap()), truth);
}

/// Returns instances for the wrong image size.
struct Broken;

impl InstanceSegmenter for Broken {
    fn segment_instances(&self, _: &nucseg::data::RgbImage) -> nucseg::Result<Instances> {
        Ok(Instances::new(3, 3))
    }
}

#[test]
fn bad_settings_and_bad_segmenters_are_errors() {
    let (_, img) = scene();
    let err = ensemble(TtaSet::D4, Broken)
        .segment_instances(&img)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Postprocess(PostprocessError::SizeMismatch { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("TTA view"), "{err}");
    assert!(TtaConfig::new()
        .with_match_iou(-0.1)
        .init(DarkSegmenter)
        .is_err());
    assert!("d8".parse::<TtaSet>().is_err());
}

#[test]
fn members_share_the_views_in_turn() {
    use Dihedral::*;
    let (_, img) = scene();
    let truth = DarkSegmenter.segment_instances(&img).unwrap();
    let (a, b) = (ViewAware::default(), ViewAware::default());
    let merged = TtaConfig::new()
        .init_members(vec![&a, &b])
        .unwrap()
        .segment_instances(&img)
        .unwrap();
    // Equivariant members: the ensemble is still a fixed point.
    assert_eq!(merged, truth);
    // The paper set's six distinct views in vote order, to the members in turn; the
    // original goes to the first, and the second does as much work.
    let sorted = |s: &ViewAware| {
        let mut v = s.seen.borrow().clone();
        v.sort();
        v
    };
    assert_eq!(sorted(&a), vec![Identity, Rot180, FlipH]);
    assert_eq!(sorted(&b), vec![Rot90, Rot270, FlipV]);
}

#[test]
fn members_vote_like_views() {
    let (disks, img) = scene();
    let truth = DarkSegmenter.segment_instances(&img).unwrap();
    let at = (disks[5].cx as u32, disks[5].cy as u32);
    let config = TtaConfig::new().with_set(TtaSet::None);
    // Without views, every member segments the original: one of three members missing a
    // nucleus or inventing one is outvoted by the other two.
    let dropper = ViewAware {
        drop_in: Dihedral::ALL.to_vec(),
        drop_at: at,
        ..Default::default()
    };
    let inventor = ViewAware {
        add_in: Dihedral::ALL.to_vec(),
        added: Some(GHOST),
        ..Default::default()
    };
    let plain = ViewAware::default();
    let merged = config
        .init_members(vec![&dropper, &inventor, &plain])
        .unwrap()
        .segment_instances(&img)
        .unwrap();
    assert_eq!(canonical(&merged), canonical(&truth));
    // Two of three agree on a miss: the nucleus is gone.
    let dropper2 = ViewAware {
        drop_in: Dihedral::ALL.to_vec(),
        drop_at: at,
        ..Default::default()
    };
    let merged = config
        .init_members(vec![&dropper, &dropper2, &plain])
        .unwrap()
        .segment_instances(&img)
        .unwrap();
    assert_eq!(merged.len(), truth.len() - 1);
    assert!(merged.items.iter().all(|i| !i.mask.contains(at.0, at.1)));
}

#[test]
fn an_ensemble_needs_between_one_member_and_one_per_view() {
    let none: Vec<DarkSegmenter> = Vec::new();
    for (set, members, views) in [
        (TtaSet::Paper, 0, 6),
        (TtaSet::Paper, 7, 6),
        (TtaSet::D4, 9, 8),
        (TtaSet::None, 0, 1),
    ] {
        let mut given = none.clone();
        given.resize(members, DarkSegmenter);
        let err = TtaConfig::new()
            .with_set(set)
            .init_members(given)
            .unwrap_err();
        assert!(
            matches!(err, PostprocessError::Members { members: m, views: v } if m == members && v == views),
            "{set}: {err}"
        );
    }
    assert!(TtaConfig::new()
        .with_set(TtaSet::None)
        .init_members(vec![DarkSegmenter; 5])
        .is_ok());
}
