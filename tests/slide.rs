//! Whole slides: pyramidal TIFF / BigTIFF / Aperio SVS written and read back, hostile slide
//! files, tissue detection, and a slide run (streamed stitching, shards, resume) that
//! equals the image pipeline on the same pixels.

mod common;

use std::{io::Read, path::Path};

use nucseg::{
    baseline::ClassicalBaseline,
    data::{read_rgb, RgbImage},
    pipeline::{Pipeline, Preset},
    postprocess::TilerConfig,
    slide::{
        read_manifest, write_pyramid, NucleiDb, Prepared, PyramidOptions, Shard, SlideConfig,
        SlideError, SlideReader, SlideRun, TiffLayout, TiffSlide, DB_FILE, GEOJSON_FILE,
        SUMMARY_FILE, WORK_DIR,
    },
    Error,
};

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x % 251) as u8,
            (y % 241) as u8,
            ((x * 7 + y * 3) % 256) as u8,
        ])
    })
}

fn crop(img: &RgbImage, x: u32, y: u32, w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |i, j| {
        if x + i < img.width() && y + j < img.height() {
            *img.get_pixel(x + i, y + j)
        } else {
            image::Rgb([255, 255, 255])
        }
    })
}

#[test]
fn pyramidal_tiff_and_bigtiff_round_trip_exactly() {
    let dir = common::tmp_dir("slide-roundtrip");
    let image = gradient(700, 500);
    for bigtiff in [true, false] {
        let path = dir.join(format!("g-{bigtiff}.tif"));
        let options = PyramidOptions {
            layout: TiffLayout::Pyramidal { bigtiff },
            tile_size: 128,
            mpp: Some(0.25),
            description: None,
        };
        write_pyramid(&path, &image, &options).unwrap();
        let slide = TiffSlide::open(&path).unwrap();
        assert_eq!(slide.format(), "tiff");
        assert_eq!(slide.dimensions(), (700, 500));
        let sizes: Vec<(u32, u32)> = slide.levels().iter().map(|l| (l.width, l.height)).collect();
        assert_eq!(sizes, [(700, 500), (350, 250), (175, 125), (87, 62)]);
        assert!((slide.levels()[2].downsample - 4.0).abs() < 0.01);
        assert!((slide.mpp().unwrap() - 0.25).abs() < 1e-6);
        // Regions across tiles, at the edges and partly outside (white) are exact.
        for (x, y, w, h) in [(0, 0, 700, 500), (100, 90, 300, 200), (650, 450, 100, 80)] {
            let got = slide.read_region(0, x, y, w, h).unwrap();
            assert_eq!(
                got,
                crop(&image, x as u32, y as u32, w, h),
                "region {x},{y}"
            );
        }
        let left_of = slide.read_region(0, -20, 10, 40, 5).unwrap();
        assert_eq!(left_of.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(*left_of.get_pixel(25, 0), *image.get_pixel(5, 10));
    }
}

#[test]
fn ome_tiff_with_its_levels_in_sub_ifds_reads_every_level() {
    let dir = common::tmp_dir("slide-subifd");
    let image = gradient(700, 500);
    for bigtiff in [true, false] {
        let write = |layout, name: &str| {
            let path = dir.join(format!("{name}-{bigtiff}.ome.tif"));
            let options = PyramidOptions {
                layout,
                tile_size: 128,
                mpp: Some(0.25),
                description: Some("<OME></OME>".into()),
            };
            write_pyramid(&path, &image, &options).unwrap();
            TiffSlide::open(&path).unwrap()
        };
        let chain = write(TiffLayout::Pyramidal { bigtiff }, "chain");
        let subs = write(TiffLayout::SubIfds { bigtiff }, "subs");
        // The main chain holds level 0 alone: the reduced levels come from its SubIFDs.
        let file = std::fs::File::open(subs.path()).unwrap();
        assert!(!tiff::decoder::Decoder::new(file).unwrap().more_images());
        assert_eq!(subs.format(), "ome-tiff");
        assert_eq!(subs.levels(), chain.levels());
        assert_eq!(subs.levels().len(), 4);
        for (level, l) in subs.levels().iter().enumerate() {
            let (w, h) = (l.width + 10, l.height + 10);
            assert_eq!(
                subs.read_region(level, -5, -5, w, h).unwrap(),
                chain.read_region(level, -5, -5, w, h).unwrap(),
                "level {level}"
            );
        }
    }
}

#[test]
fn ome_tiff_gives_its_physical_size_and_a_resolution_tag_its_own() {
    let dir = common::tmp_dir("slide-ome");
    let image = gradient(300, 200);
    let ome = r#"<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">
<Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="300" SizeY="200" SizeC="3"
 SizeZ="1" SizeT="1" PhysicalSizeX="252" PhysicalSizeXUnit="nm" PhysicalSizeY="252"/>
</Image></OME>"#;
    let path = dir.join("s.ome.tif");
    let mut options = PyramidOptions::pyramidal(Some(0.5));
    options.description = Some(ome.into());
    write_pyramid(&path, &image, &options).unwrap();
    let slide = TiffSlide::open(&path).unwrap();
    // The OME-XML wins over the resolution tags.
    assert_eq!(slide.format(), "ome-tiff");
    assert!((slide.mpp().unwrap() - 0.252).abs() < 1e-12);
    // Without OME-XML, XResolution in pixels per centimetre.
    let plain = dir.join("plain.tif");
    write_pyramid(&plain, &image, &PyramidOptions::pyramidal(Some(0.5))).unwrap();
    assert!((TiffSlide::open(&plain).unwrap().mpp().unwrap() - 0.5).abs() < 1e-6);
}

#[test]
fn aperio_svs_shares_its_jpeg_tables_and_gives_its_mpp() {
    let dir = common::tmp_dir("slide-svs");
    let image = read_rgb(common::monuseg().join("images/TCGA-18-5592-01Z-00-DX1.tif")).unwrap();
    let path = dir.join("s.svs");
    let mut options = PyramidOptions::aperio(0.252);
    options.layout = TiffLayout::AperioSvs {
        quality: 90,
        app_mag: 40,
    };
    write_pyramid(&path, &image, &options).unwrap();
    let slide = TiffSlide::open(&path).unwrap();
    assert_eq!(slide.format(), "aperio-svs");
    assert!(slide.description().contains("AppMag = 40"));
    assert!((slide.mpp().unwrap() - 0.252).abs() < 1e-9);
    // Level 0, then 4× reductions; the stripped thumbnail is not a level.
    let sizes: Vec<(u32, u32)> = slide.levels().iter().map(|l| (l.width, l.height)).collect();
    assert_eq!(sizes, [(1000, 1000), (250, 250), (62, 62)]);
    let got = slide.read_region(0, 0, 0, 1000, 1000).unwrap();
    let mean_abs: f64 = got
        .as_raw()
        .iter()
        .zip(image.as_raw())
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .sum::<f64>()
        / got.as_raw().len() as f64;
    assert!(mean_abs < 4.0, "JPEG q90 mean abs error {mean_abs}");
}

/// The BigTIFF bytes of the Compression entry `259 SHORT 1 <value>`.
fn patch_compression(bytes: &mut [u8], from: u16, to: u16) {
    let mut pattern = vec![0x03, 0x01, 0x03, 0x00, 1, 0, 0, 0, 0, 0, 0, 0];
    pattern.extend_from_slice(&from.to_le_bytes());
    let at = bytes
        .windows(pattern.len())
        .position(|w| w == pattern)
        .expect("compression entry");
    bytes[at + 12..at + 14].copy_from_slice(&to.to_le_bytes());
}

#[test]
fn hostile_slides_give_one_line_errors_naming_the_file() {
    let dir = common::tmp_dir("slide-hostile");
    let good = dir.join("good.tif");
    write_pyramid(
        &good,
        &gradient(600, 400),
        &PyramidOptions::pyramidal(Some(0.25)),
    )
    .unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let one_line = |e: &SlideError, path: &Path, needle: &str| {
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(needle), "{msg} lacks {needle}");
    };

    // Not a TIFF at all.
    let text = dir.join("notes.tif");
    std::fs::write(&text, b"this is not a slide").unwrap();
    one_line(
        &TiffSlide::open(&text).unwrap_err(),
        &text,
        "not a readable TIFF",
    );

    // Truncated: the header opens, the tiles past the cut do not read.
    let cut = dir.join("cut.tif");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    match TiffSlide::open(&cut) {
        Err(e) => one_line(&e, &cut, ""),
        Ok(slide) => {
            let e = slide.read_region(0, 0, 0, 600, 400).unwrap_err();
            one_line(&e, &cut, "tile");
        }
    }

    // JPEG 2000 tiles (Aperio's 33003): refused with what to do instead.
    let j2k = dir.join("j2k.tif");
    let mut patched = bytes.clone();
    patch_compression(&mut patched, 8, 33003);
    std::fs::write(&j2k, &patched).unwrap();
    one_line(&TiffSlide::open(&j2k).unwrap_err(), &j2k, "JPEG 2000");

    // An absurd pixel size in an Aperio description.
    let svs = dir.join("absurd.svs");
    write_pyramid(&svs, &gradient(300, 300), &PyramidOptions::aperio(1e6)).unwrap();
    one_line(&TiffSlide::open(&svs).unwrap_err(), &svs, "--mpp");

    // Regions the reader refuses rather than allocating.
    let slide = TiffSlide::open(&good).unwrap();
    one_line(
        &slide.read_region(0, 0, 0, 0, 10).unwrap_err(),
        &good,
        "empty",
    );
    one_line(
        &slide.read_region(0, 0, 0, 100_000, 100_000).unwrap_err(),
        &good,
        "budget",
    );
    one_line(
        &slide.read_region(9, 0, 0, 10, 10).unwrap_err(),
        &good,
        "no such level",
    );
}

