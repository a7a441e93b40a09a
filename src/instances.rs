//! Nuclei, and the trait every segmenter implements ([`InstanceSegmenter`]).
//!
//! Two types, one per role:
//! - [`Instances`]: what a segmenter returns and the stages between (TTA, tiling) pass on:
//!   masks cropped to their boxes, possibly overlapping, with detector boxes and scores;
//! - [`Nuclei`]: the result of segmenting an image (what [`Pipeline::run`](crate::pipeline::Pipeline::run)
//!   returns and [`export`](crate::export) writes): the instance label map, and each
//!   nucleus's own pixels in it, so that every output describes exactly the same pixels.

use image::RgbImage;

use crate::data::LabelMap;

/// A binary mask stored inside its bounding box: pixel `(x, y)` of the image is set when
/// `x0 <= x < x0 + width`, `y0 <= y < y0 + height` and
/// `data[(y - y0) * width + (x - x0)]` is true.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceMask {
    /// Left column of the box.
    pub x0: u32,
    /// Top row of the box.
    pub y0: u32,
    /// Box width.
    pub width: u32,
    /// Box height.
    pub height: u32,
    /// Row-major bits inside the box.
    pub data: Vec<bool>,
}

impl InstanceMask {
    /// A mask from the pixels `(x, y)` it covers; the box is their bounding box.
    pub fn from_pixels(pixels: impl IntoIterator<Item = (u32, u32)> + Clone) -> Self {
        let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
        let mut any = false;
        for (x, y) in pixels.clone() {
            any = true;
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x + 1);
            y1 = y1.max(y + 1);
        }
        if !any {
            return InstanceMask::default();
        }
        let (w, h) = (x1 - x0, y1 - y0);
        let mut data = vec![false; (w * h) as usize];
        for (x, y) in pixels {
            data[((y - y0) * w + (x - x0)) as usize] = true;
        }
        InstanceMask {
            x0,
            y0,
            width: w,
            height: h,
            data,
        }
    }

    /// Whether image pixel `(x, y)` is set.
    #[inline]
    pub fn contains(&self, x: u32, y: u32) -> bool {
        x >= self.x0
            && y >= self.y0
            && x < self.x0 + self.width
            && y < self.y0 + self.height
            && self.data[((y - self.y0) * self.width + (x - self.x0)) as usize]
    }

    /// Number of set pixels.
    pub fn area(&self) -> u64 {
        self.data.iter().filter(|&&b| b).count() as u64
    }

    /// The set pixels `(x, y)` in image coordinates, row by row.
    pub fn pixels(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.data
            .iter()
            .enumerate()
            .filter(|(_, &b)| b)
            .map(move |(i, _)| {
                let i = i as u32;
                (self.x0 + i % self.width, self.y0 + i / self.width)
            })
    }

    /// Pixels set in both masks.
    pub fn intersection(&self, other: &InstanceMask) -> u64 {
        let (ax1, ay1) = (self.x0 + self.width, self.y0 + self.height);
        let (bx1, by1) = (other.x0 + other.width, other.y0 + other.height);
        let (x0, y0) = (self.x0.max(other.x0), self.y0.max(other.y0));
        let (x1, y1) = (ax1.min(bx1), ay1.min(by1));
        let mut n = 0;
        for y in y0..y1.max(y0) {
            for x in x0..x1.max(x0) {
                if self.contains(x, y) && other.contains(x, y) {
                    n += 1;
                }
            }
        }
        n
    }

    /// Intersection over union with another mask (0 when both are empty).
    pub fn iou(&self, other: &InstanceMask) -> f64 {
        let inter = self.intersection(other);
        let union = self.area() + other.area() - inter;
        if union == 0 {
            0.0
        } else {
            inter as f64 / union as f64
        }
    }

    /// Tight bounding box `[x0, y0, x1, y1]` (exclusive ends) of the set pixels, or `None`
    /// when the mask is empty.
    pub fn tight_bbox(&self) -> Option<[u32; 4]> {
        let mut b: Option<[u32; 4]> = None;
        for (x, y) in self.pixels() {
            let e = b.get_or_insert([x, y, x + 1, y + 1]);
            e[0] = e[0].min(x);
            e[1] = e[1].min(y);
            e[2] = e[2].max(x + 1);
            e[3] = e[3].max(y + 1);
        }
        b
    }
}

/// One detected nucleus.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Its pixels.
    pub mask: InstanceMask,
    /// Detector box `[x1, y1, x2, y2]` in pixels (continuous coordinates); for segmenters
    /// without boxes, the mask's tight box.
    pub bbox: [f32; 4],
    /// Confidence in `[0, 1]` (1 for segmenters without scores).
    pub score: f32,
    /// Class id, `1..` (0 is background); nuclei are class 1.
    pub class_id: u32,
}

impl Instance {
    /// An instance from a mask alone: box = the mask's tight box, score 1, class 1.
    pub fn from_mask(mask: InstanceMask) -> Self {
        let b = mask.tight_bbox().unwrap_or([0; 4]);
        Instance {
            mask,
            bbox: [b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32],
            score: 1.0,
            class_id: 1,
        }
    }

    /// Pixel area of the mask.
    pub fn area(&self) -> u64 {
        self.mask.area()
    }
}

/// The nuclei found in one image.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Instances {
    /// Image width.
    pub width: u32,
    /// Image height.
    pub height: u32,
    /// The nuclei, in no particular order.
    pub items: Vec<Instance>,
}

