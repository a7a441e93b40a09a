//! The outer boundary of a mask as a polygon, traced along pixel edges ("crack
//! following").
//!
//! Pixel `(x, y)` covers the square `[x, x + 1] × [y, y + 1]`; the polygon's vertices are
//! pixel corners and its edges follow the cracks between pixels of the mask and pixels
//! outside it, so its area is exactly the number of pixels it encloses.
//!
//! Conventions, all deterministic:
//! - **Which pixels.** The outline is that of the mask's largest **4-connected** component
//!   (ties: the component whose first pixel in raster order comes first). Pieces attached
//!   only by a corner are separate components, so a mask made of diagonal-only pieces
//!   gives the outline of one of them, never a figure-of-eight through a shared corner.
//! - **Turning rule.** Inside the traced component, two pixels that touch only by a corner
//!   (both belong to it, joined around some other way) are kept together: at such a
//!   corner the tracer turns towards the component (the 8-connected rule), so the
//!   background pocket behind the corner becomes a hole rather than a slit. With the
//!   component 4-connected this makes every vertex appear once: the polygon is simple.
//! - **Holes.** Only the outer boundary is returned; holes (background or other pixels
//!   enclosed by the component) lie inside the polygon. Its area is the component's pixel
//!   count plus the holes' pixel count.
//! - **Orientation.** Positive shoelace area, `½ Σ (xᵢ yᵢ₊₁ − xᵢ₊₁ yᵢ) > 0`: counter-clockwise
//!   in a y-up frame (GeoJSON's right-hand rule, RFC 7946 §3.1.6), which appears clockwise
//!   on screen where y points down. The component stays on the right of each edge as drawn
//!   on screen.
//! - **Start.** The top-left corner of the component's first pixel in raster order (always
//!   a convex corner); the first edge goes right (+x).
//! - **Vertices.** Only where the direction changes: no collinear vertex, no repeated
//!   closing vertex (see [`Contour::closed_ring`] for GeoJSON's closed form).

use crate::{
    data::{connected_components, Connectivity},
    instances::InstanceMask,
};

/// A simple closed polygon with integer (pixel-corner) vertices in image coordinates; see
/// the module docs for its conventions. The ring is implicitly closed: the last vertex
/// connects back to the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contour {
    /// Vertices `[x, y]`, at least 4, consecutive ones differing in exactly one coordinate.
    pub vertices: Vec<[u32; 2]>,
}

impl Contour {
    /// Number of vertices.
    pub fn len(&self) -> usize {
        self.vertices.len()
    }

    /// Whether there is no vertex (never, for a traced contour).
    pub fn is_empty(&self) -> bool {
        self.vertices.is_empty()
    }

    /// Twice the signed shoelace area (an integer for pixel-corner vertices); positive for
    /// traced contours.
    pub fn twice_signed_area(&self) -> i64 {
        let n = self.vertices.len();
        (0..n)
            .map(|i| {
                let [x0, y0] = self.vertices[i];
                let [x1, y1] = self.vertices[(i + 1) % n];
                x0 as i64 * y1 as i64 - x1 as i64 * y0 as i64
            })
            .sum()
    }

    /// Enclosed area in pixels (the shoelace formula).
    pub fn area(&self) -> f64 {
        self.twice_signed_area().abs() as f64 / 2.0
    }

    /// Length of the boundary in pixel edges (the "crack" perimeter: 4 for one pixel). For
    /// a perimeter estimate that is not biased by the staircase, see
    /// [`NucleusMeasurements::perimeter`](super::NucleusMeasurements::perimeter).
    pub fn crack_length(&self) -> u64 {
        let n = self.vertices.len();
        (0..n)
            .map(|i| {
                let [x0, y0] = self.vertices[i];
                let [x1, y1] = self.vertices[(i + 1) % n];
                (x0.abs_diff(x1) + y0.abs_diff(y1)) as u64
            })
            .sum()
    }