#[test]
fn manifests_and_shards_are_checked() {
    let dir = common::tmp_dir("slide-manifest");
    let m = dir.join("cohort.csv");
    std::fs::write(&m, "# cohort\nslide,id,mpp\na.svs,,\nsub/b.tif,bee,0.5\n").unwrap();
    let rows = read_manifest(&m).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].slide, dir.join("a.svs"));
    assert_eq!((rows[0].id.as_str(), rows[0].mpp), ("a", None));
    assert_eq!((rows[1].id.as_str(), rows[1].mpp), ("bee", Some(0.5)));
    for (text, needle) in [
        ("path\na.svs\n", "no `slide` column"),
        ("slide,mpp\na.svs,fast\n", "line 2: mpp 'fast'"),
        ("slide\na.svs\nx/a.svs\n", "line 3: id 'a'"),
        ("slide,id\na.svs\n", "line 2: 1 fields"),
        ("", "empty manifest"),
    ] {
        std::fs::write(&m, text).unwrap();
        let e = read_manifest(&m).unwrap_err().to_string();
        assert!(e.contains(needle) && e.contains("cohort.csv"), "{e}");
    }
    assert_eq!(
        "2/3".parse::<Shard>().unwrap(),
        Shard { index: 2, count: 3 }
    );
    for bad in ["5/3", "3/3", "1/0", "a/b", "2"] {
        assert!(
            bad.parse::<Shard>().unwrap_err().contains("0 <= k < n"),
            "{bad}"
        );
    }
}

