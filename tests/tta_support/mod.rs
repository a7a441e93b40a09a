//! Test segmenters and synthetic images for the TTA and tiling tests: dark disks on a white
//! background, and segmenters that find them exactly (threshold + connected components).
#![allow(dead_code)]

use std::cell::RefCell;

use nucseg::data::{connected_components, Connectivity, RgbImage};
use nucseg::postprocess::Dihedral;
use nucseg::{Instance, InstanceMask, InstanceSegmenter, Instances};

pub const BACKGROUND: [u8; 3] = [255, 255, 255];
pub const NUCLEUS: [u8; 3] = [60, 30, 110];
/// Orientation markers at original pixels (0, 0) and (1, 0); not dark, so never segmented.
pub const MARK_A: [u8; 3] = [255, 0, 0];
pub const MARK_B: [u8; 3] = [0, 255, 0];

/// A disk: pixel `(x, y)` is inside when its centre `(x + 0.5, y + 0.5)` lies within `r` of
/// `(cx, cy)` (half-integer centres give disks whose centroid is a pixel corner).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Disk {
    pub cx: f64,
    pub cy: f64,
    pub r: f64,
}

impl Disk {
    pub fn contains(&self, x: u32, y: u32) -> bool {
        let (dx, dy) = (x as f64 + 0.5 - self.cx, y as f64 + 0.5 - self.cy);
        dx * dx + dy * dy <= self.r * self.r
    }

    /// The disk's pixels inside a `w × h` image.
    pub fn mask(&self, w: u32, h: u32) -> InstanceMask {
        let x0 = (self.cx - self.r).floor().max(0.0) as u32;
        let y0 = (self.cy - self.r).floor().max(0.0) as u32;
        let x1 = ((self.cx + self.r).ceil() as u32 + 1).min(w);
        let y1 = ((self.cy + self.r).ceil() as u32 + 1).min(h);
        let px: Vec<(u32, u32)> = (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .filter(|&(x, y)| self.contains(x, y))
            .collect();
        InstanceMask::from_pixels(px)
    }
}

/// A white `w × h` image with dark disks.
pub fn disk_image(w: u32, h: u32, disks: &[Disk]) -> RgbImage {
    let mut img = RgbImage::from_pixel(w, h, image::Rgb(BACKGROUND));
    for d in disks {
        for (x, y) in d.mask(w, h).pixels() {
            img.put_pixel(x, y, image::Rgb(NUCLEUS));
        }
    }
    img
}

/// The two orientation markers, painted on (for [`ViewAware`]).
pub fn with_markers(mut img: RgbImage) -> RgbImage {
    img.put_pixel(0, 0, image::Rgb(MARK_A));
    img.put_pixel(1, 0, image::Rgb(MARK_B));
    img
}

fn is_dark(p: &image::Rgb<u8>) -> bool {
    p.0.iter().all(|&c| c < 128)
}

/// Dark pixels, 8-connected components, one instance each (score 1, tight box). Exact on
/// any crop and equivariant under every grid symmetry.
#[derive(Debug, Clone, Copy, Default)]
pub struct DarkSegmenter;

pub fn dark_components(img: &RgbImage) -> Instances {
    let (w, h) = img.dimensions();
    let mask: Vec<bool> = img.pixels().map(is_dark).collect();
    Instances::from_label_map(&connected_components(w, h, &mask, Connectivity::Eight))
}

impl InstanceSegmenter for DarkSegmenter {
    fn segment_instances(&self, image: &RgbImage) -> nucseg::Result<Instances> {
        Ok(dark_components(image))
    }
}

/// Which symmetry of the original turned it into `view` (read from the markers).
pub fn detect_view(view: &RgbImage) -> Dihedral {
    let find = |c: [u8; 3]| {
        view.enumerate_pixels()
            .find(|(_, _, p)| p.0 == c)
            .map(|(x, y, _)| (x, y))
            .expect("marker present")
    };
    let (a, b) = (find(MARK_A), find(MARK_B));
    let (w, h) = view.dimensions();
    Dihedral::ALL
        .into_iter()
        .find(|t| {
            let (w0, h0) = t.inverse().output_size(w, h);
            t.map_pixel(0, 0, w0, h0) == a && t.map_pixel(1, 0, w0, h0) == b
        })
        .expect("a dihedral view")
}

/// [`DarkSegmenter`] that misbehaves in chosen views: it drops the nucleus holding an
/// original-frame point in the views of `drop_in`, and invents a disk in those of `add_in`.
#[derive(Debug, Default)]
pub struct ViewAware {
    pub drop_in: Vec<Dihedral>,
    pub drop_at: (u32, u32),
    pub add_in: Vec<Dihedral>,
    pub added: Option<Disk>,
    /// Every view seen, in call order.
    pub seen: RefCell<Vec<Dihedral>>,
}

impl InstanceSegmenter for ViewAware {
    fn segment_instances(&self, image: &RgbImage) -> nucseg::Result<Instances> {
        let t = detect_view(image);
        self.seen.borrow_mut().push(t);
        let (w, h) = image.dimensions();
        let (w0, h0) = t.inverse().output_size(w, h);
        let mut found = dark_components(image);
        if self.drop_in.contains(&t) {
            let (x, y) = t.map_pixel(self.drop_at.0, self.drop_at.1, w0, h0);
            found.items.retain(|i| !i.mask.contains(x, y));
        }
        if let (true, Some(d)) = (self.add_in.contains(&t), self.added) {
            let m = t.apply_mask(&d.mask(w0, h0), w0, h0);
            found.items.push(Instance {
                score: 0.9,
                ..Instance::from_mask(m)
            });
        }
        Ok(found)
    }
}

/// Instances as sorted pixel lists, for order-free comparison.
pub fn canonical(inst: &Instances) -> Vec<Vec<(u32, u32)>> {
    let mut v: Vec<Vec<(u32, u32)>> = inst
        .items
        .iter()
        .map(|i| {
            let mut p: Vec<(u32, u32)> = i.mask.pixels().map(|(x, y)| (y, x)).collect();
            p.sort_unstable();
            p
        })
        .collect();
    v.sort();
    v
}

/// A small deterministic generator (SplitMix64).
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Adds `d` to `disks` unless it comes within `gap` px of one already there.
pub fn place(disks: &mut Vec<Disk>, d: Disk, gap: f64) -> bool {
    let free = disks
        .iter()
        .all(|e| ((e.cx - d.cx).powi(2) + (e.cy - d.cy).powi(2)).sqrt() > e.r + d.r + gap);
    if free {
        disks.push(d);
    }
    free
}