    /// Whether the point `(x, y)` lies strictly inside the polygon (even–odd rule). Pixel
    /// `(px, py)` is inside when its centre `(px + 0.5, py + 0.5)` is.
    pub fn contains(&self, x: f64, y: f64) -> bool {
        let n = self.vertices.len();
        let mut inside = false;
        for i in 0..n {
            let [ax, ay] = self.vertices[i].map(f64::from);
            let [bx, by] = self.vertices[(i + 1) % n].map(f64::from);
            if (ay > y) != (by > y) {
                let cross_x = ax + (y - ay) * (bx - ax) / (by - ay);
                if x < cross_x {
                    inside = !inside;
                }
            }
        }
        inside
    }

    /// The vertices shifted by `origin` (e.g. a tile's position in a whole-slide image), as
    /// a closed ring: the first point repeated at the end, as GeoJSON requires.
    pub fn closed_ring(&self, origin: [f64; 2]) -> Vec<[f64; 2]> {
        self.vertices
            .iter()
            .chain(self.vertices.first())
            .map(|&[x, y]| [x as f64 + origin[0], y as f64 + origin[1]])
            .collect()
    }
}

/// Directions in image coordinates (y down): east, south, west, north. Turning right on
/// screen is `d + 1`, turning left `d + 3` (mod 4).
const STEP: [(i64, i64); 4] = [(1, 0), (0, 1), (-1, 0), (0, -1)];

/// For heading `d` at vertex `(vx, vy)`, the offsets of the pixel ahead on the left and
/// the pixel ahead on the right (pixel `(vx + dx, vy + dy)`).
const AHEAD: [[(i64, i64); 2]; 4] = [
    [(0, -1), (0, 0)],   // east: left = north-east pixel, right = south-east pixel
    [(0, 0), (-1, 0)],   // south: left = south-east, right = south-west
    [(-1, 0), (-1, -1)], // west: left = south-west, right = north-west
    [(-1, -1), (0, -1)], // north: left = north-west, right = north-east
];

/// The outer boundary of the largest 4-connected component of `mask`, in image
/// coordinates, or `None` for an empty mask. See the module docs for the conventions.
/// Works inside the mask's box: O(width × height).
///
/// # Panics
/// If `mask.data.len() != mask.width * mask.height` (a malformed mask).
pub fn outer_contour(mask: &InstanceMask) -> Option<Contour> {
    let (w, h) = (mask.width, mask.height);
    assert_eq!(
        mask.data.len(),
        w as usize * h as usize,
        "InstanceMask data length must be width * height"
    );
    let component = largest_component(w, h, &mask.data)?;
    let (w, h) = (w as i64, h as i64);
    let fg = |x: i64, y: i64| x >= 0 && y >= 0 && x < w && y < h && component[(y * w + x) as usize];
    // The first pixel in raster order: its top-left corner is a convex corner of the outer
    // boundary (nothing of the component lies above it or to its left).
    let first = component.iter().position(|&b| b).expect("non-empty") as i64;
    let start = (first % w, first / w);
    let mut vertices = vec![[start.0, start.1]];
    let (mut pos, mut dir) = (start, 0usize);
    // Each crack is walked at most once: a bound that turns a logic error into a panic
    // rather than a hang.
    let max_steps = 2 * (w + 1) * (h + 1) + 4;
    for _ in 0..max_steps {
        pos = (pos.0 + STEP[dir].0, pos.1 + STEP[dir].1);
        if pos == start {
            let [[ax, ay], _] = AHEAD[dir].map(|(dx, dy)| [pos.0 + dx, pos.1 + dy]);
            debug_assert!(!fg(ax, ay), "the start corner is convex");
            let x0 = mask.x0 as i64;
            let y0 = mask.y0 as i64;
            return Some(Contour {
                vertices: vertices
                    .into_iter()
                    .map(|[x, y]| [(x + x0) as u32, (y + y0) as u32])
                    .collect(),
            });
        }
        let [(lx, ly), (rx, ry)] = AHEAD[dir];
        let next = if fg(pos.0 + lx, pos.1 + ly) {
            // Ahead-left is ours: turn left (at a diagonal corner this keeps the two
            // pixels together, the 8-connected rule).
            (dir + 3) % 4
        } else if fg(pos.0 + rx, pos.1 + ry) {
            dir
        } else {
            (dir + 1) % 4
        };
        if next != dir {
            vertices.push([pos.0, pos.1]);
            dir = next;
        }
    }
    unreachable!("contour tracing did not close within {max_steps} steps")
}