impl Instances {
    /// No nuclei in a `width × height` image.
    pub fn new(width: u32, height: u32) -> Self {
        Instances {
            width,
            height,
            items: Vec::new(),
        }
    }

    /// Number of nuclei.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// One instance per id of a label map (score 1, class 1), in increasing id order.
    pub fn from_label_map(labels: &LabelMap) -> Self {
        let ids = labels.ids();
        let mut pixels: Vec<Vec<(u32, u32)>> = vec![Vec::new(); ids.len()];
        let w = labels.width();
        for (i, &v) in labels.as_slice().iter().enumerate() {
            if v != 0 {
                let k = ids.binary_search(&v).expect("id listed");
                pixels[k].push((i as u32 % w, i as u32 / w));
            }
        }
        Instances {
            width: labels.width(),
            height: labels.height(),
            items: pixels
                .into_iter()
                .map(|p| Instance::from_mask(InstanceMask::from_pixels(p)))
                .collect(),
        }
    }

    /// These instances in the same image resized to `width × height`: each output pixel
    /// takes the mask bits of the input pixel under its centre (nearest neighbour), boxes
    /// scale with the image; scores and classes are kept, and an instance left without a
    /// pixel (smaller than one output pixel) is dropped.
    pub fn resampled(&self, width: u32, height: u32) -> Instances {
        let mut out = Instances::new(width, height);
        if self.width == 0 || self.height == 0 {
            return out;
        }
        let sx = self.width as f64 / width.max(1) as f64;
        let sy = self.height as f64 / height.max(1) as f64;
        let source = |v: u32, s: f64, limit: u32| (((v as f64 + 0.5) * s) as u32).min(limit - 1);
        for inst in &self.items {
            let m = &inst.mask;
            // Output pixels whose centres fall in the mask's box.
            let x0 = ((m.x0 as f64 / sx) - 0.5).ceil().max(0.0) as u32;
            let y0 = ((m.y0 as f64 / sy) - 0.5).ceil().max(0.0) as u32;
            let x1 = ((((m.x0 + m.width) as f64 / sx) - 0.5).ceil().max(0.0) as u32).min(width);
            let y1 = ((((m.y0 + m.height) as f64 / sy) - 0.5).ceil().max(0.0) as u32).min(height);
            let mut pixels = Vec::new();
            for y in y0..y1 {
                for x in x0..x1 {
                    if m.contains(source(x, sx, self.width), source(y, sy, self.height)) {
                        pixels.push((x, y));
                    }
                }
            }
            if pixels.is_empty() {
                continue;
            }
            let b = inst.bbox;
            out.items.push(Instance {
                mask: InstanceMask::from_pixels(pixels.iter().copied()),
                bbox: [
                    (b[0] as f64 / sx) as f32,
                    (b[1] as f64 / sy) as f32,
                    (b[2] as f64 / sx) as f32,
                    (b[3] as f64 / sy) as f32,
                ],
                score: inst.score,
                class_id: inst.class_id,
            });
        }
        out
    }

    /// Indices of the instances by decreasing score, ties in list order: the order in which
    /// [`to_label_map`](Self::to_label_map) numbers them.
    pub fn score_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.items.len()).collect();
        order.sort_by(|&a, &b| {
            self.items[b]
                .score
                .total_cmp(&self.items[a].score)
                .then(a.cmp(&b))
        });
        order
    }

    /// The instance label map: instances are painted in increasing score order so that
    /// where two overlap the higher score wins; ids are `1..=N` by decreasing score (ties
    /// keep list order). Instances left without any pixel are absent from the map.
    pub fn to_label_map(&self) -> LabelMap {
        let order = self.score_order();
        let mut map = LabelMap::new(self.width, self.height);
        for (rank, &k) in order.iter().enumerate().rev() {
            let id = rank as u32 + 1;
            for (x, y) in self.items[k].mask.pixels() {
                if x < self.width && y < self.height {
                    map.set(x, y, id);
                }
            }
        }
        // Ids of instances wholly covered by higher-scored ones are now missing: renumber.
        map.relabeled()
    }
}

/// How overlapping instances become disjoint nuclei
/// ([`Nuclei::from_instances_with`]). `new()` keeps every instance that is left any
/// pixel, as painting by score does; [`cleanup`](Self::cleanup) is the pipeline's default.
#[derive(burn::config::Config, Debug, PartialEq)]
pub struct OverlapConfig {
    /// An instance keeping less than this fraction of its mask, once higher-scored nuclei
    /// took theirs, is dropped (0 keeps all; 0.5 is a mask-level NMS at half overlap).
    #[config(default = 0.0)]
    pub min_kept_fraction: f32,
    /// Keep only the largest 8-connected piece of what each nucleus keeps (a nucleus cut
    /// in two by a better one is not two nuclei).
    #[config(default = false)]
    pub largest_component: bool,
    /// Nuclei with fewer pixels are dropped.
    #[config(default = 0)]
    pub min_area: u32,
    /// What a dropped instance leaves: `None`, nothing; `Some(s)`, its pixels that no
    /// nucleus holds, as far as they connect to the nucleus holding the most of its mask,
    /// go to that nucleus if it holds at least `s` of the mask (in the spirit of Gidaris &
    /// Komodakis's box voting and Dai et al.'s mask voting, 2016: a suppressed duplicate
    /// still tells where its nucleus lies).
    #[config(default = "None")]
    pub absorb_share: Option<f32>,
    /// Parts over wholes: `Some(c)` drops, before overlaps are resolved, an instance whose
    /// mask is covered to at least `c` by two or more smaller, mutually almost disjoint
    /// instances lying mostly inside it ([`whole_yields_to_parts`]) — touching nuclei that
    /// Mask R-CNN found one by one *and* as one detection, where the merged detection scored
    /// higher. `None`: scores alone decide.
    #[config(default = "None")]
    pub parts_cover: Option<f32>,
}

