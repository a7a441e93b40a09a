//! GeoJSON, overlays and `write_all`: what QuPath, pandas and an image viewer will read.

mod common;

use image::{Rgb, RgbImage};
use nucseg::{
    colour::{deconvolve, RUIFROK_HED},
    data::{read_label_map, read_rgb, DataError, LabelMap},
    export::{
        comparison_overlay, comparison_overlay_with, feature_collection, instance_outline_overlay,
        measure_nuclei, measurements_csv, outline_overlay, write_all, GeoJsonConfig, OverlayConfig,
    },
    output::OutputDir,
    Instance, InstanceMask, Instances, Nuclei,
};
use serde_json::Value;

/// A 40 x 30 image with four nuclei: a disk, a rectangle cut by the right edge, two
/// overlapping squares (the lower score loses the overlap) and an L.
fn sample() -> (RgbImage, Instances) {
    let image = RgbImage::from_fn(40, 30, |x, y| Rgb([(x * 6) as u8, (y * 8) as u8, 180]));
    let mut list = Instances::new(40, 30);
    let mut push = |px: Vec<(u32, u32)>, score: f32| {
        list.items.push(Instance {
            score,
            ..Instance::from_mask(InstanceMask::from_pixels(px))
        })
    };
    let disk: Vec<(u32, u32)> = (0..15)
        .flat_map(|y| (0..15).map(move |x| (x, y)))
        .filter(|&(x, y)| (x as i32 - 7).pow(2) + (y as i32 - 7).pow(2) <= 30)
        .collect();
    push(disk, 0.8);
    push(
        (10..16)
            .flat_map(|y| (34..40).map(move |x| (x, y)))
            .collect(),
        0.95,
    );
    push(
        (18..24)
            .flat_map(|y| (16..22).map(move |x| (x, y)))
            .collect(),
        0.6,
    );
    push(
        (20..26)
            .flat_map(|y| (19..25).map(move |x| (x, y)))
            .collect(),
        0.7,
    );
    push(vec![(2, 25), (2, 26), (2, 27), (3, 27), (4, 27)], 0.5);
    (image, list)
}

fn shoelace(ring: &[Value]) -> f64 {
    let pts: Vec<(f64, f64)> = ring
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    pts.windows(2)
        .map(|w| w[0].0 * w[1].1 - w[1].0 * w[0].1)
        .sum::<f64>()
        / 2.0
}

