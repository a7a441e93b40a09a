//! Scores a folder of predicted label maps against ground truth.
//!
//! ```text
//! cargo run --example evaluate -- --truth ../shared/data/monuseg-kumar/labels --pred out/ [--split test] [--json]
//! ```
//! Truth files are label maps (`.png`, `.tif`) or MoNuSeg XML (`.xml`); predictions are
//! label maps with the same file stem. A missing prediction counts as empty.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use nucseg::{data::KumarSplit, metrics};

#[derive(Parser)]
#[command(
    about = "Score predicted nuclei label maps against ground truth (AJI, AJI+, PQ, Dice, F1)"
)]
struct Args {
    /// Folder of ground-truth label maps or MoNuSeg XML annotations.
    #[arg(long)]
    truth: PathBuf,
    /// Folder of predicted label maps (same file stems as the truth).
    #[arg(long)]
    pred: PathBuf,
    /// Print one JSON object keyed by image stem (metric names as in
    /// shared/metrics-golden/expected.json) instead of the table; summaries go to stderr.
    #[arg(long)]
    json: bool,
    /// Score only the images of this Kumar split (train, test, test_same_organ,
    /// test_unseen_organ); a missing prediction still counts as empty.
    #[arg(long)]
    split: Option<KumarSplit>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let ids = args.split.map(|s| s.ids());
    let keep = |stem: &str| ids.as_ref().is_none_or(|ids| ids.contains(&stem));
    match metrics::evaluate_folders_where(&args.truth, &args.pred, keep) {
        Ok(evaluation) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&evaluation.to_json()).expect("serializable")
                );
                eprintln!(
                    "{}",
                    serde_json::to_string(&evaluation.summary).expect("serializable")
                );
            } else {
                print!("{}", evaluation.table());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
