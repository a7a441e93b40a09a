//! Reinhard and Macenko on real and synthetic H&E: a template normalized to itself is
//! (nearly) unchanged, Macenko recovers known stain vectors, and normalizing one real image
//! to another gives it the template's stains.

mod common;

use image::{imageops, RgbImage};
use nucseg::{
    colour::intensity,
    data::read_rgb,
    stain::{
        linalg::{dot3, normalize3},
        LabStats, Macenko, MacenkoConfig, MacenkoStains, Reinhard, StainNormalizer,
    },
};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn region(id: &str, x: u32, y: u32, size: u32) -> RgbImage {
    let img = read_rgb(common::monuseg().join("images").join(format!("{id}.tif"))).unwrap();
    imageops::crop_imm(&img, x, y, size, size).to_image()
}

/// Mean and maximum absolute difference over all samples.
fn diff(a: &RgbImage, b: &RgbImage) -> (f64, u8) {
    let d: Vec<u8> = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .collect();
    (
        d.iter().map(|&v| v as f64).sum::<f64>() / d.len() as f64,
        *d.iter().max().unwrap(),
    )
}

fn angle_deg(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    dot3(&normalize3(*a), &normalize3(*b))
        .clamp(-1.0, 1.0)
        .acos()
        .to_degrees()
}

#[test]
fn reinhard_template_to_itself_is_identity() {
    let t = region("TCGA-A7-A13E-01Z-00-DX1", 200, 200, 256);
    let mut r = Reinhard::default();
    r.fit(&t).unwrap();
    let (mean, max) = diff(&r.transform(&t).unwrap(), &t);
    // (x − μ)·σ/σ + μ = x up to float rounding; Lab → sRGB → 8 bit rounds back exactly.
    assert!(mean < 0.01 && max <= 1, "mean {mean}, max {max}");
}

#[test]
fn macenko_template_to_itself_is_near_identity() {
    let t = region("TCGA-A7-A13E-01Z-00-DX1", 200, 200, 256);
    let mut m = Macenko::default();
    m.fit(&t).unwrap();
    let (mean, max) = diff(&m.transform(&t).unwrap(), &t);
    eprintln!("Macenko self-normalization: mean |Δ| {mean:.3}, max {max}");
    // Only the projection onto the H–E plane changes a pixel (the OD residual orthogonal
    // to both stains is dropped). Observed: mean 2.7, max 29 (a few off-plane pixels).
    assert!(mean < 4.0, "mean {mean}, max {max}");
}

/// The reference haematoxylin and eosin vectors of Macenko et al.'s reference code (as in
/// torchstain's `HERef`), unit, OD space. (Ruifrok & Johnston's eosin, `[0.07, 0.99, 0.11]`,
/// would not do here: a pure-eosin pixel of it stays below `β = 0.15` in red and blue
/// unless its concentration exceeds 2, so Macenko's tissue mask drops it.)
fn known_stains() -> [[f64; 3]; 2] {
    [
        normalize3([0.5626, 0.7201, 0.4062]),
        normalize3([0.2159, 0.8012, 0.5581]),
    ]
}

/// A 64×64 image mixed from two stains: 30 % pure H, 30 % pure E, 30 % both,
/// concentrations uniform in [0.2, 1.5], and 10 % white background.
fn synthetic(stains: &[[f64; 3]; 2], seed: u64) -> RgbImage {
    let mut rng = StdRng::seed_from_u64(seed);
    RgbImage::from_fn(64, 64, |_, _| {
        let (h, e) = match rng.random_range(0..10) {
            0 => (0.0, 0.0),
            1..=3 => (rng.random_range(0.2..1.5), 0.0),
            4..=6 => (0.0, rng.random_range(0.2..1.5)),
            _ => (rng.random_range(0.2..1.5), rng.random_range(0.2..1.5)),
        };
        image::Rgb(std::array::from_fn(|c| {
            intensity((h * stains[0][c] + e * stains[1][c]) as f32)
        }))
    })
}

#[test]
fn macenko_recovers_known_stain_vectors() {
    let truth = known_stains();
    let est = MacenkoStains::estimate(&synthetic(&truth, 1), &MacenkoConfig::new()).unwrap();
    let (ah, ae) = (
        angle_deg(&est.stain_matrix[0], &truth[0]),
        angle_deg(&est.stain_matrix[1], &truth[1]),
    );
    eprintln!("angle to true H {ah:.2}°, to true E {ae:.2}°");
    assert!(ah < 3.0 && ae < 3.0, "H {ah}°, E {ae}°");
}

#[test]
fn macenko_transfers_stains_between_synthetic_images() {
    // Same tissue, stained with rotated vectors: normalizing to the original's template
    // recovers the original colours closely.
    let truth = known_stains();
    let other = [
        normalize3([0.45, 0.80, 0.40]),
        normalize3([0.30, 0.75, 0.60]),
    ];
    let template = synthetic(&truth, 2);
    let recoloured = synthetic(&other, 2);
    let mut m = Macenko::default();
    m.fit(&template).unwrap();
    let out = m.transform(&recoloured).unwrap();
    let (before, _) = diff(&recoloured, &template);
    let (after, _) = diff(&out, &template);
    eprintln!("mean |Δ| to the template-stained image: before {before:.2}, after {after:.2}");
    assert!(after < 0.25 * before, "{before} → {after}");
}

