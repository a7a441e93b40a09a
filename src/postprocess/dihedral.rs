//! The eight symmetries of a rectangle's pixel grid (the dihedral group D4): rotations by
//! multiples of 90° and the four mirrors. They permute pixels exactly, so a transform and its
//! inverse map images, masks and boxes back without any resampling.
//!
//! Conventions: `(x, y)` is (column, row), `y` grows downwards, and a `w × h` input becomes a
//! `w × h` output, or `h × w` for the four transforms that swap the axes
//! ([`Dihedral::swaps_axes`]). Pixel `(x, y)` of the input goes to:
//!
//! | transform | output pixel | output size |
//! |---|---|---|
//! | `Identity` | `(x, y)` | `w × h` |
//! | `Rot90` (clockwise) | `(h-1-y, x)` | `h × w` |
//! | `Rot180` | `(w-1-x, h-1-y)` | `w × h` |
//! | `Rot270` (clockwise, = 90° anticlockwise) | `(y, w-1-x)` | `h × w` |
//! | `FlipH` (mirror left–right) | `(w-1-x, y)` | `w × h` |
//! | `FlipV` (mirror top–bottom) | `(x, h-1-y)` | `w × h` |
//! | `Transpose` (mirror on the main diagonal) | `(y, x)` | `h × w` |
//! | `AntiTranspose` (mirror on the anti-diagonal) | `(h-1-y, w-1-x)` | `h × w` |
//!
//! `Rot90` and `Rot270` agree with `image::imageops::rotate90` / `rotate270`. Continuous
//! coordinates (box corners) follow the same table with `w - x` for `w-1-x`.
//!
//! Note that flipping both horizontally and vertically is `Rot180`: the "H+V flip" of
//! Sec. 2.4 of Jung et al. (2019) is not a new view.

use image::RgbImage;

use crate::instances::{Instance, InstanceMask, Instances};

/// One of the eight pixel-exact symmetries of the image grid. See the module docs for the
/// exact pixel mapping of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dihedral {
    /// No change.
    Identity,
    /// Rotation by 90° clockwise.
    Rot90,
    /// Rotation by 180° (= horizontal flip followed by vertical flip).
    Rot180,
    /// Rotation by 270° clockwise (90° anticlockwise).
    Rot270,
    /// Mirror left–right.
    FlipH,
    /// Mirror top–bottom.
    FlipV,
    /// Mirror on the main diagonal: `(x, y) → (y, x)`.
    Transpose,
    /// Mirror on the anti-diagonal.
    AntiTranspose,
}

impl Dihedral {
    /// The whole group, identity first.
    pub const ALL: [Dihedral; 8] = [
        Dihedral::Identity,
        Dihedral::Rot90,
        Dihedral::Rot180,
        Dihedral::Rot270,
        Dihedral::FlipH,
        Dihedral::FlipV,
        Dihedral::Transpose,
        Dihedral::AntiTranspose,
    ];