impl OverlapConfig {
    /// The pipeline's rule, chosen on the validation sets (`examples/sweep_postprocess.rs`,
    /// `models/MODEL_CARD.md`): drop an instance that loses more than 10 % of its mask to
    /// higher-scored ones (5 % until the models-v4 weights were re-swept on CPM-15 and
    /// TNBC), keep each nucleus's largest piece, drop nuclei under 30 px
    /// (≈ 1.9 µm² at 0.25 µm/px) — CPM-15, the shipped model, with and without TTA — and
    /// give a dropped instance's free pixels to the nucleus holding at least 20 % of its
    /// mask — four held-out Kumar training images, a model trained on the other twelve.
    pub fn cleanup() -> Self {
        OverlapConfig::new()
            .with_min_kept_fraction(0.9)
            .with_largest_component(true)
            .with_min_area(30)
            .with_absorb_share(Some(0.2))
    }

    /// Why the rule cannot be used (`min_kept_fraction` or `absorb_share` outside
    /// `[0, 1]`), if so.
    pub fn problem(&self) -> Option<String> {
        self.out_of_range()
            .map(|(name, v)| format!("{name} = {v} must lie in [0, 1]"))
    }

    /// The first share outside `[0, 1]`, with its field's name.
    pub fn out_of_range(&self) -> Option<(&'static str, f32)> {
        [
            ("min_kept_fraction", Some(self.min_kept_fraction)),
            ("absorb_share", self.absorb_share),
            ("parts_cover", self.parts_cover),
        ]
        .into_iter()
        .find_map(|(name, v)| v.filter(|v| !(0.0..=1.0).contains(v)).map(|v| (name, v)))
    }

    /// Whether it can change anything beyond painting by score.
    pub fn is_plain(&self) -> bool {
        self.min_kept_fraction <= 0.0
            && !self.largest_component
            && self.min_area == 0
            && self.absorb_share.is_none()
            && self.parts_cover.is_none()
    }
}

/// Keeps the largest 8-connected piece of `pixels` (the first found on a tie), in
/// row-major order.
fn keep_largest_component(pixels: &mut Vec<(u32, u32)>) {
    if pixels.len() < 2 {
        return;
    }
    let (x0, y0) = pixels
        .iter()
        .fold((u32::MAX, u32::MAX), |(a, b), &(x, y)| (a.min(x), b.min(y)));
    let x1 = pixels.iter().map(|p| p.0).max().unwrap_or(x0);
    let y1 = pixels.iter().map(|p| p.1).max().unwrap_or(y0);
    let (bw, bh) = ((x1 - x0 + 1) as usize, (y1 - y0 + 1) as usize);
    // 0: not in the set; 1: unvisited; ≥ 2: piece number + 2.
    let mut grid = vec![0u32; bw * bh];
    for &(x, y) in pixels.iter() {
        grid[(y - y0) as usize * bw + (x - x0) as usize] = 1;
    }
    let (mut best, mut best_size, mut next) = (0u32, 0usize, 2u32);
    let mut stack = Vec::new();
    for start in 0..grid.len() {
        if grid[start] != 1 {
            continue;
        }
        grid[start] = next;
        stack.push(start);
        let mut size = 0;
        while let Some(i) = stack.pop() {
            size += 1;
            let (cx, cy) = ((i % bw) as isize, (i / bw) as isize);
            for dy in -1..=1isize {
                for dx in -1..=1isize {
                    let (nx, ny) = (cx + dx, cy + dy);
                    if nx < 0 || ny < 0 || nx >= bw as isize || ny >= bh as isize {
                        continue;
                    }
                    let j = ny as usize * bw + nx as usize;
                    if grid[j] == 1 {
                        grid[j] = next;
                        stack.push(j);
                    }
                }
            }
        }
        if size > best_size {
            (best, best_size) = (next, size);
        }
        next += 1;
    }
    if best_size < pixels.len() {
        pixels.retain(|&(x, y)| grid[(y - y0) as usize * bw + (x - x0) as usize] == best);
    }
}

/// Share of a part's mask that must lie inside the whole ([`whole_yields_to_parts`]).
const PART_INSIDE: f64 = 0.8;
/// Largest part, as a share of the whole's area.
const PART_AREA: f64 = 0.8;
/// Largest overlap of a part with the parts taken before it, as a share of its area.
const PART_OVERLAP: f64 = 0.2;

