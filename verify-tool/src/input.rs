//! Reading artifacts: whole files under a size cap, and exports as a stream
//! of lines with a bounded line buffer.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use annal_chain::limits::EXPORT_LINE_BYTES_MAX;
use annal_chain::{ExportSummary, ExportVerifier, Failure, Origin, Reason, TrustedKey};
use indicatif::{ProgressBar, ProgressStyle};

/// Read buffer for exports: large enough that a read is rarely a syscall per line.
const READ_BUFFER_BYTES: usize = 1024 * 1024;
/// How many lines pass between progress-bar updates.
const PROGRESS_EVERY_LINES: u64 = 16 * 1024;

/// An open input: a file or stdin, buffered.
pub struct Input {
    reader: BufReader<Box<dyn Read>>,
    /// The file's size when it is a regular file (for the progress bar).
    len: Option<u64>,
}

impl Input {
    /// Opens `path`, or stdin for `-`.
    pub fn open(path: &Path) -> io::Result<Input> {
        let (source, len): (Box<dyn Read>, _) = if path == Path::new("-") {
            (Box::new(io::stdin().lock()), None)
        } else {
            let file = File::open(path)?;
            let meta = file.metadata()?;
            if meta.is_dir() {
                return Err(io::Error::new(io::ErrorKind::IsADirectory, "is a directory"));
            }
            (Box::new(file), meta.is_file().then_some(meta.len()))
        };
        Ok(Input { reader: BufReader::with_capacity(READ_BUFFER_BYTES, source), len })
    }

    pub fn len(&self) -> Option<u64> {
        self.len
    }

    /// Reads the whole input, but never more than `cap + 1` bytes: the
    /// verifiers refuse anything over their cap, so one byte more is enough
    /// for them to say so in their own terms.
    pub fn read_capped(&mut self, cap: usize) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        (&mut self.reader).take(cap as u64 + 1).read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input").field("len", &self.len).finish_non_exhaustive()
    }
}

/// A progress bar on stderr; created only when stderr is a terminal.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(len: Option<u64>) -> Progress {
        let bar = match len {
            Some(len) => ProgressBar::new(len).with_style(
                ProgressStyle::with_template(
                    "{spinner} verifying {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
                )
                .expect("valid template"),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} verifying {bytes} ({bytes_per_sec}) {msg}")
                    .expect("valid template"),
            ),
        };
        Progress { bar }
    }

    fn update(&self, bytes: u64, records: u64) {
        self.bar.set_position(bytes);
        self.bar.set_message(format!("{records} records"));
    }
}

/// Verifies an export line by line. The outer error is an I/O error (the
/// input became unreadable); the inner result is the verification outcome.
///
/// Lines go to [`ExportVerifier::push_line`] without their `\n`. A line
/// longer than the format allows is not buffered past the limit: the
/// verifier gets the first `limit + 1` bytes, which it refuses as it would
/// the whole line. A last line without `\n` is an export cut short.
pub fn verify_export(
    input: &mut Input,
    trusted: Vec<TrustedKey>,
    expect_origin: Option<Origin>,
    progress: Option<Progress>,
) -> io::Result<Result<ExportSummary, Failure>> {
    let mut verifier = ExportVerifier::new(trusted, expect_origin);
    let mut line = Vec::with_capacity(64 * 1024);
    let mut lines: u64 = 0;
    let mut bytes: u64 = 0;
    let result = loop {
        line.clear();
        let n = (&mut input.reader).take(EXPORT_LINE_BYTES_MAX as u64 + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            break verifier.finish();
        }
        lines += 1;
        bytes += n as u64;
        if line.last() == Some(&b'\n') {
            line.pop();
            if let Err(failure) = verifier.push_line(&line) {
                break Err(failure);
            }
        } else if line.len() > EXPORT_LINE_BYTES_MAX {
            let failure = verifier.push_line(&line).err();
            break Err(failure.unwrap_or(Failure::new(Reason::Malformed, lines, lines)));
        } else {
            // The input ended mid-line. After the end line that is trailing
            // data, which only the verifier knows; otherwise it is truncated
            // at the first record not read.
            let records = verifier.records();
            break Err(match verifier.push_line(&line) {
                Err(f) if f.reason == Reason::TrailingData => f,
                _ => Failure::new(Reason::Truncated, records, lines),
            });
        }
        if let Some(p) = &progress
            && lines.is_multiple_of(PROGRESS_EVERY_LINES)
        {
            p.update(bytes, verifier.records());
        }
    };
    if let Some(p) = progress {
        p.bar.finish_and_clear();
    }
    Ok(result)
}
