//! Hostile and awkward inputs: each gives a one-line error naming the file and what is
//! wrong, never a panic, an abort or a silently wrong result, and changes nothing that
//! was there before.

mod common;

use std::path::{Path, PathBuf};

use nucseg::data::{
    list_images, read_label_map, read_rgb, write_label_map, DataError, LabelMap, RgbImage,
};
use nucseg::metrics::evaluate_folders;
use nucseg::output::OutputDir;

/// A little-endian baseline TIFF declaring `width × height` 8-bit RGB in one
/// uncompressed strip whose data is not there.
fn tiff_bomb(width: u32, height: u32, samples: u16, bits: u16) -> Vec<u8> {
    let mut out = b"II*\0".to_vec();
    out.extend(8u32.to_le_bytes());
    let entries: Vec<(u16, u16, u32, u32)> = vec![
        (256, 4, 1, width),                                            // ImageWidth
        (257, 4, 1, height),                                           // ImageLength
        (258, 3, 1, u32::from(bits)),                                  // BitsPerSample
        (259, 3, 1, 1),                                                // Compression: none
        (262, 3, 1, if samples == 3 { 2 } else { 1 }),                 // Photometric
        (273, 4, 1, 200),                                              // StripOffsets
        (277, 3, 1, u32::from(samples)),                               // SamplesPerPixel
        (278, 4, 1, height),                                           // RowsPerStrip
        (279, 4, 1, width * u32::from(samples) * u32::from(bits / 8)), // StripByteCounts (one row)
    ];
    out.extend((entries.len() as u16).to_le_bytes());
    for (tag, kind, count, value) in entries {
        out.extend(tag.to_le_bytes());
        out.extend(kind.to_le_bytes());
        out.extend(count.to_le_bytes());
        out.extend(value.to_le_bytes());
    }
    out.extend(0u32.to_le_bytes());
    out.resize(200, 0);
    out
}

fn one_line(err: &impl std::fmt::Display, names: &[&str]) -> String {
    let text = err.to_string();
    assert!(!text.contains('\n'), "not one line: {text}");
    for n in names {
        assert!(text.contains(n), "{text} does not name {n}");
    }
    text
}

fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

#[test]
fn decompression_bombs_are_refused_before_any_pixel_is_allocated() {
    let dir = common::tmp_dir("bombs");
    let png = write(&dir.join("bomb.png"), &common::png_bomb(60000, 60000));
    assert!(std::fs::metadata(&png).unwrap().len() < 500);
    let err = read_rgb(&png).unwrap_err();
    assert!(
        matches!(err, DataError::TooLarge { width: 60000, .. }),
        "{err:?}"
    );
    one_line(&err, &["bomb.png", "60000x60000", "limit"]);
    assert!(matches!(
        read_label_map(&png).unwrap_err(),
        DataError::TooLarge { .. }
    ));

    let tif = write(&dir.join("bomb.tif"), &tiff_bomb(100000, 100000, 3, 8));
    assert_eq!(std::fs::metadata(&tif).unwrap().len(), 200);
    let err = read_rgb(&tif).unwrap_err();
    assert!(
        matches!(err, DataError::TooLarge { height: 100000, .. }),
        "{err:?}"
    );
    one_line(&err, &["bomb.tif", "100000x100000"]);
    // The 32-bit label-map reader has its own TIFF path: the same budget.
    let labels = write(&dir.join("labels.tif"), &tiff_bomb(100000, 100000, 1, 32));
    let err = read_label_map(&labels).unwrap_err();
    assert!(matches!(err, DataError::TooLarge { .. }), "{err:?}");
    one_line(&err, &["labels.tif"]);

    // Within the budget but with the pixel data missing: a decode error, not an abort.
    let small = write(&dir.join("hollow.png"), &common::png_bomb(300, 200));
    let err = read_rgb(&small).unwrap_err();
    assert!(matches!(err, DataError::Decode { .. }), "{err:?}");
    one_line(&err, &["hollow.png"]);
}

