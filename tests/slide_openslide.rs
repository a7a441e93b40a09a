//! The OpenSlide reader (`--features openslide`, needs libopenslide) against the pure-Rust
//! one, on the test slides nucseg writes: OpenSlide recognizes the SVS as Aperio and the
//! pyramid as a generic tiled TIFF, with the same levels, pixel size and pixels.
#![cfg(feature = "openslide")]

mod common;

use nucseg::{
    data::RgbImage,
    slide::{
        open_slide, write_pyramid, OpenSlideReader, PyramidOptions, SlideReader, TiffLayout,
        TiffSlide,
    },
};

fn scene() -> RgbImage {
    RgbImage::from_fn(900, 700, |x, y| {
        let d = ((x as i32 - 450).pow(2) + (y as i32 - 350).pow(2)) as f32;
        image::Rgb([
            (180.0 + 60.0 * (x as f32 / 70.0).sin()) as u8,
            (90.0 + 50.0 * (y as f32 / 50.0).cos()) as u8,
            (200.0 - (d / 3000.0).min(150.0)) as u8,
        ])
    })
}

fn mean_abs(a: &RgbImage, b: &RgbImage) -> f64 {
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&p, &q)| (p as f64 - q as f64).abs())
        .sum::<f64>()
        / a.as_raw().len() as f64
}

#[test]
fn openslide_reads_nucsegs_svs_and_pyramid_as_the_rust_reader_does() {
    let dir = common::tmp_dir("openslide");
    let image = scene();
    for (name, options, tolerance) in [
        (
            "a.svs",
            PyramidOptions {
                layout: TiffLayout::AperioSvs {
                    quality: 90,
                    app_mag: 40,
                },
                tile_size: 240,
                mpp: Some(0.2525),
                description: None,
            },
            1.0,
        ),
        ("p.tif", PyramidOptions::pyramidal(Some(0.25)), 0.0),
    ] {
        let path = dir.join(name);
        write_pyramid(&path, &image, &options).unwrap();
        let ours = TiffSlide::open(&path).unwrap();
        let theirs = OpenSlideReader::open(&path).unwrap();
        let expected_vendor = if name.ends_with("svs") {
            "aperio"
        } else {
            "generic-tiff"
        };
        assert_eq!(theirs.vendor(), expected_vendor);
        let dims = |s: &dyn SlideReader| -> Vec<(u32, u32)> {
            s.levels().iter().map(|l| (l.width, l.height)).collect()
        };
        assert_eq!(dims(&theirs), dims(&ours), "{name}");
        if name.ends_with("svs") {
            assert!((theirs.mpp().unwrap() - 0.2525).abs() < 1e-9);
        }
        for level in 0..ours.levels().len() {
            let l = &ours.levels()[level];
            let (w, h) = (l.width.min(400), l.height.min(300));
            let a = ours.read_region(level, 10, 20, w, h).unwrap();
            let b = theirs.read_region(level, 10, 20, w, h).unwrap();
            let diff = mean_abs(&a, &b);
            assert!(
                diff <= tolerance,
                "{name} level {level}: mean abs difference {diff}"
            );
        }
    }
    // Aperio's "JPEG/RGB" tiles: Photometric RGB over JPEG data. libtiff (under OpenSlide)
    // takes the components as stored, without YCbCr conversion, and so does nucseg.
    let svs = std::fs::read(dir.join("a.svs")).unwrap();
    let ycbcr = [0x06, 0x01, 0x03, 0x00, 1, 0, 0, 0, 6, 0, 0, 0];
    let mut rgb = svs.clone();
    let mut patched = 0;
    for at in 0..rgb.len() - ycbcr.len() {
        if rgb[at..at + ycbcr.len()] == ycbcr {
            rgb[at + 8] = 2;
            patched += 1;
        }
    }
    assert_eq!(
        patched, 2,
        "one Photometric entry per JPEG level (900 and 225 px wide)"
    );
    let path = dir.join("rgb.svs");
    std::fs::write(&path, &rgb).unwrap();
    let ours = TiffSlide::open(&path).unwrap();
    let theirs = OpenSlideReader::open(&path).unwrap();
    let a = ours.read_region(0, 0, 0, 400, 300).unwrap();
    let b = theirs.read_region(0, 0, 0, 400, 300).unwrap();
    assert!(
        mean_abs(&a, &b) <= 1.0,
        "mean abs difference {}",
        mean_abs(&a, &b)
    );
    // …which is not the image's colours (the components are Y, Cb, Cr).
    let ycbcr_read = TiffSlide::open(dir.join("a.svs"))
        .unwrap()
        .read_region(0, 0, 0, 400, 300)
        .unwrap();
    assert!(mean_abs(&a, &ycbcr_read) > 10.0);

    // A file the TIFF reader refuses (JPEG 2000 is not written here, so: not a TIFF at
    // all) still gets the TIFF reader's error from open_slide when OpenSlide refuses too.
    let junk = dir.join("junk.svs");
    std::fs::write(&junk, b"not a slide").unwrap();
    let e = open_slide(&junk).err().unwrap().to_string();
    assert!(
        e.contains("junk.svs") && e.contains("not a readable TIFF"),
        "{e}"
    );
}