#[test]
fn geojson_parses_back_with_closed_rings_inside_the_image() {
    let (image, list) = sample();
    let nuclei = Nuclei::from_instances(&list);
    let rows = measure_nuclei(&image, &nuclei).unwrap();
    let text =
        serde_json::to_string(&feature_collection(&nuclei, &rows, &GeoJsonConfig::new()).unwrap())
            .unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["type"], "FeatureCollection");
    let features = json["features"].as_array().unwrap();
    assert_eq!(features.len(), 5);
    let csv = measurements_csv(&rows);
    let csv_ids: Vec<String> = csv
        .lines()
        .skip(1)
        .map(|l| format!("nucleus-{}", l.split(',').next().unwrap()))
        .collect();
    for (i, f) in features.iter().enumerate() {
        assert_eq!(f["type"], "Feature");
        assert_eq!(f["id"].as_str().unwrap(), csv_ids[i], "ids match the CSV");
        assert_eq!(f["properties"]["name"], f["id"]);
        assert_eq!(f["properties"]["objectType"], "detection");
        assert_eq!(f["properties"]["classification"]["name"], "Nucleus");
        assert_eq!(
            f["properties"]["classification"]["color"],
            serde_json::json!([0, 255, 255])
        );
        let m = &f["properties"]["measurements"];
        assert_eq!(m["Area"].as_f64().unwrap(), rows[i].area as f64);
        assert_eq!(m["Score"].as_f64().unwrap(), rows[i].score);
        assert!(m["Perimeter"].is_number() && m["Hematoxylin OD mean"].is_number());
        assert_eq!(f["geometry"]["type"], "Polygon");
        let rings = f["geometry"]["coordinates"].as_array().unwrap();
        assert_eq!(rings.len(), 1, "outer ring only");
        let ring = rings[0].as_array().unwrap();
        assert!(ring.len() >= 5);
        assert_eq!(ring.first(), ring.last(), "closed ring");
        for p in ring {
            let (x, y) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
            assert!(
                (0.0..=40.0).contains(&x) && (0.0..=30.0).contains(&y),
                "{p}"
            );
        }
        // These nuclei are simply connected: the polygon's area is the pixel count, with
        // positive (RFC 7946 counter-clockwise in y-up) orientation.
        assert_eq!(shoelace(ring), rows[i].area as f64);
    }
    // Highest score first: the rectangle on the right edge, with vertices at x = 40.
    assert_eq!(features[0]["id"], "nucleus-1");
    assert_eq!(rows[0].area, 36);
    assert!(features[0]["geometry"]["coordinates"][0]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p[0] == 40.0));
    // The 0.6 square (id 4) lost its 3 x 4 overlap with the 0.7 one (id 3).
    assert_eq!(rows[2].area, 36);
    assert_eq!(rows[3].area, 36 - 12);

    // A tile origin shifts every coordinate; a different prefix renames.
    let config = GeoJsonConfig::new()
        .with_origin([1000.0, 2000.0])
        .with_id_prefix("tile3-".into());
    let shifted = feature_collection(&nuclei, &rows, &config).unwrap();
    let a = &json["features"][2]["geometry"]["coordinates"][0][1];
    let b = &shifted["features"][2]["geometry"]["coordinates"][0][1];
    assert_eq!(b[0].as_f64().unwrap(), a[0].as_f64().unwrap() + 1000.0);
    assert_eq!(b[1].as_f64().unwrap(), a[1].as_f64().unwrap() + 2000.0);
    assert_eq!(shifted["features"][2]["id"], "tile3-3");

    // Rows from another image are refused.
    let err = feature_collection(&nuclei, &rows[1..], &GeoJsonConfig::new()).unwrap_err();
    assert!(
        err.to_string().contains("4 measurement rows for 5 nuclei"),
        "{err}"
    );
}

#[test]
fn outline_overlay_paints_boundary_pixels_only() {
    let image = RgbImage::from_pixel(10, 8, Rgb([100, 100, 100]));
    // Nucleus 1: x 1..5, y 1..6; nucleus 2 touches it: x 5..8, y 2..5; nucleus 3 at the
    // image's right edge: x 9, y 6..8.
    let labels = LabelMap::from_fn(10, 8, |x, y| {
        if (1..5).contains(&x) && (1..6).contains(&y) {
            1
        } else if (5..8).contains(&x) && (2..5).contains(&y) {
            2
        } else if x == 9 && y >= 6 {
            3
        } else {
            0
        }
    });
    let red = [255, 0, 0];
    let out = outline_overlay(&image, &labels, red).unwrap();
    let is_red = |x, y| out.get_pixel(x, y).0 == red;
    assert!(
        is_red(1, 1) && is_red(4, 3) && is_red(1, 3),
        "nucleus 1's rim"
    );
    assert!(!is_red(2, 2) && !is_red(3, 4), "nucleus 1's inside");
    assert!(
        is_red(5, 3) && is_red(7, 3),
        "nucleus 2's rim, also where it touches 1"
    );
    assert!(!is_red(6, 3), "nucleus 2's one inside pixel");
    assert!(is_red(9, 6) && is_red(9, 7), "closed at the image edge");
    assert_eq!(out.get_pixel(0, 0).0, [100; 3], "background untouched");
    assert_eq!(out.get_pixel(8, 6).0, [100; 3]);

    // Overlapping instances each get their own outline.
    let mut list = Instances::new(10, 8);
    for x0 in [1, 3] {
        list.items
            .push(Instance::from_mask(InstanceMask::from_pixels(
                (1..6).flat_map(move |y| (x0..x0 + 4).map(move |x| (x, y))),
            )));
    }
    let out = instance_outline_overlay(&image, &list, red).unwrap();
    // Column x = 4 is the first square's right rim, inside the second one.
    assert_eq!(out.get_pixel(4, 3).0, red);
    assert_eq!(out.get_pixel(3, 3).0, red, "second square's left rim");
    assert_eq!(
        out.get_pixel(5, 3).0,
        [100; 3],
        "inside the second square only"
    );
}