#[test]
fn a_32_bit_label_map_over_67_megapixels_reads_back() {
    // 8400 × 8400 = 70.6 Mpx: 282 MB of u32, over the TIFF reader's default 256 MiB buffer.
    let dir = common::tmp_dir("big-labels");
    let (w, h) = (8400u32, 8400u32);
    let map = LabelMap::from_fn(w, h, |x, y| {
        if x % 50 < 20 && y % 50 < 20 {
            70_000 + (y / 50) * 200 + x / 50
        } else {
            0
        }
    });
    let path = dir.join("big_labels.tif");
    write_label_map(&path, &map).unwrap();
    let back = read_label_map(&path).unwrap();
    assert_eq!(back.dimensions(), (w, h));
    assert!(back == map, "the map changed on the way");
}

#[test]
fn evaluate_pairs_segment_outputs_and_fails_when_nothing_pairs() {
    let root = common::tmp_dir("pairing");
    let (truth, pred) = (root.join("truth"), root.join("pred"));
    std::fs::create_dir_all(&truth).unwrap();
    std::fs::create_dir_all(&pred).unwrap();
    let map = LabelMap::from_fn(20, 20, |x, y| u32::from(x < 10 && y < 10));
    write_label_map(truth.join("a.png"), &map).unwrap();
    write_label_map(truth.join("b.png"), &map).unwrap();
    // What `segment` writes: `<stem>_labels.png`, plus an overlay that is not a label map.
    write_label_map(pred.join("a_labels.png"), &map).unwrap();
    nucseg::data::write_rgb_png(pred.join("a_overlay.png"), &RgbImage::new(20, 20)).unwrap();
    let eval = evaluate_folders(&truth, &pred).unwrap();
    let a = eval.images.iter().find(|i| i.stem == "a").unwrap();
    assert!(!a.prediction_missing);
    assert_eq!(a.metrics.aji, 1.0);
    assert!(
        eval.images
            .iter()
            .find(|i| i.stem == "b")
            .unwrap()
            .prediction_missing
    );

    // A folder where no prediction matches any truth: an error, not a table of zeros.
    let other = root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    write_label_map(other.join("c_labels.png"), &map).unwrap();
    let err = evaluate_folders(&truth, &other).unwrap_err();
    one_line(&err, &["other", "no prediction matches"]);

    // Both forms for one stem: ambiguous.
    write_label_map(pred.join("a.png"), &map).unwrap();
    let err = evaluate_folders(&truth, &pred).unwrap_err();
    one_line(&err, &["a.png", "a_labels.png"]);
}

