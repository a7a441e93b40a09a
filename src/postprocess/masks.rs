//! Box-local operations on [`InstanceMask`]s: every function touches only the pixels of the
//! boxes involved, never a full-image buffer.
//!
//! Rectangles are `[x0, y0, x1, y1]` in pixels with exclusive ends (`x0 <= x < x1`).

use crate::instances::{Instance, InstanceMask, Instances, OverlapConfig};

use super::PostprocessError;

/// A pixel rectangle `[x0, y0, x1, y1]`, exclusive ends.
pub(crate) type Rect = [u32; 4];

/// The box of a mask as a [`Rect`].
#[inline]
pub(crate) fn mask_rect(m: &InstanceMask) -> Rect {
    [
        m.x0,
        m.y0,
        m.x0.saturating_add(m.width),
        m.y0.saturating_add(m.height),
    ]
}

/// Whether a rectangle holds no pixel.
#[inline]
pub(crate) fn rect_is_empty(r: Rect) -> bool {
    r[2] <= r[0] || r[3] <= r[1]
}

/// The common part of two rectangles, `None` when they do not overlap.
#[inline]
pub(crate) fn rect_intersection(a: Rect, b: Rect) -> Option<Rect> {
    let r = [
        a[0].max(b[0]),
        a[1].max(b[1]),
        a[2].min(b[2]),
        a[3].min(b[3]),
    ];
    (!rect_is_empty(r)).then_some(r)
}

/// The smallest rectangle holding both (empty rectangles are ignored).
#[inline]
pub(crate) fn rect_union(a: Rect, b: Rect) -> Rect {
    if rect_is_empty(a) {
        return b;
    }
    if rect_is_empty(b) {
        return a;
    }
    [
        a[0].min(b[0]),
        a[1].min(b[1]),
        a[2].max(b[2]),
        a[3].max(b[3]),
    ]
}

/// The bits of row `y` of `m` for columns `x0..x1` (which must lie inside its box).
#[inline]
fn row(m: &InstanceMask, y: u32, x0: u32, x1: u32) -> &[bool] {
    let start = (y - m.y0) as usize * m.width as usize + (x0 - m.x0) as usize;
    &m.data[start..start + (x1 - x0) as usize]
}

/// Pixels set in both masks; visits only the intersection of their boxes.
pub(crate) fn intersection(a: &InstanceMask, b: &InstanceMask) -> u64 {
    let Some(r) = rect_intersection(mask_rect(a), mask_rect(b)) else {
        return 0;
    };
    let mut n = 0u64;
    for y in r[1]..r[3] {
        let (ra, rb) = (row(a, y, r[0], r[2]), row(b, y, r[0], r[2]));
        n += ra.iter().zip(rb).filter(|(p, q)| **p && **q).count() as u64;
    }
    n
}

/// Pixels of `m` inside rectangle `r`.
pub(crate) fn area_in(m: &InstanceMask, r: Rect) -> u64 {
    let Some(r) = rect_intersection(mask_rect(m), r) else {
        return 0;
    };
    (r[1]..r[3])
        .map(|y| row(m, y, r[0], r[2]).iter().filter(|b| **b).count() as u64)
        .sum()
}