#[test]
fn comparison_overlay_uses_figure_6_colours() {
    let image = RgbImage::from_pixel(6, 2, Rgb([100, 100, 100]));
    // Columns: 0 background, 1-2 truth and prediction, 3 prediction only, 4 truth only,
    // 5 background.
    let truth = LabelMap::from_fn(6, 2, |x, _| u32::from((1..3).contains(&x) || x == 4) * 7);
    let pred = LabelMap::from_fn(6, 2, |x, _| u32::from((1..4).contains(&x)));
    let out = comparison_overlay(&image, &truth, &pred).unwrap();
    // α = 0.45: 0.55 · 100 + 0.45 · 255 = 169.75 → 170; 0.55 · 100 = 55.
    assert_eq!(
        out.get_pixel(1, 0).0,
        [170, 170, 55],
        "true positive: yellow"
    );
    assert_eq!(out.get_pixel(3, 1).0, [170, 55, 55], "false positive: red");
    assert_eq!(
        out.get_pixel(4, 0).0,
        [55, 170, 55],
        "false negative: green"
    );
    assert_eq!(out.get_pixel(0, 0).0, [100; 3]);
    assert_eq!(out.get_pixel(5, 1).0, [100; 3]);

    let config = OverlayConfig::new()
        .with_alpha(1.0)
        .with_predicted_outlines(true)
        .with_outline_color([0, 0, 255]);
    let out = comparison_overlay_with(&image, &truth, &pred, &config).unwrap();
    assert_eq!(out.get_pixel(4, 0).0, [0, 255, 0], "opaque green");
    assert_eq!(
        out.get_pixel(2, 0).0,
        [0, 0, 255],
        "predicted outline on top"
    );
    let err = comparison_overlay(&image, &truth, &LabelMap::new(6, 3)).unwrap_err();
    assert!(
        err.to_string().contains("predicted label map is 6x3"),
        "{err}"
    );
}

#[test]
fn write_all_writes_five_files_and_never_clobbers() {
    let (image, list) = sample();
    let root = common::tmp_dir("export-write-all");
    let out = OutputDir::create(&root, false).unwrap();
    let truth = LabelMap::from_fn(40, 30, |x, y| u32::from(x < 20 && y < 15) * 3);
    let files = write_all(
        &out,
        "tile",
        &image,
        &Nuclei::from_instances(&list),
        Some(&truth),
    )
    .unwrap();
    assert_eq!(files.count, 5);
    for (path, name) in [
        (&files.labels, "tile_labels.png"),
        (&files.overlay, "tile_overlay.png"),
        (files.comparison.as_ref().unwrap(), "tile_comparison.png"),
        (&files.geojson, "tile.geojson"),
        (&files.csv, "tile_nuclei.csv"),
    ] {
        assert_eq!(path, &root.join(name));
        assert!(path.is_file(), "{}", path.display());
    }
    assert_eq!(read_label_map(&files.labels).unwrap(), list.to_label_map());
    assert_eq!(read_rgb(&files.overlay).unwrap().dimensions(), (40, 30));
    let csv = std::fs::read_to_string(&files.csv).unwrap();
    assert_eq!(csv.lines().count(), 6);
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(&files.geojson).unwrap()).unwrap();
    assert_eq!(json["features"].as_array().unwrap().len(), 5);
    let listing = |dir: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        listing(&root).len(),
        5,
        "no temporary files left: {:?}",
        listing(&root)
    );

    // Again without overwriting: refused before anything is written.
    let before = std::fs::read(&files.csv).unwrap();
    let mut fewer = list.clone();
    fewer.items.truncate(1);
    let err = write_all(&out, "tile", &image, &Nuclei::from_instances(&fewer), None).unwrap_err();
    assert!(
        matches!(err, nucseg::Error::Data(DataError::WouldOverwrite { .. })),
        "{err}"
    );
    assert_eq!(std::fs::read(&files.csv).unwrap(), before);
    // With overwriting allowed it replaces them.
    let again = OutputDir::create(&root, true).unwrap();
    let files = write_all(
        &again,
        "tile",
        &image,
        &Nuclei::from_instances(&fewer),
        None,
    )
    .unwrap();
    assert_eq!(files.comparison, None);
    assert_eq!(
        std::fs::read_to_string(&files.csv).unwrap().lines().count(),
        2
    );

    // Inputs of different sizes: an error, and nothing written.
    let fresh = OutputDir::create(root.join("fresh"), false).unwrap();
    let err = write_all(
        &fresh,
        "x",
        &image,
        &Nuclei::from_instances(&list),
        Some(&LabelMap::new(30, 40)),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("ground-truth label map is 30x40"),
        "{err}"
    );
    assert!(listing(fresh.path()).is_empty());
}

