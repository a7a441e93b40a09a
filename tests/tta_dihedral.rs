//! The eight grid symmetries: every transform followed by its inverse is the identity on
//! images, masks, boxes and instance lists (non-square sizes included), and masks move
//! exactly like the image pixels under them.

use nucseg::data::RgbImage;
use nucseg::postprocess::Dihedral;
use nucseg::{Instance, InstanceMask, Instances};
use proptest::prelude::*;

fn random_image(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut s = seed;
    RgbImage::from_fn(w, h, |_, _| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let v = (s >> 40) as u32;
        image::Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
    })
}

fn random_mask(w: u32, h: u32, seed: u64) -> InstanceMask {
    let mut s = seed | 1;
    let px: Vec<(u32, u32)> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s.is_multiple_of(3)
        })
        .collect();
    InstanceMask::from_pixels(px)
}

/// The mask painted into a `w × h` image (white on black).
fn render(mask: &InstanceMask, w: u32, h: u32) -> RgbImage {
    let mut img = RgbImage::new(w, h);
    for (x, y) in mask.pixels() {
        img.put_pixel(x, y, image::Rgb([255, 255, 255]));
    }
    img
}

#[test]
fn every_transform_round_trips_on_non_square_images() {
    for (w, h) in [(7, 4), (4, 7), (1, 5), (13, 1), (1, 1), (0, 0), (31, 17)] {
        let img = random_image(w, h, (w * 100 + h) as u64);
        for t in Dihedral::ALL {
            let out = t.apply_image(&img);
            assert_eq!(out.dimensions(), t.output_size(w, h), "{t} {w}x{h}");
            assert_eq!(t.inverse().apply_image(&out), img, "{t} {w}x{h}");
            if w != h && w > 1 && h > 1 && t != Dihedral::Identity {
                assert_ne!(out, img, "{t} must move pixels");
            }
        }
    }
}

#[test]
fn the_eight_views_are_distinct() {
    let img = random_image(6, 6, 42);
    let views: Vec<RgbImage> = Dihedral::ALL.iter().map(|t| t.apply_image(&img)).collect();
    for i in 0..8 {
        for j in 0..i {
            assert_ne!(
                views[i],
                views[j],
                "{} vs {}",
                Dihedral::ALL[i],
                Dihedral::ALL[j]
            );
        }
    }
    // The paper's H+V flip is the 180° rotation.
    let hv = Dihedral::FlipV.apply_image(&Dihedral::FlipH.apply_image(&img));
    assert_eq!(hv, Dihedral::Rot180.apply_image(&img));
}

#[test]
fn instances_round_trip_and_follow_the_image() {
    let (w, h) = (23, 11);
    let mut inst = Instances::new(w, h);
    for k in 0..5 {
        let full = random_mask(w, h, 7 + k);
        // Crop to a sub-box so that boxes are not the whole frame.
        let px: Vec<(u32, u32)> = full
            .pixels()
            .filter(|&(x, y)| x >= k as u32 * 3 && x < k as u32 * 3 + 6 && y >= k as u32 && y < 9)
            .collect();
        inst.items.push(Instance {
            score: 0.1 * k as f32,
            class_id: 1 + k as u32,
            ..Instance::from_mask(InstanceMask::from_pixels(px))
        });
    }
    for t in Dihedral::ALL {
        let out = t.apply_instances(&inst);
        assert_eq!((out.width, out.height), t.output_size(w, h));
        assert_eq!(t.inverse().apply_instances(&out), inst, "{t}");
        for (a, b) in inst.items.iter().zip(&out.items) {
            // Masks move exactly like the image pixels under them...
            let (w1, h1) = t.output_size(w, h);
            assert_eq!(
                t.apply_image(&render(&a.mask, w, h)),
                render(&b.mask, w1, h1)
            );
            // ...stay cropped to their tight box, and the detector box follows.
            assert_eq!(
                b.mask.tight_bbox().map(|r| r.map(|v| v as f32)),
                Some(b.bbox)
            );
            assert_eq!((b.score, b.class_id), (a.score, a.class_id));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn masks_and_boxes_round_trip(
        w in 1u32..40, h in 1u32..40, seed in any::<u64>(),
        bx in 0.0f32..1.0, by in 0.0f32..1.0, bw in 0.0f32..1.0, bh in 0.0f32..1.0,
    ) {
        let mask = random_mask(w, h, seed);
        let b = [bx * w as f32, by * h as f32, (bx + bw).min(1.0) * w as f32, (by + bh).min(1.0) * h as f32];
        for t in Dihedral::ALL {
            let (w1, h1) = t.output_size(w, h);
            let m1 = t.apply_mask(&mask, w, h);
            prop_assert_eq!(m1.area(), mask.area());
            prop_assert!(m1.width == 0 || (m1.x0 + m1.width <= w1 && m1.y0 + m1.height <= h1));
            prop_assert_eq!(t.inverse().apply_mask(&m1, w1, h1), mask.clone());
            let b1 = t.apply_box(b, w, h);
            let back = t.inverse().apply_box(b1, w1, h1);
            for k in 0..4 {
                prop_assert!((back[k] - b[k]).abs() < 1e-3, "{} {:?} {:?}", t, back, b);
            }
        }
    }
}