#[test]
fn two_files_with_one_stem_are_an_error_not_a_silent_choice() {
    let dir = common::tmp_dir("stems");
    let img = RgbImage::from_pixel(8, 8, image::Rgb([200, 100, 150]));
    img.save(dir.join("x.png")).unwrap();
    img.save(dir.join("x.jpg")).unwrap();
    let err = list_images(&dir).unwrap_err();
    assert!(matches!(err, DataError::DuplicateStem { .. }), "{err:?}");
    one_line(&err, &["x.jpg", "x.png", "'x'"]);

    // Truth as both a label map and an XML annotation.
    let root = common::tmp_dir("stems-truth");
    let (truth, pred) = (root.join("truth"), root.join("pred"));
    std::fs::create_dir_all(&truth).unwrap();
    std::fs::create_dir_all(&pred).unwrap();
    let map = LabelMap::from_fn(8, 8, |x, _| u32::from(x < 4));
    write_label_map(truth.join("s.png"), &map).unwrap();
    std::fs::write(truth.join("s.xml"), square_xml(1.0, 1.0, 4.0)).unwrap();
    write_label_map(pred.join("s.png"), &map).unwrap();
    let err = evaluate_folders(&truth, &pred).unwrap_err();
    one_line(&err, &["s.png", "s.xml"]);

    // Inputs from two folders whose outputs would collide.
    let (a, b) = (dir.join("a"), dir.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    img.save(a.join("t.png")).unwrap();
    img.save(b.join("t.tif")).unwrap();
    let inputs = vec![a.join("t.png"), b.join("t.tif")];
    let err = OutputDir::for_inputs(dir.join("out"), true, &inputs, |s| vec![format!("{s}.png")])
        .unwrap_err();
    one_line(&err, &["t.png", "t.tif"]);
}

fn square_xml(x0: f64, y0: f64, side: f64) -> String {
    let (x1, y1) = (x0 + side, y0 + side);
    format!(
        r#"<Annotations><Annotation><Regions><Region><Vertices>
        <Vertex X="{x0}" Y="{y0}"/><Vertex X="{x1}" Y="{y0}"/>
        <Vertex X="{x1}" Y="{y1}"/><Vertex X="{x0}" Y="{y1}"/>
        </Vertices></Region></Regions></Annotation></Annotations>"#
    )
}

#[test]
fn xml_truth_with_far_vertices_is_an_error_not_a_huge_canvas_or_a_silent_clip() {
    let root = common::tmp_dir("xml-canvas");
    let (truth, pred) = (root.join("truth"), root.join("pred"));
    std::fs::create_dir_all(&truth).unwrap();
    std::fs::create_dir_all(&pred).unwrap();
    let map = LabelMap::from_fn(16, 16, |x, y| u32::from(x < 8 && y < 8));
    write_label_map(truth.join("ok.png"), &map).unwrap();
    write_label_map(pred.join("ok.png"), &map).unwrap();
    // No prediction for `far`: its canvas would come from a vertex at 5e9.
    std::fs::write(truth.join("far.xml"), square_xml(5e9, 5e9, 10.0)).unwrap();
    let err = evaluate_folders(&truth, &pred).unwrap_err();
    assert!(
        matches!(err, nucseg::Error::Data(DataError::TooLarge { .. })),
        "{err:?}"
    );
    one_line(&err, &["far.xml"]);

    // With a prediction of 16 × 16, a polygon at (500, 500) lies wholly outside it.
    std::fs::remove_file(truth.join("far.xml")).unwrap();
    std::fs::write(truth.join("off.xml"), square_xml(500.0, 500.0, 10.0)).unwrap();
    write_label_map(pred.join("off.png"), &map).unwrap();
    let err = evaluate_folders(&truth, &pred).unwrap_err();
    one_line(&err, &["off.xml", "outside the 16x16 image"]);

    // A polygon that only overhangs the border is clipped as usual.
    std::fs::write(truth.join("off.xml"), square_xml(12.0, 12.0, 6.0)).unwrap();
    let eval = evaluate_folders(&truth, &pred).unwrap();
    assert_eq!(eval.images.len(), 2);
}

#[test]
fn outputs_never_replace_inputs_even_with_overwrite() {
    let dir = common::tmp_dir("replace-input");
    let input = dir.join("tile.png");
    let img = RgbImage::from_pixel(8, 8, image::Rgb([200, 100, 150]));
    img.save(&input).unwrap();
    let before = std::fs::read(&input).unwrap();
    // `baseline --out <the input folder> --overwrite` would write `tile.png` over it.
    let err = OutputDir::for_inputs(&dir, true, std::slice::from_ref(&input), |s| {
        vec![format!("{s}.png")]
    })
    .unwrap_err();
    assert!(
        matches!(err, DataError::WouldReplaceInput { .. }),
        "{err:?}"
    );
    one_line(&err, &["tile.png", "input"]);
    // The same through another spelling of the folder.
    let dotted = dir.join(".").join("sub").join("..");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    assert!(
        OutputDir::for_inputs(&dotted, true, std::slice::from_ref(&input), |s| {
            vec![format!("{s}.png")]
        })
        .is_err()
    );
    assert_eq!(std::fs::read(&input).unwrap(), before);
    // Other names in the same folder are fine.
    let out = OutputDir::for_inputs(&dir, true, std::slice::from_ref(&input), |s| {
        vec![format!("{s}_labels.png")]
    })
    .unwrap();
    assert!(out.claim("tile_labels.png").is_ok());
    assert!(out.claim("tile.png").is_err());
}
