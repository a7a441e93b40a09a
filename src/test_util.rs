//! Scratch folders for tests: fresh on creation, removed when dropped unless the test is
//! failing (so what it wrote stays to look at). The integration tests include this file
//! too (`tests/common`).

use std::path::{Path, PathBuf};

/// A fresh folder `nucseg-test-<name>-<pid>` in the system's temp folder; reads as its path.
pub struct TempDir(PathBuf);

/// See [`TempDir`]; `name` must be unique among the tests of one binary (they run in
/// parallel).
pub fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("nucseg-test-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

impl std::ops::Deref for TempDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