/// Real MoNuSeg images with their 1000 x 1000 ground truth as the "prediction" (398, 557
/// and 1862 nuclei): the files agree with each other, and the time is printed (run with
/// `--release -- --nocapture` to measure).
#[test]
fn real_monuseg_images_export_consistently() {
    let root = common::monuseg();
    for id in [
        "TCGA-21-5784-01Z-00-DX1",
        "TCGA-49-4488-01Z-00-DX1",
        "TCGA-HE-7130-01Z-00-DX1",
    ] {
        let image = read_rgb(root.join("images").join(format!("{id}.tif"))).unwrap();
        let truth = read_label_map(root.join("labels").join(format!("{id}.png"))).unwrap();
        let mut list = Instances::from_label_map(&truth);
        // Distinct scores so that the ids are a real reordering.
        let n = list.len();
        for (i, inst) in list.items.iter_mut().enumerate() {
            inst.score = ((i * 7919) % n) as f32 / n as f32;
        }
        let dir = common::tmp_dir(&format!("export-{id}"));
        let out = OutputDir::create(&*dir, false).unwrap();
        let start = std::time::Instant::now();
        let files = write_all(&out, id, &image, &Nuclei::from_instances(&list), None).unwrap();
        let write_ms = start.elapsed().as_secs_f64() * 1e3;
        let start = std::time::Instant::now();
        let nuclei = Nuclei::from_instances(&list);
        let rows = measure_nuclei(&image, &nuclei).unwrap();
        let json = feature_collection(&nuclei, &rows, &GeoJsonConfig::new()).unwrap();
        let csv = measurements_csv(&rows);
        let memory_ms = start.elapsed().as_secs_f64() * 1e3;
        let start = std::time::Instant::now();
        let comparison = comparison_overlay(&image, &truth, &nuclei.labels).unwrap();
        let comparison_ms = start.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "{id}: {n} nuclei; write_all (4 files) {write_ms:.1} ms; in memory alone (nuclei, \
             measurements, GeoJSON, CSV) {memory_ms:.1} ms; comparison overlay {comparison_ms:.1} ms"
        );
        assert_eq!(files.count, truth.count());
        assert_eq!(rows.len(), n);
        assert_eq!(csv.lines().count(), n + 1);
        assert_eq!(comparison.dimensions(), (1000, 1000));
        let total: u64 = rows.iter().map(|r| r.area).sum();
        assert_eq!(total, truth.foreground_area());
        // Most nuclei are simply connected: their polygon's area is their pixel count.
        let features = json["features"].as_array().unwrap();
        let exact = features
            .iter()
            .zip(&rows)
            .filter(|(f, r)| {
                shoelace(f["geometry"]["coordinates"][0].as_array().unwrap()) == r.area as f64
            })
            .count();
        assert!(exact * 100 >= 95 * n, "{id}: {exact} of {n}");
        let mean_area = total as f64 / n as f64;
        assert!((50.0..1000.0).contains(&mean_area), "{id}: {mean_area}");
        // Nuclei are more haematoxylin-stained than the image on average.
        let mean_h: f64 = rows.iter().map(|r| r.mean_haematoxylin).sum::<f64>() / n as f64;
        let [h, _, _] = deconvolve(&image, &RUIFROK_HED);
        let image_h = h.iter().map(|&v| v as f64).sum::<f64>() / h.len() as f64;
        assert!(mean_h > image_h, "{id}: nuclei {mean_h} vs image {image_h}");
    }
}
