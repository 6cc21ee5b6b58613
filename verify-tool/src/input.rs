//! Reading artifacts: whole files under a size cap, and exports as a stream
//! of lines with a bounded line buffer.

use std::fs::File;
use std::io::{self, BufRead as _, BufReader, Read};
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
/// Lines go to [`ExportVerifier::push_line`] without their `\n`, straight
/// from the read buffer when they fit in it (most do), else gathered in
/// `pending`. A line longer than the format allows is not buffered past the
/// limit: the verifier gets its first `limit + 1` bytes, which it refuses as
/// it would the whole line. A last line without `\n` is an export cut short.
pub fn verify_export(
    input: &mut Input,
    trusted: Vec<TrustedKey>,
    expect_origin: Option<Origin>,
    progress: Option<Progress>,
) -> io::Result<Result<ExportSummary, Failure>> {
    let mut verifier = ExportVerifier::new(trusted, expect_origin);
    let mut pending: Vec<u8> = Vec::new();
    let mut lines: u64 = 0;
    let mut bytes: u64 = 0;
    let result = loop {
        let buf = match input.reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if pending.is_empty() {
                break verifier.finish();
            }
            // The input ended mid-line. After the end line that is trailing
            // data, which only the verifier knows; otherwise it is truncated
            // at the first record not read.
            lines += 1;
            let records = verifier.records();
            break Err(match verifier.push_line(&pending) {
                Err(f) if f.reason == Reason::TrailingData => f,
                _ => Failure::new(Reason::Truncated, records, lines),
            });
        }
        // `pending` never holds more than the limit, so `room` is at least 1.
        let room = EXPORT_LINE_BYTES_MAX + 1 - pending.len();
        let window = &buf[..buf.len().min(room)];
        let step = match find_newline(window) {
            Some(i) => {
                lines += 1;
                let pushed = if pending.is_empty() {
                    verifier.push_line(&window[..i])
                } else {
                    pending.extend_from_slice(&window[..i]);
                    let pushed = verifier.push_line(&pending);
                    pending.clear();
                    pushed
                };
                if let Err(failure) = pushed {
                    break Err(failure);
                }
                i + 1
            }
            None => {
                pending.extend_from_slice(window);
                if pending.len() > EXPORT_LINE_BYTES_MAX {
                    lines += 1;
                    let failure = verifier.push_line(&pending).err();
                    break Err(failure.unwrap_or(Failure::new(Reason::Malformed, lines, lines)));
                }
                window.len()
            }
        };
        input.reader.consume(step);
        bytes += step as u64;
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

/// Position of the first `\n` (std's own memchr is not public, and a byte
/// loop showed up in profiles). Lines are hundreds of bytes, so the main
/// loop tests 32 bytes per step, written as a branch-free reduction over a
/// fixed-size block so that the compiler turns it into a few vector
/// compares (SSE2 on x86-64); the byte loop then finds the exact place in
/// the block that has the newline. (A word-at-a-time loop in between saved
/// too little to keep; a bit-mask reduction did not vectorize.)
fn find_newline(bytes: &[u8]) -> Option<usize> {
    let (blocks, _) = bytes.as_chunks::<32>();
    let mut at = 0;
    for block in blocks {
        if block.iter().fold(false, |seen, &b| seen | (b == b'\n')) {
            break;
        }
        at += 32;
    }
    bytes[at..].iter().position(|&b| b == b'\n').map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_newline_finds_the_first() {
        for len in 0..80 {
            for at in 0..=len {
                let mut bytes = vec![b'x'; len];
                if at < len {
                    bytes[at] = b'\n';
                }
                bytes.push(b'\n');
                // Bytes with the high bit set must not confuse the word test.
                bytes.insert(0, 0x8a);
                assert_eq!(find_newline(&bytes), Some(at + 1), "len {len} at {at}");
            }
        }
        assert_eq!(find_newline(b""), None);
        assert_eq!(find_newline(&[0x0b; 20]), None);
    }
}