/// Two Kumar training images side by side on glass: a small "slide".
fn mosaic() -> RgbImage {
    let a = read_rgb(common::monuseg().join("images/TCGA-18-5592-01Z-00-DX1.tif")).unwrap();
    let b = read_rgb(common::monuseg().join("images/TCGA-38-6178-01Z-00-DX1.tif")).unwrap();
    let mut m = RgbImage::from_pixel(3400, 2000, image::Rgb([246, 246, 244]));
    image::imageops::replace(&mut m, &a, 300, 600);
    image::imageops::replace(&mut m, &b, 2100, 600);
    m
}

fn features(out: &Path) -> Vec<serde_json::Value> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(out.join(GEOJSON_FILE)).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["features"].as_array().unwrap().clone()
}

fn geojson_bytes(out: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(out.join(GEOJSON_FILE)).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

#[test]
fn a_slide_run_equals_the_image_pipeline_and_shards_merge_to_the_same_bytes() {
    let dir = common::tmp_dir("slide-run");
    let image = mosaic();
    let path = dir.join("mosaic.tif");
    write_pyramid(&path, &image, &PyramidOptions::pyramidal(Some(0.25))).unwrap();
    let slide = TiffSlide::open(&path).unwrap();
    let tiling = TilerConfig::new().with_tile_size(512).with_stride(384);
    let config = || SlideConfig::new().with_tiling(tiling.clone());
    let segmenter = ClassicalBaseline::default();

    let prepare = |out: &Path, config: SlideConfig| match SlideRun::prepare(
        &slide, config, out, None, "baseline", false,
    )
    .unwrap()
    {
        Prepared::Ready(run) => run,
        Prepared::Complete(_) => panic!("nothing was finished in {}", out.display()),
    };

    // One process.
    let single = dir.join("single");
    let run = prepare(&single, config());
    let plan = run.plan().clone();
    assert_eq!((plan.scale, plan.level), (1.0, 0));
    assert_eq!(plan.tiles_total, 45);
    // Glass-only tiles (the margins, the gap between the images) are skipped.
    assert!(
        plan.tissue_tiles.len() <= 36 && plan.tissue_tiles.len() >= 24,
        "{} tissue tiles",
        plan.tissue_tiles.len()
    );
    // The sample a normalizer estimates the slide's stains on: the 16 tissue tiles most
    // covered by tissue (whole 512² tiles here) without their glass cells, read from the
    // slide: nearly no glass, where the tissue tiles together are half glass.
    let sample = run.stain_sample().unwrap().expect("tissue tiles");
    assert_eq!(Some(&sample), run.stain_sample().unwrap().as_ref());
    let n = sample.width() as usize;
    assert!((8 * 512 * 512..=16 * 512 * 512).contains(&n), "{n} pixels");
    let tiles = tiling.init().unwrap().tiles(3400, 2000);
    let glass = |img: &RgbImage| {
        let bright = img
            .pixels()
            .filter(|p| p.0.iter().all(|&v| v >= 220))
            .count();
        bright as f64 / img.pixels().len() as f64
    };
    let everywhere = plan
        .tissue_tiles
        .iter()
        .map(|&i| {
            let [x0, y0, x1, y1] = tiles[i].rect();
            glass(&crop(&image, x0, y0, x1 - x0, y1 - y0))
        })
        .sum::<f64>()
        / plan.tissue_tiles.len() as f64;
    let sampled = glass(&sample);
    assert!(
        sampled < 0.05 && everywhere > 0.3,
        "glass: sample {sampled:.3}, tissue tiles {everywhere:.3}"
    );

    // By tissue piece: the two images, each tile in the group of the image it lies over
    // most, each group's sample from its own image (closer to its mean colour).
    let groups = run.stain_groups().unwrap();
    assert_eq!(groups.samples.len(), 2);
    for &i in &plan.tissue_tiles {
        let [x0, _, x1, _] = tiles[i].rect();
        let (over_a, over_b) = (
            (x1.min(1300) as i64 - x0.max(300) as i64).max(0),
            (x1.min(3100) as i64 - x0.max(2100) as i64).max(0),
        );
        if over_a == over_b {
            continue; // over the tissue mask's margin only
        }
        let expected = if over_a > over_b { 0 } else { 1 };
        assert_eq!(groups.group_of_tile[i], Some(expected), "tile {i}");
    }
    let mean = |img: &RgbImage| {
        let n = img.pixels().len() as f64;
        [0, 1, 2].map(|c| img.pixels().map(|p| p.0[c] as f64).sum::<f64>() / n)
    };
    let distance = |a: [f64; 3], b: [f64; 3]| (0..3).map(|c| (a[c] - b[c]).powi(2)).sum::<f64>();
    let (a, b) = (
        mean(&crop(&image, 300, 600, 1000, 1000)),
        mean(&crop(&image, 2100, 600, 1000, 1000)),
    );
    let (s0, s1) = (mean(&groups.samples[0]), mean(&groups.samples[1]));
    assert!(distance(s0, a) < distance(s0, b) && distance(s1, b) < distance(s1, a));

    let mut reports = 0;
    assert_eq!(
        run.segment_tiles(&segmenter, Shard::ALL, |_| reports += 1)
            .unwrap(),
        plan.tissue_tiles.len()
    );
    assert_eq!(reports, plan.tissue_tiles.len());
    let summary = run.stitch(|_| {}).unwrap();
    assert!(!single.join(WORK_DIR).exists());
    let found = features(&single);
    assert_eq!(found.len(), summary.nuclei);
    assert!(summary.nuclei > 500, "{} nuclei", summary.nuclei);
    assert!(summary.tissue_area_mm2.unwrap() > 0.1);

    // The database holds the same nuclei, found by region through its R-tree.
    let db = NucleiDb::open(single.join(DB_FILE)).unwrap();
    assert_eq!(db.count().unwrap() as usize, summary.nuclei);
    assert_eq!(
        db.metadata("nucseg_plan").unwrap().unwrap()["slide"],
        "mosaic.tif"
    );
    assert_eq!(db.metadata("version").unwrap().unwrap(), "1.0.1");
    let everything = db.in_rect([0.0, 0.0, 3400.0, 2000.0]).unwrap();
    assert_eq!(everything.len(), summary.nuclei);
    for (row, f) in everything.iter().zip(&found) {
        assert_eq!(row.key, f["id"].as_str().unwrap());
        let ring: Vec<[f64; 2]> =
            serde_json::from_value(f["geometry"]["coordinates"][0].clone()).unwrap();
        assert_eq!(row.outline, ring);
        assert_eq!(
            row.properties["score"],
            f["properties"]["measurements"]["Score"]
        );
    }
    // The left image (x 300–1300) and the right one (2100–3100) split the nuclei.
    let left = db.in_rect([0.0, 0.0, 1700.0, 2000.0]).unwrap();
    let right = db.in_rect([1700.0, 0.0, 3400.0, 2000.0]).unwrap();
    assert_eq!(left.len() + right.len(), summary.nuclei);
    assert!(left.iter().all(|n| n.bbox[2] <= 1310.0) && right.iter().all(|n| n.bbox[0] >= 2090.0));
    let cells = db.counts_per_cell(1000.0).unwrap();
    assert_eq!(
        cells.iter().map(|c| c.1).sum::<u64>() as usize,
        summary.nuclei
    );
    // Tissue spans x 300–3100, y 600–1600: cells (0..=3, 0..=1) only.
    assert!(cells
        .iter()
        .all(|((gx, gy), _)| (0..=3).contains(gx) && (0..=1).contains(gy)));
    let e = NucleiDb::open(single.join(SUMMARY_FILE))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("summary.json"), "{e}");

    // The image pipeline on the same pixels and tiles finds the same nuclei: compare areas
    // and centroids as multisets.
    let pipeline = Pipeline::new(
        Preset::NucSegNp.config().with_tiling(tiling.clone()),
        ClassicalBaseline::default(),
        None,
    )
    .unwrap();
    let nuclei = pipeline.run(&image).unwrap();
    let mut expected: Vec<String> = nuclei
        .items
        .iter()
        .map(|n| {
            let ring = nucseg::export::outer_contour(&n.mask)
                .unwrap()
                .closed_ring([0.0, 0.0]);
            serde_json::to_string(&ring).unwrap()
        })
        .collect();
    let mut got: Vec<String> = found
        .iter()
        .map(|f| f["geometry"]["coordinates"][0].to_string())
        .collect();
    expected.sort();
    got.sort();
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "the slide's outlines differ from the image pipeline's"
    );
    let areas: f64 = found
        .iter()
        .map(|f| f["properties"]["measurements"]["Area"].as_f64().unwrap())
        .sum();
    let image_areas: u64 = nuclei.items.iter().map(|n| n.mask.area()).sum();
    assert_eq!(areas, image_areas as f64);

    // Three shards into one work folder, then the merge: the same bytes.
    let sharded = dir.join("sharded");
    for k in 0..3 {
        let run = prepare(&sharded, config());
        run.segment_tiles(&segmenter, Shard { index: k, count: 3 }, |_| {})
            .unwrap();
        if k < 2 {
            let e = run.stitch(|_| {}).unwrap_err().to_string();
            assert!(e.contains("not segmented yet"), "{e}");
        }
    }
    prepare(&sharded, config()).stitch(|_| {}).unwrap();
    assert_eq!(geojson_bytes(&sharded), geojson_bytes(&single));
    assert_eq!(
        NucleiDb::open(sharded.join(DB_FILE))
            .unwrap()
            .in_rect([0.0, 0.0, 3400.0, 2000.0])
            .unwrap(),
        everything
    );

    // A killed run: some tiles on disk; the rerun does only the others.
    let resumed = dir.join("resumed");
    let run = prepare(&resumed, config());
    let first = run
        .segment_tiles(&segmenter, Shard { index: 0, count: 2 }, |_| {})
        .unwrap();
    // One finished tile's file broken (cut short): it is done again.
    let broken = resumed
        .join(WORK_DIR)
        .join("tiles")
        .join(format!("{:07}.bin", plan.tissue_tiles[0]));
    let bytes = std::fs::read(&broken).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
    let rerun = prepare(&resumed, config());
    let rest = rerun.segment_tiles(&segmenter, Shard::ALL, |_| {}).unwrap();
    assert_eq!(first + rest, plan.tissue_tiles.len() + 1);
    rerun.stitch(|_| {}).unwrap();
    assert_eq!(geojson_bytes(&resumed), geojson_bytes(&single));

    // A finished slide is left alone; an unfinished one with other settings is refused.
    assert!(matches!(
        SlideRun::prepare(&slide, config(), &single, None, "baseline", false).unwrap(),
        Prepared::Complete(s) if s.nuclei == summary.nuclei
    ));
    let other = dir.join("other");
    prepare(&other, config());
    let e = match SlideRun::prepare(
        &slide,
        // Any threshold but the default one the folder was prepared with.
        config().with_min_score(nucseg::pipeline::DEFAULT_MIN_SCORE + 0.1),
        &other,
        None,
        "baseline",
        false,
    ) {
        Err(Error::Slide(e)) => e.to_string(),
        _ => panic!("a changed threshold must be refused"),
    };
    assert!(e.contains("min_score") && e.contains("--overwrite"), "{e}");
    assert!(single.join(SUMMARY_FILE).is_file());
}

