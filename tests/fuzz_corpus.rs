//! The fuzz targets' bodies (`fuzz/fuzz_targets/bodies.rs`) over their seed corpora and
//! every input a fuzzing run found (`fuzz/regressions/<target>/`): each `cargo test`
//! replays them without nightly or libFuzzer, so a fixed finding stays fixed.

#[path = "../fuzz/fuzz_targets/bodies.rs"]
mod bodies;

use std::path::Path;

/// A target's name and body.
type Target = (&'static str, fn(&[u8]));

#[test]
fn every_seed_and_finding_replays_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let targets: [Target; 7] = [
        ("image_decode", bodies::image_decode),
        ("label_map", bodies::label_map),
        ("monuseg_xml", bodies::monuseg_xml),
        ("model_bundle", bodies::model_bundle),
        ("export", bodies::export),
        ("slide_reader", bodies::slide_reader),
        ("tile_file", bodies::tile_file),
    ];
    for (name, body) in targets {
        let mut replayed = 0;
        for folder in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(folder).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| body(&bytes));
                assert!(outcome.is_ok(), "{name}: {} panicked", path.display());
                replayed += 1;
            }
        }
        assert!(replayed > 0, "{name}: no seed in fuzz/corpus/{name}");
    }
}

#[test]
fn the_seeds_are_valid_files_of_their_kind() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, size) in [
        ("rgb8.png", (4, 3)),
        ("rgba8.png", (3, 3)),
        ("rgb16.png", (2, 2)),
        ("rgb8.tif", (3, 2)),
    ] {
        let image = nucseg::data::read_rgb(corpus.join("image_decode").join(name)).unwrap();
        assert_eq!(image.dimensions(), size, "{name}");
    }
    let text = std::fs::read_to_string(corpus.join("monuseg_xml/square.xml")).unwrap();
    let annotation = nucseg::data::parse_monuseg_xml(&text, Path::new("square.xml")).unwrap();
    assert_eq!(annotation.polygons.len(), 2);
    use nucseg::slide::{read_tile, SlideReader, TiffSlide};
    for (name, format, levels, mpp) in [
        ("pyramid.tif", "tiff", 3, Some(0.25)),
        ("classic.tif", "tiff", 3, None),
        ("aperio.svs", "aperio-svs", 2, Some(0.5)),
        ("ome-subifd.tif", "ome-tiff", 4, Some(0.5)),
    ] {
        let slide = TiffSlide::open(corpus.join("slide_reader").join(name)).unwrap();
        assert_eq!(
            (slide.format(), slide.levels().len()),
            (format, levels),
            "{name}"
        );
        assert_eq!(slide.mpp().map(|m| (m * 1e4).round() / 1e4), mpp, "{name}");
        assert_eq!(
            slide.read_region(0, 0, 0, 100, 70).unwrap().dimensions(),
            (100, 70)
        );
    }
    let (found, seconds) = read_tile(&corpus.join("tile_file/two.bin"), 0).unwrap();
    assert_eq!((found.len(), seconds), (2, 1.5));
}
