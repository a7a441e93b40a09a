//! Stitching the predictions of overlapping tiles into one set of nuclei, without cut or
//! duplicated ones.
//!
//! Each tile's detections (cropped to the part of the tile inside the image and moved to
//! image coordinates) fall in one of three kinds:
//! - **cut**: the mask touches an inner edge of the tile (one that is not the image border),
//!   so the tile may have seen only part of the nucleus;
//! - **owned**: whole, and its centroid lies in the tile's core ([`Tile::core`]);
//! - **spare**: whole, but centred in another tile's core.
//!
//! [`Stitcher::finish`] then decides:
//! 1. owned detections are accepted by decreasing score (ties: tile, then list order),
//!    except one whose IoU with an already accepted detection *of another tile* is above
//!    `match_iou`: the same nucleus claimed by two tiles whose masks differ slightly near a
//!    core boundary (overlaps within one tile are left as the segmenter made them);
//! 2. spare detections are accepted the same way unless they match any accepted one: they
//!    stand in for a nucleus whose owner tile saw it cut (a nucleus wider than the overlap
//!    guarantees) or missed it;
//! 3. cut detections explained by an accepted nucleus (IoU above `match_iou` within the cut
//!    detection's tile, i.e. comparing it with the part of the nucleus that tile can see) are
//!    dropped. The rest belong to nuclei never seen whole: cut pieces from different tiles
//!    are joined when their IoU over the area both tiles see is above `match_iou`, and each
//!    joined group becomes one nucleus, the union of its pieces (score: the area-weighted
//!    mean, class: the largest piece's).
//!
//! For a segmenter that is exact on each tile, a nucleus is the same mask in every tile that
//! sees it whole, so its centroid (compared in integer arithmetic) lies in exactly one core;
//! steps 1 and 2 find nothing to merge, and the result is exactly the image's nuclei (up to
//! the size guarantee of the [tiling module](super)).

use super::tile::Tile;
use crate::instances::{Instance, InstanceMask, Instances};
use crate::postprocess::{
    grid::SpatialGrid,
    masks::{
        area_in, centroid_doubled, crop_tight, intersection, iou, mask_rect, rect_intersection,
        rect_union, sanitize, tight_box_f32, translate, Rect,
    },
    PostprocessError,
};
use crate::union_find::UnionFind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Owned,
    Spare,
    Cut,
}

/// A detection of one tile, in image coordinates.
#[derive(Debug, Clone)]
struct Piece {
    instance: Instance,
    kind: Kind,
    tile: usize,
    tile_rect: Rect,
    area: u64,
}

/// Collects the predictions of the tiles of one image, one tile at a time, and merges them
/// ([`finish`](Self::finish)). See the module docs for the rule. [`Tiler`](super::Tiler)
/// drives it; use it directly to stream tiles from elsewhere.
#[derive(Debug, Clone)]
pub struct Stitcher {
    width: u32,
    height: u32,
    match_iou: f64,
    pieces: Vec<Piece>,
}

impl Stitcher {
    /// A stitcher for a `width × height` image; detections of different tiles are the same
    /// nucleus above `match_iou` (the [`TilerConfig`](super::TilerConfig) default is 0.2).
    pub fn new(width: u32, height: u32, match_iou: f64) -> Self {
        Stitcher {
            width,
            height,
            match_iou,
            pieces: Vec::new(),
        }
    }

    /// Adds the prediction `found` for `tile` (one of [`Tiler::tiles`](super::Tiler::tiles)
    /// of this image), made on the tile image: coordinates relative to the tile, size
    /// [`Tile::input_size`]. Detections in the padding are discarded.
    ///
    /// # Errors
    /// `found` is for another image size, or holds a malformed mask.
    pub fn add(&mut self, tile: &Tile, found: Instances) -> Result<(), PostprocessError> {
        let (iw, ih) = tile.input_size;
        let found = sanitize(found, iw, ih, || {
            format!("tile {} at ({}, {})", tile.index, tile.x0, tile.y0)
        })?;
        let rect = tile.rect();
        let [x0, y0, x1, y1] = rect;
        for inst in found.items {
            let mask = crop_tight(&inst.mask, [0, 0, tile.width, tile.height]);
            if mask.width == 0 {
                continue;
            }
            let mask = translate(mask, x0, y0);
            let r = mask_rect(&mask);
            let inner = tile.inner_edges;
            let touches = (inner[0] && r[0] == x0)
                || (inner[1] && r[1] == y0)
                || (inner[2] && r[2] == x1)
                || (inner[3] && r[3] == y1);
            let (sx, sy, n) = centroid_doubled(&mask);
            let c = tile.core.map(|v| 2 * n * v as u64);
            let kind = if touches {
                Kind::Cut
            } else if sx >= c[0] && sx < c[2] && sy >= c[1] && sy < c[3] {
                Kind::Owned
            } else {
                Kind::Spare
            };
            let b = inst.bbox;
            let bbox = [
                (b[0] + x0 as f32).clamp(x0 as f32, x1 as f32),
                (b[1] + y0 as f32).clamp(y0 as f32, y1 as f32),
                (b[2] + x0 as f32).clamp(x0 as f32, x1 as f32),
                (b[3] + y0 as f32).clamp(y0 as f32, y1 as f32),
            ];
            self.pieces.push(Piece {
                instance: Instance {
                    mask,
                    bbox,
                    score: inst.score,
                    class_id: inst.class_id,
                },
                kind,
                tile: tile.index,
                tile_rect: rect,
                area: n,
            });
        }
        Ok(())
    }

