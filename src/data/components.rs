//! Connected-component labelling of binary masks.

use super::LabelMap;
use crate::union_find::UnionFind;

/// Pixel adjacency for [`connected_components`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Connectivity {
    /// Edge neighbours only.
    Four,
    /// Edge and corner neighbours (the convention for nuclei masks).
    #[default]
    Eight,
}

/// Labels the connected components of a binary mask (`mask[y * width + x]`), numbering them
/// `1..=N` in raster order of their first pixel. Two-pass union–find, O(pixels).
///
/// # Panics
/// If `mask.len() != width * height`.
pub fn connected_components(
    width: u32,
    height: u32,
    mask: &[bool],
    connectivity: Connectivity,
) -> LabelMap {
    let (w, h) = (width as usize, height as usize);
    assert_eq!(mask.len(), w * h, "mask length must be width * height");
    let mut labels = vec![0u32; w * h];
    // Element 0 is unused; provisional labels start at 1.
    let mut sets = UnionFind::new(1);
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if !mask[i] {
                continue;
            }
            let mut current = 0usize;
            let mut visit = |n: u32, sets: &mut UnionFind| {
                if n != 0 {
                    current = if current == 0 {
                        sets.find(n as usize)
                    } else {
                        sets.union(current, n as usize)
                    };
                }
            };
            if x > 0 {
                visit(labels[i - 1], &mut sets);
            }
            if y > 0 {
                visit(labels[i - w], &mut sets);
                if connectivity == Connectivity::Eight {
                    if x > 0 {
                        visit(labels[i - w - 1], &mut sets);
                    }
                    if x + 1 < w {
                        visit(labels[i - w + 1], &mut sets);
                    }
                }
            }
            if current == 0 {
                current = sets.push();
            }
            labels[i] = current as u32;
        }
    }
    // Resolve roots and renumber densely in raster order of first appearance.
    let mut dense = vec![0u32; sets.len()];
    let mut next = 0u32;
    for l in labels.iter_mut() {
        if *l == 0 {
            continue;
        }
        let root = sets.find(*l as usize);
        if dense[root] == 0 {
            next += 1;
            dense[root] = next;
        }
        *l = dense[root];
    }
    LabelMap::from_vec(width, height, labels).expect("sizes match")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(rows: &[&str]) -> (u32, u32, Vec<bool>) {
        let w = rows[0].len() as u32;
        let mask = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| b == b'#'))
            .collect();
        (w, rows.len() as u32, mask)
    }

    #[test]
    fn eight_joins_diagonals_four_does_not() {
        let (w, h, m) = parse(&["#..#", ".#.#", "..##", "#..."]);
        let eight = connected_components(w, h, &m, Connectivity::Eight);
        assert_eq!(eight.count(), 2);
        assert_eq!(eight.get(0, 0), eight.get(1, 1));
        assert_eq!(eight.get(3, 0), eight.get(2, 2));
        let four = connected_components(w, h, &m, Connectivity::Four);
        assert_eq!(four.count(), 4);
        assert_eq!(four.get(0, 0), 1, "raster order numbering");
    }

    #[test]
    fn u_shape_merges_two_provisional_labels() {
        let (w, h, m) = parse(&["#.#", "#.#", "###"]);
        let l = connected_components(w, h, &m, Connectivity::Four);
        assert_eq!(l.count(), 1);
        assert_eq!(l.ids(), vec![1]);
    }
}
