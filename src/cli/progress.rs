//! Progress bars on stderr for long imports and exports, drawn only when
//! stderr is a terminal. When the input's size is known (a regular file,
//! named with `-f` or redirected), the bar counts the bytes read from it
//! (compressed, if the file is) against that size: a percentage, the
//! total and the time left. Otherwise it shows the bytes done and the
//! rate.

use std::io::{Read, Write};

use containers_storage::{ImportObserver, ImportProgress};
use indicatif::{ProgressBar, ProgressStyle};

/// A progress display; hidden when stderr is not a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
    /// Whether the position is the input read against its known size
    /// (else the figures the import reports).
    sized: bool,
}

impl Progress {
    /// Starts a display labelled `label`, for `total` bytes of input when
    /// that is known.
    pub fn start(label: &str, total: Option<u64>) -> Progress {
        if !super::stderr_is_terminal() {
            return Progress {
                bar: None,
                sized: false,
            };
        }
        let (bar, template) = match total {
            Some(total) => (
                ProgressBar::new(total),
                "{spinner} {prefix} [{bar:20}] {percent}% of {total_bytes} \
                 ({binary_bytes_per_sec}, {eta} left) {msg}",
            ),
            None => (
                ProgressBar::new_spinner(),
                "{spinner} {prefix} {bytes} ({binary_bytes_per_sec}) {msg}",
            ),
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar.tick();
        Progress {
            bar: Some(bar),
            sized: total.is_some(),
        }
    }

    /// Clears the display.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// `input`, advancing the display by what is read from it when the
    /// display counts the input.
    pub fn reading<R: Read>(&self, input: R) -> CountingReader<R> {
        CountingReader {
            inner: input,
            bar: self.bar.clone().filter(|_| self.sized),
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
            if !self.sized {
                bar.set_position(p.bytes);
            }
            bar.set_message(format!(
                "chunks: {} new, {} reused",
                p.new_chunks, p.reused_chunks
            ));
        }
    }
}

/// A reader that advances a progress bar by what it reads.
pub struct CountingReader<R> {
    inner: R,
    bar: Option<ProgressBar>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
        Ok(n)
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
