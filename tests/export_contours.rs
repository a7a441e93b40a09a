//! Crack-following contours checked against independent pixel computations: area, which
//! pixel centres are inside, simplicity, orientation and the start vertex, on random masks.

use std::collections::{HashSet, VecDeque};

use nucseg::{
    export::{outer_contour, Contour},
    InstanceMask,
};
use proptest::prelude::*;

/// The largest 4-connected component of the mask as a set of box-local pixels (ties: the
/// component found first in raster order), by breadth-first search.
fn largest_component(m: &InstanceMask) -> HashSet<(i64, i64)> {
    let (w, h) = (m.width as i64, m.height as i64);
    let on = |x: i64, y: i64| x >= 0 && y >= 0 && x < w && y < h && m.data[(y * w + x) as usize];
    let mut seen = HashSet::new();
    let mut best: HashSet<(i64, i64)> = HashSet::new();
    for y in 0..h {
        for x in 0..w {
            if !on(x, y) || seen.contains(&(x, y)) {
                continue;
            }
            let mut comp = HashSet::new();
            let mut queue = VecDeque::from([(x, y)]);
            seen.insert((x, y));
            while let Some((cx, cy)) = queue.pop_front() {
                comp.insert((cx, cy));
                for (dx, dy) in [(1, 0), (-1, 0), (0, 1), (0, -1)] {
                    let n = (cx + dx, cy + dy);
                    if on(n.0, n.1) && seen.insert(n) {
                        queue.push_back(n);
                    }
                }
            }
            if comp.len() > best.len() {
                best = comp;
            }
        }
    }
    best
}

/// Pixels of the box not in `comp` and not 4-connected to the outside through pixels not
/// in `comp`: the component's holes.
fn holes(m: &InstanceMask, comp: &HashSet<(i64, i64)>) -> HashSet<(i64, i64)> {
    let (w, h) = (m.width as i64, m.height as i64);
    let mut outside = HashSet::new();
    let mut queue = VecDeque::from([(-1, -1)]);
    outside.insert((-1, -1));
    while let Some((x, y)) = queue.pop_front() {
        for (dx, dy) in [(1, 0), (-1, 0), (0, 1), (0, -1)] {
            let n = (x + dx, y + dy);
            if n.0 < -1 || n.1 < -1 || n.0 > w || n.1 > h || comp.contains(&n) {
                continue;
            }
            if outside.insert(n) {
                queue.push_back(n);
            }
        }
    }
    (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|p| !comp.contains(p) && !outside.contains(p))
        .collect()
}

/// Winding number of the polygon around `(x, y)` (non-zero = inside), written
/// independently of `Contour::contains`.
fn winding(c: &Contour, x: f64, y: f64) -> i32 {
    let n = c.vertices.len();
    let mut wn = 0;
    for i in 0..n {
        let [ax, ay] = c.vertices[i].map(f64::from);
        let [bx, by] = c.vertices[(i + 1) % n].map(f64::from);
        let side = (bx - ax) * (y - ay) - (x - ax) * (by - ay);
        if ay <= y && by > y && side > 0.0 {
            wn += 1;
        } else if ay > y && by <= y && side < 0.0 {
            wn -= 1;
        }
    }
    wn
}

/// Every lattice point the boundary passes through, in order.
fn unit_path(c: &Contour) -> Vec<[i64; 2]> {
    let n = c.vertices.len();
    let mut path = Vec::new();
    for i in 0..n {
        let [ax, ay] = c.vertices[i].map(i64::from);
        let [bx, by] = c.vertices[(i + 1) % n].map(i64::from);
        let steps = (bx - ax).abs() + (by - ay).abs();
        for s in 0..steps {
            path.push([ax + (bx - ax).signum() * s, ay + (by - ay).signum() * s]);
        }
    }
    path
}