    /// The stitched nuclei: accepted owned detections, then accepted spare ones, then nuclei
    /// joined from cut pieces.
    pub fn finish(self) -> Instances {
        Instances {
            width: self.width,
            height: self.height,
            items: decide(self.pieces, self.match_iou),
        }
    }

    /// Decides, as [`finish`](Self::finish) would, the nuclei that no tile added later can
    /// change, and forgets their detections; for tiles added row by row (as
    /// [`Tiler::tiles`](super::Tiler::tiles) lists them), call it with the next row's top
    /// `y` after each row, and [`finish`](Self::finish) after the last.
    ///
    /// Detections interact (duplicates, explained cuts, joined pieces) only when their masks
    /// overlap, so the detections are grouped by overlapping masks (not boxes: the boxes of
    /// touching nuclei overlap, and would chain a whole dense region into one group), and a
    /// group whose boxes all end at or above `y` is final once every later tile lies below
    /// `y`. Deciding such a
    /// group on its own gives exactly the nuclei `finish` would give it (in another order),
    /// so a slide streamed band by band keeps only the detections of about two rows of tiles.
    pub fn drain_above(&mut self, y: u32) -> Vec<Instance> {
        let n = self.pieces.len();
        let rects: Vec<Rect> = self
            .pieces
            .iter()
            .map(|p| mask_rect(&p.instance.mask))
            .collect();
        let grid = SpatialGrid::new(rects.clone());
        let mut sets = UnionFind::new(n);
        let mut near = Vec::new();
        for (i, &r) in rects.iter().enumerate() {
            grid.query(r, &mut near);
            for &j in near.iter().filter(|&&j| j as usize > i) {
                let (a, b) = (
                    &self.pieces[i].instance.mask,
                    &self.pieces[j as usize].instance.mask,
                );
                if intersection(a, b) > 0 {
                    sets.union(i, j as usize);
                }
            }
        }
        let mut bottom = vec![0u32; n];
        for (i, r) in rects.iter().enumerate() {
            let root = sets.find(i);
            bottom[root] = bottom[root].max(r[3]);
        }
        let closed: Vec<bool> = (0..n).map(|i| bottom[sets.find(i)] <= y).collect();
        let mut done = Vec::new();
        let mut open = Vec::new();
        for (c, p) in closed.into_iter().zip(std::mem::take(&mut self.pieces)) {
            if c {
                done.push(p);
            } else {
                open.push(p);
            }
        }
        self.pieces = open;
        decide(done, self.match_iou)
    }
}

/// Steps 1–3 of the module docs on a set of pieces (all of them, or closed groups).
fn decide(pieces: Vec<Piece>, match_iou: f64) -> Vec<Instance> {
    let grid = SpatialGrid::new(pieces.iter().map(|p| mask_rect(&p.instance.mask)).collect());
    let accepted = accept_whole(&pieces, &grid, match_iou);
    let loose = unexplained_cuts(&pieces, &grid, &accepted, match_iou);
    let groups = join_cuts(&pieces, &grid, &loose, match_iou);
    assemble(pieces, &accepted, groups)
}

/// Indices of the pieces of `kind` by decreasing score (ties: tile, then list order).
fn by_score(pieces: &[Piece], kind: Kind) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..pieces.len())
        .filter(|&i| pieces[i].kind == kind)
        .collect();
    ids.sort_by(|&a, &b| {
        pieces[b]
            .instance
            .score
            .total_cmp(&pieces[a].instance.score)
            .then((pieces[a].tile, a).cmp(&(pieces[b].tile, b)))
    });
    ids
}

/// Steps 1 and 2: which whole (owned, then spare) detections are accepted.
fn accept_whole(pieces: &[Piece], grid: &SpatialGrid, match_iou: f64) -> Vec<bool> {
    let full_iou = |a: &Piece, b: &Piece| {
        let inter = intersection(&a.instance.mask, &b.instance.mask);
        inter > 0 && iou(inter, a.area, b.area) > match_iou
    };
    let mut accepted = vec![false; pieces.len()];
    let mut near = Vec::new();
    for kind in [Kind::Owned, Kind::Spare] {
        for i in by_score(pieces, kind) {
            grid.query(mask_rect(&pieces[i].instance.mask), &mut near);
            let duplicate = near.iter().any(|&j| {
                let j = j as usize;
                accepted[j]
                    && (kind == Kind::Spare || pieces[j].tile != pieces[i].tile)
                    && full_iou(&pieces[i], &pieces[j])
            });
            accepted[i] = !duplicate;
        }
    }
    accepted
}