/// For each instance, whether it yields to its parts ([`OverlapConfig::parts_cover`]): the
/// instances at most [`PART_AREA`] of its area with at least [`PART_INSIDE`] of their mask
/// inside it are taken in decreasing score order, each unless more than [`PART_OVERLAP`] of
/// it overlaps the parts already taken; two or more parts covering at least `cover` of its
/// mask make it yield. Decided on the instances as given (a part may itself be a whole).
pub fn whole_yields_to_parts(instances: &Instances, cover: f32) -> Vec<bool> {
    let items = &instances.items;
    let areas: Vec<u64> = items.iter().map(Instance::area).collect();
    let order = instances.score_order();
    let boxes_meet = |a: &InstanceMask, b: &InstanceMask| {
        a.x0 < b.x0 + b.width
            && b.x0 < a.x0 + a.width
            && a.y0 < b.y0 + b.height
            && b.y0 < a.y0 + a.height
    };
    (0..items.len())
        .map(|w| {
            let whole = &items[w].mask;
            let mut parts: Vec<usize> = Vec::new();
            for &p in &order {
                let part = &items[p].mask;
                if p == w
                    || areas[p] == 0
                    || areas[p] as f64 > PART_AREA * areas[w] as f64
                    || !boxes_meet(whole, part)
                    || (part.intersection(whole) as f64) < PART_INSIDE * areas[p] as f64
                {
                    continue;
                }
                let shared: u64 = parts
                    .iter()
                    .map(|&q| items[q].mask.intersection(part))
                    .sum();
                if shared as f64 <= PART_OVERLAP * areas[p] as f64 {
                    parts.push(p);
                }
            }
            if parts.len() < 2 {
                return false;
            }
            let covered = whole
                .pixels()
                .filter(|&(x, y)| parts.iter().any(|&q| items[q].mask.contains(x, y)))
                .count();
            covered as f64 >= f64::from(cover) * areas[w] as f64
        })
        .collect()
}

/// [`OverlapConfig::absorb_share`]: each instance of `dropped` (indices in score order)
/// gives the pixels of its mask that `labels` leaves free, and that connect to the nucleus
/// holding the most of its mask (the lower id on a tie), to that nucleus, if it holds at
/// least `share` of the mask; `items`' masks grow with their labels.
fn absorb_dropped(
    instances: &Instances,
    dropped: &[usize],
    share: f32,
    labels: &mut LabelMap,
    items: &mut [Nucleus],
) {
    let (w, h) = (labels.width(), labels.height());
    let mut grown: Vec<Vec<(u32, u32)>> = vec![Vec::new(); items.len()];
    let mut free = Vec::new();
    let mut held: Vec<(u32, usize)> = Vec::new();
    for &k in dropped {
        let m = &instances.items[k].mask;
        let (x1, y1) = clipped_end(m, w, h);
        free.clear();
        held.clear();
        let mut area = 0usize;
        for y in m.y0.min(y1)..y1 {
            for x in m.x0.min(x1)..x1 {
                if !m.contains(x, y) {
                    continue;
                }
                area += 1;
                match labels.get(x, y) {
                    0 => free.push((x, y)),
                    id => match held.iter_mut().find(|e| e.0 == id) {
                        Some(e) => e.1 += 1,
                        None => held.push((id, 1)),
                    },
                }
            }
        }
        let best = held
            .iter()
            .copied()
            .max_by_key(|&(id, n)| (n, std::cmp::Reverse(id)));
        let Some((id, n)) = best else { continue };
        // As a ratio, so that a share of exactly `share` passes (6 of 30 px at 0.2).
        if free.is_empty() || (n as f32) / (area as f32) < share {
            continue;
        }
        let reached = connected_to(&free, id, labels, (m.x0.min(x1), m.y0.min(y1), x1, y1));
        for &(x, y) in &reached {
            labels.set(x, y, id);
        }
        grown[id as usize - 1].extend_from_slice(&reached);
    }
    for (item, extra) in items.iter_mut().zip(grown) {
        if !extra.is_empty() {
            let pixels: Vec<(u32, u32)> = item.mask.pixels().chain(extra).collect();
            item.mask = InstanceMask::from_pixels(pixels.iter().copied());
        }
    }
}

/// The pixels of `free` (inside the box `(x0, y0, x1, y1)`) 8-connected through `free` to a
/// pixel labelled `id`: what nucleus `id` can take and stay in one piece.
fn connected_to(
    free: &[(u32, u32)],
    id: u32,
    labels: &LabelMap,
    (x0, y0, x1, y1): (u32, u32, u32, u32),
) -> Vec<(u32, u32)> {
    let (w, h) = (labels.width() as i64, labels.height() as i64);
    let bw = (x1 - x0) as usize;
    let at = |x: u32, y: u32| (y - y0) as usize * bw + (x - x0) as usize;
    // 0: not free; 1: free; 2: reached.
    let mut state = vec![0u8; bw * (y1 - y0) as usize];
    for &(x, y) in free {
        state[at(x, y)] = 1;
    }
    let neighbours = |x: u32, y: u32| {
        (-1i64..=1)
            .flat_map(move |dy| (-1i64..=1).map(move |dx| (x as i64 + dx, y as i64 + dy)))
            .filter(move |&(nx, ny)| nx >= 0 && ny >= 0 && nx < w && ny < h)
            .map(|(nx, ny)| (nx as u32, ny as u32))
    };
    let mut stack: Vec<(u32, u32)> = Vec::new();
    for &(x, y) in free {
        if neighbours(x, y).any(|(nx, ny)| labels.get(nx, ny) == id) {
            state[at(x, y)] = 2;
            stack.push((x, y));
        }
    }
    while let Some((x, y)) = stack.pop() {
        for (nx, ny) in neighbours(x, y) {
            if (x0..x1).contains(&nx) && (y0..y1).contains(&ny) && state[at(nx, ny)] == 1 {
                state[at(nx, ny)] = 2;
                stack.push((nx, ny));
            }
        }
    }
    free.iter()
        .copied()
        .filter(|&(x, y)| state[at(x, y)] == 2)
        .collect()
}

