//! The example programs on bad input, as a user meets them: exit status 1, one line on
//! stderr (`error: …`) naming the file and what is wrong, and every file that was there
//! before left as it was. The programs are the ones `cargo test` builds beside the tests
//! (`target/<profile>/examples/`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use nucseg::data::{write_label_map, write_rgb_png, LabelMap, RgbImage};

/// The example program `name`, built by `cargo test` next to this test binary.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/cli_errors-<hash> → target/<profile>/examples/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is not built: run `cargo test` (which builds the examples) or `cargo build --examples` first",
        path.display()
    );
    path
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    files
}

/// Runs example `name` with `args` in `dir` and asserts it failed as it should: exit 1,
/// stderr one line `error: …` containing every one of `needles`, no panic, and nothing
/// under `dir` that existed before changed or gone. Returns the line.
fn fails(dir: &Path, name: &str, args: &[&str], needles: &[&str]) -> String {
    let before = snapshot(dir);
    let out = Command::new(example(name))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{name} {args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{name} {args:?}: not one line:\n{stderr}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for n in needles {
        assert!(
            line.contains(n),
            "{name} {args:?}: `{line}` does not say `{n}`"
        );
    }
    let after = snapshot(dir);
    for (path, bytes) in &before {
        assert_eq!(after.get(path), Some(bytes), "{} changed", path.display());
    }
    line.to_string()
}

fn tile() -> RgbImage {
    RgbImage::from_fn(64, 64, |x, y| {
        if (x / 16 + y / 16) % 2 == 0 {
            image::Rgb([90, 50, 140])
        } else {
            image::Rgb([235, 180, 210])
        }
    })
}

#[test]
fn segment_refuses_hostile_images_and_keeps_existing_outputs() {
    let dir = common::tmp_dir("cli-segment");
    std::fs::write(dir.join("bomb.png"), common::png_bomb(60000, 60000)).unwrap();
    fails(
        &dir,
        "segment",
        &["bomb.png", "--out", "out"],
        &["bomb.png", "over the limit", "--max-pixels"],
    );
    // A truncated PNG: the first 40 bytes of a real one.
    write_rgb_png(dir.join("tile.png"), &tile()).unwrap();
    let whole = std::fs::read(dir.join("tile.png")).unwrap();
    std::fs::write(dir.join("cut.png"), &whole[..40]).unwrap();
    fails(&dir, "segment", &["cut.png", "--out", "out"], &["cut.png"]);
    fails(&dir, "segment", &["none.png"], &["none.png"]);
    // An output of an earlier run stays unless --overwrite says otherwise, and is found
    // before the model loads.
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::write(dir.join("out/tile_labels.png"), b"an earlier result").unwrap();
    fails(
        &dir,
        "segment",
        &["tile.png", "--out", "out"],
        &["tile_labels.png", "already exists", "--overwrite"],
    );
    // A threshold that would drop every nucleus.
    fails(
        &dir,
        "segment",
        &["tile.png", "--out", "fresh", "--min-score", "NaN"],
        &["min_score", "NaN"],
    );
    // A mask box scale outside [1, 2].
    fails(
        &dir,
        "segment",
        &["tile.png", "--out", "fresh", "--mask-box-scale", "3"],
        &["--mask-box-scale", "3", "[1, 2]"],
    );
}

#[test]
fn baseline_never_writes_over_its_inputs_and_evaluate_fails_when_nothing_pairs() {
    let dir = common::tmp_dir("cli-baseline");
    std::fs::create_dir_all(dir.join("in")).unwrap();
    write_rgb_png(dir.join("in/a.png"), &tile()).unwrap();
    fails(
        &dir,
        "baseline",
        &["--images", "in", "--out", "in", "--overwrite"],
        &["a.png", "one of the input files"],
    );
    std::fs::create_dir_all(dir.join("truth")).unwrap();
    std::fs::create_dir_all(dir.join("pred")).unwrap();
    let map = LabelMap::from_fn(20, 20, |x, y| u32::from(x < 10 && y < 10));
    write_label_map(dir.join("truth/a.png"), &map).unwrap();
    write_label_map(dir.join("pred/b_labels.png"), &map).unwrap();
    fails(
        &dir,
        "evaluate",
        &["--truth", "truth", "--pred", "pred"],
        &["pred", "no prediction matches"],
    );
}

#[test]
fn train_refuses_absurd_settings_and_an_old_run_before_reading_data() {
    let dir = common::tmp_dir("cli-train");
    // No data folder exists: each refusal comes before the data would be read.
    fails(
        &dir,
        "train",
        &["--data", "no-data", "--out", "run", "--lr", "inf"],
        &["lr", "inf"],
    );
    std::fs::create_dir_all(dir.join("old/checkpoints/step-0000100")).unwrap();
    std::fs::write(dir.join("old/checkpoints/latest"), "step-0000100").unwrap();
    fails(
        &dir,
        "train",
        &["--data", "no-data", "--out", "old"],
        &["old/checkpoints", "earlier run", "--resume"],
    );
}

#[test]
fn segment_slide_fails_in_one_line_on_bad_slides_manifests_and_shards() {
    let dir = common::tmp_dir("cli-slide");
    std::fs::write(dir.join("cohort.csv"), "slide,id\nmissing.svs,a\n").unwrap();
    fails(
        &dir,
        "segment_slide",
        &["--manifest", "cohort.csv", "--index", "0", "--out", "out"],
        &["missing.svs", "No such file"],
    );
    fails(
        &dir,
        "segment_slide",
        &["--manifest", "cohort.csv", "--index", "5", "--out", "out"],
        &["cohort.csv", "row 5", "1 slide"],
    );
    std::fs::write(dir.join("bad.csv"), "path\nx.svs\n").unwrap();
    fails(
        &dir,
        "segment_slide",
        &["--manifest", "bad.csv", "--index", "0"],
        &["bad.csv", "no `slide` column"],
    );
    // A truncated slide: half of a pyramid, whose tiles past the cut do not read.
    let whole = dir.join("whole.tif");
    let image = RgbImage::from_fn(600, 500, |x, y| {
        image::Rgb([(x % 256) as u8, 90, (y % 256) as u8])
    });
    nucseg::slide::write_pyramid(
        &whole,
        &image,
        &nucseg::slide::PyramidOptions::pyramidal(Some(0.25)),
    )
    .unwrap();
    let bytes = std::fs::read(&whole).unwrap();
    std::fs::write(dir.join("half.tif"), &bytes[..bytes.len() / 2]).unwrap();
    fails(
        &dir,
        "segment_slide",
        &["half.tif", "--out", "out"],
        &["half.tif"],
    );
    // A shard that does not exist: clap's usage error (exit 2) names the rule.
    let out = Command::new(example("segment_slide"))
        .args(["whole.tif", "--shard", "5/3"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 <= k < n"));
}

#[test]
fn evaluate_setups_score_any_annotated_folder_and_refuse_a_partial_kumar_test_split() {
    let dir = common::tmp_dir("cli-evaluate-setups");
    let assets = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets");
    let sample = "TCGA-21-5784-01Z-00-DX1_crop.png";
    let truth = nucseg::data::read_label_map(assets.join("sample-truth").join(sample)).unwrap();
    // One Kumar test image under its own name: the test split is incomplete, say which.
    for (set, name) in [
        ("kumar", "TCGA-21-5784-01Z-00-DX1.png"),
        ("mine", "tile.png"),
    ] {
        std::fs::create_dir_all(dir.join(set).join("images")).unwrap();
        std::fs::create_dir_all(dir.join(set).join("labels")).unwrap();
        let image = std::fs::read(assets.join("sample").join(sample)).unwrap();
        std::fs::write(dir.join(set).join("images").join(name), image).unwrap();
        write_label_map(dir.join(set).join("labels").join(name), &truth).unwrap();
    }
    fails(
        &dir,
        "evaluate",
        &["--setups", "NucSeg-P", "--data", "kumar"],
        &[
            "kumar",
            "`test` split needs 13 image(s)",
            "TCGA-21-5786-01Z-00-DX1",
        ],
    );
    // Other names in the same layout (as CPM-15's): every image is scored, one CSV line each.
    let args = [
        "--setups",
        "NucSeg-P",
        "--data",
        "mine",
        "--per-image-csv",
        "images.csv",
    ];
    let out = Command::new(example("evaluate"))
        .args(args)
        .current_dir(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("scoring all 1 images"), "{stderr}");
    let csv = std::fs::read_to_string(dir.join("images.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert_eq!(lines[0], nucseg::metrics::PER_IMAGE_CSV_HEADER.trim_end());
    let fields: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(&fields[..3], ["NucSeg-P", "tile", ""], "{csv}");
    assert_eq!(fields[3], truth.count().to_string(), "{csv}");
    // The shipped model on this tile: AJI 0.552 (tests/default_model.rs measures it).
    let (n_pred, aji): (usize, f64) = (fields[4].parse().unwrap(), fields[5].parse().unwrap());
    assert!(n_pred > 0 && aji > 0.45, "{csv}");
    // An existing output is not replaced without --overwrite.
    fails(&dir, "evaluate", &args, &["images.csv", "already exists"]);
}

#[test]
fn dcgmm_in_front_of_a_macenko_model_asks_for_the_models_template() {
    let dir = common::tmp_dir("cli-dcgmm-template");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/sample/TCGA-21-5784-01Z-00-DX1_crop.png");
    let sample = sample.to_str().unwrap();
    let note = "DCGMM maps onto its network's own template";
    // A Macenko-trained bundle that is not the shipped one: the shipped model's files under
    // another name (its training template need not be the DCGMM network's).
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    for ext in ["safetensors", "json", "normalizer.json"] {
        std::fs::copy(
            models.join(format!("nucseg-default.{ext}")),
            dir.join(format!("mine.{ext}")),
        )
        .unwrap();
    }
    let run = |extra: &[&str], out: &str| {
        let mut args = vec![
            sample,
            "--normalize",
            "dcgmm",
            "--tta",
            "none",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        let out = Command::new(example("segment"))
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "segment {args:?}: {stderr}");
        stderr
    };
    // Without --template the user of another Macenko-trained model is told, once, that
    // DCGMM's own template may not be the model's colours.
    let stderr = run(&["--model", "mine.safetensors"], "own");
    assert_eq!(stderr.matches(note).count(), 1, "{stderr}");
    assert!(stderr.contains("--template"), "{stderr}");
    // The shipped model with the shipped DCGMM network: the network's template is the
    // model's (TCGA-G9-6356), nothing to say.
    let stderr = run(&[], "shipped");
    assert!(!stderr.contains(note), "{stderr}");
    let shipped_dcgmm = models.join("dcgmm-kumar.bpk");
    let stderr = run(
        &["--dcgmm-model", shipped_dcgmm.to_str().unwrap()],
        "shipped-named",
    );
    assert!(!stderr.contains(note), "{stderr}");
    // With a template given (the user chose the colours) there is nothing to say.
    let stderr = run(
        &["--model", "mine.safetensors", "--template", sample],
        "given",
    );
    assert!(!stderr.contains(note), "{stderr}");
}

#[test]
fn average_weights_refuses_other_normalizers_and_its_inputs_folder_and_averages_the_rest() {
    let dir = common::tmp_dir("cli-average");
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    for m in ["a", "b", "c"] {
        std::fs::create_dir_all(dir.join(m)).unwrap();
        for ext in ["safetensors", "json", "normalizer.json"] {
            std::fs::copy(
                models.join(format!("nucseg-default.{ext}")),
                dir.join(m).join(format!("model.{ext}")),
            )
            .unwrap();
        }
    }
    // c's Macenko normalizer is another one: a setting nudged.
    let path = dir.join("c/model.normalizer.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    fn nudge(v: &mut serde_json::Value) -> bool {
        match v {
            serde_json::Value::Number(n) => {
                *v = serde_json::json!(n.as_f64().unwrap() + 0.01);
                true
            }
            serde_json::Value::Array(a) => a.iter_mut().any(nudge),
            serde_json::Value::Object(o) => o.values_mut().any(nudge),
            _ => false,
        }
    }
    assert!(nudge(&mut value), "{value}");
    std::fs::write(&path, value.to_string()).unwrap();

    let (a, b, c) = (
        "a/model.safetensors",
        "b/model.safetensors",
        "c/model.safetensors",
    );
    fails(
        &dir,
        "average_weights",
        &[a, c, "--out", "out"],
        &[
            "c/model.normalizer.json",
            "another stain normalizer",
            "a/model.safetensors",
        ],
    );
    assert!(
        !dir.join("out").exists(),
        "a refused run made its output folder"
    );
    // A bare file name: the output folder "." holds it.
    fails(
        &dir.join("a"),
        "average_weights",
        &[
            "model.safetensors",
            "../b/model.safetensors",
            "--out",
            ".",
            "--overwrite",
        ],
        &["model.safetensors", "output folder holds this input"],
    );
    fails(
        &dir,
        "average_weights",
        &[a, b, "--out", "b", "--overwrite"],
        &["b/model.safetensors", "output folder holds this input"],
    );
    let out = Command::new(example("average_weights"))
        .args([a, b, "--out", "avg"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two copies of one model average to it: the same network configuration (written anew,
    // so fields added since the shipped file was written appear with their defaults) and
    // the normalizer carried over byte for byte.
    let config = |p: &str| {
        use burn::config::Config;
        let c = nucseg::model::MaskRcnnConfig::load(dir.join(p)).unwrap();
        serde_json::to_value(c).unwrap()
    };
    assert_eq!(config("avg/model.json"), config("a/model.json"));
    assert_eq!(
        std::fs::read(dir.join("avg/model.normalizer.json")).unwrap(),
        std::fs::read(dir.join("a/model.normalizer.json")).unwrap(),
    );
    let bundle = |p: &str| {
        nucseg::pretrained::load_bundle(&dir.join(p), &nucseg::backend::Device::flex()).unwrap()
    };
    let (x, y) = (
        bundle("a/model.safetensors").model,
        bundle("avg/model.bpk").model,
    );
    assert_eq!(
        x.rpn_head.conv.weight.val().into_data(),
        y.rpn_head.conv.weight.val().into_data()
    );
    // An existing output is kept unless --overwrite is given.
    fails(
        &dir,
        "average_weights",
        &[a, b, "--out", "avg"],
        &["avg/model.bpk"],
    );
}

#[test]
fn normalize_checks_save_template_before_making_its_output_folder() {
    let dir = common::tmp_dir("cli-normalize-template");
    write_rgb_png(dir.join("tile.png"), &tile()).unwrap();
    let network = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/dcgmm-kumar.bpk");
    let network = network.to_str().unwrap();
    std::fs::write(dir.join("kept.json"), "{}").unwrap();
    for (args, needles) in [
        (
            vec!["--method", "macenko", "--save-template", "t.json"],
            vec!["--save-template is for --method dcgmm"],
        ),
        (
            vec![
                "--method",
                "dcgmm",
                "--model",
                network,
                "--save-template",
                "kept.json",
            ],
            vec!["kept.json"],
        ),
        (
            vec!["--method", "dcgmm", "--save-template", "t.json"],
            vec!["needs a trained model"],
        ),
        (
            vec![
                "--method",
                "dcgmm",
                "--model",
                "none.bpk",
                "--save-template",
                "t.json",
            ],
            vec!["none.bpk"],
        ),
    ] {
        let mut all = vec!["tile.png", "--template", "tile.png", "--out", "made"];
        all.extend(args);
        fails(&dir, "normalize", &all, &needles);
        assert!(!dir.join("made").exists(), "{all:?} made its output folder");
        assert!(!dir.join("t.json").exists(), "{all:?}");
    }
}

#[test]
fn evaluate_refuses_clean_up_flags_when_it_scores_given_predictions() {
    let dir = common::tmp_dir("cli-evaluate-cleanup");
    for flag in [["--min-kept", "0.9"], ["--absorb-share", "off"]] {
        let out = Command::new(example("evaluate"))
            .args(["--truth", "t", "--pred", "p"])
            .args(flag)
            .current_dir(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("{} applies to --setups", flag[0])),
            "{stderr}"
        );
    }
}
