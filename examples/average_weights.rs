//! Averages the weights of several trained models of one architecture (stochastic weight
//! averaging over the end points of training cycles) into a new model folder.
//!
//! ```text
//! cargo run --release --example average_weights -- k16long/model.bpk k16r/model.bpk --out k16avg
//! ```
//! Give the f32 `.bpk` files `train` writes (a `.safetensors` file holds f16-rounded
//! weights). Every model must have the same configuration and the same stain normalizer;
//! the first's are kept. Writes `<out>/model.bpk`, its f16 form `<out>/model.safetensors`,
//! `model.json` and (if the models have one) `model.normalizer.json`, as `train` does;
//! existing files are kept unless `--overwrite` is given.

mod common;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use clap::Parser;
use common::exit_code;
use nucseg::{
    backend::BackendKind,
    model::{
        io::{save_model, save_model_f16},
        ModelError,
    },
    output::OutputDir,
    pretrained::{
        load_bundle, normalizer_path as normalizer_path_of, write_normalizer_file, ModelBundle,
    },
    train::average_weights,
};

#[derive(Parser)]
#[command(about = "Average the weights of trained models of one architecture")]
struct Args {
    /// Weight files (`.bpk`, or `.safetensors`), each with its `.json` beside it.
    #[arg(required = true, num_args = 2..)]
    models: Vec<PathBuf>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Replace the output folder's model files if they exist.
    #[arg(long)]
    overwrite: bool,
    /// Compute device: cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: BackendKind,
}

fn main() -> ExitCode {
    exit_code(run(Args::parse()))
}

fn run(args: Args) -> nucseg::Result<()> {
    let started = Instant::now();
    let device = args.device.device()?;
    let mut bundles: Vec<(ModelBundle, Option<String>)> = Vec::with_capacity(args.models.len());
    for path in &args.models {
        let bundle = load_bundle(path, &device)?;
        let record = bundle.normalizer.as_ref().map(|n| n.record()).transpose()?;
        if let Some((first, first_record)) = bundles.first() {
            if record != *first_record {
                return Err(ModelError::WeightFile {
                    path: normalizer_path_of(path),
                    reason: format!(
                        "another stain normalizer than {}'s; average models trained on \
                         identically normalized images",
                        first.path.display()
                    ),
                }
                .into());
            }
        }
        println!("{}", path.display());
        bundles.push((bundle, record));
    }
    let models: Vec<_> = bundles.iter().map(|(b, _)| b.model.clone()).collect();
    let averaged = average_weights(&models).map_err(|e| match e {
        ModelError::AverageMismatch { index, reason } => ModelError::WeightFile {
            path: args.models[index - 1].clone(),
            reason: format!(
                "cannot be averaged with {}: it {reason}",
                args.models[0].display()
            ),
        },
        other => other,
    })?;
    // Only now, with the inputs read and averaged, the output folder.
    let out = OutputDir::create(&args.out, args.overwrite)?;
    // No output may replace an input (each input's folder holds the same names).
    let out_dir = out.path().canonicalize().ok();
    for m in &args.models {
        let dir = m
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        if dir.is_some() && dir == out_dir {
            return Err(ModelError::WeightFile {
                path: m.clone(),
                reason: "the output folder holds this input; choose another --out".into(),
            }
            .into());
        }
    }
    let (model_path, f16_path) = (out.claim("model.bpk")?, out.claim("model.safetensors")?);
    let normalizer_path = out.claim("model.normalizer.json")?;
    save_model(&averaged, &model_path)?;
    save_model_f16(&averaged, &f16_path)?;
    write_normalizer_file(bundles[0].0.normalizer.as_ref(), &normalizer_path)?;
    println!(
        "averaged {} models into {} and {} ({:.1} s)",
        models.len(),
        model_path.display(),
        f16_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