#[test]
fn glass_gives_an_empty_result_and_the_pixel_size_sets_the_working_scale() {
    let dir = common::tmp_dir("slide-glass");
    let glass = RgbImage::from_fn(1500, 1000, |x, y| {
        let n = ((x * 7 + y * 13) % 5) as u8;
        image::Rgb([244 + n, 244 + n, 242 + n])
    });
    let path = dir.join("glass.tif");
    write_pyramid(&path, &glass, &PyramidOptions::pyramidal(None)).unwrap();
    let slide = TiffSlide::open(&path).unwrap();
    assert_eq!(slide.mpp(), None);
    let out = dir.join("out");
    let Prepared::Ready(run) =
        SlideRun::prepare(&slide, SlideConfig::new(), &out, None, "baseline", false).unwrap()
    else {
        panic!("nothing finished yet")
    };
    let plan = run.plan().clone();
    assert_eq!(
        (plan.mpp, plan.mpp_source.as_str(), plan.scale),
        (None, "unknown", 1.0)
    );
    assert!(plan.tissue_tiles.is_empty() && plan.tiles_total == 2);
    assert!(run.stain_sample().unwrap().is_none());
    assert!(run.stain_groups().unwrap().samples.is_empty());
    assert_eq!(
        run.segment_tiles(&ClassicalBaseline::default(), Shard::ALL, |_| {})
            .unwrap(),
        0
    );
    let summary = run.stitch(|_| {}).unwrap();
    assert_eq!((summary.nuclei, summary.tissue_area_mm2), (0, None));
    assert!(features(&out).is_empty());
    assert_eq!(
        NucleiDb::open(out.join(DB_FILE)).unwrap().count().unwrap(),
        0
    );

    // A 20× slide (0.5 µm/px) is seen at the model's 0.25 µm/px: twice the pixels.
    let Prepared::Ready(run) = SlideRun::prepare(
        &slide,
        SlideConfig::new(),
        &dir.join("out20x"),
        Some(0.5),
        "baseline",
        false,
    )
    .unwrap() else {
        panic!("nothing finished yet")
    };
    let plan = run.plan();
    assert_eq!((plan.mpp, plan.mpp_source.as_str()), (Some(0.5), "option"));
    assert_eq!((plan.scale, plan.level), (0.5, 0));
    assert_eq!((plan.working_width, plan.working_height), (3000, 2000));
    let tile = run.read_working([100, 100, 300, 200]).unwrap();
    assert_eq!(tile.dimensions(), (200, 100));
    // An absurd --mpp is refused with the option's name.
    let e = SlideRun::prepare(
        &slide,
        SlideConfig::new(),
        &dir.join("x"),
        Some(0.0),
        "b",
        false,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("--mpp 0") && e.contains("glass.tif"), "{e}");
}
