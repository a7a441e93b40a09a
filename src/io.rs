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

/// Writes a file given its destination's temporary path (one member of [`write_together`]).
pub type PathWriter<'a> = Box<dyn FnOnce(&Path) -> Result<(), String> + 'a>;

/// Writes several files of one folder as a unit (a model's weights and its configuration):
/// after a crash at any point a reader finds all the old files or all the new ones, never
/// a mix.
///
/// Each file is first written atomically to a hidden staged name (`.NAME.staged`); then a
/// journal listing the group (`.FIRST.commit`) is written atomically — the commit point —
/// and the staged files are renamed over their destinations; the journal is removed last.
/// A crash before the journal exists leaves the old files in place; a crash after it is
/// completed by [`finish_interrupted`], which readers of the group call first (and so does
/// the next write).
pub fn write_together(files: Vec<(PathBuf, PathWriter<'_>)>) -> std::io::Result<()> {
    write_together_until(files, Phase::Done)
}

/// Writes a weight file (with `write`, given a temporary path) and `config` as pretty JSON
/// in its configuration file ([`config_path`]) as one unit ([`write_together`]).
pub fn write_with_config<T: serde::Serialize + ?Sized>(
    weights: &Path,
    write: PathWriter<'_>,
    config: &T,
) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(config).map_err(std::io::Error::other)?;
    write_together(vec![
        (weights.to_path_buf(), write),
        (
            config_path(weights),
            Box::new(move |p: &Path| std::fs::write(p, text).map_err(|e| e.to_string())),
        ),
    ])
}

/// [`finish_interrupted`] for a weight file and its configuration file: what a loader of
/// a [`write_with_config`] pair calls first.
pub fn finish_interrupted_with_config(weights: &Path) -> std::io::Result<()> {
    finish_interrupted(&[weights, &config_path(weights)])
}

/// How far [`write_together_until`] goes: a crash simulated for the tests.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// All files staged, no journal.
    Staged,
    /// The journal written, nothing renamed.
    Committed,
    /// The first file renamed over its destination.
    FirstRenamed,
    Done,
}

