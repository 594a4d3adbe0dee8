//! Progress bars on stderr for long imports and exports, drawn only when
//! stderr is a terminal.

use std::io::Write;

use containers_storage::{ImportObserver, ImportProgress};
use indicatif::{ProgressBar, ProgressStyle};

/// A spinner with bytes, rate and a message; hidden when not a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts a progress display labelled `label`.
    pub fn start(label: &str) -> Progress {
        if !super::stderr_is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix} {bytes} ({binary_bytes_per_sec}) {msg}",
            )
            .expect("valid template"),
        );
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Progress { bar: Some(bar) }
    }

    /// Clears the display.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn add(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }
}

impl ImportObserver for Progress {
    fn progress(&self, p: &ImportProgress) {
        if let Some(bar) = &self.bar {
            bar.set_position(p.bytes);
            bar.set_message(format!(
                "chunks: {} new, {} reused",
                p.new_chunks, p.reused_chunks
            ));
        }
    }
}

/// A writer that advances a progress display by what it writes.
pub struct CountingWriter<'a, W> {
    pub inner: W,
    pub progress: &'a Progress,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