    /// A short lower-case name (`"rot90"`, `"flip_h"`, ...), for messages and file names.
    pub fn name(self) -> &'static str {
        match self {
            Dihedral::Identity => "identity",
            Dihedral::Rot90 => "rot90",
            Dihedral::Rot180 => "rot180",
            Dihedral::Rot270 => "rot270",
            Dihedral::FlipH => "flip_h",
            Dihedral::FlipV => "flip_v",
            Dihedral::Transpose => "transpose",
            Dihedral::AntiTranspose => "anti_transpose",
        }
    }

    /// The transform that undoes this one: `t.inverse()` applied after `t` is the identity.
    pub fn inverse(self) -> Dihedral {
        match self {
            Dihedral::Rot90 => Dihedral::Rot270,
            Dihedral::Rot270 => Dihedral::Rot90,
            other => other,
        }
    }

    /// The single transform equal to applying `self` first and then `next`.
    pub fn then(self, next: Dihedral) -> Dihedral {
        // Where two probe pixels of a 3 × 2 frame land identifies a transform uniquely.
        let (w, h) = (3, 2);
        let (w1, h1) = self.output_size(w, h);
        let both = |(x, y)| {
            let (x1, y1) = self.map_pixel(x, y, w, h);
            next.map_pixel(x1, y1, w1, h1)
        };
        let target = [(0, 0), (1, 0)].map(both);
        Dihedral::ALL
            .into_iter()
            .find(|t| [(0, 0), (1, 0)].map(|(x, y)| t.map_pixel(x, y, w, h)) == target)
            .expect("D4 is closed under composition")
    }

    /// Whether the output is `h × w` for a `w × h` input.
    pub fn swaps_axes(self) -> bool {
        matches!(
            self,
            Dihedral::Rot90 | Dihedral::Rot270 | Dihedral::Transpose | Dihedral::AntiTranspose
        )
    }

    /// Output size `(width, height)` for a `width × height` input.
    pub fn output_size(self, width: u32, height: u32) -> (u32, u32) {
        if self.swaps_axes() {
            (height, width)
        } else {
            (width, height)
        }
    }

    /// Where pixel `(x, y)` of a `width × height` input lands in the output.
    /// `x < width` and `y < height` are required.
    #[inline]
    pub fn map_pixel(self, x: u32, y: u32, width: u32, height: u32) -> (u32, u32) {
        let (xr, yr) = (width - 1 - x, height - 1 - y);
        match self {
            Dihedral::Identity => (x, y),
            Dihedral::Rot90 => (yr, x),
            Dihedral::Rot180 => (xr, yr),
            Dihedral::Rot270 => (y, xr),
            Dihedral::FlipH => (xr, y),
            Dihedral::FlipV => (x, yr),
            Dihedral::Transpose => (y, x),
            Dihedral::AntiTranspose => (yr, xr),
        }
    }

    /// Where the continuous point `(x, y)` (pixel `(i, j)` covers `[i, i+1) × [j, j+1)`) of a
    /// `width × height` input lands in the output.
    pub fn map_point(self, x: f32, y: f32, width: u32, height: u32) -> (f32, f32) {
        let (xr, yr) = (width as f32 - x, height as f32 - y);
        match self {
            Dihedral::Identity => (x, y),
            Dihedral::Rot90 => (yr, x),
            Dihedral::Rot180 => (xr, yr),
            Dihedral::Rot270 => (y, xr),
            Dihedral::FlipH => (xr, y),
            Dihedral::FlipV => (x, yr),
            Dihedral::Transpose => (y, x),
            Dihedral::AntiTranspose => (yr, xr),
        }
    }

    /// The output buffer index of input pixel `(x, y)` of a `width × height` input is
    /// `d00 + x·dx + y·dy`: returns `(d00, dx, dy)` (the map is affine, so inner loops step by
    /// `dx` without evaluating it per pixel).
    fn linear_index(self, width: u32, height: u32) -> (i64, i64, i64) {
        let (w, h) = (width as i64, height as i64);
        let w1 = if self.swaps_axes() { h } else { w };
        // `map_pixel` in signed arithmetic, valid for any (x, y).
        let index = |x: i64, y: i64| {
            let (xr, yr) = (w - 1 - x, h - 1 - y);
            let (x1, y1) = match self {
                Dihedral::Identity => (x, y),
                Dihedral::Rot90 => (yr, x),
                Dihedral::Rot180 => (xr, yr),
                Dihedral::Rot270 => (y, xr),
                Dihedral::FlipH => (xr, y),
                Dihedral::FlipV => (x, yr),
                Dihedral::Transpose => (y, x),
                Dihedral::AntiTranspose => (yr, xr),
            };
            y1 * w1 + x1
        };
        let d00 = index(0, 0);
        (d00, index(1, 0) - d00, index(0, 1) - d00)
    }

    /// The transformed image (a pixel permutation; no interpolation).
    ///
    /// # Shapes
    /// `w × h` in, [`output_size`](Self::output_size)`(w, h)` out.
    pub fn apply_image(self, image: &RgbImage) -> RgbImage {
        let (w, h) = image.dimensions();
        if self == Dihedral::Identity {
            return image.clone();
        }
        let (w1, h1) = self.output_size(w, h);
        if w == 0 || h == 0 {
            return RgbImage::new(w1, h1);
        }
        let src = image.as_raw();
        let mut dst = vec![0u8; src.len()];
        let (d00, dx, dy) = self.linear_index(w, h);
        // 64 × 64 blocks keep both the rows read and the columns written in cache.
        const BLOCK: usize = 64;
        let (w, h) = (w as usize, h as usize);
        for by in (0..h).step_by(BLOCK) {
            for bx in (0..w).step_by(BLOCK) {
                for y in by..(by + BLOCK).min(h) {
                    let mut d = d00 + y as i64 * dy + bx as i64 * dx;
                    let row = &src[3 * (y * w + bx)..3 * (y * w + (bx + BLOCK).min(w))];
                    for px in row.chunks_exact(3) {
                        let k = 3 * d as usize;
                        dst[k..k + 3].copy_from_slice(px);
                        d += dx;
                    }
                }
            }
        }
        RgbImage::from_raw(w1, h1, dst).expect("same number of pixels")
    }

    /// The transformed mask of a `width × height` image. Only the mask's own box is visited;
    /// the result is again cropped to its (transformed) box. The box must lie inside the
    /// image (masks returned by [`Instances`]' producers in nucseg do).
    pub fn apply_mask(self, mask: &InstanceMask, width: u32, height: u32) -> InstanceMask {
        if mask.width == 0 || mask.height == 0 {
            return InstanceMask::default();
        }
        let (bw, bh) = (mask.width, mask.height);
        let a = self.map_pixel(mask.x0, mask.y0, width, height);
        let b = self.map_pixel(mask.x0 + bw - 1, mask.y0 + bh - 1, width, height);
        let (x0, y0) = (a.0.min(b.0), a.1.min(b.1));
        let (w1, h1) = self.output_size(bw, bh);
        if self == Dihedral::Identity {
            return mask.clone();
        }
        // Within the box, the mapping is the same transform applied to a bw × bh image.
        let mut data = vec![false; mask.data.len()];
        let (d00, dx, dy) = self.linear_index(bw, bh);
        for (j, row) in mask.data.chunks_exact(bw as usize).enumerate() {
            let mut d = d00 + j as i64 * dy;
            for &bit in row {
                data[d as usize] = bit;
                d += dx;
            }
        }
        InstanceMask {
            x0,
            y0,
            width: w1,
            height: h1,
            data,
        }
    }

    /// The transformed detector box `[x1, y1, x2, y2]` of a `width × height` image.
    pub fn apply_box(self, b: [f32; 4], width: u32, height: u32) -> [f32; 4] {
        let p = self.map_point(b[0], b[1], width, height);
        let q = self.map_point(b[2], b[3], width, height);
        [p.0.min(q.0), p.1.min(q.1), p.0.max(q.0), p.1.max(q.1)]
    }

    /// The transformed instances: masks, boxes and the image size; scores and classes are
    /// kept. Masks must lie inside the image (see [`apply_mask`](Self::apply_mask)).
    pub fn apply_instances(self, instances: &Instances) -> Instances {
        let (w, h) = (instances.width, instances.height);
        let (w1, h1) = self.output_size(w, h);
        Instances {
            width: w1,
            height: h1,
            items: instances
                .items
                .iter()
                .map(|inst| Instance {
                    mask: self.apply_mask(&inst.mask, w, h),
                    bbox: self.apply_box(inst.bbox, w, h),
                    score: inst.score,
                    class_id: inst.class_id,
                })
                .collect(),
        }
    }
}

