//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The project's shared folder with real data (`../shared` beside the repository, or
/// `$NUCSEG_SHARED`). Tests that need it fail loudly when it is missing rather than
/// silently passing.
pub fn shared() -> PathBuf {
    let dir = std::env::var_os("NUCSEG_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    assert!(
        dir.join("data").is_dir(),
        "real test data not found at {} (set NUCSEG_SHARED to the folder holding data/ and metrics-golden/)",
        dir.display()
    );
    dir
}

pub fn monuseg() -> PathBuf {
    shared().join("data/monuseg-kumar")
}

pub fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nucseg-test-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
