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

/// Progress of a training run: a bar with the loss terms when the output is a terminal,
/// and a plain line every 50 steps otherwise (logs, CI), so a run can be followed either way.
pub struct TrainingProgress {
    bar: ProgressBar,
    recent: Vec<f32>,
}

impl TrainingProgress {
    /// For a run of `total` steps starting at step `first`.
    pub fn new(total: usize, first: usize) -> Self {
        let bar = progress_bar(total as u64, "train", true);
        bar.set_position(first as u64);
        TrainingProgress {
            bar,
            recent: Vec::new(),
        }
    }

    /// Records one step.
    pub fn step(&mut self, r: &crate::model::StepReport) {
        self.recent.push(r.total);
        if self.recent.len() > 50 {
            self.recent.remove(0);
        }
        let avg = self.recent.iter().sum::<f32>() / self.recent.len() as f32;
        let parts: Vec<String> = r
            .losses
            .iter()
            .map(|(n, v)| format!("{}={v:.3}", n.trim_start_matches("loss_")))
            .collect();
        let line = format!(
            "step {} loss {:.4} (mean of last {} {:.4}) {} lr {:.2e} {:.2} s/step",
            r.step,
            r.total,
            self.recent.len(),
            avg,
            parts.join(" "),
            r.lr,
            r.seconds
        );
        self.bar.set_position(r.step as u64);
        if self.bar.is_hidden() {
            if r.step.is_multiple_of(50) {
                println!("{line}");
            }
        } else {
            self.bar
                .set_message(format!("loss {avg:.3} {}", parts.join(" ")));
            if r.step.is_multiple_of(50) {
                self.bar.println(line);
            }
        }
    }

    /// Prints a line (e.g. a validation result) without breaking the bar.
    pub fn note(&self, line: &str) {
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// Closes the bar.
    pub fn finish(&self) {
        self.bar.finish();
    }
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