/// The largest 4-connected component of a `w × h` mask as a mask of the same box (ties:
/// first in raster order), or `None` when the mask is empty.
fn largest_component(w: u32, h: u32, data: &[bool]) -> Option<Vec<bool>> {
    if !data.iter().any(|&b| b) {
        return None;
    }
    let labels = connected_components(w, h, data, Connectivity::Four);
    let max = labels.max_id();
    if max == 1 {
        return Some(data.to_vec());
    }
    let mut sizes = vec![0u64; max as usize + 1];
    for &v in labels.as_slice() {
        sizes[v as usize] += 1;
    }
    // Labels are numbered in raster order of their first pixel: the first maximum wins.
    let mut best = 1;
    for id in 2..=max as usize {
        if sizes[id] > sizes[best] {
            best = id;
        }
    }
    Some(
        labels
            .as_slice()
            .iter()
            .map(|&v| v == best as u32)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str], x0: u32, y0: u32) -> InstanceMask {
        let h = rows.len() as u32;
        let w = rows[0].len() as u32;
        InstanceMask {
            x0,
            y0,
            width: w,
            height: h,
            data: rows
                .iter()
                .flat_map(|r| r.bytes().map(|b| b == b'#'))
                .collect(),
        }
    }

    #[test]
    fn one_pixel_is_a_unit_square_from_its_top_left_corner() {
        let c = outer_contour(&mask(&["#"], 5, 7)).unwrap();
        assert_eq!(c.vertices, vec![[5, 7], [6, 7], [6, 8], [5, 8]]);
        assert_eq!(c.twice_signed_area(), 2);
        assert_eq!(c.crack_length(), 4);
        assert!(c.contains(5.5, 7.5) && !c.contains(4.5, 7.5));
        assert_eq!(
            c.closed_ring([100.0, 0.5]),
            vec![
                [105.0, 7.5],
                [106.0, 7.5],
                [106.0, 8.5],
                [105.0, 8.5],
                [105.0, 7.5]
            ]
        );
        assert!(outer_contour(&mask(&["..", ".."], 0, 0)).is_none());
    }

    #[test]
    fn l_shape_drops_collinear_vertices() {
        // #.
        // #.
        // ##
        let c = outer_contour(&mask(&["#.", "#.", "##"], 0, 0)).unwrap();
        assert_eq!(
            c.vertices,
            vec![[0, 0], [1, 0], [1, 2], [2, 2], [2, 3], [0, 3]]
        );
        assert_eq!(c.area(), 4.0);
    }

    #[test]
    fn diagonal_pieces_give_one_simple_outline() {
        // Two pixels touching at a corner: two components of one pixel, the first wins.
        let c = outer_contour(&mask(&["#.", ".#"], 0, 0)).unwrap();
        assert_eq!(c.vertices, vec![[0, 0], [1, 0], [1, 1], [0, 1]]);
        // The larger piece wins even when it comes second.
        let c = outer_contour(&mask(&["#..", ".##"], 0, 0)).unwrap();
        assert_eq!(c.vertices, vec![[1, 1], [3, 1], [3, 2], [1, 2]]);
    }

    #[test]
    fn a_ring_closed_at_a_corner_encloses_its_pocket() {
        // The C closes diagonally at (2, 0)-(3, 1): the pocket (2..3, 1) becomes a hole.
        let m = mask(&["###.", "#..#", "####"], 0, 0);
        let c = outer_contour(&m).unwrap();
        let mut seen = std::collections::HashSet::new();
        assert!(c.vertices.iter().all(|v| seen.insert(*v)), "{c:?}");
        assert_eq!(c.area(), 12.0 - 1.0, "9 pixels + 2 pocket pixels");
        assert!(c.contains(1.5, 1.5) && c.contains(2.5, 1.5));
        assert!(!c.contains(3.5, 0.5));
    }

    #[test]
    fn holes_are_inside_and_image_border_is_fine() {
        let c = outer_contour(&mask(&["###", "#.#", "###"], 0, 0)).unwrap();
        assert_eq!(c.vertices, vec![[0, 0], [3, 0], [3, 3], [0, 3]]);
        assert_eq!(c.area(), 9.0);
    }
}
