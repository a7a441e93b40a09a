//! Writing results into an output folder without clobbering what is already there.

use std::path::{Path, PathBuf};

use crate::data::{write_label_map, DataError, LabelMap};

/// An output folder. Files are written atomically, and an existing file is an error
/// ([`DataError::WouldOverwrite`]) unless the folder was opened with `overwrite`.
#[derive(Debug, Clone)]
pub struct OutputDir {
    dir: PathBuf,
    overwrite: bool,
    /// Canonical paths of the inputs, which no output may replace.
    inputs: Vec<PathBuf>,
}

impl OutputDir {
    /// Creates the folder (and its parents) if needed; an error if the path is a file.
    pub fn create(dir: impl AsRef<Path>, overwrite: bool) -> Result<Self, DataError> {
        let dir = dir.as_ref().to_path_buf();
        if dir.exists() && !dir.is_dir() {
            return Err(DataError::Dataset {
                dir,
                message: "output path exists and is not a folder".into(),
            });
        }
        std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
        Ok(OutputDir {
            dir,
            overwrite,
            inputs: Vec::new(),
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// An output folder for results of `inputs`, every name checked before any work is
    /// done: two inputs with one stem (their outputs would collide) are a
    /// [`DataError::DuplicateStem`], each of `names(stem)` for each input is claimed
    /// ([`claim`](Self::claim)), and no output may ever replace an input, even with
    /// `overwrite`.
    pub fn for_inputs(
        dir: impl AsRef<Path>,
        overwrite: bool,
        inputs: &[PathBuf],
        names: impl Fn(&str) -> Vec<String>,
    ) -> Result<Self, DataError> {
        let mut out = Self::create(dir, overwrite)?;
        let mut seen = std::collections::BTreeMap::new();
        for input in inputs {
            if let Some(first) = seen.insert(stem(input), input) {
                return Err(DataError::DuplicateStem {
                    dir: out.dir.clone(),
                    stem: stem(input),
                    first: first.clone(),
                    second: input.clone(),
                });
            }
        }
        out.inputs = inputs
            .iter()
            .filter_map(|p| p.canonicalize().ok())
            .collect();
        for input in inputs {
            for name in names(&stem(input)) {
                out.claim(&name)?;
            }
        }
        Ok(out)
    }

    /// The path of an output file, checked: an error if it exists and overwriting is off,
    /// and always if it is one of the inputs given to [`for_inputs`](Self::for_inputs).
    pub fn claim(&self, file_name: &str) -> Result<PathBuf, DataError> {
        let path = self.dir.join(file_name);
        if !self.inputs.is_empty() {
            let target = path
                .canonicalize()
                .ok()
                .or_else(|| self.dir.canonicalize().ok().map(|d| d.join(file_name)));
            if target.is_some_and(|t| self.inputs.contains(&t)) {
                return Err(DataError::WouldReplaceInput { path });
            }
        }
        if !self.overwrite && path.exists() {
            return Err(DataError::WouldOverwrite { path });
        }
        Ok(path)
    }

    /// Writes the label map predicted for `source` (an input image path) as
    /// `<stem>.png`, or `<stem>.tif` when an id exceeds 16 bits. Returns the path written.
    pub fn write_label_map(&self, source: &Path, labels: &LabelMap) -> Result<PathBuf, DataError> {
        let ext = if labels.max_id() > u16::MAX as u32 {
            "tif"
        } else {
            "png"
        };
        let path = self.claim(&format!("{}.{ext}", stem(source)))?;
        write_label_map(&path, labels)?;
        Ok(path)
    }
}

/// The file stem of a path, as a string (`"image"` when it has none).
pub fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_clobber_unless_asked() {
        let root = crate::test_util::temp_dir("output-clobber");
        let out = OutputDir::create(root.join("o"), false).unwrap();
        let map = LabelMap::from_fn(3, 3, |x, _| x);
        let p = out
            .write_label_map(Path::new("/data/slide.tif"), &map)
            .unwrap();
        assert_eq!(p.file_name().unwrap(), "slide.png");
        let err = out
            .write_label_map(Path::new("slide.png"), &LabelMap::new(3, 3))
            .unwrap_err();
        assert!(matches!(err, DataError::WouldOverwrite { .. }), "{err}");
        assert_eq!(
            crate::data::read_label_map(&p).unwrap(),
            map,
            "original kept"
        );
        let again = OutputDir::create(root.join("o"), true).unwrap();
        again
            .write_label_map(Path::new("slide.png"), &LabelMap::new(3, 3))
            .unwrap();
        assert_eq!(crate::data::read_label_map(&p).unwrap().count(), 0);

        std::fs::write(root.join("file"), b"x").unwrap();
        assert!(OutputDir::create(root.join("file"), true).is_err());
    }
}