/// Intersection over union from the intersection and the two areas (0 when both are empty).
#[inline]
pub(crate) fn iou(inter: u64, area_a: u64, area_b: u64) -> f64 {
    let union = area_a + area_b - inter;
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

/// The pixels of `m` inside `r`, as a mask cropped to their tight box (the empty default
/// mask when there are none).
pub(crate) fn crop_tight(m: &InstanceMask, r: Rect) -> InstanceMask {
    let Some(r) = rect_intersection(mask_rect(m), r) else {
        return InstanceMask::default();
    };
    let (mut tx0, mut ty0, mut tx1, mut ty1) = (u32::MAX, u32::MAX, 0, 0);
    for y in r[1]..r[3] {
        let bits = row(m, y, r[0], r[2]);
        if let Some(first) = bits.iter().position(|b| *b) {
            let last = bits.iter().rposition(|b| *b).unwrap_or(first);
            tx0 = tx0.min(r[0] + first as u32);
            tx1 = tx1.max(r[0] + last as u32 + 1);
            ty0 = ty0.min(y);
            ty1 = y + 1;
        }
    }
    if tx1 <= tx0 {
        return InstanceMask::default();
    }
    let (w, h) = (tx1 - tx0, ty1 - ty0);
    let mut data = Vec::with_capacity((w * h) as usize);
    for y in ty0..ty1 {
        data.extend_from_slice(row(m, y, tx0, tx1));
    }
    InstanceMask {
        x0: tx0,
        y0: ty0,
        width: w,
        height: h,
        data,
    }
}

/// The same mask shrunk to the tight box of its pixels.
pub(crate) fn tighten(m: &InstanceMask) -> InstanceMask {
    crop_tight(m, mask_rect(m))
}

/// Moves a mask by `(dx, dy)` pixels.
pub(crate) fn translate(mut m: InstanceMask, dx: u32, dy: u32) -> InstanceMask {
    m.x0 += dx;
    m.y0 += dy;
    m
}

/// Twice the centroid times the area, and the area: `(Σ(2x + 1), Σ(2y + 1), n)` over the
/// set pixels, so that the centroid of pixel centres is `(cx / 2n, cy / 2n)` exactly in
/// integer arithmetic.
pub(crate) fn centroid_doubled(m: &InstanceMask) -> (u64, u64, u64) {
    let (mut sx, mut sy, mut n) = (0u64, 0u64, 0u64);
    for (i, &b) in m.data.iter().enumerate() {
        if b {
            let i = i as u32;
            sx += 2 * (m.x0 + i % m.width) as u64 + 1;
            sy += 2 * (m.y0 + i / m.width) as u64 + 1;
            n += 1;
        }
    }
    (sx, sy, n)
}

/// The tight box of a mask as a continuous `[x1, y1, x2, y2]` detector box.
pub(crate) fn tight_box_f32(m: &InstanceMask) -> [f32; 4] {
    let r = mask_rect(m);
    [r[0] as f32, r[1] as f32, r[2] as f32, r[3] as f32]
}

/// Checks a segmenter's output for a `width × height` image and makes it safe to work on:
/// an error when the size differs or a mask's bits do not fill its box; masks are clipped to
/// the image and shrunk to their tight box, detector boxes clipped to the image, and
/// instances left without pixels dropped.
pub(crate) fn sanitize(
    found: Instances,
    width: u32,
    height: u32,
    context: impl Fn() -> String,
) -> Result<Instances, PostprocessError> {
    if (found.width, found.height) != (width, height) {
        return Err(PostprocessError::SizeMismatch {
            context: context(),
            width,
            height,
            got_width: found.width,
            got_height: found.height,
        });
    }
    let mut items = Vec::with_capacity(found.items.len());
    for (index, inst) in found.items.into_iter().enumerate() {
        let m = &inst.mask;
        if m.data.len() as u64 != m.width as u64 * m.height as u64 {
            return Err(PostprocessError::MalformedMask {
                context: context(),
                index,
                width: m.width,
                height: m.height,
                len: m.data.len(),
            });
        }
        let inside = m.x0 as u64 + m.width as u64 <= width as u64
            && m.y0 as u64 + m.height as u64 <= height as u64;
        let is_tight = m.width > 0
            && m.height > 0
            && inside
            && m.data[..m.width as usize].iter().any(|b| *b)
            && m.data[((m.height - 1) * m.width) as usize..]
                .iter()
                .any(|b| *b)
            && (0..m.height).any(|y| m.data[(y * m.width) as usize])
            && (0..m.height).any(|y| m.data[(y * m.width + m.width - 1) as usize]);
        let mask = if is_tight {
            inst.mask
        } else {
            // x0 + width may overflow u32 for a hostile mask: clip in the box's own terms.
            let r = [
                m.x0.min(width),
                m.y0.min(height),
                m.x0.saturating_add(m.width).min(width),
                m.y0.saturating_add(m.height).min(height),
            ];
            crop_tight(m, r)
        };
        if mask.width == 0 {
            continue;
        }
        let [w, h] = [width as f32, height as f32];
        let b = inst.bbox;
        let bbox = [
            b[0].clamp(0.0, w),
            b[1].clamp(0.0, h),
            b[2].clamp(0.0, w),
            b[3].clamp(0.0, h),
        ];
        items.push(Instance {
            mask,
            bbox,
            score: inst.score,
            class_id: inst.class_id,
        });
    }
    Ok(Instances {
        width,
        height,
        items,
    })
}

/// Gives every pixel claimed by several instances to the highest-scored one, as
/// [`Nuclei::from_instances`](crate::Nuclei::from_instances) does on a whole image, but
/// working only inside groups, so it needs no image-sized buffer (a
/// slide's nuclei): groups of instances whose masks overlap (touching nuclei do not form
/// one) are painted on their own. Instances left without a pixel are dropped; the rest keep their score
/// and class, with their remaining pixels and tight box. Order: groups by their first
/// member, within a group by decreasing score. `rule` is applied as
/// [`Nuclei::from_instances_with`](crate::Nuclei::from_instances_with) applies it (its
/// decisions depend only on the instances a mask overlaps).
pub fn exclusive_masks(items: Vec<Instance>, rule: &OverlapConfig) -> Vec<Instance> {
    let rects: Vec<Rect> = items.iter().map(|i| mask_rect(&i.mask)).collect();
    let grid = super::grid::SpatialGrid::new(rects.clone());
    let mut sets = crate::union_find::UnionFind::new(items.len());
    let mut near = Vec::new();
    for (i, &r) in rects.iter().enumerate() {
        grid.query(r, &mut near);
        for &j in near.iter().filter(|&&j| j as usize > i) {
            if intersection(&items[i].mask, &items[j as usize].mask) > 0 {
                sets.union(i, j as usize);
            }
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of = std::collections::HashMap::new();
    for i in 0..items.len() {
        let root = sets.find(i);
        let g = *group_of.entry(root).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    let mut slots: Vec<Option<Instance>> = items.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(slots.len());
    for group in groups {
        if let ([only], true) = (&group[..], rule.is_plain()) {
            out.push(slots[*only].take().expect("one group each"));
            continue;
        }
        let rect = group.iter().map(|&i| rects[i]).fold([0; 4], rect_union);
        let local = Instances {
            width: rect[2] - rect[0],
            height: rect[3] - rect[1],
            items: group
                .iter()
                .map(|&i| {
                    let mut inst = slots[i].take().expect("one group each");
                    inst.mask.x0 -= rect[0];
                    inst.mask.y0 -= rect[1];
                    inst
                })
                .collect(),
        };
        for n in crate::Nuclei::from_instances_with(&local, rule).items {
            let mask = translate(n.mask, rect[0], rect[1]);
            out.push(Instance {
                bbox: tight_box_f32(&mask),
                mask,
                score: n.score,
                class_id: n.class_id,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(px: &[(u32, u32)]) -> InstanceMask {
        InstanceMask::from_pixels(px.to_vec())
    }

    #[test]
    fn intersection_and_area_match_the_reference() {
        let a = m(&[(2, 3), (3, 3), (3, 4), (5, 5)]);
        let b = m(&[(3, 3), (3, 4), (4, 4), (5, 5), (9, 9)]);
        assert_eq!(intersection(&a, &b), a.intersection(&b));
        assert_eq!(intersection(&a, &b), 3);
        assert_eq!(area_in(&b, [3, 3, 5, 5]), 3);
        assert_eq!(area_in(&b, [20, 20, 30, 30]), 0);
        assert!((iou(3, 4, 5) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn crop_tight_keeps_only_pixels_inside() {
        let a = m(&[(2, 3), (3, 3), (3, 4), (5, 5)]);
        let c = crop_tight(&a, [3, 0, 10, 5]);
        assert_eq!(c, m(&[(3, 3), (3, 4)]));
        assert_eq!(crop_tight(&a, [6, 6, 9, 9]), InstanceMask::default());
        // 0.5 + 1.5 + 3.5 ... doubled: (2*2+1) + (2*3+1) + (2*3+1) + (2*5+1) = 30
        assert_eq!(centroid_doubled(&a), (30, 7 + 7 + 9 + 11, 4));
    }

    #[test]
    fn sanitize_clips_and_rejects() {
        let mut inst = Instances::new(4, 4);
        let loose = InstanceMask {
            x0: 2,
            y0: 2,
            width: 4,
            height: 4,
            data: vec![true; 16],
        };
        inst.items.push(Instance::from_mask(loose));
        inst.items.push(Instance::from_mask(InstanceMask {
            x0: 9,
            y0: 9,
            width: 1,
            height: 1,
            data: vec![true],
        }));
        let s = sanitize(inst.clone(), 4, 4, || "t".into()).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.items[0].mask, m(&[(2, 2), (3, 2), (2, 3), (3, 3)]));
        assert_eq!(s.items[0].bbox, [2.0, 2.0, 4.0, 4.0]);
        assert!(matches!(
            sanitize(inst.clone(), 5, 4, || "t".into()),
            Err(PostprocessError::SizeMismatch { .. })
        ));
        inst.items[0].mask.data.pop();
        assert!(matches!(
            sanitize(inst, 4, 4, || "t".into()),
            Err(PostprocessError::MalformedMask { index: 0, .. })
        ));
    }
}
