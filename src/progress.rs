//! Progress reporting for long work (training, folders of images, tiles) and resource
//! figures for reports.

use indicatif::{ProgressBar, ProgressStyle};

/// A terminal progress bar over `len` items, labelled `what`, with elapsed time, rate and
/// ETA; hidden when `visible` is false (e.g. in tests or when output is piped).
pub fn progress_bar(len: u64, what: &str, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} {elapsed_precise} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta}) {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// Peak resident memory of this process in bytes (`VmHWM` on Linux), if known.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_memory_is_reported_on_linux() {
        if cfg!(target_os = "linux") {
            let bytes = super::peak_memory_bytes().unwrap();
            assert!(bytes > 1 << 20, "{bytes}");
        }
    }
}
