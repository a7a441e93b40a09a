#![allow(dead_code)] // each target uses one of these
//! The fuzz targets' bodies, one function per target over raw bytes. The `cargo fuzz`
//! targets call them, and `tests/fuzz_corpus.rs` of the main crate replays the seed corpora
//! and every recorded finding through them on each `cargo test`, without nightly.
//!
//! Each asserts what must hold for any input: an `Ok` with consistent contents or an
//! `Err`, never a panic, an abort, or an allocation beyond the pixel budget.

use std::path::{Path, PathBuf};

use nucseg::data::{
    parse_monuseg_xml, read_instance_mask, read_label_map, read_rgb_reporting, GreyPolicy,
    LabelMap, MaskKind, ReadOptions, RgbImage,
};
use nucseg::export::{feature_collection, measure_nuclei, measurements_csv, GeoJsonConfig};

/// A pixel budget small enough that what passes it decodes in well under the 2 GiB the
/// fuzzer allows, as the default budget does for real images.
pub const MAX_PIXELS: u64 = 1 << 22;

/// `bytes` written to a per-process scratch file (`/dev/shm` where it exists), since the
/// readers take paths as users call them.
fn scratch(tag: &str, ext: &str, bytes: &[u8]) -> PathBuf {
    let dir = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("nucseg-fuzz-{}-{tag}.{ext}", std::process::id()));
    std::fs::write(&path, bytes).expect("scratch file");
    path
}

/// Any bytes as an H&E image (PNG, JPEG, TIFF by content), rejecting and replicating grey.
pub fn image_decode(data: &[u8]) {
    let path = scratch("image", "img", data);
    for grey in [GreyPolicy::Reject, GreyPolicy::Replicate] {
        let options = ReadOptions {
            grey,
            max_pixels: MAX_PIXELS,
        };
        if let Ok((image, _)) = read_rgb_reporting(&path, options) {
            assert!(u64::from(image.width()) * u64::from(image.height()) <= MAX_PIXELS);
        }
    }
}

/// Any bytes as an instance label map (the first byte picks PNG or TIFF), then its
/// statistics and its binary-mask reading.
pub fn label_map(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    nucseg::data::set_max_pixels(MAX_PIXELS);
    let ext = if kind & 1 == 0 { "png" } else { "tif" };
    let path = scratch("labels", ext, bytes);
    if let Ok(map) = read_label_map(&path) {
        assert_eq!(map.stats().len(), map.count());
        let _ = read_instance_mask(&path, MaskKind::Auto);
    }
}

/// Any text as a MoNuSeg / Aperio XML annotation; what parses is rasterized on its own
/// canvas (within the pixel budget) and checked against a 64 × 64 image.
pub fn monuseg_xml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    nucseg::data::set_max_pixels(MAX_PIXELS);
    let path = Path::new("fuzz.xml");
    let Ok(annotation) = parse_monuseg_xml(text, path) else {
        return;
    };
    assert!(!annotation.polygons.is_empty());
    if let Ok((w, h)) = annotation.extent(path) {
        let map = annotation.to_label_map(w, h);
        assert!(map.max_id() as usize <= annotation.polygons.len());
    }
    let _ = annotation.check_inside(path, 64, 64);
    assert!(annotation.to_label_map(64, 64).count() <= annotation.polygons.len());
}

/// Any bytes as a model bundle: configuration (`.json`) and weights (`.safetensors`),
/// split at the first NUL byte, loaded on the Flex CPU device.
pub fn model_bundle(data: &[u8]) {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (config, weights) = (&data[..split], data.get(split + 1..).unwrap_or(&[]));
    scratch("bundle", "json", config);
    let path = scratch("bundle", "safetensors", weights);
    let device = nucseg::burn::tensor::Device::flex();
    let _ = nucseg::model::io::load_model_safetensors(&path, &device);
}

/// Bytes as a small label map (width, height, then ids cycled over the pixels) through the
/// exports: measurements, CSV and GeoJSON.
pub fn export(data: &[u8]) {
    let [w, h, ox, oy, ids @ ..] = data else {
        return;
    };
    if ids.is_empty() {
        return;
    }
    let (w, h) = (u32::from(*w % 48), u32::from(*h % 48));
    let map = LabelMap::from_fn(w, h, |x, y| {
        u32::from(ids[(y * w + x) as usize % ids.len()] % 7)
    });
    let colour = [ids[0], ids[ids.len() / 2], ids[ids.len() - 1]];
    let image = RgbImage::from_pixel(w, h, image::Rgb(colour));
    let nuclei = nucseg::Nuclei::from_label_map(map);
    let rows = measure_nuclei(&image, &nuclei).expect("same size");
    assert_eq!(rows.len(), nuclei.len());
    assert_eq!(measurements_csv(&rows).lines().count(), rows.len() + 1);
    let config = GeoJsonConfig::new().with_origin([f64::from(*ox as i8), f64::from(*oy as i8)]);
    let json = feature_collection(&nuclei, &rows, &config).expect("rows match");
    assert!(json.to_string().starts_with('{'));
}

/// Any bytes as a whole-slide TIFF: opened, then a corner region of every level and one
/// across its far edge read back; errors are fine, panics and huge allocations are not.
pub fn slide_reader(data: &[u8]) {
    use nucseg::slide::{SlideReader, TiffSlide};
    let path = scratch("slide", "tif", data);
    let Ok(slide) = TiffSlide::open(&path) else {
        return;
    };
    for (level, l) in slide.levels().iter().enumerate() {
        let (w, h) = (l.width.min(300), l.height.min(300));
        if let Ok(region) = slide.read_region(level, 0, 0, w, h) {
            assert_eq!(region.dimensions(), (w, h));
        }
        let _ = slide.read_region(level, l.width as i64 - 10, l.height as i64 - 10, 40, 40);
    }
}

/// Any bytes as a slide run's tile file (`work/tiles/<index>.bin`).
pub fn tile_file(data: &[u8]) {
    let path = scratch("tile", "bin", data);
    if let Ok((found, _seconds)) = nucseg::slide::read_tile(&path, 0) {
        for inst in &found.items {
            assert_eq!(
                inst.mask.data.len() as u64,
                u64::from(inst.mask.width) * u64::from(inst.mask.height)
            );
        }
    }
}
