//! Small helpers shared by command-line programs (the examples): exit codes and the
//! lookup of a ground-truth file for an image.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use crate::data::{DataError, MaskKind, TruthFile};

/// The exit code of a program's `run`: on error, prints `error: <message>` on one line to
/// stderr and returns failure (1).
pub fn exit_code<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The ground truth for `image` given a `--truth` argument: the file itself, or in a
/// folder the label map (`.png`, `.tif`) or MoNuSeg annotation (`.xml`) with the image's
/// file stem. `Ok(None)` when a folder has no such file.
pub fn truth_for(truth: &Path, image: &Path) -> Result<Option<TruthFile>, DataError> {
    let as_truth = |p: PathBuf| {
        if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml")) {
            TruthFile::Xml(p)
        } else {
            TruthFile::LabelMap(p, MaskKind::Auto)
        }
    };
    if truth.is_file() {
        return Ok(Some(as_truth(truth.to_path_buf())));
    }
    if !truth.is_dir() {
        return Err(DataError::Io {
            path: truth.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        });
    }
    let stem = crate::output::stem(image);
    Ok(["png", "tif", "tiff", "xml"]
        .iter()
        .map(|ext| truth.join(format!("{stem}.{ext}")))
        .find(|p| p.is_file())
        .map(as_truth))
}