fn write_together_until(files: Vec<(PathBuf, PathWriter<'_>)>, stop: Phase) -> std::io::Result<()> {
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let Some(first) = paths.first() else {
        return Ok(());
    };
    let dir = parent_dir(first);
    if let Some(p) = paths.iter().find(|p| parent_dir(p) != dir) {
        return Err(std::io::Error::other(format!(
            "{} is not in the folder of {}",
            p.display(),
            first.display()
        )));
    }
    let names = paths
        .iter()
        .map(|p| file_name(p))
        .collect::<std::io::Result<Vec<_>>>()?;
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    // An earlier interrupted write of this group is completed first: its journal must not
    // later adopt the files staged below.
    finish_interrupted(&refs)?;
    let staged = paths
        .iter()
        .map(|p| staged_path(p))
        .collect::<std::io::Result<Vec<_>>>()?;
    for ((_, write), to) in files.into_iter().zip(&staged) {
        if let Err(e) = write_atomic_via(to, write) {
            for s in &staged {
                let _ = std::fs::remove_file(s);
            }
            return Err(e);
        }
    }
    if stop == Phase::Staged {
        return Ok(());
    }
    let journal = journal_path(first)?;
    write_atomic_bytes(&journal, names.join("\n").as_bytes())?;
    if stop == Phase::Committed {
        return Ok(());
    }
    for (from, path) in staged.iter().zip(&paths) {
        std::fs::rename(from, path)?;
        if stop == Phase::FirstRenamed {
            return Ok(());
        }
    }
    sync_dir(&dir)?;
    std::fs::remove_file(&journal)?;
    sync_dir(&dir)
}

/// Completes a [`write_together`] of `paths` (the same files, first one first) that a
/// crash interrupted after its commit point; does nothing when there is none. Staged files
/// without a journal (a write interrupted before its commit point) are left alone: the old
/// files stand.
pub fn finish_interrupted(paths: &[&Path]) -> std::io::Result<()> {
    let Some(first) = paths.first() else {
        return Ok(());
    };
    let journal = journal_path(first)?;
    let text = match std::fs::read_to_string(&journal) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let dir = parent_dir(first);
    for name in text.lines().filter(|n| !n.is_empty()) {
        let path = dir.join(name);
        // Only the group's own files: a journal cannot move anything else.
        if !paths.iter().any(|p| p.file_name() == path.file_name()) || name.contains(['/', '\\']) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} names {name:?}, which is not part of the group",
                    journal.display()
                ),
            ));
        }
        match std::fs::rename(staged_path(&path)?, &path) {
            Ok(()) => {}
            // Renamed before the crash (or by a concurrent reader).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    sync_dir(&dir)?;
    match std::fs::remove_file(&journal) {
        Ok(()) => sync_dir(&dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn file_name(path: &Path) -> std::io::Result<String> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| std::io::Error::other(format!("{} is not a file path", path.display())))
}

/// `.NAME.staged` beside `path`.
fn staged_path(path: &Path) -> std::io::Result<PathBuf> {
    Ok(parent_dir(path).join(format!(".{}.staged", file_name(path)?)))
}

/// `.NAME.commit` beside `path`.
fn journal_path(path: &Path) -> std::io::Result<PathBuf> {
    Ok(parent_dir(path).join(format!(".{}.commit", file_name(path)?)))
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

    fn scratch(name: &str) -> crate::test_util::TempDir {
        crate::test_util::temp_dir(&format!("io-{name}"))
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

    fn pair(dir: &Path, a: &'static str, b: &'static str) -> Vec<(PathBuf, PathWriter<'static>)> {
        vec![
            (
                dir.join("m.bpk"),
                Box::new(move |p: &Path| std::fs::write(p, a).map_err(|e| e.to_string())),
            ),
            (
                dir.join("m.json"),
                Box::new(move |p: &Path| std::fs::write(p, b).map_err(|e| e.to_string())),
            ),
        ]
    }

    fn read_pair(dir: &Path) -> (String, String) {
        let (a, b) = (dir.join("m.bpk"), dir.join("m.json"));
        finish_interrupted(&[&a, &b]).unwrap();
        (
            std::fs::read_to_string(a).unwrap(),
            std::fs::read_to_string(b).unwrap(),
        )
    }

    #[test]
    fn a_pair_interrupted_anywhere_reads_as_the_old_pair_or_the_new_one() {
        let dir = scratch("pair");
        write_together(pair(&dir, "w1", "c1")).unwrap();
        assert_eq!(read_pair(&dir), ("w1".into(), "c1".into()));
        assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
        // Before the commit point: the old pair stands.
        write_together_until(pair(&dir, "w2", "c2"), Phase::Staged).unwrap();
        assert_eq!(read_pair(&dir), ("w1".into(), "c1".into()));
        // After it, with nothing or one file renamed: the new pair, once completed.
        write_together_until(pair(&dir, "w3", "c3"), Phase::Committed).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("m.bpk")).unwrap(), "w1");
        assert_eq!(read_pair(&dir), ("w3".into(), "c3".into()));
        write_together_until(pair(&dir, "w4", "c4"), Phase::FirstRenamed).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("m.json")).unwrap(),
            "c3",
            "a mix on disk"
        );
        assert_eq!(read_pair(&dir), ("w4".into(), "c4".into()));
        // A write after an interrupted one first completes it, then replaces it whole.
        write_together_until(pair(&dir, "w5", "c5"), Phase::FirstRenamed).unwrap();
        write_together(pair(&dir, "w6", "c6")).unwrap();
        assert_eq!(read_pair(&dir), ("w6".into(), "c6".into()));
        // A failing member leaves the old pair and no journal.
        let mut failing = pair(&dir, "w7", "c7");
        failing[1].1 = Box::new(|_: &Path| Err("no space".to_string()));
        assert_eq!(write_together(failing).unwrap_err().to_string(), "no space");
        assert_eq!(read_pair(&dir), ("w6".into(), "c6".into()));
        assert!(!dir.join(".m.bpk.commit").exists());
        // A journal naming a file outside the group moves nothing.
        std::fs::write(dir.join(".m.bpk.commit"), "other").unwrap();
        let err = finish_interrupted(&[&dir.join("m.bpk"), &dir.join("m.json")]).unwrap_err();
        assert!(err.to_string().contains("not part of the group"), "{err}");
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