/// Step 3, first half: the cut pieces that no accepted nucleus explains (IoU above
/// `match_iou` within the cut piece's tile), in list order.
fn unexplained_cuts(
    pieces: &[Piece],
    grid: &SpatialGrid,
    accepted: &[bool],
    match_iou: f64,
) -> Vec<usize> {
    let mut loose = Vec::new();
    let mut near = Vec::new();
    for i in (0..pieces.len()).filter(|&i| pieces[i].kind == Kind::Cut) {
        let p = &pieces[i];
        grid.query(mask_rect(&p.instance.mask), &mut near);
        let explained = near.iter().any(|&j| {
            let a = &pieces[j as usize];
            if !accepted[j as usize] {
                return false;
            }
            let inter = intersection(&a.instance.mask, &p.instance.mask);
            inter > 0 && iou(inter, area_in(&a.instance.mask, p.tile_rect), p.area) > match_iou
        });
        if !explained {
            loose.push(i);
        }
    }
    loose
}

/// Step 3, second half: loose cut pieces of different tiles joined when their IoU over the
/// area both tiles see is above `match_iou`; groups ordered by their smallest index.
fn join_cuts(
    pieces: &[Piece],
    grid: &SpatialGrid,
    loose: &[usize],
    match_iou: f64,
) -> Vec<Vec<usize>> {
    let mut is_loose = vec![false; pieces.len()];
    for &i in loose {
        is_loose[i] = true;
    }
    let mut sets = UnionFind::new(pieces.len());
    let mut near = Vec::new();
    for &i in loose {
        let p = &pieces[i];
        grid.query(mask_rect(&p.instance.mask), &mut near);
        for &j in &near {
            let j = j as usize;
            let q = &pieces[j];
            if j <= i || !is_loose[j] || q.tile == p.tile {
                continue;
            }
            let Some(common) = rect_intersection(p.tile_rect, q.tile_rect) else {
                continue;
            };
            let inter = intersection(&p.instance.mask, &q.instance.mask);
            if inter == 0 {
                continue;
            }
            let (a, b) = (
                area_in(&p.instance.mask, common),
                area_in(&q.instance.mask, common),
            );
            if iou(inter, a, b) > match_iou {
                sets.union(i, j);
            }
        }
    }
    let mut rooted: Vec<(usize, usize)> = loose.iter().map(|&i| (sets.find(i), i)).collect();
    rooted.sort_unstable();
    rooted
        .chunk_by(|a, b| a.0 == b.0)
        .map(|g| g.iter().map(|&(_, i)| i).collect())
        .collect()
}

/// The output list: accepted owned detections, accepted spare ones (each in list order),
/// then one nucleus per group of joined cut pieces.
fn assemble(pieces: Vec<Piece>, accepted: &[bool], groups: Vec<Vec<usize>>) -> Vec<Instance> {
    let mut items: Vec<Instance> = Vec::new();
    let mut pieces: Vec<Option<Piece>> = pieces.into_iter().map(Some).collect();
    for kind in [Kind::Owned, Kind::Spare] {
        for (i, slot) in pieces.iter_mut().enumerate() {
            if accepted[i] && slot.as_ref().is_some_and(|p| p.kind == kind) {
                items.push(slot.take().expect("present").instance);
            }
        }
    }
    for group in groups {
        let parts: Vec<Piece> = group
            .into_iter()
            .map(|i| pieces[i].take().expect("in one group"))
            .collect();
        items.push(join(&parts));
    }
    items
}

/// One nucleus from the cut pieces of several tiles: the union of their masks.
fn join(parts: &[Piece]) -> Instance {
    if parts.len() == 1 {
        return parts[0].instance.clone();
    }
    let rect = parts
        .iter()
        .map(|p| mask_rect(&p.instance.mask))
        .fold([0; 4], rect_union);
    let (w, h) = (rect[2] - rect[0], rect[3] - rect[1]);
    let mut data = vec![false; (w * h) as usize];
    for p in parts {
        for (x, y) in p.instance.mask.pixels() {
            data[((y - rect[1]) * w + x - rect[0]) as usize] = true;
        }
    }
    let mask = InstanceMask {
        x0: rect[0],
        y0: rect[1],
        width: w,
        height: h,
        data,
    };
    let total: u64 = parts.iter().map(|p| p.area).sum();
    let score = parts
        .iter()
        .map(|p| p.instance.score as f64 * p.area as f64)
        .sum::<f64>()
        / total as f64;
    let largest = parts
        .iter()
        .max_by_key(|p| p.area)
        .expect("at least one part");
    Instance {
        bbox: tight_box_f32(&mask),
        mask,
        score: score as f32,
        class_id: largest.instance.class_id,
    }
}