fn check(m: &InstanceMask) -> Result<(), TestCaseError> {
    let comp = largest_component(m);
    let Some(c) = outer_contour(m) else {
        prop_assert!(comp.is_empty());
        return Ok(());
    };
    let holes = holes(m, &comp);
    let (x0, y0) = (m.x0 as i64, m.y0 as i64);

    // Area: the component plus its holes; exactly the pixel count without holes.
    prop_assert!(c.twice_signed_area() > 0, "orientation: {:?}", c);
    prop_assert_eq!(c.area(), (comp.len() + holes.len()) as f64);
    if holes.is_empty() {
        prop_assert_eq!(c.area(), comp.len() as f64);
    }
    // Containment: pixel centres inside are exactly the component and its holes, by a
    // winding-number test and by `Contour::contains`.
    for y in -1..=m.height as i64 {
        for x in -1..=m.width as i64 {
            let (cx, cy) = ((x + x0) as f64 + 0.5, (y + y0) as f64 + 0.5);
            let expected = comp.contains(&(x, y)) || holes.contains(&(x, y));
            prop_assert_eq!(winding(&c, cx, cy) != 0, expected, "pixel ({}, {})", x, y);
            prop_assert_eq!(c.contains(cx, cy), expected, "pixel ({}, {})", x, y);
        }
    }
    // Simple: the boundary never passes the same lattice point twice (no self-touching,
    // no crossing); axis-aligned edges that alternate between horizontal and vertical (no
    // collinear vertex).
    let path = unit_path(&c);
    let distinct: HashSet<[i64; 2]> = path.iter().copied().collect();
    prop_assert_eq!(distinct.len(), path.len(), "self-touching: {:?}", c);
    let n = c.vertices.len();
    prop_assert!(n >= 4 && n % 2 == 0);
    for i in 0..n {
        let [ax, ay] = c.vertices[i];
        let [bx, by] = c.vertices[(i + 1) % n];
        let horizontal = ay == by;
        prop_assert!(horizontal != (ax == bx), "edge {} not axis-aligned", i);
        prop_assert_eq!(
            horizontal,
            i % 2 == 0,
            "edges alternate, starting horizontal"
        );
    }
    // Start: top-left corner of the component's first pixel in raster order, going +x.
    let first = comp.iter().min_by_key(|&&(x, y)| (y, x)).unwrap();
    prop_assert_eq!(
        c.vertices[0],
        [(first.0 + x0) as u32, (first.1 + y0) as u32]
    );
    prop_assert!(c.vertices[1][0] > c.vertices[0][0]);
    Ok(())
}

fn mask_strategy() -> impl Strategy<Value = InstanceMask> {
    (1u32..=10, 1u32..=10, 0u32..4, 0u32..4, 0.2f64..0.9).prop_flat_map(|(w, h, x0, y0, p)| {
        prop::collection::vec(prop::bool::weighted(p), (w * h) as usize).prop_map(move |data| {
            InstanceMask {
                x0,
                y0,
                width: w,
                height: h,
                data,
            }
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn contour_area_containment_and_simplicity(m in mask_strategy()) {
        check(&m)?;
    }
}

fn mask(rows: &[&str]) -> InstanceMask {
    InstanceMask {
        x0: 0,
        y0: 0,
        width: rows[0].len() as u32,
        height: rows.len() as u32,
        data: rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| b == b'#'))
            .collect(),
    }
}

#[test]
fn hand_picked_shapes() {
    for rows in [
        // Checkerboard: only single pixels, all diagonal.
        &["#.#", ".#.", "#.#"][..],
        // A spiral whose arms touch at corners.
        &["#####", "....#", "###.#", "#.#.#", "#...#", "#####"][..],
        // Two diagonal pockets, one closed by a corner contact.
        &["##.##", "#.#.#", "##.##"][..],
        // A hole inside a hole's island.
        &[
            "#######", "#.....#", "#.###.#", "#.#.#.#", "#.###.#", "#.....#", "#######",
        ][..],
        // Full box, touching every side.
        &["###", "###"][..],
    ] {
        check(&mask(rows)).unwrap();
    }
}

#[test]
fn masks_at_the_image_border_have_vertices_on_it() {
    // A 3 x 2 nucleus in the top-left corner of the image, and one ending at x = 1000.
    let c = outer_contour(&mask(&["###", "##."])).unwrap();
    assert_eq!(
        c.vertices,
        vec![[0, 0], [3, 0], [3, 1], [2, 1], [2, 2], [0, 2]]
    );
    let m = InstanceMask {
        x0: 998,
        y0: 500,
        ..mask(&["##"])
    };
    let c = outer_contour(&m).unwrap();
    assert_eq!(
        c.vertices,
        vec![[998, 500], [1000, 500], [1000, 501], [998, 501]]
    );
}