/// One nucleus of a label map: its id there, its pixels and its detector score.
#[derive(Debug, Clone, PartialEq)]
pub struct Nucleus {
    /// Its id in [`Nuclei::labels`] (`1..=N` for nuclei from [`Instances`]).
    pub id: u32,
    /// Its pixels in the label map, cropped to their tight box. Where instances overlap,
    /// only the pixels the label map gives this nucleus.
    pub mask: InstanceMask,
    /// Detector confidence (1 for nuclei read from a label map).
    pub score: f32,
    /// Class id (1 = nucleus).
    pub class_id: u32,
}

/// The nuclei of one image as a label map and a list, in increasing id order.
#[derive(Debug, Clone, PartialEq)]
pub struct Nuclei {
    /// The instance label map (`0` = background).
    pub labels: LabelMap,
    /// One entry per id present in `labels`, ascending by id.
    pub items: Vec<Nucleus>,
}

impl Nuclei {
    /// The nuclei of a segmenter's output, numbered as [`Instances::to_label_map`] numbers
    /// them: ids `1..=N` by decreasing score (ties keep list order), higher scores win
    /// overlapping pixels, instances left without a pixel are dropped; `labels` equals
    /// `instances.to_label_map()`. Mask pixels outside the image are ignored.
    ///
    /// Works inside each instance's box (plus one pass over the image to renumber).
    pub fn from_instances(instances: &Instances) -> Self {
        Self::from_instances_with(instances, &OverlapConfig::new())
    }

    /// [`from_instances`](Self::from_instances) with the clean-up rules of `rule`: in
    /// decreasing score order, each instance takes the pixels of its mask that no
    /// higher-scored nucleus holds; it is dropped when that is less than
    /// `rule.min_kept_fraction` of its mask (mask-level NMS: a duplicate or a sliver left
    /// by a better detection), then reduced to its largest connected piece when
    /// `rule.largest_component`, and dropped when fewer than `rule.min_area` pixels
    /// remain. Pixels a nucleus does not keep stay free for lower-scored ones. Ids are
    /// `1..=N` in score order. With `rule.absorb_share`, a last pass in score order gives
    /// each dropped instance's still free pixels that connect to the nucleus holding the
    /// most of its mask to that nucleus (when it holds at least the share).
    pub fn from_instances_with(instances: &Instances, rule: &OverlapConfig) -> Self {
        let (w, h) = (instances.width, instances.height);
        let mut labels = LabelMap::new(w, h);
        let mut items = Vec::new();
        let mut pixels = Vec::new();
        let mut dropped = Vec::new();
        let wholes = rule
            .parts_cover
            .map(|cover| whole_yields_to_parts(instances, cover));
        for k in instances.score_order() {
            let inst = &instances.items[k];
            if wholes.as_ref().is_some_and(|w| w[k]) {
                dropped.push(k);
                continue;
            }
            let m = &inst.mask;
            let (x1, y1) = clipped_end(m, w, h);
            pixels.clear();
            let mut area = 0u64;
            for y in m.y0.min(y1)..y1 {
                for x in m.x0.min(x1)..x1 {
                    if m.contains(x, y) {
                        area += 1;
                        if labels.get(x, y) == 0 {
                            pixels.push((x, y));
                        }
                    }
                }
            }
            if pixels.is_empty()
                || (pixels.len() as f64) < f64::from(rule.min_kept_fraction) * area as f64
            {
                dropped.push(k);
                continue;
            }
            if rule.largest_component {
                keep_largest_component(&mut pixels);
            }
            if pixels.len() < rule.min_area as usize {
                dropped.push(k);
                continue;
            }
            let id = items.len() as u32 + 1;
            for &(x, y) in &pixels {
                labels.set(x, y, id);
            }
            items.push(Nucleus {
                id,
                mask: InstanceMask::from_pixels(pixels.iter().copied()),
                score: inst.score,
                class_id: inst.class_id,
            });
        }
        if let Some(share) = rule.absorb_share {
            absorb_dropped(instances, &dropped, share, &mut labels, &mut items);
        }
        Nuclei { labels, items }
    }

    /// The nuclei of a label map (e.g. ground truth), keeping its ids; score 1, class 1.
    /// One pass over the map to find each id's box, then work inside the boxes.
    pub fn from_label_map(labels: LabelMap) -> Self {
        let boxes = id_boxes(&labels);
        let items = boxes
            .into_iter()
            .map(|(id, [x0, y0, x1, y1])| {
                let (bw, bh) = (x1 - x0, y1 - y0);
                let mut data = vec![false; bw as usize * bh as usize];
                for y in y0..y1 {
                    for x in x0..x1 {
                        data[((y - y0) * bw + (x - x0)) as usize] = labels.get(x, y) == id;
                    }
                }
                Nucleus {
                    id,
                    mask: InstanceMask {
                        x0,
                        y0,
                        width: bw,
                        height: bh,
                        data,
                    },
                    score: 1.0,
                    class_id: 1,
                }
            })
            .collect();
        Nuclei { labels, items }
    }