impl std::fmt::Display for Dihedral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotations_agree_with_the_image_crate() {
        let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8, y as u8, 7]));
        assert_eq!(
            Dihedral::Rot90.apply_image(&img),
            image::imageops::rotate90(&img)
        );
        assert_eq!(
            Dihedral::Rot180.apply_image(&img),
            image::imageops::rotate180(&img)
        );
        assert_eq!(
            Dihedral::Rot270.apply_image(&img),
            image::imageops::rotate270(&img)
        );
        assert_eq!(
            Dihedral::FlipH.apply_image(&img),
            image::imageops::flip_horizontal(&img)
        );
        assert_eq!(
            Dihedral::FlipV.apply_image(&img),
            image::imageops::flip_vertical(&img)
        );
    }

    #[test]
    fn group_table() {
        use Dihedral::*;
        assert_eq!(FlipH.then(FlipV), Rot180);
        assert_eq!(Rot90.then(Rot90), Rot180);
        assert_eq!(Rot90.then(Rot180), Rot270);
        assert_eq!(Transpose.then(FlipH), Rot90);
        // (x, y) → (h-1-y, x) → mirrored in the h-wide frame: (y, x).
        assert_eq!(Rot90.then(FlipH), Transpose);
        assert_eq!(FlipH.then(Rot90), AntiTranspose);
        for t in Dihedral::ALL {
            assert_eq!(t.then(t.inverse()), Identity, "{t}");
            assert_eq!(t.inverse().then(t), Identity, "{t}");
            assert_eq!(Identity.then(t), t);
        }
    }

    #[test]
    fn box_of_a_pixel_follows_the_pixel() {
        let (w, h) = (7, 4);
        for t in Dihedral::ALL {
            let (x1, y1) = t.map_pixel(2, 1, w, h);
            assert_eq!(
                t.apply_box([2.0, 1.0, 3.0, 2.0], w, h),
                [x1 as f32, y1 as f32, x1 as f32 + 1.0, y1 as f32 + 1.0],
                "{t}"
            );
        }
    }
}
