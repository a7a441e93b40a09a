//! Readers on the real data sets in `shared/data`.

mod common;

use nucseg::{
    data::{
        read_label_map, read_monuseg_xml, read_rgb, DataError, KumarSplit, MonusegDataset,
        PairedFolderDataset,
    },
    metrics::{dice, ImageMetrics},
};

#[test]
fn monuseg_folder_and_kumar_split() {
    let ds = MonusegDataset::open(common::monuseg()).unwrap();
    assert_eq!(ds.samples().len(), 30);
    let train = ds.split(KumarSplit::Train).unwrap();
    let test = ds.split(KumarSplit::Test).unwrap();
    assert_eq!((train.len(), test.len()), (16, 14));
    assert_eq!(ds.split(KumarSplit::TestUnseenOrgan).unwrap().len(), 6);
    // index.tsv, written independently, agrees with the built-in table.
    let index = std::fs::read_to_string(common::monuseg().join("index.tsv")).unwrap();
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let s = ds.samples().iter().find(|s| s.id == cols[0]).unwrap();
        assert_eq!(s.organ.unwrap().name(), cols[1], "{}", cols[0]);
        assert_eq!(s.split.unwrap().name(), cols[2], "{}", cols[0]);
    }
    // One sample loads fully, with its nucleus count from index.tsv.
    let sample = test[0].load().unwrap();
    assert_eq!(sample.image.dimensions(), (1000, 1000));
    assert_eq!(sample.labels.unwrap().count(), 398, "{}", test[0].id);
}

#[test]
fn every_monuseg_tif_loads_as_1000_square_rgb() {
    for entry in std::fs::read_dir(common::monuseg().join("images")).unwrap() {
        let path = entry.unwrap().path();
        let img = read_rgb(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(img.dimensions(), (1000, 1000), "{}", path.display());
        // Real tissue: not blank.
        let dark = img.pixels().filter(|p| p[0] < 150).count();
        assert!(dark > 10_000, "{}: {dark} dark pixels", path.display());
    }
}

#[test]
fn rasterized_xml_agrees_with_the_label_maps() {
    let root = common::monuseg();
    let mut n = 0;
    let mut dice_sum = 0.0;
    for entry in std::fs::read_dir(root.join("annotations")).unwrap() {
        let xml = entry.unwrap().path();
        let id = xml.file_stem().unwrap().to_str().unwrap().to_string();
        let ann = read_monuseg_xml(&xml).unwrap();
        let truth = read_label_map(root.join("labels").join(format!("{id}.png"))).unwrap();
        let raster = ann.to_label_map(1000, 1000);
        let d = dice(&truth, &raster).unwrap();
        let m = ImageMetrics::compute(&truth, &raster).unwrap();
        // One file (TCGA-B0-5710) agrees less well (0.92): its masks were drawn apart.
        assert!(d > 0.9, "{id}: pixel Dice {d}");
        assert!(m.f1_iou50.f1 > 0.95, "{id}: object F1 {}", m.f1_iou50.f1);
        dice_sum += d;
        let diff = (raster.count() as i64 - truth.count() as i64).abs();
        assert!(
            diff <= 3,
            "{id}: {} regions vs {} nuclei",
            raster.count(),
            truth.count()
        );
        n += 1;
    }
    assert_eq!(n, 13);
    assert!(dice_sum / 13.0 > 0.98, "mean Dice {}", dice_sum / 13.0);
}

#[test]
fn naylor_masks_become_components() {
    let ds = PairedFolderDataset::naylor(common::shared().join("data/tnbc")).unwrap();
    assert_eq!(ds.samples().len(), 50);
    let s = ds.samples()[0].load().unwrap();
    assert_eq!(s.image.dimensions(), (512, 512));
    let labels = s.labels.unwrap();
    assert!(labels.count() > 5, "{} components", labels.count());
}

#[test]
fn cpm15_label_maps_read() {
    let root = common::shared().join("data/cpm15");
    let ds =
        PairedFolderDataset::open(root.join("images"), root.join("labels"), Default::default())
            .unwrap();
    assert_eq!(ds.samples().len(), 15);
    let total: usize = ds
        .samples()
        .iter()
        .map(|s| s.load().unwrap().labels.unwrap().count())
        .sum();
    assert_eq!(total, 2905);
}

#[test]
fn mismatched_truth_size_is_reported_with_both_files() {
    let dir = common::tmp_dir("mismatch");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("labels")).unwrap();
    image::RgbImage::new(8, 8)
        .save(dir.join("images/a.png"))
        .unwrap();
    nucseg::data::write_label_map(dir.join("labels/a.png"), &nucseg::data::LabelMap::new(8, 7))
        .unwrap();
    let ds = MonusegDataset::open(&dir).unwrap();
    let err = ds.samples()[0].load().unwrap_err();
    assert!(matches!(err, DataError::SizeMismatch { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("images/a.png") && msg.contains("labels/a.png") && msg.contains("8x7"),
        "{msg}"
    );
    // A split that needs images the folder lacks is an error, not a smaller split.
    let err = ds.split(KumarSplit::Test).unwrap_err();
    assert!(err.to_string().contains("14 image(s)"), "{err}");
}
