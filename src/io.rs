//! Files written atomically and durably, and JSON in and out: the one place where nucseg
//! puts bytes on disk.
//!
//! A file is first written in full under a unique temporary name in the destination's
//! folder, created exclusively (`O_CREAT | O_EXCL`, so a file or link planted under that
//! name is never followed or truncated), flushed to the disk (`fsync`), then renamed over
//! the destination, and the folder is synced so the rename itself survives a crash. A
//! reader therefore sees the old file or the new one, never a part; after a crash at most a
//! hidden `.NAME.*.tmp` file is left behind, and the destination is intact.
//!
//! The functions return [`std::io::Error`]; each area wraps it in its own error type with
//! the path (e.g. [`DataError::Io`](crate::data::DataError::Io)).

use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

/// Writes `path` atomically and durably through a buffered writer (see the module docs).
/// On any error the temporary file is removed and `path` is left as it was.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let (dir, tmp, file) = create_temporary(path)?;
    let result = (|| {
        let mut w = BufWriter::new(file);
        write(&mut w)?;
        w.flush()?;
        w.get_ref().sync_all()?;
        drop(w);
        std::fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic_bytes(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// Atomic and durable writing for writers that take a path rather than a stream (Burn's
/// recorders and stores): `write` gets a fresh path, inside a private temporary folder
/// beside `path` (created exclusively), with `path`'s file name; the file it writes there is
/// synced and renamed over `path`. An error from `write` is returned as
/// [`std::io::ErrorKind::Other`] with its message.
pub fn write_atomic_via<E: std::fmt::Display>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> std::io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?;
    let tmp_dir = unique_name(&dir, name, "tmpdir", |p| std::fs::create_dir(p))?;
    let tmp = tmp_dir.join(name);
    let result = (|| {
        write(&tmp).map_err(|e| std::io::Error::other(e.to_string()))?;
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    let _ = std::fs::remove_dir_all(&tmp_dir);
    result
}

/// Writes `value` as pretty-printed JSON to `path`, atomically and durably.
pub fn write_json<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    write_atomic_bytes(path, text.as_bytes())
}

/// Reads JSON from `path`; malformed JSON or a value of another shape is
/// [`std::io::ErrorKind::InvalidData`] with serde's message (line and column).
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<T> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// The configuration file that goes with a weight file: the same path with extension
/// `.json` (`model.bpk` → `model.json`), so a weight file names its own architecture.
pub fn config_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// The folder a file goes into (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates the temporary file for `path` exclusively; returns its folder, name and handle.
fn create_temporary(path: &Path) -> std::io::Result<(PathBuf, PathBuf, File)> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?;
    let mut file = None;
    let tmp = unique_name(&dir, name, "tmp", |p| {
        file = Some(OpenOptions::new().write(true).create_new(true).open(p)?);
        Ok(())
    })?;
    Ok((dir, tmp, file.expect("created")))
}

/// Numbers the temporary names of this process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// `dir/.NAME.<pid>.<counter>.<suffix>`, created by `create` (which must fail with
/// `AlreadyExists` when the name is taken); retries with the next counter value.
fn unique_name(
    dir: &Path,
    name: &std::ffi::OsStr,
    suffix: &str,
    mut create: impl FnMut(&Path) -> std::io::Result<()>,
) -> std::io::Result<PathBuf> {
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let candidate = dir.join(format!(
            ".{}.{}.{n}.{suffix}",
            name.to_string_lossy(),
            std::process::id()
        ));
        match create(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Makes a rename in `dir` durable (a no-op where folders cannot be opened, e.g. Windows).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nucseg-io-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    }

    #[test]
    fn replaces_whole_files_and_leaves_nothing_behind() {
        let dir = scratch("replace");
        let p = dir.join("a.txt");
        write_atomic_bytes(&p, b"first").unwrap();
        write_atomic_bytes(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        // A failing writer keeps the old content and removes its temporary file.
        let err = write_atomic(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("disk on fire"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        write_atomic_via(&p, |tmp| std::fs::write(tmp, b"third")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"third");
        let err = write_atomic_via(&p, |_| Err("refused")).unwrap_err();
        assert_eq!(err.to_string(), "refused");
        assert_eq!(std::fs::read(&p).unwrap(), b"third");
        assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_link_at_the_temporary_name_is_not_followed() {
        let dir = scratch("planted");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        // Plant links at the next temporary names this process will try.
        let start = COUNTER.load(Ordering::Relaxed);
        for n in start..start + 64 {
            let planted = dir.join(format!(".out.{}.{n}.tmp", std::process::id()));
            std::os::unix::fs::symlink(&victim, planted).unwrap();
        }
        write_atomic_bytes(&dir.join("out"), b"result").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(dir.join("out")).unwrap(), b"result");
        assert!(
            COUNTER.load(Ordering::Relaxed) > start + 1,
            "planted names were skipped"
        );
    }

    #[test]
    fn json_round_trip_and_clear_errors() {
        let dir = scratch("json");
        let p = dir.join("v.json");
        write_json(&p, &vec![1u32, 2, 3]).unwrap();
        assert_eq!(read_json::<Vec<u32>>(&p).unwrap(), vec![1, 2, 3]);
        std::fs::write(&p, b"{ not json").unwrap();
        let err = read_json::<Vec<u32>>(&p).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("line 1"), "{err}");
        let missing = read_json::<Vec<u32>>(&dir.join("none.json")).unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    }
}