#[test]
fn normalizing_a_real_image_gives_it_the_template_colours() {
    // A breast template and a kidney image of another lab (TCGA sites A7 vs HE).
    let template = region("TCGA-A7-A13E-01Z-00-DX1", 200, 200, 256);
    let source = region("TCGA-HE-7129-01Z-00-DX1", 200, 200, 256);
    let t_stats = LabStats::of(&template);
    let lab_dist = |img: &RgbImage| {
        let s = LabStats::of(img);
        (0..3)
            .map(|c| (s.mean[c] - t_stats.mean[c]).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let mut reinhard = Reinhard::default();
    reinhard.fit(&template).unwrap();
    let mut macenko = Macenko::default();
    macenko.fit(&template).unwrap();
    let t_stains = macenko.template.unwrap();
    let before = lab_dist(&source);
    let r = lab_dist(&reinhard.transform(&source).unwrap());
    let m_out = macenko.transform(&source).unwrap();
    let m = lab_dist(&m_out);
    let src_stains = MacenkoStains::estimate(&source, &MacenkoConfig::new()).unwrap();
    let out_stains = MacenkoStains::estimate(&m_out, &MacenkoConfig::new()).unwrap();
    let ang =
        |s: &MacenkoStains, i: usize| angle_deg(&s.stain_matrix[i], &t_stains.stain_matrix[i]);
    eprintln!(
        "Lab mean distance to template: source {before:.2}, Reinhard {r:.2}, Macenko {m:.2}; \
         H angle {:.1}° → {:.1}°, E angle {:.1}° → {:.1}°",
        ang(&src_stains, 0),
        ang(&out_stains, 0),
        ang(&src_stains, 1),
        ang(&out_stains, 1)
    );
    assert!(r < 0.05 * before, "Reinhard {before} → {r}");
    assert!(m < 0.5 * before, "Macenko {before} → {m}");
    assert!(ang(&out_stains, 0) < 0.5 * ang(&src_stains, 0).max(2.0));
    assert!(ang(&out_stains, 1) < 0.5 * ang(&src_stains, 1).max(2.0));
}

/// Glass beside the tissue leaves the tissue-only pseudo-maximum as it is, and lowers the
/// paper's all-pixel one.
#[test]
fn macenko_pseudo_maximum_over_tissue_ignores_glass() {
    let tissue = region("TCGA-18-5592-01Z-00-DX1", 0, 0, 200);
    let mut on_glass = RgbImage::from_pixel(400, 200, image::Rgb([238, 236, 240]));
    imageops::replace(&mut on_glass, &tissue, 0, 0);
    let over_tissue = MacenkoConfig::new().with_max_concentration_over_tissue(true);
    let alone = MacenkoStains::estimate(&tissue, &over_tissue).unwrap();
    let glass = MacenkoStains::estimate(&on_glass, &over_tissue).unwrap();
    assert_eq!(alone, glass);
    let paper = MacenkoConfig::new();
    let (alone, glass) = (
        MacenkoStains::estimate(&tissue, &paper).unwrap(),
        MacenkoStains::estimate(&on_glass, &paper).unwrap(),
    );
    assert_eq!(alone.stain_matrix, glass.stain_matrix);
    for s in 0..2 {
        assert!(
            glass.max_concentrations[s] < 0.97 * alone.max_concentrations[s],
            "{s}: {:?} vs {:?}",
            glass.max_concentrations,
            alone.max_concentrations
        );
    }
}

/// `with_source` fixes the source statistics: the tiles of an image are then mapped exactly
/// as the whole image is (each tile's own estimate maps a glassy tile otherwise), and the
/// whole image exactly as without it.
#[test]
fn a_fixed_source_maps_every_tile_as_the_whole() {
    let whole = region("TCGA-18-5592-01Z-00-DX1", 100, 100, 300);
    let mut glassy = RgbImage::from_pixel(300, 300, image::Rgb([238, 236, 240]));
    imageops::replace(
        &mut glassy,
        &imageops::crop_imm(&whole, 0, 0, 300, 60).to_image(),
        0,
        0,
    );
    let template = region("TCGA-A7-A13E-01Z-00-DX1", 200, 200, 256);
    let (mut macenko, mut reinhard) = (Macenko::default(), Reinhard::default());
    macenko.fit(&template).unwrap();
    reinhard.fit(&template).unwrap();
    for normalizer in [&macenko as &dyn StainNormalizer, &reinhard] {
        let name = normalizer.name();
        let fixed = normalizer.with_source(&whole).unwrap().expect("tissue");
        let mapped = fixed.transform(&whole).unwrap();
        assert_eq!(mapped, normalizer.transform(&whole).unwrap(), "{name}");
        let tile = imageops::crop_imm(&whole, 50, 120, 100, 80).to_image();
        assert_eq!(
            fixed.transform(&tile).unwrap(),
            imageops::crop_imm(&mapped, 50, 120, 100, 80).to_image(),
            "{name}: a tile is mapped as in the whole"
        );
        // The same strip of tissue on glass, by its own estimate and by the fixed one.
        let strip = |img: &RgbImage| imageops::crop_imm(img, 0, 0, 300, 60).to_image();
        let own = diff(
            &strip(&normalizer.transform(&glassy).unwrap()),
            &strip(&mapped),
        )
        .0;
        let shared = diff(&strip(&fixed.transform(&glassy).unwrap()), &strip(&mapped)).0;
        assert!(
            shared == 0.0 && own > 1.0,
            "{name}: own estimate {own}, fixed {shared}"
        );
    }
    let blank = RgbImage::from_pixel(64, 64, image::Rgb([240; 3]));
    assert!(macenko.with_source(&blank).unwrap().is_none());
    assert!(reinhard.with_source(&blank).unwrap().is_none());
}
