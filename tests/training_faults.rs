//! Crashes during training: a run killed with SIGKILL while it writes a checkpoint resumes
//! from the last complete one, and the resumed run's losses equal an uninterrupted run's
//! bit for bit.

mod common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nucseg::burn::tensor::Device;
use nucseg::data::{LabelMap, RgbImage};
use nucseg::model::MaskRcnnConfig;
use nucseg::train::{MaskRcnnTrainer, MaskRcnnTrainingConfig, RunData, StartMode, TrainingImage};

const STEPS: usize = 8;
/// The child process's checkpoint folder; set only when the test binary runs as the child.
const CHILD_DIR: &str = "NUCSEG_FAULT_CHILD_DIR";

fn data() -> Vec<TrainingImage> {
    let mut labels = LabelMap::new(96, 96);
    let image = RgbImage::from_fn(96, 96, |x, y| {
        let (cx, cy) = ((x / 24) * 24 + 12, (y / 24) * 24 + 12);
        if (x as i32 - cx as i32).pow(2) + (y as i32 - cy as i32).pow(2) < 49 {
            labels.set(x, y, (x / 24) + (y / 24) * 10 + 1);
            image::Rgb([80, 50, 140])
        } else {
            image::Rgb([230, 170, 200])
        }
    });
    vec![TrainingImage {
        id: "t".into(),
        image,
        labels,
    }]
}

fn config() -> MaskRcnnTrainingConfig {
    MaskRcnnTrainingConfig::new()
        .with_batch_size(1)
        .with_crop_size(64)
        .with_steps(STEPS)
        .with_warmup_steps(0)
        .with_lr(0.01)
        .with_checkpoint_every(1)
        .with_seed(7)
}

/// Trains into `dir` (resuming when it has a checkpoint), calling `on_step` with each
/// step's total loss as bits.
fn train_into(dir: &Path, mut on_step: impl FnMut(usize, u32)) {
    let device = Device::flex();
    device.seed(9);
    let mode = if dir.join("latest").exists() {
        StartMode::Resume {
            allow_changes: false,
        }
    } else {
        // A run killed before its first complete checkpoint leaves a partial one.
        StartMode::Replace
    };
    let run = RunData {
        images: vec!["t".into()],
        normalizer: "none".into(),
        init: None,
    };
    let mut trainer = MaskRcnnTrainer::start(
        &MaskRcnnConfig::tiny(),
        config(),
        &device,
        dir.to_path_buf(),
        mode,
        run,
    )
    .unwrap();
    trainer
        .train(&data(), |r| on_step(r.step, r.total.to_bits()))
        .unwrap();
}

/// The child's side: only does something when the fault test started this binary.
#[test]
#[ignore = "run by killed_while_checkpointing_resumes_exactly as its child process"]
fn fault_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    train_into(Path::new(&dir), |step, bits| println!("step {step} {bits}"));
}

/// The temporary files and folders of atomic writes under `dir` (one level of folders).
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let is_tmp = |p: &PathBuf| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().contains(".tmp"))
    };
    let list = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .map(|es| es.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    let mut found = Vec::new();
    for p in list(dir) {
        if is_tmp(&p) {
            found.push(p);
        } else if p.is_dir() {
            found.extend(list(&p).into_iter().filter(is_tmp));
        }
    }
    found
}

#[test]
fn killed_while_checkpointing_resumes_exactly() {
    let mut straight = Vec::new();
    train_into(&common::tmp_dir("faults-straight"), |_, bits| {
        straight.push(bits)
    });
    assert_eq!(straight.len(), STEPS);

    let dir = common::tmp_dir("faults-killed");
    let exe = std::env::current_exe().unwrap();
    let mut seen: BTreeMap<usize, u32> = BTreeMap::new();
    let (mut kills_mid_write, mut finished) = (0, false);
    for _attempt in 0..12 {
        let mut child = Command::new(&exe)
            .args(["--ignored", "--exact", "fault_child", "--nocapture"])
            .env(CHILD_DIR, dir.as_os_str())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| {
                    let mut it = l.strip_prefix("step ")?.split(' ');
                    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
                })
                .collect::<Vec<(usize, u32)>>()
        });
        // Up to three kills while a checkpoint file is being written; then let it finish.
        let mut killed = false;
        let left_before = temporaries(&dir); // what earlier kills left behind
        if kills_mid_write < 3 {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(120) {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if temporaries(&dir).iter().any(|t| !left_before.contains(t)) {
                    child.kill().unwrap(); // SIGKILL
                    killed = true;
                    kills_mid_write += 1;
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let status = child.wait().unwrap();
        for (step, bits) in reader.join().unwrap() {
            assert_eq!(
                bits,
                straight[step - 1],
                "step {step}: the resumed run differs from the uninterrupted one"
            );
            seen.insert(step, bits);
        }
        if !killed {
            assert!(status.success(), "the child failed: {status}");
            finished = true;
            break;
        }
        // What a crash leaves: `latest` (if any) names a complete checkpoint.
        if let Ok(name) = std::fs::read_to_string(dir.join("latest")) {
            let ckpt = dir.join(name.trim());
            for file in ["model.bpk", "model.json", "optimizer.bpk", "trainer.json"] {
                assert!(ckpt.join(file).is_file(), "{} lacks {file}", ckpt.display());
            }
        }
    }
    eprintln!(
        "{kills_mid_write} kill(s) during checkpoint writes; {} steps",
        seen.len()
    );
    assert!(finished, "the run never finished");
    assert!(
        kills_mid_write >= 1,
        "no kill landed during a checkpoint write"
    );
    assert_eq!(seen.len(), STEPS, "steps seen: {:?}", seen.keys());
}
