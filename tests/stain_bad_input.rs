//! Images without tissue, flat images and unfitted normalizers: clear errors or a documented
//! pass-through, never a panic or NaN, for all three normalizers.

mod common;

use image::{imageops, RgbImage};
use nucseg::{
    backend::Device,
    data::read_rgb,
    stain::{
        DcgmmConfig, DcgmmNormalizer, Macenko, NormalizerKind, Reinhard, StainError,
        StainNormalizer, UNetConfig,
    },
};

fn normalizers() -> Vec<Box<dyn StainNormalizer>> {
    let device = Device::default();
    device.seed(0);
    // An untrained small DCGMM: the checks here are about inputs, not about learning.
    let model = DcgmmConfig::new()
        .with_unet(UNetConfig::new().with_depth(2).with_base_width(4))
        .init(&device)
        .unwrap();
    vec![
        Box::new(Reinhard::default()),
        Box::new(Macenko::default()),
        Box::new(DcgmmNormalizer::new(model, &device)),
    ]
}

fn tissue() -> RgbImage {
    let img = read_rgb(common::monuseg().join("images/TCGA-A7-A13E-01Z-00-DX1.tif")).unwrap();
    imageops::crop_imm(&img, 300, 300, 64, 64).to_image()
}

#[test]
fn white_template_is_refused_and_white_images_pass_through() {
    let white = RgbImage::from_pixel(48, 40, image::Rgb([255, 255, 255]));
    // Near-white noise: a blank slide area, with a few dust specks below the tissue count.
    let mut speckled = RgbImage::from_fn(48, 40, |x, y| {
        image::Rgb([
            255 - ((x * 7 + y) % 3) as u8,
            254,
            255 - ((x + y * 5) % 4) as u8,
        ])
    });
    for i in 0..10 {
        speckled.put_pixel(i, i, image::Rgb([90, 40, 120]));
    }
    let template = tissue();
    for mut n in normalizers() {
        let name = n.name();
        assert!(
            matches!(n.transform(&template), Err(StainError::NotFitted { .. })),
            "{name}"
        );
        let err = n.fit(&white).unwrap_err();
        assert!(
            matches!(err, StainError::NoTissue { tissue: 0, .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains("no tissue"), "{err}");
        n.fit(&template).unwrap();
        assert_eq!(n.transform(&white).unwrap(), white, "{name}");
        assert_eq!(n.transform(&speckled).unwrap(), speckled, "{name}");
        let empty = RgbImage::new(0, 5);
        assert!(
            matches!(n.transform(&empty), Err(StainError::EmptyImage { .. })),
            "{name}"
        );
    }
}

#[test]
fn flat_colour_images_do_not_produce_nan() {
    // A single colour (no variance, no second stain): Reinhard and DCGMM map it to a
    // finite colour, Macenko says it cannot separate two stains.
    let flat = RgbImage::from_pixel(32, 32, image::Rgb([150, 80, 170]));
    let template = tissue();
    for mut n in normalizers() {
        n.fit(&template).unwrap();
        match n.transform(&flat) {
            Ok(out) => {
                assert_eq!(out.dimensions(), flat.dimensions());
                // One input colour, one output colour: no NaN-driven noise.
                let first = *out.get_pixel(0, 0);
                assert!(out.pixels().all(|p| *p == first), "{}", n.name());
            }
            Err(e) => {
                assert_eq!(n.name(), "macenko");
                assert!(matches!(e, StainError::Degenerate { .. }), "{e}");
            }
        }
    }
}

#[test]
fn dcgmm_statistics_of_a_white_image_are_finite() {
    let device = Device::default();
    let model = DcgmmConfig::new()
        .with_unet(UNetConfig::new().with_depth(2).with_base_width(4))
        .init(&device)
        .unwrap();
    let white = RgbImage::from_pixel(20, 20, image::Rgb([255, 255, 255]));
    let m = model.mixture_of_image(&white).unwrap();
    assert!(m.weights.iter().all(|v| v.is_finite()));
    assert!(m.means.iter().flatten().all(|v| v.is_finite()));
    assert!(m
        .covariances
        .iter()
        .flatten()
        .flatten()
        .all(|v| v.is_finite()));
    let x = nucseg::stain::hsd::hsd_tensor(&[white], &device);
    let nll: f32 = model.forward(x).nll.into_scalar();
    assert!(nll.is_finite(), "{nll}");
}

#[test]
fn normalizer_kinds_name_their_normalizers() {
    let names: Vec<&str> = normalizers().iter().map(|n| n.name()).collect();
    for name in names {
        assert_eq!(name.parse::<NormalizerKind>().unwrap().name(), name);
    }
    assert!("staintools".parse::<NormalizerKind>().is_err());
}
