//! Property tests of the metrics on random label maps.

use nucseg::{
    data::LabelMap,
    metrics::{ImageMetrics, OverlapTable},
};
use proptest::prelude::*;

/// A random label map: rectangles ("nuclei") with ids from a sparse range, later ones
/// painted over earlier ones.
fn label_map(w: u32, h: u32) -> impl Strategy<Value = LabelMap> {
    prop::collection::vec((0..w, 0..h, 1..12u32, 1..12u32, 1..5000u32), 0..14).prop_map(
        move |rects| {
            let mut m = LabelMap::new(w, h);
            for (x, y, rw, rh, id) in rects {
                for yy in y..(y + rh).min(h) {
                    for xx in x..(x + rw).min(w) {
                        m.set(xx, yy, id * 7 + 3);
                    }
                }
            }
            m
        },
    )
}

fn pair() -> impl Strategy<Value = (LabelMap, LabelMap)> {
    (label_map(32, 24), label_map(32, 24))
}

fn values(m: &ImageMetrics) -> Vec<(&'static str, f64)> {
    vec![
        ("aji", m.aji),
        ("aji_plus", m.aji_plus),
        ("dice", m.dice),
        ("dq", m.pq.dq),
        ("sq", m.pq.sq),
        ("pq", m.pq.pq),
        ("p50", m.f1_iou50.precision),
        ("r50", m.f1_iou50.recall),
        ("f50", m.f1_iou50.f1),
        ("p20", m.f1_dice20.precision),
        ("r20", m.f1_dice20.recall),
        ("f20", m.f1_dice20.f1),
    ]
}

/// Applies an id permutation (a bijection on non-zero ids).
fn relabel(m: &LabelMap, salt: u32) -> LabelMap {
    let mut out = m.clone();
    for v in out.as_mut_slice() {
        if *v != 0 {
            *v = (*v ^ salt).wrapping_mul(2_654_435_761);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn identity_scores_one(t in label_map(32, 24)) {
        let m = ImageMetrics::compute(&t, &t).unwrap();
        for (name, v) in values(&m) {
            prop_assert_eq!(v, 1.0, "{}", name);
        }
    }

    #[test]
    fn values_lie_in_unit_interval((t, p) in pair()) {
        let m = ImageMetrics::compute(&t, &p).unwrap();
        for (name, v) in values(&m) {
            prop_assert!((0.0..=1.0).contains(&v), "{} = {}", name, v);
        }
    }

    #[test]
    fn invariant_under_relabelling((t, p) in pair(), s1 in any::<u32>(), s2 in any::<u32>()) {
        let a = ImageMetrics::compute(&t, &p).unwrap();
        let (rt, rp) = (relabel(&t, s1), relabel(&p, s2));
        // The permutation must stay a bijection for the property to apply.
        prop_assume!(rt.count() == t.count() && rp.count() == p.count());
        let b = ImageMetrics::compute(&rt, &rp).unwrap();
        for ((n, x), (_, y)) in values(&a).into_iter().zip(values(&b)) {
            prop_assert!((x - y).abs() < 1e-12, "{}: {} vs {}", n, x, y);
        }
    }

    #[test]
    fn swapping_roles_swaps_precision_and_recall((t, p) in pair()) {
        let a = ImageMetrics::compute(&t, &p).unwrap();
        let b = ImageMetrics::compute(&p, &t).unwrap();
        for (x, y) in [(a.f1_iou50, b.f1_iou50), (a.f1_dice20, b.f1_dice20)] {
            prop_assert_eq!(x.precision, y.recall);
            prop_assert_eq!(x.recall, y.precision);
            prop_assert_eq!(x.f1, y.f1);
        }
        prop_assert_eq!(a.dice, b.dice);
        prop_assert_eq!(a.pq.pq, b.pq.pq);
        prop_assert!((a.aji_plus - b.aji_plus).abs() < 1e-12);
    }

    #[test]
    fn aji_at_most_aji_plus_when_pairing_is_unique((t, p) in pair()) {
        let table = OverlapTable::new(&t, &p).unwrap();
        // Is AJI's best-IoU pairing already one-to-one?
        let mut best = vec![(0.0f64, u32::MAX); table.n_true()];
        for &(ti, pi, inter) in &table.pairs {
            let iou = table.iou(ti, pi, inter);
            if iou > best[ti as usize].0 { best[ti as usize] = (iou, pi); }
        }
        let mut used: Vec<u32> = best.iter().map(|b| b.1).filter(|&p| p != u32::MAX).collect();
        let n = used.len();
        used.sort(); used.dedup();
        prop_assume!(used.len() == n);
        let m = ImageMetrics::from_table(&table);
        prop_assert!(m.aji <= m.aji_plus + 1e-12, "AJI {} > AJI+ {}", m.aji, m.aji_plus);
    }

    #[test]
    fn pq_equals_dq_times_sq_and_counts_add_up((t, p) in pair()) {
        let m = ImageMetrics::compute(&t, &p).unwrap();
        prop_assert!((m.pq.pq - m.pq.dq * m.pq.sq).abs() < 1e-12);
        prop_assert_eq!(m.pq.tp + m.pq.fn_, t.count());
        prop_assert_eq!(m.pq.tp + m.pq.fp, p.count());
        prop_assert_eq!(m.f1_iou50.tp + m.f1_iou50.fn_, t.count());
        // IoU > 0.5 pairs are a subset of IoU >= 0.5 pairs, which are a subset of Dice > 0.2.
        prop_assert!(m.pq.tp <= m.f1_iou50.tp && m.f1_iou50.tp <= m.f1_dice20.tp);
    }
}