    /// Number of nuclei.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The end `(x1, y1)` (exclusive) of a mask's box, clipped to a `w × h` image.
pub(crate) fn clipped_end(m: &InstanceMask, w: u32, h: u32) -> (u32, u32) {
    (
        m.x0.saturating_add(m.width).min(w),
        m.y0.saturating_add(m.height).min(h),
    )
}

/// Each id of a label map with its box `[x0, y0, x1, y1]` (exclusive ends), ascending by
/// id, in one pass over the map.
fn id_boxes(labels: &LabelMap) -> Vec<(u32, [u32; 4])> {
    let w = labels.width() as usize;
    let mut boxes: std::collections::HashMap<u32, [u32; 4]> = Default::default();
    // Runs of equal ids are common (rows through a nucleus): one lookup per run.
    for (y, row) in labels.as_slice().chunks(w.max(1)).enumerate() {
        let y = y as u32;
        let mut x = 0;
        while x < row.len() {
            let id = row[x];
            let start = x;
            while x < row.len() && row[x] == id {
                x += 1;
            }
            if id != 0 {
                let b = boxes.entry(id).or_insert([u32::MAX, u32::MAX, 0, 0]);
                b[0] = b[0].min(start as u32);
                b[1] = b[1].min(y);
                b[2] = b[2].max(x as u32);
                b[3] = b[3].max(y + 1);
            }
        }
    }
    let mut out: Vec<(u32, [u32; 4])> = boxes.into_iter().collect();
    out.sort_unstable_by_key(|&(id, _)| id);
    out
}

/// Anything that turns an H&E image into nuclei: Mask R-CNN, the classical baseline, an
/// ensemble of them. Test-time augmentation, tiling and the pipeline take any
/// `InstanceSegmenter`.
pub trait InstanceSegmenter {
    /// Segments one image.
    fn segment_instances(&self, image: &RgbImage) -> crate::Result<Instances>;

    /// Segments several images (e.g. the tiles of a large image). The default runs them one
    /// by one; a model on a GPU overrides it to batch them.
    fn segment_batch(&self, images: &[RgbImage]) -> crate::Result<Vec<Instances>> {
        images.iter().map(|i| self.segment_instances(i)).collect()
    }

    /// Segments several images, keeping only the instances scored at least `min_score`.
    /// This is what tiling and the pipeline ask for, so that a segmenter able to skip the
    /// work on low scores does (Mask R-CNN runs its mask head only on the detections kept);
    /// the default filters [`segment_batch`](Self::segment_batch)'s result.
    fn segment_batch_above(
        &self,
        images: &[RgbImage],
        min_score: f32,
    ) -> crate::Result<Vec<Instances>> {
        Ok(keep_above(self.segment_batch(images)?, min_score))
    }
}

/// Each image's instances scored at least `min_score` (the filter of
/// [`InstanceSegmenter::segment_batch_above`]'s default).
pub(crate) fn keep_above(mut found: Vec<Instances>, min_score: f32) -> Vec<Instances> {
    for instances in &mut found {
        instances.items.retain(|i| i.score >= min_score);
    }
    found
}

/// A borrowed segmenter is a segmenter, so wrappers can borrow a model:
/// `TtaEnsemble::new(&model)`.
impl<S: InstanceSegmenter + ?Sized> InstanceSegmenter for &S {
    fn segment_instances(&self, image: &RgbImage) -> crate::Result<Instances> {
        (**self).segment_instances(image)
    }

    fn segment_batch(&self, images: &[RgbImage]) -> crate::Result<Vec<Instances>> {
        (**self).segment_batch(images)
    }

    fn segment_batch_above(
        &self,
        images: &[RgbImage],
        min_score: f32,
    ) -> crate::Result<Vec<Instances>> {
        (**self).segment_batch_above(images, min_score)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_geometry() {
        let a = InstanceMask::from_pixels([(2, 3), (3, 3), (3, 4)]);
        assert_eq!((a.x0, a.y0, a.width, a.height), (2, 3, 2, 2));
        assert_eq!(a.area(), 3);
        assert!(a.contains(3, 4) && !a.contains(2, 4) && !a.contains(0, 0));
        let b = InstanceMask::from_pixels([(3, 3), (3, 4), (4, 4)]);
        assert_eq!(a.intersection(&b), 2);
        assert!((a.iou(&b) - 0.5).abs() < 1e-12);
        assert_eq!(a.tight_bbox(), Some([2, 3, 4, 5]));
        assert_eq!(InstanceMask::from_pixels(std::iter::empty()).area(), 0);
    }

    #[test]
    fn label_map_round_trip_and_score_order() {
        let labels = LabelMap::from_vec(4, 2, vec![0, 7, 7, 0, 3, 3, 0, 9]).unwrap();
        let inst = Instances::from_label_map(&labels);
        assert_eq!(inst.len(), 3);
        assert_eq!(inst.to_label_map().count(), 3);
        let mut overlapping = Instances::new(3, 1);
        let m = |px: &[(u32, u32)]| InstanceMask::from_pixels(px.to_vec());
        overlapping.items.push(Instance {
            score: 0.5,
            ..Instance::from_mask(m(&[(0, 0), (1, 0)]))
        });
        overlapping.items.push(Instance {
            score: 0.9,
            ..Instance::from_mask(m(&[(1, 0), (2, 0)]))
        });
        assert_eq!(overlapping.to_label_map().as_slice(), &[2, 1, 1]);
    }

    #[test]
    fn resampling_scales_masks_and_boxes_and_drops_what_vanishes() {
        let mut inst = Instances::new(16, 12);
        let square = (4..8).flat_map(|y| (4..8).map(move |x| (x, y)));
        inst.items.push(Instance {
            score: 0.7,
            ..Instance::from_mask(InstanceMask::from_pixels(square))
        });
        inst.items
            .push(Instance::from_mask(InstanceMask::from_pixels([(13, 2)])));
        let up = inst.resampled(32, 24);
        assert_eq!((up.width, up.height, up.len()), (32, 24, 2));
        let big = &up.items[0];
        assert_eq!(big.mask.tight_bbox(), Some([8, 8, 16, 16]));
        assert_eq!(
            (big.area(), big.score, big.bbox),
            (64, 0.7, [8.0, 8.0, 16.0, 16.0])
        );
        assert_eq!(up.items[1].area(), 4);
        // Back to the first size: exactly the input.
        assert_eq!(up.resampled(16, 12), inst);
        // Halved, the one-pixel nucleus falls between output pixel centres and is dropped.
        let down = inst.resampled(8, 6);
        assert_eq!(down.len(), 1);
        assert_eq!(down.items[0].mask.tight_bbox(), Some([2, 2, 4, 4]));
    }

    /// Two touching nuclei found one by one (scores 0.8 and 0.75) and as one detection
    /// scoring higher (0.9), and a lone nucleus.
    fn whole_and_parts() -> Instances {
        let rect = |x0: u32, x1: u32, y0: u32, y1: u32| {
            InstanceMask::from_pixels((y0..y1).flat_map(move |y| (x0..x1).map(move |x| (x, y))))
        };
        let mut inst = Instances::new(30, 10);
        for (mask, score) in [
            (rect(0, 20, 0, 8), 0.9),   // the pair: 160 px
            (rect(0, 10, 0, 8), 0.8),   // left nucleus: 80 px, all inside
            (rect(11, 20, 0, 8), 0.75), // right nucleus: 72 px, all inside
            (rect(22, 28, 0, 6), 0.95), // lone nucleus
        ] {
            inst.items.push(Instance {
                score,
                ..Instance::from_mask(mask)
            });
        }
        inst
    }

    #[test]
    fn a_whole_yields_to_parts_that_cover_it() {
        let inst = whole_and_parts();
        // The parts cover 152 of the pair's 160 px (0.95).
        assert_eq!(
            whole_yields_to_parts(&inst, 0.9),
            vec![true, false, false, false]
        );
        assert_eq!(whole_yields_to_parts(&inst, 0.96), vec![false; 4]);
        // By score the pair wins and its parts are dropped as duplicates.
        let by_score = Nuclei::from_instances_with(&inst, &OverlapConfig::cleanup());
        assert_eq!(by_score.items.len(), 2);
        assert_eq!(by_score.items[1].mask.area(), 160);
        // Parts over wholes: the two nuclei and the lone one, nothing merged.
        let rule = OverlapConfig::cleanup().with_parts_cover(Some(0.9));
        assert!(!rule.is_plain() && rule.problem().is_none());
        let parts = Nuclei::from_instances_with(&inst, &rule);
        let mut areas: Vec<u64> = parts.items.iter().map(|n| n.mask.area()).collect();
        areas.sort_unstable();
        // The left part takes the free column between them (absorption, share 0.2).
        assert_eq!(areas, vec![36, 72, 88]);
        assert!(OverlapConfig::new()
            .with_parts_cover(Some(1.5))
            .problem()
            .is_some_and(|m| m.contains("parts_cover")));
    }

    #[test]
    fn one_part_or_overlapping_parts_do_not_split_a_whole() {
        let mut inst = whole_and_parts();
        // One part only.
        let right = inst.items.remove(2);
        assert_eq!(whole_yields_to_parts(&inst, 0.3), vec![false; 3]);
        // A second "part" that is mostly the first one again: not a second nucleus.
        let mut again = inst.items[1].clone();
        again.mask = InstanceMask::from_pixels((0..8).flat_map(|y| (1..11).map(move |x| (x, y))));
        again.score = 0.7;
        inst.items.push(again);
        assert_eq!(whole_yields_to_parts(&inst, 0.3), vec![false; 4]);
        // A part larger than 0.8 of the whole is a duplicate, not a part.
        inst.items.truncate(3);
        let mut big = right;
        big.mask = InstanceMask::from_pixels((0..8).flat_map(|y| (3..20).map(move |x| (x, y))));
        inst.items.push(big);
        assert_eq!(whole_yields_to_parts(&inst, 0.3), vec![false; 4]);
    }

    /// A 10×4 image: a high-scored bar over columns 2..8 of rows 0..4, a duplicate of it
    /// shifted by one column, and a low-scored instance that the bar cuts in two.
    fn overlapping_scene() -> Instances {
        let rect = |x0: u32, x1: u32, y0: u32, y1: u32| {
            InstanceMask::from_pixels((y0..y1).flat_map(move |y| (x0..x1).map(move |x| (x, y))))
        };
        let mut inst = Instances::new(10, 4);
        let mut push = |mask: InstanceMask, score: f32| {
            inst.items.push(Instance {
                score,
                ..Instance::from_mask(mask)
            })
        };
        push(rect(2, 8, 0, 4), 0.9); // 24 px
        push(rect(3, 9, 0, 4), 0.8); // keeps column 8 only: 4 of 24 px
        push(rect(0, 10, 1, 2), 0.7); // a row across, cut by the bar
        inst
    }

    #[test]
    fn plain_rule_paints_by_score() {
        let inst = overlapping_scene();
        let plain = Nuclei::from_instances(&inst);
        assert_eq!(plain.labels, inst.to_label_map());
        assert_eq!(plain.items.len(), 3);
        assert!(OverlapConfig::new().is_plain());
        assert!(OverlapConfig::cleanup().problem().is_none());
        let bad = OverlapConfig::new().with_min_kept_fraction(1.5).problem();
        assert!(bad.is_some_and(|m| m.contains("1.5")));
    }

    #[test]
    fn mask_nms_drops_slivers_and_frees_their_pixels() {
        let inst = overlapping_scene();
        // The duplicate keeps 4 / 24 < 0.5 and is dropped; its column 8 becomes free, so
        // the row (keeping columns 0, 1, 8, 9: 4 of 10 ≥ 0.3) takes it.
        let rule = OverlapConfig::new().with_min_kept_fraction(0.3);
        let n = Nuclei::from_instances_with(&inst, &rule);
        assert_eq!(n.items.len(), 2);
        assert_eq!(n.items[1].score, 0.7);
        assert_eq!(n.items[1].mask.area(), 4);
        assert_eq!(n.labels.get(8, 1), 2);
        assert_eq!(n.labels.get(8, 0), 0);
        // The row is in two pieces (columns 0–1 and 8–9): the largest-piece rule keeps the
        // first of equal size.
        let rule = rule.with_largest_component(true);
        let n = Nuclei::from_instances_with(&inst, &rule);
        assert_eq!(n.items[1].mask.area(), 2);
        assert_eq!((n.labels.get(0, 1), n.labels.get(9, 1)), (2, 0));
        // A minimum area drops what is left of it.
        let n = Nuclei::from_instances_with(&inst, &rule.with_min_area(3));
        assert_eq!(n.items.len(), 1);
        assert_eq!(n.labels.as_slice().iter().filter(|&&v| v != 0).count(), 24);
    }

    #[test]
    fn dropped_instances_give_their_free_pixels_to_the_nucleus_holding_them() {
        let inst = overlapping_scene();
        let rule = OverlapConfig::new()
            .with_min_kept_fraction(0.3)
            .with_largest_component(true)
            .with_min_area(3);
        let count = |n: &Nuclei, id| n.labels.as_slice().iter().filter(|&&v| v == id).count();
        // Both lower-scored instances are dropped. The duplicate (the bar holds 20 of its 24
        // px) gives it column 8; then the row (the bar now holds 7 of its 10 px) gives it
        // columns 0, 1 and 9 of row 1.
        let n = Nuclei::from_instances_with(&inst, &rule.clone().with_absorb_share(Some(0.2)));
        assert_eq!(n.items.len(), 1);
        assert_eq!((count(&n, 1), n.items[0].mask.area()), (31, 31));
        assert_eq!(
            (n.labels.get(8, 3), n.labels.get(0, 1), n.labels.get(0, 0)),
            (1, 1, 0)
        );
        // At a share of 0.8 the row (0.7) keeps its pixels free.
        let n = Nuclei::from_instances_with(&inst, &rule.clone().with_absorb_share(Some(0.8)));
        assert_eq!((count(&n, 1), n.items[0].mask.area()), (28, 28));
        assert_eq!((n.labels.get(8, 3), n.labels.get(0, 1)), (1, 0));
        // Off, as before.
        assert_eq!(count(&Nuclei::from_instances_with(&inst, &rule), 1), 24);
        assert!(!OverlapConfig::new().with_absorb_share(Some(0.0)).is_plain());
        let bad = OverlapConfig::new().with_absorb_share(Some(-0.1)).problem();
        assert!(bad.is_some_and(|m| m.contains("absorb_share")));
    }

    #[test]
    fn absorbed_pixels_must_connect_to_their_nucleus_and_the_share_is_inclusive() {
        let rect = |x0: u32, x1: u32, y0: u32, y1: u32| {
            InstanceMask::from_pixels((y0..y1).flat_map(move |y| (x0..x1).map(move |x| (x, y))))
        };
        let scene = |masks: &[(InstanceMask, f32)]| {
            let mut inst = Instances::new(10, 3);
            for (m, score) in masks {
                inst.items.push(Instance {
                    score: *score,
                    ..Instance::from_mask(m.clone())
                });
            }
            inst
        };
        let rule = OverlapConfig::cleanup().with_min_area(0);
        // A row (10 px) of which one nucleus holds exactly 2 px (20 %): the rest of the
        // row, on both sides, connects to it.
        let one = scene(&[(rect(4, 6, 0, 3), 0.9), (rect(0, 10, 1, 2), 0.7)]);
        let n = Nuclei::from_instances_with(&one, &rule);
        assert_eq!((n.items.len(), n.items[0].mask.area()), (1, 14));
        let n = Nuclei::from_instances_with(&one, &rule.clone().with_absorb_share(Some(0.21)));
        assert_eq!(n.items[0].mask.area(), 6);
        // Two nuclei hold 2 px each of a row reaching past the second: the tie goes to the
        // first, which the free part does not touch, so it stays free.
        let two = scene(&[
            (rect(2, 4, 0, 3), 0.9),
            (rect(4, 6, 0, 3), 0.8),
            (rect(2, 10, 1, 2), 0.7),
        ]);
        let n = Nuclei::from_instances_with(&two, &rule);
        assert_eq!(n.items.len(), 2);
        assert_eq!((n.items[0].mask.area(), n.items[1].mask.area()), (6, 6));
        assert_eq!(n.labels.get(6, 1), 0);
    }

    #[test]
    fn largest_piece_is_eight_connected() {
        let mut px = vec![(0, 0), (1, 1), (2, 2), (5, 0), (6, 0)];
        keep_largest_component(&mut px);
        assert_eq!(px, vec![(0, 0), (1, 1), (2, 2)]);
    }
}
